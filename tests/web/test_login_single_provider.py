"""``GET /login`` with one OpenID Connect provider and no local one: no page with a single button,
but a 302 to that provider's login start, ``/login/<provider>``, with ``rd`` and ``role`` kept
and checked there as they always are (so an ``rd`` off the allowed domains still ends at the
broker, and a bad ``role`` is a 400 that starts nothing). The sign-in runs to its end through
the real oidc-provider."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import aiohttp
import pytest
from aiohttp import web

from broker.config import load_settings
from broker.web.app import create_app
from tests.conftest import E2E_ROLES, RunningBroker, write_config
from tests.support.login_driver import follow_login
from tests.support.oidc_server import OidcServer, free_port

pytestmark = pytest.mark.oidc


@pytest.fixture
async def one_provider(tmp_path: Path, oidc_server: OidcServer) -> AsyncIterator[RunningBroker]:
    """corp only: the local provider write_config adds is taken out."""
    port = free_port()
    corp = "\n".join(
        [
            "[providers.corp]",
            f'issuer = "{oidc_server.issuers["corp"]}"',
            f'client_id = "{oidc_server.client_id}"',
            f'client_secret = "{oidc_server.client_secret}"',
        ]
    )
    roles = {r: E2E_ROLES[r] for r in ("admin", "dev")}
    path = write_config(tmp_path, port=port, oidc=None, roles=roles, extra=corp)
    text = path.read_text()
    path.write_text(text.replace('[providers.local]\ntype = "local"\n', ""))
    settings = load_settings(path)
    assert list(settings.providers) == ["corp"]
    runner = web.AppRunner(create_app(settings))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield RunningBroker(f"http://127.0.0.1:{port}", settings, runner.app, runner)
    finally:
        await runner.cleanup()


@pytest.fixture
async def browser() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        yield s


async def location_of(browser: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with browser.get(url, allow_redirects=False) as r:
        return r.status, r.headers.get("Location", "")


async def sign_in(
    b: RunningBroker, oidc: OidcServer, browser: aiohttp.ClientSession, query: str
) -> str:
    """From ``/login<query>`` through the provider as alice; the broker URL it ends at."""
    result = await follow_login(
        browser,
        f"{b.url}/login{query}",
        username="alice",
        password=oidc.accounts["alice"],
        provider_origins=[oidc.issuers["corp"]],
    )
    assert result.status == 200, result.text
    for step in result.chain:  # never anywhere but the broker and the provider
        assert urlsplit(step.url).hostname == "127.0.0.1", step.url
    return result.url


async def test_login_goes_straight_to_the_one_provider(
    one_provider: RunningBroker, browser: aiohttp.ClientSession
) -> None:
    assert await location_of(browser, f"{one_provider.url}/login") == (302, "/login/corp")
    async with browser.get(f"{one_provider.url}/login/corp", allow_redirects=False) as r:
        assert r.status == 302  # and from there to the provider's authorization endpoint
        assert r.headers["Location"].startswith(one_provider.settings.providers["corp"].issuer)


async def test_rd_and_role_are_kept_through_the_sign_in(
    one_provider: RunningBroker, oidc_server: OidcServer, browser: aiohttp.ClientSession
) -> None:
    b = one_provider
    query = "?" + urlencode({"rd": f"{b.url}/session?from=app", "role": "dev"})
    assert await location_of(browser, f"{b.url}/login{query}") == (302, f"/login/corp{query}")
    # alice may take admin and dev: role=dev skips the chooser, rd is where she lands
    assert await sign_in(b, oidc_server, browser, query) == f"{b.url}/session?from=app"
    async with browser.get(f"{b.url}/session", headers={"Accept": "application/json"}) as r:
        assert (await r.json())["role"] == "arn:broker:iam::000000000000:role/dev"


@pytest.mark.parametrize(
    "rd",
    ["https://evil.test/steal", "//evil.test/steal", "https://app.example.com.evil.test/"],
    ids=["other-domain", "scheme-relative", "suffix-trick"],
)
async def test_an_rd_off_the_allowed_domains_is_not_followed(
    one_provider: RunningBroker,
    oidc_server: OidcServer,
    browser: aiohttp.ClientSession,
    rd: str,
) -> None:
    """The redirect itself only ever goes to the broker's own path; the ``rd`` it carries is
    checked at the login start as before, and the sign-in ends at the broker."""
    b = one_provider
    query = "?" + urlencode({"rd": rd, "role": "admin"})
    status, location = await location_of(browser, f"{b.url}/login{query}")
    assert status == 302
    assert location == f"/login/corp{query}"
    assert await sign_in(b, oidc_server, browser, query) == f"{b.url}/session"


async def test_a_bad_role_is_refused_at_the_start_and_starts_nothing(
    one_provider: RunningBroker, browser: aiohttp.ClientSession
) -> None:
    b = one_provider
    query = "?" + urlencode({"role": "../admin"})
    assert await location_of(browser, f"{b.url}/login{query}") == (302, f"/login/corp{query}")
    async with browser.get(f"{b.url}/login{query}") as r:
        assert r.status == 400
        assert "Invalid role name." in await r.text()
    await b.broker.auditor.flush()
    starts = await b.broker.store.list_audit(limit=50, action="login.start")
    assert starts == []


async def test_a_live_session_with_rd_still_goes_on_to_rd(
    one_provider: RunningBroker, oidc_server: OidcServer, browser: aiohttp.ClientSession
) -> None:
    """Forward-auth's 401 sends a browser whose token expired here: with its session still
    live it goes on to ``rd`` at once, not through the provider again."""
    b = one_provider
    await sign_in(b, oidc_server, browser, "?" + urlencode({"role": "admin"}))
    rd = "https://app.example.com/dashboards"
    status, location = await location_of(browser, f"{b.url}/login?" + urlencode({"rd": rd}))
    assert (status, location) == (303, rd)
