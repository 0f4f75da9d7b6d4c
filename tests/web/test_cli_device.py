"""The device authorization grant for ``broker login --device`` (RFC 8628): the user code page
with the request's origin, approve/deny with CSRF, polling (``authorization_pending``,
``slow_down``, ``expired_token``, ``access_denied``), one use. Attacks first."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.support.cli_oauth import DEVICE_GRANT, bearer_get, token_request
from tests.support.login_driver import parse_forms
from tests.web.test_cli_auth import Env, sign_in
from tests.web.test_cli_auth import env as env  # the fixtures, shared
from tests.web.test_cli_auth import store_url as store_url

UA = "broker-cli/1.0 (test device)"


async def start(env: Env) -> dict[str, Any]:
    headers = {"User-Agent": UA}
    async with (
        aiohttp.ClientSession() as s,
        s.post(f"{env.url}/oauth2/device", data={"client_id": "broker-cli"}, headers=headers) as r,
    ):
        assert r.status == 200
        assert r.headers["Cache-Control"] == "no-store"
        return dict(await r.json())


async def poll(env: Env, device_code: str) -> tuple[int, dict[str, Any]]:
    return await token_request(env.url, grant_type=DEVICE_GRANT, device_code=device_code)


@pytest.fixture
async def browser(env: Env) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        await sign_in(env, s, "user-1")
        yield s


async def enter(env: Env, s: aiohttp.ClientSession, user_code: str) -> tuple[int, str]:
    """The /device form with the code entered: the confirmation page (or the form again)."""
    async with s.get(f"{env.url}/device", params={"user_code": user_code}) as r:
        assert r.status == 200
        fields = dict(parse_forms(await r.text())[0].fields)
    async with s.post(f"{env.url}/device", data={**fields, "user_code": user_code}) as r:
        return r.status, await r.text()


async def decide(env: Env, s: aiohttp.ClientSession, user_code: str, decision: str) -> int:
    status, page = await enter(env, s, user_code)
    assert status == 200, page
    fields = dict(parse_forms(page)[0].fields)
    async with s.post(f"{env.url}/device/decide", data={**fields, "decision": decision}) as r:
        return r.status


async def test_device_flow_approved_gives_tokens_once(
    env: Env, browser: aiohttp.ClientSession
) -> None:
    d = await start(env)
    assert d["verification_uri"] == f"{env.url}/device"
    assert d["verification_uri_complete"] == f"{env.url}/device?user_code={d['user_code']}"
    assert (d["expires_in"], d["interval"]) == (600, 5)
    code = d["user_code"]
    assert len(code) == 9
    assert code[4] == "-"
    assert not set(code) & set("AEIOUY0123456789")
    assert (await poll(env, d["device_code"]))[1]["error"] == "authorization_pending"
    # the confirmation page shows where the request came from
    status, page = await enter(env, browser, code.lower().replace("-", " "))
    assert status == 200
    assert UA in page
    assert "127.0.0.1" in page
    # when: UTC text for readers without scripts, shown in the reader's zone by broker.js
    assert re.search(r'<time id="origin-at" datetime="[^"]+" data-local>[^<]+ UTC</time>', page)
    await env.advance(5)
    async with browser.post(
        f"{env.url}/device/decide",
        data={**dict(parse_forms(page)[0].fields), "decision": "approve"},
    ) as r:
        assert r.status == 200
        assert "Device signed in" in await r.text()
    await env.advance(5)
    status, tokens = await poll(env, d["device_code"])
    assert status == 200, tokens
    assert (await bearer_get(env.url, "/v1/roles", tokens["access_token"]))[1]["roles"][0][
        "name"
    ] == "dev"
    await env.advance(5)
    status, body = await poll(env, d["device_code"])  # used once
    assert (status, body["error"]) == (400, "invalid_grant")
    # the user code was one decision: it cannot be approved again
    status, _ = await enter(env, browser, code)
    assert status == 400


async def test_polling_too_fast_is_slow_down(env: Env) -> None:
    d = await start(env)
    await env.advance(5 - env.clock.now() % 5)  # the start of a polling window
    assert (await poll(env, d["device_code"]))[1]["error"] == "authorization_pending"
    await env.advance(1)
    status, body = await poll(env, d["device_code"])
    assert (status, body["error"]) == (400, "slow_down")
    await env.advance(5)
    assert (await poll(env, d["device_code"]))[1]["error"] == "authorization_pending"
    reasons = [e.reason for e in await env.audit("cli.token.device_code")]
    assert "polled_too_fast" in reasons


async def test_an_expired_device_code_is_expired_token(env: Env) -> None:
    d = await start(env)
    await env.advance(601)
    status, body = await poll(env, d["device_code"])
    assert (status, body["error"]) == (400, "expired_token")


async def test_an_expired_user_code_cannot_be_approved(env: Env) -> None:
    d = await start(env)
    await env.advance(601)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        await sign_in(env, browser, "user-1")  # signed in now: no token refresh in this test
        status, page = await enter(env, browser, d["user_code"])
    assert status == 400
    assert "not valid" in page
    assert "user_code_unknown" in [e.reason for e in await env.audit("cli.device.lookup")]


async def test_denied_is_access_denied(env: Env, browser: aiohttp.ClientSession) -> None:
    d = await start(env)
    assert await decide(env, browser, d["user_code"], "deny") == 200
    await env.advance(5)
    status, body = await poll(env, d["device_code"])
    assert (status, body["error"]) == (400, "access_denied")
    await env.advance(5)
    assert (await poll(env, d["device_code"]))[1]["error"] == "invalid_grant"


async def test_the_tokens_belong_to_the_approver(env: Env) -> None:
    """Whoever enters the user code decides, with their own session: the device gets a
    session of that person, not of the device's requester."""
    d = await start(env)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as other:
        await sign_in(env, other, "user-2")
        assert await decide(env, other, d["user_code"], "approve") == 200
    await env.advance(5)
    status, tokens = await poll(env, d["device_code"])
    assert status == 200
    cred = env.broker.broker.sessions.verify(tokens["access_token"])
    assert cred.subject == "user-2"
    roles = (await bearer_get(env.url, "/v1/roles", tokens["access_token"]))[1]["roles"]
    assert [r["name"] for r in roles] == ["user2"]


