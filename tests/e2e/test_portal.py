"""The ``/session`` portal in real Chromium: a local user switches role without signing out,
opens a role's "Command line access", takes its credentials and copies them with the copy
button (the clipboard read back equals the text shown). The portal's screenshots in
``docs/screenshots/`` are taken here, at 1280 and 390 px."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from aiohttp import web
from playwright.async_api import expect

from tests.conftest import RunningBroker, trust
from tests.e2e.test_browser_login import assert_png, assert_styled, submit
from tests.sts.conftest import RoleSpec, start_broker

if TYPE_CHECKING:
    from playwright.async_api import BrowserContext, Page

pytestmark = [pytest.mark.browser]

PASSWORD = "alice's long passphrase"
ALICE = trust("local", {"StringEquals": {"local:sub": "alice"}})
ROLES = {
    "developer": RoleSpec(ALICE),
    "reader": RoleSpec(ALICE),
    "admin": RoleSpec(trust("local", {"StringEquals": {"local:sub": "bob"}})),
}
SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[RunningBroker]:
    runners: list[web.AppRunner] = []
    b = await start_broker(tmp_path / "b", roles=ROLES, runners=runners)
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


async def shoot(page: Page, width: int) -> None:
    await page.set_viewport_size({"width": width, "height": 900})
    path = SHOTS / f"portal-{width}.png"
    assert_png(path, await page.screenshot(path=str(path), full_page=True))


async def test_switch_role_and_copy_command_line_credentials(
    broker: RunningBroker, context: BrowserContext, page: Page
) -> None:
    url = broker.url
    await context.grant_permissions(["clipboard-read", "clipboard-write"], origin=url)
    await page.goto(f"{url}/login/local")
    await page.fill("input[name=username]", "alice")
    await page.fill("input[name=password]", PASSWORD)
    await submit(page, "button[type=submit]", url)
    await page.wait_for_url(f"{url}/roles")
    await submit(page, "#role-developer", url)
    await page.wait_for_url(f"{url}/session")
    assert await page.inner_text("#role") == "developer"
    assert await page.is_visible("#mfa-link")  # a local user: the way to enrol a device
    assert not await page.is_visible("#portal-role-admin")  # only the roles alice may take

    # switch without signing out
    await submit(page, "#switch-reader", url)
    await page.wait_for_url(f"{url}/session")
    assert await page.inner_text("#role") == "reader"
    assert await page.is_visible("#current-reader")

    # command line access: closed until opened (a <details>), credentials only on the POST
    assert not await page.is_visible("#credentials-developer")
    await page.click("#cli-developer summary")
    profile = await page.inner_text("#profile-developer")
    assert profile == (
        f"[profile developer]\ncredential_process = broker credentials --role developer --url {url}"
    )
    await submit(page, "#credentials-developer", url)
    await page.wait_for_selector("#exports-developer")
    assert await page.is_visible("#exports-developer")  # the panel is open on the result
    shown = await page.inner_text("#exports-developer")
    assert shown.startswith("export AWS_ACCESS_KEY_ID=ASIA")
    assert "export AWS_DEFAULT_REGION=us-east-1" in shown
    # the expiry in the reader's local time (the script replaced the UTC text)
    assert "UTC" not in await page.inner_text("#credentials-expire")

    copy = page.locator("#exports-developer + button.copy")
    await copy.click()
    # the label changes once the clipboard write has resolved: wait for it, don't race it
    await expect(copy).to_have_text("Copied")
    assert await page.evaluate("navigator.clipboard.readText()") == shown
    copy_profile = page.locator("#profile-developer + button.copy")
    await copy_profile.click()
    await expect(copy_profile).to_have_text("Copied")
    assert await page.evaluate("navigator.clipboard.readText()") == profile

    await assert_styled(page)
    await shoot(page, 1280)
    await shoot(page, 390)
