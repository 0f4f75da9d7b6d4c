"""Tags on users and roles, on every backend: add, overwrite, remove, the limit, and a race."""

from __future__ import annotations

import asyncio

import pytest

from broker.errors import LimitExceeded
from broker.storage.base import Store


async def test_tags_round_trip_overwrite_and_untag(store: Store) -> None:
    assert await store.list_tags("user", "u1") == {}
    await store.tag("user", "u1", {"team": "infra", "env": "prod"}, limit=50)
    await store.tag("user", "u1", {"team": "data"}, limit=50)
    assert await store.list_tags("user", "u1") == {"env": "prod", "team": "data"}
    assert await store.list_tags("role", "u1") == {}  # kinds are separate
    await store.untag("user", "u1", ["team", "absent"])
    assert await store.list_tags("user", "u1") == {"env": "prod"}
    await store.delete_tags("user", "u1")
    assert await store.list_tags("user", "u1") == {}


async def test_going_over_the_limit_changes_nothing(store: Store) -> None:
    await store.tag("role", "r", {f"k{i}": "v" for i in range(3)}, limit=4)
    with pytest.raises(LimitExceeded):
        await store.tag("role", "r", {"k0": "new", "x": "1", "y": "2"}, limit=4)
    assert await store.list_tags("role", "r") == {"k0": "v", "k1": "v", "k2": "v"}


async def test_racing_taggers_never_exceed_the_limit(store: Store) -> None:
    async def add(key: str) -> bool:
        try:
            await store.tag("role", "race", {key: "v"}, limit=3)
            return True
        except LimitExceeded:
            return False

    await store.tag("role", "race", {"a": "v", "b": "v"}, limit=3)
    results = await asyncio.gather(*(add(k) for k in "cdefg"))
    assert len(await store.list_tags("role", "race")) <= 3
    assert results.count(True) == 1
