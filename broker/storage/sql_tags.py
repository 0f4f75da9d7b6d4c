"""Tags on users and roles: the SQL half of the ``Store`` protocol's tag methods."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Final

import sqlalchemy as sa

from broker.errors import LimitExceeded
from broker.storage import schema as t
from broker.storage.base import TagTarget
from broker.storage.sql_base import SqlBase

# Class of the (transaction-scoped, two-key) PostgreSQL locks serialising tag writes per
# principal (SQLite serialises every writer with BEGIN IMMEDIATE).
_TAGS_LOCK: Final = 0x62720007


class TagsMixin(SqlBase):
    async def list_tags(self, kind: TagTarget, principal: str) -> dict[str, str]:
        async with self._read("list tags") as conn:
            result = await conn.execute(
                sa.select(t.tags.c.key, t.tags.c.value)
                .where(t.tags.c.kind == kind, t.tags.c.principal == principal)
                .order_by(t.tags.c.key)
            )
            return {row.key: row.value for row in result}

    async def tag(
        self, kind: TagTarget, principal: str, tags: Mapping[str, str], *, limit: int
    ) -> None:
        async with self._write("tag") as conn:
            if self.dialect == "postgresql":  # two taggers must not both pass the count
                digest = hashlib.blake2b(f"{kind}\0{principal}".encode(), digest_size=4).digest()
                key_hash = int.from_bytes(digest, "big", signed=True)
                await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_TAGS_LOCK, key_hash)))
            for key, value in tags.items():
                await conn.execute(
                    self._upsert(
                        t.tags,
                        {"kind": kind, "principal": principal, "key": key, "value": value},
                        key=("kind", "principal", "key"),
                    )
                )
            count = await conn.scalar(
                sa.select(sa.func.count())
                .select_from(t.tags)
                .where(t.tags.c.kind == kind, t.tags.c.principal == principal)
            )
            if (count or 0) > limit:  # rolled back with the transaction
                raise LimitExceeded(
                    f"tag_limit:{limit}",
                    public_message=f"The number of tags has reached the maximum limit of {limit}.",
                )

    async def untag(self, kind: TagTarget, principal: str, keys: Sequence[str]) -> None:
        async with self._write("untag") as conn:
            await conn.execute(
                sa.delete(t.tags).where(
                    t.tags.c.kind == kind,
                    t.tags.c.principal == principal,
                    t.tags.c.key.in_(list(keys)),
                )
            )

    async def delete_tags(self, kind: TagTarget, principal: str) -> None:
        async with self._write("delete tags") as conn:
            await conn.execute(
                sa.delete(t.tags).where(t.tags.c.kind == kind, t.tags.c.principal == principal)
            )
