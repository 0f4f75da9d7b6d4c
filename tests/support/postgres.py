"""A fresh PostgreSQL schema for a test that runs brokers on PostgreSQL, dropped afterwards.

The database is the one ``BROKER_TEST_POSTGRES_DSN`` names (``scripts/test`` sets it); without
it the test is skipped, so the suite still runs on a machine with no PostgreSQL.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import pytest

POSTGRES_ENV = "BROKER_TEST_POSTGRES_DSN"


@asynccontextmanager
async def fresh_schema(prefix: str) -> AsyncIterator[str]:
    """A store URL on a new schema named ``<prefix>_<random>``, dropped when the block ends."""
    dsn = os.environ.get(POSTGRES_ENV, "")
    if not dsn:
        pytest.skip(f"set {POSTGRES_ENV}=postgresql://postgres@127.0.0.1:5432/test to run it")
    schema = f"{prefix}_{secrets.token_hex(4)}"
    try:
        yield f"{dsn}?schema={schema}"
    finally:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()
