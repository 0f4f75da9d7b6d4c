"""Concurrency suite: what must hold when several connections (or brokers) race on one store.

Every test runs on each backend; the racers use two ``SqlStore`` instances (two connection
pools) on the same database, as two broker processes would.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from broker.errors import RecordNotFound
from broker.storage import current_revision, head_revision
from broker.storage.base import (
    Group,
    LoginState,
    ManagedPolicyRecord,
    Revocation,
    Session,
    SigningKey,
    SingleUse,
    User,
)

if TYPE_CHECKING:
    from tests.storage.conftest import Database, StoreFactory

T0 = 1_700_000_000.0
RACERS = 20


async def test_one_of_many_concurrent_consumers_wins_the_login_state(
    store_factory: StoreFactory,
) -> None:
    stores = [await store_factory(), await store_factory()]
    for n in range(3):  # a few rounds: one lucky ordering proves nothing
        state = LoginState(
            state=f"race-{n}",
            provider="google",
            browser_binding="b",
            nonce="n",
            code_verifier="v",
            redirect_after="/",
            role=None,
            created_at=T0,
            expires_at=T0 + 600,
        )
        await stores[0].put_login_state(state)
        results = await asyncio.gather(
            *(
                stores[i % 2].consume_login_state(state.state, browser_binding="b", now=T0)
                for i in range(RACERS)
            )
        )
        assert [r for r in results if r is not None] == [state]


async def test_one_of_many_concurrent_consumers_wins_a_single_use_value(
    store_factory: StoreFactory,
) -> None:
    stores = [await store_factory(), await store_factory()]
    for n in range(3):
        value = SingleUse("pending-role", f"race-{n}", "b", {"roles": ["dev"]}, T0, T0 + 600)
        await stores[0].put_single_use(value)
        results = await asyncio.gather(
            *(
                stores[i % 2].consume_single_use("pending-role", value.key, binding="b", now=T0)
                for i in range(RACERS)
            )
        )
        assert [r for r in results if r is not None] == [value]


async def test_concurrent_consumers_with_the_wrong_binding_never_win(
    store_factory: StoreFactory,
) -> None:
    stores = [await store_factory(), await store_factory()]
    state = LoginState("s", "google", "right", "n", "v", "/", None, T0, T0 + 600)
    await stores[0].put_login_state(state)
    results = await asyncio.gather(
        *(
            stores[i % 2].consume_login_state(
                "s", browser_binding="right" if i == RACERS - 1 else f"wrong-{i}", now=T0
            )
            for i in range(RACERS)
        )
    )
    assert results == [None] * (RACERS - 1) + [state]


async def test_concurrent_first_logins_create_one_user(store_factory: StoreFactory) -> None:
    stores = [await store_factory(), await store_factory()]
    users = await asyncio.gather(
        *(
            stores[i % 2].upsert_federated_user(
                "google", "sub-1", name="Ada", email=f"ada{i}@example.com", groups=[], now=T0 + i
            )
            for i in range(RACERS)
        )
    )
    assert len({u.id for u in users}) == 1
    assert await stores[0].count_users() == 1
    # whoever inserted first set first_login_at; everyone after kept it
    assert len({u.first_login_at for u in users}) == 1
    assert users[0].first_login_at in {u.last_login_at for u in users}


async def test_concurrent_revocations_get_distinct_increasing_ids(
    store_factory: StoreFactory,
) -> None:
    stores = [await store_factory(), await store_factory()]
    added = await asyncio.gather(
        *(stores[i % 2].add_revocation(Revocation("role", f"r{i}", T0, T0)) for i in range(RACERS))
    )
    listed = await stores[0].revocations_since(0)
    assert sorted(r.id or 0 for r in added) == [r.id for r in listed]
    assert len({r.id for r in listed}) == RACERS


async def test_concurrent_touches_and_revocations_do_not_deadlock(
    store_factory: StoreFactory,
) -> None:
    stores = [await store_factory(), await store_factory()]
    ids = [f"s{n:02d}" for n in range(10)]
    for sid in ids:
        await stores[0].create_session(Session(sid, "u1", "p", "s", "r", expires_at=T0 + 9999))

    async def touch(i: int) -> None:
        order = ids if i % 2 else ids[::-1]
        await stores[i % 2].touch_sessions({sid: T0 + i for sid in order})

    await asyncio.gather(
        *(touch(i) for i in range(RACERS)),
        stores[0].revoke_user_sessions("u1", now=T0, reason="race"),
        stores[1].revoke_session("s00", now=T0, reason="race"),
    )
    sessions = [await stores[0].get_session(sid) for sid in ids]
    assert all(s is not None and s.revoked_at == T0 for s in sessions)
    assert all(s is not None and s.last_seen_at == T0 + RACERS - 1 for s in sessions)


async def test_concurrent_replacements_of_attachments_leave_one_whole_set(
    store_factory: StoreFactory,
) -> None:
    # brokers reconciling their configuration at start-up: one set wins, never a mixture
    stores = [await store_factory(), await store_factory()]
    for n in range(RACERS + 1):
        await stores[0].put_managed_policy(ManagedPolicyRecord(f"p{n:02d}", {}))
    sets = [[f"p{i:02d}", f"p{i + 1:02d}"] for i in range(RACERS)]
    for _ in range(3):
        await asyncio.gather(
            *(stores[i % 2].set_attached_policies("role", "dev", sets[i]) for i in range(RACERS))
        )
        managed = list((await stores[0].attached_policies("role", "dev")).managed)
        assert managed in sets


async def test_concurrent_identical_reconciliations_succeed(store_factory: StoreFactory) -> None:
    stores = [await store_factory(), await store_factory()]
    for name in ("a", "b", "c"):
        await stores[0].put_managed_policy(ManagedPolicyRecord(name, {}))
    await asyncio.gather(
        *(
            stores[i % 2].set_attached_policies("group", "g", ["c", "a", "b"])
            for i in range(RACERS)
        ),
        *(stores[i % 2].attach_policy("group", "g", "a") for i in range(RACERS)),
    )
    assert (await stores[0].attached_policies("group", "g")).managed in {("a", "b", "c")}


async def test_members_added_while_the_group_is_deleted_go_with_it(
    store_factory: StoreFactory,
) -> None:
    stores = [await store_factory(), await store_factory()]
    for n in range(RACERS):
        await stores[0].create_user(User(f"u{n:02d}", "google", f"s{n}", f"n{n}"))
    for _ in range(3):
        await stores[0].create_group(Group("devs"))
        results = await asyncio.gather(
            *(stores[i % 2].add_group_member("devs", f"u{i:02d}") for i in range(RACERS // 2)),
            stores[1].delete_group("devs"),
            *(
                stores[i % 2].add_group_member("devs", f"u{i:02d}")
                for i in range(RACERS // 2, RACERS)
            ),
            return_exceptions=True,
        )
        assert all(r is None or isinstance(r, RecordNotFound) for r in results), results
        assert await stores[0].get_group("devs") is None
        assert await stores[0].group_members("devs") == []  # no member outlives the group


async def test_uses_added_while_the_policy_is_deleted_go_with_it(
    store_factory: StoreFactory,
) -> None:
    stores = [await store_factory(), await store_factory()]
    for _ in range(3):
        await stores[0].put_managed_policy(ManagedPolicyRecord("p", {}))
        results = await asyncio.gather(
            *(stores[i % 2].attach_policy("role", f"r{i}", "p") for i in range(RACERS // 2)),
            stores[1].delete_managed_policy("p"),
            *(stores[i % 2].set_boundary("user", f"u{i}", "p") for i in range(RACERS // 2)),
            *(stores[i % 2].set_attached_policies("group", f"g{i}", ["p"]) for i in range(4)),
            return_exceptions=True,
        )
        assert all(r is None or isinstance(r, RecordNotFound) for r in results), results
        assert await stores[0].get_managed_policy("p") is None
        assert await stores[0].policy_uses("p") == []  # no use outlives the policy


async def test_concurrent_migrations_of_a_fresh_database_succeed(database: Database) -> None:
    results = await asyncio.gather(*(database.migrate() for _ in range(4)), return_exceptions=True)
    assert [r for r in results if r is not None] == []
    assert await current_revision(database.url, schema=database.schema) == head_revision()
    store = database.open()
    try:
        assert await store.count_users() == 0
    finally:
        await store.close()


@pytest.mark.parametrize("stores", [2, 4], ids=["two-stores", "four-stores"])
async def test_many_writers_do_not_fail_with_busy_errors(
    store_factory: StoreFactory, stores: int
) -> None:
    opened = [await store_factory() for _ in range(stores)]
    await asyncio.gather(
        *(
            opened[i % stores].set_meta(f"k{i % 5}", str(i))
            for i in range(RACERS * 3)  # more than the pools hold: callers queue, none fail
        )
    )
    assert await opened[0].get_meta("k0") is not None


async def test_one_of_many_concurrent_signing_key_swaps_wins(store_factory: StoreFactory) -> None:
    """Two brokers rotating (or starting on an empty store) at once: one key, never two open."""
    stores = [await store_factory(), await store_factory()]

    def key(n: int) -> SigningKey:
        return SigningKey(
            kid=f"k{n}",
            algorithm="EdDSA",
            private_key=b"sealed",
            public_jwk={"kty": "OKP", "crv": "Ed25519", "x": f"x{n}"},
            created_at=T0 + n,
        )

    expected: list[str] = []  # empty store first: insert-if-absent
    for round_ in range(3):
        results = await asyncio.gather(
            *(
                stores[i % 2].swap_signing_key(
                    key(round_ * 100 + i), replaces=expected, replaced_expire_at=T0 + 10_000
                )
                for i in range(RACERS)
            )
        )
        assert sum(results) == 1
        keys = await stores[0].list_signing_keys()
        open_keys = [k.kid for k in keys if k.retired_at is None]
        assert len(open_keys) == 1
        assert len(keys) == round_ + 1
        expected = open_keys
