"""The policy simulator: "may this principal do this action on this resource?", answered with
the decision names of the AWS policy simulator (``allowed`` / ``explicitDeny`` /
``implicitDeny``) and the statements that decided it.

The principal is one of:

* a role, by name or ARN (``dev``, ``arn:broker:iam::<account>:role/dev``, or an assumed-role
  session ARN ``arn:broker:sts::<account>:assumed-role/dev/<session>``): the role's identity
  policies and permissions boundary, as compiled by the :class:`Authorizer`;
* a broker credential (a session token): its role, plus the session policies it carries, and
  the condition keys it implies (``aws:username``, ``aws:PrincipalTag/*``, MFA, ...);
* nothing: only the policy documents given.

Policy documents given directly (``policies``) are added to the principal's identity policies,
as ``aws iam simulate-principal-policy --policy-input-list`` does; ``boundary`` replaces the
role's permissions boundary; ``session_policies`` are added to the credential's.

Context: the global keys a real request would carry (``aws:CurrentTime``, ``aws:EpochTime``,
``aws:SecureTransport``, ``aws:MultiFactorAuthPresent``, ``aws:PrincipalArn`` and, for a
credential, the keys it implies), then the caller's ``context``, whose keys replace those with the
same name (``aws:X`` and ``broker:X`` are one key).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from broker.domain.claims import ContextValue
from broker.domain.policy.context import canonical_key
from broker.errors import InvalidRequest, NotFound
from broker.policy import Decision, Policy, PolicyError, evaluate, parse_policy
from broker.service.authorize import Authorizer, Principal
from broker.service.credentials import Credential

_ASSUMED = re.compile(r"arn:[^:]+:sts::(?P<account>[^:]*):assumed-role/(?P<role>[^/]+)/.+")
_ROLE = re.compile(r"arn:[^:]+:iam::(?P<account>[^:]*):role/(?:.*/)?(?P<role>[^/]+)")
_OTHER = re.compile(r"arn:[^:]+:iam::[^:]*:(?P<type>user|group)/.+")


@dataclass(frozen=True)
class Simulation:
    """The answer: the decision, and what was simulated."""

    decision: Decision
    principal: str | None  # the role ARN simulated, or None for policies only
    context: Mapping[str, ContextValue] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = self.decision.to_dict()
        out["principal"] = self.principal
        return out


def parse_documents(
    docs: Sequence[object], what: str, *, names: Sequence[str] | None = None
) -> list[Policy]:
    """Parse policies given by the caller; a bad one raises PolicyError with paths prefixed
    by which document it was (``policies[1]: Statement[0].Effect``)."""
    parsed: list[Policy] = []
    for i, doc in enumerate(docs):
        name = names[i] if names else f"{what}[{i}]"
        if not isinstance(doc, Mapping | str | bytes):
            raise PolicyError(name, "a policy document must be a JSON object")
        try:
            parsed.append(parse_policy(doc, name=name))
        except PolicyError as e:
            raise PolicyError.collected(
                [(f"{name}: {p}" if p else name, m) for p, m in e.errors], e.fixes
            ) from None
    return parsed


def check_context(context: Mapping[str, object]) -> dict[str, ContextValue]:
    """Context keys → string or list of strings; anything else is a clear InvalidRequest."""
    out: dict[str, ContextValue] = {}
    for key, value in context.items():
        if not isinstance(key, str) or not key.strip():
            raise InvalidRequest(
                "bad_context_key", public_message="context keys must be non-empty strings"
            )
        if isinstance(value, bool):
            out[key] = "true" if value else "false"
        elif isinstance(value, str | int | float):
            out[key] = str(value)
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            out[key] = list(value)
        else:
            raise InvalidRequest(
                "bad_context_value",
                public_message=f"context value of {key!r} must be a string or a list of strings",
            )
    return out


def merge_context(
    base: Mapping[str, ContextValue], overrides: Mapping[str, ContextValue]
) -> dict[str, ContextValue]:
    """``base`` with every key that ``overrides`` names (in any spelling) replaced."""
    replaced = {canonical_key(k) for k in overrides}
    merged = {k: v for k, v in base.items() if canonical_key(k) not in replaced}
    merged.update(overrides)
    return merged


class Simulator:
    def __init__(self, authorizer: Authorizer) -> None:
        self._authorizer = authorizer

    def role_arn(self, principal: str) -> str:
        """A role name, role ARN or assumed-role ARN → the role's ARN (NotFound if unknown)."""
        text = principal.strip()
        if not text:
            raise InvalidRequest("empty_principal", public_message="the principal is empty")
        other = _OTHER.fullmatch(text)
        if other:
            raise InvalidRequest(
                "unsupported_principal",
                public_message=f"cannot simulate a {other['type']}: this broker attaches "
                "policies to roles; give a role name or ARN",
            )
        found = _ASSUMED.fullmatch(text) or _ROLE.fullmatch(text)
        if found is None and text.startswith("arn:"):
            raise InvalidRequest(
                "bad_principal",
                public_message=f"{text!r} is not a role ARN "
                "(arn:broker:iam::<account>:role/<name>) or an assumed-role ARN",
            )
        name = found["role"] if found else text
        arn = self._authorizer.role_arn(name)
        if self._authorizer.role(arn) is None:
            raise NotFound("unknown_role", public_message=f"no role named {name!r}")
        return arn

    def simulate(
        self,
        *,
        action: str,
        resource: str,
        principal: str | None = None,
        credential: Credential | None = None,
        context: Mapping[str, ContextValue] | None = None,
        policies: Sequence[Policy] = (),
        boundary: Policy | None = None,
        session_policies: Sequence[Policy] = (),
    ) -> Simulation:
        _check_request(action, resource)
        if principal is not None and credential is not None:
            raise InvalidRequest(
                "two_principals", public_message="give a principal or a credential, not both"
            )
        identity: list[Policy] = []
        role_boundary: Policy | None = None
        sessions: list[Policy] = []
        base: dict[str, ContextValue] = {}
        arn: str | None = None
        who: Principal | None = None
        if credential is not None:
            arn = credential.role_arn
            who = credential.principal
            sessions.extend(credential.session_policies)
        elif principal is not None:
            arn = self.role_arn(principal)
            who = Principal(role_arn=arn)
        if arn is not None and who is not None:
            role = self._authorizer.role(arn)
            if role is None:
                raise NotFound("unknown_role", public_message=f"no role {arn!r}")
            if role.broken:
                raise InvalidRequest(
                    "broken_role",
                    public_message=f"the role {role.name!r} has a policy that does not parse "
                    "(it allows nothing); run: broker check-config",
                )
            identity.extend(role.identity)
            role_boundary = role.boundary
            base = self._authorizer.context_for(who, source_ip="")
        elif not policies:
            raise InvalidRequest(
                "nothing_to_simulate",
                public_message="give a principal, a credential or at least one policy",
            )
        identity.extend(policies)
        sessions.extend(session_policies)
        merged = merge_context(base, context or {})
        decision = evaluate(
            action=action,
            resource=resource,
            context=merged,
            identity=identity,
            boundary=boundary if boundary is not None else role_boundary,
            session=sessions,
        )
        return Simulation(decision, arn, merged)


