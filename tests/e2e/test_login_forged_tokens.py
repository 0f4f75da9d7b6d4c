"""End to end: the whole broker login refuses bad ID tokens from a provider.

The provider is the small in-process fake (``tests/support/fake_idp.py``), configured as the
broker provider ``fake``. Each login goes the way a browser's would: ``/login/fake`` -> the
fake's ``/authorize`` (which redirects straight back with ``code``, ``state`` and ``iss``) -> the
broker's ``/callback/fake``, which redeems the code at the fake's token endpoint. The token
endpoint answers with the ID token a case forges (given the nonce the broker sent).

For every bad token: the callback fails with the status of an invalid ID token, sets no session
cookie, the audit log holds a ``login`` failure with the specific reason, and the login state is
spent: the same callback URL, with the login cookie put back, fails with the state reason (and
never reaches the provider again).

The broker runs here on a ``FrozenClock`` shared with the fake (not through ``broker_factory``,
which uses the system clock): the key-rotation cases must step past the JWKS refetch cooldown.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import jwt
import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpServer
from yarl import URL

from broker.clock import FrozenClock
from broker.config import load_settings
from broker.storage.base import AuditEvent
from broker.web.app import create_app
from tests.conftest import RunningBroker, trust, write_config
from tests.support.fake_idp import FakeIdP, FakeKey, tamper_signature
from tests.support.oidc_server import free_port

SESSION_COOKIE = "broker_session"
LOGIN_COOKIE = "broker_login"
STATE_REASON = "state_unknown_used_expired_or_other_browser"
WEEK = 7 * 24 * 3600
JWKS_COOLDOWN = 60  # the provider default (jwks_refetch_cooldown)
ROLES = {"fake-user": trust("fake", {"StringEquals": {"fake:sub": "user-1"}})}

Forge = Callable[[FakeIdP, str | None], str]


@dataclass
class Env:
    broker: RunningBroker
    idp: FakeIdP
    clock: FrozenClock

    @property
    def url(self) -> str:
        return self.broker.url


@pytest.fixture
async def env(tmp_path: Path, aiohttp_server: AiohttpServer) -> AsyncIterator[Env]:
    """A broker whose only federated provider is a fake one, both on one frozen clock."""
    clock = FrozenClock(float(int(time.time())))
    idp = FakeIdP(clock=clock)
    idp.bind(await aiohttp_server(idp.app))
    port = free_port()
    extra = "\n".join(
        [
            "[providers.fake]",
            f'issuer = "{idp.issuer}"',
            f'client_id = "{idp.client_id}"',
            f'client_secret = "{idp.client_secret}"',
            "",
        ]
    )
    settings = load_settings(
        write_config(tmp_path / "broker", port=port, oidc=None, roles=ROLES, extra=extra)
    )
    app = create_app(settings, clock=clock)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
        yield Env(RunningBroker(f"http://127.0.0.1:{port}", settings, app, runner), idp, clock)
    finally:
        await runner.cleanup()


@pytest.fixture
async def browser() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        yield s


# --- driving a login ---------------------------------------------------------------------------


@dataclass
class Callback:
    """The provider's redirect back to the broker, and the browser's login cookie at that point."""

    url: str
    login_cookie: str
    nonce: str


@dataclass
class Result:
    status: int
    location: str | None
    cookies: SimpleCookie


async def to_callback(s: aiohttp.ClientSession, env: Env) -> Callback:
    """Start a login at the broker and follow it through the fake's /authorize."""
    async with s.get(f"{env.url}/login/fake", allow_redirects=False) as r:
        assert r.status == 302, await r.text()
        authorize = r.headers["Location"]
    assert authorize.startswith(env.idp.url("/authorize?"))
    nonce = parse_qs(urlsplit(authorize).query)["nonce"][0]
    async with s.get(authorize, allow_redirects=False) as r:
        assert r.status == 302, await r.text()
        callback = r.headers["Location"]
    assert callback.startswith(f"{env.url}/callback/fake?")
    q = parse_qs(urlsplit(callback).query)
    assert set(q) == {"code", "state", "iss"}
    assert q["iss"] == [env.idp.issuer]
    assert env.idp.nonces[-1] == nonce
    login_cookie = s.cookie_jar.filter_cookies(URL(env.url))[LOGIN_COOKIE].value
    return Callback(callback, login_cookie, nonce)


