"""Real nginx and real Caddy in front of an upstream app, with the broker and the real
oidc-provider: the configs of docs/nginx.md and docs/caddy.md, end to end."""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import jwt
import pytest
from aiohttp import web
from yarl import URL

from tests.conftest import RunningBroker
from tests.forward_auth.conftest import BrokerStarter, allow, deny, policy
from tests.proxies import run
from tests.proxies.upstream import make_app
from tests.support.login_driver import follow_login, parse_forms
from tests.support.oidc_server import OidcServer, free_port

pytestmark = pytest.mark.oidc

BINARIES = {"nginx": "nginx", "caddy": "caddy"}


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


@pytest.fixture(params=["nginx", "caddy"])
def proxy_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    binary = BINARIES[kind]
    if shutil.which(binary) is None and not Path(f"/usr/sbin/{binary}").exists():
        pytest.skip(f"{binary} is not installed (scripts/test installs the Debian package)")
    return kind


@pytest.fixture
def stack_cm(proxy_kind: str) -> Any:
    return run.nginx if proxy_kind == "nginx" else run.caddy


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
    with cm as proxy:
        yield Stack(proxy, b, oidc_server)


@pytest.fixture
async def browser() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        yield s


def upstream_headers(echo: dict[str, Any], name: str) -> list[str]:
    return [v for k, v in echo["headers"] if k.lower() == name.lower()]


async def sign_in(s: aiohttp.ClientSession, st: Stack, original: str) -> Any:
    """Anonymous -> the proxy redirects to the broker's login -> corp -> back to ``original``."""
    async with s.get(original, allow_redirects=False) as r:
        assert r.status == 302, (r.status, await r.text(), st.proxy.logs())
        login = r.headers["Location"]
    assert login == f"{st.broker.url}/login?rd=" + quote(original, safe="")
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
            assert r.status == 302
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
        assert r.status == 302
    async with browser.get(stack.app + "/reports/1", allow_redirects=False) as r:
        assert r.status == 302
        assert r.headers["Location"].startswith(stack.broker.url + "/login?rd=")


def test_proxy_configs_are_valid_when_rendered(tmp_path: Path) -> None:
    """A cheap check that the templates render without leftover placeholders."""
    text = run.render(
        run.NGINX_SITE,
        {"listen": "80", "server_name": "a", "broker": "http://b", "upstream": "http://c"},
    )
    assert "{{" not in text
