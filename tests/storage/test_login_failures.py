"""Failed-login counts in the store (SQLite and PostgreSQL): shared by every instance, one row
per key, never evicted by other keys, and exact under concurrent failures on two instances."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from broker.clock import FrozenClock
from broker.config import LoginConfig
from broker.errors import RateLimited
from broker.service.login_limits import LoginLimits

if TYPE_CHECKING:  # fixtures come from conftest.py; these are only their types
    from tests.storage.conftest import StoreFactory

T0 = 1_700_000_000.0


async def test_counts_accumulate_in_a_window_and_restart_after_it(
    store_factory: StoreFactory,
) -> None:
    store = await store_factory()
    for n in (1, 2, 3):
        [c] = await store.add_login_failures(["user:a"], now=T0 + n, window=100)
        assert (c.key, c.count, c.window_end) == ("user:a", n, T0 + 1 + 100)
    a, b = await store.add_login_failures(["user:a", "address:x"], now=T0 + 50, window=100)
    assert (a.count, b.count) == (4, 1)
    # the window (from the first failure) has ended: a new one starts at 1
    [c] = await store.add_login_failures(["user:a"], now=T0 + 101, window=100)
    assert (c.count, c.window_end) == (1, T0 + 101 + 100)


async def test_forgive_clears_or_takes_back_one(store_factory: StoreFactory) -> None:
    store = await store_factory()
    for _ in range(3):
        await store.add_login_failures(["user:a", "address:x"], now=T0, window=100)
    await store.forgive_login_failures(clear=["user:a"], once=["address:x"])
    a, x = await store.add_login_failures(["user:a", "address:x"], now=T0, window=100)
    assert (a.count, x.count) == (1, 3)
    await store.forgive_login_failures(once=["user:nobody"])  # nothing to forgive: no error
    await store.forgive_login_failures()


async def test_purge_deletes_only_ended_windows(store_factory: StoreFactory) -> None:
    store = await store_factory()
    await store.add_login_failures(["user:old"], now=T0, window=10)
    await store.add_login_failures(["user:new"], now=T0 + 5, window=10)
    assert await store.purge_login_failures(T0 + 12) == 1
    [new] = await store.add_login_failures(["user:new"], now=T0 + 12, window=10)
    assert new.count == 2


async def test_counts_are_shared_by_two_instances(store_factory: StoreFactory) -> None:
    """Two stores (two connection pools, as two broker processes) count against one limit."""
    config = LoginConfig(max_failures_per_user=3, max_failures_per_address=1000)
    clock = FrozenClock(T0)
    a, b = [LoginLimits(await store_factory(), config, clock) for _ in range(2)]
    await a.attempt("local", "alice", "10.0.0.1")
    await b.attempt("local", "Alice", "10.0.0.2")  # names are case-insensitive
    await a.attempt("local", "alice", "10.0.0.3")
    for limits in (a, b):
        with pytest.raises(RateLimited) as e:
            await limits.attempt("local", "alice", "10.0.0.4")
        assert e.value.retry_after == 900
    clock.advance(900)
    await b.attempt("local", "alice", "10.0.0.1")  # a new window


async def test_spraying_other_names_neither_resets_nor_evicts_a_count(
    store_factory: StoreFactory,
) -> None:
    config = LoginConfig(max_failures_per_user=2, max_failures_per_address=100_000)
    clock = FrozenClock(T0)
    limits = LoginLimits(await store_factory(), config, clock)
    await limits.attempt("local", "admin", "10.0.0.1")
    await limits.attempt("local", "admin", "10.0.0.1")
    for i in range(300):
        await limits.attempt("local", f"spray-{i}", "10.0.0.1")
    ok = await limits.attempt("local", "spray-0", "10.0.0.1")
    await ok.succeeded()  # another user's success changes nothing for admin either
    with pytest.raises(RateLimited):  # spraying other names did not reset admin's count
        await limits.attempt("local", "admin", "10.0.0.1")


async def test_of_many_concurrent_attempts_on_two_instances_only_the_limit_pass(
    store_factory: StoreFactory,
) -> None:
    config = LoginConfig(max_failures_per_user=5, max_failures_per_address=1000)
    clock = FrozenClock(T0)
    instances = [LoginLimits(await store_factory(), config, clock) for _ in range(2)]

    async def one(i: int) -> bool:
        try:
            await instances[i % 2].attempt("local", "victim", f"10.0.{i}.1")
        except RateLimited:
            return False
        return True

    passed = await asyncio.gather(*(one(i) for i in range(20)))
    assert sum(passed) == 5