async def call_back(s: aiohttp.ClientSession, env: Env, cb: Callback) -> Result:
    """The browser arrives at the callback URL, with its login cookie."""
    s.cookie_jar.update_cookies({LOGIN_COOKIE: cb.login_cookie}, URL(env.url))
    async with s.get(cb.url, allow_redirects=False) as r:
        await r.read()
        return Result(r.status, r.headers.get("Location"), r.cookies)


async def login_events(env: Env) -> list[AuditEvent]:
    """The ``login`` audit events, oldest first."""
    events = await env.broker.broker.store.list_audit(limit=500, action="login")
    return list(reversed(events))


async def fake_users(env: Env) -> list[object]:
    return [u for u in await env.broker.broker.store.list_users() if u.provider == "fake"]


def session_in_jar(s: aiohttp.ClientSession, env: Env) -> str | None:
    c = s.cookie_jar.filter_cookies(URL(env.url)).get(SESSION_COOKIE)
    return c.value if c else None


async def assert_refused(
    s: aiohttp.ClientSession, env: Env, cb: Callback, reason: str, *, status: int = 401
) -> None:
    """The callback fails with ``reason``; nothing is issued; the state is spent, once."""
    before = len(await login_events(env))
    users = await fake_users(env)
    token_hits = env.idp.hits["token"]
    res = await call_back(s, env, cb)
    assert res.status == status
    assert SESSION_COOKIE not in res.cookies
    assert "broker_pending" not in res.cookies
    assert session_in_jar(s, env) is None
    assert env.idp.hits["token"] == token_hits + 1  # the code was redeemed, once
    new = (await login_events(env))[before:]
    assert [(e.outcome, e.principal, e.reason) for e in new] == [("failure", "fake", reason)]

    # The same callback again, login cookie put back: the state is gone, the provider untouched.
    replay = await call_back(s, env, cb)
    assert replay.status == 400
    assert SESSION_COOKIE not in replay.cookies
    assert session_in_jar(s, env) is None
    assert env.idp.hits["token"] == token_hits + 1
    again = (await login_events(env))[before + 1 :]
    assert [(e.outcome, e.reason) for e in again] == [("failure", STATE_REASON)]
    assert await fake_users(env) == users  # no user created or touched


async def assert_signed_in(s: aiohttp.ClientSession, env: Env, cb: Callback) -> str:
    """The callback issues a session (one role: straight to it); returns the session token."""
    before = len(await login_events(env))
    res = await call_back(s, env, cb)
    assert res.status == 303
    assert res.location == "/session"
    token = res.cookies[SESSION_COOKIE].value
    assert token
    assert session_in_jar(s, env) == token
    new = (await login_events(env))[before:]
    assert [(e.outcome, e.principal) for e in new] == [("success", "fake/user-1")]
    async with s.get(f"{env.url}/session", headers={"Accept": "application/json"}) as r:
        assert r.status == 200
        data = await r.json()
    assert data["provider"] == "fake"
    assert data["subject"] == "user-1"
    assert data["role"].endswith(":role/fake-user")
    return token


# --- the table of bad ID tokens ----------------------------------------------------------------


def _now(idp: FakeIdP) -> int:
    return int(idp.clock.now())


def _other_key_same_kid(idp: FakeIdP) -> FakeKey:
    other = FakeKey.generate(idp.signing_key.alg)
    return FakeKey(kid=idp.signing_key.kid, alg=other.alg, private_key=other.private_key)


def _nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


