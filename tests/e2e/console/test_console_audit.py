"""``/console/audit``: the trail newest first with filters (outcome, principal) and paging over
more rows than a page holds; the chain's verification on top (OK, then BROKEN naming the row
after one is edited in the SQLite file behind the broker's back, as an operator with file access
could); the filtered CSV, with a formula-like cell quoted; the reader may look, a role without
``broker:LookupAuditEvents`` is refused (and the refusal is itself audited)."""

from __future__ import annotations

import csv
import io
import sqlite3
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

import pytest

from broker.service.audit import RequestInfo
from tests.conftest import RunningBroker
from tests.e2e.console.conftest import PASSWORD, look, sign_in
from tests.e2e.test_browser_login import submit

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page

pytestmark = [pytest.mark.browser]

SEEDED = 70


async def seed(b: RunningBroker) -> None:
    auditor = b.broker.auditor
    for n in range(SEEDED):
        await auditor.record(
            "seed.event",
            "failure" if n % 7 == 0 else "success",
            req=RequestInfo(request_id=f"req-{n:03d}", source_ip="192.0.2.7"),
            principal=f"corp/user{n % 5}",
            reason='=HYPERLINK("http://evil")' if n == 69 else f"reason {n}",
        )
    await auditor.flush()


async def rows(page: Page) -> list[dict[str, str]]:
    found: list[dict[str, str]] = await page.eval_on_selector_all(
        "#audit-events tbody tr",
        """rows => rows.map(r => ({id: r.dataset.id, principal: r.cells[1].innerText.trim(),
            action: r.cells[2].innerText.trim(), outcome: r.cells[3].innerText.trim()}))""",
    )
    return found


async def test_filters_paging_and_the_chain_status(
    console_broker: RunningBroker, page: Page, browser: Browser, axe_source: str
) -> None:
    url = console_broker.url
    # a failed sign-in, then the seeded events
    await page.goto(f"{url}/login/local")
    await page.fill("input[name=username]", "ada")
    await page.fill("input[name=password]", PASSWORD + "-wrong")
    await submit(page, "button[type=submit]", url)
    await seed(console_broker)
    await sign_in(page, url, "ada", to="/console/audit")
    assert "OK" in await page.inner_text("#audit-chain-status")
    assert "every row" in await page.inner_text("#audit-chain-scope")
    first = await rows(page)
    assert len(first) == 50
    ids = [int(r["id"]) for r in first]
    assert ids == sorted(ids, reverse=True)  # newest first
    assert await page.get_attribute("#audit-events time[data-local]", "datetime")
    await look(page, browser, axe_source, "audit")

    # the next page continues below the last row shown, with no overlap
    await page.click("#audit-older")
    second = await rows(page)
    assert second
    assert int(second[0]["id"]) < ids[-1]
    assert "page 2" in await page.inner_text("#audit-events-title")
    await page.click("#audit-newest")
    assert [int(r["id"]) for r in await rows(page)] == ids

    # outcome=failure: failures only, the failed sign-in among them
    await page.select_option("#f-outcome", "failure")
    await page.click("#audit-filter")
    failures = await rows(page)
    assert failures
    assert {r["outcome"] for r in failures} == {"failure"}
    assert any("login" in r["action"] for r in failures)
    assert parse_qs(urlsplit(page.url).query)["outcome"] == ["failure"]

    # and by principal (the outcome filter stays)
    await page.fill("#f-principal", "corp/user0")
    await page.click("#audit-filter")
    both = await rows(page)
    # seeded failures are n % 7 == 0; user0 is n % 5 == 0: n in 0, 35
    assert [r["principal"] for r in both] == ["corp/user0", "corp/user0"]
    assert await page.input_value("#f-principal") == "corp/user0"

    # more than a page of one principal: paging keeps the filter
    await page.goto(f"{url}/console/audit?action=seed.event")
    assert len(await rows(page)) == 50
    await page.click("#audit-older")
    rest = await rows(page)
    assert len(rest) == SEEDED - 50
    assert {r["action"] for r in rest} == {"seed.event"}
    assert not await page.is_visible("#audit-older")

    # an edited row is found and named
    await console_broker.broker.auditor.flush()
    db = console_broker.broker.settings.sqlite_path
    assert db is not None
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE audit_events SET principal = 'corp/mallory' WHERE id = 3")
    await page.goto(f"{url}/console/audit")
    assert "BROKEN" in await page.inner_text("#audit-chain-status")
    assert "row 3" in await page.inner_text("#audit-chain-status")
    assert "3" in await page.inner_text("#audit-chain-broken")
    await look(page, browser, axe_source, "audit-broken")


