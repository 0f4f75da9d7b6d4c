"""Roles: reconciled from the config into the store, and matched against identities.

For a login through provider P, every role whose trust policy allows
``sts:AssumeRoleWithWebIdentity`` for ``{"Federated": "P"}``, with the claims as ``P:<claim>``
condition keys, is a candidate (contract C2).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from broker.clock import Clock
from broker.config import Settings
from broker.domain.claims import Identity, claims_to_context, federated_principal, global_context
from broker.policy import (
    Decision,
    Finding,
    Policy,
    PolicyError,
    evaluate_trust,
    parse_policy,
    validate_policy,
)
from broker.storage.base import RoleRecord, Store

log = logging.getLogger(__name__)

WEB_IDENTITY_ACTION = "sts:AssumeRoleWithWebIdentity"


@dataclass(frozen=True)
class Candidate:
    role: RoleRecord
    arn: str
    decision: Decision


PolicyKind = Literal["identity", "resource"]


def config_policies(settings: Settings) -> Iterator[tuple[Mapping[str, Any], str, PolicyKind]]:
    """Every policy document in the config: (document, config path, kind)."""
    for name, r in settings.roles.items():
        yield r.trust_policy, f"roles.{name}.trust_policy", "resource"
        for i, p in enumerate(r.policies):
            yield p, f"roles.{name}.policies[{i}]", "identity"
        if r.permissions_boundary is not None:
            yield r.permissions_boundary, f"roles.{name}.permissions_boundary", "identity"
    for name, mp in settings.policies.items():
        yield mp.document, f"policies.{name}.document", "identity"


def policy_problems(settings: Settings) -> list[str]:
    """Every policy error in the config, by the config path it came from."""
    problems: list[str] = []
    for doc, where, kind in config_policies(settings):
        try:
            parse_policy(dict(doc), name=where, kind=kind)
        except PolicyError as e:
            for path, msg in e.errors:
                problems.append(f"{where}: {path}: {msg}" if path else f"{where}: {msg}")
    return problems


#: The validator's codes for trust policies that admit every identity of a provider.
FEDERATED_TRUST_CODE_PREFIX = "FEDERATED_TRUST_"


def _warning_line(where: str, f: Finding) -> str:
    where_path = f"{where}: {f.path}" if f.path else where
    return f"{where_path}: {f.message} [{f.code}] (fix: {f.fix})"


def policy_warnings(settings: Settings) -> list[str]:
    """Every validation finding of the config's policies that does not stop start-up (see
    :func:`broker.policy.validate_policy`), by config path, with its fix."""
    warnings: list[str] = []
    for doc, where, kind in config_policies(settings):
        report = validate_policy(dict(doc), kind=kind)
        if report.policy is None:
            continue  # a parse error: policy_problems reports it
        for f in report.findings:
            if f.code.startswith(FEDERATED_TRUST_CODE_PREFIX):
                continue  # trust_policy_warnings reports it (and logs it at start-up)
            warnings.append(_warning_line(where, f))
    return warnings


def trust_policy_warnings(settings: Settings) -> list[str]:
    """Risky-but-valid trust policies: a statement that lets a federated principal assume the
    role with no condition on ``<provider>:sub``, or one that matches every subject
    (``StringLike "*"``). Such a role admits every identity the provider vouches for -- for a
    CI or Kubernetes issuer, every workload of every tenant. The validator's
    ``FEDERATED_TRUST_*`` findings; reported at start-up (logged) and by ``broker
    check-config``."""
    warnings: list[str] = []
    for name, r in settings.roles.items():
        report = validate_policy(dict(r.trust_policy), kind="resource")
        for f in report.findings:
            if f.code.startswith(FEDERATED_TRUST_CODE_PREFIX):
                warnings.append(_warning_line(f"roles.{name}.trust_policy", f))
    return warnings


class RoleCatalog:
    def __init__(self, settings: Settings, store: Store, clock: Clock) -> None:
        self._settings = settings
        self._store = store
        self._clock = clock
        self._trust_cache: dict[str, tuple[float, Policy]] = {}

    async def reconcile(self) -> None:
        """Make the store's config-declared roles equal the file's; API roles are left alone."""
        now = self._clock.now()
        existing = {r.name: r for r in await self._store.list_roles()}
        for name, rc in self._settings.roles.items():
            old = existing.get(name)
            await self._store.put_role(
                RoleRecord(
                    name=name,
                    description=rc.description,
                    trust_policy=dict(rc.trust_policy),
                    policies=[dict(p) for p in rc.policies],
                    permissions_boundary=(
                        dict(rc.permissions_boundary) if rc.permissions_boundary else None
                    ),
                    max_session_duration=rc.max_session_duration,
                    source="config",
                    created_at=old.created_at if old else now,
                    updated_at=now,
                )
            )
            # config validation checked the names; [policies] are reconciled before roles
            await self._store.set_attached_policies("role", name, rc.managed_policies)
        for name, old in existing.items():
            if old.source == "config" and name not in self._settings.roles:
                await self._store.delete_role(name)
                log.info("role %s was removed from the config; deleted", name)

    def arn(self, name: str) -> str:
        return self._settings.arn("role", name)

    def _trust(self, role: RoleRecord) -> Policy | None:
        cached = self._trust_cache.get(role.name)
        if cached and cached[0] == role.updated_at:
            return cached[1]
        try:
            p = parse_policy(dict(role.trust_policy), name=f"{role.name}/trust", kind="resource")
        except PolicyError as e:
            # A broken trust policy admits nobody (deny when unsure), and says so.
            log.error("role %s has an invalid trust policy: %s", role.name, e)
            return None
        self._trust_cache[role.name] = (role.updated_at, p)
        return p

    async def candidates(self, identity: Identity, *, source_ip: str) -> list[Candidate]:
        """Roles this identity may take, by name order."""
        now = self._clock.now()
        context: dict[str, str | list[str]] = {
            **global_context(
                now=now,
                source_ip=source_ip,
                mfa=identity.mfa,
                mfa_authenticated_at=identity.mfa_authenticated_at,
            ),
            **claims_to_context(identity.provider, identity.claims),
        }
        principal = federated_principal(identity.provider, self._settings.server.account_id)
        out = []
        for role in sorted(await self._store.list_roles(), key=lambda r: r.name):
            trust = self._trust(role)
            if trust is None:
                continue
            arn = self.arn(role.name)
            d = evaluate_trust(
                trust,
                principal=principal,
                action=WEB_IDENTITY_ACTION,
                context=context,
                resource=arn,
            )
            if d.decision == "allowed":
                out.append(Candidate(role=role, arn=arn, decision=d))
        return out
