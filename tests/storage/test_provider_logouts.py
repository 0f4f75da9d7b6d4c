"""Back-channel logouts remembered for pending logins (tombstones): found by provider and
``sid`` or ``sub``, the later of two kept, gone once expired; on every backend, and seen by
another store on the same database (another broker instance)."""

from __future__ import annotations

import pytest

from broker.storage.base import ProviderLogout, Store
from tests.storage.conftest import StoreFactory

T0 = 1_700_000_000.0


def logout(
    kind: str, value: str, *, provider: str = "corp", at: float = T0, until: float = T0 + 600
) -> ProviderLogout:
    return ProviderLogout(
        provider=provider, kind=kind, value=value, logged_out_at=at, expires_at=until
    )


async def test_a_logout_is_found_by_its_provider_and_sid_or_subject(store: Store) -> None:
    await store.put_provider_logout(logout("sid", "op-1"))
    await store.put_provider_logout(logout("sub", "alice", at=T0 + 3))
    await store.put_provider_logout(logout("sid", "op-2", provider="partner"))

    assert await store.provider_logouts("corp", sid="op-1", subject="alice", now=T0) == [
        logout("sid", "op-1"),
        logout("sub", "alice", at=T0 + 3),
    ]
    assert await store.provider_logouts("corp", sid="op-1", subject="bob", now=T0) == [
        logout("sid", "op-1")
    ]
    assert await store.provider_logouts("corp", sid="op-9", subject="alice", now=T0) == [
        logout("sub", "alice", at=T0 + 3)
    ]


@pytest.mark.parametrize(
    ("provider", "sid", "subject"),
    [
        ("corp", "op-2", "bob"),  # op-2 ended at another provider
        ("partner", "op-1", "alice"),  # the same names at another provider
        ("corp", "", ""),  # "" is "none": never a match
        ("corp", "alice", "op-1"),  # a sid is not a subject, nor the other way round
    ],
    ids=["other-provider-sid", "other-provider", "empty", "kinds-apart"],
)
async def test_nothing_else_matches(store: Store, provider: str, sid: str, subject: str) -> None:
    await store.put_provider_logout(logout("sid", "op-1"))
    await store.put_provider_logout(logout("sub", "alice"))
    await store.put_provider_logout(logout("sid", "op-2", provider="partner"))
    await store.put_provider_logout(logout("sid", "", provider="corp"))  # stored, unmatchable
    assert await store.provider_logouts(provider, sid=sid, subject=subject, now=T0) == []


async def test_two_logouts_of_one_session_keep_the_later_times(store: Store) -> None:
    await store.put_provider_logout(logout("sub", "alice", at=T0 + 5, until=T0 + 100))
    await store.put_provider_logout(logout("sub", "alice", at=T0 + 1, until=T0 + 900))
    await store.put_provider_logout(logout("sub", "alice", at=T0 + 2, until=T0 + 50))
    assert await store.provider_logouts("corp", sid="", subject="alice", now=T0) == [
        logout("sub", "alice", at=T0 + 5, until=T0 + 900)
    ]


async def test_expired_logouts_are_not_found_and_are_purged(store: Store) -> None:
    await store.put_provider_logout(logout("sid", "op-old", until=T0 + 10))
    await store.put_provider_logout(logout("sid", "op-live", until=T0 + 600))
    assert await store.provider_logouts("corp", sid="op-old", subject="", now=T0 + 10) == []
    assert await store.purge_provider_logouts(T0 + 10) == 1
    assert await store.purge_provider_logouts(T0 + 10) == 0
    assert await store.provider_logouts("corp", sid="op-live", subject="", now=T0 + 11) == [
        logout("sid", "op-live")
    ]


async def test_another_instance_sees_the_logout(store_factory: StoreFactory) -> None:
    a, b = await store_factory(), await store_factory()
    await a.put_provider_logout(logout("sid", "op-1"))
    assert await b.provider_logouts("corp", sid="op-1", subject="", now=T0) == [
        logout("sid", "op-1")
    ]
