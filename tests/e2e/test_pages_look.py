"""Every page people see, in real Chromium: full-page screenshots at 1280 and 390 px (and 390 px
in the dark scheme) written to ``docs/screenshots/<page>-<width>[-dark].png`` for people to look
at (docs/pages.md shows them), and an axe-core accessibility check of each page that fails on any
``serious`` or ``critical`` violation, in the light and the dark scheme.

The broker's CSP (``script-src 'self'``) rightly refuses the injected axe script, so the check
runs in a second browser context made with ``bypass_csp=True``, for the check only: the page's own
HTML (the body the broker sent, with its stylesheets and script from the real broker) is served
there at the same URL and axe runs over it after the page script. The pages people use, and the
screenshots, are the real ones under the strict CSP (the ``page`` fixture fails on a violation).

The pages also work without JavaScript: a local sign-in through the forms, script disabled.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyotp
import pytest
from aiohttp import web

from broker.clock import FrozenClock
from tests.conftest import E2E_ROLES, BrokerFactory, RunningBroker, trust
from tests.e2e.test_browser_login import provider_sign_in, submit
from tests.sts.conftest import RoleSpec, start_broker
from tests.support.oidc_server import OidcServer

if TYPE_CHECKING:
    from playwright.async_api import Browser, BrowserContext, Page, Response, Route

pytestmark = [pytest.mark.browser, pytest.mark.oidc]

SHOTS = Path(__file__).parents[2] / "docs" / "screenshots"
DOC = SHOTS.parent / "pages.md"
WIDE = {"width": 1280, "height": 800}
NARROW = {"width": 390, "height": 844}
BLOCKING = ("serious", "critical")
PASSWORD = "alice's long passphrase"
ROLES = {
    "admin": RoleSpec(E2E_ROLES["admin"]),
    "dev": RoleSpec(E2E_ROLES["dev"]),
    "plain": RoleSpec(trust("local", {"StringEquals": {"local:sub": "alice"}})),
}


class Looker:
    """Screenshots and the axe check of whatever the real page shows now."""

    def __init__(self, page: Page, browser: Browser, axe: str) -> None:
        self.page = page
        self.browser = browser
        self.axe = axe
        self.document: Response | None = None
        self.taken: list[str] = []
        page.on("response", self._on_response)

    def _on_response(self, response: Response) -> None:
        if response.request.resource_type == "document" and response.frame == self.page.main_frame:
            self.document = response

    async def look(self, name: str) -> None:
        page = self.page
        SHOTS.mkdir(parents=True, exist_ok=True)
        await page.wait_for_load_state("load")
        for viewport, scheme, suffix in (
            (WIDE, "light", "1280"),
            (NARROW, "light", "390"),
            (NARROW, "dark", "390-dark"),
        ):
            await page.set_viewport_size(viewport)  # type: ignore[arg-type]
            await page.emulate_media(color_scheme=scheme)  # type: ignore[arg-type]
            await page.screenshot(path=str(SHOTS / f"{name}-{suffix}.png"), full_page=True)
            # nothing wider than the viewport: no sideways scrolling at 390 px
            overflow = await page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 0, f"{name} at {suffix}: {overflow}px wider than the viewport"
        await page.set_viewport_size(WIDE)  # type: ignore[arg-type]
        await page.emulate_media(color_scheme="light")
        problems = [*await self._axe(name, "light"), *await self._axe(name, "dark")]
        assert problems == [], f"accessibility of {name}:\n" + "\n".join(problems)
        self.taken.append(name)

    async def _axe(self, name: str, scheme: str) -> list[str]:
        """axe over the page's HTML in a CSP-free context (see the module docstring)."""
        assert self.document is not None
        html = await self.document.text()
        return await axe_check(self.browser, self.axe, self.page.url, html, scheme)


async def axe_check(
    browser: Browser,
    axe: str,
    url: str,
    html: str,
    scheme: str,
    impacts: tuple[str, ...] = BLOCKING,
) -> list[str]:
    """The axe violations of ``impacts`` of ``html`` served at ``url``, one readable entry each."""
    ctx = await browser.new_context(
        bypass_csp=True,
        color_scheme=scheme,  # type: ignore[arg-type]
        viewport=WIDE,  # type: ignore[arg-type]
    )
    try:

        async def serve(route: Route) -> None:
            await route.fulfill(status=200, content_type="text/html", body=html)

        await ctx.route(lambda u: u == url, serve)
        check = await ctx.new_page()
        await check.goto(url)
        await check.wait_for_load_state("load")
        await check.add_script_tag(content=axe)
        result: dict[str, Any] = await check.evaluate(
            "axe.run(document, {resultTypes: ['violations']})"
        )
    finally:
        await ctx.close()
    return [
        f"  [{scheme}] {v['impact']} {v['id']}: {v['help']}"
        + "".join(f"\n      {' '.join(n['target'])}: {n['failureSummary']}" for n in v["nodes"])
        for v in result["violations"]
        if v["impact"] in impacts
    ]


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(time.time())


