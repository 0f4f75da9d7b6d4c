"""``POST /backchannel-logout/{provider}``: what a valid logout token ends, and logout tokens a
real provider never sends.

The provider is the in-process fake (``tests/support/fake_idp.py``), configured as ``fake`` with
back-channel logout on; its ID tokens carry ``sid`` = ``op-sid-1`` (another provider session:
change ``idp.id_token_claims``). A valid token with ``sid`` ends exactly the broker sessions of
that provider session and the credentials derived from them; one with only ``sub`` ends the
user's. Each refusal case signs in through it, then POSTs a forged or broken logout token: the
answer is 400 with an OAuth error document, the refusal is audited with its specific reason, and
nothing changed: the session still works, no revocation was written and the token's ``jti`` was
not used up (a valid token with the same ``jti`` still works afterwards). The real provider's
round trip is in ``tests/e2e/test_backchannel_logout.py``.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpServer
from yarl import URL

from broker import jose
from broker.clock import FrozenClock
from broker.config import load_settings
from broker.idp.logout_token import BACKCHANNEL_LOGOUT_EVENT
from broker.service.backchannel import jti_key
from broker.service.login import PENDING_LIFETIME
from broker.storage.base import AuditEvent
from broker.web.app import create_app
from tests.conftest import RunningBroker, trust, write_config
from tests.support.fake_idp import FakeIdP, FakeKey, encode_jws, tamper_signature
from tests.support.fuzz import fuzz, hostile_tokens
from tests.support.login_driver import parse_forms
from tests.support.oidc_server import free_port

ROLES = {
    "fake-user": trust("fake", {"StringEquals": {"fake:sub": "user-1"}}),
    # user-2 may take either: the role chooser, a login pending between callback and choice
    "pick-a": trust("fake", {"StringEquals": {"fake:sub": "user-2"}}),
    "pick-b": trust("fake", {"StringEquals": {"fake:sub": "user-2"}}),
    # taken from a fake-user session by token exchange (a derived credential)
    "chained": {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": "arn:broker:iam::000000000000:role/fake-user"},
                "Action": "sts:AssumeRole",
            }
        ],
    },
    # taken from a ``chained`` credential (a credential derived from a derived one)
    "chained-twice": {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": "arn:broker:iam::000000000000:role/chained"},
                "Action": "sts:AssumeRole",
            }
        ],
    },
}
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN = "urn:ietf:params:oauth:token-type:access_token"
SID = "op-sid-1"
EVENTS: dict[str, dict[str, Any]] = {BACKCHANNEL_LOGOUT_EVENT: {}}


@dataclass
class Env:
    broker: RunningBroker
    idp: FakeIdP
    clock: FrozenClock

    @property
    def url(self) -> str:
        return self.broker.url

    @property
    def endpoint(self) -> str:
        return f"{self.url}/backchannel-logout/fake"


@pytest.fixture
async def env(tmp_path: Path, aiohttp_server: AiohttpServer) -> AsyncIterator[Env]:
    clock = FrozenClock(float(int(time.time())))
    idp = FakeIdP(clock=clock, id_token_claims={"sid": SID})
    idp.bind(await aiohttp_server(idp.app))
    port = free_port()
    extra = f"""
[providers.fake]
issuer = "{idp.issuer}"
client_id = "{idp.client_id}"
client_secret = "{idp.client_secret}"
backchannel_logout_uri = "http://127.0.0.1:{port}/backchannel-logout/fake"

[providers.quiet]
issuer = "{idp.issuer}"
client_id = "{idp.client_id}"
"""
    path = write_config(tmp_path / "broker", port=port, oidc=None, roles=ROLES, extra=extra)
    # forward-auth (``/auth``) reads the original request from this test's loopback peer
    path.write_text(
        path.read_text().replace("[store]", 'trusted_proxies = ["127.0.0.1/32"]\n[store]', 1)
    )
    settings = load_settings(path)
    app = create_app(settings, clock=clock)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
        yield Env(RunningBroker(f"http://127.0.0.1:{port}", settings, app, runner), idp, clock)
    finally:
        await runner.cleanup()


async def sign_in(env: Env) -> str:
    """A browser login through the fake; returns the broker session token."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        async with s.get(f"{env.url}/login/fake", allow_redirects=True) as r:
            assert r.status == 200, await r.text()
        token = s.cookie_jar.filter_cookies(URL(env.url))["broker_session"].value
    assert await session_status(env, token) == 200
    return token


