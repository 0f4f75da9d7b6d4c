"""The audit hash chain in the store (conformance and concurrency, on SQLite and PostgreSQL):
every append links its rows to the head, and appends from two stores never fork the chain."""

from __future__ import annotations

import asyncio
import itertools
from typing import TYPE_CHECKING

from broker.domain.audit_chain import GENESIS, hash_of, verify_chain
from broker.storage.base import AuditCheckpoint, AuditEvent

if TYPE_CHECKING:
    from broker.storage import SqlStore
    from tests.storage.conftest import StoreFactory

T0 = 1_700_000_000.0


def event(n: int) -> AuditEvent:
    return AuditEvent(
        time=T0 + n / 7,
        action=f"a{n}",
        outcome="success",
        request_id=f"req-{n}",
        principal=f"p{n}",
        reason="r",
        source_ip="2001:db8::1",
        details={"n": n, "t": (1, 2), "f": 0.1, "ü": "ß", "nested": {"none": None}},
    )


async def test_appends_are_chained_from_genesis(store: SqlStore) -> None:
    assert await store.audit_head() is None
    await store.append_audit(event(0))
    await store.append_audit_many([event(1), event(2)])
    await store.append_audit(event(3))
    rows = await store.audit_chain()
    assert [r.action for r in rows] == ["a0", "a1", "a2", "a3"]
    assert rows[0].prev_hash == GENESIS
    for before, row in itertools.pairwise(rows):
        assert row.prev_hash == before.hash
    assert all(hash_of(r) == r.hash for r in rows)  # what is read back hashes the same
    assert verify_chain(rows).ok
    head = await store.audit_head()
    assert head == rows[-1]


async def test_the_chain_is_read_in_pages(store: SqlStore) -> None:
    await store.append_audit_many([event(n) for n in range(7)])
    first = await store.audit_chain(limit=3)
    rest = await store.audit_chain(after_id=first[-1].id, limit=100)
    assert [r.action for r in first + rest] == [f"a{n}" for n in range(7)]


async def test_checkpoints_round_trip_in_order(store: SqlStore) -> None:
    assert await store.list_audit_checkpoints() == []
    assert await store.latest_audit_checkpoint() is None
    a = await store.add_audit_checkpoint(AuditCheckpoint(3, "h3", T0, "tok3"))
    b = await store.add_audit_checkpoint(AuditCheckpoint(9, "h9", T0 + 1, "tok9"))
    assert a.id is not None
    assert b.id is not None
    assert a.id < b.id
    assert await store.list_audit_checkpoints() == [a, b]
    assert await store.latest_audit_checkpoint() == b


async def test_two_stores_appending_at_once_never_fork_the_chain(
    store_factory: StoreFactory,
) -> None:
    stores = [await store_factory(), await store_factory()]

    async def writer(i: int) -> None:
        s = stores[i % 2]
        for n in range(10):
            if n % 3:
                await s.append_audit(event(i * 100 + n))
            else:
                await s.append_audit_many([event(i * 100 + n), event(i * 100 + n + 50)])

    await asyncio.gather(*(writer(i) for i in range(8)))
    rows = await stores[0].audit_chain(limit=10_000)
    assert len(rows) == 8 * (10 + 4)
    report = verify_chain(rows)
    assert report.ok, report.broken
    assert len({r.prev_hash for r in rows}) == len(rows)  # no two rows follow the same row