def _attacker_jwk() -> dict[str, object]:
    return FakeKey.generate("RS256", kid="attacker").public_jwk()


CASES: list[tuple[str, str, Forge]] = [
    # signature and algorithm
    ("alg-none", "alg_not_allowed", lambda idp, n: idp.mint({"nonce": n}, alg="none")),
    (
        "alg-None-no-kid",
        "alg_not_allowed",
        lambda idp, n: idp.mint({"nonce": n}, header={"alg": "None"}, omit=["kid"], alg="none"),
    ),
    (
        "hs256-keyed-with-public-key-pem",
        "alg_not_allowed",
        lambda idp, n: idp.mint(
            {"nonce": n}, alg="HS256", hmac_secret=idp.signing_key.public_pem()
        ),
    ),
    (
        "hs256-keyed-with-client-secret",
        "alg_not_allowed",
        lambda idp, n: idp.mint({"nonce": n}, alg="HS256", hmac_secret=idp.client_secret.encode()),
    ),
    (
        "bad-signature",
        "bad_signature",
        lambda idp, n: tamper_signature(idp.mint({"nonce": n})),
    ),
    (
        "signed-by-another-key-with-the-real-kid",
        "bad_signature",
        lambda idp, n: idp.mint({"nonce": n}, key=_other_key_same_kid(idp)),
    ),
    (
        "unknown-kid",
        "unknown_kid",
        lambda idp, n: idp.mint({"nonce": n}, key=FakeKey.generate("RS256", kid="not-published")),
    ),
    # header members that choose the key, and extensions
    (
        "jku-header",
        "forbidden_header:jku",
        lambda idp, n: idp.mint({"nonce": n}, header={"jku": "https://evil.example/jwks"}),
    ),
    (
        "x5u-header",
        "forbidden_header:x5u",
        lambda idp, n: idp.mint({"nonce": n}, header={"x5u": "https://evil.example/cert.pem"}),
    ),
    (
        "jwk-header",
        "forbidden_header:jwk",
        lambda idp, n: idp.mint({"nonce": n}, header={"jwk": _attacker_jwk()}),
    ),
    (
        "x5c-header",
        "forbidden_header:x5c",
        lambda idp, n: idp.mint({"nonce": n}, header={"x5c": ["MIIBIjANBgkq"]}),
    ),
    (
        "unknown-crit",
        "unknown_crit",
        lambda idp, n: idp.mint(
            {"nonce": n},
            header={"crit": ["urn:example:must-understand"], "urn:example:must-understand": 1},
        ),
    ),
    (
        "typ-access-token",
        "typ_mismatch",
        lambda idp, n: idp.mint({"nonce": n}, header={"typ": "at+jwt"}),
    ),
    ("not-a-jws", "malformed", lambda idp, n: "not-a.jws"),
    ("nested-header", "too_deep", lambda idp, n: idp.mint({"nonce": n}, header={"x": _nested(40)})),
    # hashes binding the token to its response (the fake's access token and code are random)
    (
        "at_hash-of-another-access-token",
        "at_hash_mismatch",
        lambda idp, n: idp.mint({"nonce": n, "at_hash": "AAAAAAAAAAAAAAAAAAAAAA"}),
    ),
    (
        "c_hash-of-another-code",
        "c_hash_mismatch",
        lambda idp, n: idp.mint({"nonce": n, "c_hash": "AAAAAAAAAAAAAAAAAAAAAA"}),
    ),
    # a security event token (a logout token, with a nonce added) is no ID token
    (
        "logout-token-as-id-token",
        "events_present",
        lambda idp, n: idp.mint(
            {
                "nonce": n,
                "sid": "op-1",
                "jti": "j-1",
                "events": {"http://schemas.openid.net/event/backchannel-logout": {}},
            }
        ),
    ),
    # issuer
    (
        "wrong-iss",
        "iss_mismatch",
        lambda idp, n: idp.mint({"nonce": n, "iss": "https://evil.example"}),
    ),
    ("missing-iss", "iss_mismatch", lambda idp, n: idp.mint({"nonce": n}, omit=["iss"])),
    (
        "iss-a-prefix-of-the-real-one",
        "iss_mismatch",
        lambda idp, n: idp.mint({"nonce": n, "iss": idp.issuer[:-1]}),
    ),
    (
        "iss-the-real-one-extended",
        "iss_mismatch",
        lambda idp, n: idp.mint({"nonce": n, "iss": idp.issuer + "/"}),
    ),
    # subject and audience
    ("missing-sub", "missing_sub", lambda idp, n: idp.mint({"nonce": n}, omit=["sub"])),
    (
        "wrong-aud",
        "aud_mismatch",
        lambda idp, n: idp.mint({"nonce": n, "aud": "another-client"}),
    ),
    ("missing-aud", "aud_mismatch", lambda idp, n: idp.mint({"nonce": n}, omit=["aud"])),
    (
        "several-aud-without-azp",
        "azp_mismatch",
        lambda idp, n: idp.mint({"nonce": n, "aud": [idp.client_id, "another-client"]}),
    ),
    (
        "azp-another-client",
        "azp_mismatch",
        lambda idp, n: idp.mint({"nonce": n, "azp": "another-client"}),
    ),
    # time
    (
        "expired",
        "expired",
        lambda idp, n: idp.mint({"nonce": n, "iat": _now(idp) - 400, "exp": _now(idp) - 120}),
    ),
    ("missing-exp", "missing_exp", lambda idp, n: idp.mint({"nonce": n}, omit=["exp"])),
    (
        "nbf-in-the-future",
        "not_yet_valid",
        lambda idp, n: idp.mint({"nonce": n, "nbf": _now(idp) + 3600}),
    ),
    (
        "iat-a-week-old",
        "iat_too_old",
        lambda idp, n: idp.mint({"nonce": n, "iat": _now(idp) - WEEK}),
    ),
    (
        "iat-in-the-future",
        "iat_in_future",
        lambda idp, n: idp.mint({"nonce": n, "iat": _now(idp) + 3600, "exp": _now(idp) + 7200}),
    ),
    ("missing-iat", "missing_iat", lambda idp, n: idp.mint({"nonce": n}, omit=["iat"])),
    # nonce
    ("missing-nonce", "nonce_missing", lambda idp, n: idp.mint()),
    ("wrong-nonce", "nonce_mismatch", lambda idp, n: idp.mint({"nonce": "chosen-by-attacker"})),
    (
        "nonce-of-another-type",
        "nonce_mismatch",
        lambda idp, n: idp.mint({"nonce": [n]}),
    ),
]


