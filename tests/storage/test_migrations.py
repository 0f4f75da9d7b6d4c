"""Migrations: idempotent, numbered, shipped with the package, and in step with ``schema.py``."""

from __future__ import annotations

import importlib.util
import itertools
import re
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

import broker.storage
from broker.errors import StoreError
from broker.storage import current_revision, head_revision
from broker.storage.migrate import MIGRATIONS_DIR
from broker.storage.schema import metadata
from broker.storage.sql import create_engine, parse_store_url

if TYPE_CHECKING:
    from tests.storage.conftest import Database


async def run_on(database: Database, fn: Any) -> Any:
    """Run ``fn(sync_connection)`` on the test database (inside a transaction, committed)."""
    engine = create_engine(parse_store_url(database.url, schema=database.schema), pooled=False)
    try:
        async with engine.begin() as conn:
            return await conn.run_sync(fn)
    finally:
        await engine.dispose()


def schema_diff(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "compare_server_default": True}
    )
    return list(compare_metadata(context, metadata))


async def test_fresh_database_has_no_revision(database: Database) -> None:
    assert await current_revision(database.url, schema=database.schema) is None


async def test_migrate_brings_the_database_to_head(database: Database) -> None:
    await database.migrate()
    assert await current_revision(database.url, schema=database.schema) == head_revision()


async def test_migrating_twice_is_a_no_op(database: Database) -> None:
    await database.migrate()
    store = database.open()
    try:
        await store.set_meta("kept", "yes")
        await database.migrate()
        assert await store.get_meta("kept") == "yes"
    finally:
        await store.close()
    assert await current_revision(database.url, schema=database.schema) == head_revision()


async def test_migrated_schema_matches_the_metadata(database: Database) -> None:
    await database.migrate()
    assert await run_on(database, schema_diff) == []


async def test_an_unmigrated_database_differs_from_the_metadata(database: Database) -> None:
    # the comparison above is not vacuous
    diff = await run_on(database, schema_diff)
    assert {d[1].name for d in diff if d[0] == "add_table"} == set(metadata.tables)


async def test_a_database_from_a_newer_broker_is_refused(database: Database) -> None:
    await database.migrate()
    await run_on(
        database, lambda c: c.execute(sa.text("UPDATE alembic_version SET version_num='9999'"))
    )
    with pytest.raises(StoreError) as e:
        await database.migrate()
    assert "9999" in e.value.reason


async def test_sqlite_databases_are_switched_to_wal(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'wal.db'}"
    await broker.storage.migrate(url)
    connection = sqlite3.connect(tmp_path / "wal.db")
    try:
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        connection.close()


def test_revisions_are_numbered_and_form_one_chain() -> None:
    script = ScriptDirectory(str(MIGRATIONS_DIR))
    revisions = list(script.walk_revisions())[::-1]  # oldest first
    assert [r.revision for r in revisions] == [f"{n:04d}" for n in range(1, len(revisions) + 1)]
    assert revisions[0].down_revision is None
    for before, after in itertools.pairwise(revisions):
        assert after.down_revision == before.revision
    for rev in revisions:
        assert rev.path is not None
        assert re.fullmatch(rf"{rev.revision}_[a-z0-9_]+\.py", Path(rev.path).name)
    assert script.get_heads() == [head_revision()]


def test_migrations_ship_inside_the_package() -> None:
    package_dir = Path(broker.storage.__file__).parent
    assert package_dir / "migrations" == MIGRATIONS_DIR
    assert (MIGRATIONS_DIR / "env.py").is_file()
    assert list((MIGRATIONS_DIR / "versions").glob("0001_*.py"))
    spec = importlib.util.find_spec("broker.storage.migrations")
    assert spec is not None
    assert spec.origin is not None
    assert Path(spec.origin).parent == MIGRATIONS_DIR


def test_the_alembic_cli_is_refused_without_a_connection() -> None:
    from alembic import command

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with pytest.raises(RuntimeError, match=r"broker\.storage\.migrate"):
        command.upgrade(config, "head", sql=False)
