"""The token-signing keys: the SQL half of ``Store.add_signing_key``, ``list_signing_keys``,
``update_signing_key``, ``delete_signing_key`` and ``swap_signing_key`` (the rotation's
compare-and-swap, see ``broker.keyring``)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, Final

import sqlalchemy as sa

from broker.errors import RecordNotFound
from broker.storage import schema as t
from broker.storage.base import SigningKey
from broker.storage.sql_base import SqlBase

# Serialises signing-key rotations (``swap_signing_key``) on PostgreSQL.
_SIGNING_KEYS_LOCK: Final = 0x62726F6B65720005


def _signing_key(row: sa.Row[Any]) -> SigningKey:
    m = row._mapping
    return SigningKey(
        kid=m["kid"],
        algorithm=m["algorithm"],
        private_key=bytes(m["private_key"]),
        public_jwk=dict(m["public_jwk"]),
        created_at=m["created_at"],
        retired_at=m["retired_at"],
        expires_at=m["expires_at"],
    )


class SigningKeysSql(SqlBase):
    """Signing keys, oldest first; rotations serialised."""

    async def add_signing_key(self, key: SigningKey) -> None:
        async with self._write(f"add signing key {key.kid!r}") as conn:
            await conn.execute(
                sa.insert(t.signing_keys).values(
                    kid=key.kid,
                    algorithm=key.algorithm,
                    private_key=bytes(key.private_key),
                    public_jwk=dict(key.public_jwk),
                    created_at=key.created_at,
                    retired_at=key.retired_at,
                    expires_at=key.expires_at,
                )
            )

    async def list_signing_keys(self) -> list[SigningKey]:
        """Oldest first."""
        async with self._read("list signing keys") as conn:
            rows = await conn.execute(
                sa.select(t.signing_keys).order_by(
                    t.signing_keys.c.created_at, t.signing_keys.c.kid
                )
            )
            return [_signing_key(r) for r in rows]

    async def update_signing_key(
        self, kid: str, *, retired_at: float | None, expires_at: float | None
    ) -> None:
        async with self._write("update signing key") as conn:
            result = await conn.execute(
                sa.update(t.signing_keys)
                .where(t.signing_keys.c.kid == kid)
                .values(retired_at=retired_at, expires_at=expires_at)
            )
            if result.rowcount == 0:
                raise RecordNotFound(f"signing key {kid!r} not found")

    async def delete_signing_key(self, kid: str) -> None:
        async with self._write("delete signing key") as conn:
            result = await conn.execute(
                sa.delete(t.signing_keys).where(t.signing_keys.c.kid == kid)
            )
            if result.rowcount == 0:
                raise RecordNotFound(f"signing key {kid!r} not found")

    async def swap_signing_key(
        self, new: SigningKey, *, replaces: Collection[str], replaced_expire_at: float
    ) -> bool:
        k = t.signing_keys
        async with self._write(f"rotate signing key to {new.kid!r}") as conn:
            # SQLite's BEGIN IMMEDIATE already serialises writers; PostgreSQL's READ COMMITTED
            # would let two rotations both see the old key and both insert, hence the lock.
            if self._target.dialect == "postgresql":
                await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_SIGNING_KEYS_LOCK)))
            open_kids = set(
                (await conn.execute(sa.select(k.c.kid).where(k.c.retired_at.is_(None)))).scalars()
            )
            if open_kids != set(replaces):
                return False
            if open_kids:
                await conn.execute(
                    sa.update(k)
                    .where(k.c.kid.in_(sorted(open_kids)))
                    .values(retired_at=new.created_at, expires_at=replaced_expire_at)
                )
            await conn.execute(
                sa.insert(k).values(
                    kid=new.kid,
                    algorithm=new.algorithm,
                    private_key=bytes(new.private_key),
                    public_jwk=dict(new.public_jwk),
                    created_at=new.created_at,
                    retired_at=new.retired_at,
                    expires_at=new.expires_at,
                )
            )
            return True