@pytest.mark.parametrize(("reason", "forge"), [pytest.param(r, f, id=i) for i, r, f in CASES])
async def test_bad_id_token_is_refused(
    env: Env, browser: aiohttp.ClientSession, reason: str, forge: Forge
) -> None:
    env.idp.id_token_factory = lambda nonce: forge(env.idp, nonce)
    cb = await to_callback(browser, env)
    await assert_refused(browser, env, cb, reason)
    assert len(env.idp.issued_id_tokens) == 1


def test_the_table_covers_every_id_token_reason_a_login_can_meet() -> None:
    from broker.idp.id_token import REASONS

    # key_alg_mismatch and ambiguous_key need a JWKS the fake does not publish by default;
    # they are covered in tests/idp.
    assert set(REASONS) - {r for _, r, _ in CASES} == {"key_alg_mismatch", "ambiguous_key"}


# --- control, replay, rotation -----------------------------------------------------------------


async def test_control_a_valid_id_token_signs_in_and_the_state_is_spent(
    env: Env, browser: aiohttp.ClientSession
) -> None:
    cb = await to_callback(browser, env)
    await assert_signed_in(browser, env, cb)
    assert env.idp.hits["jwks"] == 1
    # Replaying the callback (login cookie put back) is refused: the state was used once.
    res = await call_back(browser, env, cb)
    assert res.status == 400
    assert SESSION_COOKIE not in res.cookies
    assert env.idp.hits["token"] == 1
    assert [(e.outcome, e.reason) for e in await login_events(env)] == [
        ("success", ""),
        ("failure", STATE_REASON),
    ]


