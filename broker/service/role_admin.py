"""Roles administered at run time: create, change and delete the roles that live in the store
(the IAM API's role actions; ``broker admin`` may call the same methods as the root).

Roles declared in the config file are read-only here (``Conflict`` ``role_from_config``, the
IAM API's ``UnmodifiableEntity``). Trust policies are checked as resource policies
(``Principal`` required) before anything is written. Every change is audited as
``iam.<Operation>`` before it is made (fail-closed). A role created here is a candidate for
browser logins (``RoleCatalog.candidates`` reads the store) and assumable through STS as soon
as the caches are refreshed (``IamApi.changed``).

Deleting a role ends its sessions: a role revocation (everything issued up to now) is recorded
first, so that credentials of the old role do not come back to life if a role of the same name
is created later. "Revoke active sessions" as the IAM console does it -- an inline policy named
``AWSRevokeOlderSessions`` that denies everything to tokens issued before a time -- is honoured
by the policy engine wherever policies are evaluated; ``revoke_older_sessions`` also records it
as a role revocation, so that every credential check (the hot path too) refuses those tokens
on every instance within the revocation poll.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from broker.clock import Clock
from broker.config import Settings
from broker.domain.policy.conditions import parse_date
from broker.errors import (
    AlreadyExists,
    Conflict,
    InvalidRequest,
    LimitExceeded,
    MalformedPolicy,
    NotFound,
    ReadOnlyFromConfig,
    RecordNotFound,
)
from broker.policy import PolicyError, parse_policy
from broker.service.audit import Auditor, RequestInfo
from broker.service.offboarding import Offboarded, OffboardingService
from broker.storage.base import RoleRecord, Store

ROLE_NAME: Final = re.compile(r"[\w+=,.@-]{1,64}", re.ASCII)
_POLICY_ARN: Final = re.compile(r"arn:broker:iam::(\d{12}):policy/(?:[!-~]*/)?([\w+=,.@-]{1,128})")
MIN_SESSION_SECONDS: Final = 3600
MAX_SESSION_SECONDS: Final = 43200
DEFAULT_SESSION_SECONDS: Final = 3600
#: IAM's quota on a trust policy's size (ACLSizePerRole, non-whitespace characters), at its
#: highest setting.
TRUST_POLICY_MAX_CHARS: Final = 4096
#: The inline policy the IAM console's "Revoke active sessions" puts on a role.
REVOKE_POLICY_NAME: Final = "AWSRevokeOlderSessions"
_TOKEN_ISSUE_TIME_KEYS: Final = ("aws:tokenissuetime", "broker:tokenissuetime")


@dataclass(frozen=True)
class RoleView:
    """A role as the API shows it: its record, its managed boundary policy and its tags."""

    record: RoleRecord
    boundary: str | None
    tags: Mapping[str, str]


def check_role_name(name: str) -> str:
    if not ROLE_NAME.fullmatch(name):
        raise InvalidRequest(
            "bad_role_name",
            public_message=f"role names are 1-64 of letters, digits and _+=,.@-: {name[:80]!r}",
        )
    return name


def parse_trust(document: str | Mapping[str, Any]) -> dict[str, Any]:
    """A trust policy from the caller: a resource policy (every statement names its
    ``Principal``), at most ``TRUST_POLICY_MAX_CHARS`` non-whitespace characters."""
    try:
        policy = parse_policy(document, name="trust", kind="resource")
    except PolicyError as e:
        problems = "; ".join(f"{p}: {m}" if p else m for p, m in e.errors)
        raise MalformedPolicy(
            f"malformed_policy:{e.reason}"[:300],
            public_message=f"The trust policy is not valid: {problems}"[:1000],
        ) from None
    doc = dict(policy.document)
    size = len(re.sub(r"\s", "", json.dumps(doc, ensure_ascii=False)))
    if size > TRUST_POLICY_MAX_CHARS:
        raise LimitExceeded(
            "trust_policy_too_large",
            public_message=f"Cannot exceed quota for ACLSizePerRole: {TRUST_POLICY_MAX_CHARS}",
        )
    return doc


def check_session_duration(seconds: int) -> float:
    if not MIN_SESSION_SECONDS <= seconds <= MAX_SESSION_SECONDS:
        raise InvalidRequest(
            "bad_max_session_duration",
            public_message=f"MaxSessionDuration must be {MIN_SESSION_SECONDS} to "
            f"{MAX_SESSION_SECONDS} seconds, not {seconds}",
        )
    return float(seconds)


def revoke_older_sessions_time(name: str, document: Mapping[str, Any]) -> float | None:
    """The time before which the console's "Revoke active sessions" policy voids every token
    of the role, if ``name``/``document`` is that policy; else None.

    That is the policy named ``AWSRevokeOlderSessions`` with a statement denying every action
    (``*``) on every resource (``*``) under exactly one condition, ``DateLessThan`` on
    ``aws:TokenIssueTime`` (or ``broker:TokenIssueTime``) with one date. A narrower deny is
    left to the policy engine alone."""
    if name != REVOKE_POLICY_NAME:
        return None
    statements = document.get("Statement")
    if isinstance(statements, Mapping):
        statements = [statements]
    if not isinstance(statements, list):
        return None
    times = [t for s in statements if (t := _revoke_all_before(s)) is not None]
    return max(times) if times else None


def _is_star(value: object) -> bool:
    return value == "*" or value == ["*"]


def _revoke_all_before(statement: object) -> float | None:
    if not isinstance(statement, Mapping) or statement.get("Effect") != "Deny":
        return None
    if set(statement) - {"Sid", "Effect", "Action", "Resource", "Condition"}:
        return None
    if not (_is_star(statement.get("Action")) and _is_star(statement.get("Resource"))):
        return None
    condition = statement.get("Condition")
    if not isinstance(condition, Mapping) or list(condition) != ["DateLessThan"]:
        return None
    block = condition["DateLessThan"]
    if not isinstance(block, Mapping) or len(block) != 1:
        return None
    ((key, value),) = block.items()
    if str(key).lower() not in _TOKEN_ISSUE_TIME_KEYS:
        return None
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if not isinstance(value, str):
        return None
    when = parse_date(value)
    return when.timestamp() if when is not None else None


def policy_name_of_arn(arn: str, account_id: str) -> str:
    """The managed policy named by ``arn:broker:iam::<account>:policy/[path/]<name>``."""
    m = _POLICY_ARN.fullmatch(arn)
    if m is None or m.group(1) != account_id:
        raise InvalidRequest("bad_policy_arn", public_message=f"ARN {arn[:200]} is not valid.")
    return m.group(2)


class RoleAdmin:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        auditor: Auditor,
        offboarding: OffboardingService,
        clock: Clock,
    ) -> None:
        self._settings = settings
        self._store = store
        self._auditor = auditor
        self._offboarding = offboarding
        self._clock = clock

    def arn(self, name: str) -> str:
        return self._settings.arn("role", name)

    # --- reading ------------------------------------------------------------------------

    async def role(self, name: str) -> RoleRecord:
        role = await self._store.get_role(name)
        if role is None:
            raise NotFound(
                f"no_such_role:{name[:64]}",
                public_message=f"The role with name {name[:64]} cannot be found.",
            )
        return role

    async def view(self, name: str) -> RoleView:
        role = await self.role(name)
        attached = await self._store.attached_policies("role", role.name)
        tags = await self._store.list_tags("role", role.name)
        return RoleView(role, attached.boundary, tags)

    async def list_roles(self) -> list[RoleRecord]:
        return await self._store.list_roles()

    # --- changes ------------------------------------------------------------------------

    async def create(
        self,
        name: str,
        trust: str | Mapping[str, Any],
        *,
        actor: str,
        req: RequestInfo | None = None,
        description: str = "",
        max_session_duration: int = DEFAULT_SESSION_SECONDS,
        boundary: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> RoleView:
        """``boundary``: a managed policy's ARN. Nothing is stored unless all of it is."""
        check_role_name(name)
        doc = parse_trust(trust)
        seconds = check_session_duration(max_session_duration)
        policy = None
        if boundary is not None:
            policy = policy_name_of_arn(boundary, self._settings.server.account_id)
            if await self._store.get_managed_policy(policy) is None:
                raise NotFound(
                    f"no_such_policy:{policy}",
                    public_message=f"Scope ARN: {boundary[:200]} does not exist or is not "
                    "attachable.",
                )
        now = self._clock.now()
        record = RoleRecord(
            name=name,
            description=description,
            trust_policy=doc,
            policies=[],
            permissions_boundary=None,
            max_session_duration=seconds,
            source="api",
            created_at=now,
            updated_at=now,
        )
        await self._audit("CreateRole", actor, req, role=name, boundary=policy)
        try:
            await self._store.create_role(record, boundary=policy, tags=dict(tags or {}))
        except AlreadyExists:
            raise AlreadyExists(
                f"role_exists:{name}", public_message=f"Role with name {name} already exists."
            ) from None
        except RecordNotFound:  # the boundary policy was deleted meanwhile
            raise NotFound(
                f"no_such_policy:{policy}",
                public_message=f"Scope ARN: {boundary} does not exist or is not attachable.",
            ) from None
        return RoleView(record, policy, dict(tags or {}))

    async def update(
        self,
        name: str,
        *,
        operation: str,
        actor: str,
        req: RequestInfo | None = None,
        description: str | None = None,
        max_session_duration: int | None = None,
        trust: str | Mapping[str, Any] | None = None,
    ) -> RoleRecord:
        """Change the given fields (``operation``: the IAM operation, for the audit log)."""
        role = self._writable(await self.role(name))
        doc = parse_trust(trust) if trust is not None else None
        seconds = (
            check_session_duration(max_session_duration)
            if max_session_duration is not None
            else None
        )
        changed = [
            k
            for k, v in (
                ("description", description),
                ("max_session_duration", seconds),
                ("trust_policy", doc),
            )
            if v is not None
        ]
        await self._audit(operation, actor, req, role=role.name, changed=",".join(changed))
        try:
            return await self._store.update_role(
                role.name,
                now=self._clock.now(),
                description=description,
                trust_policy=doc,
                max_session_duration=seconds,
            )
        except RecordNotFound:  # deleted meanwhile
            raise NotFound(
                f"no_such_role:{name}",
                public_message=f"The role with name {name} cannot be found.",
            ) from None

    async def delete(self, name: str, *, actor: str, req: RequestInfo | None = None) -> None:
        """Refused while policies are attached or inline policies exist (IAM's
        DeleteConflict). Ends every session of the role, then deletes it."""
        role = self._writable(await self.role(name))
        attached = await self._store.attached_policies("role", role.name)
        if attached.managed or attached.inline:
            raise Conflict(
                f"role_in_use:{role.name}",
                public_message=f"Cannot delete entity, must detach all policies first "
                f"({len(attached.managed)} attached, {len(attached.inline)} inline).",
            )
        await self._audit("DeleteRole", actor, req, role=role.name)
        # first: a credential of this role must not outlive it (nor work for a later role
        # of the same name)
        await self._offboarding.revoke_role_sessions(role.name, actor=actor, reason="deleted")
        try:
            await self._store.delete_role(role.name)
        except RecordNotFound:
            raise NotFound(
                f"no_such_role:{name}",
                public_message=f"The role with name {name} cannot be found.",
            ) from None

    async def revoke_older_sessions(
        self, name: str, policy_name: str, document: Mapping[str, Any], *, actor: str
    ) -> Offboarded | None:
        """After the inline policy ``policy_name`` was put on role ``name``: if it is the
        console's "Revoke active sessions" policy, record the role revocation it stands for
        (tokens issued before its time, at the latest now), on every instance within the
        revocation poll. Returns what was revoked, or None if the policy is another one."""
        before = revoke_older_sessions_time(policy_name, document)
        if before is None:
            return None
        return await self._offboarding.revoke_role_sessions(
            name, actor=actor, reason=REVOKE_POLICY_NAME, before=before
        )

    @staticmethod
    def _writable(role: RoleRecord) -> RoleRecord:
        if role.source == "config":
            raise ReadOnlyFromConfig(
                f"role_from_config:{role.name}",
                public_message=f"Cannot perform the operation on the protected role "
                f"'{role.name}': it is declared in the config file ([roles.{role.name}]).",
            )
        return role

    async def _audit(
        self, operation: str, actor: str, req: RequestInfo | None, **details: str | None
    ) -> None:
        await self._auditor.record_or_fail(
            f"iam.{operation}",
            "success",
            req=req,
            principal=actor,
            details={k: v for k, v in details.items() if v is not None},
        )
