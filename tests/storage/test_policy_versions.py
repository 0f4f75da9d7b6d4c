"""Managed policy versions in the store (SQLite and PostgreSQL): the default version's document
is the policy's, numbers are never reused, at most ``limit`` versions, and races on one policy
leave it whole."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.engine import Connection

from broker.errors import AlreadyExists, Conflict, LimitExceeded, RecordNotFound
from broker.storage import Store
from broker.storage.base import ManagedPolicyRecord
from broker.storage.migrate import _config
from tests.storage.conftest import Database, StoreFactory
from tests.storage.test_migrations import run_on

T0 = 1_700_000_000.0


def doc(action: str) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": action, "Resource": "*"}],
    }


def record(name: str = "p", action: str = "s3:GetObject") -> ManagedPolicyRecord:
    return ManagedPolicyRecord(name, doc(action), "d", "api", T0, T0)


async def test_create_makes_v1_the_default(store: Store) -> None:
    await store.create_managed_policy(record())
    got = await store.get_managed_policy("p")
    assert got == record()
    assert got.default_version == "v1"
    versions = await store.list_policy_versions("p")
    assert [(v.version_id, v.is_default, v.document) for v in versions] == [
        ("v1", True, doc("s3:GetObject"))
    ]
    with pytest.raises(AlreadyExists):
        await store.create_managed_policy(record(action="s3:PutObject"))
    assert (await store.get_managed_policy("p")) == record()
    assert len(await store.list_policy_versions("p")) == 1


async def test_versions_are_added_listed_made_default_and_deleted(store: Store) -> None:
    await store.create_managed_policy(record())
    v2 = await store.add_policy_version(
        "p", doc("s3:PutObject"), set_as_default=False, now=T0 + 1, limit=5
    )
    assert (v2.version_id, v2.is_default) == ("v2", False)
    p = await store.get_managed_policy("p")
    assert p is not None
    assert p.document == doc("s3:GetObject")
    assert p.updated_at == T0
    v3 = await store.add_policy_version(
        "p", doc("s3:DeleteObject"), set_as_default=True, now=T0 + 2, limit=5
    )
    p = await store.get_managed_policy("p")
    assert p is not None
    assert (p.document, p.default_version, p.updated_at) == (doc("s3:DeleteObject"), "v3", T0 + 2)
    assert [v.version_id for v in await store.list_policy_versions("p")] == ["v3", "v2", "v1"]
    assert await store.get_policy_version("p", "v3") == v3
    got = await store.get_policy_version("p", "v1")
    assert got is not None
    assert not got.is_default
    assert got.document == doc("s3:GetObject")
    assert await store.get_policy_version("p", "v9") is None
    assert await store.get_policy_version("nope", "v1") is None

    # same clock: updated_at still moves on, so compiled roles recompile
    new = await store.set_default_policy_version("p", "v2", now=T0 + 2)
    assert (new.document, new.default_version) == (doc("s3:PutObject"), "v2")
    assert new.updated_at > T0 + 2
    with pytest.raises(Conflict):
        await store.delete_policy_version("p", "v2")
    await store.delete_policy_version("p", "v3")
    with pytest.raises(RecordNotFound):
        await store.delete_policy_version("p", "v3")
    with pytest.raises(RecordNotFound):
        await store.set_default_policy_version("p", "v3", now=T0)
    with pytest.raises(RecordNotFound):
        await store.set_default_policy_version("nope", "v1", now=T0)
    with pytest.raises(RecordNotFound):
        await store.add_policy_version("nope", doc("a:b"), set_as_default=True, now=T0, limit=5)
    # numbers are never reused
    v4 = await store.add_policy_version("p", doc("a:b"), set_as_default=False, now=T0, limit=5)
    assert v4.version_id == "v4"
    assert [v.version_id for v in await store.list_policy_versions("p")] == ["v4", "v2", "v1"]


async def test_the_limit_refuses_a_version_and_writes_nothing(store: Store) -> None:
    await store.create_managed_policy(record())
    for i in range(4):
        await store.add_policy_version("p", doc(f"s3:A{i}"), set_as_default=True, now=T0, limit=5)
    before = await store.get_managed_policy("p")
    with pytest.raises(LimitExceeded):
        await store.add_policy_version("p", doc("s3:X"), set_as_default=True, now=T0, limit=5)
    assert await store.get_managed_policy("p") == before
    assert len(await store.list_policy_versions("p")) == 5


async def test_put_replaces_the_default_versions_document_and_keeps_the_others(
    store: Store,
) -> None:
    await store.put_managed_policy(record())  # config reconciliation: creates v1
    assert [v.version_id for v in await store.list_policy_versions("p")] == ["v1"]
    await store.add_policy_version("p", doc("s3:B"), set_as_default=True, now=T0 + 1, limit=5)
    await store.put_managed_policy(record(action="s3:C"))
    p = await store.get_managed_policy("p")
    assert p is not None
    assert p.default_version == "v2"
    assert p.document == doc("s3:C")
    versions = {v.version_id: v for v in await store.list_policy_versions("p")}
    assert versions["v2"].document == doc("s3:C")
    assert versions["v2"].is_default
    assert versions["v1"].document == doc("s3:GetObject")


async def test_deleting_a_policy_deletes_its_versions(store: Store) -> None:
    await store.create_managed_policy(record())
    await store.add_policy_version("p", doc("s3:B"), set_as_default=False, now=T0, limit=5)
    await store.delete_managed_policy("p")
    assert await store.list_policy_versions("p") == []
    await store.create_managed_policy(record(action="s3:Z"))
    assert [(v.version_id, v.document) for v in await store.list_policy_versions("p")] == [
        ("v1", doc("s3:Z"))
    ]


async def test_use_counts(store: Store) -> None:
    await store.create_managed_policy(record("a"))
    await store.create_managed_policy(record("b"))
    await store.attach_policy("role", "r1", "a")
    await store.attach_policy("user", "u1", "a")
    await store.set_boundary("role", "r2", "a")
    await store.set_boundary("user", "u1", "b")
    counts = await store.policy_use_counts()
    assert (counts["a"].attachments, counts["a"].boundaries) == (2, 1)
    assert (counts["b"].attachments, counts["b"].boundaries) == (0, 1)


async def test_two_admins_creating_one_policy_one_wins(store_factory: StoreFactory) -> None:
    stores = [await store_factory(), await store_factory()]
    for round_ in range(3):
        name = f"race{round_}"
        results = await asyncio.gather(
            *(stores[i % 2].create_managed_policy(record(name, f"s3:A{i}")) for i in range(6)),
            return_exceptions=True,
        )
        won = [i for i, r in enumerate(results) if r is None]
        assert len(won) == 1, results
        assert all(isinstance(r, AlreadyExists) for r in results if r is not None), results
        p = await stores[0].get_managed_policy(name)
        versions = await stores[0].list_policy_versions(name)
        assert p is not None
        assert p.document == doc(f"s3:A{won[0]}")
        assert [(v.version_id, v.document) for v in versions] == [("v1", p.document)]


async def test_racing_for_the_last_version_slot_one_wins(store_factory: StoreFactory) -> None:
    stores = [await store_factory(), await store_factory()]
    await stores[0].create_managed_policy(record())
    for i in range(3):
        await stores[0].add_policy_version(
            "p", doc(f"s3:A{i}"), set_as_default=False, now=T0, limit=5
        )
    results = await asyncio.gather(
        *(
            stores[i % 2].add_policy_version(
                "p", doc(f"s3:R{i}"), set_as_default=True, now=T0 + 10 + i, limit=5
            )
            for i in range(6)
        ),
        return_exceptions=True,
    )
    won = [r for r in results if not isinstance(r, BaseException)]
    assert len(won) == 1, results
    assert all(isinstance(r, LimitExceeded) for r in results if isinstance(r, BaseException))
    versions = await stores[0].list_policy_versions("p")
    assert [v.version_id for v in versions] == ["v5", "v4", "v3", "v2", "v1"]
    p = await stores[0].get_managed_policy("p")
    assert p is not None
    assert p.default_version == "v5"
    assert p.document == won[0].document


async def test_the_migration_gives_existing_policies_their_v1(database: Database) -> None:
    def upgrade_to_0007(connection: Connection) -> None:
        if database.schema is not None:
            connection.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{database.schema}"'))
        command.upgrade(_config(connection), "0007")
        connection.execute(
            sa.text(
                "INSERT INTO managed_policies (name, description, document, source, created_at, "
                "updated_at) VALUES ('old', '', :doc, 'api', 1.0, 2.0)"
            ),
            {"doc": json.dumps(doc("s3:Old"))},
        )

    await run_on(database, upgrade_to_0007)
    await database.migrate()
    store = database.open()
    try:
        p = await store.get_managed_policy("old")
        assert p is not None
        assert (p.default_version, p.document) == ("v1", doc("s3:Old"))
        versions = await store.list_policy_versions("old")
        assert [(v.version_id, v.is_default, v.document) for v in versions] == [
            ("v1", True, doc("s3:Old"))
        ]
        v2 = await store.add_policy_version(
            "old", doc("a:b"), set_as_default=False, now=T0, limit=5
        )
        assert v2.version_id == "v2"
    finally:
        await store.close()
