"""Fixtures for the storage suites: one migrated, empty database per test, on every backend.

``backend_url`` is parametrized over ``sqlite`` (a file in ``tmp_path``) and ``postgres`` (a
fresh schema in the database named by ``BROKER_TEST_POSTGRES_DSN``, dropped afterwards). Without
that variable the PostgreSQL cases are skipped with a message saying how to run them.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from broker.storage import SqlStore, migrate, open_store

POSTGRES_ENV = "BROKER_TEST_POSTGRES_DSN"
POSTGRES_SKIP = (
    "set BROKER_TEST_POSTGRES_DSN=postgresql://postgres@127.0.0.1:5432/test "
    "to run the PostgreSQL conformance suite"
)
BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]


@dataclass(frozen=True)
class Database:
    """Where a test's (not yet migrated) database lives."""

    backend: str  # "sqlite" | "postgres"
    url: str
    schema: str | None = None

    def open(self) -> SqlStore:
        return open_store(self.url, schema=self.schema)

    async def migrate(self) -> None:
        await migrate(self.url, schema=self.schema)


def postgres_dsn() -> str:
    dsn = os.environ.get(POSTGRES_ENV, "")
    if not dsn:
        pytest.skip(POSTGRES_SKIP)
    return dsn


@pytest.fixture(params=BACKENDS)
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """An empty database on each backend (not migrated)."""
    if request.param == "sqlite":
        yield Database("sqlite", f"sqlite:///{tmp_path / 'broker.db'}")
        return
    dsn = postgres_dsn()
    schema = f"test_{secrets.token_hex(6)}"
    yield Database("postgres", dsn, schema)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


@pytest.fixture
async def migrated(database: Database) -> Database:
    await database.migrate()
    return database


StoreFactory = Callable[[], Awaitable[SqlStore]]


@pytest.fixture
async def store_factory(migrated: Database) -> AsyncIterator[StoreFactory]:
    """Opens more stores on the same migrated database; closes them all afterwards."""
    opened: list[SqlStore] = []

    async def factory() -> SqlStore:
        store = migrated.open()
        opened.append(store)
        return store

    yield factory
    for store in opened:
        await store.close()


@pytest.fixture
async def store(store_factory: StoreFactory) -> SqlStore:
    return await store_factory()
