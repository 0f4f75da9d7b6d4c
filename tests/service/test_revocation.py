"""The in-memory revocation state of the hot path: what it voids, that it forgets only
revocations no live credential can be affected by, and that it fails closed when it cannot be
kept current."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from broker.clock import FrozenClock
from broker.domain.tokens import issue_time
from broker.errors import RevocationStateStale, StoreError
from broker.service.container import (
    REVOCATION_LEEWAY_SECONDS,
    STS_MAX_SESSION_SECONDS,
    USER_SESSION_MAX_SECONDS,
)
from broker.service.revocation import RevocationState
from broker.storage import migrate, open_store
from broker.storage.base import Revocation
from tests.conftest import BrokerFactory

T0 = 1_800_000_000.0


class FlakyStore:
    """Only what ``poll`` reads; ``down`` makes it fail as a cut-off database does."""

    def __init__(self) -> None:
        self.rows: list[Revocation] = []
        self.down = False

    async def revocations_since(self, after_id: int) -> list[Revocation]:
        if self.down:
            raise StoreError("connection refused")
        return [r for r in self.rows if r.id is not None and r.id > after_id]


def state_with(*revocations: Revocation, clock: FrozenClock | None = None) -> RevocationState:
    state = RevocationState(FlakyStore(), clock or FrozenClock(T0))  # type: ignore[arg-type]
    state.polled_at = state._clock.now()  # as if just polled: these tests are about apply()
    for r in revocations:
        state.apply(r)
    return state


def test_each_kind_voids_what_it_names() -> None:
    state = state_with(
        Revocation("session", "s1", T0, T0),
        Revocation("user", "u1", T0, T0),
        Revocation("role", "arn:role/dev", T0, T0),
    )

    def revoked(session: str = "s", user: str = "u", role: str = "r", iat: float = T0) -> bool:
        return state.is_revoked(session_id=session, user_id=user, role_arn=role, issued_at=iat)

    assert revoked(session="s1", iat=T0 + 100)  # a revoked session stays revoked
    assert revoked(user="u1")
    assert not revoked(user="u1", iat=T0 + 1)
    assert revoked(role="arn:role/dev", iat=T0 - 5)
    assert not revoked(role="arn:role/dev", iat=T0 + 5)
    assert not revoked()


def test_an_origin_revocation_voids_the_session_and_what_was_derived_from_it() -> None:
    state = state_with(Revocation("origin", "s-a", T0, T0), Revocation("session", "s-b", T0, T0))

    def revoked(session: str, origin: str, iat: float = T0 + 100) -> bool:
        return state.is_revoked(
            session_id=session, user_id="u", role_arn="r", issued_at=iat, origin_session_id=origin
        )

    assert revoked("s-a", "s-a")  # the session's own tokens (a session's origin is itself)
    assert revoked("sts-1", "s-a")  # derived from it, issued whenever
    assert not revoked("sts-2", "s-c")  # another session's
    assert not revoked("sts-3", "")  # derived from no session (web identity)
    # a plain ``session`` revocation voids that session's tokens, not what was derived from it
    assert revoked("s-b", "s-b")
    assert not revoked("sts-4", "s-b")
    state.apply(Revocation("origin", "", T0, T0))  # never recorded; must not void "" origins
    assert not revoked("sts-3", "")
    assert state.forget(T0 + 1) == 2
    assert not revoked("sts-1", "s-a")


KINDS = [("user", "u"), ("role", "r"), ("session", "s")]


@pytest.mark.parametrize(("kind", "target"), KINDS, ids=[k for k, _ in KINDS])
def test_within_one_second_what_was_issued_before_a_revocation_ends_and_what_follows_lives(
    kind: str, target: str
) -> None:
    """Issue times as the broker writes them (``issue_time``, the token's ``iat``) against a
    revocation's time, all within one second: issued before, or at the very instant (fail
    closed), is void; issued a few milliseconds after lives, except in a revoked session."""
    clock = FrozenClock(T0 + 0.2)
    earlier = issue_time(clock.now())
    clock.advance(0.3)
    state = state_with(Revocation(kind, target, clock.now(), clock.now()), clock=clock)
    same_instant = issue_time(clock.now())
    clock.advance(0.002)
    later = issue_time(clock.now())
    assert int(earlier) == int(same_instant) == int(later) == int(T0)

    def revoked(iat: float) -> bool:
        return state.is_revoked(session_id="s", user_id="u", role_arn="r", issued_at=iat)

    assert revoked(earlier)
    assert revoked(same_instant)
    assert revoked(later) is (kind == "session")  # a revoked session has no later credential


@pytest.mark.parametrize(("kind", "target"), KINDS[:2], ids=[k for k, _ in KINDS[:2]])
def test_a_credential_issued_a_fraction_of_a_millisecond_before_a_revocation_ends(
    kind: str, target: str
) -> None:
    """Within one millisecond: the issue time is rounded down, never to nearest (which would put
    a credential issued at .2996 at .300, after a revocation at .2998, and let it live)."""
    issued = issue_time(T0 + 0.2996)
    state = state_with(Revocation(kind, target, T0 + 0.2998, T0 + 0.2998))
    assert state.is_revoked(session_id="s", user_id="u", role_arn="r", issued_at=issued)
    # a credential issued in the next millisecond lives; a whole-second ``iat`` did not
    after = issue_time(T0 + 0.3001)
    assert not state.is_revoked(session_id="s", user_id="u", role_arn="r", issued_at=after)
    assert state.is_revoked(session_id="s", user_id="u", role_arn="r", issued_at=int(T0))


def test_forget_drops_only_revocations_older_than_the_horizon() -> None:
    state = state_with(
        Revocation("session", "old", T0, T0),
        Revocation("session", "new", T0 + 10, T0 + 10),
        Revocation("user", "u-old", T0, T0),
        Revocation("role", "r-new", T0 + 10, T0 + 10),
    )
    assert state.forget(T0 + 5) == 2
    assert not state.is_revoked(session_id="old", user_id="u-old", role_arn="x", issued_at=T0)
    assert state.is_revoked(session_id="new", user_id="x", role_arn="x", issued_at=T0)
    assert state.is_revoked(session_id="x", user_id="x", role_arn="r-new", issued_at=T0)


async def test_the_periodic_purge_keeps_revocations_for_the_longest_credential(
    broker_factory: BrokerFactory,
) -> None:
    rb = await broker_factory()
    b = rb.broker
    horizon = b.revocation_horizon
    longest = max(b.settings.session.lifetime, STS_MAX_SESSION_SECONDS, USER_SESSION_MAX_SECONDS)
    assert horizon == longest + REVOCATION_LEEWAY_SECONDS  # GetSessionToken's 36 h the longest
    now = b.clock.now()
    await b.store.add_revocation(Revocation("session", "ancient", now - horizon - 60, now))
    await b.store.add_revocation(Revocation("session", "recent", now - horizon + 60, now))
    await b.revocations.poll()
    b._last["purge"] = now - 7200  # the hourly purge is due
    await b.tick()
    assert [r.target for r in await b.store.revocations_since(0)] == ["recent"]
    assert b.revocations.is_revoked(session_id="recent", user_id="", role_arn="", issued_at=0)
    assert not b.revocations.is_revoked(session_id="ancient", user_id="", role_arn="", issued_at=0)


async def test_a_new_instance_loads_only_what_is_kept(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'b.db'}"
    await migrate(url)
    store = open_store(url)
    try:
        await store.add_revocation(Revocation("user", "u", T0, T0))
        await store.purge_revocations(T0 + 1)
        state = RevocationState(store)
        assert await state.poll() == 0
        assert state.healthy
    finally:
        await store.close()


def _lookup(state: RevocationState) -> bool:
    return state.is_revoked(session_id="s", user_id="u", role_arn="r", issued_at=T0)


async def test_a_state_never_polled_refuses_every_lookup() -> None:
    state = RevocationState(FlakyStore(), FrozenClock(T0))  # type: ignore[arg-type]
    assert not state.healthy
    with pytest.raises(RevocationStateStale):
        _lookup(state)


async def test_a_state_older_than_max_staleness_refuses_and_recovers_at_the_next_poll() -> None:
    clock = FrozenClock(T0)
    store = FlakyStore()
    state = RevocationState(store, clock, max_staleness=10)  # type: ignore[arg-type]
    await state.poll()
    assert state.healthy
    assert not _lookup(state)
    store.down = True
    for _ in range(10):  # a poll fails every second: the state answers until it is 10 s old
        clock.advance(1)
        with pytest.raises(StoreError):
            await state.poll()
        assert not _lookup(state)
    clock.advance(0.5)
    assert not state.healthy
    with pytest.raises(RevocationStateStale) as e:
        _lookup(state)
    assert e.value.status == 503
    assert e.value.reason == "revocation_state_stale"
    # a revocation made elsewhere meanwhile is picked up by the poll that ends the outage
    store.rows.append(Revocation("session", "s", T0 + 5, T0 + 5, id=1))
    store.down = False
    await state.poll()
    assert state.healthy
    assert _lookup(state)  # revoked, not stale


async def test_slow_periodic_work_does_not_delay_the_revocation_poll(
    broker_factory: BrokerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The poll has a loop of its own: a tick stuck on a slow store write (an audit flush, a
    key refresh) must not let the revocation state go stale."""
    rb = await broker_factory()
    b = rb.broker
    release = asyncio.Event()

    async def stuck() -> None:
        await release.wait()

    monkeypatch.setattr(b, "tick", stuck)
    try:
        first = b.revocations.polled_at
        deadline = time.monotonic() + 20  # generous: polls come every second
        while b.revocations.polled_at < first + 2:
            assert time.monotonic() < deadline, "the revocation poll stopped with the tick"
            await asyncio.sleep(0.1)
        assert b.revocations.healthy
    finally:
        release.set()  # let the tick loop end with the app
