"""Schema migrations: bring a database to the newest revision (alembic, run programmatically).

``await migrate(url)`` runs ``alembic upgrade head`` from ``broker/storage/migrations`` on a
connection of the broker's own async engine (no ``alembic.ini``, no second driver). It is
idempotent (at head it does nothing) and safe to run from several processes at once:

- PostgreSQL: a session-level advisory lock serialises migrators; each pending revision runs in
  its own transaction (PostgreSQL DDL is transactional). With a ``schema`` the schema is
  created first if missing, and the ``alembic_version`` table lives in it.
- SQLite: the database is first switched to WAL (persistent; retried while others hold locks),
  then the pending revisions run inside one ``BEGIN IMMEDIATE`` transaction, which is also the
  cross-process lock (SQLite has no locks that outlive a transaction).
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from broker.errors import StoreError
from broker.storage.sql import (
    StoreUrl,
    create_engine,
    map_errors,
    parse_store_url,
    sqlite_enable_wal,
)

__all__ = ["MIGRATIONS_DIR", "current_revision", "head_revision", "migrate"]

MIGRATIONS_DIR: Final = Path(__file__).resolve().parent / "migrations"
_MIGRATION_LOCK: Final = 0x62726F6B65720001  # pg_advisory_lock key ("broker" + 1)


def _config(connection: Connection | None = None) -> Config:
    cfg = Config()
    # configparser interpolation: a literal % must be doubled
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    """The newest revision this version of the broker knows."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    if head is None:  # pragma: no cover - the package always ships revisions
        raise StoreError("no schema migrations found")
    return head


def _upgrade(connection: Connection) -> None:
    command.upgrade(_config(connection), "head")


def _current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def migrate(url: str, *, schema: str | None = None) -> None:
    """Upgrade the database at ``url`` to the newest schema; ``StoreError`` if that fails.

    ``schema``: PostgreSQL only, as for ``open_store`` (``?schema=`` in the URL works too)."""
    target = parse_store_url(url, schema=schema)
    engine = create_engine(target, pooled=False)
    try:
        with map_errors("migrate", secret=target.url.password):
            try:
                await _migrate(target, engine)
            except CommandError as e:
                raise StoreError(f"migrate failed: {e}") from e
    finally:
        await engine.dispose()


async def _migrate(target: StoreUrl, engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        if target.dialect == "postgresql":
            # Session-level: held across the per-revision transactions, released when this
            # (unpooled) connection closes, even if the process dies.
            await conn.execute(sa.select(sa.func.pg_advisory_lock(_MIGRATION_LOCK)))
            if target.schema is not None:
                quoted = conn.dialect.identifier_preparer.quote_identifier(target.schema)
                await conn.execute(sa.text(f"CREATE SCHEMA IF NOT EXISTS {quoted}"))
            await conn.commit()
            await conn.run_sync(_upgrade)
            await conn.commit()
        else:
            await sqlite_enable_wal(conn)
            await conn.begin()  # BEGIN IMMEDIATE: the write lock, for the whole upgrade
            await conn.run_sync(_upgrade)
            await conn.commit()


async def current_revision(url: str, *, schema: str | None = None) -> str | None:
    """The database's schema revision (None before the first migration)."""
    target = parse_store_url(url, schema=schema)
    engine = create_engine(target, pooled=False)
    try:
        with map_errors("read schema revision", secret=target.url.password):
            async with engine.connect() as conn:
                return await conn.run_sync(_current)
    finally:
        await engine.dispose()
