"""``/console``: signed out → sign in first; the overview shows only the sections the caller's
policies allow; a role with no console permission sees a clear empty state, not a broken page."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.conftest import RunningBroker
from tests.e2e.console.conftest import look, sign_in

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page

pytestmark = [pytest.mark.browser]

ALL = [
    "users",
    "access-keys",
    "groups",
    "roles",
    "policies",
    "providers",
    "simulator",
    "audit",
    "reports",
]


async def nav(page: Page) -> list[str]:
    ids = await page.eval_on_selector_all(".console-nav li a[id]", "els => els.map(e => e.id)")
    return [i.removeprefix("nav-") for i in ids]


async def test_signed_out_is_sent_to_sign_in(console_broker: RunningBroker, page: Page) -> None:
    url = console_broker.url
    await page.goto(f"{url}/console?tab=a")
    assert page.url.startswith(f"{url}/login?")
    assert parse_qs(urlsplit(page.url).query)["rd"] == ["/console?tab=a"]


async def test_admin_sees_every_section(
    console_broker: RunningBroker, page: Page, browser: Browser, axe_source: str
) -> None:
    url = console_broker.url
    await sign_in(page, url, "ada")
    assert await nav(page) == ALL
    assert await page.inner_text("#console-role") == "console-admin"
    counts = await page.inner_text(".console-counts")
    assert "Users" in counts
    assert "Roles" in counts
    await look(page, browser, axe_source, "overview")


async def test_a_role_without_console_permissions_sees_an_empty_state(
    console_broker: RunningBroker, page: Page, browser: Browser, axe_source: str
) -> None:
    url = console_broker.url
    await sign_in(page, url, "pat")
    assert await nav(page) == []
    assert await page.is_visible("#console-nothing")
    assert not await page.is_visible(".console-counts")
    await look(page, browser, axe_source, "overview-nothing")
