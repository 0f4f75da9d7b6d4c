"""Sessions: lifetime, idle timeout, refresh, revocation — with a frozen clock and a real store."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from broker.clock import FrozenClock
from broker.config import load_settings
from broker.domain.claims import Identity
from broker.errors import TokenExpired, Unauthenticated
from broker.service.container import KEY_PUBLISH_AHEAD_SECONDS, Broker
from tests.conftest import E2E_ROLES, write_config


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(time.time())


@pytest.fixture
async def broker(tmp_path: Path, clock: FrozenClock) -> AsyncIterator[Broker]:
    path = write_config(
        tmp_path,
        port=8000,
        oidc=None,
        roles={"local-admin": E2E_ROLES["local-admin"]},
        extra='[session]\nlifetime = "8h"\nidle_timeout = "1h"\ntoken_lifetime = "15m"\n',
    )
    async with aiohttp.ClientSession() as http:
        b = await Broker.open(load_settings(path), http=http, clock=clock)
        try:
            yield b
        finally:
            await b.close()


async def advance(b: Broker, clock: FrozenClock, seconds: float) -> None:
    """Move time as a running broker sees it: its revocation poll (every second) keeps up."""
    clock.advance(seconds)
    await b.poll_revocations()


async def _session(b: Broker, max_duration: float = 3600.0) -> str:
    user = await b.store.find_user("local", "admin")
    assert user is not None
    identity = Identity(provider="local", subject="admin", name="admin", user_id=user.id)
    _, token = await b.sessions.create(
        identity, b.roles.arn("local-admin"), max_session_duration=max_duration
    )
    return token


async def test_lifetime_is_the_shorter_of_session_and_role(broker: Broker) -> None:
    token = await _session(broker, max_duration=3600)
    ctx = broker.sessions.verify(token)
    assert ctx.session_expires_at - ctx.issued_at == pytest.approx(3600, abs=1)
    assert ctx.expires_at - ctx.issued_at == pytest.approx(900, abs=1)


async def test_token_is_refreshed_past_half_life_through_the_store(
    broker: Broker, clock: FrozenClock
) -> None:
    token = await _session(broker, max_duration=8 * 3600)
    await advance(broker, clock, 300)
    ctx, new = await broker.sessions.resume(token)
    assert new is None
    await advance(broker, clock, 300)  # 600 s > half of 900 s
    ctx2, new = await broker.sessions.resume(token)
    assert new is not None
    assert ctx2.session_id == ctx.session_id
    assert ctx2.expires_at > ctx.expires_at


async def test_expired_token_of_an_active_session_is_renewed(
    broker: Broker, clock: FrozenClock
) -> None:
    token = await _session(broker, max_duration=8 * 3600)
    broker.sessions.verify(token)
    await broker.sessions.flush_last_seen()
    # the token (15m) expired, but the session was used 1000 s ago < 1 h idle
    await advance(broker, clock, 1000)
    with pytest.raises(TokenExpired, match="token_expired"):  # typed: resume renews on it
        broker.sessions.verify(token)
    _, new = await broker.sessions.resume(token)
    assert new is not None


async def test_idle_timeout_is_enforced_server_side(broker: Broker, clock: FrozenClock) -> None:
    token = await _session(broker, max_duration=8 * 3600)
    await advance(broker, clock, 3601 + 5)
    with pytest.raises(Unauthenticated) as e:
        await broker.sessions.resume(token)
    assert e.value.reason in ("session_idle", "invalid_token:expired")


async def test_absolute_lifetime_is_enforced(broker: Broker, clock: FrozenClock) -> None:
    token = await _session(broker, max_duration=3600)
    for _ in range(5):  # stay active every 10 minutes
        await advance(broker, clock, 600)
        _, new = await broker.sessions.resume(token)
        token = new or token
        await broker.sessions.flush_last_seen()
    await advance(broker, clock, 700)  # now past the one-hour role maximum
    with pytest.raises(Unauthenticated):
        await broker.sessions.resume(token)


async def test_revocation_applies_at_once_here_and_after_a_poll_elsewhere(
    broker: Broker, tmp_path: Path, clock: FrozenClock
) -> None:
    token = await _session(broker)
    ctx = broker.sessions.verify(token)
    # A second instance on the same store, as with PostgreSQL and several brokers.
    async with aiohttp.ClientSession() as http:
        other = await Broker.open(broker.settings, http=http, clock=clock)
        try:
            other.sessions.verify(token)
            await broker.sessions.end(ctx, reason="test")
            with pytest.raises(Unauthenticated, match="session_revoked"):
                broker.sessions.verify(token)
            other.sessions.verify(token)  # not yet polled
            await other.revocations.poll()
            with pytest.raises(Unauthenticated, match="session_revoked"):
                other.sessions.verify(token)
        finally:
            await other.close()


async def test_token_of_another_type_or_audience_is_refused(broker: Broker) -> None:
    token = await _session(broker)
    claims = broker.keyring.verify(token, typ="broker-session+jwt", audience=None)
    forged_typ = broker.keyring.sign(claims, typ="broker-assertion+jwt")
    with pytest.raises(Unauthenticated, match="typ_mismatch"):
        broker.sessions.verify(forged_typ)
    forged_aud = broker.keyring.sign(
        {**claims, "aud": "https://app.example.com"}, typ="broker-session+jwt"
    )
    with pytest.raises(Unauthenticated, match="aud_mismatch"):
        broker.sessions.verify(forged_aud)


async def test_a_key_rotated_by_another_instance_is_picked_up_on_first_sight(
    broker: Broker, clock: FrozenClock
) -> None:
    async with aiohttp.ClientSession() as http:
        other = await Broker.open(broker.settings, http=http, clock=clock)
        try:
            new = await other.rotate_keys(reason="test")
            # this instance missed every refresh until the new key activated
            await advance(broker, clock, KEY_PUBLISH_AHEAD_SECONDS)
            await other.poll_revocations()
            assert other.keyring.current_kid == new.kid
            user = await other.store.find_user("local", "admin")
            assert user is not None
            identity = Identity(provider="local", subject="admin", name="admin", user_id=user.id)
            _, token = await other.sessions.create(
                identity, other.roles.arn("local-admin"), max_session_duration=3600
            )
            with pytest.raises(Unauthenticated, match="unknown_kid"):
                broker.sessions.verify(token)
            ctx, _ = await broker.sessions.resume(token)
            assert ctx.user_id == user.id
        finally:
            await other.close()


async def test_every_bearer_path_learns_a_key_of_another_instance(
    broker: Broker, clock: FrozenClock
) -> None:
    """``CredentialVerifier`` (forward-auth, /v1/authorize, STS, token exchange) shares the
    ring's refresh on an unknown kid: a token signed with a key this instance has not read yet
    is accepted on first sight."""
    async with aiohttp.ClientSession() as http:
        other = await Broker.open(broker.settings, http=http, clock=clock)
        try:
            await other.rotate_keys(reason="test")
            await advance(broker, clock, KEY_PUBLISH_AHEAD_SECONDS)
            await other.poll_revocations()
            user = await other.store.find_user("local", "admin")
            assert user is not None
            identity = Identity(provider="local", subject="admin", name="admin", user_id=user.id)
            _, token = await other.sessions.create(
                identity, other.roles.arn("local-admin"), max_session_duration=3600
            )
            with pytest.raises(Unauthenticated, match="unknown_kid"):
                broker.credentials.verify(token)  # synchronous: only the keys already read
            cred = await broker.credentials.verify_fresh(token)
            assert cred.user_id == user.id
            assert broker.keyring.current_kid == other.keyring.current_kid
        finally:
            await other.close()
