"""Permission decisions for a credential: the role's identity policies, its permissions
boundary, and any session policies, evaluated in memory.

Roles are compiled once (``refresh`` re-reads the store when roles change); deciding a request
touches no database and parses nothing. Used by forward-auth, ``/v1/authorize`` and STS.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from broker.clock import Clock
from broker.config import Settings
from broker.domain.claims import ContextValue, global_context
from broker.policy import Decision, Policy, PolicyError, evaluate, parse_policy
from broker.service.policy_sets import PolicyCompiler
from broker.storage.base import AttachedPolicies, ManagedPolicyRecord, RoleRecord, Store

log = logging.getLogger(__name__)


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
class Principal:
    """What a verified credential says about its holder, for policy context keys."""

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

    def role_arn(self, name: str) -> str:
        return self._settings.arn("role", name)

    async def refresh(self) -> None:
        """Recompile roles whose record, attachments or attached policies changed in the
        store; drop deleted ones."""
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

    def role(self, arn: str) -> CompiledRole | None:
        return self._roles.get(arn)

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
        """Deny when unsure: an unknown or broken role allows nothing (implicit deny)."""
        role = self._roles.get(p.role_arn)
        if role is None or role.broken:
            return Decision(decision="implicitDeny", matched_statements=())
        return evaluate(
            action=action,
            resource=resource,
            context=context,
            identity=role.identity,
            boundary=role.boundary,
            session=session_policies,
        )
