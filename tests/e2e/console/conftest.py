"""The console in real Chromium, with two principals: ``ada`` signs in to ``console-admin``
(allowed every ``iam:`` and ``broker:`` action) and ``rex`` to ``console-reader`` (allowed only
the read-only ones), and ``pat`` to ``plain`` (no console permission at all).

``look`` takes a page's screenshots into ``docs/console/`` (1280 and 390 px, light and dark) and
runs axe-core over it; ``forced_post`` sends a crafted POST with the page's own CSRF token and
single-use value, as a read-only user forcing a write button the page does not show would."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from aiohttp import web

from tests.conftest import RunningBroker, trust
from tests.e2e.test_browser_login import submit
from tests.e2e.test_pages_look import axe_check
from tests.sts.conftest import RoleSpec, start_broker

if TYPE_CHECKING:
    from playwright.async_api import APIResponse, Browser, Page

SHOTS = Path(__file__).resolve().parents[3] / "docs" / "console"
PASSWORD = "a long console passphrase"
WIDE = {"width": 1280, "height": 800}
NARROW = {"width": 390, "height": 844}

ADMIN_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": ["iam:*", "broker:*"], "Resource": "*"}],
}
READ_ONLY_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": [
                "iam:Get*",
                "iam:List*",
                "iam:Generate*",
                "iam:Simulate*",
                "broker:List*",
                "broker:Lookup*",
                "broker:Get*",
            ],
            "Resource": "*",
        }
    ],
}
NOTHING_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}],
}
USERS = {"ada": "console-admin", "rex": "console-reader", "pat": "plain"}


def _local(user: str) -> dict[str, Any]:
    return trust("local", {"StringEquals": {"local:sub": user}})


ROLES = {
    "console-admin": RoleSpec(_local("ada"), policies=(ADMIN_POLICY,)),
    "console-reader": RoleSpec(_local("rex"), policies=(READ_ONLY_POLICY,)),
    "plain": RoleSpec(_local("pat"), policies=(NOTHING_POLICY,)),
}


@pytest.fixture
async def console_broker(tmp_path: Path) -> AsyncIterator[RunningBroker]:
    async for b in console_broker_with(tmp_path, ROLES):
        yield b


async def console_broker_with(
    tmp_path: Path, roles: Mapping[str, RoleSpec]
) -> AsyncIterator[RunningBroker]:
    """A broker with ``roles`` and every one of ``USERS`` as a local user (password set)."""
    runners: list[web.AppRunner] = []
    b = await start_broker(tmp_path / "b", roles=dict(roles), runners=runners)
    api = b.broker.iam_api
    for user in USERS:
        await api.call(api.root(), "CreateUser", {"UserName": user})
        await api.call(
            api.root(),
            "CreateLoginProfile",
            {"UserName": user, "Password": PASSWORD, "PasswordResetRequired": False},
        )
    yield b
    for r in reversed(runners):
        await r.cleanup()


async def sign_in(page: Page, url: str, user: str, *, to: str = "/console") -> None:
    """Sign ``user`` in with the local provider, into its role, and open ``to``."""
    await page.goto(f"{url}/login/local")
    await page.fill("input[name=username]", user)
    await page.fill("input[name=password]", PASSWORD)
    await submit(page, "button[type=submit]", url)
    # one role: straight to the session; several: the choice first
    await page.wait_for_url(lambda u: u.startswith((f"{url}/roles", f"{url}/session")))
    if page.url.startswith(f"{url}/roles"):
        await submit(page, f"#role-{USERS[user]}", url)
        await page.wait_for_url(f"{url}/session")
    assert await page.inner_text("#role") == USERS[user]
    await page.goto(f"{url}{to}")


async def look(page: Page, browser: Browser, axe: str, name: str) -> None:
    """Screenshots of the page as it is now into ``docs/console/`` and the axe check of it
    (no serious or critical violation, light and dark scheme); nothing wider than 390 px."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.wait_for_load_state("load")
    for viewport, scheme, suffix in (
        (WIDE, "light", "1280"),
        (NARROW, "light", "390"),
        (WIDE, "dark", "1280-dark"),
    ):
        await page.set_viewport_size(viewport)  # type: ignore[arg-type]
        await page.emulate_media(color_scheme=scheme)  # type: ignore[arg-type]
        await page.screenshot(path=str(SHOTS / f"{name}-{suffix}.png"), full_page=True)
        overflow = await page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"{name} at {suffix}: {overflow}px wider than the viewport"
    await page.set_viewport_size(WIDE)  # type: ignore[arg-type]
    await page.emulate_media(color_scheme="light")
    html = await page.content()
    problems = [
        *await axe_check(browser, axe, page.url, html, "light"),
        *await axe_check(browser, axe, page.url, html, "dark"),
    ]
    assert problems == [], f"accessibility of {name}:\n" + "\n".join(problems)


async def form_secrets(page: Page) -> dict[str, str]:
    """The CSRF token and single-use value of the page now shown (any of its console forms:
    not the navigation's sign-out form, whose token is for ``/logout``)."""
    csrf = await page.get_attribute("#console-main input[name=csrf]", "value")
    nonce = await page.get_attribute("#console-main input[name=nonce]", "value")
    assert csrf, "the page has no console form"
    assert nonce, "the page has no console form"
    return {"csrf": csrf, "nonce": nonce}


async def forced_post(page: Page, url: str, path: str, fields: Mapping[str, str]) -> APIResponse:
    """A POST the page's buttons would not send, with this page's own form secrets and the
    browser's cookies (what a read-only user crafting a request can do)."""
    secrets = await form_secrets(page)
    return await page.request.post(
        f"{url}{path}",
        form={**secrets, **fields},
        headers={"Origin": url},
        max_redirects=0,
    )
