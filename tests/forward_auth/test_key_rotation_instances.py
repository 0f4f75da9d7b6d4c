"""Two brokers on one PostgreSQL: while one rotates its signing key, the other accepts its
tokens at every moment, at ``/auth``, ``/v1/authorize`` and the session pages (issue 11, item 1).

The instances share a ``FrozenClock`` that the test moves: nothing waits for the activation."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import aiohttp
import jwt
import pytest

from broker.clock import FrozenClock
from broker.service.container import KEY_PUBLISH_AHEAD_SECONDS
from tests.conftest import RunningBroker
from tests.forward_auth.conftest import VIEWER, BrokerStarter, session_token
from tests.forward_auth.test_auth_endpoint import APP, ask, cookie, nginx
from tests.support.postgres import fresh_schema

pytestmark = [pytest.mark.postgres]


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    async with fresh_schema("broker_keys") as url:
        yield url


async def _authorize(b: RunningBroker, token: str) -> int:
    async with (
        aiohttp.ClientSession() as s,
        s.post(
            b.url + "/v1/authorize",
            json={"action": "http:GET", "resource": APP + "/x"},
            headers={"Authorization": f"Bearer {token}"},
        ) as r,
    ):
        return r.status


async def _session_page(b: RunningBroker, token: str) -> int:
    headers = {"Accept": "application/json", "Cookie": f"broker_session={token}"}
    async with aiohttp.ClientSession() as s, s.get(f"{b.url}/session", headers=headers) as r:
        return r.status


async def _accepted_everywhere(instances: list[RunningBroker], token: str) -> None:
    for b in instances:
        status, _, body = await ask(b, nginx(APP + "/x", **cookie(token)))
        assert status == 200, (b.url, body)
        assert await _authorize(b, token) == 200
        assert await _session_page(b, token) == 200


async def test_the_other_instance_accepts_tokens_of_a_rotated_key_at_every_moment(
    pg_url: str, start_broker: BrokerStarter
) -> None:
    clock = FrozenClock(time.time())
    a = await start_broker(access={"viewer": VIEWER}, store_url=pg_url, clock=clock, name="a")
    b = await start_broker(
        access={"viewer": VIEWER}, store_url=pg_url, clock=clock, name="b", public_url=a.url
    )
    both = [a, b]
    old = a.broker.keyring.current_kid
    assert b.broker.keyring.current_kid == old  # started on one store: one key

    new = await a.broker.rotate_keys(reason="test")  # `broker keys rotate`: returns at once
    assert new.created_at == clock.now() + KEY_PUBLISH_AHEAD_SECONDS
    before = await session_token(a, "viewer")
    assert jwt.get_unverified_header(before)["kid"] == old  # published, not yet signing
    await _accepted_everywhere(both, before)

    clock.advance(KEY_PUBLISH_AHEAD_SECONDS)
    for instance in both:  # as their revocation polls do, every second (the clock is frozen)
        await instance.broker.poll_revocations()
    assert a.broker.keyring.current_kid == new.kid
    after = await session_token(a, "viewer")
    assert jwt.get_unverified_header(after)["kid"] == new.kid
    await _accepted_everywhere(both, after)
    await _accepted_everywhere(both, before)  # the previous key still verifies
    assert b.broker.keyring.current_kid == new.kid
    from_b = await session_token(b, "viewer")
    assert jwt.get_unverified_header(from_b)["kid"] == new.kid
    await _accepted_everywhere(both, from_b)
