"""IAM users' access keys (the IAM API's ``*AccessKey*`` actions): the SQL half of the
``Store`` protocol's access-key methods, on the ``access_keys`` table.

The secret is stored sealed (``secret_sealed``, by the service under the KEK); nothing here
reads or writes it in the clear. The per-user limit is checked and the row inserted in one
transaction with the user's row locked (PostgreSQL; SQLite serialises every writer), so two
concurrent creations never leave a third key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from broker.errors import LimitExceeded, RecordNotFound
from broker.storage import schema as t
from broker.storage.base import AccessKeyRecord, AccessKeyUse
from broker.storage.sql_base import SqlBase


def access_key_from_row(row: sa.Row[Any]) -> AccessKeyRecord:
    m = row._mapping
    return AccessKeyRecord(
        access_key_id=m["access_key_id"],
        user_id=m["user_id"],
        secret_sealed=bytes(m["secret_sealed"]),
        seal_kid=m["seal_kid"],
        status=m["status"],
        created_at=m["created_at"],
        last_used_at=m["last_used_at"],
        last_used_region=m["last_used_region"],
        last_used_service=m["last_used_service"],
    )


class AccessKeysSql(SqlBase):
    async def create_access_key(self, key: AccessKeyRecord, *, limit: int) -> None:
        k, u = t.access_keys, t.users
        async with self._write("create access key") as conn:
            user = (
                await conn.execute(sa.select(u.c.id).where(u.c.id == key.user_id).with_for_update())
            ).first()
            if user is None:
                raise RecordNotFound(f"user {key.user_id!r} not found")
            count = (
                await conn.execute(
                    sa.select(sa.func.count()).select_from(k).where(k.c.user_id == key.user_id)
                )
            ).scalar_one()
            if count >= limit:
                raise LimitExceeded(
                    "access_key_limit",
                    public_message=f"Cannot exceed quota for AccessKeysPerUser: {limit}",
                )
            await conn.execute(
                sa.insert(k).values(
                    access_key_id=key.access_key_id,
                    user_id=key.user_id,
                    secret_sealed=key.secret_sealed,
                    seal_kid=key.seal_kid,
                    status=key.status,
                    created_at=key.created_at,
                )
            )

    async def get_access_key(self, access_key_id: str) -> AccessKeyRecord | None:
        k = t.access_keys
        async with self._read("get access key") as conn:
            row = (
                await conn.execute(sa.select(k).where(k.c.access_key_id == access_key_id))
            ).first()
        return access_key_from_row(row) if row is not None else None

    async def list_access_keys(self, user_id: str) -> list[AccessKeyRecord]:
        k = t.access_keys
        stmt = (
            sa.select(k).where(k.c.user_id == user_id).order_by(k.c.created_at, k.c.access_key_id)
        )
        async with self._read("list access keys") as conn:
            return [access_key_from_row(r) for r in await conn.execute(stmt)]

    async def set_access_key_status(self, access_key_id: str, user_id: str, status: str) -> None:
        k = t.access_keys
        async with self._write("update access key") as conn:
            done = await conn.execute(
                sa.update(k)
                .where(k.c.access_key_id == access_key_id, k.c.user_id == user_id)
                .values(status=status)
            )
            if done.rowcount == 0:
                raise RecordNotFound(f"access key {access_key_id!r} not found")

    async def delete_access_key(self, access_key_id: str, user_id: str) -> None:
        k = t.access_keys
        async with self._write("delete access key") as conn:
            done = await conn.execute(
                sa.delete(k).where(k.c.access_key_id == access_key_id, k.c.user_id == user_id)
            )
            if done.rowcount == 0:
                raise RecordNotFound(f"access key {access_key_id!r} not found")

    async def record_access_key_use(self, uses: Mapping[str, AccessKeyUse]) -> None:
        """Last-used times, regions and services, batched; an older time never replaces a
        newer one (another instance may have flushed a later use)."""
        if not uses:
            return
        k = t.access_keys
        async with self._write("record access key use") as conn:
            for akid, use in sorted(uses.items()):
                await conn.execute(
                    sa.update(k)
                    .where(
                        k.c.access_key_id == akid,
                        sa.or_(k.c.last_used_at.is_(None), k.c.last_used_at < use.at),
                    )
                    .values(
                        last_used_at=use.at,
                        last_used_region=use.region,
                        last_used_service=use.service,
                    )
                )
