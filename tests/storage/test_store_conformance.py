"""The ``Store`` conformance suite: every backend (SQLite, PostgreSQL) must pass all of it.

Run the PostgreSQL half with
``BROKER_TEST_POSTGRES_DSN=postgresql://postgres@127.0.0.1:5432/test pytest tests/storage``.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa

from broker.errors import AlreadyExists, RecordNotFound, StoreError
from broker.storage import Store, migrate, open_store
from broker.storage.base import (
    AttachedPolicies,
    AuditEvent,
    Group,
    LoginState,
    ManagedPolicyRecord,
    PolicyUse,
    PrincipalType,
    Revocation,
    RoleRecord,
    Session,
    SigningKey,
    SingleUse,
    User,
)
from broker.storage.sql import SqlStore, parse_store_url

if TYPE_CHECKING:  # fixtures come from conftest.py; these are only their types
    from tests.storage.conftest import Database, StoreFactory

T0 = 1_700_000_000.123456


def a_user(n: int = 1, /, **changes: object) -> User:
    user = User(
        id=f"user-{n}",
        provider="google",
        subject=f"sub-{n}",
        name=f"Zoë {n}",
        email=f"user{n}@example.com",
        groups=("dev", "ops"),
        created_at=T0 + n,
    )
    return replace(user, **changes)  # type: ignore[arg-type]


def a_state(state: str = "st-1", /, **changes: object) -> LoginState:
    login = LoginState(
        state=state,
        provider="google",
        browser_binding="binding-a",
        nonce="nonce-1",
        code_verifier="verifier-1",
        redirect_after="https://app.example.com/path?q=1",
        role="dev",
        created_at=T0,
        expires_at=T0 + 600,
    )
    return replace(login, **changes)  # type: ignore[arg-type]


def a_session(sid: str = "sess-1", /, **changes: object) -> Session:
    session = Session(
        id=sid,
        user_id="user-1",
        provider="google",
        subject="sub-1",
        role_arn="arn:broker:iam::000000000000:role/dev",
        email="user1@example.com",
        groups=("dev",),
        mfa=True,
        tags={"team": "blue", "env": "prod"},
        created_at=T0,
        expires_at=T0 + 8 * 3600,
        idle_timeout=3600.0,
        last_seen_at=T0,
    )
    return replace(session, **changes)  # type: ignore[arg-type]


def a_key(kid: str = "k1", created_at: float = T0) -> SigningKey:
    return SigningKey(
        kid=kid,
        algorithm="EdDSA",
        private_key=bytes(range(256)),  # not UTF-8: must round-trip as bytes
        public_jwk={"kty": "OKP", "crv": "Ed25519", "x": "abc", "kid": kid},
        created_at=created_at,
    )


def a_role(name: str = "dev", /, **changes: object) -> RoleRecord:
    role = RoleRecord(
        name=name,
        description="Developers",
        trust_policy={
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Federated": "google"},
                    "Action": "sts:AssumeRoleWithWebIdentity",
                    "Condition": {"StringEquals": {"google:hd": "example.com"}},
                }
            ],
        },
        policies=[{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*"}]}],
        permissions_boundary=None,
        max_session_duration=4 * 3600.0,
        source="config",
        created_at=T0,
        updated_at=T0,
    )
    return replace(role, **changes)  # type: ignore[arg-type]


def a_document(*actions: str, effect: str = "Allow") -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": effect, "Action": list(actions or ["s3:GetObject"]), "Resource": "*"}
        ],
    }


# unicode, nested lists and objects, numbers, booleans and null: must round-trip unchanged
RICH_DOCUMENT: dict[str, Any] = {
    "Version": "2012-10-17",
    "Id": "Zoë's policy — ünïcödé ✓ 日本語",
    "Statement": [
        {
            "Sid": "Ärger",
            "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:ListBucket"],
            "Resource": ["arn:aws:s3:::bücket/*", ["nested", ["deeper", 1, 2.5, True, None]]],
            "Condition": {"StringLike": {"s3:prefix": ["home/", "home/${aws:username}/*"]}},
        },
        {"Effect": "Deny", "NotAction": [], "Resource": {"list": [[], [{}], {"n": -1}]}},
    ],
}


def a_policy(name: str = "read-only", /, **changes: object) -> ManagedPolicyRecord:
    policy = ManagedPolicyRecord(
        name=name,
        document=a_document("s3:GetObject", "s3:ListBucket"),
        description="Read the buckets",
        source="config",
        created_at=T0,
        updated_at=T0 + 1,
    )
    return replace(policy, **changes)  # type: ignore[arg-type]


def test_sql_store_satisfies_the_protocol(store: SqlStore) -> None:
    as_protocol: Store = store  # checked by mypy --strict
    assert as_protocol is store


async def test_ping(store: Store) -> None:
    await store.ping()


# --- users ---------------------------------------------------------------------------------


async def test_create_and_get_user_round_trips_every_field(store: Store) -> None:
    user = a_user(
        first_login_at=T0 + 10,
        last_login_at=T0 + 20,
        password_hash="$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA",
        must_change_password=True,
        disabled=True,
        password_changed_at=T0 + 5,
    )
    assert await store.create_user(user) == user
    assert await store.get_user(user.id) == user


async def test_get_unknown_user_raises_record_not_found(store: Store) -> None:
    with pytest.raises(RecordNotFound):
        await store.get_user("nobody")


@pytest.mark.parametrize(
    "clash",
    [
        pytest.param({"subject": "other"}, id="same-id"),
        pytest.param({"id": "user-other"}, id="same-provider-and-subject"),
    ],
)
async def test_create_user_clash_raises_already_exists(store: Store, clash: dict[str, str]) -> None:
    await store.create_user(a_user())
    with pytest.raises(AlreadyExists):
        await store.create_user(a_user(**clash))
    assert await store.count_users() == 1


async def test_same_subject_at_another_provider_is_another_user(store: Store) -> None:
    await store.create_user(a_user())
    await store.create_user(a_user(id="user-okta", provider="okta"))
    assert await store.count_users() == 2


async def test_find_user_by_provider_and_subject(store: Store) -> None:
    user = await store.create_user(a_user())
    assert await store.find_user("google", "sub-1") == user
    assert await store.find_user("okta", "sub-1") is None
    assert await store.find_user("google", "sub-2") is None


async def test_count_and_list_users(store: Store) -> None:
    assert await store.count_users() == 0
    assert await store.list_users() == []
    users = [await store.create_user(a_user(n)) for n in (3, 1, 2)]
    assert await store.count_users() == 3
    assert await store.list_users() == sorted(users, key=lambda u: u.created_at)


async def test_upsert_federated_user_first_login_creates_the_user(store: Store) -> None:
    user = await store.upsert_federated_user(
        "google", "sub-9", name="Ada", email="ada@example.com", groups=["a", "b"], now=T0
    )
    assert user.id
    assert (user.provider, user.subject, user.name) == ("google", "sub-9", "Ada")
    assert (user.email, user.groups) == ("ada@example.com", ("a", "b"))
    assert user.created_at == user.first_login_at == user.last_login_at == T0
    assert (user.password_hash, user.must_change_password, user.disabled) == (None, False, False)
    assert await store.get_user(user.id) == user
    assert await store.find_user("google", "sub-9") == user


async def test_upsert_federated_user_later_login_updates_email_and_groups(store: Store) -> None:
    first = await store.upsert_federated_user(
        "google", "sub-9", name="Ada", email="ada@example.com", groups=["a"], now=T0
    )
    later = await store.upsert_federated_user(
        "google", "sub-9", name="Ada L.", email="ada@new.example", groups=["b", "c"], now=T0 + 60
    )
    assert later.id == first.id
    assert later.name == "Ada"  # the name is the user's identity in the broker: kept
    assert (later.email, later.groups) == ("ada@new.example", ("b", "c"))
    assert (later.created_at, later.first_login_at, later.last_login_at) == (T0, T0, T0 + 60)
    assert await store.get_user(first.id) == later
    assert await store.count_users() == 1


async def test_upsert_same_email_different_subject_is_a_different_user(store: Store) -> None:
    one = await store.upsert_federated_user(
        "google", "sub-1", name="a", email="same@example.com", groups=[], now=T0
    )
    two = await store.upsert_federated_user(
        "google", "sub-2", name="b", email="same@example.com", groups=[], now=T0
    )
    assert one.id != two.id
    assert await store.count_users() == 2


async def test_upsert_of_a_precreated_user_sets_its_first_login(store: Store) -> None:
    created = await store.create_user(a_user())
    user = await store.upsert_federated_user(
        "google", "sub-1", name="x", email="new@example.com", groups=[], now=T0 + 99
    )
    assert user.id == created.id
    assert (user.first_login_at, user.last_login_at) == (T0 + 99, T0 + 99)
    assert user.created_at == created.created_at


async def test_set_user_disabled_and_back(store: Store) -> None:
    user = await store.create_user(a_user())
    await store.set_user_disabled(user.id, True)
    assert (await store.get_user(user.id)).disabled
    again = await store.upsert_federated_user(  # a later login does not undo it
        "google", "sub-1", name="x", email="", groups=[], now=T0 + 9
    )
    assert again.disabled
    await store.set_user_disabled(user.id, False)
    assert not (await store.get_user(user.id)).disabled
    with pytest.raises(RecordNotFound):
        await store.set_user_disabled("no-such-user", True)


async def test_record_login(store: Store) -> None:
    user = await store.create_user(a_user())
    await store.record_login(user.id, T0 + 5)
    await store.record_login(user.id, T0 + 7)
    got = await store.get_user(user.id)
    assert (got.first_login_at, got.last_login_at) == (T0 + 5, T0 + 7)
    with pytest.raises(RecordNotFound):
        await store.record_login("nobody", T0)


async def test_set_password(store: Store) -> None:
    user = await store.create_user(replace(a_user(), provider="local", subject="admin"))
    assert user.password_changed_at is None
    await store.set_password(user.id, "hash-1", must_change=True, now=T0 + 1)
    got = await store.get_user(user.id)
    assert (got.password_hash, got.must_change_password) == ("hash-1", True)
    assert got.password_changed_at == T0 + 1  # the time the service gave, not the store's
    await store.set_password(user.id, "hash-2", must_change=False, now=T0 + 2)
    got = await store.get_user(user.id)
    assert (got.password_hash, got.must_change_password) == ("hash-2", False)
    assert got.password_changed_at == T0 + 2
    with pytest.raises(RecordNotFound):
        await store.set_password("nobody", "h", must_change=False, now=T0)


async def test_find_users_by_name_matches_exactly_across_providers(store: Store) -> None:
    google = await store.create_user(a_user(1, name="ada"))
    okta = await store.create_user(a_user(2, provider="okta", subject="sub-1", name="ada"))
    await store.create_user(a_user(3, name="Ada"))
    await store.create_user(a_user(4, name="ada lovelace"))
    assert await store.find_users_by_name("ada") == [google, okta]
    assert await store.find_users_by_name("Zoë 9") == []
    assert await store.find_users_by_name("ad%") == []


# --- login state ---------------------------------------------------------------------------


async def test_login_state_is_consumed_once(store: Store) -> None:
    state = a_state()
    await store.put_login_state(state)
    assert await store.consume_login_state("st-1", browser_binding="binding-a", now=T0) == state
    assert await store.consume_login_state("st-1", browser_binding="binding-a", now=T0) is None


async def test_login_state_with_wrong_binding_changes_nothing(store: Store) -> None:
    state = a_state()
    await store.put_login_state(state)
    assert await store.consume_login_state("st-1", browser_binding="binding-b", now=T0) is None
    assert await store.consume_login_state("st-1", browser_binding="", now=T0) is None
    assert await store.consume_login_state("st-1", browser_binding="binding-a", now=T0) == state


@pytest.mark.parametrize("late", [0.0, 0.001, 3600.0], ids=["at-expiry", "just-after", "hour"])
async def test_expired_login_state_is_not_consumed(store: Store, late: float) -> None:
    state = a_state()
    await store.put_login_state(state)
    now = state.expires_at + late
    assert await store.consume_login_state("st-1", browser_binding="binding-a", now=now) is None
    # still there (for the purge), still unusable after expiry, usable before it
    assert await store.purge_login_states(now) == 1


async def test_unknown_login_state_is_none(store: Store) -> None:
    assert await store.consume_login_state("nope", browser_binding="binding-a", now=T0) is None


async def test_login_state_without_role(store: Store) -> None:
    state = a_state(role=None, redirect_after="")
    await store.put_login_state(state)
    assert await store.consume_login_state("st-1", browser_binding="binding-a", now=T0) == state


async def test_duplicate_login_state_raises_already_exists(store: Store) -> None:
    await store.put_login_state(a_state())
    with pytest.raises(AlreadyExists):
        await store.put_login_state(a_state(browser_binding="binding-b"))
    # the original is untouched
    assert await store.consume_login_state("st-1", browser_binding="binding-a", now=T0)


async def test_purge_login_states_removes_only_expired(store: Store) -> None:
    await store.put_login_state(a_state("old-1", expires_at=T0 + 10))
    await store.put_login_state(a_state("old-2", expires_at=T0 + 20))
    await store.put_login_state(a_state("live", expires_at=T0 + 600))
    assert await store.purge_login_states(T0 + 20) == 2
    assert await store.purge_login_states(T0 + 20) == 0
    assert await store.consume_login_state("live", browser_binding="binding-a", now=T0 + 30)


# --- other single-use values ---------------------------------------------------------------


def a_value(key: str = "k-1", /, **changes: object) -> SingleUse:
    value = SingleUse(
        kind="pending-role",
        key=key,
        binding="browser-a",
        payload={"roles": ["dev", "ops"], "rd": "/session", "mfa": False},
        created_at=T0,
        expires_at=T0 + 600,
    )
    return replace(value, **changes)  # type: ignore[arg-type]


async def test_single_use_value_is_consumed_once(store: Store) -> None:
    value = a_value()
    await store.put_single_use(value)
    assert await store.peek_single_use("pending-role", "k-1", binding="browser-a", now=T0) == value
    assert await store.peek_single_use("pending-role", "k-1", binding="browser-a", now=T0) == value
    got = await store.consume_single_use("pending-role", "k-1", binding="browser-a", now=T0)
    assert got == value
    assert (
        await store.consume_single_use("pending-role", "k-1", binding="browser-a", now=T0) is None
    )
    assert await store.peek_single_use("pending-role", "k-1", binding="browser-a", now=T0) is None


@pytest.mark.parametrize(
    ("kind", "binding", "late"),
    [
        ("password-change", "browser-a", 0.0),
        ("pending-role", "browser-b", 0.0),
        ("pending-role", "", 0.0),
        ("pending-role", "browser-a", 600.0),
        ("pending-role", "browser-a", 601.0),
    ],
    ids=["other-kind", "other-browser", "no-browser", "at-expiry", "after-expiry"],
)
async def test_single_use_value_mismatch_changes_nothing(
    store: Store, kind: str, binding: str, late: float
) -> None:
    value = a_value()
    await store.put_single_use(value)
    now = T0 + late
    assert await store.peek_single_use(kind, "k-1", binding=binding, now=now) is None
    assert await store.consume_single_use(kind, "k-1", binding=binding, now=now) is None
    assert await store.consume_single_use("pending-role", "k-1", binding="browser-a", now=T0)


async def test_single_use_keys_are_namespaced_by_kind(store: Store) -> None:
    await store.put_single_use(a_value())
    other = a_value(kind="password-change", payload={"user": "u-1"})
    await store.put_single_use(other)  # the same key in another namespace is another value
    with pytest.raises(AlreadyExists):
        await store.put_single_use(a_value(binding="browser-b"))
    got = await store.consume_single_use("password-change", "k-1", binding="browser-a", now=T0)
    assert got == other
    assert await store.peek_single_use("pending-role", "k-1", binding="browser-a", now=T0)


async def test_forget_binding_ends_every_value_and_login_state_of_that_browser(
    store: Store,
) -> None:
    await store.put_single_use(a_value("k-1"))
    await store.put_single_use(a_value("k-2", kind="password-change"))
    await store.put_single_use(a_value("k-3", binding="browser-b"))
    await store.put_single_use(a_value("jti-1", kind="logout-jti", binding=""))
    await store.put_login_state(a_state("st-a", browser_binding="browser-a"))
    await store.put_login_state(a_state("st-b", browser_binding="browser-b"))
    assert await store.forget_binding("browser-a") == 3
    assert await store.forget_binding("") == 0  # never the values no browser holds
    assert await store.peek_single_use("pending-role", "k-1", binding="browser-a", now=T0) is None
    assert await store.peek_single_use("pending-role", "k-3", binding="browser-b", now=T0)
    assert await store.peek_single_use("logout-jti", "jti-1", binding="", now=T0)
    assert await store.consume_login_state("st-a", browser_binding="browser-a", now=T0) is None
    assert await store.consume_login_state("st-b", browser_binding="browser-b", now=T0)


async def test_purge_single_use_removes_only_expired(store: Store) -> None:
    await store.put_single_use(a_value("old", expires_at=T0 + 10))
    await store.put_single_use(a_value("live", expires_at=T0 + 600))
    assert await store.purge_single_use(T0 + 10) == 1
    assert await store.purge_single_use(T0 + 10) == 0
    assert await store.peek_single_use("pending-role", "live", binding="browser-a", now=T0 + 11)


# --- sessions and revocations --------------------------------------------------------------


async def test_create_and_get_session_round_trips_every_field(store: Store) -> None:
    session = a_session()
    await store.create_session(session)
    assert await store.get_session(session.id) == session
    bare = Session(id="bare", user_id="u", provider="p", subject="s", role_arn="r")
    await store.create_session(bare)
    assert await store.get_session("bare") == bare


async def test_get_unknown_session_is_none(store: Store) -> None:
    assert await store.get_session("nope") is None


async def test_duplicate_session_raises_already_exists(store: Store) -> None:
    await store.create_session(a_session())
    with pytest.raises(AlreadyExists):
        await store.create_session(a_session(user_id="someone-else"))


async def test_touch_sessions_is_batched_and_only_moves_forward(store: Store) -> None:
    await store.create_session(a_session("s1"))
    await store.create_session(a_session("s2", last_seen_at=T0 + 500))
    await store.create_session(a_session("s3"))
    await store.touch_sessions({"s1": T0 + 100, "s2": T0 + 200, "unknown": T0 + 300})
    await store.touch_sessions({})
    seen = {sid: (await store.get_session(sid)) for sid in ("s1", "s2", "s3")}
    assert {sid: s.last_seen_at for sid, s in seen.items() if s} == {
        "s1": T0 + 100,
        "s2": T0 + 500,  # not moved backwards
        "s3": T0,
    }


async def test_revoke_session_records_a_revocation(store: Store) -> None:
    await store.create_session(a_session("s1"))
    await store.create_session(a_session("s2"))
    assert await store.revoke_session("s1", now=T0 + 60, reason="logout") is True
    got = await store.get_session("s1")
    assert got is not None
    assert (got.revoked_at, got.revoked_reason) == (T0 + 60, "logout")
    other = await store.get_session("s2")
    assert other is not None
    assert other.revoked_at is None
    revocations = await store.revocations_since(0)
    assert [(r.kind, r.target, r.before, r.created_at) for r in revocations] == [
        ("session", "s1", T0 + 60, T0 + 60)
    ]
    # again: nothing changes, no second revocation; unknown sessions are False too
    assert await store.revoke_session("s1", now=T0 + 90, reason="again") is False
    assert await store.revoke_session("nope", now=T0 + 90, reason="x") is False
    got = await store.get_session("s1")
    assert got is not None
    assert (got.revoked_at, got.revoked_reason) == (T0 + 60, "logout")
    assert len(await store.revocations_since(0)) == 1


async def test_revoke_user_sessions_revokes_only_that_users_live_sessions(store: Store) -> None:
    await store.create_session(a_session("mine-1"))
    await store.create_session(a_session("mine-2"))
    await store.create_session(a_session("mine-expired", expires_at=T0 + 10))
    await store.create_session(a_session("mine-revoked"))
    await store.create_session(a_session("theirs", user_id="user-2"))
    await store.revoke_session("mine-revoked", now=T0 + 1, reason="earlier")

    assert await store.revoke_user_sessions("user-1", now=T0 + 100, reason="admin") == 2

    for sid in ("mine-1", "mine-2"):
        got = await store.get_session(sid)
        assert got is not None
        assert (got.revoked_at, got.revoked_reason) == (T0 + 100, "admin")
    for sid, revoked_at in (("mine-expired", None), ("mine-revoked", T0 + 1), ("theirs", None)):
        got = await store.get_session(sid)
        assert got is not None
        assert got.revoked_at == revoked_at
    kinds = [(r.kind, r.target, r.before) for r in await store.revocations_since(0)]
    assert kinds == [("session", "mine-revoked", T0 + 1), ("user", "user-1", T0 + 100)]


async def test_revoke_user_sessions_without_sessions_still_records_the_user(store: Store) -> None:
    assert await store.revoke_user_sessions("user-9", now=T0, reason="offboarded") == 0
    assert [(r.kind, r.target) for r in await store.revocations_since(0)] == [("user", "user-9")]


async def test_revocations_since_returns_later_ones_in_id_order(store: Store) -> None:
    added = []
    for n in range(5):
        rev = Revocation(kind="role", target=f"arn:role/{n}", before=T0 + n, created_at=T0)
        got = await store.add_revocation(rev)
        assert got.id is not None
        assert replace(got, id=None) == rev
        added.append(got)
    ids = [r.id or 0 for r in added]
    assert ids == sorted(ids)
    assert len(set(ids)) == 5
    assert await store.revocations_since(0) == added
    assert added[1].id is not None
    assert await store.revocations_since(added[1].id) == added[2:]
    assert added[-1].id is not None
    assert await store.revocations_since(added[-1].id) == []


async def test_purge_revocations_drops_only_those_older_than_the_horizon(store: Store) -> None:
    added = [
        await store.add_revocation(Revocation(kind=k, target=f"t{n}", before=T0 + n, created_at=T0))
        for n, k in enumerate(("session", "user", "role", "session"))
    ]
    assert await store.purge_revocations(T0 + 2) == 2  # before T0 and T0 + 1
    assert await store.revocations_since(0) == added[2:]
    assert await store.purge_revocations(T0 + 2) == 0
    later = await store.add_revocation(
        Revocation(kind="user", target="u", before=T0 + 9, created_at=T0 + 9)
    )
    assert added[-1].id is not None
    assert later.id is not None
    assert later.id > added[-1].id
    assert await store.revocations_since(added[-1].id) == [later]


async def test_purge_sessions_removes_expired_and_idle_ones(store: Store) -> None:
    now = T0 + 7200
    await store.create_session(a_session("expired", expires_at=now))
    await store.create_session(a_session("idle", last_seen_at=now - 3600))
    await store.create_session(a_session("never-seen-idle", last_seen_at=0.0))
    await store.create_session(a_session("live", last_seen_at=now - 10))
    await store.create_session(a_session("no-idle-limit", idle_timeout=0.0))
    await store.create_session(a_session("revoked-live", last_seen_at=now - 10))
    await store.revoke_session("revoked-live", now=now - 5, reason="x")
    assert await store.purge_sessions(now) == 3
    for sid in ("expired", "idle", "never-seen-idle"):
        assert await store.get_session(sid) is None
    for sid in ("live", "no-idle-limit", "revoked-live"):
        assert await store.get_session(sid) is not None


# --- signing keys --------------------------------------------------------------------------


async def test_signing_keys_add_list_update_delete(store: Store) -> None:
    assert await store.list_signing_keys() == []
    k2, k1 = a_key("k2", T0 + 10), a_key("k1", T0)
    await store.add_signing_key(k2)
    await store.add_signing_key(k1)
    assert await store.list_signing_keys() == [k1, k2]  # oldest first

    await store.update_signing_key("k1", retired_at=T0 + 5, expires_at=T0 + 50)
    assert await store.list_signing_keys() == [
        replace(k1, retired_at=T0 + 5, expires_at=T0 + 50),
        k2,
    ]
    await store.update_signing_key("k1", retired_at=None, expires_at=None)
    assert (await store.list_signing_keys())[0] == k1

    await store.delete_signing_key("k1")
    assert await store.list_signing_keys() == [k2]


async def test_swap_signing_key_is_a_compare_and_swap(store: Store) -> None:
    k1, k2, k3 = a_key("k1", T0), a_key("k2", T0 + 30), a_key("k3", T0 + 60)
    # the first key: insert-if-absent
    assert await store.swap_signing_key(k1, replaces=[], replaced_expire_at=T0 + 99) is True
    assert await store.list_signing_keys() == [k1]
    assert await store.swap_signing_key(k2, replaces=[], replaced_expire_at=T0 + 99) is False
    # a rotation retires the open key at the new key's activation
    assert await store.swap_signing_key(k2, replaces=["k1"], replaced_expire_at=T0 + 999)
    assert await store.list_signing_keys() == [
        replace(k1, retired_at=T0 + 30, expires_at=T0 + 999),
        k2,
    ]
    before = await store.list_signing_keys()
    # a stale view (k1 is no longer the open key) changes nothing
    for stale in ([], ["k1"], ["k1", "k2"], ["nope"]):
        assert await store.swap_signing_key(k3, replaces=stale, replaced_expire_at=T0) is False
        assert await store.list_signing_keys() == before


async def test_signing_key_errors(store: Store) -> None:
    await store.add_signing_key(a_key("k1"))
    with pytest.raises(AlreadyExists):
        await store.add_signing_key(a_key("k1", T0 + 1))
    with pytest.raises(RecordNotFound):
        await store.update_signing_key("nope", retired_at=T0, expires_at=None)
    with pytest.raises(RecordNotFound):
        await store.delete_signing_key("nope")


# --- roles ---------------------------------------------------------------------------------


async def test_roles_put_get_list_delete(store: Store) -> None:
    assert await store.get_role("dev") is None
    assert await store.list_roles() == []
    dev, admin = a_role("dev"), a_role("admin", source="api", description="")
    await store.put_role(dev)
    await store.put_role(admin)
    assert await store.get_role("dev") == dev
    assert await store.list_roles() == [admin, dev]  # by name
    await store.delete_role("dev")
    assert await store.get_role("dev") is None
    assert await store.list_roles() == [admin]


async def test_put_role_replaces_the_whole_role(store: Store) -> None:
    await store.put_role(a_role())
    boundary = {"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": "iam:*"}]}
    new = a_role(
        description="Developers, v2",
        trust_policy={"Version": "2012-10-17", "Statement": []},
        policies=[],
        permissions_boundary=boundary,
        max_session_duration=3600.0,
        source="api",
        created_at=T0 + 1,
        updated_at=T0 + 2,
    )
    await store.put_role(new)
    assert await store.get_role("dev") == new
    assert len(await store.list_roles()) == 1
    # and back to no boundary: None, not JSON null
    await store.put_role(a_role())
    got = await store.get_role("dev")
    assert got is not None
    assert got.permissions_boundary is None


async def test_delete_unknown_role_raises_record_not_found(store: Store) -> None:
    with pytest.raises(RecordNotFound):
        await store.delete_role("nope")


async def test_delete_role_removes_its_attachments_inline_policies_and_boundary(
    store: Store,
) -> None:
    await store.put_managed_policy(a_policy("p1"))
    await store.put_managed_policy(a_policy("p2"))
    await store.put_role(a_role("dev"))
    await store.put_role(a_role("ops"))
    principals: list[tuple[PrincipalType, str]] = [
        ("role", "dev"),
        ("role", "ops"),
        ("group", "dev"),
    ]
    for kind, principal in principals:
        await store.attach_policy(kind, principal, "p1")
        await store.put_inline_policy(kind, principal, "own", a_document())
        await store.set_boundary(kind, principal, "p2")
    everything = AttachedPolicies(managed=("p1",), inline={"own": a_document()}, boundary="p2")

    await store.delete_role("dev")
    assert await store.attached_policies("role", "dev") == AttachedPolicies()
    # another role, and a group of the same name, keep theirs
    assert await store.attached_policies("role", "ops") == everything
    assert await store.attached_policies("group", "dev") == everything
    # a new role of that name starts with nothing
    await store.put_role(a_role("dev"))
    assert await store.attached_policies("role", "dev") == AttachedPolicies()
    assert await store.policy_uses("p1") == [
        PolicyUse("group", "dev"),
        PolicyUse("role", "ops"),
    ]


async def test_delete_unknown_role_keeps_attachments_under_that_name(store: Store) -> None:
    await store.put_managed_policy(a_policy("p1"))
    await store.attach_policy("role", "ghost", "p1")
    with pytest.raises(RecordNotFound):
        await store.delete_role("ghost")
    assert await store.attached_policies("role", "ghost") == AttachedPolicies(managed=("p1",))


# --- managed policies ----------------------------------------------------------------------


async def test_managed_policies_put_get_list_delete(store: Store) -> None:
    assert await store.get_managed_policy("read-only") is None
    assert await store.list_managed_policies() == []
    read, admin = a_policy("read-only"), a_policy("admin", source="api", description="")
    await store.put_managed_policy(read)
    await store.put_managed_policy(admin)
    assert await store.get_managed_policy("read-only") == read
    assert await store.list_managed_policies() == [admin, read]  # by name
    await store.delete_managed_policy("read-only")
    assert await store.get_managed_policy("read-only") is None
    assert await store.list_managed_policies() == [admin]


async def test_managed_policy_with_defaults_round_trips(store: Store) -> None:
    bare = ManagedPolicyRecord(name="bare", document={})
    await store.put_managed_policy(bare)
    assert await store.get_managed_policy("bare") == bare


async def test_managed_policy_document_round_trips_unicode_and_nested_lists(store: Store) -> None:
    policy = a_policy("Zoë-ünïcödé", document=RICH_DOCUMENT, description="Ärger ✓ 日本語")
    await store.put_managed_policy(policy)
    got = await store.get_managed_policy("Zoë-ünïcödé")
    assert got == policy
    assert got.document == RICH_DOCUMENT
    assert await store.list_managed_policies() == [policy]


async def test_put_managed_policy_replaces_every_field_and_keeps_attachments(
    store: Store,
) -> None:
    await store.put_managed_policy(a_policy())
    await store.attach_policy("user", "user-1", "read-only")
    await store.set_boundary("role", "dev", "read-only")
    new = a_policy(
        document=a_document("s3:*", effect="Deny"),
        description="v2",
        source="api",
        created_at=T0 + 5,
        updated_at=T0 + 6,
    )
    await store.put_managed_policy(new)
    assert await store.get_managed_policy("read-only") == new
    assert await store.list_managed_policies() == [new]
    assert await store.policy_uses("read-only") == [
        PolicyUse("role", "dev", as_boundary=True),
        PolicyUse("user", "user-1"),
    ]


async def test_delete_unknown_managed_policy_raises_record_not_found(store: Store) -> None:
    with pytest.raises(RecordNotFound):
        await store.delete_managed_policy("nope")


async def test_delete_managed_policy_removes_its_attachments_and_boundary_uses(
    store: Store,
) -> None:
    await store.put_managed_policy(a_policy("gone"))
    await store.put_managed_policy(a_policy("kept"))
    await store.create_group(Group("devs"))
    principals: list[tuple[PrincipalType, str]] = [
        ("user", "user-1"),
        ("group", "devs"),
        ("role", "dev"),
    ]
    for kind, principal in principals:
        await store.attach_policy(kind, principal, "gone")
        await store.attach_policy(kind, principal, "kept")
    await store.set_boundary("user", "user-1", "gone")
    await store.set_boundary("role", "dev", "kept")
    await store.put_inline_policy("role", "dev", "gone", a_document())  # same name: unrelated

    await store.delete_managed_policy("gone")

    assert await store.policy_uses("gone") == []
    assert await store.attached_policies("user", "user-1") == AttachedPolicies(managed=("kept",))
    assert await store.attached_policies("group", "devs") == AttachedPolicies(managed=("kept",))
    assert await store.attached_policies("role", "dev") == AttachedPolicies(
        managed=("kept",), inline={"gone": a_document()}, boundary="kept"
    )
    # a new policy of the same name is not attached anywhere
    await store.put_managed_policy(a_policy("gone"))
    assert await store.policy_uses("gone") == []
    assert len(await store.policy_uses("kept")) == 4


async def test_policy_uses_are_sorted_by_type_principal_and_boundary(store: Store) -> None:
    await store.put_managed_policy(a_policy("p"))
    await store.put_managed_policy(a_policy("other"))
    assert await store.policy_uses("p") == []
    await store.attach_policy("role", "b-role", "p")
    await store.attach_policy("user", "user-2", "p")
    await store.set_boundary("role", "a-role", "p")
    await store.attach_policy("role", "a-role", "p")
    await store.attach_policy("group", "g", "p")
    await store.set_boundary("user", "user-1", "p")
    await store.attach_policy("user", "user-3", "other")  # another policy's use
    await store.put_inline_policy("user", "user-4", "p", a_document())  # inline: not a use
    assert await store.policy_uses("p") == [
        PolicyUse("group", "g"),
        PolicyUse("role", "a-role"),
        PolicyUse("role", "a-role", as_boundary=True),
        PolicyUse("role", "b-role"),
        PolicyUse("user", "user-1", as_boundary=True),
        PolicyUse("user", "user-2"),
    ]
    assert await store.policy_uses("nope") == []


# --- groups --------------------------------------------------------------------------------


async def test_groups_create_get_list_delete(store: Store) -> None:
    assert await store.get_group("devs") is None
    assert await store.list_groups() == []
    devs, admins = Group("devs", "Developers ✓", T0), Group("admins", created_at=T0 + 1)
    await store.create_group(devs)
    await store.create_group(admins)
    assert await store.get_group("devs") == devs
    assert await store.list_groups() == [admins, devs]  # by name
    await store.delete_group("devs")
    assert await store.get_group("devs") is None
    assert await store.list_groups() == [admins]


async def test_create_duplicate_group_raises_already_exists(store: Store) -> None:
    await store.create_group(Group("devs", "first", T0))
    with pytest.raises(AlreadyExists):
        await store.create_group(Group("devs", "second", T0 + 1))
    assert await store.list_groups() == [Group("devs", "first", T0)]


async def test_delete_unknown_group_raises_record_not_found(store: Store) -> None:
    with pytest.raises(RecordNotFound):
        await store.delete_group("nope")


async def test_group_members_add_is_idempotent_and_lists_are_sorted(store: Store) -> None:
    for n in (3, 1, 2):
        await store.create_user(a_user(n))
    for name in ("ops", "devs", "admins"):
        await store.create_group(Group(name))
    assert await store.group_members("devs") == []
    assert await store.user_groups("user-1") == []
    for user_id in ("user-3", "user-1", "user-2", "user-1"):
        await store.add_group_member("devs", user_id)
    await store.add_group_member("devs", "user-1")  # again: nothing changes
    await store.add_group_member("ops", "user-1")
    await store.add_group_member("admins", "user-1")
    assert await store.group_members("devs") == ["user-1", "user-2", "user-3"]
    assert await store.group_members("ops") == ["user-1"]
    assert await store.user_groups("user-1") == ["admins", "devs", "ops"]
    assert await store.user_groups("user-2") == ["devs"]
    assert await store.group_members("nope") == []
    assert await store.user_groups("nobody") == []


async def test_remove_group_member(store: Store) -> None:
    await store.create_user(a_user(1))
    await store.create_user(a_user(2))
    await store.create_group(Group("devs"))
    await store.add_group_member("devs", "user-1")
    await store.add_group_member("devs", "user-2")
    assert await store.remove_group_member("devs", "user-1") is True
    assert await store.remove_group_member("devs", "user-1") is False
    assert await store.remove_group_member("nope", "user-2") is False
    assert await store.group_members("devs") == ["user-2"]
    assert await store.user_groups("user-1") == []


async def test_add_group_member_needs_the_group_and_the_user(store: Store) -> None:
    await store.create_user(a_user(1))
    await store.create_group(Group("devs"))
    with pytest.raises(RecordNotFound):
        await store.add_group_member("nope", "user-1")
    with pytest.raises(RecordNotFound):
        await store.add_group_member("devs", "nobody")
    with pytest.raises(RecordNotFound):
        await store.add_group_member("devs", "sub-1")  # by id, not by subject or name
    assert await store.group_members("devs") == []
    assert await store.user_groups("user-1") == []


async def test_delete_group_removes_its_members_and_policies(store: Store) -> None:
    await store.create_user(a_user(1))
    await store.put_managed_policy(a_policy("p1"))
    await store.put_managed_policy(a_policy("p2"))
    for name in ("devs", "ops"):
        await store.create_group(Group(name))
        await store.add_group_member(name, "user-1")
        await store.attach_policy("group", name, "p1")
        await store.put_inline_policy("group", name, "own", a_document())
        await store.set_boundary("group", name, "p2")
    await store.attach_policy("role", "devs", "p1")  # a role of the same name: unrelated

    await store.delete_group("devs")

    assert await store.user_groups("user-1") == ["ops"]
    assert await store.group_members("devs") == []
    assert await store.attached_policies("group", "devs") == AttachedPolicies()
    assert await store.attached_policies("group", "ops") == AttachedPolicies(
        managed=("p1",), inline={"own": a_document()}, boundary="p2"
    )
    assert await store.attached_policies("role", "devs") == AttachedPolicies(managed=("p1",))
    assert await store.policy_uses("p1") == [PolicyUse("group", "ops"), PolicyUse("role", "devs")]
    # a new group of that name starts empty, even with leftovers of a race with the deletion
    # (the store does not check that a principal exists on attach)
    await store.attach_policy("group", "devs", "p1")
    await store.put_inline_policy("group", "devs", "stale", a_document())
    await store.create_group(Group("devs"))
    assert await store.group_members("devs") == []
    assert await store.attached_policies("group", "devs") == AttachedPolicies()


# --- policy attachments --------------------------------------------------------------------


async def test_nothing_attached_is_empty(store: Store) -> None:
    assert await store.attached_policies("user", "nobody") == AttachedPolicies()
    assert await store.all_attachments("user") == {}
    assert await store.all_attachments("group") == {}
    assert await store.all_attachments("role") == {}


async def test_attach_policy_is_idempotent_and_sorted(store: Store) -> None:
    for name in ("b", "c", "a"):
        await store.put_managed_policy(a_policy(name))
    for name in ("c", "a", "b", "a"):
        await store.attach_policy("user", "user-1", name)
    await store.attach_policy("user", "user-1", "c")
    assert await store.attached_policies("user", "user-1") == AttachedPolicies(
        managed=("a", "b", "c")
    )
    assert await store.policy_uses("a") == [PolicyUse("user", "user-1")]


async def test_attach_unknown_policy_raises_record_not_found(store: Store) -> None:
    with pytest.raises(RecordNotFound):
        await store.attach_policy("role", "dev", "nope")
    assert await store.attached_policies("role", "dev") == AttachedPolicies()


async def test_detach_policy(store: Store) -> None:
    await store.put_managed_policy(a_policy("a"))
    await store.put_managed_policy(a_policy("b"))
    await store.attach_policy("group", "devs", "a")
    await store.attach_policy("group", "devs", "b")
    assert await store.detach_policy("group", "devs", "a") is True
    assert await store.detach_policy("group", "devs", "a") is False
    assert await store.detach_policy("group", "devs", "nope") is False
    assert await store.detach_policy("role", "devs", "b") is False  # another principal type
    assert await store.attached_policies("group", "devs") == AttachedPolicies(managed=("b",))
    assert await store.get_managed_policy("a") is not None  # detaching keeps the policy


async def test_principal_types_are_separate(store: Store) -> None:
    await store.put_managed_policy(a_policy("u"))
    await store.put_managed_policy(a_policy("g"))
    await store.put_managed_policy(a_policy("r"))
    await store.attach_policy("user", "x", "u")
    await store.attach_policy("group", "x", "g")
    await store.attach_policy("role", "x", "r")
    await store.put_inline_policy("user", "x", "inline", a_document("u:*"))
    await store.put_inline_policy("role", "x", "inline", a_document("r:*"))
    await store.set_boundary("user", "x", "r")
    assert await store.attached_policies("user", "x") == AttachedPolicies(
        managed=("u",), inline={"inline": a_document("u:*")}, boundary="r"
    )
    assert await store.attached_policies("group", "x") == AttachedPolicies(managed=("g",))
    assert await store.attached_policies("role", "x") == AttachedPolicies(
        managed=("r",), inline={"inline": a_document("r:*")}
    )


async def test_set_attached_policies_replaces_them_all(store: Store) -> None:
    for name in ("a", "b", "c", "d"):
        await store.put_managed_policy(a_policy(name))
    await store.attach_policy("role", "dev", "a")
    await store.attach_policy("role", "dev", "b")
    await store.attach_policy("role", "ops", "a")
    await store.put_inline_policy("role", "dev", "own", a_document())
    await store.set_boundary("role", "dev", "d")

    await store.set_attached_policies("role", "dev", ["d", "c", "b", "c"])  # repeats collapse
    assert await store.attached_policies("role", "dev") == AttachedPolicies(
        managed=("b", "c", "d"), inline={"own": a_document()}, boundary="d"
    )
    # other principals keep theirs
    assert await store.attached_policies("role", "ops") == AttachedPolicies(managed=("a",))

    await store.set_attached_policies("role", "dev", ("b", "c", "d"))  # the same again
    assert (await store.attached_policies("role", "dev")).managed == ("b", "c", "d")
    await store.set_attached_policies("role", "dev", [])
    assert await store.attached_policies("role", "dev") == AttachedPolicies(
        inline={"own": a_document()}, boundary="d"
    )
    await store.set_attached_policies("user", "user-9", ["a"])  # a principal with nothing yet
    assert await store.attached_policies("user", "user-9") == AttachedPolicies(managed=("a",))


async def test_set_attached_policies_with_an_unknown_policy_changes_nothing(store: Store) -> None:
    await store.put_managed_policy(a_policy("a"))
    await store.put_managed_policy(a_policy("b"))
    await store.attach_policy("role", "dev", "a")
    with pytest.raises(RecordNotFound):
        await store.set_attached_policies("role", "dev", ["b", "nope", "b"])
    with pytest.raises(RecordNotFound):
        await store.set_attached_policies("role", "dev", ["nope"])
    with pytest.raises(RecordNotFound):
        await store.set_attached_policies("role", "new", ["a", "nope"])
    assert await store.attached_policies("role", "dev") == AttachedPolicies(managed=("a",))
    assert await store.attached_policies("role", "new") == AttachedPolicies()
    assert await store.policy_uses("b") == []


async def test_inline_policies_put_replace_delete(store: Store) -> None:
    await store.put_inline_policy("user", "user-1", "b", a_document("b:*"))
    await store.put_inline_policy("user", "user-1", "a", a_document("a:*"))
    await store.put_inline_policy("user", "user-2", "a", a_document("other:*"))
    assert await store.attached_policies("user", "user-1") == AttachedPolicies(
        inline={"a": a_document("a:*"), "b": a_document("b:*")}
    )
    await store.put_inline_policy("user", "user-1", "a", a_document("a2:*", effect="Deny"))
    got = await store.attached_policies("user", "user-1")
    assert got.inline == {"a": a_document("a2:*", effect="Deny"), "b": a_document("b:*")}
    assert await store.delete_inline_policy("user", "user-1", "a") is True
    assert await store.delete_inline_policy("user", "user-1", "a") is False
    assert await store.delete_inline_policy("group", "user-1", "b") is False
    assert await store.attached_policies("user", "user-1") == AttachedPolicies(
        inline={"b": a_document("b:*")}
    )
    assert await store.attached_policies("user", "user-2") == AttachedPolicies(
        inline={"a": a_document("other:*")}
    )


async def test_inline_policy_document_round_trips_unicode_and_nested_lists(store: Store) -> None:
    await store.put_inline_policy("group", "dévs ✓", "Zoë's", RICH_DOCUMENT)
    got = await store.attached_policies("group", "dévs ✓")
    assert got == AttachedPolicies(inline={"Zoë's": RICH_DOCUMENT})
    assert await store.all_attachments("group") == {"dévs ✓": got}


async def test_set_and_clear_the_boundary(store: Store) -> None:
    await store.put_managed_policy(a_policy("b1"))
    await store.put_managed_policy(a_policy("b2"))
    await store.set_boundary("user", "user-1", None)  # clearing nothing is fine
    await store.set_boundary("user", "user-1", "b1")
    assert await store.attached_policies("user", "user-1") == AttachedPolicies(boundary="b1")
    await store.set_boundary("user", "user-1", "b2")  # replaces
    assert await store.attached_policies("user", "user-1") == AttachedPolicies(boundary="b2")
    assert await store.policy_uses("b1") == []
    with pytest.raises(RecordNotFound):
        await store.set_boundary("user", "user-1", "nope")
    assert await store.attached_policies("user", "user-1") == AttachedPolicies(boundary="b2")
    await store.set_boundary("user", "user-1", None)
    assert await store.attached_policies("user", "user-1") == AttachedPolicies()
    assert await store.get_managed_policy("b2") is not None  # clearing keeps the policy


async def test_all_attachments_of_several_principals(store: Store) -> None:
    for name in ("a", "b", "boundary"):
        await store.put_managed_policy(a_policy(name))
    await store.attach_policy("role", "dev", "b")
    await store.attach_policy("role", "dev", "a")
    await store.put_inline_policy("role", "dev", "own", a_document("dev:*"))
    await store.set_boundary("role", "dev", "boundary")
    await store.put_inline_policy("role", "inline-only", "x", RICH_DOCUMENT)
    await store.put_inline_policy("role", "inline-only", "y", a_document("y:*"))
    await store.set_boundary("role", "boundary-only", "boundary")
    await store.attach_policy("role", "managed-only", "a")
    await store.attach_policy("role", "emptied", "a")
    await store.detach_policy("role", "emptied", "a")  # nothing left: not listed
    await store.attach_policy("group", "dev", "b")  # other types: not listed
    await store.put_inline_policy("user", "dev", "u", a_document())

    assert await store.all_attachments("role") == {
        "boundary-only": AttachedPolicies(boundary="boundary"),
        "dev": AttachedPolicies(
            managed=("a", "b"), inline={"own": a_document("dev:*")}, boundary="boundary"
        ),
        "inline-only": AttachedPolicies(inline={"x": RICH_DOCUMENT, "y": a_document("y:*")}),
        "managed-only": AttachedPolicies(managed=("a",)),
    }
    assert await store.all_attachments("group") == {"dev": AttachedPolicies(managed=("b",))}
    assert await store.all_attachments("user") == {
        "dev": AttachedPolicies(inline={"u": a_document()})
    }
    for principal, attached in (await store.all_attachments("role")).items():
        assert await store.attached_policies("role", principal) == attached


async def test_all_attachments_takes_the_same_queries_for_any_number_of_principals(
    store: SqlStore,
) -> None:
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(args[2])  # (conn, cursor, statement, ...)

    await store.put_managed_policy(a_policy("a"))
    await store.put_managed_policy(a_policy("b"))

    async def queries_for(principals: int) -> int:
        for n in range(principals):
            await store.attach_policy("role", f"r{n}", "a")
            await store.put_inline_policy("role", f"r{n}", "own", a_document())
            await store.set_boundary("role", f"r{n}", "b")
        statements.clear()
        sa.event.listen(store._engine.sync_engine, "before_cursor_execute", count)
        try:
            assert len(await store.all_attachments("role")) == principals
        finally:
            sa.event.remove(store._engine.sync_engine, "before_cursor_execute", count)
        return len([s for s in statements if s.lstrip().upper().startswith("SELECT")])

    one = await queries_for(1)
    assert 0 < one <= 3
    assert await queries_for(25) == one


# --- audit ---------------------------------------------------------------------------------


async def test_audit_is_listed_newest_first_with_ids(store: Store) -> None:
    events = [
        AuditEvent(time=T0 + n, action="login", outcome="success", principal=f"p{n}")
        for n in range(3)
    ]
    for event in events:
        await store.append_audit(event)
    listed = await store.list_audit()
    assert [replace(e, id=None) for e in listed] == events[::-1]
    ids = [e.id for e in listed]
    assert all(i is not None for i in ids)
    assert len(set(ids)) == 3


async def test_audit_round_trips_every_field(store: Store) -> None:
    event = AuditEvent(
        time=T0,
        action="login.failure",
        outcome="failure",
        request_id="req-1",
        principal="google/sub-1",
        reason="invalid_id_token: aud",
        source_ip="2001:db8::1",
        details={"aud": ["a", "b"], "nested": {"n": 1, "ok": True, "none": None}, "ü": "ß"},
    )
    await store.append_audit(event)
    [got] = await store.list_audit()
    assert replace(got, id=None) == event


async def test_audit_filters_and_limit(store: Store) -> None:
    for n, action in enumerate(["login", "logout", "login", "keys.rotate", "login"]):
        await store.append_audit(AuditEvent(time=T0 + n, action=action, outcome="success"))
    assert [e.time for e in await store.list_audit(action="login")] == [T0 + 4, T0 + 2, T0]
    assert [e.time for e in await store.list_audit(since=T0 + 3)] == [T0 + 4, T0 + 3]
    assert [e.time for e in await store.list_audit(action="login", since=T0 + 1)] == [
        T0 + 4,
        T0 + 2,
    ]
    assert [e.time for e in await store.list_audit(limit=2)] == [T0 + 4, T0 + 3]
    assert await store.list_audit(action="nothing") == []


async def test_audit_events_at_the_same_time_newest_insert_first(store: Store) -> None:
    for n in range(3):
        await store.append_audit(AuditEvent(time=T0, action=f"a{n}", outcome="success"))
    assert [e.action for e in await store.list_audit()] == ["a2", "a1", "a0"]


async def test_audit_many_appends_in_order_with_ids(store: Store) -> None:
    events = [
        AuditEvent(
            time=T0,  # same time: the order comes from the ids
            action=f"a{n}",
            outcome="failure" if n % 2 else "success",
            request_id=f"req-{n}",
            principal=f"p{n}",
            reason=f"r{n}",
            source_ip="2001:db8::1",
            details={"n": n, "nested": {"ok": True, "none": None}, "ü": "ß"},
        )
        for n in range(250)
    ]
    await store.append_audit_many(events)
    listed = await store.list_audit(limit=1000)
    assert [replace(e, id=None) for e in listed] == events[::-1]
    ids = [e.id or 0 for e in listed]
    assert ids == sorted(ids, reverse=True)
    assert len(set(ids)) == 250


async def test_audit_many_mixes_with_single_appends(store: Store) -> None:
    await store.append_audit(AuditEvent(time=T0, action="one", outcome="success"))
    await store.append_audit_many(
        [AuditEvent(time=T0, action=a, outcome="success") for a in ("two", "three")]
    )
    await store.append_audit(AuditEvent(time=T0, action="four", outcome="success"))
    assert [e.action for e in await store.list_audit()] == ["four", "three", "two", "one"]


async def test_audit_many_of_nothing_does_nothing(store: Store) -> None:
    await store.append_audit_many([])
    assert await store.list_audit() == []


async def test_audit_many_is_one_transaction(store: Store) -> None:
    good = AuditEvent(time=T0, action="good", outcome="success")
    # NOT NULL: the database itself refuses the third row, after inserting the first two
    bad = AuditEvent(time=T0, action=None, outcome="success")  # type: ignore[arg-type]
    with pytest.raises(StoreError):
        await store.append_audit_many([good, good, bad])
    assert await store.list_audit() == []  # neither row: all or nothing
    await store.append_audit_many([good])
    assert [e.action for e in await store.list_audit()] == ["good"]


# --- meta ----------------------------------------------------------------------------------


async def test_meta(store: Store) -> None:
    assert await store.get_meta("bootstrap") is None
    await store.set_meta("bootstrap", "done")
    assert await store.get_meta("bootstrap") == "done"
    await store.set_meta("bootstrap", "again")
    assert await store.get_meta("bootstrap") == "again"
    await store.set_meta("other", "")
    assert await store.get_meta("other") == ""


# --- errors --------------------------------------------------------------------------------


def test_not_found_and_already_exists_are_store_errors() -> None:
    assert issubclass(RecordNotFound, StoreError)
    assert issubclass(AlreadyExists, StoreError)


async def test_a_second_store_sees_the_first_ones_writes(store_factory: StoreFactory) -> None:
    one, two = await store_factory(), await store_factory()
    await one.set_meta("k", "v")
    assert await two.get_meta("k") == "v"


async def test_unmigrated_database_raises_store_error(database: Database) -> None:
    store = database.open()
    try:
        await store.ping()  # the server answers ...
        with pytest.raises(StoreError) as e:
            await store.count_users()  # ... but there are no tables
        assert type(e.value) is StoreError
        assert "count users" in e.value.reason
    finally:
        await store.close()


UNREACHABLE = [
    pytest.param("postgresql://broker:s3cr3t-pw@127.0.0.1:1/broker", id="postgres-closed-port"),
    pytest.param("sqlite:///{tmp}/no/such/dir/broker.db", id="sqlite-missing-directory"),
]


@pytest.mark.parametrize("url", UNREACHABLE)
async def test_unreachable_store_raises_store_error(url: str, tmp_path: Path) -> None:
    store = open_store(url.format(tmp=tmp_path))
    try:
        for call in (store.ping, store.count_users, lambda: store.get_meta("k")):
            with pytest.raises(StoreError) as e:
                await call()
            assert type(e.value) is StoreError
            assert "s3cr3t-pw" not in str(e.value)
            assert "s3cr3t-pw" not in e.value.reason
    finally:
        await store.close()
    assert "s3cr3t-pw" not in repr(store)


@pytest.mark.parametrize("url", UNREACHABLE)
async def test_migrating_an_unreachable_store_raises_store_error(url: str, tmp_path: Path) -> None:
    with pytest.raises(StoreError) as e:
        await migrate(url.format(tmp=tmp_path))
    assert "migrate" in e.value.reason
    assert "s3cr3t-pw" not in str(e.value)


@pytest.mark.parametrize(
    ("url", "schema"),
    [
        pytest.param("mysql://u:pw@localhost/db", None, id="unsupported-database"),
        pytest.param("sqlite://", None, id="sqlite-in-memory"),
        pytest.param("sqlite:///:memory:", None, id="sqlite-memory-path"),
        pytest.param("sqlite:////tmp/x.db", "s1", id="sqlite-with-schema"),
        pytest.param("postgresql://u@h/db?schema=a", "b", id="two-schemas"),
        pytest.param("postgresql://u@h/db", "bad;name", id="bad-schema-name"),
        pytest.param("not a url at all: pw", None, id="garbage"),
    ],
)
def test_bad_urls_raise_store_error(url: str, schema: str | None) -> None:
    with pytest.raises(StoreError) as e:
        open_store(url, schema=schema)
    assert "pw" not in e.value.reason.replace("postgresql", "")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        pytest.param("sqlite:////var/lib/b.db", "sqlite+aiosqlite:////var/lib/b.db", id="sqlite"),
        pytest.param(
            "postgresql://u:p@h:5433/db", "postgresql+asyncpg://u:***@h:5433/db", id="postgres"
        ),
        pytest.param("postgres://u@h/db", "postgresql+asyncpg://u@h/db", id="postgres-alias"),
        pytest.param(
            "postgresql://u@h/db?sslmode=require",
            "postgresql+asyncpg://u@h/db?ssl=require",
            id="ssl",
        ),
    ],
)
def test_urls_resolve_to_async_drivers(url: str, expected: str) -> None:
    assert parse_store_url(url).display == expected


def test_schema_in_the_url() -> None:
    target = parse_store_url("postgresql://u@h/db?schema=tenant_a")
    assert (target.schema, target.display) == ("tenant_a", "postgresql+asyncpg://u@h/db")