async def test_a_replayed_id_token_fails_the_nonce_check(
    env: Env, browser: aiohttp.ClientSession
) -> None:
    await assert_signed_in(browser, env, await to_callback(browser, env))
    earlier = env.idp.issued_id_tokens[-1]
    # A new login (another browser), whose code the provider answers with the earlier token:
    # valid signature, issuer, audience and times, but the nonce of the first login.
    env.idp.id_token_factory = lambda nonce: earlier
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as other:
        cb = await to_callback(other, env)
        assert cb.nonce != env.idp.nonces[0]
        await assert_refused(other, env, cb, "nonce_mismatch")
    # ... and in the first browser too.
    browser.cookie_jar.clear()
    await assert_refused(browser, env, await to_callback(browser, env), "nonce_mismatch")


async def advance(env: Env, seconds: float) -> None:
    """Move the frozen clock as a running broker sees it: its revocation poll keeps up (the
    state is as old as the last poll, by the broker's clock)."""
    env.clock.advance(seconds)
    await env.broker.broker.poll_revocations()


async def test_unknown_kid_after_a_rotation_signs_in_after_one_jwks_refetch(
    env: Env, browser: aiohttp.ClientSession
) -> None:
    await assert_signed_in(browser, env, await to_callback(browser, env))
    assert env.idp.hits["jwks"] == 1  # the broker now holds the old key set
    await advance(env, JWKS_COOLDOWN + 1)
    new_key = env.idp.rotate()
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as other:
        cb = await to_callback(other, env)
        await assert_signed_in(other, env, cb)
    assert env.idp.hits["jwks"] == 2  # exactly one refetch, for the unknown kid
    assert jwt.get_unverified_header(env.idp.issued_id_tokens[-1])["kid"] == new_key.kid
    # The key set is current now: another login fetches nothing.
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as third:
        await assert_signed_in(third, env, await to_callback(third, env))
    assert env.idp.hits["jwks"] == 2


async def test_unknown_kids_cost_at_most_one_jwks_fetch_per_cooldown(
    env: Env, browser: aiohttp.ClientSession
) -> None:
    """A rotation seen within the cooldown of the last fetch is refused without a fetch (the
    documented price of bounding key-id floods); once the cooldown has passed, one refetch."""
    await assert_signed_in(browser, env, await to_callback(browser, env))
    env.idp.rotate()
    for _ in range(3):
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
            await assert_refused(s, env, await to_callback(s, env), "unknown_kid")
    assert env.idp.hits["jwks"] == 1
    await advance(env, JWKS_COOLDOWN)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        await assert_signed_in(s, env, await to_callback(s, env))
    assert env.idp.hits["jwks"] == 2


async def test_a_callback_from_another_browser_does_not_spend_the_state(
    env: Env, browser: aiohttp.ClientSession
) -> None:
    """The forged-token refusals above spend the state; a callback without the login cookie
    must not, or an attacker could burn a victim's login."""
    env.idp.id_token_factory = lambda nonce: env.idp.mint({"nonce": nonce}, alg="none")
    cb = await to_callback(browser, env)
    async with (
        aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as attacker,
        attacker.get(cb.url, allow_redirects=False) as r,
    ):
        assert r.status == 400
        assert SESSION_COOKIE not in r.cookies
    assert env.idp.hits["token"] == 0
    await assert_refused(browser, env, cb, "alg_not_allowed")
    reasons = [e.reason for e in await login_events(env)]
    assert reasons == ["login_cookie_missing", "alg_not_allowed", STATE_REASON]