def simulate_documents(
    *,
    action: str,
    resource: str,
    context: Mapping[str, ContextValue] | None = None,
    policies: Sequence[Policy] = (),
    boundary: Policy | None = None,
    session_policies: Sequence[Policy] = (),
) -> Simulation:
    """Simulate with policy documents only: no store, no role, no default context keys."""
    if not policies:
        raise InvalidRequest(
            "nothing_to_simulate",
            public_message="give a principal, a credential or at least one policy",
        )
    _check_request(action, resource)
    decision = evaluate(
        action=action,
        resource=resource,
        context=context or {},
        identity=policies,
        boundary=boundary,
        session=session_policies,
    )
    return Simulation(decision, None, dict(context or {}))


def _check_request(action: str, resource: str) -> None:
    if action != "*" and (not action or ":" not in action):
        raise InvalidRequest(
            "bad_action",
            public_message=f"the action must be service:Action (e.g. s3:GetObject), not {action!r}",
        )
    if not resource:
        raise InvalidRequest("bad_resource", public_message="the resource is empty")


def guess_kind(text: str | bytes) -> str:
    """``trust`` if any statement of a JSON policy names a Principal, else ``identity``
    (unreadable documents are ``identity``: validation then reports why)."""
    import json

    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):
        return "identity"
    body = doc.get("Statement") if isinstance(doc, dict) else None
    statements = [body] if isinstance(body, dict) else body if isinstance(body, list) else []
    if any(isinstance(s, dict) and ("Principal" in s or "NotPrincipal" in s) for s in statements):
        return "trust"
    return "identity"