async def session_status(env: Env, token: str) -> int:
    headers = {"Accept": "application/json", "Cookie": f"broker_session={token}"}
    async with aiohttp.ClientSession() as s, s.get(f"{env.url}/session", headers=headers) as r:
        return r.status


def logout_token(env: Env, claims: dict[str, Any] | None = None, **kwargs: Any) -> str:
    """A valid logout token (as oidc-provider makes them), changed by ``claims``/``kwargs``."""
    values: dict[str, Any] = {"sid": SID, "events": EVENTS, "jti": "jti-1"}
    values.update(claims or {})
    header = {"typ": "logout+jwt", **kwargs.pop("header", {})}
    return env.idp.mint(values, header=header, omit=kwargs.pop("omit", ("email",)), **kwargs)


async def post(
    env: Env, data: Any, *, provider: str = "fake", content_type: str | None = None
) -> tuple[int, dict[str, str], Any]:
    url = f"{env.url}/backchannel-logout/{provider}"
    headers = {"Content-Type": content_type} if content_type else {}
    async with aiohttp.ClientSession() as s, s.post(url, data=data, headers=headers) as r:
        body = await r.json() if r.content_type == "application/json" else await r.text()
        return r.status, dict(r.headers), body


async def audit(env: Env) -> list[AuditEvent]:
    return list(
        reversed(await env.broker.broker.store.list_audit(limit=100, action="logout.backchannel"))
    )


async def revocations(env: Env) -> list[Any]:
    return list(await env.broker.broker.store.revocations_since(0))


# --- success -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("claims", "kind"),
    [({}, "origin"), ({"sub": None}, "origin"), ({"sid": None}, "user")],
    ids=["sid-and-sub", "sid-only", "sub-only"],
)
async def test_a_valid_logout_token_ends_the_session(
    env: Env, claims: dict[str, Any], kind: str
) -> None:
    token = await sign_in(env)
    omit = ["email", *(k for k, v in claims.items() if v is None)]
    raw = logout_token(env, {k: v for k, v in claims.items() if v is not None}, omit=omit)
    status, headers, body = await post(env, {"logout_token": raw})
    assert status == 200, body
    assert headers["Cache-Control"] == "no-store"
    assert await session_status(env, token) == 401
    [event] = await audit(env)
    assert (event.outcome, event.principal) == (
        "success",
        "fake/user-1" if "sub" not in claims else "fake/",
    )
    assert [r.kind for r in await revocations(env)] == [kind]


async def test_a_sid_that_started_no_session_here_ends_nothing_even_with_a_known_sub(
    env: Env,
) -> None:
    """§2.4: with ``sid`` the token names one provider session, not the person."""
    token = await sign_in(env)
    raw = logout_token(env, {"sid": "another-provider-session"})
    assert (await post(env, {"logout_token": raw}))[0] == 200
    assert await session_status(env, token) == 200
    assert await revocations(env) == []
    [event] = await audit(env)
    assert event.outcome == "success"
    assert event.details["sessions"] == []


async def try_exchange(env: Env, subject_token: str, role: str = "chained") -> tuple[int, Any]:
    """RFC 8693 token exchange of a broker token for a credential of ``role``."""
    form = {
        "grant_type": TOKEN_EXCHANGE,
        "subject_token": subject_token,
        "subject_token_type": ACCESS_TOKEN,
        "scope": f"role:{role}",
    }
    async with aiohttp.ClientSession() as s, s.post(f"{env.url}/oauth2/token", data=form) as r:
        return r.status, await r.json()


async def exchange(env: Env, subject_token: str, role: str = "chained") -> str:
    """RFC 8693: a broker token for a credential of ``role`` (``chained`` by default)."""
    status, body = await try_exchange(env, subject_token, role)
    assert status == 200, body
    return str(body["access_token"])


