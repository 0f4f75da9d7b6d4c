"""Sessions remember the provider session they began with (the ID token's ``sid``), and the
store finds their users by it and ends exactly those sessions (Back-Channel Logout): on every
backend, with the conformance suite's fixtures."""

from __future__ import annotations

import asyncio

import pytest

from broker.errors import AlreadyExists
from broker.storage.base import Session, SingleUse, Store

T0 = 1_700_000_000.0


def session(sid: str, user: str, *, provider: str = "corp", provider_sid: str = "") -> Session:
    return Session(
        id=sid,
        user_id=user,
        provider=provider,
        subject=f"{user}-sub",
        role_arn="arn:broker:iam::000000000000:role/dev",
        created_at=T0,
        expires_at=T0 + 3600,
        last_seen_at=T0,
        provider_sid=provider_sid,
    )


async def test_provider_sid_round_trips(store: Store) -> None:
    s = session("s-1", "u-1", provider_sid="op-1")
    await store.create_session(s)
    assert await store.get_session("s-1") == s
    await store.create_session(session("s-2", "u-1"))
    got = await store.get_session("s-2")
    assert got is not None
    assert got.provider_sid == ""


async def test_provider_session_users_by_provider_and_sid(store: Store) -> None:
    await store.create_session(session("s-1", "u-1", provider_sid="op-1"))
    await store.create_session(session("s-2", "u-1", provider_sid="op-1"))  # two roles
    await store.create_session(session("s-3", "u-2", provider_sid="op-1"))
    await store.create_session(session("s-4", "u-3", provider_sid="op-2"))
    await store.create_session(session("s-5", "u-4", provider="partner", provider_sid="op-1"))
    await store.create_session(session("s-6", "u-5"))
    await store.revoke_session("s-3", now=T0, reason="logout")  # revoked ones count too
    assert await store.provider_session_users("corp", "op-1") == ["u-1", "u-2"]
    assert await store.provider_session_users("corp", "op-2") == ["u-3"]
    assert await store.provider_session_users("partner", "op-1") == ["u-4"]
    assert await store.provider_session_users("corp", "op-9") == []
    assert await store.provider_session_users("corp", "") == []  # "" is "no sid", never a match


async def test_revoke_provider_session_ends_exactly_its_sessions(store: Store) -> None:
    await store.create_session(session("s-1", "u-1", provider_sid="op-1"))
    await store.create_session(session("s-2", "u-1", provider_sid="op-1"))  # two roles
    await store.create_session(session("s-3", "u-1", provider_sid="op-2"))  # another browser
    await store.create_session(session("s-4", "u-2", provider="partner", provider_sid="op-1"))
    await store.create_session(session("s-5", "u-1"))
    await store.create_session(session("s-6", "u-3", provider_sid="op-1"))
    # ended by a plain logout earlier: its derived credentials may still be live
    await store.revoke_session("s-6", now=T0 + 1, reason="logout")
    before = await store.revocations_since(0)

    done = await store.revoke_provider_session("corp", "op-1", now=T0 + 5, reason="bcl")

    assert [(r.kind, r.target, r.before, r.created_at) for r in done] == [
        ("origin", s, T0 + 5, T0 + 5) for s in ("s-1", "s-2", "s-6")
    ]
    assert all(r.id is not None for r in done)
    assert await store.revocations_since(before[-1].id or 0) == done
    for sid in ("s-1", "s-2"):
        got = await store.get_session(sid)
        assert got is not None
        assert (got.revoked_at, got.revoked_reason) == (T0 + 5, "bcl")
    s6 = await store.get_session("s-6")
    assert s6 is not None
    assert (s6.revoked_at, s6.revoked_reason) == (T0 + 1, "logout")  # kept as it was
    for sid in ("s-3", "s-4", "s-5"):
        other = await store.get_session(sid)
        assert other is not None
        assert other.revoked_at is None


async def test_revoke_provider_session_of_no_session_records_nothing(store: Store) -> None:
    await store.create_session(session("s-1", "u-1"))  # no provider sid: never matched by ""
    assert await store.revoke_provider_session("corp", "op-9", now=T0, reason="x") == []
    assert await store.revoke_provider_session("corp", "", now=T0, reason="x") == []
    assert await store.revocations_since(0) == []
    got = await store.get_session("s-1")
    assert got is not None
    assert got.revoked_at is None


@pytest.mark.parametrize("n", [8])
async def test_a_logout_token_jti_is_taken_once_under_concurrency(store: Store, n: int) -> None:
    """The replay check of back-channel logout: of concurrent puts of one (kind, key), one
    wins and the others get ``AlreadyExists``."""
    value = SingleUse(
        kind="logout-token-jti",
        key="k",
        binding="",
        payload={},
        created_at=T0,
        expires_at=T0 + 600,
    )
    results = await asyncio.gather(
        *(store.put_single_use(value) for _ in range(n)), return_exceptions=True
    )
    assert sum(r is None for r in results) == 1
    assert all(isinstance(r, AlreadyExists) for r in results if r is not None)
