"""Permission decisions for a credential: the principal's identity policies, its permissions
boundary, and any session policies, evaluated in memory.

Roles are compiled once (``refresh`` re-reads the store when roles change); deciding a request
touches no database and parses nothing. Used by forward-auth, ``/v1/authorize`` and STS.

IAM users are principals too (a credential from an access key, or from ``GetSessionToken``,
has the user's ARN as ``Principal.role_arn``). A user is compiled on first use
(``prepare``, which async callers await before ``decide``) through ``policy_sets
.user_policy_set``, the simulator's code, and kept in a bounded LRU keyed by (ARN, user id),
so that a user deleted and re-created under the same name never inherits the old one's
credentials. ``refresh`` (every IAM change, here or on another instance through the IAM
generation) drops them all. ``decide`` never reads the store: a user not compiled yet, deleted,
disabled or with a broken policy allows nothing.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from broker.clock import Clock
from broker.config import Settings
from broker.domain.claims import ContextValue, global_context
from broker.errors import StoreError
from broker.policy import Decision, Policy, PolicyError, evaluate, parse_policy
from broker.service.policy_sets import PolicyCompiler, user_policy_set
from broker.storage.base import AttachedPolicies, ManagedPolicyRecord, RoleRecord, Store

log = logging.getLogger(__name__)

USER_CACHE_ENTRIES = 10_000  # compiled users kept (least recently used dropped first)


def is_user_arn(arn: str) -> bool:
    """``arn:<partition>:iam::<account>:user/<name>``."""
    parts = arn.split(":", 5)
    return len(parts) == 6 and parts[2] == "iam" and parts[5].startswith("user/")


@dataclass(frozen=True)
class CompiledRole:
    name: str
    arn: str
    identity: tuple[Policy, ...]
    boundary: Policy | None
    max_session_duration: float
    updated_at: float
    broken: bool = False  # a policy failed to parse: the role allows nothing


@dataclass(frozen=True)
class CompiledUser:
    """An IAM user's policies in force (``broken``: deleted, disabled, or a policy that does
    not parse or no longer exists: it allows nothing)."""

    arn: str
    user_id: str
    identity: tuple[Policy, ...] = ()
    boundary: Policy | None = None
    broken: bool = False


@dataclass(frozen=True)
class Principal:
    """What a verified credential says about its holder, for policy context keys.
    ``role_arn`` is the principal's ARN: a role's, or an IAM user's (``principal_arn``)."""

    role_arn: str
    user_id: str = ""
    username: str = ""
    provider: str = ""
    subject: str = ""
    mfa: bool = False
    mfa_authenticated_at: float | None = None
    tags: Mapping[str, str] | None = None
    issued_at: float | None = None
    session_name: str = ""
    source_identity: str = ""

    @property
    def principal_arn(self) -> str:
        return self.role_arn

    @property
    def is_user(self) -> bool:
        return is_user_arn(self.role_arn)


def compile_role(
    role: RoleRecord,
    arn: str,
    attached: AttachedPolicies,
    managed: Mapping[str, ManagedPolicyRecord],
    compiler: PolicyCompiler,
) -> CompiledRole:
    """The role's own documents, then the managed and inline policies attached to it; its
    boundary document, or else an attached managed boundary."""
    try:
        own = tuple(
            parse_policy(dict(doc), name=f"{role.name}/policy[{i}]")
            for i, doc in enumerate(role.policies)
        )
        boundary = (
            parse_policy(dict(role.permissions_boundary), name=f"{role.name}/boundary")
            if role.permissions_boundary
            else None
        )
        compiled = compiler.compile(
            [(f"role/{role.name}", attached)], managed, extra=own, boundary=boundary
        )
    except PolicyError as e:
        log.error("role %s has an invalid permission policy (it allows nothing): %s", role.name, e)
        return _broken(role, arn)
    if compiled.broken:
        log.error("role %s: attached policies %s no longer exist", role.name, compiled.missing)
        return _broken(role, arn)
    return CompiledRole(
        role.name,
        arn,
        compiled.identity,
        compiled.boundary,
        role.max_session_duration,
        role.updated_at,
    )


def _broken(role: RoleRecord, arn: str) -> CompiledRole:
    return CompiledRole(role.name, arn, (), None, role.max_session_duration, role.updated_at, True)


def _version(
    role: RoleRecord, attached: AttachedPolicies, managed: Mapping[str, ManagedPolicyRecord]
) -> tuple[object, ...]:
    """What a compiled role depends on: recompile only when it changes."""
    names = (*attached.managed, attached.boundary)
    return (
        role.updated_at,
        attached.managed,
        attached.boundary,
        tuple(sorted((k, json.dumps(v, sort_keys=True)) for k, v in attached.inline.items())),
        tuple(managed[n].updated_at if n in managed else None for n in names if n),
    )


