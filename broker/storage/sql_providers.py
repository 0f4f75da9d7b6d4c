"""OpenID Connect providers registered through the IAM API: the SQL half of the ``Store``
protocol's ``*_oidc_provider`` methods (a mixin ``SqlStore`` inherits).

Updates are read-modify-write under a row lock (PostgreSQL ``SELECT ... FOR UPDATE``; SQLite
write transactions are ``BEGIN IMMEDIATE``, one writer at a time), so that two concurrent
``AddClientIDToOpenIDConnectProvider`` calls both land.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from broker.errors import RecordNotFound
from broker.storage import schema as t
from broker.storage.base import OidcProviderRecord
from broker.storage.sql_base import SqlBase

_P = t.oidc_providers


def _values(p: OidcProviderRecord) -> dict[str, Any]:
    return {
        "name": p.name,
        "url": p.url,
        "client_ids": list(p.client_ids),
        "thumbprints": list(p.thumbprints),
        "tags": [[k, v] for k, v in p.tags],
        "created_at": p.created_at,
        "updated_at": p.updated_at,
    }


def _record(row: Any) -> OidcProviderRecord:
    return OidcProviderRecord(
        name=row.name,
        url=row.url,
        client_ids=tuple(str(c) for c in row.client_ids),
        thumbprints=tuple(str(x) for x in row.thumbprints),
        tags=tuple((str(k), str(v)) for k, v in row.tags),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


class OidcProvidersMixin(SqlBase):
    async def create_oidc_provider(self, provider: OidcProviderRecord) -> None:
        async with self._write(f"create oidc provider {provider.name!r}") as conn:
            await conn.execute(sa.insert(_P).values(**_values(provider)))

    async def get_oidc_provider(self, name: str) -> OidcProviderRecord | None:
        async with self._read("get oidc provider") as conn:
            row = (await conn.execute(sa.select(_P).where(_P.c.name == name))).first()
        return _record(row) if row is not None else None

    async def list_oidc_providers(self) -> list[OidcProviderRecord]:
        async with self._read("list oidc providers") as conn:
            rows = await conn.execute(sa.select(_P).order_by(_P.c.name))
            return [_record(r) for r in rows]

    async def update_oidc_provider(
        self, name: str, change: Callable[[OidcProviderRecord], OidcProviderRecord]
    ) -> OidcProviderRecord:
        async with self._write(f"update oidc provider {name!r}") as conn:
            stmt = sa.select(_P).where(_P.c.name == name).with_for_update()
            row = (await conn.execute(stmt)).first()
            if row is None:
                raise RecordNotFound(f"oidc provider {name!r} not found")
            current = _record(row)
            new = change(current)
            values = _values(new)
            del values["name"], values["url"], values["created_at"]
            await conn.execute(sa.update(_P).where(_P.c.name == name).values(**values))
        return OidcProviderRecord(
            name=current.name,
            url=current.url,
            client_ids=new.client_ids,
            thumbprints=new.thumbprints,
            tags=new.tags,
            created_at=current.created_at,
            updated_at=new.updated_at,
        )

    async def delete_oidc_provider(self, name: str) -> None:
        async with self._write("delete oidc provider") as conn:
            result = await conn.execute(sa.delete(_P).where(_P.c.name == name))
            if result.rowcount == 0:
                raise RecordNotFound(f"oidc provider {name!r} not found")
