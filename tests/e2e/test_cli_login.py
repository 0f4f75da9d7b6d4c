"""``broker login`` against the real oidc-provider, as the CLI does it (issue 14): the loopback
flow driven over HTTP (the authorize URL followed through the provider's sign-in, approved, the
redirect caught by a local server on 127.0.0.1:<ephemeral>), and the device flow approved in
real Chromium while the test polls the token endpoint. The credentials are used with boto3."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode, urlsplit

import aiohttp
import pytest

from tests.conftest import BrokerFactory, RunningBroker
from tests.e2e.test_browser_login import provider_sign_in, submit
from tests.support.cli_oauth import (
    DEVICE_GRANT,
    Pkce,
    authorize_url,
    bearer_get,
    loopback_server,
    redeem,
    role_credentials,
    token_request,
)
from tests.support.login_driver import follow_login, parse_forms
from tests.support.oidc_server import OidcServer
from tests.web.test_cli_auth import sts

if TYPE_CHECKING:
    from playwright.async_api import Page

pytestmark = pytest.mark.oidc


@pytest.fixture
async def broker(broker_factory: BrokerFactory, oidc_server: OidcServer) -> RunningBroker:
    return await broker_factory(oidc=oidc_server)


async def use_the_session(b: RunningBroker, tokens: dict[str, Any]) -> None:
    """What ``broker roles`` and ``broker credentials --role dev`` do, then boto3 with it."""
    status, roles = await bearer_get(b.url, "/v1/roles", tokens["access_token"])
    assert status == 200
    assert [r["name"] for r in roles["roles"]] == ["dev"]  # bob: groups [dev]
    status, creds = await role_credentials(b.url, tokens["access_token"], {"role": "dev"})
    assert status == 200, creds
    me = await asyncio.to_thread(sts(b.url, creds).get_caller_identity)
    assert me["Arn"].startswith("arn:broker:sts::000000000000:assumed-role/dev/")


async def test_loopback_login_with_the_real_provider(
    broker: RunningBroker, oidc_server: OidcServer
) -> None:
    pkce = Pkce.new()
    async with (
        loopback_server() as loop,
        aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser,
    ):
        url = authorize_url(broker.url, loop.redirect_uri, pkce, "e2e-state")
        async with browser.get(url, allow_redirects=False) as r:
            assert r.status == 303
            rd = parse_qs(urlsplit(r.headers["Location"]).query)["rd"][0]
        # the person picks the provider on /login?rd=... and signs in there
        r2 = await follow_login(
            browser,
            f"{broker.url}/login/corp?" + urlencode({"rd": rd}),
            username="bob",
            password=oidc_server.accounts["bob"],
            provider_origins=oidc_server.issuers.values(),
        )
        assert r2.status == 200
        assert "Sign in the broker CLI on this computer" in r2.text
        assert str(loop.port) in r2.text
        fields = dict(parse_forms(r2.text)[0].fields)
        async with browser.post(
            f"{broker.url}/oauth2/authorize", data={**fields, "decision": "approve"}
        ) as r:  # the browser follows the redirect to the CLI's loopback server
            assert r.status == 200
        await asyncio.wait_for(loop.arrived.wait(), 10)
    [callback] = loop.received
    assert callback["state"] == "e2e-state"
    status, tokens = await redeem(broker.url, callback["code"], loop.redirect_uri, pkce.verifier)
    assert status == 200, tokens
    await use_the_session(broker, tokens)
    status, fresh = await token_request(
        broker.url, grant_type="refresh_token", refresh_token=tokens["refresh_token"]
    )
    assert status == 200, fresh
    await use_the_session(broker, fresh)


@pytest.mark.browser
async def test_device_login_approved_in_chromium(
    broker: RunningBroker, oidc_server: OidcServer, page: Page
) -> None:
    async with (
        aiohttp.ClientSession() as s,
        s.post(
            f"{broker.url}/oauth2/device",
            data={"client_id": "broker-cli"},
            headers={"User-Agent": "broker-cli/e2e"},
        ) as r,
    ):
        assert r.status == 200
        d = await r.json()
    status, body = await token_request(
        broker.url, grant_type=DEVICE_GRANT, device_code=d["device_code"]
    )
    assert (status, body["error"]) == (400, "authorization_pending")

    await page.goto(d["verification_uri"])  # the person types the URL, then the code
    await page.wait_for_url(f"{broker.url}/login?**")
    await page.click("#provider-corp")
    await provider_sign_in(page, oidc_server, "corp", "bob")
    await page.wait_for_url(f"{broker.url}/device**")
    await page.fill("#user_code", d["user_code"].lower())
    await submit(page, "#continue", broker.url)
    await page.wait_for_selector("#origin-ua")
    assert await page.text_content("#origin-ua") == "broker-cli/e2e"
    assert await page.text_content("#user-code") == d["user_code"]
    await submit(page, "#approve", broker.url)
    await page.wait_for_selector("#done")

    tokens: dict[str, Any] = {}
    for _ in range(10):  # polling as RFC 8628 §3.5 says: every ``interval`` seconds
        await asyncio.sleep(d["interval"])
        status, tokens = await token_request(
            broker.url, grant_type=DEVICE_GRANT, device_code=d["device_code"]
        )
        if status == 200:
            break
        assert tokens["error"] in ("authorization_pending", "slow_down"), tokens
    assert "access_token" in tokens, tokens
    await use_the_session(broker, tokens)
