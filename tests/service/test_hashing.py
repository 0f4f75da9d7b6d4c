"""The password-hashing pool: argon2 off the event loop, in low-priority threads, bounded."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator

import pytest

from broker.errors import Overloaded
from broker.service.hashing import PasswordHashing


@pytest.fixture
async def pool() -> AsyncIterator[PasswordHashing]:
    hashing = PasswordHashing(workers=1, queue=1)
    yield hashing
    hashing.close()


async def test_hash_and_verify(pool: PasswordHashing) -> None:
    h = await pool.hash("correct horse battery")
    assert h.startswith("$argon2id$")
    assert await pool.verify(h, "correct horse battery")
    assert not await pool.verify(h, "wrong")
    assert not await pool.verify(None, "anything")  # an unknown user: same cost, never True
    assert not await pool.verify("not-a-hash", "anything")


async def test_work_runs_in_a_worker_thread_of_lowered_priority(pool: PasswordHashing) -> None:
    def where() -> tuple[str, int, int]:
        policy = os.sched_getscheduler(0) if hasattr(os, "sched_getscheduler") else -1
        nice = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        return threading.current_thread().name, policy, nice

    name, policy, nice = await pool._run(where)
    assert name.startswith("broker-hash")
    assert name != threading.current_thread().name
    assert policy == getattr(os, "SCHED_IDLE", None) or nice == 19


async def test_a_full_pool_refuses_at_once_and_recovers(pool: PasswordHashing) -> None:
    release = threading.Event()
    busy = [asyncio.ensure_future(pool._run(release.wait, 30)) for _ in range(pool.capacity)]
    await asyncio.sleep(0)
    with pytest.raises(Overloaded) as e:
        await pool.verify(None, "x")
    assert (e.value.status, e.value.retry_after) == (503, 1)
    release.set()
    assert await asyncio.gather(*busy) == [True] * pool.capacity
    assert not await pool.verify(None, "x")  # slots given back


async def test_a_cancelled_caller_keeps_its_slot_until_the_thread_is_done() -> None:
    """The bound is on the threads' real work, not on the callers still waiting for it."""
    pool = PasswordHashing(workers=1, queue=0)
    started, release = threading.Event(), threading.Event()

    def job() -> bool:
        started.set()
        return release.wait(30)

    task = asyncio.ensure_future(pool._run(job))
    # once the worker has started it, the job cannot be cancelled any more
    assert await asyncio.to_thread(started.wait, 30)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    with pytest.raises(Overloaded):
        await pool.verify(None, "x")
    release.set()
    for _ in range(100):  # the workers give the slots back as they finish
        try:
            assert not await pool.verify(None, "x")
            break
        except Overloaded:
            await asyncio.sleep(0.05)
    else:
        raise AssertionError("the slots were never given back")
    pool.close()
