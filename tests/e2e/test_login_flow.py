"""End to end: the broker in front of two real OIDC providers and the local provider.

An HTTP client follows the real forms (the provider's login page, the broker's chooser) the way a
browser would; a separate test drives real Chromium.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import jwt
import pytest
from yarl import URL

from broker.storage.base import AuditEvent
from tests.conftest import E2E_ROLES, BrokerFactory, RunningBroker
from tests.support.login_driver import follow_login, parse_forms
from tests.support.oidc_server import OidcServer

pytestmark = pytest.mark.oidc


@pytest.fixture
async def browser_session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        yield s


@pytest.fixture
async def broker(broker_factory: BrokerFactory, oidc_server: OidcServer) -> RunningBroker:
    return await broker_factory(oidc=oidc_server)


def session_cookie(s: aiohttp.ClientSession, b: RunningBroker) -> str | None:
    c = s.cookie_jar.filter_cookies(URL(b.url)).get("broker_session")
    return c.value if c else None


async def login(
    s: aiohttp.ClientSession,
    b: RunningBroker,
    oidc: OidcServer,
    provider: str,
    user: str,
    query: str = "",
) -> tuple[int, str, str]:
    r = await follow_login(
        s,
        f"{b.url}/login/{provider}{query}",
        username=user,
        password=oidc.accounts[user],
        provider_origins=oidc.issuers.values(),
    )
    return r.status, r.url, r.text


async def session_json(s: aiohttp.ClientSession, b: RunningBroker) -> tuple[int, dict[str, Any]]:
    async with s.get(f"{b.url}/session", headers={"Accept": "application/json"}) as r:
        return r.status, await r.json()


async def choose(
    s: aiohttp.ClientSession, b: RunningBroker, html: str, role: str
) -> aiohttp.ClientResponse:
    form = parse_forms(html)[0]
    data = [(k, v) for k, v in form.fields] + [("role", role)]
    return await s.post(f"{b.url}/roles", data=data, allow_redirects=True)


async def audit(b: RunningBroker, action: str) -> list[AuditEvent]:
    return list(await b.broker.store.list_audit(limit=200, action=action))


async def test_single_role_goes_straight_to_session(
    browser_session: aiohttp.ClientSession, broker: RunningBroker, oidc_server: OidcServer
) -> None:
    status, url, _ = await login(browser_session, broker, oidc_server, "corp", "bob")
    assert status == 200
    assert url == f"{broker.url}/session"
    code, data = await session_json(browser_session, broker)
    assert code == 200
    assert data["role"] == "arn:broker:iam::000000000000:role/dev"
    assert data["provider"] == "corp"
    assert data["subject"] == "bob"
    assert data["email"] == "bob@example.com"
    assert data["groups"] == ["dev"]
    assert "expires_at" in data


async def test_several_roles_show_the_chooser(
    browser_session: aiohttp.ClientSession, broker: RunningBroker, oidc_server: OidcServer
) -> None:
    status, url, html = await login(browser_session, broker, oidc_server, "corp", "alice")
    assert url == f"{broker.url}/roles"
    assert status == 200
    assert 'value="admin"' in html
    assert 'value="dev"' in html
    assert 'value="viewer"' not in html
    assert session_cookie(browser_session, broker) is None
    async with await choose(browser_session, broker, html, "admin") as r:
        assert r.status == 200
        assert str(r.url) == f"{broker.url}/session"
    _, data = await session_json(browser_session, broker)
    assert data["role"] == "arn:broker:iam::000000000000:role/admin"


async def test_chooser_refuses_a_role_not_offered(
    browser_session: aiohttp.ClientSession, broker: RunningBroker, oidc_server: OidcServer
) -> None:
    _, _, html = await login(browser_session, broker, oidc_server, "corp", "alice")
    async with await choose(browser_session, broker, html, "viewer") as r:
        assert r.status == 403
    assert session_cookie(browser_session, broker) is None
    assert any(e.reason == "role_not_allowed:viewer" for e in await audit(broker, "role.choose"))


async def test_role_parameter_goes_straight_to_that_role(
    browser_session: aiohttp.ClientSession, broker: RunningBroker, oidc_server: OidcServer
) -> None:
    _, url, _ = await login(browser_session, broker, oidc_server, "corp", "alice", "?role=dev")
    assert url == f"{broker.url}/session"
    _, data = await session_json(browser_session, broker)
    assert data["role"].endswith(":role/dev")


async def test_two_providers_at_once(
    browser_session: aiohttp.ClientSession, broker: RunningBroker, oidc_server: OidcServer
) -> None:
    await login(browser_session, broker, oidc_server, "partner", "alice")
    _, data = await session_json(browser_session, broker)
    assert data["role"].endswith(":role/viewer")
    assert data["provider"] == "partner"
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as other:
        await login(other, broker, oidc_server, "corp", "bob")
        _, data2 = await session_json(other, broker)
        assert data2["provider"] == "corp"
    users = await broker.broker.store.list_users()
    assert {(u.provider, u.subject) for u in users} >= {("partner", "alice"), ("corp", "bob")}


async def test_no_role_is_a_403_and_no_session(
    browser_session: aiohttp.ClientSession, broker: RunningBroker, oidc_server: OidcServer
) -> None:
    status, _url, html = await login(browser_session, broker, oidc_server, "corp", "carol")
    assert status == 403
    assert "no role is available" in html
    assert session_cookie(browser_session, broker) is None
    assert any(e.reason == "no_role_trusts_identity" for e in await audit(broker, "login"))


async def test_redirect_after_login_is_kept_and_checked(
    browser_session: aiohttp.ClientSession, broker: RunningBroker, oidc_server: OidcServer
) -> None:
    r = await follow_login(
        browser_session,
        f"{broker.url}/login/corp?rd=/session%3Fback%3D1",
        username="bob",
        password=oidc_server.accounts["bob"],
        provider_origins=oidc_server.issuers.values(),
    )
    assert r.url == f"{broker.url}/session?back=1"
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as other:
        r = await follow_login(
            other,
            f"{broker.url}/login/corp?rd=https://example.com.evil.test/",
            username="bob",
            password=oidc_server.accounts["bob"],
            provider_origins=oidc_server.issuers.values(),
        )
        assert r.url == f"{broker.url}/session"


async def test_state_replay_and_other_browser(
    browser_session: aiohttp.ClientSession, broker: RunningBroker, oidc_server: OidcServer
) -> None:
    r = await follow_login(
        browser_session,
        f"{broker.url}/login/corp",
        username="bob",
        password=oidc_server.accounts["bob"],
        provider_origins=oidc_server.issuers.values(),
        stop_at_rp=True,
    )
    callback = r.url
    assert callback.startswith(f"{broker.url}/callback/corp?")
    # Another browser (no login cookie) cannot use it, and does not burn it.
    jar = aiohttp.CookieJar(unsafe=True)
    async with (
        aiohttp.ClientSession(cookie_jar=jar) as attacker,
        attacker.get(callback, allow_redirects=False) as resp,
    ):
        assert resp.status == 400
        assert "broker_session" not in resp.cookies
    # The right browser can, once; a replay, even with the login cookie put back, cannot.
    login_cookie = browser_session.cookie_jar.filter_cookies(URL(broker.url))["broker_login"].value
    async with browser_session.get(callback, allow_redirects=False) as resp:
        assert resp.status == 303
        assert resp.cookies["broker_session"].value
    browser_session.cookie_jar.update_cookies({"broker_login": login_cookie}, URL(broker.url))
    async with browser_session.get(callback, allow_redirects=False) as resp:
        assert resp.status == 400
        assert "broker_session" not in resp.cookies
    reasons = [e.reason for e in await audit(broker, "login")]
    assert "login_cookie_missing" in reasons
    assert "state_unknown_used_expired_or_other_browser" in reasons


async def test_a_login_in_flight_dies_with_logout(
    browser_session: aiohttp.ClientSession, broker: RunningBroker, oidc_server: OidcServer
) -> None:
    """A signed-in browser starts another login and signs out before the provider answers:
    the login state (single use, bound to the browser) is gone with the session."""
    await login(browser_session, broker, oidc_server, "corp", "bob")
    r = await follow_login(
        browser_session,
        f"{broker.url}/login/corp",
        username="bob",
        password=oidc_server.accounts["bob"],
        provider_origins=oidc_server.issuers.values(),
        stop_at_rp=True,
    )
    callback = r.url
    assert callback.startswith(f"{broker.url}/callback/corp?")
    login_cookie = browser_session.cookie_jar.filter_cookies(URL(broker.url))["broker_login"].value
    async with browser_session.get(f"{broker.url}/logout") as resp:
        form = parse_forms(await resp.text())[0]
    async with browser_session.post(f"{broker.url}/logout", data=form.fields) as resp:
        assert resp.status == 200
    # Even with the login cookie put back, the callback finds no state.
    browser_session.cookie_jar.update_cookies({"broker_login": login_cookie}, URL(broker.url))
    async with browser_session.get(callback, allow_redirects=False) as resp:
        assert resp.status == 400
        assert "broker_session" not in resp.cookies
    reasons = [e.reason for e in await audit(broker, "login")]
    assert "state_unknown_used_expired_or_other_browser" in reasons


async def test_missing_state_and_provider_error(
    browser_session: aiohttp.ClientSession, broker: RunningBroker, oidc_server: OidcServer
) -> None:
    async with browser_session.get(f"{broker.url}/callback/corp?code=abc") as resp:
        assert resp.status == 400
    async with browser_session.get(f"{broker.url}/login/corp", allow_redirects=False) as resp:
        state = parse_qs(urlsplit(resp.headers["Location"]).query)["state"][0]
    async with browser_session.get(
        f"{broker.url}/callback/corp",
        params={
            "error": "access_denied",
            "state": state,
            "error_description": "<b>nope</b>",
            "iss": oidc_server.issuers["corp"],
        },
    ) as resp:
        assert resp.status == 400
        assert "<b>" not in await resp.text()
        assert "broker_session" not in resp.cookies
    reasons = [e.reason for e in await audit(broker, "login")]
    assert "state_missing" in reasons
    assert any(r.startswith("provider_error") for r in reasons)


async def test_session_fixation_and_logout(
    browser_session: aiohttp.ClientSession, broker: RunningBroker, oidc_server: OidcServer
) -> None:
    browser_session.cookie_jar.update_cookies(
        {"broker_session": "planted-by-attacker"}, URL(broker.url)
    )
    await login(browser_session, broker, oidc_server, "corp", "bob")
    token = session_cookie(browser_session, broker)
    assert token
    assert token != "planted-by-attacker"
    async with browser_session.get(f"{broker.url}/logout") as r:
        html = await r.text()
    form = parse_forms(html)[0]
    # A logout without the CSRF token is refused and changes nothing.
    async with browser_session.post(f"{broker.url}/logout", data={"csrf": "x"}) as r:
        assert r.status == 403
    assert (await session_json(browser_session, broker))[0] == 200
    async with browser_session.post(f"{broker.url}/logout", data=form.fields) as r:
        assert r.status == 200
    # The old cookie no longer works, on the very next request.
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as replay:
        replay.cookie_jar.update_cookies({"broker_session": token}, URL(broker.url))
        status, _ = await session_json(replay, broker)
        assert status == 401
    assert [e.outcome for e in await audit(broker, "logout")] == ["success", "failure"]


@pytest.mark.filterwarnings("ignore:EdDSA is deprecated")
async def test_broker_token_verifies_offline_with_the_jwks(
    browser_session: aiohttp.ClientSession, broker: RunningBroker, oidc_server: OidcServer
) -> None:
    """A service with a standard JOSE library (here joserfc, not the broker's pyjwt)."""
    from joserfc import jwt as jose_jwt
    from joserfc.jwk import KeySet

    await login(browser_session, broker, oidc_server, "corp", "bob")
    token = session_cookie(browser_session, broker)
    assert token
    async with aiohttp.ClientSession() as verifier:
        async with verifier.get(f"{broker.url}/.well-known/openid-configuration") as r:
            meta = await r.json()
        assert meta["issuer"] == broker.url
        async with verifier.get(meta["jwks_uri"]) as r:
            jwks = await r.json()
    decoded = jose_jwt.decode(token, KeySet.import_key_set(jwks), algorithms=["EdDSA"])
    assert decoded.header["typ"] == "broker-session+jwt"
    assert decoded.header["kid"] in {k["kid"] for k in jwks["keys"]}
    claims = decoded.claims
    assert claims["iss"] == broker.url
    assert claims["role"].endswith(":role/dev")
    assert claims["idp"] == "corp"
    assert claims["idp_sub"] == "bob"
    assert {"sub", "aud", "exp", "iat", "nbf", "jti", "sid"} <= set(claims)
    # and with PyJWT's JWKS client too
    # (PyJWKClient fetches synchronously: off the event loop that serves the broker)
    key = await asyncio.to_thread(jwt.PyJWKClient(meta["jwks_uri"]).get_signing_key_from_jwt, token)
    assert (
        jwt.decode(token, key.key, algorithms=["EdDSA"], audience=broker.url)["sid"]
        == claims["sid"]
    )


async def test_rotation_keeps_old_tokens_valid(
    browser_session: aiohttp.ClientSession, broker: RunningBroker, oidc_server: OidcServer
) -> None:
    await login(browser_session, broker, oidc_server, "corp", "bob")
    old = session_cookie(browser_session, broker)
    old_kid = jwt.get_unverified_header(old or "")["kid"]
    await broker.broker.rotate_keys(reason="test")
    async with aiohttp.ClientSession() as s, s.get(f"{broker.url}/.well-known/jwks.json") as r:
        kids = {k["kid"] for k in (await r.json())["keys"]}
    assert old_kid in kids
    assert len(kids) == 2
    assert (await session_json(browser_session, broker))[0] == 200
    assert [e.outcome for e in await audit(broker, "keys.rotate")] == ["success"]


async def test_local_admin_first_login_must_change_password(
    broker_factory: BrokerFactory, browser_session: aiohttp.ClientSession
) -> None:
    b = await broker_factory(oidc=None, roles={"local-admin": E2E_ROLES["local-admin"]})
    otp = b.broker.bootstrap_password
    assert otp
    assert re.fullmatch(r"[A-Za-z0-9]{6}(-[A-Za-z0-9]{6}){3}", otp)
    [admin] = await b.broker.store.find_users_by_name("admin")
    assert admin.password_changed_at == admin.created_at  # the one-time password's
    async with browser_session.get(f"{b.url}/login/local") as r:
        form = parse_forms(await r.text())[0]
    fields = dict(form.fields)
    # wrong password: the form again, no cookie, audited
    async with browser_session.post(
        f"{b.url}/login/local", data={**fields, "username": "admin", "password": "wrong"}
    ) as r:
        assert r.status == 401
        assert "Wrong user name or password" in await r.text()
    async with browser_session.post(
        f"{b.url}/login/local",
        data={**fields, "username": "admin", "password": otp},
        allow_redirects=False,
    ) as r:
        assert r.status == 303
        assert r.headers["Location"] == "/password"
    assert session_cookie(browser_session, b) is None
    async with browser_session.get(f"{b.url}/password") as r:
        pform = dict(parse_forms(await r.text())[0].fields)
    async with browser_session.post(
        f"{b.url}/password", data={**pform, "new_password": "short", "confirm": "short"}
    ) as r:
        assert r.status == 400
    new = "correct horse battery staple"
    async with browser_session.post(
        f"{b.url}/password", data={**pform, "new_password": new, "confirm": new}
    ) as r:
        assert r.status == 200
        assert str(r.url) == f"{b.url}/session"
    _, data = await session_json(browser_session, b)
    assert data["role"].endswith(":role/local-admin")
    assert data["subject"] == "admin"
    [changed] = await b.broker.store.find_users_by_name("admin")
    assert changed.password_changed_at is not None
    assert changed.password_changed_at > admin.created_at  # the credentials report's
    # the one-time password is spent
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as again:
        async with again.get(f"{b.url}/login/local") as r:
            f2 = dict(parse_forms(await r.text())[0].fields)
        async with again.post(
            f"{b.url}/login/local", data={**f2, "username": "admin", "password": otp}
        ) as r:
            assert r.status == 401
    reasons = [e.reason for e in await audit(b, "login")]
    assert "wrong_password" in reasons


async def test_login_with_a_live_session_goes_straight_to_rd(
    browser_session: aiohttp.ClientSession, broker: RunningBroker, oidc_server: OidcServer
) -> None:
    await login(browser_session, broker, oidc_server, "corp", "bob")
    async with browser_session.get(
        f"{broker.url}/login?rd=/session%3Fz%3D1", allow_redirects=False
    ) as r:
        assert r.status == 303
        assert r.headers["Location"] == "/session?z=1"
    async with browser_session.get(
        f"{broker.url}/login?rd=https://evil.test/", allow_redirects=False
    ) as r:
        assert r.headers["Location"] == "/session"
