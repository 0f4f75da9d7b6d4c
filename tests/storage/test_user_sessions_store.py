"""``list_user_sessions``: a user's live sessions (the console's list), on every backend:
only that user's, unrevoked, before their absolute end and idle timeout, newest first,
bounded."""

from __future__ import annotations

from broker.storage.base import Session, Store

T0 = 1_700_000_000.0


def session(
    sid: str,
    user: str = "u-1",
    *,
    created: float = T0,
    expires: float = T0 + 3600,
    idle: float = 600.0,
    seen: float = T0,
) -> Session:
    return Session(
        id=sid,
        user_id=user,
        provider="local",
        subject=f"{user}-sub",
        role_arn="arn:broker:iam::000000000000:role/dev",
        created_at=created,
        expires_at=expires,
        idle_timeout=idle,
        last_seen_at=seen,
    )


async def test_only_the_users_live_sessions_newest_first(store: Store) -> None:
    await store.create_session(session("old", created=T0 - 10, seen=T0 + 50))
    await store.create_session(session("new", created=T0 + 5, seen=T0 + 5))
    await store.create_session(session("no-idle-limit", created=T0 - 20, idle=0, seen=T0 - 20))
    await store.create_session(session("ended", expires=T0 + 90))
    await store.create_session(session("idle", created=T0 - 1000, seen=T0 - 900))
    await store.create_session(session("revoked"))
    await store.create_session(session("theirs", "u-2"))
    await store.revoke_session("revoked", now=T0 + 1, reason="logout")

    got = await store.list_user_sessions("u-1", now=T0 + 100)
    assert [s.id for s in got] == ["new", "old", "no-idle-limit"]
    assert got[1] == session("old", created=T0 - 10, seen=T0 + 50)
    assert await store.list_user_sessions("nobody", now=T0) == []


async def test_bounded_and_gone_once_revoked(store: Store) -> None:
    for n in range(5):
        await store.create_session(session(f"s{n}", created=T0 + n))
    assert [s.id for s in await store.list_user_sessions("u-1", now=T0 + 10, limit=2)] == [
        "s4",
        "s3",
    ]
    await store.revoke_user_sessions("u-1", now=T0 + 20, reason="admin")
    assert await store.list_user_sessions("u-1", now=T0 + 30) == []
