"""Several brokers on one PostgreSQL: a session from one works on the other, and revoking it on
one takes effect on the other within 2 seconds (contract C4)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from yarl import URL

from tests.conftest import BrokerFactory, RunningBroker
from tests.support.login_driver import follow_login, parse_forms
from tests.support.oidc_server import OidcServer
from tests.support.postgres import fresh_schema

pytestmark = [pytest.mark.postgres, pytest.mark.oidc]
SKIP = (
    "set BROKER_TEST_POSTGRES_DSN=postgresql://postgres@127.0.0.1:5432/test to run the "
    "several-instances tests"
)


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    async with fresh_schema("broker_e2e") as url:
        yield url


async def _session_status(s: aiohttp.ClientSession, b: RunningBroker, token: str) -> int:
    headers = {"Accept": "application/json", "Cookie": f"broker_session={token}"}
    async with s.get(f"{b.url}/session", headers=headers) as r:
        return r.status


async def test_revocation_reaches_every_instance_within_two_seconds(
    pg_url: str, broker_factory: BrokerFactory, oidc_server: OidcServer
) -> None:
    # (pg_url first: its schema is dropped only after both brokers have stopped)
    a = await broker_factory(oidc=oidc_server, store_url=pg_url, name="a")
    # Instances behind one load balancer share the public URL (the issuer of their tokens).
    b = await broker_factory(oidc=oidc_server, store_url=pg_url, name="b", public_url=a.url)
    assert a.broker.bootstrap_password is None or b.broker.bootstrap_password is None
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as browser, aiohttp.ClientSession() as api:
        await follow_login(
            browser,
            f"{a.url}/login/corp",
            username="bob",
            password=oidc_server.accounts["bob"],
            provider_origins=oidc_server.issuers.values(),
        )
        token = jar.filter_cookies(URL(a.url))["broker_session"].value
        assert await _session_status(api, b, token) == 200  # B verifies A's session
        async with browser.get(f"{a.url}/logout") as r:
            form = parse_forms(await r.text())[0]
        async with browser.post(f"{a.url}/logout", data=form.fields) as r:
            assert r.status == 200
        started = time.monotonic()
        assert await _session_status(api, a, token) == 401  # at once where it happened
        while await _session_status(api, b, token) == 200:
            assert time.monotonic() - started < 2.0, "revocation did not reach instance B in 2 s"
            await asyncio.sleep(0.05)