def claims_of(token: str) -> dict[str, Any]:
    return jose.parse_payload(jose.b64url_decode(token.split(".")[1]))


async def bearer_auth_status(env: Env, token: str) -> int:
    """Forward-auth with the credential as a bearer token."""
    headers = {
        "X-Original-Method": "GET",
        "X-Original-URL": "https://app.example.com/",
        "Authorization": f"Bearer {token}",
    }
    async with (
        aiohttp.ClientSession() as s,
        s.get(f"{env.url}/auth", headers=headers, allow_redirects=False) as r,
    ):
        return r.status


async def introspect_status(env: Env, token: str) -> int:
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        aiohttp.ClientSession() as s,
        s.post(f"{env.url}/oauth2/introspect", data={"token": token}, headers=headers) as r,
    ):
        return r.status


async def test_credentials_derived_from_the_session_end_too(env: Env) -> None:
    token = await sign_in(env)
    derived = await exchange(env, token)
    assert await introspect_status(env, derived) == 200
    assert (await post(env, {"logout_token": logout_token(env, omit=("email", "sub"))}))[0] == 200
    assert await session_status(env, token) == 401
    assert await introspect_status(env, derived) == 401


async def test_a_logout_token_for_no_session_here_is_still_a_success(env: Env) -> None:
    token = await sign_in(env)
    raw = logout_token(env, {"sid": "elsewhere", "sub": "someone-else"})
    status, _, _ = await post(env, {"logout_token": raw})
    assert status == 200
    assert await session_status(env, token) == 200
    assert await revocations(env) == []


async def test_a_replayed_logout_token_is_refused_and_ends_nothing_new(env: Env) -> None:
    await sign_in(env)
    raw = logout_token(env)
    assert (await post(env, {"logout_token": raw}))[0] == 200
    env.clock.advance(5)  # a new login after the logout: a replay must not end it
    env.idp.id_token_claims["sid"] = "op-sid-2"  # a new provider session (the old one ended)
    token = await sign_in(env)
    status, _, body = await post(env, {"logout_token": raw})
    assert status == 400
    assert body["error"] == "invalid_request"
    assert await session_status(env, token) == 200
    assert (await audit(env))[-1].reason == "jti_replayed"
    assert len(await revocations(env)) == 1


async def test_a_sid_ends_that_provider_session_and_its_derived_credentials_only(
    env: Env,
) -> None:
    """Two browser sessions of one person from two provider sessions, a credential derived from
    each (and one derived from that): the logout of provider session 1 ends broker session A and
    everything derived from it; session B and its credential stay."""
    session_a = await sign_in(env)
    env.idp.id_token_claims["sid"] = "op-sid-2"  # the person signs in again, another browser
    session_b = await sign_in(env)
    sid_a = env.broker.broker.sessions.verify(session_a).session_id
    derived_a = await exchange(env, session_a)
    twice_a = await exchange(env, derived_a, "chained-twice")
    derived_b = await exchange(env, session_b)
    # The chain keeps the ORIGINAL broker session, not the intermediate credential's sid.
    assert claims_of(derived_a)["origin_sid"] == sid_a
    assert claims_of(twice_a)["origin_sid"] == sid_a
    assert claims_of(twice_a)["sid"] != claims_of(derived_a)["sid"]
    for t in (derived_a, twice_a, derived_b):
        assert await bearer_auth_status(env, t) == 200

    raw = logout_token(env, {"jti": "logout-a"})  # sid op-sid-1 and sub user-1
    assert (await post(env, {"logout_token": raw}))[0] == 200

    assert await session_status(env, session_a) == 401
    for t in (session_a, derived_a, twice_a):
        assert await bearer_auth_status(env, t) == 401  # at /auth
        assert await introspect_status(env, t) == 401
        status, body = await try_exchange(env, t)  # at STS (token exchange)
        assert (status, body["error"]) == (400, "invalid_grant")
    assert await session_status(env, session_b) == 200
    assert await bearer_auth_status(env, session_b) == 200
    assert await bearer_auth_status(env, derived_b) == 200
    assert await introspect_status(env, derived_b) == 200
    await exchange(env, derived_b, "chained-twice")  # B's credentials still mint
    assert [(r.kind, r.target) for r in await revocations(env)] == [("origin", sid_a)]
    [event] = await audit(env)
    assert event.details["sessions"] == [sid_a]
    store = env.broker.broker.store
    sid_b = env.broker.broker.sessions.verify(session_b).session_id
    assert (await store.get_session(sid_a)).revoked_at is not None
    assert (await store.get_session(sid_b)).revoked_at is None
    # The same token again is refused and ends nothing more.
    status, _, _ = await post(env, {"logout_token": raw})
    assert status == 400
    assert await session_status(env, session_b) == 200