async def test_the_csv_is_filtered_and_safe(console_broker: RunningBroker, page: Page) -> None:
    url = console_broker.url
    await seed(console_broker)
    await sign_in(page, url, "ada", to="/console/audit?action=seed.event")
    async with page.expect_download() as info:
        await page.click("#audit-csv")
    download = await info.value
    path = await download.path()
    assert download.suggested_filename.startswith("audit-")
    text = path.read_text(encoding="utf-8")  # a small file
    table = list(csv.DictReader(io.StringIO(text, newline="")))
    assert len(table) == SEEDED
    assert {r["action"] for r in table} == {"seed.event"}
    evil = [r for r in table if "HYPERLINK" in r["reason"]]
    assert [r["reason"] for r in evil] == ['\'=HYPERLINK("http://evil")']
    # with an outcome filter
    resp = await page.request.get(f"{url}/console/audit.csv?outcome=failure&action=seed")
    assert resp.status == 200
    assert resp.headers["content-disposition"].startswith("attachment")
    assert resp.headers["cache-control"] == "no-store"
    got = list(csv.DictReader(io.StringIO(await resp.text())))
    assert len(got) == len([n for n in range(SEEDED) if n % 7 == 0])
    assert {r["outcome"] for r in got} == {"failure"}


async def test_the_reader_may_look_and_a_role_without_permission_is_refused(
    console_broker: RunningBroker, page: Page
) -> None:
    url = console_broker.url
    await sign_in(page, url, "rex", to="/console/audit")
    assert "OK" in await page.inner_text("#audit-chain-status")
    await page.context.clear_cookies()
    await sign_in(page, url, "pat", to="/console")
    for path in ("/console/audit", "/console/audit.csv"):
        resp = await page.request.get(f"{url}{path}")
        assert resp.status == 403, path
        assert "attachment" not in resp.headers.get("content-disposition", "")
    await console_broker.broker.auditor.flush()
    events = await console_broker.broker.store.list_audit(limit=20)
    refused = [
        e
        for e in events
        if e.action == "console.broker:LookupAuditEvents" and e.outcome == "failure"
    ]
    assert len(refused) == 2
    assert all("plain" in e.principal for e in refused)


async def test_long_trails_are_bounded_and_say_what_was_checked(
    console_broker: RunningBroker, page: Page, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A trail longer than the page verifies is checked for its newest rows only, and says so;
    a filter that matches rarely reads a bounded number of rows and offers to search on."""
    from broker.web.console import audit

    monkeypatch.setattr(audit, "FULL_VERIFY_ROWS", 40)
    monkeypatch.setattr(audit, "SCAN_BUDGET", 30)
    await seed(console_broker)
    url = console_broker.url
    await sign_in(page, url, "ada", to="/console/audit")
    assert "OK" in await page.inner_text("#audit-chain-status")
    assert "the newest 40 rows" in await page.inner_text("#audit-chain-scope")
    # a rare match: the first request stops at its budget, the link searches on
    await page.goto(f"{url}/console/audit?request_id=req-003")
    assert await page.is_visible("#audit-empty")
    assert await page.is_visible("#audit-searched")
    for _ in range(5):
        if await page.is_visible("#audit-events"):
            break
        await page.click("#audit-older")
    assert [r["principal"] for r in await rows(page)] == ["corp/user3"]
    # a row edited among the newest is found
    await console_broker.broker.auditor.flush()
    head = await console_broker.broker.store.audit_head()
    assert head is not None
    db = console_broker.broker.settings.sqlite_path
    assert db is not None
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE audit_events SET reason = 'edited' WHERE id = ?", (head.id - 5,))
    await page.goto(f"{url}/console/audit")
    assert "BROKEN" in await page.inner_text("#audit-chain-status")
    assert str(head.id - 5) in await page.inner_text("#audit-chain-broken")