async def test_a_forged_approval_is_refused(env: Env, browser: aiohttp.ClientSession) -> None:
    """The device's requester cannot approve with the victim's session: a cross-site POST
    (the victim's cookies, no CSRF token of the victim's session) is refused."""
    d = await start(env)
    code = d["user_code"]
    # the attacker's own valid CSRF token is bound to the attacker's session, not the victim's
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as attacker:
        await sign_in(env, attacker, "user-2")
        status, page = await enter(env, attacker, code)
        assert status == 200
        attacker_fields = dict(parse_forms(page)[0].fields)
    for data, headers in (
        ({**attacker_fields, "decision": "approve"}, {}),
        ({"user_code": code, "decision": "approve"}, {}),
        ({**attacker_fields, "decision": "approve"}, {"Origin": "https://evil.test"}),
    ):
        async with browser.post(f"{env.url}/device/decide", data=data, headers=headers) as r:
            assert r.status == 403
    await env.advance(5)
    assert (await poll(env, d["device_code"]))[1]["error"] == "authorization_pending"
    failures = [e for e in await env.audit("cli.device.approve") if e.outcome == "failure"]
    assert len(failures) == 3


async def test_device_requests_need_the_client_id(env: Env) -> None:
    for data in ({}, {"client_id": "other"}):
        async with aiohttp.ClientSession() as s, s.post(f"{env.url}/oauth2/device", data=data) as r:
            assert r.status == 401
            assert (await r.json())["error"] == "invalid_client"
    status, body = await poll(env, "no-such-device-code")
    assert (status, body["error"]) == (400, "invalid_grant")


async def test_device_page_needs_a_session(env: Env) -> None:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        async with s.get(
            f"{env.url}/device", params={"user_code": "BCDF-GHJK"}, allow_redirects=False
        ) as r:
            assert r.status == 303
            assert r.headers["Location"].startswith("/login?rd=%2Fdevice")
        async with s.post(f"{env.url}/device/decide", data={"user_code": "BCDF-GHJK"}) as r:
            assert r.status == 401


async def test_guessing_user_codes_is_rate_limited(
    env: Env, browser: aiohttp.ClientSession
) -> None:
    """RFC 8628 §5.1: a signed-in person who tries codes is stopped like failed logins
    (``[login] max_failures_per_user``, 5 by default), even before a right one."""
    d = await start(env)
    statuses = [
        (await enter(env, browser, f"BCDF-{g}"))[0]
        for g in ("GHJK", "GHJL", "GHJM", "GHJN", "GHJP", "GHJQ")
    ]
    assert statuses == [400] * 5 + [429]
    assert (await enter(env, browser, d["user_code"]))[0] == 429
    reasons = [e.reason for e in await env.audit("cli.device.lookup")]
    assert "too_many_failures" in reasons
