"""End to end: IdP-initiated logout (OpenID Connect Back-Channel Logout 1.0) with the real
oidc-provider.

The provider's client registers the broker's ``/backchannel-logout/corp`` (and
``backchannel_logout_session_required``, so ID and logout tokens carry ``sid``). A person logs in
through the provider's real forms, then ends the session at the provider's end_session
endpoint; the provider POSTs a logout token to the broker before it answers, and the broker's
session is refused at ``/auth`` — on the instance that received the token at once, on another
instance sharing the store after its next revocation poll (the periodic one runs every second).

Session-granular: the same person signed in from two browsers (two provider sessions) keeps the
other browser's broker session, and what was derived from it, when one provider session ends;
the credentials derived from the ended one (token exchange, and a chain of it) end with it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from yarl import URL

from broker.config import load_settings
from broker.web.app import create_app
from tests.conftest import E2E_ROLES, RunningBroker, write_config
from tests.support.login_driver import follow_login, parse_forms
from tests.support.oidc_server import (
    CLIENT_ID,
    CLIENT_SECRET,
    OidcServer,
    default_config,
    free_port,
    start_oidc_server,
)
from tests.support.postgres import fresh_schema

pytestmark = pytest.mark.oidc

APP = "https://app.example.com/"
ROLES = {
    "dev": E2E_ROLES["dev"],
    "admin": E2E_ROLES["admin"],  # alice: the chooser
    # taken from a dev session, or a credential of its own, by token exchange (derived ones)
    "chained": {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {
                    "AWS": [
                        "arn:broker:iam::000000000000:role/dev",
                        "arn:broker:iam::000000000000:role/chained",  # chains of it
                    ]
                },
                "Action": "sts:AssumeRole",
            }
        ],
    },
}
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN = "urn:ietf:params:oauth:token-type:access_token"

Start = Callable[[str, int, str, int], Awaitable[RunningBroker]]


@dataclass(frozen=True)
class Ports:
    a: int  # the instance the provider sends logout tokens to
    b: int


@pytest.fixture(scope="module")
def ports() -> Ports:
    return Ports(free_port(), free_port())


@pytest.fixture(scope="module")
def provider(ports: Ports) -> Iterator[OidcServer]:
    """``corp`` with the broker's client registered for back-channel logout at instance A."""
    config = default_config(
        {"corp": [f"http://127.0.0.1:{ports.a}/callback/corp"]}, algs={"corp": "RS256"}
    )
    client = config["providers"][0]["clients"][0]
    client["backchannel_logout_uri"] = f"http://127.0.0.1:{ports.a}/backchannel-logout/corp"
    client["backchannel_logout_session_required"] = True
    with start_oidc_server(config) as server:
        yield server


@pytest.fixture
async def start(tmp_path: Path, provider: OidcServer) -> AsyncIterator[Start]:
    runners: list[web.AppRunner] = []

    async def run(name: str, port: int, store_url: str, public_port: int) -> RunningBroker:
        """A broker on ``port`` whose public URL (and issuer) is on ``public_port``."""
        public_url = f"http://127.0.0.1:{public_port}"
        extra = f"""
            [providers.corp]
            issuer = "{provider.issuers["corp"]}"
            client_id = "{CLIENT_ID}"
            client_secret = "{CLIENT_SECRET}"
            backchannel_logout_uri = "{public_url}/backchannel-logout/corp"
        """
        path = write_config(
            tmp_path / name,
            port=port,
            oidc=None,
            store_url=store_url,
            roles=ROLES,
            extra=extra,
            public_url=public_url,
        )
        path.write_text(
            path.read_text().replace("[store]", 'trusted_proxies = ["127.0.0.1/32"]\n[store]', 1)
        )
        settings = load_settings(path)
        app = create_app(settings)
        runner = web.AppRunner(app)
        await runner.setup()
        runners.append(runner)
        await web.TCPSite(runner, "127.0.0.1", port).start()
        return RunningBroker(f"http://127.0.0.1:{port}", settings, app, runner)

    yield run
    for r in reversed(runners):
        await r.cleanup()


async def log_in(
    browser: aiohttp.ClientSession, b: RunningBroker, oidc: OidcServer, user: str = "bob"
) -> str:
    """Bob has one role (straight to the session); Alice chooses ``dev`` among two."""
    r = await follow_login(
        browser,
        f"{b.url}/login/corp",
        username=user,
        password=oidc.accounts[user],
        provider_origins=oidc.issuers.values(),
    )
    assert r.status == 200, r.text
    assert (r.url == f"{b.url}/roles") == (user == "alice")
    if r.url == f"{b.url}/roles":
        form = parse_forms(r.text)[0]
        async with browser.post(f"{b.url}/roles", data=[*form.fields, ("role", "dev")]) as c:
            assert c.status == 200, await c.text()
    return browser.cookie_jar.filter_cookies(URL(b.url))["broker_session"].value


