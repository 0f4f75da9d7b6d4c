"""Fuzz (hypothesis) of the CLI's endpoints: whatever the parameters, the answer is never a 5xx,
never a redirect off the loopback, and never a credential."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
from hypothesis import strategies as st

from tests.support.cli_oauth import DEVICE_GRANT, Pkce
from tests.support.fuzz import (
    assert_refused_or_answered,
    b64url,
    deep_json,
    fuzz,
    hostile_json,
    hostile_tokens,
)
from tests.web.test_cli_auth import LOOPBACK, Env, sign_in
from tests.web.test_cli_auth import env as env  # the fixtures, shared
from tests.web.test_cli_auth import store_url as store_url

_text = st.text(max_size=80) | st.sampled_from(
    ["broker-cli", "S256", "plain", "code", LOOPBACK, "http://[::1]:1/callback", "", "\x00"]
)
_AUTHORIZE = (
    "response_type",
    "client_id",
    "redirect_uri",
    "code_challenge",
    "code_challenge_method",
    "state",
    "cli_request",
)
_TOKEN = (
    "grant_type",
    "client_id",
    "code",
    "redirect_uri",
    "code_verifier",
    "refresh_token",
    "device_code",
)
_grants = st.sampled_from(["authorization_code", "refresh_token", DEVICE_GRANT]) | _text


def _params(names: tuple[str, ...]) -> st.SearchStrategy[list[tuple[str, str]]]:
    return st.lists(st.tuples(st.sampled_from(names), _text), max_size=9)


async def test_fuzzed_authorization_requests(env: Env) -> None:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        await sign_in(env, browser, "user-1")

        async def check(params: list[tuple[str, str]]) -> None:
            async with browser.get(
                f"{env.url}/oauth2/authorize", params=params, allow_redirects=False
            ) as r:
                body = await r.text()
                assert_refused_or_answered(r.status, r.headers, body)
                if r.status in (302, 303):
                    assert r.headers["Location"].startswith("/login?rd=")

        await fuzz(_params(_AUTHORIZE), check, max_examples=60)

        async def check_post(params: list[tuple[str, str]]) -> None:
            async with browser.post(
                f"{env.url}/oauth2/authorize", data=params, allow_redirects=False
            ) as r:
                assert_refused_or_answered(r.status, r.headers, await r.text())
                assert r.status in (400, 403, 413), r.status

        await fuzz(_params((*_AUTHORIZE, "csrf", "decision")), check_post, max_examples=30)


# The carried request (``/oauth2/authorize?cli_request=``) is base64url of JSON the broker wrote,
# but anyone can send any bytes there. Kept under aiohttp's request-line limit (8190): past it
# aiohttp itself answers 400 before any handler runs.
_MAX_RAW = 5000
_carried_json = st.one_of(
    deep_json.map(str.encode),  # nested from 1 to 6,000 levels, closed or not
    st.integers(min_value=900, max_value=4000).map(lambda n: b"[" * n),
    st.integers(min_value=2100, max_value=4900).map(  # over the 2,048 an rd= can carry
        lambda n: json.dumps({"state": "x" * n, "response_type": "code"}).encode()
    ),
    st.binary(min_size=1, max_size=40).map(lambda b: b'{"state": "' + b + b'\xff"}'),
    st.sampled_from([b"\xff\xfe{}", b"\xed\xa0\x80{}", "\ufeff{}".encode("utf-16")]),
    hostile_json.map(lambda t: t.encode("utf-8", "surrogatepass")),
).filter(lambda raw: len(raw) <= _MAX_RAW)


async def carried_refusal(env: Env, browser: aiohttp.ClientSession, raw: bytes) -> str:
    """``raw`` carried: refused with a 400 page (no 5xx, no cookie, no code, no redirect at
    all), and the refusal audited under this request's id. Returns the audited reason."""
    url = f"{env.url}/oauth2/authorize"
    async with browser.get(url, params={"cli_request": b64url(raw)}, allow_redirects=False) as r:
        body = await r.text()
        assert_refused_or_answered(r.status, r.headers, body)
        assert r.status == 400, (r.status, raw[:80])
        assert "Location" not in r.headers
        assert "code=" not in body
        rid = r.headers["X-Request-Id"]
    events = await env.broker.broker.store.list_audit(limit=20, action="cli.authorize")
    mine = [e for e in events if e.request_id == rid]
    assert [e.outcome for e in mine] == ["failure"], mine
    return str(mine[0].reason)


async def test_a_deeply_nested_carried_request_is_a_400_and_audited(env: Env) -> None:
    """The audit's case: 3,000 ``[`` was a RecursionError, a 500 and no audit row."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        await sign_in(env, browser, "user-1")
        for raw, why in [
            (b"[" * 3000, "too_large"),  # longer than any rd= can carry
            (b"[" * 2000, "not_json"),  # brackets that do not balance: never decoded either
            (b"[" * 1000 + b"]" * 1000, "too_deep"),
            (b'{"state": "\xff"}', "not_utf8"),
            (json.dumps({"state": "x" * 3000}).encode(), "too_large"),
            (b'{"state": "a", "state": "b"}', "duplicate_member"),
            (b"[]", "not_object"),
        ]:
            assert await carried_refusal(env, browser, raw) == f"cli_request_malformed:{why}"


async def test_fuzzed_carried_requests(env: Env) -> None:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        await sign_in(env, browser, "user-1")

        async def check(raw: bytes) -> None:
            await carried_refusal(env, browser, raw)

        await fuzz(_carried_json, check, max_examples=60)


async def test_fuzzed_token_requests(env: Env) -> None:
    pkce = Pkce.new()

    async def check(params: list[tuple[str, str]]) -> None:
        data = [("code_verifier", pkce.verifier), *params]
        async with aiohttp.ClientSession() as s, s.post(f"{env.url}/oauth2/token", data=data) as r:
            body = await r.text()
            assert_refused_or_answered(r.status, r.headers, body)
            assert r.status in (400, 401, 413), body

    strategy = st.lists(
        st.tuples(st.sampled_from(_TOKEN), _text) | st.tuples(st.just("grant_type"), _grants),
        max_size=8,
    )
    await fuzz(strategy, check, max_examples=80)


async def test_fuzzed_credential_requests_and_bearers(env: Env) -> None:
    async def check(case: tuple[str, Any]) -> None:
        token, body = case
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        async with aiohttp.ClientSession() as s:
            async with s.post(f"{env.url}/v1/credentials", data=body, headers=headers) as r:
                assert_refused_or_answered(r.status, r.headers, await r.text())
                # 400: a header past aiohttp's line limit, refused before any handler
                assert r.status in (400, 401), r.status
            async with s.get(f"{env.url}/v1/roles", headers={"Authorization": token[:500]}) as r:
                assert r.status == 401

    header_safe = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=40)
    tokens = hostile_tokens.filter(lambda t: t.isascii() and t.isprintable()) | header_safe
    await fuzz(st.tuples(tokens, hostile_json), check, max_examples=40)


async def test_fuzzed_device_pages(env: Env) -> None:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        await sign_in(env, browser, "user-1")

        async def check(params: list[tuple[str, str]]) -> None:
            for path in ("/device", "/device/decide", "/oauth2/device"):
                async with browser.post(f"{env.url}{path}", data=params) as r:
                    body = await r.text()
                    assert_refused_or_answered(r.status, r.headers, body)
                    assert r.status < 500
            async with browser.get(f"{env.url}/device", params=params) as r:
                assert r.status == 200

        names = ("user_code", "csrf", "decision", "client_id")
        await fuzz(_params(names), check, max_examples=30)
