"""IAM users' access keys, on every backend: round trip, ownership, the per-user limit (also
under a race, across two stores on one database), batched last use (a later use is never
overwritten by an earlier one), and a user with keys cannot be deleted."""

from __future__ import annotations

import asyncio

import pytest

from broker.errors import Conflict, LimitExceeded, RecordNotFound
from broker.storage.base import AccessKeyRecord, AccessKeyUse, Store, User
from tests.storage.conftest import StoreFactory


def key(akid: str, user_id: str = "u1", created_at: float = 1.0) -> AccessKeyRecord:
    return AccessKeyRecord(
        access_key_id=akid,
        user_id=user_id,
        secret_sealed=b"v1:sealed-" + akid.encode(),
        seal_kid=f"access-key:{akid}",
        status="Active",
        created_at=created_at,
    )


async def user(store: Store, user_id: str = "u1") -> None:
    await store.create_user(User(id=user_id, provider="local", subject=user_id, name=user_id))


async def test_round_trip_status_and_delete(store: Store) -> None:
    await user(store)
    await store.create_access_key(key("AKIA1", created_at=2.0), limit=2)
    await store.create_access_key(key("AKIA0", created_at=1.0), limit=2)
    assert [k.access_key_id for k in await store.list_access_keys("u1")] == ["AKIA0", "AKIA1"]
    got = await store.get_access_key("AKIA1")
    assert got == key("AKIA1", created_at=2.0)
    await store.set_access_key_status("AKIA1", "u1", "Inactive")
    got = await store.get_access_key("AKIA1")
    assert got is not None
    assert got.status == "Inactive"
    with pytest.raises(RecordNotFound):  # not this user's key
        await store.set_access_key_status("AKIA1", "u2", "Active")
    with pytest.raises(RecordNotFound):
        await store.delete_access_key("AKIA1", "u2")
    await store.delete_access_key("AKIA1", "u1")
    assert await store.get_access_key("AKIA1") is None
    with pytest.raises(RecordNotFound):
        await store.delete_access_key("AKIA1", "u1")


async def test_the_limit_and_a_missing_user(store: Store) -> None:
    with pytest.raises(RecordNotFound):
        await store.create_access_key(key("AKIAX", user_id="nobody"), limit=2)
    await user(store)
    await store.create_access_key(key("AKIA0"), limit=2)
    await store.create_access_key(key("AKIA1"), limit=2)
    with pytest.raises(LimitExceeded):
        await store.create_access_key(key("AKIA2"), limit=2)
    assert len(await store.list_access_keys("u1")) == 2


async def test_racing_creations_never_exceed_the_limit(store_factory: StoreFactory) -> None:
    first, second = await store_factory(), await store_factory()
    await user(first)

    async def create(s: Store, akid: str) -> bool:
        try:
            await s.create_access_key(key(akid), limit=2)
            return True
        except LimitExceeded:
            return False

    made = await asyncio.gather(*(create(first if i % 2 else second, f"AKIA{i}") for i in range(6)))
    assert sum(made) == 2
    assert len(await first.list_access_keys("u1")) == 2


async def test_last_use_keeps_the_latest(store: Store) -> None:
    await user(store)
    await store.create_access_key(key("AKIA0"), limit=2)
    await store.record_access_key_use({"AKIA0": AccessKeyUse(10.0, "eu-west-1", "iam")})
    await store.record_access_key_use({"AKIA0": AccessKeyUse(5.0, "us-east-1", "sts")})
    got = await store.get_access_key("AKIA0")
    assert got is not None
    assert (got.last_used_at, got.last_used_region, got.last_used_service) == (
        10.0,
        "eu-west-1",
        "iam",
    )
    await store.record_access_key_use({"gone": AccessKeyUse(1.0, "x", "sts")})  # no error


async def test_a_user_with_keys_is_not_deleted(store: Store) -> None:
    await user(store)
    await store.create_access_key(key("AKIA0"), limit=2)
    with pytest.raises(Conflict):
        await store.delete_user("u1")
    await store.delete_access_key("AKIA0", "u1")
    await store.delete_user("u1")
