"""The test OpenID Connect providers work, without the broker: discovery, code + PKCE, ID token.

A tiny relying party (an aiohttp app on a fixed loopback port) is the redirect target. ``corp``
(RS256) registers its exact redirect URI and consents automatically; ``partner`` (ES256) is a
"native" client (any loopback port) with a consent form, so both interaction paths are covered.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, quote_plus, urlencode, urlsplit

import aiohttp
import jwt
import pytest
from aiohttp import web

from tests.support.login_driver import follow_login, origin
from tests.support.oidc_server import OidcServer, default_config, free_port, start_oidc_server

pytestmark = pytest.mark.oidc

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def rp_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def oidc(rp_port: int) -> Iterator[OidcServer]:
    config = default_config(
        {
            "corp": [f"http://127.0.0.1:{rp_port}/callback/corp"],
            "partner": ["http://127.0.0.1/callback/partner"],
        },
        consent={"partner": "form"},
    )
    config["providers"][1]["clients"][0]["application_type"] = "native"
    with start_oidc_server(config) as server:
        yield server


@dataclass
class TinyRp:
    base: str
    callbacks: list[dict[str, str]] = field(default_factory=list)

    def redirect_uri(self, provider: str) -> str:
        return f"{self.base}/callback/{provider}"


@pytest.fixture
async def rp(rp_port: int) -> AsyncIterator[TinyRp]:
    tiny = TinyRp(base=f"http://127.0.0.1:{rp_port}")

    async def callback(request: web.Request) -> web.Response:
        params = dict(request.query)
        tiny.callbacks.append(params)
        return web.json_response({"provider": request.match_info["provider"], **params})

    app = web.Application()
    app.router.add_get("/callback/{provider}", callback)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", rp_port)
    await site.start()
    try:
        yield tiny
    finally:
        await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        yield s


async def discovery(session: aiohttp.ClientSession, issuer: str) -> dict[str, Any]:
    async with session.get(issuer + "/.well-known/openid-configuration") as resp:
        assert resp.status == 200
        doc: dict[str, Any] = await resp.json()
        return doc


def client_auth(oidc: OidcServer) -> dict[str, str]:
    """client_secret_basic: both parts form-urlencoded first (RFC 6749 section 2.3.1)."""
    pair = f"{quote_plus(oidc.client_id)}:{quote_plus(oidc.client_secret)}"
    return {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode()}


@dataclass
class AuthRequest:
    url: str
    state: str
    nonce: str
    verifier: str
    redirect_uri: str


def authorization_request(
    doc: dict[str, Any], client_id: str, redirect_uri: str, *, pkce: bool = True
) -> AuthRequest:
    state, nonce = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    verifier = secrets.token_urlsafe(48)  # RFC 7636: 43..128 characters
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": "openid email profile",
        "state": state,
        "nonce": nonce,
    }
    if pkce:
        digest = hashlib.sha256(verifier.encode()).digest()
        params["code_challenge"] = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        params["code_challenge_method"] = "S256"
    url = f"{doc['authorization_endpoint']}?{urlencode(params)}"
    return AuthRequest(url, state, nonce, verifier, redirect_uri)


async def redeem(
    session: aiohttp.ClientSession,
    doc: dict[str, Any],
    oidc: OidcServer,
    req: AuthRequest,
    code: str,
) -> dict[str, Any]:
    async with session.post(
        doc["token_endpoint"],
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": req.redirect_uri,
            "code_verifier": req.verifier,
        },
        headers=client_auth(oidc),
    ) as resp:
        body: dict[str, Any] = await resp.json()
        assert resp.status == 200, body
        return body


async def verify_id_token(
    session: aiohttp.ClientSession, doc: dict[str, Any], client_id: str, token: str, alg: str
) -> dict[str, Any]:
    async with session.get(doc["jwks_uri"]) as resp:
        jwks = jwt.PyJWKSet.from_dict(await resp.json())
    header = jwt.get_unverified_header(token)
    assert header["alg"] == alg
    key = next(k for k in jwks.keys if k.key_id == header["kid"])
    claims: dict[str, Any] = jwt.decode(
        token, key, algorithms=[alg], audience=client_id, issuer=doc["issuer"]
    )
    return claims


async def test_discovery(oidc: OidcServer, session: aiohttp.ClientSession) -> None:
    assert set(oidc.issuers) == {"corp", "partner"}
    assert len(set(oidc.issuers.values())) == 2
    for name, issuer in oidc.issuers.items():
        doc = await discovery(session, issuer)
        assert doc["issuer"] == issuer, name
        assert "S256" in doc["code_challenge_methods_supported"]
        assert doc["authorization_response_iss_parameter_supported"] is True
        assert "client_secret_basic" in doc["token_endpoint_auth_methods_supported"]
        async with session.get(doc["jwks_uri"]) as resp:
            jwks = await resp.json()
        assert jwks["keys"], name
        assert all("d" not in key for key in jwks["keys"]), "private key material published"


@pytest.mark.parametrize(
    ("provider", "username", "alg"),
    [("corp", "alice", "RS256"), ("partner", "bob", "ES256")],
)
async def test_code_flow_with_pkce(
    oidc: OidcServer,
    rp: TinyRp,
    session: aiohttp.ClientSession,
    provider: str,
    username: str,
    alg: str,
) -> None:
    issuer = oidc.issuers[provider]
    doc = await discovery(session, issuer)
    req = authorization_request(doc, oidc.client_id, rp.redirect_uri(provider))

    result = await follow_login(
        session,
        req.url,
        username=username,
        password=oidc.accounts[username],
        provider_origins=[issuer],
    )

    assert result.left_provider, result.text
    assert result.status == 200
    assert result.url.startswith(req.redirect_uri + "?")
    assert not result.login_failed
    methods = [step.method for step in result.chain]
    assert methods[0] == "GET"
    assert "POST" in methods
    if provider == "partner":  # the consent form was submitted too
        assert sum(1 for step in result.chain if step.method == "POST") == 2
    query = {k: v[0] for k, v in parse_qs(urlsplit(result.url).query).items()}
    assert json.loads(result.text)["code"] == query["code"]
    assert query["state"] == req.state
    assert query["iss"] == issuer  # RFC 9207

    tokens = await redeem(session, doc, oidc, req, query["code"])
    assert tokens["token_type"].lower() == "bearer"
    claims = await verify_id_token(session, doc, oidc.client_id, tokens["id_token"], alg)
    expected = oidc.claims(username)
    assert claims["sub"] == username
    assert claims["nonce"] == req.nonce
    assert claims["email"] == expected["email"]
    assert claims["email_verified"] is expected["email_verified"]
    assert claims["groups"] == expected["groups"]
    assert claims["hd"] == expected["hd"]
    assert claims["name"] == expected["name"]

    # The code is single-use.
    async with session.post(
        doc["token_endpoint"],
        data={
            "grant_type": "authorization_code",
            "code": query["code"],
            "redirect_uri": req.redirect_uri,
            "code_verifier": req.verifier,
        },
        headers=client_auth(oidc),
    ) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"] == "invalid_grant"

    # A second login in the same session reuses the provider session: no form this time.
    again = authorization_request(doc, oidc.client_id, rp.redirect_uri(provider))
    second = await follow_login(
        session, again.url, username=username, password="unused", provider_origins=[issuer]
    )
    assert second.left_provider
    assert not second.submitted_login


async def test_carol_has_empty_groups(
    oidc: OidcServer, rp: TinyRp, session: aiohttp.ClientSession
) -> None:
    doc = await discovery(session, oidc.issuers["corp"])
    req = authorization_request(doc, oidc.client_id, rp.redirect_uri("corp"))
    result = await follow_login(
        session,
        req.url,
        username="carol",
        password=oidc.accounts["carol"],
        provider_origins=[oidc.issuers["corp"]],
        stop_at_rp=True,
    )
    assert result.left_provider
    assert result.status == 303
    assert result.url.startswith(req.redirect_uri + "?")
    assert rp.callbacks == []  # stop_at_rp: the callback URL was not requested
    code = parse_qs(urlsplit(result.url).query)["code"][0]
    tokens = await redeem(session, doc, oidc, req, code)
    claims = await verify_id_token(session, doc, oidc.client_id, tokens["id_token"], "RS256")
    assert claims["groups"] == []
    assert claims["hd"] == "other.test"
    assert claims["email_verified"] is False


async def test_wrong_password_stays_on_login_form(
    oidc: OidcServer, rp: TinyRp, session: aiohttp.ClientSession
) -> None:
    issuer = oidc.issuers["corp"]
    doc = await discovery(session, issuer)
    req = authorization_request(doc, oidc.client_id, rp.redirect_uri("corp"))
    result = await follow_login(session, req.url, username="alice", password="wrong")
    assert result.login_failed
    assert not result.left_provider
    assert origin(result.url) == origin(issuer)
    assert "Invalid username or password" in result.text
    assert rp.callbacks == []


async def test_pkce_is_required(
    oidc: OidcServer, rp: TinyRp, session: aiohttp.ClientSession
) -> None:
    doc = await discovery(session, oidc.issuers["corp"])
    req = authorization_request(doc, oidc.client_id, rp.redirect_uri("corp"), pkce=False)
    result = await follow_login(session, req.url, username="alice", password="unused")
    assert result.left_provider
    query = parse_qs(urlsplit(result.url).query)
    assert query["error"] == ["invalid_request"]
    assert "PKCE" in query["error_description"][0]


async def test_unregistered_redirect_uri_is_refused(
    oidc: OidcServer, session: aiohttp.ClientSession, rp_port: int
) -> None:
    doc = await discovery(session, oidc.issuers["corp"])
    req = authorization_request(doc, oidc.client_id, f"http://127.0.0.1:{rp_port}/elsewhere")
    result = await follow_login(
        session,
        req.url,
        username="alice",
        password="unused",
        provider_origins=oidc.issuers.values(),
    )
    assert not result.left_provider
    assert result.status == 400
    assert "redirect_uri" in result.text


@pytest.mark.browser
async def test_chromium_logs_in(oidc: OidcServer, rp: TinyRp) -> None:
    playwright_api = pytest.importorskip("playwright.async_api")
    doc_session = aiohttp.ClientSession()
    async with doc_session:
        doc = await discovery(doc_session, oidc.issuers["corp"])
    req = authorization_request(doc, oidc.client_id, rp.redirect_uri("corp"))

    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            page = await browser.new_page()
            await page.goto(req.url)
            await page.fill("input[name=login]", "alice")
            await page.fill("input[name=password]", "wrong")
            await page.click("button[type=submit]")
            await page.wait_for_selector("#error")
            assert page.url.startswith(oidc.issuers["corp"])
            await page.fill("input[name=login]", "alice")
            await page.fill("input[name=password]", oidc.accounts["alice"])
            async with page.expect_navigation(url=f"{req.redirect_uri}?*"):
                await page.click("button[type=submit]")
            landed = page.url
            body = json.loads(await page.inner_text("body"))
        finally:
            await browser.close()

    query = {k: v[0] for k, v in parse_qs(urlsplit(landed).query).items()}
    assert query["state"] == req.state
    assert query["iss"] == oidc.issuers["corp"]
    assert body["code"] == query["code"]
    assert rp.callbacks[-1]["code"] == query["code"]
