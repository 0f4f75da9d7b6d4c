"""Real Chromium through the broker's pages: sign in via a real OIDC provider or the local one.

The same flows as ``test_login_flow.py`` (which follows the forms with plain HTTP), driven here by
Debian's chromium through Playwright: the provider's login page, the role chooser, the session
page, sign-out, the local admin's first login with its one-time password, and ``?rd=``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.conftest import E2E_ROLES, BrokerFactory, RunningBroker
from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.support.oidc_server import OidcServer

if TYPE_CHECKING:
    from playwright.async_api import BrowserContext, Page

__all__ = ["CHROMIUM", "CHROMIUM_ARGS"]  # tests.forward_auth.test_proxies imports them here

pytestmark = [pytest.mark.browser, pytest.mark.oidc]

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
async def broker(broker_factory: BrokerFactory, oidc_server: OidcServer) -> RunningBroker:
    return await broker_factory(oidc=oidc_server)


async def provider_sign_in(page: Page, oidc: OidcServer, provider: str, user: str) -> None:
    """On the provider's login page: fill ``login``/``password`` and leave for the broker."""
    await page.wait_for_url(f"{oidc.issuers[provider]}/**")
    await page.fill("input[name=login]", user)
    await page.fill("input[name=password]", oidc.accounts[user])
    await page.click("button[type=submit]")


async def submit(page: Page, selector: str, broker_url: str) -> None:
    """Click a button that POSTs one of the broker's forms; the browser must send our Origin.

    The broker refuses a form POST whose ``Origin`` is not its own (``origin_mismatch``), so a
    page policy that makes Chromium send ``Origin: null`` (``Referrer-Policy: no-referrer`` does,
    per the Fetch standard) breaks every form: say so here rather than as a 403 page later.
    """
    async with page.expect_request(
        lambda r: r.method == "POST" and r.url.startswith(broker_url + "/")
    ) as posted:
        await page.click(selector)
    request = await posted.value
    origin = await request.header_value("origin")
    assert origin == broker_url, (
        f"Chromium sent Origin: {origin!r} for the form POST to {request.url}; the broker "
        f"expects {broker_url!r} (is the page served with Referrer-Policy: no-referrer?)"
    )


def assert_png(path: Path, data: bytes) -> None:
    assert data.startswith(PNG_MAGIC)
    assert path.stat().st_size == len(data) > 0
    assert path.read_bytes().startswith(PNG_MAGIC)


async def screenshot(page: Page, path: Path) -> None:
    """A full-page PNG of what a person sees, kept in the test's ``tmp_path``."""
    assert_png(path, await page.screenshot(path=str(path), full_page=True))


async def assert_styled(page: Page) -> None:
    """The stylesheet loaded under the CSP: ``main`` gets its white card background."""
    background = await page.eval_on_selector("main", "el => getComputedStyle(el).backgroundColor")
    assert background == "rgb(255, 255, 255)", background
    button_bg = await page.eval_on_selector(
        "button[type=submit], .button", "el => getComputedStyle(el).backgroundColor"
    )
    assert button_bg == "rgb(36, 87, 197)", button_bg  # #2457c5


async def test_alice_chooses_admin_then_signs_out(
    broker: RunningBroker,
    oidc_server: OidcServer,
    context: BrowserContext,
    page: Page,
    tmp_path: Path,
) -> None:
    await page.goto(f"{broker.url}/login")
    assert await page.title() == "Sign in · broker"
    await assert_styled(page)
    await page.click("#provider-corp")
    await provider_sign_in(page, oidc_server, "corp", "alice")

    # Two roles trust alice: the chooser, and no session yet.
    await page.wait_for_url(f"{broker.url}/roles")
    assert await page.title() == "Choose a role · broker"
    assert await page.is_visible("#role-admin")
    assert await page.is_visible("#role-dev")
    assert await page.locator("#role-viewer").count() == 0
    assert await page.locator("button[name=role]").count() == 2
    assert "Signed in as alice@example.com through corp." in await page.inner_text("main")
    assert "broker_session" not in {c["name"] for c in await context.cookies(broker.url)}
    await assert_styled(page)
    await screenshot(page, tmp_path / "roles.png")

    await submit(page, "#role-admin", broker.url)
    await page.wait_for_url(f"{broker.url}/session")
    assert await page.title() == "Your session · broker"
    assert await page.inner_text("#role") == "admin"
    assert await page.inner_text("#role-arn") == "arn:broker:iam::000000000000:role/admin"
    assert await page.inner_text("#provider") == "corp"
    assert await page.inner_text("#subject") == "alice"
    assert await page.inner_text("#email") == "alice@example.com"
    assert await page.inner_text("#groups") == "admins, dev"
    await assert_styled(page)
    await screenshot(page, tmp_path / "session.png")

    cookies = {c["name"]: c for c in await context.cookies(broker.url)}
    session = cookies["broker_session"]
    assert session["value"]
    assert session["httpOnly"] is True
    assert session["sameSite"] == "Lax"
    assert session["path"] == "/"
    assert session["secure"] is False  # plain http on loopback: no Secure, no __Host- prefix
    # the chooser's and the login's short-lived cookies are gone
    assert "broker_pending" not in cookies
    assert "broker_login" not in cookies
    # and scripts cannot read it
    assert "broker_session" not in await page.evaluate("document.cookie")

    await submit(page, "#logout", broker.url)
    await page.wait_for_selector("h1:has-text('Signed out')")
    assert page.url == f"{broker.url}/logout"
    assert "broker_session" not in {c["name"] for c in await context.cookies(broker.url)}

    await page.goto(f"{broker.url}/session")
    assert page.url.startswith(f"{broker.url}/login")
    assert await page.title() == "Sign in · broker"
    assert await page.is_visible("#provider-corp")


