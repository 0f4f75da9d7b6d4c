"""Roles created and changed through the IAM API, on every backend: atomic create (with its
boundary and tags, or nothing), names unique regardless of case, updates that never bring a
deleted role back, and two admins racing on the same role."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from broker.errors import AlreadyExists, RecordNotFound
from broker.storage.base import AttachedPolicies, ManagedPolicyRecord, RoleRecord, Store
from tests.storage.conftest import StoreFactory

T0 = 1_700_000_000.0
RACERS = 8
TRUST = {"Version": "2012-10-17", "Statement": []}


def role(name: str, *, at: float = T0, description: str = "") -> RoleRecord:
    return RoleRecord(
        name=name,
        description=description,
        trust_policy=TRUST,
        policies=[],
        permissions_boundary=None,
        max_session_duration=3600.0,
        source="api",
        created_at=at,
        updated_at=at,
    )


async def test_create_stores_the_role_its_boundary_and_tags(store: Store) -> None:
    await store.put_managed_policy(ManagedPolicyRecord("Bound", {}))
    await store.create_role(role("deploy"), boundary="Bound", tags={"team": "infra"})
    got = await store.get_role("deploy")
    assert got == role("deploy")
    assert (await store.attached_policies("role", "deploy")).boundary == "Bound"
    assert await store.list_tags("role", "deploy") == {"team": "infra"}


async def test_names_are_unique_regardless_of_case(store: Store) -> None:
    await store.create_role(role("Deploy"))
    for clash in ("Deploy", "deploy", "DEPLOY"):
        with pytest.raises(AlreadyExists):
            await store.create_role(role(clash, description="second"), tags={"x": "y"})
    assert [r.name for r in await store.list_roles()] == ["Deploy"]
    assert (await store.get_role("Deploy")) == role("Deploy")
    assert await store.list_tags("role", "Deploy") == {}


async def test_a_missing_boundary_policy_stores_nothing(store: Store) -> None:
    with pytest.raises(RecordNotFound):
        await store.create_role(role("deploy"), boundary="Missing", tags={"team": "infra"})
    assert await store.get_role("deploy") is None
    assert await store.list_tags("role", "deploy") == {}
    assert (await store.attached_policies("role", "deploy")).boundary is None


async def test_a_new_role_starts_bare(store: Store) -> None:
    # left under the name by an attach that raced an earlier role's deletion
    await store.put_managed_policy(ManagedPolicyRecord("Wide", {}))
    await store.attach_policy("role", "deploy", "Wide")
    await store.put_inline_policy("role", "deploy", "old", {"Statement": []})
    await store.tag("role", "deploy", {"old": "tag"}, limit=50)
    await store.create_role(role("deploy"), tags={"new": "tag"})
    attached = await store.attached_policies("role", "deploy")
    assert attached.managed == ()
    assert dict(attached.inline) == {}
    assert await store.list_tags("role", "deploy") == {"new": "tag"}


async def test_delete_takes_its_tags_and_policies(store: Store) -> None:
    await store.put_managed_policy(ManagedPolicyRecord("Bound", {}))
    await store.create_role(role("deploy"), boundary="Bound", tags={"team": "infra"})
    await store.put_inline_policy("role", "deploy", "p", {"Statement": []})
    await store.delete_role("deploy")
    assert await store.get_role("deploy") is None
    assert await store.list_tags("role", "deploy") == {}
    assert await store.attached_policies("role", "deploy") == AttachedPolicies()
    with pytest.raises(RecordNotFound):
        await store.delete_role("deploy")


async def test_update_changes_only_what_is_given_and_moves_updated_at(store: Store) -> None:
    await store.create_role(role("deploy", description="old"))
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Deny"}]}
    new = await store.update_role("deploy", now=T0, trust_policy=trust)
    assert new.trust_policy == trust
    assert new.description == "old"
    assert new.updated_at > T0  # the same clock reading still moves it forward
    newer = await store.update_role("deploy", now=T0 + 5, description="", max_session_duration=7200)
    assert (newer.description, newer.max_session_duration) == ("", 7200.0)
    assert newer.trust_policy == trust
    assert newer.updated_at == T0 + 5
    assert newer.created_at == T0
    assert await store.get_role("deploy") == newer


async def test_update_of_a_missing_role_brings_nothing_back(store: Store) -> None:
    with pytest.raises(RecordNotFound):
        await store.update_role("ghost", now=T0, description="boo")
    assert await store.get_role("ghost") is None


async def test_racing_creators_one_wins_nothing_half_written(
    store_factory: StoreFactory,
) -> None:
    stores = [await store_factory(), await store_factory()]

    async def create(i: int) -> bool:
        name = "deploy" if i % 2 else "Deploy"
        try:
            await stores[i % 2].create_role(
                role(name, description=f"by {i}"), tags={"by": str(i), f"k{i}": "v"}
            )
            return True
        except AlreadyExists:
            return False

    results = await asyncio.gather(*(create(i) for i in range(RACERS)))
    assert results.count(True) == 1
    winner = results.index(True)
    (only,) = await stores[0].list_roles()
    assert only.description == f"by {winner}"
    assert await stores[1].list_tags("role", only.name) == {"by": str(winner), f"k{winner}": "v"}


async def test_racing_update_and_delete_never_resurrect(store_factory: StoreFactory) -> None:
    stores = [await store_factory(), await store_factory()]
    for _ in range(3):
        await stores[0].create_role(role("deploy"))

        async def update(i: int) -> None:
            with contextlib.suppress(RecordNotFound):
                await stores[i % 2].update_role("deploy", now=T0 + i, description=f"u{i}")

        await asyncio.gather(*(update(i) for i in range(RACERS)), stores[1].delete_role("deploy"))
        assert await stores[0].get_role("deploy") is None
