"""The store's MFA devices on every backend: create, list, enable (once, one device per user),
the single-use compare-and-set on ``last_step`` (also raced from several connections),
deactivate and delete."""

from __future__ import annotations

import asyncio

import pytest

from broker.errors import AlreadyExists
from broker.storage import SqlStore
from broker.storage.base import MfaDevice
from tests.storage.conftest import StoreFactory

SERIAL = "arn:broker:iam::000000000000:mfa/"


def device(name: str) -> MfaDevice:
    return MfaDevice(
        serial_number=SERIAL + name,
        name=name,
        path="/",
        seed_sealed=b"v1:sealed",
        seal_kid=f"mfa:{SERIAL}{name}",
        created_at=100.0,
    )


async def test_device_lifecycle(store: SqlStore) -> None:
    await store.create_mfa_device(device("a"))
    with pytest.raises(AlreadyExists):
        await store.create_mfa_device(device("a"))
    assert await store.get_mfa_device(SERIAL + "a") == device("a")
    assert await store.get_mfa_device(SERIAL + "none") is None

    assert await store.enable_mfa_device(SERIAL + "a", "u1", step=10, now=200.0)
    assert not await store.enable_mfa_device(SERIAL + "a", "u2", step=11, now=200.0)  # in use
    got = await store.get_mfa_device(SERIAL + "a")
    assert got is not None
    assert (got.user_id, got.enabled_at, got.last_step) == ("u1", 200.0, 10)
    assert [d.serial_number for d in await store.list_mfa_devices(user_id="u1")] == [SERIAL + "a"]

    # one enabled device per user
    await store.create_mfa_device(device("b"))
    assert not await store.enable_mfa_device(SERIAL + "b", "u1", step=10, now=200.0)
    assert await store.list_mfa_devices(user_id="u1") != []

    # single use: only forward, only for the device's user
    assert not await store.advance_mfa_step(SERIAL + "a", "u1", 10)
    assert not await store.advance_mfa_step(SERIAL + "a", "u1", 9)
    assert not await store.advance_mfa_step(SERIAL + "a", "u2", 11)
    assert await store.advance_mfa_step(SERIAL + "a", "u1", 11)

    assert not await store.delete_mfa_device(SERIAL + "a")  # enabled
    assert not await store.deactivate_mfa_device(SERIAL + "a", "u1", step=11)  # not forward
    assert await store.deactivate_mfa_device(SERIAL + "a", "u1", step=12)
    got = await store.get_mfa_device(SERIAL + "a")
    assert got is not None
    assert (got.user_id, got.enabled_at, got.last_step) == (None, None, 12)
    # re-enabling needs codes past the used ones
    assert not await store.enable_mfa_device(SERIAL + "a", "u1", step=12, now=300.0)
    assert await store.delete_mfa_device(SERIAL + "a")
    assert await store.get_mfa_device(SERIAL + "a") is None
    assert [d.serial_number for d in await store.list_mfa_devices()] == [SERIAL + "b"]


async def test_one_code_raced_from_several_connections(store_factory: StoreFactory) -> None:
    stores = [await store_factory() for _ in range(4)]
    await stores[0].create_mfa_device(device("a"))
    assert await stores[0].enable_mfa_device(SERIAL + "a", "u1", step=10, now=1.0)
    won = await asyncio.gather(*(s.advance_mfa_step(SERIAL + "a", "u1", 11) for s in stores * 3))
    assert won.count(True) == 1


async def test_two_devices_enabled_at_once_for_one_user(store_factory: StoreFactory) -> None:
    stores = [await store_factory() for _ in range(4)]
    for i in range(4):
        await stores[0].create_mfa_device(device(f"d{i}"))
    won = await asyncio.gather(
        *(
            s.enable_mfa_device(SERIAL + f"d{i}", "u1", step=5, now=1.0)
            for i, s in enumerate(stores)
        )
    )
    assert won.count(True) == 1
    assert len(await stores[0].list_mfa_devices(user_id="u1")) == 1


async def test_purge_unconfirmed_enrolments(store: SqlStore) -> None:
    """Only unassigned devices under the path, created before the time, go."""
    enrol = "/broker-enrolment/"
    for name, path, created in [("old", enrol, 10.0), ("new", enrol, 99.0), ("api", "/", 10.0)]:
        await store.create_mfa_device(
            MfaDevice(
                serial_number=SERIAL + name,
                name=name,
                path=path,
                seed_sealed=b"v1:x",
                seal_kid="k",
                created_at=created,
            )
        )
    await store.create_mfa_device(
        MfaDevice(
            serial_number=SERIAL + "used",
            name="used",
            path=enrol,
            seed_sealed=b"v1:x",
            seal_kid="k",
            created_at=10.0,
        )
    )
    assert await store.enable_mfa_device(SERIAL + "used", "u1", step=1, now=20.0)
    assert await store.purge_unassigned_mfa_devices(path=enrol, created_before=50.0) == 1
    left = [d.name for d in await store.list_mfa_devices()]
    assert left == ["api", "new", "used"]
