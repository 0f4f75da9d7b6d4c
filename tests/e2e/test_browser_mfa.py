"""MFA in real Chromium: a local user enrols a virtual device from the session page (the QR code
inline under the CSP; the secret read from the page, codes computed with ``pyotp``), signs out,
and signs in with password + code; a wrong code, a replayed code and a code of a previous
(removed and deleted) device are refused; the pending code step is bound to the browser and
used once. The broker runs on a frozen clock, moved a TOTP step at a time."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pyotp
import pytest
from aiohttp import web

from broker.clock import FrozenClock
from tests.conftest import RunningBroker, trust
from tests.e2e.test_browser_login import assert_styled, screenshot, submit
from tests.sts.conftest import RoleSpec, start_broker

if TYPE_CHECKING:
    from playwright.async_api import Browser, BrowserContext, Page

pytestmark = [pytest.mark.browser]

PASSWORD = "alice's long passphrase"
ROLES = {
    "plain": RoleSpec(trust("local", {"StringEquals": {"local:sub": "alice"}})),
    # only with MFA: the login's trust evaluation sees aws:MultiFactorAuthPresent
    "secure": RoleSpec(
        trust(
            "local",
            {
                "StringEquals": {"local:sub": "alice"},
                "Bool": {"aws:MultiFactorAuthPresent": "true"},
            },
        )
    ),
}


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(time.time())


@pytest.fixture
async def broker(tmp_path: Path, clock: FrozenClock) -> AsyncIterator[RunningBroker]:
    runners: list[web.AppRunner] = []
    b = await start_broker(tmp_path / "b", roles=ROLES, clock=clock, runners=runners)
    api = b.broker.iam_api
    await api.call(api.root(), "CreateUser", {"UserName": "alice"})
    await api.call(
        api.root(),
        "CreateLoginProfile",
        {"UserName": "alice", "Password": PASSWORD, "PasswordResetRequired": False},
    )
    yield b
    for r in reversed(runners):
        await r.cleanup()


async def next_step(b: RunningBroker, clock: FrozenClock) -> None:
    """The next TOTP step on the broker's clock (its revocation state polled at once)."""
    clock.advance(30)
    await b.broker.poll_revocations()


async def sign_in_password(page: Page, url: str) -> None:
    await page.goto(f"{url}/login/local")
    await page.fill("input[name=username]", "alice")
    await page.fill("input[name=password]", PASSWORD)
    await submit(page, "button[type=submit]", url)


async def enter_code(page: Page, url: str, code: str) -> None:
    await page.fill("#code", code)
    await submit(page, "#verify", url)


async def enrol(page: Page, url: str, clock: FrozenClock, tmp_path: Path) -> pyotp.TOTP:
    """From the session page: the QR code and secret, then two consecutive codes."""
    await page.goto(f"{url}/session")
    await page.click("#mfa-link")
    await page.wait_for_url(f"{url}/mfa")
    assert await page.locator("#qr svg").count() == 1
    await assert_styled(page)
    await screenshot(page, tmp_path / "enrol.png")
    otp = pyotp.TOTP((await page.inner_text("#secret")).strip())
    now = clock.now()
    await page.fill("#code1", otp.at(now - 30))
    await page.fill("#code2", otp.at(now))
    await submit(page, "#enable", url)
    await page.wait_for_url(f"{url}/mfa")
    assert await page.is_visible("#mfa-status")
    return otp


async def sign_out(page: Page, url: str) -> None:
    await page.goto(f"{url}/session")
    await submit(page, "#logout", url)
    await page.wait_for_selector('h1:has-text("Signed out")')