async def auth_status(b: RunningBroker, token: str, *, bearer: bool = False) -> int:
    headers = {"X-Original-Method": "GET", "X-Original-URL": APP}
    if bearer:
        headers["Authorization"] = f"Bearer {token}"
    else:
        headers["Cookie"] = f"broker_session={token}"
    async with (
        aiohttp.ClientSession() as s,
        s.get(f"{b.url}/auth", headers=headers, allow_redirects=False) as r,
    ):
        return r.status


async def end_session_at_provider(browser: aiohttp.ClientSession, oidc: OidcServer) -> None:
    """What a person does at the provider's "sign out" page: confirm, ending every client."""
    async with browser.get(oidc.discovery_url("corp")) as r:
        end_session = (await r.json())["end_session_endpoint"]
    async with browser.get(end_session) as r:
        assert r.status == 200
        form = parse_forms(await r.text())[0]
    action = str(URL(end_session).join(URL(form.action)))
    async with browser.post(action, data=[*form.fields, ("logout", "yes")]) as r:
        assert r.status == 200, await r.text()


@pytest.mark.parametrize("user", ["bob", "alice"], ids=["one-role", "role-chooser"])
async def test_logout_at_the_provider_ends_the_broker_session(
    start: Start, ports: Ports, provider: OidcServer, user: str
) -> None:
    a = await start("a", ports.a, "sqlite:///broker.db", ports.a)
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as browser:
        token = await log_in(browser, a, provider, user)
        session = await a.broker.store.get_session(a.broker.sessions.verify(token).session_id)
        assert session.provider_sid  # the ID token's sid, kept for the logout token
        assert await auth_status(a, token) == 200
        await end_session_at_provider(browser, provider)
    assert await auth_status(a, token) == 401
    events = await a.broker.store.list_audit(action="logout.backchannel")
    assert [(e.outcome, e.principal) for e in events] == [("success", f"corp/{user}")]
    assert events[0].details["sid"] == session.provider_sid
    assert (await a.broker.store.get_session(session.id)).revoked_at is not None
    assert "backchannel.error" not in provider.stderr


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    async with fresh_schema("broker_bcl") as url:
        yield url


@pytest.mark.postgres
async def test_the_logout_reaches_every_instance(
    pg_url: str, start: Start, ports: Ports, provider: OidcServer
) -> None:
    # (pg_url first: its schema is dropped only after both brokers have stopped)
    a = await start("a", ports.a, pg_url, ports.a)
    b = await start("b", ports.b, pg_url, ports.a)
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as browser:
        token = await log_in(browser, a, provider)
        assert await auth_status(b, token) == 200  # B verifies A's session
        await end_session_at_provider(browser, provider)
    assert await auth_status(a, token) == 401  # at once where the token arrived
    await b.broker.revocations.poll()  # what B's periodic task does every second
    assert await auth_status(b, token) == 401


async def exchange(b: RunningBroker, subject_token: str) -> tuple[int, dict[str, str]]:
    """RFC 8693 token exchange of a broker token for a ``chained`` credential (the STS side)."""
    form = {
        "grant_type": TOKEN_EXCHANGE,
        "subject_token": subject_token,
        "subject_token_type": ACCESS_TOKEN,
        "scope": "role:chained",
    }
    async with aiohttp.ClientSession() as s, s.post(f"{b.url}/oauth2/token", data=form) as r:
        return r.status, await r.json()


async def derive(b: RunningBroker, subject_token: str) -> str:
    status, body = await exchange(b, subject_token)
    assert status == 200, body
    return body["access_token"]


async def assert_ended(b: RunningBroker, session: str, derived: list[str]) -> None:
    assert await auth_status(b, session) == 401
    for t in [session, *derived]:
        assert await auth_status(b, t, bearer=True) == 401
        status, body = await exchange(b, t)
        assert (status, body["error"]) == (400, "invalid_grant")


async def assert_alive(b: RunningBroker, session: str, derived: list[str]) -> None:
    assert await auth_status(b, session) == 200
    for t in [session, *derived]:
        assert await auth_status(b, t, bearer=True) == 200
        await derive(b, t)


