"""Two ``broker serve`` OS processes on one PostgreSQL schema (issue 11, "How it must be tested").

Everything that crosses instances goes through the store and nothing else: the processes share
no memory, no event loop, no clock object. A user signs in through the real forms at A; what
happens at A, or through the CLI run as its own process, must be seen at B's ``/auth`` within the
revocation poll (contract C4: 2 s; the tests wait up to :data:`WAIT`, never assert a time).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from yarl import URL

from broker.service.container import KEY_CHECK_SECONDS
from tests.conftest import E2E_ROLES, write_config
from tests.support.broker_process import BrokerProcess, broker_processes, run_cli_async
from tests.support.login_driver import parse_forms
from tests.support.oidc_server import free_port
from tests.support.postgres import fresh_schema

pytestmark = [pytest.mark.postgres]
WAIT = 10.0  # a generous bound on "eventually" (the contract is 2 s): not a timing assertion
USER = "admin"  # the local user created on first start, with a one-time password
ROLE = "local-admin"
PASSWORD = "a password the test chose"
APP = "https://app.example.com"
COOKIE = "broker_session"
OTP = re.compile(r"one-time password:\s+(\S+)")


@dataclass
class Pair:
    a: BrokerProcess
    b: BrokerProcess

    @property
    def both(self) -> tuple[BrokerProcess, BrokerProcess]:
        return self.a, self.b

    def one_time_password(self) -> str:
        """Printed by whichever process created ``admin`` (exactly one of them)."""
        found: list[str] = [m for p in self.both for m in OTP.findall(p.stdout())]
        assert len(found) == 1, [p.stdout() for p in self.both]
        return found[0]


def _config(directory: Path, port: int, store_url: str, public_url: str) -> Path:
    path = write_config(
        directory,
        port=port,
        oidc=None,
        store_url=store_url,
        roles={ROLE: E2E_ROLES[ROLE]},  # its access policy allows everything
        public_url=public_url,  # one deployment: one issuer, whichever instance answers
    )
    text = path.read_text().replace(
        'allowed_redirect_domains = [".example.com"]',
        'allowed_redirect_domains = [".example.com"]\ntrusted_proxies = ["127.0.0.1/32"]',
    )
    path.write_text(text)
    return path


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[Pair]:
    """A and B started at the same moment on an empty schema, both ready."""
    async with fresh_schema("broker_procs") as store_url:
        port_a, port_b = free_port(), free_port()
        public = f"http://127.0.0.1:{port_a}"
        config_a = _config(tmp_path / "a", port_a, store_url, public)
        config_b = _config(tmp_path / "b", port_b, store_url, public)
        with broker_processes(tmp_path / "logs") as procs:
            a = procs.start(config_a, "a", port_a)
            b = procs.start(config_b, "b", port_b)
            await asyncio.gather(a.wait_ready(), b.wait_ready())
            yield Pair(a, b)
            for p in procs.started:  # SIGTERM: a clean shutdown, nothing crashed meanwhile
                assert p.stop() == 0, p.describe()
                assert "Traceback" not in p.stderr(), p.describe()


# --- clients ---------------------------------------------------------------------------------


def _browser() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def sign_in(
    browser: aiohttp.ClientSession, p: BrokerProcess, password: str, new_password: str = ""
) -> str:
    """The local login form (and the password change a one-time password asks for): the
    session token, or "" when the broker signed nobody in."""
    async with browser.get(f"{p.url}/login/local") as r:
        (form,) = [f for f in parse_forms(await r.text()) if f.has_password]
    data = {**dict(form.fields), "username": USER, "password": password}
    async with browser.post(f"{p.url}/login/local", data=data) as r:
        at = r.url.path
        text = await r.text()
    if at == "/password":
        assert new_password, "asked to change the password"
        fields = dict(parse_forms(text)[0].fields)
        change = {**fields, "new_password": new_password, "confirm": new_password}
        async with browser.post(f"{p.url}/password", data=change) as r:
            at = r.url.path
    cookie = browser.cookie_jar.filter_cookies(URL(p.url)).get(COOKIE)
    if at != "/session" or cookie is None:
        return ""
    return cookie.value


async def first_sign_in(pair: Pair) -> str:
    """``admin`` signs in at A with the one-time password and sets :data:`PASSWORD`."""
    async with _browser() as browser:
        token = await sign_in(browser, pair.a, pair.one_time_password(), PASSWORD)
    assert token
    return token


async def auth(p: BrokerProcess, token: str, *, bearer: bool) -> int:
    """``/auth`` as nginx asks it (``auth_request``), with a session cookie or a bearer token."""
    headers = {"X-Original-Method": "GET", "X-Original-URL": f"{APP}/x"}
    if bearer:
        headers["Authorization"] = f"Bearer {token}"
    else:
        headers["Cookie"] = f"{COOKIE}={token}"
    async with (
        aiohttp.ClientSession() as s,
        s.get(f"{p.url}/auth", headers=headers, allow_redirects=False) as r,
    ):
        return r.status


async def statuses(p: BrokerProcess, token: str) -> tuple[int, int]:
    return await auth(p, token, bearer=False), await auth(p, token, bearer=True)


async def refused_everywhere(pair: Pair, token: str) -> bool:
    return all([await statuses(p, token) == (401, 401) for p in pair.both])


async def jwks_kids(p: BrokerProcess) -> list[str]:
    async with aiohttp.ClientSession() as s, s.get(f"{p.url}/.well-known/jwks.json") as r:
        assert r.status == 200
        return [k["kid"] for k in (await r.json())["keys"]]


async def eventually(check: Callable[[], Awaitable[bool]], what: str, within: float = WAIT) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, f"not within {within} s: {what}"
        await asyncio.sleep(0.05)


async def cli(p: BrokerProcess, *args: str) -> str:
    r = await run_cli_async(*args, "--config", str(p.config))
    assert r.returncode == 0, (args, r.stdout, r.stderr)
    return r.stdout


# --- the tests -------------------------------------------------------------------------------


async def test_started_together_on_an_empty_schema_they_share_one_signing_key(
    pair: Pair,
) -> None:
    kids_a, kids_b = await jwks_kids(pair.a), await jwks_kids(pair.b)
    assert len(kids_a) == 1
    assert kids_a == kids_b
    async with aiohttp.ClientSession() as s:
        docs = []
        for p in pair.both:
            async with s.get(f"{p.url}/.well-known/jwks.json") as r:
                docs.append(await r.json())
    assert docs[0] == docs[1]
    pair.one_time_password()  # and exactly one of them created the first user


async def test_signed_in_at_a_works_at_b_until_logout_at_a(pair: Pair) -> None:
    await first_sign_in(pair)
    async with _browser() as browser:
        token = await sign_in(browser, pair.a, PASSWORD)  # the password the user chose
        assert token
        for p in pair.both:
            assert await statuses(p, token) == (200, 200), p.describe()

        async with browser.get(f"{pair.a.url}/logout") as r:
            (form,) = [f for f in parse_forms(await r.text()) if f.action == "/logout"]
        async with browser.post(f"{pair.a.url}/logout", data=dict(form.fields)) as r:
            assert r.status == 200

    assert await statuses(pair.a, token) == (401, 401)  # the instance that ended it, at once
    await eventually(lambda: refused_everywhere(pair, token), "B refuses the ended session")


async def test_offboarding_through_the_cli_reaches_both_processes(pair: Pair) -> None:
    token = await first_sign_in(pair)
    assert await statuses(pair.b, token) == (200, 200)

    await cli(pair.a, "admin", "users", "disable", USER, "--reason", "offboarded")
    await eventually(lambda: refused_everywhere(pair, token), "A and B refuse a disabled user")
    for p in pair.both:  # and the user cannot sign in anywhere
        async with _browser() as browser:
            assert await sign_in(browser, p, PASSWORD) == ""

    await cli(pair.b, "admin", "users", "enable", USER)
    async with _browser() as browser:
        token = await sign_in(browser, pair.b, PASSWORD)
    assert token
    assert await statuses(pair.a, token) == (200, 200)

    await cli(pair.b, "admin", "roles", "revoke-sessions", ROLE)
    await eventually(lambda: refused_everywhere(pair, token), "A and B refuse the role's session")
    async with _browser() as browser:  # revoking sessions does not lock the user out
        again = await sign_in(browser, pair.a, PASSWORD)
    assert again
    for p in pair.both:
        assert await statuses(p, again) == (200, 200)


async def test_keys_rotate_publishes_ahead_to_both_and_old_tokens_keep_working(
    pair: Pair,
) -> None:
    token = await first_sign_in(pair)
    (old,) = await jwks_kids(pair.a)

    new = json.loads(await cli(pair.a, "keys", "rotate", "--json"))["kid"]
    assert new != old

    async def published_everywhere() -> bool:
        return all([{old, new} <= set(await jwks_kids(p)) for p in pair.both])

    # neither process rotated: each finds the new key at its next key check
    await eventually(
        published_everywhere, "the new kid is in A's and B's JWKS", KEY_CHECK_SECONDS + WAIT
    )
    for p in pair.both:
        assert await statuses(p, token) == (200, 200), p.describe()
    async with _browser() as browser:  # and a token signed now works at both too
        fresh = await sign_in(browser, pair.b, PASSWORD)
    for p in pair.both:
        assert await statuses(p, fresh) == (200, 200)
