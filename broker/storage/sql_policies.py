"""The SQL store's managed policies and their versions (a mixin of ``SqlStore``).

A managed policy is one ``managed_policies`` row (its ``document`` is the default version's, so
the authorizer compiles one row per policy) and one ``policy_versions`` row per version.
Writers that change a policy's versions lock its row first (``FOR UPDATE`` on PostgreSQL;
SQLite's ``BEGIN IMMEDIATE`` serialises every writer), so that the version count, the next
version number and the default are read and written as one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from broker.errors import AlreadyExists, Conflict, LimitExceeded, RecordNotFound
from broker.storage import schema as t
from broker.storage.base import ManagedPolicyRecord, PolicyUse, PolicyUseCount, PolicyVersion
from broker.storage.sql_base import SqlBase


def _managed_policy(row: sa.Row[Any]) -> ManagedPolicyRecord:
    m = row._mapping
    return ManagedPolicyRecord(
        name=m["name"],
        document=dict(m["document"]),
        description=m["description"],
        source=m["source"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
        default_version=m["default_version"],
    )


def _policy_use(row: sa.Row[Any], *, as_boundary: bool) -> PolicyUse:
    m = row._mapping
    return PolicyUse(
        principal_type=m["principal_type"], principal=m["principal"], as_boundary=as_boundary
    )


def _version(row: sa.Row[Any], default: str) -> PolicyVersion:
    m = row._mapping
    return PolicyVersion(
        policy_name=m["policy_name"],
        version_id=m["version_id"],
        document=dict(m["document"]),
        created_at=m["created_at"],
        is_default=m["version_id"] == default,
    )


def version_number(version_id: str) -> int:
    """``v12`` -> 12 (0 for anything else: sorts first, matches nothing)."""
    digits = version_id[1:]
    return int(digits) if version_id.startswith("v") and digits.isdigit() else 0


def _bumped(old: float, now: float) -> float:
    """A later ``updated_at`` than ``old`` even if the clock has not moved (or went back)."""
    return max(now, old + 1e-6)


class ManagedPoliciesSql(SqlBase):
    """Managed policies and versions on ``SqlStore``'s engine (see the module docstring)."""

    async def _lock_policy(self, conn: AsyncConnection, name: str) -> sa.Row[Any]:
        """The policy's row, locked until the transaction ends; ``RecordNotFound``."""
        p = t.managed_policies
        stmt = sa.select(p).where(p.c.name == name)
        if self.dialect == "postgresql":
            stmt = stmt.with_for_update()
        row = (await conn.execute(stmt)).first()
        if row is None:
            raise RecordNotFound(f"managed policy {name!r} not found")
        return row

    async def put_managed_policy(self, policy: ManagedPolicyRecord) -> None:
        """Create or replace (every field, including ``created_at``) the policy of that name;
        its attachments are kept. The document replaces the default version's (a new policy
        gets it as ``v1``); the other versions are kept."""
        values = {
            "name": policy.name,
            "description": policy.description,
            "document": dict(policy.document),
            "source": policy.source,
            "created_at": policy.created_at,
            "updated_at": policy.updated_at,
            "default_version": "v1",
            "next_version": 2,
        }
        p = t.managed_policies
        keep = ("name", "default_version", "next_version")
        async with self._write(f"put managed policy {policy.name!r}") as conn:
            stmt = self._upsert(
                p,
                values,
                key=("name",),
                update={c: (lambda ex, c=c: ex[c]) for c in values if c not in keep},
            )
            await conn.execute(stmt)
            default = (
                await conn.execute(sa.select(p.c.default_version).where(p.c.name == policy.name))
            ).scalar_one()
            version = {
                "policy_name": policy.name,
                "version_id": default,
                "document": dict(policy.document),
                "created_at": policy.updated_at,
            }
            await conn.execute(
                self._upsert(
                    t.policy_versions,
                    version,
                    key=("policy_name", "version_id"),
                    update={"document": lambda ex: ex["document"]},
                )
            )

    async def create_managed_policy(self, policy: ManagedPolicyRecord) -> None:
        """Insert the policy and its ``v1`` in one transaction; ``AlreadyExists`` if taken."""
        doc = dict(policy.document)
        async with self._write(f"create managed policy {policy.name!r}") as conn:
            try:
                await conn.execute(
                    sa.insert(t.managed_policies).values(
                        name=policy.name,
                        description=policy.description,
                        document=doc,
                        source=policy.source,
                        created_at=policy.created_at,
                        updated_at=policy.updated_at,
                        default_version="v1",
                        next_version=2,
                    )
                )
            except sa.exc.IntegrityError:
                raise AlreadyExists(f"managed policy {policy.name!r} already exists") from None
            v = t.policy_versions
            # versions left under the name by a deletion racing with this insert go first
            await conn.execute(sa.delete(v).where(v.c.policy_name == policy.name))
            await conn.execute(
                sa.insert(v).values(
                    policy_name=policy.name,
                    version_id="v1",
                    document=doc,
                    created_at=policy.created_at,
                )
            )

    async def get_managed_policy(self, name: str) -> ManagedPolicyRecord | None:
        async with self._read("get managed policy") as conn:
            row = (
                await conn.execute(
                    sa.select(t.managed_policies).where(t.managed_policies.c.name == name)
                )
            ).first()
        return _managed_policy(row) if row is not None else None

    async def list_managed_policies(self) -> list[ManagedPolicyRecord]:
        """By name."""
        async with self._read("list managed policies") as conn:
            rows = await conn.execute(
                sa.select(t.managed_policies).order_by(t.managed_policies.c.name)
            )
            return [_managed_policy(r) for r in rows]

    async def delete_managed_policy(self, name: str) -> None:
        """``RecordNotFound`` if missing; its versions, attachments and boundary uses go
        with it."""
        async with self._write("delete managed policy") as conn:
            result = await conn.execute(
                sa.delete(t.managed_policies).where(t.managed_policies.c.name == name)
            )
            if result.rowcount == 0:
                raise RecordNotFound(f"managed policy {name!r} not found")
            for table in (t.policy_attachments, t.permissions_boundaries):
                await conn.execute(sa.delete(table).where(table.c.policy_name == name))
            v = t.policy_versions
            await conn.execute(sa.delete(v).where(v.c.policy_name == name))

    async def policy_uses(self, name: str) -> list[PolicyUse]:
        """Attachments (``as_boundary=False``) and boundary uses (``True``) of the policy,
        sorted by (principal type, principal, as_boundary); empty for an unknown policy."""
        a, b = t.policy_attachments, t.permissions_boundaries
        async with self._read("list policy uses", snapshot=True) as conn:
            attached = await conn.execute(sa.select(a).where(a.c.policy_name == name))
            uses = [_policy_use(r, as_boundary=False) for r in attached]
            bounded = await conn.execute(sa.select(b).where(b.c.policy_name == name))
            uses += [_policy_use(r, as_boundary=True) for r in bounded]
        return sorted(uses, key=lambda u: (u.principal_type, u.principal, u.as_boundary))

    async def policy_use_counts(self) -> dict[str, PolicyUseCount]:
        a, b = t.policy_attachments, t.permissions_boundaries
        counts: dict[str, list[int]] = {}
        async with self._read("count policy uses", snapshot=True) as conn:
            for i, table in enumerate((a, b)):
                rows = await conn.execute(
                    sa.select(table.c.policy_name, sa.func.count()).group_by(table.c.policy_name)
                )
                for name, n in rows:
                    counts.setdefault(name, [0, 0])[i] = int(n)
        return {k: PolicyUseCount(v[0], v[1]) for k, v in counts.items()}

    # -- versions

    async def add_policy_version(
        self,
        name: str,
        document: Mapping[str, Any],
        *,
        set_as_default: bool,
        now: float,
        limit: int,
    ) -> PolicyVersion:
        p, v = t.managed_policies, t.policy_versions
        doc = dict(document)
        async with self._write(f"add a version to managed policy {name!r}") as conn:
            row = (await self._lock_policy(conn, name))._mapping
            count = (
                await conn.execute(
                    sa.select(sa.func.count()).select_from(v).where(v.c.policy_name == name)
                )
            ).scalar_one()
            if count >= limit:
                raise LimitExceeded(
                    f"policy_versions_limit:{name}",
                    public_message=f"A managed policy can have up to {limit} versions. Before "
                    "you create a new version, you must delete an existing version.",
                )
            version_id = f"v{row['next_version']}"
            await conn.execute(
                sa.insert(v).values(
                    policy_name=name, version_id=version_id, document=doc, created_at=now
                )
            )
            changes: dict[str, Any] = {"next_version": row["next_version"] + 1}
            if set_as_default:
                changes.update(
                    default_version=version_id,
                    document=doc,
                    updated_at=_bumped(row["updated_at"], now),
                )
            await conn.execute(sa.update(p).where(p.c.name == name).values(**changes))
        return PolicyVersion(name, version_id, doc, now, set_as_default)

    async def list_policy_versions(self, name: str) -> list[PolicyVersion]:
        p, v = t.managed_policies, t.policy_versions
        async with self._read("list policy versions", snapshot=True) as conn:
            default = (
                await conn.execute(sa.select(p.c.default_version).where(p.c.name == name))
            ).scalar_one_or_none()
            if default is None:
                return []
            rows = await conn.execute(sa.select(v).where(v.c.policy_name == name))
            versions = [_version(r, default) for r in rows]
        return sorted(versions, key=lambda x: version_number(x.version_id), reverse=True)

    async def get_policy_version(self, name: str, version_id: str) -> PolicyVersion | None:
        p, v = t.managed_policies, t.policy_versions
        async with self._read("get policy version", snapshot=True) as conn:
            default = (
                await conn.execute(sa.select(p.c.default_version).where(p.c.name == name))
            ).scalar_one_or_none()
            if default is None:
                return None
            row = (
                await conn.execute(
                    sa.select(v).where(v.c.policy_name == name, v.c.version_id == version_id)
                )
            ).first()
        return _version(row, default) if row is not None else None

    async def set_default_policy_version(
        self, name: str, version_id: str, *, now: float
    ) -> ManagedPolicyRecord:
        p, v = t.managed_policies, t.policy_versions
        async with self._write(f"set the default version of managed policy {name!r}") as conn:
            row = (await self._lock_policy(conn, name))._mapping
            version = (
                await conn.execute(
                    sa.select(v.c.document).where(
                        v.c.policy_name == name, v.c.version_id == version_id
                    )
                )
            ).first()
            if version is None:
                raise RecordNotFound(f"policy {name!r} has no version {version_id!r}")
            if row["default_version"] != version_id:
                await conn.execute(
                    sa.update(p)
                    .where(p.c.name == name)
                    .values(
                        default_version=version_id,
                        document=dict(version.document),
                        updated_at=_bumped(row["updated_at"], now),
                    )
                )
            new = (await conn.execute(sa.select(p).where(p.c.name == name))).one()
        return _managed_policy(new)

    async def delete_policy_version(self, name: str, version_id: str) -> None:
        v = t.policy_versions
        async with self._write(f"delete a version of managed policy {name!r}") as conn:
            row = (await self._lock_policy(conn, name))._mapping
            if row["default_version"] == version_id:
                raise Conflict(
                    f"default_version:{name}:{version_id}",
                    public_message="Cannot delete the default version of a policy: make "
                    "another version the default first.",
                )
            result = await conn.execute(
                sa.delete(v).where(v.c.policy_name == name, v.c.version_id == version_id)
            )
            if result.rowcount == 0:
                raise RecordNotFound(f"policy {name!r} has no version {version_id!r}")