@pytest.fixture
async def broker(
    tmp_path: Path, oidc_server: OidcServer, clock: FrozenClock
) -> AsyncIterator[RunningBroker]:
    """corp and partner (the real oidc-provider) and the local provider with alice, who must
    set her own password first."""
    runners: list[web.AppRunner] = []
    b = await start_broker(
        tmp_path / "b", oidc=oidc_server, roles=ROLES, clock=clock, runners=runners
    )
    api = b.broker.iam_api
    await api.call(api.root(), "CreateUser", {"UserName": "alice"})
    await api.call(
        api.root(),
        "CreateLoginProfile",
        {"UserName": "alice", "Password": PASSWORD, "PasswordResetRequired": True},
    )
    yield b
    for r in reversed(runners):
        await r.cleanup()


async def local_sign_in(page: Page, url: str, password: str) -> None:
    await page.goto(f"{url}/login/local")
    await page.fill("input[name=username]", "alice")
    await page.fill("input[name=password]", password)
    await submit(page, "button[type=submit]", url)


async def test_every_page_looks_right_and_passes_axe(
    broker: RunningBroker,
    oidc_server: OidcServer,
    clock: FrozenClock,
    browser: Browser,
    context: BrowserContext,
    page: Page,
    axe_source: str,
) -> None:
    url = broker.url
    looker = Looker(page, browser, axe_source)
    look = looker.look

    await page.goto(f"{url}/login")
    assert await page.is_visible("#provider-corp")
    await look("login")
    await page.goto(f"{url}/login/local")
    await look("login-local")
    await local_sign_in(page, url, "not her password")
    await page.locator("p.error[role=alert]").wait_for()
    await look("login-local-error")

    # first sign-in: her own password first
    await local_sign_in(page, url, PASSWORD)
    await page.wait_for_url(f"{url}/password")
    await look("password")
    await page.fill("input[name=new_password]", "short")
    await page.fill("input[name=confirm]", "short")
    await submit(page, "button[type=submit]", url)
    await page.locator("p.error[role=alert]").wait_for()
    await look("password-error")
    new = "a much better passphrase"
    await page.fill("input[name=new_password]", new)
    await page.fill("input[name=confirm]", new)
    await submit(page, "button[type=submit]", url)
    await page.wait_for_url(f"{url}/session")
    await look("session-local")

    # MFA: enrolment, enabled, then the code step of the next sign-in
    await page.click("#mfa-link")
    await page.wait_for_url(f"{url}/mfa")
    await look("mfa")
    otp = pyotp.TOTP((await page.inner_text("#secret")).strip())
    await page.fill("#code1", otp.at(clock.now() - 30))
    await page.fill("#code2", otp.at(clock.now()))
    await submit(page, "#enable", url)
    await page.wait_for_selector("#mfa-status")
    await look("mfa-enabled")

    # sign-out: the confirmation, then signed out
    await page.goto(f"{url}/logout")
    await look("logout")
    await page.goto(f"{url}/session")
    await submit(page, "#logout", url)
    await page.wait_for_selector("h1:has-text('Signed out')")
    await look("logout-done")
    await page.goto(f"{url}/logout")
    await look("logout-not-signed-in")

    await local_sign_in(page, url, new)
    await page.wait_for_url(f"{url}/mfa/verify")
    await look("mfa-verify")
    clock.advance(30)
    await broker.broker.poll_revocations()
    good = otp.at(clock.now())
    await page.fill("#code", f"{(int(good) + 1) % 1_000_000:06d}")
    await submit(page, "#verify", url)
    await page.locator("p.error[role=alert]").wait_for()
    await look("mfa-verify-error")
    await page.fill("#code", good)
    await submit(page, "#verify", url)
    await page.wait_for_url(f"{url}/session")

    # a stale sign-out tab: 401
    await page.goto(f"{url}/logout")
    other = await context.new_page()
    await other.goto(f"{url}/logout")
    await submit(other, "#logout", url)
    await other.close()
    async with page.expect_navigation() as nav:
        await submit(page, "#logout", url)
    assert (await nav.value).status == 401
    await look("error-401")

    # federated: carol has no role (403); alice of corp chooses one of two
    await page.goto(f"{url}/login")
    await page.click("#provider-partner")
    await provider_sign_in(page, oidc_server, "partner", "carol")
    await page.wait_for_url(f"{url}/**")
    await page.wait_for_selector("h1")
    assert looker.document is not None
    assert looker.document.status == 403
    await look("error-403")
    await page.goto(f"{url}/login/corp")
    await provider_sign_in(page, oidc_server, "corp", "alice")
    await page.wait_for_url(f"{url}/roles")
    await look("roles")
    await submit(page, "#role-admin", url)
    await page.wait_for_url(f"{url}/session")
    await look("session")

    # the CLI's device sign-in: the code entry, and an unknown code
    await page.goto(f"{url}/device")
    await look("device")
    await page.fill("#user_code", "ABCD-EFGH")
    await submit(page, "#continue", url)
    await page.locator("p.error[role=alert]").wait_for()
    await look("device-error")

    response = await page.goto(f"{url}/no/such/page")
    assert response is not None
    assert response.status == 404
    await look("error-404")
    response = await page.goto(f"{url}/callback/corp?state=forged&code=forged")
    assert response is not None
    assert response.status == 400
    await look("error-400")

    # docs/pages.md shows only screenshots these tests write
    shown = set(
        re.findall(r"\(screenshots/([a-z0-9-]+)-(?:1280|390|390-dark)\.png\)", DOC.read_text())
    )
    assert shown, "docs/pages.md shows no screenshot"
    assert shown <= {*looker.taken, "login-local-only"}, shown - set(looker.taken)


