"""The admission limiter (``broker.web.admission``) on its own: slots, the bounded wait, the
bounded queue, refusal for event-loop lag, and what /metrics shows of it."""

from __future__ import annotations

import asyncio
import time

import pytest

from broker.errors import Overloaded
from broker.web.admission import RETRY_AFTER, Admission


async def waiters(a: Admission, names: list[str], order: list[str]) -> list[asyncio.Task[None]]:
    """One waiting request per name, queued in that order; each notes its name once admitted."""

    async def waiter(name: str) -> None:
        await a.acquire()
        order.append(name)

    tasks = []
    for name in names:
        tasks.append(asyncio.create_task(waiter(name)))
        await asyncio.sleep(0)
    return tasks


async def test_slots_up_to_the_limit_then_first_come_first_served() -> None:
    a = Admission(max_concurrency=4, queue_timeout=3600)
    for _ in range(4):
        await a.acquire()
    assert a.in_flight == 4
    order: list[str] = []
    first, second = await waiters(a, ["first", "second"], order)
    assert a.waiting == 2
    assert order == []
    a.release()  # the slot passes to the longest-waiting request
    await asyncio.wait_for(first, 5)
    assert order == ["first"]
    assert (a.in_flight, a.waiting) == (4, 1)
    a.release()
    await asyncio.wait_for(second, 5)
    assert order == ["first", "second"]
    for _ in range(4):
        a.release()
    assert (a.in_flight, a.waiting) == (0, 0)


async def test_a_queue_more_than_half_full_serves_the_newest_first() -> None:
    """Adaptive LIFO: under overload the requests served are the fresh ones (their clients
    are still there); the oldest wait out their queue_timeout or are pushed out."""
    a = Admission(max_concurrency=4, queue_timeout=3600)
    for _ in range(4):
        await a.acquire()
    order: list[str] = []
    tasks = await waiters(a, ["1", "2", "3"], order)
    a.release()
    await asyncio.sleep(0)
    assert order == ["3"]
    a.release()  # two left: half full, first come first served again
    await asyncio.sleep(0)
    assert order == ["3", "1"]
    a.release()
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert order == ["3", "1", "2"]


async def test_a_request_that_gets_no_slot_in_time_is_refused_with_retry_after() -> None:
    a = Admission(max_concurrency=1, queue_timeout=0.001)
    await a.acquire()
    with pytest.raises(Overloaded) as e:
        await a.acquire()
    assert e.value.status == 503
    assert e.value.retry_after == RETRY_AFTER
    assert e.value.reason == "overloaded:queue_timeout"
    assert a.shed["queue_timeout"] == 1
    assert a.waiting == 0
    assert a.in_flight == 1
    a.release()
    await a.acquire()  # recovered: the next one gets the free slot at once
    assert a.in_flight == 1


async def test_when_as_many_wait_as_are_served_the_oldest_is_refused() -> None:
    a = Admission(max_concurrency=2, queue_timeout=3600)
    await a.acquire()
    await a.acquire()
    order: list[str] = []
    old, middle = await waiters(a, ["old", "middle"], order)
    (new,) = await waiters(a, ["new"], order)  # the queue is full: the oldest gives way
    with pytest.raises(Overloaded) as e:
        await asyncio.wait_for(old, 5)
    assert e.value.reason == "overloaded:queue_full"
    assert a.waiting == 2
    a.release()
    a.release()
    await asyncio.wait_for(asyncio.gather(middle, new), 5)
    assert sorted(order) == ["middle", "new"]
    a.release()
    a.release()
    assert a.in_flight == 0
    assert a.shed == {"queue_full": 1}


async def test_a_cancelled_waiter_leaks_no_slot() -> None:
    a = Admission(max_concurrency=1, queue_timeout=3600)
    await a.acquire()
    gone = asyncio.create_task(a.acquire())
    await asyncio.sleep(0)
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    a.release()
    assert a.in_flight == 0
    assert a.waiting == 0
    # handed the slot, then cancelled before it ran: the slot is passed on, not lost
    await a.acquire()
    handed = asyncio.create_task(a.acquire())
    await asyncio.sleep(0)
    a.release()
    handed.cancel()
    with pytest.raises(asyncio.CancelledError):
        await handed
    assert a.in_flight == 0


async def test_the_queue_keeps_no_trace_of_requests_that_left() -> None:
    a = Admission(max_concurrency=4, queue_timeout=0.001)
    for _ in range(4):
        await a.acquire()
    for _ in range(200):
        with pytest.raises(Overloaded):
            await a.acquire()
    assert a.waiting == 0
    assert len(a._waiters) <= 17
    assert a.shed["queue_timeout"] == 200


def test_lag_over_the_queue_timeout_refuses() -> None:
    a = Admission(max_concurrency=8, queue_timeout=0.5)
    a.check_lag()
    a.lag = 0.6
    with pytest.raises(Overloaded) as e:
        a.check_lag()
    assert e.value.reason == "overloaded:event_loop_lag"
    a.lag = 0.0
    a.check_lag()  # recovers by itself once the loop keeps up
    assert a.shed["event_loop_lag"] == 1


async def test_the_ticker_sees_a_blocked_loop() -> None:
    a = Admission(max_concurrency=8, queue_timeout=0.5)
    ctx = a.running()
    await ctx.__anext__()
    await asyncio.sleep(0.01)
    time.sleep(0.3)  # noqa: ASYNC251 (the point) the loop is blocked: the ticker wakes at least 0.25 s late
    for _ in range(100):
        await asyncio.sleep(0.01)
        if a.lag > 0:
            break
    assert a.lag >= 0.25 - 0.06
    with pytest.raises(StopAsyncIteration):
        await ctx.__anext__()


def test_metrics_lines() -> None:
    a = Admission(max_concurrency=8, queue_timeout=0.5)
    a.shed["queue_timeout"] += 3
    lines = a.metrics()
    assert 'broker_overload_refused_total{reason="queue_timeout"} 3' in lines
    assert 'broker_overload_refused_total{reason="event_loop_lag"} 0' in lines
    assert "broker_requests_in_flight 0" in lines


def test_bad_limits_are_rejected() -> None:
    with pytest.raises(ValueError, match="max_concurrency"):
        Admission(max_concurrency=0, queue_timeout=1)