@pytest.mark.postgres
async def test_the_logout_of_one_provider_session_ends_only_its_broker_session_and_derived(
    pg_url: str, start: Start, ports: Ports, provider: OidcServer
) -> None:
    a = await start("a", ports.a, pg_url, ports.a)
    b = await start("b", ports.b, pg_url, ports.a)
    async with (
        aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser_1,
        aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser_2,
    ):
        # Bob in two browsers: two provider sessions, two broker sessions.
        session_1 = await log_in(browser_1, a, provider)
        session_2 = await log_in(browser_2, a, provider)
        sid_1 = a.broker.sessions.verify(session_1).session_id
        sid_2 = a.broker.sessions.verify(session_2).session_id
        rows = [await a.broker.store.get_session(s) for s in (sid_1, sid_2)]
        assert "" != rows[0].provider_sid != rows[1].provider_sid != ""
        derived_1 = await derive(a, session_1)
        chained_1 = await derive(b, derived_1)  # derived from the derived one, on the other node
        derived_2 = await derive(b, session_2)
        for node in (a, b):
            await assert_alive(node, session_1, [derived_1, chained_1])

        await end_session_at_provider(browser_1, provider)  # the provider POSTs to A

        await assert_ended(a, session_1, [derived_1, chained_1])  # at once where it arrived
        await assert_alive(a, session_2, [derived_2])
        await b.broker.revocations.poll()  # what B's periodic task does every second
        await assert_ended(b, session_1, [derived_1, chained_1])
        await assert_alive(b, session_2, [derived_2])
        async with browser_2.get(f"{a.url}/session", headers={"Accept": "application/json"}) as r:
            assert r.status == 200  # the other browser is still signed in
    [event] = await a.broker.store.list_audit(action="logout.backchannel")
    assert (event.outcome, event.details["sid"], event.details["sessions"]) == (
        "success",
        rows[0].provider_sid,
        [sid_1],
    )
    assert "backchannel.error" not in provider.stderr


async def stop_at_the_chooser(
    browser: aiohttp.ClientSession, b: RunningBroker, oidc: OidcServer
) -> list[tuple[str, str]]:
    """Alice signs in through the provider's forms and stops at ``/roles`` (no session yet);
    returns the chooser form's fields."""
    r = await follow_login(
        browser,
        f"{b.url}/login/corp",
        username="alice",
        password=oidc.accounts["alice"],
        provider_origins=oidc.issuers.values(),
    )
    assert (r.status, r.url) == (200, f"{b.url}/roles"), r.text
    return list(parse_forms(r.text)[0].fields)


async def assert_choice_refused(
    browser: aiohttp.ClientSession, at: RunningBroker, fields: list[tuple[str, str]]
) -> None:
    async with browser.post(
        f"{at.url}/roles", data=[*fields, ("role", "dev")], allow_redirects=False
    ) as r:
        assert r.status == 403
        page = await r.text()
    assert "signed out at your identity provider" in page
    assert 'href="/login"' in page
    assert "broker_session" not in browser.cookie_jar.filter_cookies(URL(at.url))
    events = await at.broker.store.list_audit(action="role.choose")
    assert [(e.outcome, e.principal, e.reason) for e in events] == [
        ("denied", "corp/alice", "provider_session_ended")
    ]
    logins = await at.broker.store.list_audit(action="login")
    assert [e for e in logins if e.outcome == "success"] == []  # no session was made


async def test_a_logout_while_the_role_choice_is_pending_refuses_the_choice(
    start: Start, ports: Ports, provider: OidcServer
) -> None:
    """The provider session ends after the callback, before ``POST /roles``: no broker session
    existed for the logout token to end, and the choice must not make one."""
    a = await start("a", ports.a, "sqlite:///broker.db", ports.a)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        fields = await stop_at_the_chooser(browser, a, provider)
        await end_session_at_provider(browser, provider)  # the provider POSTs the logout token
        [event] = await a.broker.store.list_audit(action="logout.backchannel")
        assert (event.outcome, event.details["sessions"]) == ("success", [])
        await assert_choice_refused(browser, a, fields)
    assert "backchannel.error" not in provider.stderr


@pytest.mark.postgres
async def test_a_logout_at_one_instance_refuses_the_pending_choice_at_another(
    pg_url: str, start: Start, ports: Ports, provider: OidcServer
) -> None:
    a = await start("a", ports.a, pg_url, ports.a)
    b = await start("b", ports.b, pg_url, ports.a)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        fields = await stop_at_the_chooser(browser, a, provider)
        await end_session_at_provider(browser, provider)  # the provider POSTs to A
        await assert_choice_refused(browser, b, fields)  # the choice is made at B
    assert "backchannel.error" not in provider.stderr