async def test_local_only_login_shows_the_form_and_passes_axe(
    broker_factory: BrokerFactory, browser: Browser, page: Page, axe_source: str
) -> None:
    """``/login`` with the local provider only: its form at once; and focus outlines."""
    b = await broker_factory(oidc=None, roles={"local-admin": E2E_ROLES["local-admin"]})
    looker = Looker(page, browser, axe_source)
    await page.goto(f"{b.url}/login")
    assert await page.is_visible("input[name=password]")
    await looker.look("login-local-only")

    # keyboard users see where they are: each control reached with Tab has a visible outline
    # the form asks for focus on its first field; start from there explicitly (a reload's
    # autofocus is not applied reliably when the browser is busy)
    assert await page.get_attribute("input[name=username]", "autofocus") is not None
    await page.reload()
    await page.focus("input[name=username]")
    reached = []
    for _ in range(3):
        await page.keyboard.press("Tab")
        tag, style, width = await page.evaluate(
            "() => { const e = document.activeElement, s = getComputedStyle(e);"
            " return [e.tagName + (e.name ? '[' + e.name + ']' : ''), s.outlineStyle,"
            " parseFloat(s.outlineWidth)]; }"
        )
        assert style == "solid", (tag, style)
        assert width >= 2, (tag, width)
        reached.append(tag)
    assert reached == ["INPUT[password]", "BUTTON", "BUTTON"], reached  # Show, Sign in


async def test_signing_in_works_without_javascript(
    broker_factory: BrokerFactory, browser: Browser
) -> None:
    """The local sign-in, the first-login password and the session page, script disabled."""
    b = await broker_factory(oidc=None, roles={"local-admin": E2E_ROLES["local-admin"]})
    otp = b.broker.bootstrap_password
    assert otp
    ctx = await browser.new_context(java_script_enabled=False)
    try:
        page = await ctx.new_page()
        await page.goto(f"{b.url}/login")
        assert await page.locator("button", has_text="Show").count() == 0  # no script ran
        await page.fill("input[name=username]", "admin")
        await page.fill("input[name=password]", otp)
        await submit(page, "button[type=submit]", b.url)
        await page.wait_for_url(f"{b.url}/password")
        new = "a much better passphrase"
        await page.fill("input[name=new_password]", new)
        await page.fill("input[name=confirm]", new)
        await submit(page, "button[type=submit]", b.url)
        await page.wait_for_url(f"{b.url}/session")
        assert await page.inner_text("#role") == "local-admin"
        assert "UTC" in await page.inner_text("#expires time")  # the server's rendering
        await submit(page, "#logout", b.url)
        await page.wait_for_selector("h1:has-text('Signed out')")
    finally:
        await ctx.close()


async def test_the_axe_check_catches_what_it_must(
    broker_factory: BrokerFactory, browser: Browser, axe_source: str
) -> None:
    """Not a check that passes everything: an unlabelled input, a nameless button and low
    contrast, under the broker's own stylesheet, are reported by rule and element."""
    b = await broker_factory(oidc=None, roles={"local-admin": E2E_ROLES["local-admin"]})
    html = (
        '<!doctype html><html lang="en"><head><title>bad</title>'
        '<link rel="stylesheet" href="/static/broker.css"></head><body><main><h1>Bad</h1>'
        '<form><input id="nolabel"><button id="noname"></button></form>'
        '<p class="faint">faint</p></main></body></html>'
    ).replace('class="faint"', 'style="color:#ccc"')
    problems = "\n".join(await axe_check(browser, axe_source, f"{b.url}/bad", html, "light"))
    for expected in ("critical label", "#nolabel", "critical button-name", "#noname"):
        assert expected in problems, problems
    assert "serious color-contrast" in problems, problems