async def assertion_claims(env: Env, token: str) -> dict[str, Any]:
    headers = {
        "X-Original-Method": "GET",
        "X-Original-URL": "https://app.example.com/",
        "Authorization": f"Bearer {token}",
    }
    async with (
        aiohttp.ClientSession() as s,
        s.get(f"{env.url}/auth", headers=headers, allow_redirects=False) as r,
    ):
        assert r.status == 200
        return claims_of(r.headers["X-Auth-Request-Assertion"])


async def test_the_forward_auth_assertion_of_a_derived_credential_names_its_origin(
    env: Env,
) -> None:
    session = await sign_in(env)
    sid = env.broker.broker.sessions.verify(session).session_id
    derived = await exchange(env, session)
    of_session = await assertion_claims(env, session)
    assert of_session["sid"] == sid
    assert "origin_sid" not in of_session  # a session is its own origin: nothing to add
    of_derived = await assertion_claims(env, derived)
    assert (of_derived["sid"], of_derived["origin_sid"]) == (claims_of(derived)["sid"], sid)


async def test_a_sid_also_ends_what_a_session_ended_by_logout_left_behind(env: Env) -> None:
    """A plain logout ends only the session's own tokens (its derived credential lives on);
    the provider's later logout of that provider session ends the derived credential too."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        async with browser.get(f"{env.url}/login/fake") as r:
            assert r.status == 200
        token = browser.cookie_jar.filter_cookies(URL(env.url))["broker_session"].value
        derived = await exchange(env, token)
        async with browser.get(f"{env.url}/logout") as r:
            form = parse_forms(await r.text())[0]
        async with browser.post(f"{env.url}/logout", data=form.fields) as r:
            assert r.status == 200
    assert await session_status(env, token) == 401
    assert await bearer_auth_status(env, derived) == 200  # outlives the console session
    assert [r.kind for r in await revocations(env)] == ["session"]
    assert (await post(env, {"logout_token": logout_token(env, omit=("email", "sub"))}))[0] == 200
    assert await bearer_auth_status(env, derived) == 401
    assert [r.kind for r in await revocations(env)] == ["session", "origin"]


async def test_a_sub_alone_ends_every_session_of_the_user_and_what_was_derived(env: Env) -> None:
    session_a = await sign_in(env)
    env.idp.id_token_claims["sid"] = "op-sid-2"
    session_b = await sign_in(env)
    derived_b = await exchange(env, session_b)
    raw = logout_token(env, omit=("email", "sid"))
    assert (await post(env, {"logout_token": raw}))[0] == 200
    for t in (session_a, session_b, derived_b):
        assert await bearer_auth_status(env, t) == 401
    assert [r.kind for r in await revocations(env)] == ["user"]


# --- a logout while the login is still pending (between callback and the role choice) -------


@dataclass
class Pending:
    """A browser at ``/roles``: the callback is done, the role not yet chosen."""

    browser: aiohttp.ClientSession
    fields: list[tuple[str, str]]

    async def choose(self, env: Env, role: str = "pick-a") -> tuple[int, str]:
        async with self.browser.post(
            f"{env.url}/roles", data=[*self.fields, ("role", role)], allow_redirects=False
        ) as r:
            return r.status, await r.text()

    def session_cookie(self, env: Env) -> str | None:
        c = self.browser.cookie_jar.filter_cookies(URL(env.url)).get("broker_session")
        return c.value if c is not None else None


@pytest.fixture
async def chooser(env: Env) -> AsyncIterator[Callable[[], Any]]:
    """Sign user-2 in up to the role chooser; the browser stays open for the choice."""
    browsers: list[aiohttp.ClientSession] = []

    async def start() -> Pending:
        env.idp.id_token_claims.update({"sub": "user-2", "email": "user-2@example.com"})
        browser = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        browsers.append(browser)
        async with browser.get(f"{env.url}/login/fake", allow_redirects=True) as r:
            assert (r.status, r.url.path) == (200, "/roles"), await r.text()
            form = parse_forms(await r.text())[0]
        return Pending(browser, list(form.fields))

    yield start
    for b in browsers:
        await b.close()


async def refusals(env: Env) -> list[AuditEvent]:
    events = await env.broker.broker.store.list_audit(limit=100, action="role.choose")
    return [e for e in events if e.outcome != "success"]


@pytest.mark.parametrize(
    ("claims", "omit", "reason"),
    [
        ({"sub": "user-2"}, ("email",), "provider_session_ended"),
        ({}, ("email", "sub"), "provider_session_ended"),
        ({"sub": "user-2"}, ("email", "sid"), "provider_user_logged_out"),
    ],
    ids=["sid-and-sub", "sid-only", "sub-only"],
)
async def test_a_logout_while_the_role_choice_is_pending_refuses_the_choice(
    env: Env, chooser: Callable[[], Any], claims: dict[str, Any], omit: tuple[str, ...], reason: str
) -> None:
    """The attack: the provider session ends after the callback, before ``POST /roles``. There
    is no broker session yet for the logout to end; the choice must not make one."""
    pending: Pending = await chooser()
    env.clock.advance(2)
    status, _, body = await post(env, {"logout_token": logout_token(env, claims, omit=omit)})
    assert status == 200, body
    env.clock.advance(1)

    status, page = await pending.choose(env)

    assert status == 403
    assert "signed out at your identity provider" in page
    assert 'href="/login"' in page  # back to the sign-in
    assert pending.session_cookie(env) is None
    [event] = await refusals(env)
    assert (event.outcome, event.principal, event.reason) == ("denied", "fake/user-2", reason)
    sessions = await env.broker.broker.store.list_audit(limit=100, action="login")
    assert [e for e in sessions if e.outcome == "success"] == []


async def test_a_logout_of_another_provider_session_or_user_leaves_the_choice(
    env: Env, chooser: Callable[[], Any]
) -> None:
    pending: Pending = await chooser()
    for n, claims in enumerate(({"sid": "op-sid-9", "sub": "user-2"}, {"sub": "user-1"})):
        omit = ("email",) if "sid" in claims else ("email", "sid")
        raw = logout_token(env, {**claims, "jti": f"other-{n}"}, omit=omit)
        assert (await post(env, {"logout_token": raw}))[0] == 200
    status, _ = await pending.choose(env)
    assert status == 303
    token = pending.session_cookie(env)
    assert token is not None
    assert await session_status(env, token) == 200
    assert await refusals(env) == []


async def test_a_login_after_a_sub_only_logout_is_not_refused(
    env: Env, chooser: Callable[[], Any]
) -> None:
    """The tombstone of a ``sub``-only logout ends the logins verified until then, no later."""
    raw = logout_token(env, {"sub": "user-2"}, omit=("email", "sid"))
    assert (await post(env, {"logout_token": raw}))[0] == 200
    env.clock.advance(1)
    pending: Pending = await chooser()
    assert (await pending.choose(env))[0] == 303
    assert pending.session_cookie(env) is not None


async def test_an_id_token_of_an_ended_provider_session_makes_no_session(env: Env) -> None:
    """The single-role path: a code the provider issued before its session ended, redeemed
    after the logout token came (its ID token carries the ended ``sid``)."""
    raw = logout_token(env)
    assert (await post(env, {"logout_token": raw}))[0] == 200
    env.clock.advance(1)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        async with s.get(f"{env.url}/login/fake", allow_redirects=True) as r:
            assert r.status == 403
            assert "signed out at your identity provider" in await r.text()
        assert "broker_session" not in s.cookie_jar.filter_cookies(URL(env.url))
    [event] = await refusals(env)
    assert (event.principal, event.reason) == ("fake/user-1", "provider_session_ended")


async def test_the_tombstone_outlives_a_pending_choice_and_is_purged_after(env: Env) -> None:
    """Remembered at least as long as a login begun before the logout can be pending (the
    login state, then the pending choice), then purged with the other expired values."""
    store = env.broker.broker.store
    now = env.clock.now()
    assert (await post(env, {"logout_token": logout_token(env)}))[0] == 200
    [t] = await store.provider_logouts("fake", sid=SID, subject="", now=now)
    login = env.broker.settings.login
    assert t.expires_at - now >= login.state_ttl + PENDING_LIFETIME
    assert await store.purge_provider_logouts(t.expires_at - 1) == 0
    assert await store.purge_provider_logouts(t.expires_at) == 1


def test_the_same_jti_from_another_provider_is_another_token() -> None:
    """Replay protection is per provider: the store key is (provider, jti)."""
    assert jti_key("fake", "jti-1") != jti_key("quiet", "jti-1")


# --- refusals ------------------------------------------------------------------------------

Forge = Callable[[Env], str]
OTHER_KEY = FakeKey.generate("RS256")


def _with(claims: dict[str, Any] | None = None, **kwargs: Any) -> Forge:
    return lambda env: logout_token(env, claims, **kwargs)


def _id_token(env: Env) -> str:
    return env.idp.mint({"nonce": "n-1", "sid": SID, "jti": "id-jti"})


def _alg_none(env: Env) -> str:
    return logout_token(env, alg="none")


def _hmac_with_public_key(env: Env) -> str:
    return logout_token(env, alg="HS256", hmac_secret=env.idp.signing_key.public_pem())


def _bad_signature(env: Env) -> str:
    return tamper_signature(logout_token(env))


def _duplicate_member(env: Env) -> str:
    """``sub`` twice: a parser that keeps the last one would read ``admin``."""
    head = {"alg": "RS256", "kid": env.idp.signing_key.kid, "typ": "logout+jwt"}
    claims = env.idp.claims(sid=SID, jti="jti-1", events=EVENTS)
    body = json.dumps(claims)[:-1] + ', "sub": "admin"}'
    return encode_jws(head, body.encode(), alg="RS256", key=env.idp.signing_key)


REFUSED: list[tuple[str, Forge, str]] = [
    ("nonce", _with({"nonce": "n-1"}), "nonce_present"),
    ("id-token", _id_token, "events_missing"),
    ("no-events", _with(omit=("email", "events")), "events_missing"),
    ("other-event", _with({"events": {"http://example.com/other": {}}}), "events_not_logout"),
    ("events-not-object", _with({"events": [BACKCHANNEL_LOGOUT_EVENT]}), "events_not_logout"),
    ("event-not-object", _with({"events": {BACKCHANNEL_LOGOUT_EVENT: "yes"}}), "event_not_object"),
    ("no-sid-no-sub", _with(omit=("email", "sid", "sub")), "sid_and_sub_missing"),
    ("empty-sid", _with({"sid": ""}, omit=("email", "sub")), "malformed"),
    ("no-jti", _with(omit=("email", "jti")), "jti_missing"),
    ("empty-jti", _with({"jti": ""}), "jti_missing"),
    ("wrong-aud", _with({"aud": "someone-else"}), "aud_mismatch"),
    ("wrong-iss", _with({"iss": "https://evil.example"}), "iss_mismatch"),
    ("no-iat", _with(omit=("email", "iat")), "missing_iat"),
    ("iat-future", _with({"iat": int(time.time()) + 3600}), "iat_in_future"),
    ("iat-too-old", _with({"iat": int(time.time()) - 3600}), "iat_too_old"),
    ("expired", _with({"exp": int(time.time()) - 3600}), "expired"),
    ("bad-signature", _bad_signature, "bad_signature"),
    ("alg-none", _alg_none, "alg_not_allowed"),
    ("hmac-public-key", _hmac_with_public_key, "alg_not_allowed"),
    ("other-key", _with(key=OTHER_KEY), "unknown_kid"),
    ("jku-header", _with(header={"jku": "https://evil.example/jwks"}), "forbidden_header:jku"),
    ("typ-at-jwt", _with(header={"typ": "at+jwt"}), "typ_mismatch"),
    ("duplicate-member", _duplicate_member, "malformed"),
    ("not-a-jwt", lambda env: "not.a.jwt", "malformed"),
]


@pytest.mark.parametrize(
    ("forge", "reason"), [(f, r) for _, f, r in REFUSED], ids=[i for i, _, _ in REFUSED]
)
async def test_a_bad_logout_token_is_refused_and_changes_nothing(
    env: Env, forge: Forge, reason: str
) -> None:
    token = await sign_in(env)
    status, headers, body = await post(env, {"logout_token": forge(env)})
    assert status == 400
    assert body["error"] == "invalid_request"
    assert headers["Cache-Control"] == "no-store"
    assert reason not in str(body)  # the reason is for the audit log, not the caller
    assert [(e.outcome, e.reason) for e in await audit(env)] == [("failure", reason)]
    assert await session_status(env, token) == 200
    assert await revocations(env) == []
    # The refused token did not use up its jti: a valid token with the same jti still works.
    assert (await post(env, {"logout_token": logout_token(env)}))[0] == 200
    assert await session_status(env, token) == 401


REQUESTS: list[tuple[str, dict[str, Any], int, str]] = [
    ("missing", {"data": {"other": "x"}}, 400, "logout_token_missing"),
    ("empty", {"data": {"logout_token": ""}}, 400, "logout_token_missing"),
    (
        "repeated",
        {"data": [("logout_token", "a"), ("logout_token", "b")]},
        400,
        "logout_token_repeated",
    ),
    (
        "json-body",
        {"data": b'{"logout_token": "x"}', "content_type": "application/json"},
        400,
        "not_form_encoded",
    ),
    ("too-large", {"data": {"logout_token": "x" * 200_000}}, 413, "body_too_large"),
    (
        "not-utf8",
        {"data": b"logout_token=\xff\xfe", "content_type": "application/x-www-form-urlencoded"},
        400,
        "malformed_form",
    ),
    ("unknown-provider", {"data": {"logout_token": "x"}, "provider": "nope"}, 404, ""),
    ("not-enabled", {"data": {"logout_token": "x"}, "provider": "quiet"}, 404, ""),
    ("local-provider", {"data": {"logout_token": "x"}, "provider": "local"}, 404, ""),
]


@pytest.mark.parametrize(
    ("kwargs", "status", "reason"),
    [(k, s, r) for _, k, s, r in REQUESTS],
    ids=[i for i, _, _, _ in REQUESTS],
)
async def test_a_bad_request_is_refused_and_audited(
    env: Env, kwargs: dict[str, Any], status: int, reason: str
) -> None:
    token = await sign_in(env)
    got, _, body = await post(env, **kwargs)
    assert got == status
    assert "error" in body
    [event] = await audit(env)
    assert event.outcome == "failure"
    assert event.reason == reason or (status == 404 and "not_enabled" in event.reason)
    assert await session_status(env, token) == 200
    assert await revocations(env) == []


async def test_hostile_logout_tokens_never_answer_5xx_and_end_nothing(env: Env) -> None:
    """Fuzz (issue 11, 0c): whatever the logout token (nested far past any limit, broken
    JSON, duplicate members, ...), the answer is a 4xx and no session is ended."""
    token = await sign_in(env)

    async def check(logout_token: str) -> None:
        status, _, _ = await post(env, {"logout_token": logout_token})
        assert 400 <= status < 500, status

    await fuzz(hostile_tokens, check, max_examples=40)
    assert await session_status(env, token) == 200
    assert await revocations(env) == []
    assert all(e.outcome == "failure" for e in await audit(env))
