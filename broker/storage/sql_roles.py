"""Roles created and changed through the IAM API: the SQL half of ``Store.create_role`` and
``Store.update_role`` (config reconciliation keeps using ``put_role``).

A role is created in one transaction with its permissions boundary and tags, or not at all;
names are unique regardless of case (as IAM's), which on PostgreSQL takes a lock that
serialises role creations (they are rare) -- SQLite serialises every writer anyway.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import sqlalchemy as sa

from broker.errors import AlreadyExists, RecordNotFound
from broker.storage import schema as t
from broker.storage.base import RoleRecord
from broker.storage.sql_base import SqlBase

_ROLE_CREATE_LOCK: Final = 0x62726F6B65720008

#: How much a change moves ``updated_at`` at least: caches key compiled roles on it.
_TICK: Final = 1e-6


def role_from_row(row: sa.Row[Any]) -> RoleRecord:
    m = row._mapping
    boundary = m["permissions_boundary"]
    return RoleRecord(
        name=m["name"],
        description=m["description"],
        trust_policy=dict(m["trust_policy"]),
        policies=list(m["policies"]),
        permissions_boundary=dict(boundary) if boundary is not None else None,
        max_session_duration=m["max_session_duration"],
        source=m["source"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
    )


class RolesMixin(SqlBase):
    async def create_role(
        self,
        role: RoleRecord,
        *,
        boundary: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        r = t.roles
        async with self._write(f"create role {role.name!r}") as conn:
            if self.dialect == "postgresql":
                await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_ROLE_CREATE_LOCK)))
            taken = (
                await conn.execute(
                    sa.select(r.c.name).where(sa.func.lower(r.c.name) == role.name.lower())
                )
            ).first()
            if taken is not None:
                raise AlreadyExists(f"role {role.name!r}: already exists as {taken[0]!r}")
            await conn.execute(
                sa.insert(r).values(
                    name=role.name,
                    description=role.description,
                    trust_policy=dict(role.trust_policy),
                    policies=[dict(p) for p in role.policies],
                    permissions_boundary=(
                        dict(role.permissions_boundary)
                        if role.permissions_boundary is not None
                        else None
                    ),
                    max_session_duration=role.max_session_duration,
                    source=role.source,
                    created_at=role.created_at,
                    updated_at=role.updated_at,
                )
            )
            # A new role starts bare: whatever was left under its name (attached while an
            # earlier role of that name was being deleted) goes.
            for table in (t.policy_attachments, t.inline_policies, t.permissions_boundaries):
                await conn.execute(
                    sa.delete(table).where(
                        table.c.principal_type == "role", table.c.principal == role.name
                    )
                )
            await conn.execute(
                sa.delete(t.tags).where(t.tags.c.kind == "role", t.tags.c.principal == role.name)
            )
            if boundary is not None:
                await self._require(conn, t.managed_policies.c.name, boundary, "managed policy")
                await conn.execute(
                    sa.insert(t.permissions_boundaries).values(
                        principal_type="role", principal=role.name, policy_name=boundary
                    )
                )
            if tags:
                await conn.execute(
                    sa.insert(t.tags),
                    [
                        {"kind": "role", "principal": role.name, "key": k, "value": v}
                        for k, v in tags.items()
                    ],
                )

    async def update_role(
        self,
        name: str,
        *,
        now: float,
        description: str | None = None,
        trust_policy: Mapping[str, Any] | None = None,
        max_session_duration: float | None = None,
    ) -> RoleRecord:
        r = t.roles
        async with self._write(f"update role {name!r}") as conn:
            row = (
                await conn.execute(sa.select(r).where(r.c.name == name).with_for_update())
            ).first()
            if row is None:
                raise RecordNotFound(f"role {name!r} not found")
            old = role_from_row(row)
            values: dict[str, Any] = {"updated_at": max(now, old.updated_at + _TICK)}
            if description is not None:
                values["description"] = description
            if trust_policy is not None:
                values["trust_policy"] = dict(trust_policy)
            if max_session_duration is not None:
                values["max_session_duration"] = max_session_duration
            await conn.execute(sa.update(r).where(r.c.name == name).values(**values))
            row = (await conn.execute(sa.select(r).where(r.c.name == name))).one()
            return role_from_row(row)
