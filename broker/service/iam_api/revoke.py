"""The IAM console's "Revoke active sessions", through the API: ``PutRolePolicy`` of
an inline policy named ``AWSRevokeOlderSessions`` denying everything to tokens issued before a
time (``DateLessThan`` on ``aws:TokenIssueTime``).

The policy engine enforces that policy wherever the role's policies are evaluated. The
``PutRolePolicy`` action calls ``after_put_role_policy`` once the policy is stored, which also
records it as a role revocation (``RoleAdmin.revoke_older_sessions``): every credential check,
the hot path that evaluates no policy included, then refuses those tokens (a 401 at ``/auth``)
on every instance within the revocation poll (contract C4: 2 s).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from broker.domain import json_input
from broker.domain.policy.parse import MAX_DOCUMENT_BYTES
from broker.service.iam_api.registry import Call
from broker.service.iam_api.roles import role_admin
from broker.service.offboarding import Offboarded


async def after_put_role_policy(
    call: Call, role: str, policy_name: str, document: str | Mapping[str, Any]
) -> Offboarded | None:
    """Call after ``PutRolePolicy`` stored ``document`` (the JSON text as given, or parsed)
    as ``policy_name`` on ``role``; a no-op unless it is the console's
    ``AWSRevokeOlderSessions`` policy. Returns what was revoked."""
    if isinstance(document, str):
        try:  # as PutRolePolicy read it (policy.parse: the same bounds)
            document = json_input.loads(document, max_bytes=MAX_DOCUMENT_BYTES)
        except json_input.JsonInputError:
            return None  # not stored either: PutRolePolicy refused it
        if not isinstance(document, Mapping):
            return None
    return await role_admin(call).revoke_older_sessions(
        role, policy_name, document, actor=call.actor
    )
