"""Offboarding across instances: two brokers on one PostgreSQL, the real oidc-provider. A user
disabled, or a role revoked, on instance A (through A's service, or through the CLI as an
operator does) is refused on instance B within the revocation poll (contract C4: 2 s) — the
browser session, the same token as a bearer credential, and the token-exchange result (an STS
credential) derived from it — and a disabled user cannot sign in again on either instance."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from yarl import URL

from broker.cli import main
from broker.web.oauth import TOKEN_EXCHANGE, TT_ACCESS_TOKEN
from tests.conftest import E2E_ROLES, BrokerFactory, RunningBroker
from tests.support.login_driver import follow_login
from tests.support.oidc_server import OidcServer
from tests.support.postgres import fresh_schema

pytestmark = [pytest.mark.postgres, pytest.mark.oidc]
ACCOUNT = "000000000000"
WAIT = 15.0  # a generous bound on "eventually" (the contract is 2 s): not a timing assertion
ROLES = {
    "dev": E2E_ROLES["dev"],
    # chained from dev: what bob's session exchanges itself for (an STS credential)
    "deploy": {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:broker:iam::{ACCOUNT}:role/dev"},
                "Action": "sts:AssumeRole",
            }
        ],
    },
}


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    async with fresh_schema("broker_off") as url:
        yield url


async def login(b: RunningBroker, oidc: OidcServer) -> tuple[int, str]:
    """bob signs in (role dev, his only one) in a fresh browser: (status, session token or "")."""
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as browser:
        result = await follow_login(
            browser,
            f"{b.url}/login/corp",
            username="bob",
            password=oidc.accounts["bob"],
            provider_origins=oidc.issuers.values(),
        )
        cookie = jar.filter_cookies(URL(b.url)).get("broker_session")
        return result.status, cookie.value if cookie else ""


async def session_status(b: RunningBroker, token: str) -> int:
    headers = {"Accept": "application/json", "Cookie": f"broker_session={token}"}
    async with aiohttp.ClientSession() as s, s.get(f"{b.url}/session", headers=headers) as r:
        return r.status


async def bearer_status(b: RunningBroker, token: str) -> int:
    """``/v1/authorize`` with the token as a bearer credential."""
    body = {"action": "http:GET", "resource": "https://app.example.com/"}
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        aiohttp.ClientSession() as s,
        s.post(f"{b.url}/v1/authorize", json=body, headers=headers) as r,
    ):
        return r.status


async def exchange(b: RunningBroker, token: str) -> str:
    form = {
        "grant_type": TOKEN_EXCHANGE,
        "subject_token": token,
        "subject_token_type": TT_ACCESS_TOKEN,
        "scope": "role:deploy",
    }
    async with aiohttp.ClientSession() as s, s.post(f"{b.url}/oauth2/token", data=form) as r:
        body = await r.json()
        assert r.status == 200, body
        return str(body["access_token"])


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not await check():
        assert time.monotonic() < deadline, f"not within {WAIT} s: {what}"
        await asyncio.sleep(0.05)


async def all_refused_on(b: RunningBroker, session: str, access: str) -> bool:
    return (
        await session_status(b, session) == 401
        and await bearer_status(b, session) == 401
        and await bearer_status(b, access) == 401
    )


async def test_disable_and_role_revocation_reach_every_instance(
    pg_url: str, broker_factory: BrokerFactory, oidc_server: OidcServer, tmp_path: Path
) -> None:
    a = await broker_factory(oidc=oidc_server, store_url=pg_url, name="a", roles=ROLES)
    b = await broker_factory(
        oidc=oidc_server, store_url=pg_url, name="b", roles=ROLES, public_url=a.url
    )
    status, session = await login(a, oidc_server)
    assert session, status
    access = await exchange(a, session)
    assert await session_status(b, session) == 200
    assert await bearer_status(b, session) == 200
    assert await bearer_status(b, access) == 200

    # disabled on A (its service): refused on B, every form of it
    (bob,) = [u.id for u in await a.broker.store.list_users() if u.provider == "corp"]
    await a.broker.offboarding.disable_user(bob, actor="test", reason="offboarded")
    await eventually(lambda: all_refused_on(b, session, access), "B refuses bob's credentials")
    assert await all_refused_on(a, session, access)
    for instance in (a, b):  # and bob cannot sign in again anywhere
        status, again = await login(instance, oidc_server)
        assert (status, again) == (403, "")

    # enabled again, bob signs in on B; then an operator revokes role dev with the CLI
    await a.broker.offboarding.enable_user(bob, actor="test")
    status, session = await login(b, oidc_server)
    assert session, status
    access = await exchange(b, session)
    assert await bearer_status(a, access) == 200
    config = tmp_path / "a" / "broker.toml"
    code = await asyncio.to_thread(main, ["admin", "roles", "revoke-sessions", "dev", "--config",
                                          str(config)])  # fmt: skip
    assert code == 0

    async def dev_refused() -> bool:
        return await session_status(b, session) == 401 and await bearer_status(b, session) == 401

    await eventually(dev_refused, "B refuses the dev session")
    # a chained credential is of its own role (deploy), as in AWS: revoking dev leaves it
    assert await bearer_status(b, access) == 200
    code = await asyncio.to_thread(main, ["admin", "roles", "revoke-sessions", "deploy",
                                          "--config", str(config)])  # fmt: skip
    assert code == 0

    async def deploy_refused() -> bool:
        return await bearer_status(a, access) == 401 and await bearer_status(b, access) == 401

    await eventually(deploy_refused, "both instances refuse the deploy credential")
