"""``/console/reports``: the credentials report (IAM's Generate/GetCredentialReport) previewed and
downloaded as CSV with AWS's 22 columns; the unused-access report for N days shows a role nobody
used and downloads as CSV; the reader may see both; a role allowed neither is refused 403 on the
page and on both downloads (each refusal audited)."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from typing import TYPE_CHECKING

import pytest

from broker.service.credential_report import HEADER
from tests.conftest import RunningBroker, trust
from tests.e2e.console.conftest import look, sign_in

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page

pytestmark = [pytest.mark.browser]

DAY = 86400


async def dormant_role(b: RunningBroker) -> None:
    """A role created 200 days ago (edited in the store: the broker's clock is the real one)
    that nobody has assumed since."""
    api = b.broker.iam_api

    await api.call(
        api.root(),
        "CreateRole",
        {
            "RoleName": "dormant",
            "AssumeRolePolicyDocument": json.dumps(trust("local", {})),
        },
    )
    db = b.broker.settings.sqlite_path
    assert db is not None
    with sqlite3.connect(db) as conn:
        conn.execute(
            "UPDATE roles SET created_at = created_at - ? WHERE name = 'dormant'", (200 * DAY,)
        )


async def test_credentials_and_unused_reports(
    console_broker: RunningBroker, page: Page, browser: Browser, axe_source: str
) -> None:
    url = console_broker.url
    await dormant_role(console_broker)
    await sign_in(page, url, "ada", to="/console/reports")
    # the preview: one row per user (and the account root)
    users = await page.eval_on_selector_all(
        "#cred-table tbody th[scope=row]", "els => els.map(e => e.innerText.trim())"
    )
    assert {"ada", "rex", "pat", "<root_account>"} <= set(users)
    # the unused report, default 90 days: the dormant role is in it
    assert await page.input_value("#unused-days") == "90"
    unused = await page.inner_text("#unused-table")
    assert "dormant" in unused
    assert await page.is_visible("#unused-table tr[data-kind=role]")
    await look(page, browser, axe_source, "reports")

    # the credentials CSV: an attachment with AWS's columns
    async with page.expect_download() as info:
        await page.click("#cred-csv")
    download = await info.value
    assert download.suggested_filename.startswith("credentials-")
    text = (await download.path()).read_text(encoding="utf-8")
    rows = list(csv.reader(io.StringIO(text)))
    assert tuple(rows[0]) == HEADER
    assert len(rows[0]) == 22
    assert {"ada", "rex", "pat"} <= {r[0] for r in rows[1:]}
    resp = await page.request.get(f"{url}/console/reports/credentials.csv")
    assert resp.headers["content-disposition"].startswith("attachment")

    # a window longer than the role's life: it has not had the window to be used in
    await page.fill("#unused-days", "300")
    await page.click("#unused-run")
    assert "days=300" in page.url
    assert "dormant" not in await page.inner_text("main")
    resp = await page.request.get(f"{url}/console/reports/unused.csv?days=30")
    assert resp.status == 200
    assert resp.headers["content-disposition"].startswith("attachment")
    found = list(csv.DictReader(io.StringIO(await resp.text())))
    assert any(r["kind"] == "role" and r["name"] == "dormant" for r in found)
    bad = await page.request.get(f"{url}/console/reports/unused.csv?days=0")
    assert bad.status == 400


async def test_the_reader_may_see_reports_and_a_role_without_permission_is_refused(
    console_broker: RunningBroker, page: Page
) -> None:
    url = console_broker.url
    await sign_in(page, url, "rex", to="/console/reports")
    assert await page.is_visible("#cred-table")
    assert await page.is_visible("#unused-days")
    await page.context.clear_cookies()
    await sign_in(page, url, "pat", to="/console")
    for path in (
        "/console/reports",
        "/console/reports/credentials.csv",
        "/console/reports/unused.csv?days=90",
    ):
        resp = await page.request.get(f"{url}{path}")
        assert resp.status == 403, path
        assert "attachment" not in resp.headers.get("content-disposition", "")
    await console_broker.broker.auditor.flush()
    events = await console_broker.broker.store.list_audit(limit=30)
    refused = {
        e.action for e in events if e.outcome in ("failure", "denied") and "plain" in e.principal
    }
    assert "console.broker:GetUnusedAccessReport" in refused
    assert any("CredentialReport" in a for a in refused), refused