class Authorizer:
    def __init__(self, settings: Settings, store: Store, clock: Clock) -> None:
        self._settings = settings
        self._store = store
        self._clock = clock
        self._roles: dict[str, CompiledRole] = {}
        self._versions: dict[str, tuple[object, ...]] = {}
        self._compiler = PolicyCompiler()
        self._users: OrderedDict[tuple[str, str], CompiledUser] = OrderedDict()
        self._user_compiler = PolicyCompiler()
        self._epoch = 0  # bumped by refresh: a compile that started before it is not kept

    def role_arn(self, name: str) -> str:
        return self._settings.arn("role", name)

    async def refresh(self) -> None:
        """Recompile roles whose record, attachments or attached policies changed in the
        store; drop deleted ones, and every compiled user (recompiled on next use)."""
        self._epoch += 1
        self._users.clear()
        records = await self._store.list_roles()
        attachments = await self._store.all_attachments("role")
        managed = {p.name: p for p in await self._store.list_managed_policies()}
        fresh: dict[str, CompiledRole] = {}
        versions: dict[str, tuple[object, ...]] = {}
        for r in records:
            arn = self.role_arn(r.name)
            attached = attachments.get(r.name, AttachedPolicies())
            version = versions[arn] = _version(r, attached, managed)
            old = self._roles.get(arn)
            if old is not None and self._versions.get(arn) == version:
                fresh[arn] = old
            else:
                fresh[arn] = compile_role(r, arn, attached, managed, self._compiler)
        self._roles, self._versions = fresh, versions
        self._compiler.forget_except(managed)
        self._user_compiler.forget_except(managed)

    def role(self, arn: str) -> CompiledRole | None:
        return self._roles.get(arn)

    def user(self, arn: str, user_id: str) -> CompiledUser | None:
        """The compiled user, if ``prepare`` compiled it since the last refresh."""
        return self._users.get((arn, user_id))

    def needs_prepare(self, p: Principal) -> bool:
        """Whether ``p`` is an IAM user not compiled since the last refresh."""
        return is_user_arn(p.role_arn) and (p.role_arn, p.user_id) not in self._users

    async def prepare(self, p: Principal) -> None:
        """Compile ``p`` if it is an IAM user not compiled yet (roles: nothing to do). Never
        raises: a store failure leaves it uncompiled, and ``decide`` denies."""
        key = (p.role_arn, p.user_id)
        if p.role_arn in self._roles or not is_user_arn(p.role_arn):
            return
        if key in self._users:
            self._users.move_to_end(key)
            return
        epoch = self._epoch
        try:
            compiled = await self._compile_user(p.role_arn, p.user_id)
        except StoreError as e:
            log.warning("could not compile user %s: %s", p.role_arn, e.reason)
            return
        if epoch != self._epoch:
            return  # IAM changed meanwhile: what was read may be stale
        self._users[key] = compiled
        if len(self._users) > USER_CACHE_ENTRIES:
            self._users.popitem(last=False)

    async def _compile_user(self, arn: str, user_id: str) -> CompiledUser:
        name = arn.split(":", 5)[5].removeprefix("user/")
        found = [u for u in await self._store.find_users_by_name(name) if u.id == user_id]
        if not found or found[0].disabled:
            return CompiledUser(arn, user_id, broken=True)
        try:
            compiled = await user_policy_set(self._store, self._user_compiler, found[0])
        except PolicyError as e:
            log.error("user %s has an invalid permission policy (it allows nothing): %s", name, e)
            return CompiledUser(arn, user_id, broken=True)
        if compiled.broken:
            log.error("user %s: attached policies %s no longer exist", name, compiled.missing)
            return CompiledUser(arn, user_id, broken=True)
        return CompiledUser(arn, user_id, compiled.identity, compiled.boundary)

    def context_for(
        self, p: Principal, *, source_ip: str, extra: Mapping[str, ContextValue] | None = None
    ) -> dict[str, ContextValue]:
        """The global condition keys of a request by ``p`` (``broker:`` names)."""
        ctx = global_context(
            now=self._clock.now(),
            source_ip=source_ip,
            mfa=p.mfa,
            token_issued_at=p.issued_at,
            mfa_authenticated_at=p.mfa_authenticated_at,
        )
        ctx["broker:PrincipalArn"] = p.role_arn
        if p.username:
            ctx["broker:username"] = p.username
        if p.user_id:
            ctx["broker:userid"] = p.user_id
        if p.source_identity:
            ctx["broker:SourceIdentity"] = p.source_identity
        for k, v in (p.tags or {}).items():
            ctx[f"broker:PrincipalTag/{k}"] = v
        if extra:
            ctx.update(extra)
        return ctx

    def decide(
        self,
        p: Principal,
        *,
        action: str,
        resource: str,
        context: Mapping[str, ContextValue],
        session_policies: Sequence[Policy] = (),
    ) -> Decision:
        """Deny when unsure: an unknown or broken role, or a user not compiled (``prepare``),
        deleted, disabled or broken, allows nothing (implicit deny)."""
        found: CompiledRole | CompiledUser | None = self._roles.get(p.role_arn)
        if found is None:
            found = self._users.get((p.role_arn, p.user_id))
        if found is None or found.broken:
            return Decision(decision="implicitDeny", matched_statements=())
        return evaluate(
            action=action,
            resource=resource,
            context=context,
            identity=found.identity,
            boundary=found.boundary,
            session=session_policies,
        )