async def test_local_admin_first_run_sets_a_password(
    broker_factory: BrokerFactory, context: BrowserContext, page: Page
) -> None:
    b = await broker_factory(oidc=None, roles={"local-admin": E2E_ROLES["local-admin"]})
    otp = b.broker.bootstrap_password
    assert otp

    await page.goto(f"{b.url}/login/local")
    assert await page.title() == "Sign in · broker"
    await page.fill("input[name=username]", "admin")
    await page.fill("input[name=password]", otp)
    await submit(page, "button[type=submit]", b.url)

    await page.wait_for_url(f"{b.url}/password")
    assert await page.inner_text("h1") == "Set a new password"
    assert "broker_session" not in {c["name"] for c in await context.cookies(b.url)}
    await assert_styled(page)

    await page.fill("input[name=new_password]", "short")
    await page.fill("input[name=confirm]", "short")
    await submit(page, "button[type=submit]", b.url)
    error = page.locator("p.error[role=alert]")
    await error.wait_for()
    assert (await error.inner_text()).strip()
    assert await page.inner_text("h1") == "Set a new password"
    assert "broker_session" not in {c["name"] for c in await context.cookies(b.url)}

    new = "correct horse battery staple"
    await page.fill("input[name=new_password]", new)
    await page.fill("input[name=confirm]", new)
    await submit(page, "button[type=submit]", b.url)
    await page.wait_for_url(f"{b.url}/session")
    assert await page.inner_text("#role") == "local-admin"
    assert await page.inner_text("#provider") == "local"
    assert await page.inner_text("#subject") == "admin"
    cookies = {c["name"]: c for c in await context.cookies(b.url)}
    assert cookies["broker_session"]["httpOnly"] is True
    assert "broker_password" not in cookies


async def test_redirect_after_login_is_kept(
    broker: RunningBroker, oidc_server: OidcServer, page: Page
) -> None:
    await page.goto(f"{broker.url}/login/corp?rd=/session%3Fx%3D1")
    await provider_sign_in(page, oidc_server, "corp", "bob")
    await page.wait_for_url(f"{broker.url}/session?x=1")
    assert page.url == f"{broker.url}/session?x=1"
    assert await page.inner_text("#role") == "dev"
    assert await page.inner_text("#subject") == "bob"
    assert await page.inner_text("#email") == "bob@example.com"
    assert await page.inner_text("#groups") == "dev"


async def test_show_password_and_local_times_in_chromium(
    page: Page, broker_factory: BrokerFactory
) -> None:
    """The page script (issue 15 item 8) runs under the CSP: a show/hide button beside the
    password, and the session's end in the reader's locale and time zone."""
    b = await broker_factory(oidc=None, roles={"local-admin": E2E_ROLES["local-admin"]})
    otp = b.broker.bootstrap_password
    assert otp
    await page.goto(f"{b.url}/login")  # the only provider: its form at once
    password = page.locator("input[name=password]")
    toggle = page.get_by_role("button", name="Show password")
    await password.fill(otp)
    await toggle.click()
    assert await password.get_attribute("type") == "text"
    assert (
        await page.get_by_role("button", name="Hide password").get_attribute("aria-pressed")
        == "true"
    )
    await page.get_by_role("button", name="Hide password").click()
    assert await password.get_attribute("type") == "password"
    await page.fill("input[name=username]", "admin")
    await submit(page, "button[type=submit]", b.url)
    await page.wait_for_url(f"{b.url}/password")
    new = "a much better password"
    await page.fill("input[name=new_password]", new)
    await page.fill("input[name=confirm]", new)
    await submit(page, "button[type=submit]", b.url)
    await page.wait_for_url(f"{b.url}/session")
    shown = await page.inner_text("#expires time")
    assert "UTC" not in shown  # rewritten by the script into the reader's locale and zone
    assert shown
