"""Fuzz (hypothesis) of the CLI's endpoints: whatever the parameters, the answer is never a 5xx,
never a redirect off the loopback, and never a credential."""

from __future__ import annotations

from typing import Any

import aiohttp
from hypothesis import strategies as st

from tests.support.cli_oauth import DEVICE_GRANT, Pkce
from tests.support.fuzz import assert_refused_or_answered, fuzz, hostile_json, hostile_tokens
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
