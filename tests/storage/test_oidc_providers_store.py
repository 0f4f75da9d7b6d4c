"""The ``*_oidc_provider`` store methods, on SQLite and PostgreSQL: conformance and races
(two stores = two connection pools on one database, as two broker instances)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import TYPE_CHECKING

import pytest

from broker.errors import AlreadyExists, IamLimitExceeded, RecordNotFound
from broker.storage.base import OidcProviderRecord

if TYPE_CHECKING:
    from broker.storage import SqlStore
    from tests.storage.conftest import StoreFactory

T0 = 1_700_000_000.0
RACERS = 10


def gha(**kw: object) -> OidcProviderRecord:
    base = OidcProviderRecord(
        name="token.actions.githubusercontent.com",
        url="https://token.actions.githubusercontent.com",
        client_ids=("sts.amazonaws.com",),
        thumbprints=("a" * 40,),
        tags=(("team", "ci"), ("env", "prod")),
        created_at=T0,
        updated_at=T0,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


async def test_create_get_list_delete(store: SqlStore) -> None:
    assert await store.get_oidc_provider("token.actions.githubusercontent.com") is None
    assert await store.list_oidc_providers() == []
    await store.create_oidc_provider(gha())
    other = gha(name="idp.example.com/tenant", url="https://idp.example.com/tenant/", tags=())
    await store.create_oidc_provider(other)
    got = await store.get_oidc_provider("token.actions.githubusercontent.com")
    assert got == gha()  # tags keep their order, lists round-trip as tuples
    assert [p.name for p in await store.list_oidc_providers()] == [
        "idp.example.com/tenant",
        "token.actions.githubusercontent.com",
    ]
    await store.delete_oidc_provider("token.actions.githubusercontent.com")
    assert await store.get_oidc_provider("token.actions.githubusercontent.com") is None
    with pytest.raises(RecordNotFound):
        await store.delete_oidc_provider("token.actions.githubusercontent.com")
    assert await store.list_oidc_providers() == [other]


async def test_name_and_url_are_unique(store: SqlStore) -> None:
    await store.create_oidc_provider(gha())
    with pytest.raises(AlreadyExists):
        await store.create_oidc_provider(gha(url="https://token.actions.githubusercontent.com/"))
    with pytest.raises(AlreadyExists):
        await store.create_oidc_provider(gha(name="other"))
    assert len(await store.list_oidc_providers()) == 1


async def test_update_applies_the_change_and_keeps_identity(store: SqlStore) -> None:
    await store.create_oidc_provider(gha())
    new = await store.update_oidc_provider(
        "token.actions.githubusercontent.com",
        lambda p: replace(
            p,
            name="ignored",
            url="https://ignored",
            client_ids=(*p.client_ids, "broker"),
            updated_at=T0 + 5,
        ),
    )
    assert new.name == "token.actions.githubusercontent.com"
    assert new.url == "https://token.actions.githubusercontent.com"
    assert new.client_ids == ("sts.amazonaws.com", "broker")
    assert await store.get_oidc_provider(new.name) == new
    with pytest.raises(RecordNotFound):
        await store.update_oidc_provider("nope", lambda p: p)


async def test_a_change_that_raises_changes_nothing(store: SqlStore) -> None:
    await store.create_oidc_provider(gha())

    def refuse(p: OidcProviderRecord) -> OidcProviderRecord:
        raise IamLimitExceeded("too_many")

    with pytest.raises(IamLimitExceeded):
        await store.update_oidc_provider("token.actions.githubusercontent.com", refuse)
    assert await store.get_oidc_provider("token.actions.githubusercontent.com") == gha()


async def test_two_admins_racing_to_create_one_provider_one_wins(
    store_factory: StoreFactory,
) -> None:
    stores = [await store_factory(), await store_factory()]
    results = await asyncio.gather(
        *(
            stores[i % 2].create_oidc_provider(gha(client_ids=(f"client-{i}",)))
            for i in range(RACERS)
        ),
        return_exceptions=True,
    )
    wins = [i for i, r in enumerate(results) if r is None]
    assert len(wins) == 1
    assert all(isinstance(r, AlreadyExists) for r in results if r is not None)
    (only,) = await stores[0].list_oidc_providers()
    assert only.client_ids == (f"client-{wins[0]}",)  # the winner's whole record


async def test_concurrent_client_id_additions_all_land(store_factory: StoreFactory) -> None:
    stores = [await store_factory(), await store_factory()]
    await stores[0].create_oidc_provider(gha(client_ids=()))

    def adder(i: int) -> object:
        return lambda p: replace(p, client_ids=(*p.client_ids, f"c{i}"))

    await asyncio.gather(
        *(
            stores[i % 2].update_oidc_provider(
                "token.actions.githubusercontent.com",
                adder(i),  # type: ignore[arg-type]
            )
            for i in range(RACERS)
        )
    )
    got = await stores[1].get_oidc_provider("token.actions.githubusercontent.com")
    assert got is not None
    assert sorted(got.client_ids) == sorted(f"c{i}" for i in range(RACERS))


async def test_update_racing_delete_never_resurrects(store_factory: StoreFactory) -> None:
    a, b = await store_factory(), await store_factory()
    await a.create_oidc_provider(gha())
    results = await asyncio.gather(
        a.delete_oidc_provider("token.actions.githubusercontent.com"),
        b.update_oidc_provider(
            "token.actions.githubusercontent.com", lambda p: replace(p, client_ids=("x",))
        ),
        return_exceptions=True,
    )
    assert results[0] is None
    assert results[1] is None or isinstance(results[1], RecordNotFound)
    assert await a.list_oidc_providers() == []
