"""The auditor's batched mode: batching, flush, backpressure, retries, close; nothing lost."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from broker.clock import FrozenClock
from broker.errors import StoreError
from broker.service.audit import Auditor, RequestInfo
from broker.storage import SqlStore, migrate, open_store
from broker.storage.base import AuditEvent


class FakeAuditStore:
    """The audit methods of ``Store``, in memory, with failures and a gate to hold writes."""

    def __init__(self) -> None:
        self.rows: list[AuditEvent] = []
        self.writes: list[int] = []  # events per append_audit_many call
        self.failures = 0  # the next this many writes raise StoreError
        self.gate = asyncio.Event()
        self.gate.set()
        self.changed = asyncio.Event()  # set on every row appended

    def _maybe_fail(self) -> None:
        if self.failures:
            self.failures -= 1
            raise StoreError("append audit events failed: disk I/O error")

    async def append_audit(self, event: AuditEvent) -> None:
        await self.gate.wait()
        self._maybe_fail()
        self.rows.append(event)
        self.changed.set()

    async def append_audit_many(self, events: Sequence[AuditEvent]) -> None:
        await self.gate.wait()
        self._maybe_fail()
        self.writes.append(len(events))
        self.rows.extend(events)
        self.changed.set()


def auditor(store: FakeAuditStore, **kwargs: float) -> Auditor:
    return Auditor(store, FrozenClock(), **kwargs)  # type: ignore[arg-type]


async def rows_reach(store: FakeAuditStore, n: int, within: float = 5.0) -> None:
    """Wait (at most ``within`` seconds) until the store holds ``n`` rows."""
    async with asyncio.timeout(within):
        while len(store.rows) < n:
            store.changed.clear()
            await store.changed.wait()


async def test_batched_events_wait_for_the_writer_and_flush_commits_them() -> None:
    store = FakeAuditStore()
    a = auditor(store, flush_interval=60.0)
    for n in range(3):
        await a.record_batched("sts.x", "success", principal=f"p{n}")
    assert store.rows == []
    assert a.queued == 3
    await a.flush()
    assert [e.principal for e in store.rows] == ["p0", "p1", "p2"]
    assert store.writes == [3]  # one transaction
    assert a.queued == 0
    await a.close()


async def test_the_writer_flushes_after_the_interval() -> None:
    store = FakeAuditStore()
    a = auditor(store, flush_interval=0.02)
    await a.record_batched("sts.x", "failure", reason="trust_policy", req=RequestInfo("r1", "ip"))
    await rows_reach(store, 1)
    [e] = store.rows
    assert (e.action, e.outcome, e.reason, e.request_id, e.source_ip) == (
        "sts.x",
        "failure",
        "trust_policy",
        "r1",
        "ip",
    )
    await a.close()


async def test_the_writer_flushes_a_full_batch_without_waiting() -> None:
    store = FakeAuditStore()
    a = auditor(store, batch_size=10, flush_interval=60.0)
    for n in range(10):
        await a.record_batched("sts.x", "success", principal=str(n))
    await rows_reach(store, 10, within=2.0)
    assert store.writes == [10]
    await a.close()


async def test_a_full_queue_applies_backpressure_and_drops_nothing() -> None:
    store = FakeAuditStore()
    store.gate.clear()  # the store hangs
    a = auditor(store, batch_size=2, max_queued=4, flush_interval=0.001)
    for n in range(4):
        await a.record_batched("sts.x", "success", principal=str(n))
    blocked = asyncio.create_task(a.record_batched("sts.x", "success", principal="4"))
    await asyncio.sleep(0.05)
    assert not blocked.done()  # waits for room instead of dropping
    assert a.backlogged
    store.gate.set()
    await asyncio.wait_for(blocked, 2.0)
    await a.flush()
    assert [e.principal for e in store.rows] == ["0", "1", "2", "3", "4"]
    await a.close()


async def test_a_failed_write_is_logged_kept_and_retried(caplog: pytest.LogCaptureFixture) -> None:
    store = FakeAuditStore()
    store.failures = 2
    a = auditor(store, flush_interval=0.05)
    await a.record_batched("sts.x", "success", principal="p0")
    await a.record_batched("sts.x", "success", principal="p1")
    with caplog.at_level(logging.ERROR, logger="broker.audit"), pytest.raises(StoreError):
        await a.flush()
    assert "could not write 2 audit events" in caplog.text
    assert a.queued == 2
    assert store.rows == []
    # the writer retries on its own, in order
    await rows_reach(store, 2)
    assert [e.principal for e in store.rows] == ["p0", "p1"]
    await a.close()


async def test_flush_does_not_chase_events_recorded_after_it_started() -> None:
    store = FakeAuditStore()
    a = auditor(store, flush_interval=60.0)
    await a.record_batched("a", "success")
    store.gate.clear()
    flushing = asyncio.create_task(a.flush())
    await asyncio.sleep(0.01)
    await a.record_batched("b", "success")
    store.gate.set()
    await asyncio.wait_for(flushing, 2.0)
    assert [e.action for e in store.rows][:1] == ["a"]
    await a.close()
    assert [e.action for e in store.rows] == ["a", "b"]


async def test_close_commits_the_queue_and_later_events_write_through() -> None:
    store = FakeAuditStore()
    a = auditor(store, flush_interval=60.0)
    await a.record_batched("a", "success")
    await a.close()
    assert [e.action for e in store.rows] == ["a"]
    await a.record_batched("b", "success")
    assert [e.action for e in store.rows] == ["a", "b"]


async def test_close_waits_for_a_write_in_progress() -> None:
    store = FakeAuditStore()
    a = auditor(store, batch_size=1, flush_interval=0.001)
    store.gate.clear()
    await a.record_batched("a", "success")
    await asyncio.sleep(0.02)  # the writer is inside append_audit_many
    closing = asyncio.create_task(a.close())
    await asyncio.sleep(0.02)
    assert not closing.done()
    store.gate.set()
    await asyncio.wait_for(closing, 2.0)
    assert [e.action for e in store.rows] == ["a"]  # written once, not twice


async def test_close_retries_then_reports_what_it_could_not_write(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = FakeAuditStore()
    a = auditor(store, flush_interval=0.001)
    store.failures = 1000
    store.gate.clear()
    await a.record_batched("a", "success")
    store.gate.set()
    with caplog.at_level(logging.ERROR, logger="broker.audit"):
        await a.close()
    assert "AUDIT EVENTS LOST: 1 audit events" in caplog.text


async def test_record_writes_through() -> None:
    store = FakeAuditStore()
    a = auditor(store)
    await a.record("login", "success", principal="corp/alice", at=123.0)
    [e] = store.rows
    assert (e.action, e.principal, e.time) == ("login", "corp/alice", 123.0)
    store.failures = 1
    await a.record("login", "failure")  # logged, not raised
    await a.close()


@pytest.fixture
async def sql_store(tmp_path: Path) -> AsyncIterator[SqlStore]:
    url = f"sqlite:///{tmp_path / 'broker.db'}"
    await migrate(url)
    store = open_store(url)
    yield store
    await store.close()


async def test_batched_events_reach_a_real_store(sql_store: SqlStore) -> None:
    a = Auditor(sql_store, FrozenClock(), batch_size=50, flush_interval=0.01)
    await asyncio.gather(
        *(a.record_batched("sts.x", "success", principal=str(n)) for n in range(500))
    )
    await a.flush()
    rows = await sql_store.list_audit(limit=1000)
    assert sorted(int(e.principal) for e in rows) == list(range(500))
    await a.close()
