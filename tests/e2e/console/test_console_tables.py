"""The console's tables in real Chromium with more rows than a page: "Next" on the users and
the access-keys tables, live filtering as one types (and the plain form without scripts), and
``/console/access-keys`` read in one go for a caller allowed only some users' keys (it sees
only theirs; the rest is counted and audited once per view, not once per user)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.async_api import expect

from tests.conftest import RunningBroker, trust
from tests.e2e.console.conftest import ROLES, USERS, console_broker_with, sign_in
from tests.sts.conftest import RoleSpec

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page

pytestmark = [pytest.mark.browser]

MANY = 60  # users u-000 ... u-059, each with an access key: two pages of 50


def arn_of(name: str) -> str:
    return f"arn:broker:iam::000000000000:user/{name}"


def _key_reader_policy() -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "iam:ListUsers", "Resource": "*"},
            {"Effect": "Allow", "Action": "iam:ListAccessKeys", "Resource": arn_of("team-*")},
            {"Effect": "Allow", "Action": "iam:GetAccessKeyLastUsed", "Resource": arn_of("team-a")},
        ],
    }


@pytest.fixture
async def tables_broker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[RunningBroker]:
    """The console broker, plus ``kim`` in ``key-reader`` (every user listed, only ``team-*``
    users' keys, only ``team-a``'s last use)."""
    roles = {
        **ROLES,
        "key-reader": RoleSpec(
            trust("local", {"StringEquals": {"local:sub": "kim"}}),
            policies=(_key_reader_policy(),),
        ),
    }
    monkeypatch.setitem(USERS, "kim", "key-reader")
    async for b in console_broker_with(tmp_path, roles):
        assert b.broker.settings.arn("user", "x") == arn_of("x")
        yield b


async def seed_many(b: RunningBroker) -> None:
    """``MANY`` users with a key each, through the IAM service (no HTTP: fast)."""
    api = b.broker.iam_api
    for i in range(MANY):
        name = f"u-{i:03d}"
        await api.call(api.root(), "CreateUser", {"UserName": name})
        await api.call(api.root(), "CreateAccessKey", {"UserName": name})


async def column(page: Page, table: str, n: int = 1) -> list[str]:
    cells: list[str] = await page.eval_on_selector_all(
        f"#{table} tbody tr td:nth-child({n})", "tds => tds.map(td => td.innerText.trim())"
    )
    return cells


async def test_next_pages_of_users_and_access_keys(
    tables_broker: RunningBroker, page: Page
) -> None:
    b = tables_broker
    url = b.url
    await seed_many(b)
    everyone = sorted(u.name for u in await b.broker.store.list_users())  # admin too
    assert len(everyone) > MANY

    await sign_in(page, url, "ada", to="/console/users")
    assert await column(page, "users-table") == everyone[:50]
    assert await page.inner_text("#users-count") == f"{len(everyone)} users, page 1 of 2"
    await page.click("#users-q-results a[rel=next]")
    await page.wait_for_url("**page=2**")
    assert await column(page, "users-table") == everyone[50:]
    assert await page.query_selector("#users-q-results a[rel=next]") is None

    await page.goto(f"{url}/console/access-keys")
    keyed = [f"u-{i:03d}" for i in range(MANY)]
    assert await column(page, "keys-table") == keyed[:50]
    assert await page.inner_text("#access-keys-count") == f"{MANY} access keys, page 1 of 2"
    await page.click("#keys-q-results a[rel=next]")
    await page.wait_for_url("**page=2**")
    assert await column(page, "keys-table") == keyed[50:]
    # sorted by key ID, descending, on the server: the same rows in the other order
    await page.click("#keys-table th >> text=Access key ID")
    await page.click("#keys-table th >> text=Access key ID")
    await page.wait_for_url("**desc=1**")
    ids = await column(page, "keys-table", 2)
    assert ids == sorted(ids, reverse=True)
    assert len(ids) == 50
    assert await b.broker.store.list_audit(action="iam.ListAccessKeys") == []


async def test_typing_filters_without_enter(tables_broker: RunningBroker, page: Page) -> None:
    b = tables_broker
    url = b.url
    await seed_many(b)
    await sign_in(page, url, "ada", to="/console/users?sort=created&desc=1")
    await page.evaluate("window.stillThisPage = true")
    await page.click("#users-q")
    await page.keyboard.type("u-05")
    status = page.locator("#users-q-status")
    await expect(status).to_have_text("10 users")
    assert await column(page, "users-table") == sorted(
        (f"u-{i:03d}" for i in range(50, 60)), reverse=True
    )  # created newest first: the sort kept
    # the same page (no reload), focus and caret still in the box, the address follows
    assert await page.evaluate("window.stillThisPage") is True
    assert await page.evaluate("document.activeElement.id") == "users-q"
    assert await page.evaluate("document.activeElement.selectionStart") == len("u-05")
    query = parse_qs(urlsplit(page.url).query)
    assert query == {"q": ["u-05"], "sort": ["created"], "desc": ["1"]}
    # more typing, none matching: the empty state, announced
    await page.keyboard.type("x")
    await expect(status).to_have_text("0 users")
    assert await page.is_visible("#users-no-match")
    assert parse_qs(urlsplit(page.url).query)["q"] == ["u-05x"]
    # cleared: every user again, page 1 (from page 2 the filter starts over)
    await page.goto(f"{url}/console/users?page=2")
    await page.fill("#users-q", "")
    await page.click("#users-q")
    await page.keyboard.type("ad")
    await expect(status).to_have_text("2 users")  # ada and admin
    assert await column(page, "users-table") == ["ada", "admin"]
    assert "page" not in parse_qs(urlsplit(page.url).query)


async def test_the_search_form_works_without_scripts(
    tables_broker: RunningBroker, browser: Browser
) -> None:
    b = tables_broker
    url = b.url
    await seed_many(b)
    context = await browser.new_context(java_script_enabled=False)
    try:
        page = await context.new_page()
        await sign_in(page, url, "ada", to="/console/access-keys")
        await page.fill("#keys-q", "u-01")
        await page.press("#keys-q", "Enter")
        await page.wait_for_url("**q=u-01**")
        assert await column(page, "keys-table") == [f"u-{i:03d}" for i in range(10, 20)]
        assert await page.inner_text("#access-keys-count") == "10 access keys"
    finally:
        await context.close()


async def test_access_keys_of_only_the_users_allowed(
    tables_broker: RunningBroker, page: Page
) -> None:
    b = tables_broker
    url = b.url
    api = b.broker.iam_api
    for name in ("team-a", "team-b", "other"):
        await api.call(api.root(), "CreateUser", {"UserName": name})
        await api.call(api.root(), "CreateAccessKey", {"UserName": name})
    await sign_in(page, url, "kim", to="/console/access-keys")
    assert await column(page, "keys-table") == ["team-a", "team-b"]
    last_used = await column(page, "keys-table", 5)
    assert last_used == ["never", "not shown (iam:GetAccessKeyLastUsed)"]
    # the other users (admin, ada, kim, other, ...) are counted, whether they have keys or not
    hidden = [u.name for u in await b.broker.store.list_users() if not u.name.startswith("team-")]
    assert "other" in hidden
    assert f"keys of {len(hidden)} user(s)" in await page.inner_text("#keys-partial")
    refused = await b.broker.store.list_audit(action="iam.ListAccessKeys")
    assert [(e.outcome, e.reason, e.principal.endswith("role/key-reader")) for e in refused] == [
        ("failure", "not_authorized:some_users", True)
    ]

    # a role that may not list users sees no key at all: refused, audited
    await sign_in(page, url, "pat", to="/console/access-keys")
    assert "other" not in await page.content()
    assert "team-a" not in await page.content()
    failures = await b.broker.store.list_audit(action="iam.ListUsers")
    assert [e.outcome for e in failures] == ["failure"]
