"""Fixtures of the real-browser tests: Debian's chromium through Playwright (never
``playwright install``), one browser per test, and a page that fails the test on script
errors, CSP violations or a missing subresource."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.async_api import Browser, BrowserContext, ConsoleMessage, Page, Response

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
def chromium_executable() -> str:
    """Debian's chromium (never ``playwright install``): skip where it is not installed."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not installed")
    return CHROMIUM


@pytest.fixture
async def browser(chromium_executable: str) -> AsyncIterator[Browser]:
    """One headless chromium per test (async fixtures share the test's function-scoped loop)."""
    playwright_api = pytest.importorskip("playwright.async_api")
    async with playwright_api.async_playwright() as pw:
        chromium = await pw.chromium.launch(
            executable_path=chromium_executable, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.fixture
async def context(
    browser: Browser, request: pytest.FixtureRequest
) -> AsyncIterator[BrowserContext]:
    """The test's browser context; ``@pytest.mark.browser_context(timezone_id=...)`` (any
    ``Browser.new_context`` option) sets it up as another reader's browser would be."""
    marker = request.node.get_closest_marker("browser_context")
    ctx = await browser.new_context(**(marker.kwargs if marker else {}))
    ctx.set_default_timeout(15_000)
    try:
        yield ctx
    finally:
        await ctx.close()


@pytest.fixture
async def page(context: BrowserContext) -> AsyncIterator[Page]:
    """A page that fails the test on script errors, CSP violations or a missing subresource.

    Failed *documents* are the tests' business (a 400 form page is expected); the favicon
    neither the broker nor the provider serves is not.
    """
    p = await context.new_page()
    problems: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        # "Failed to load resource" duplicates the response check below, favicon included
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            problems.append(message.text)

    def on_response(response: Response) -> None:
        request = response.request
        if (
            response.status >= 400
            and request.resource_type != "document"
            and not request.url.endswith("/favicon.ico")
        ):
            problems.append(f"{response.status} {request.url}")

    p.on("console", on_console)
    p.on("pageerror", lambda e: problems.append(str(e)))
    p.on("response", on_response)
    yield p
    assert problems == [], problems


AXE_JS = Path(__file__).parents[1] / "oidc" / "node_modules" / "axe-core" / "axe.min.js"


@pytest.fixture(scope="module")
def axe_source() -> str:
    """axe-core, pinned in tests/oidc/package.json (``npm ci --prefix tests/oidc`` installs it)."""
    if not AXE_JS.exists():
        pytest.skip(f"{AXE_JS} missing: run `npm ci --prefix tests/oidc`")
    return AXE_JS.read_text()


#: a reader's zone for the tests of ``<time data-local>`` (UTC+9, no daylight saving time)
TOKYO = {"timezone_id": "Asia/Tokyo", "locale": "en-US"}


def in_tokyo(iso: str, shown: str) -> None:
    """``shown`` is the ``<time datetime=iso>`` in Tokyo's time (en-US: "Dec 6, 2026, 5:48 AM"),
    not the server's UTC text."""
    t = datetime.fromisoformat(iso).astimezone(timezone(timedelta(hours=9)))
    assert "UTC" not in shown, shown
    assert f"{t:%b} {t.day}, {t.year}" in shown, (iso, shown)
    assert f"{t.hour % 12 or 12}:{t:%M}" in shown, (iso, shown)
    assert ("PM" if t.hour >= 12 else "AM") in shown, (iso, shown)