async def test_enrol_then_sign_in_with_a_code(
    broker: RunningBroker,
    clock: FrozenClock,
    browser: Browser,
    context: BrowserContext,
    page: Page,
    tmp_path: Path,
) -> None:
    url = broker.url
    await sign_in_password(page, url)
    await page.wait_for_url(f"{url}/session")  # no device yet: no code asked, one role
    assert await page.inner_text("#role") == "plain"
    assert await page.inner_text("#mfa") == "no"

    # a reload of the enrolment page shows a new secret; the first device is gone
    await page.goto(f"{url}/mfa")
    first_secret = (await page.inner_text("#secret")).strip()
    otp = await enrol(page, url, clock, tmp_path)
    assert otp.secret != first_secret
    devices = await broker.broker.store.list_mfa_devices()
    assert len(devices) == 1
    enrol_code = otp.at(clock.now())
    await sign_out(page, url)

    # the password is not enough any more
    await sign_in_password(page, url)
    await page.wait_for_url(f"{url}/mfa/verify")
    assert "broker_session" not in {c["name"] for c in await context.cookies(url)}
    await assert_styled(page)
    await next_step(broker, clock)
    good = otp.at(clock.now())
    wrong = f"{(int(good) + 1) % 1_000_000:06d}"
    for bad in (wrong, enrol_code):  # wrong; replayed (the enrolment's own last code)
        await enter_code(page, url, bad)
        await page.locator("p.error[role=alert]").wait_for()
        assert page.url == f"{url}/mfa/verify"
        assert "broker_session" not in {c["name"] for c in await context.cookies(url)}

    # the pending step cannot be taken to another browser
    stolen = [c for c in await context.cookies(url) if c["name"] == "broker_mfa"]
    assert stolen
    other = await browser.new_context()
    try:
        await other.add_cookies(stolen)  # type: ignore[arg-type]
        thief = await other.new_page()
        resp = await thief.goto(f"{url}/mfa/verify")
        assert resp is not None
        assert resp.status == 400
        assert "broker_session" not in {c["name"] for c in await other.cookies(url)}
    finally:
        await other.close()

    await enter_code(page, url, good)
    await page.wait_for_url(f"{url}/roles")  # with MFA, the MFA-only role is offered too
    assert await page.is_visible("#role-secure")
    await submit(page, "#role-secure", url)
    await page.wait_for_url(f"{url}/session")
    assert await page.inner_text("#role") == "secure"
    assert await page.inner_text("#mfa") == "yes"
    cookies = {c["name"] for c in await context.cookies(url)}
    assert "broker_mfa" not in cookies

    # the step was used: it cannot be replayed, not even from this browser
    resp = await page.goto(f"{url}/mfa/verify")
    assert resp is not None
    assert resp.status == 400
    # and the code just used does not sign in again
    await sign_out(page, url)
    await sign_in_password(page, url)
    await page.wait_for_url(f"{url}/mfa/verify")
    await enter_code(page, url, good)
    await page.locator("p.error[role=alert]").wait_for()
    await next_step(broker, clock)
    await enter_code(page, url, otp.at(clock.now()))
    await page.wait_for_url(f"{url}/roles")

    events = await broker.broker.store.list_audit(limit=500)
    reasons = {e.reason for e in events if e.outcome == "failure"}
    assert "mfa_code_wrong_or_used" in reasons
    assert "mfa_ticket_unknown_used_expired_or_other_browser" in reasons


async def test_a_previous_devices_codes_are_refused(
    broker: RunningBroker, clock: FrozenClock, context: BrowserContext, page: Page, tmp_path: Path
) -> None:
    url = broker.url
    await sign_in_password(page, url)
    await page.wait_for_url(f"{url}/session")
    old = await enrol(page, url, clock, tmp_path)

    # removing it takes a current code of it
    await next_step(broker, clock)
    await page.fill("#remove-code", "000000" if old.at(clock.now()) != "000000" else "111111")
    await submit(page, "#remove", url)
    await page.locator("p.error[role=alert]").wait_for()
    assert await page.is_visible("#mfa-status")
    await page.fill("#remove-code", old.at(clock.now()))
    await submit(page, "#remove", url)
    await page.wait_for_url(f"{url}/mfa")
    assert await page.locator("#qr svg").count() == 1  # enrolling anew
    assert [d.user_id for d in await broker.broker.store.list_mfa_devices()] == [None]

    await next_step(broker, clock)
    new = await enrol(page, url, clock, tmp_path)
    assert new.secret != old.secret
    await sign_out(page, url)

    await sign_in_password(page, url)
    await page.wait_for_url(f"{url}/mfa/verify")
    await next_step(broker, clock)
    await enter_code(page, url, old.at(clock.now()))  # the old device's code
    await page.locator("p.error[role=alert]").wait_for()
    assert page.url == f"{url}/mfa/verify"
    await enter_code(page, url, new.at(clock.now()))
    await page.wait_for_url(f"{url}/roles")
