"""``/console/reports``: the credentials report and the unused-access report.

- The credentials report is IAM's: ``iam:GenerateCredentialReport`` (a report is built in the
  background and reused for four hours) then ``iam:GetCredentialReport``; the page previews it
  as a table (server-side search, sort and paging) and ``/console/reports/credentials.csv``
  downloads the CSV as the API gives it (AWS's 22 columns, formula-like cells already quoted).
- The unused-access report is ``broker report unused --days N`` (``UnusedAccess``), authorized
  as ``broker:GetUnusedAccessReport`` on ``*``; the page shows the first ``PREVIEW`` findings
  and ``/console/reports/unused.csv?days=N`` streams all of them as they are found.

Neither blocks the event loop for long: the credentials report is built in the background and
decompressed and parsed in a worker thread; the unused report reads the store a page at a time.
"""

from __future__ import annotations

import asyncio
import csv
import io
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from broker.errors import BrokerError, IamReportInProgress, InvalidRequest
from broker.service.credential_report import HEADER
from broker.service.credential_report import text as cell
from broker.service.unused import Finding, UnusedAccess
from broker.web.console.audit import start_download
from broker.web.console.base import Column, Console, console, table

UNUSED_ACTION = "broker:GetUnusedAccessReport"
DEFAULT_DAYS = 90
MAX_DAYS = 3650
PREVIEW = 200  # unused findings shown on the page (the CSV has them all)
WAIT = 5.0  # how long a request waits for a report being generated
POLL = 0.2

#: the credentials report's columns the preview shows (the CSV has all 22)
PREVIEW_COLUMNS = (
    Column("user", "User"),
    Column("user_creation_time", "Created"),
    Column("password_enabled", "Password"),
    Column("password_last_used", "Password last used"),
    Column("mfa_active", "MFA"),
    Column("access_key_1_active", "Key 1 active"),
    Column("access_key_1_last_used_date", "Key 1 last used"),
    Column("access_key_2_active", "Key 2 active"),
    Column("access_key_2_last_used_date", "Key 2 last used"),
)


@dataclass(frozen=True)
class Credentials:
    content: bytes
    generated_at: float


async def credentials(c: Console) -> Credentials:
    """The current credentials report, generating one first if there is none fresh; waits a
    little for a generation in progress (``IamReportInProgress`` if it takes longer)."""
    await c.call("GenerateCredentialReport")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while True:
        try:
            got = await c.call("GetCredentialReport")
        except IamReportInProgress:
            if loop.time() >= deadline:
                raise
            await asyncio.sleep(POLL)
            continue
        return Credentials(bytes(got["Content"]), float(got["GeneratedTime"]))


def _parse(content: bytes) -> list[dict[str, str]]:
    reader = csv.DictReader(io.StringIO(content.decode("utf-8")))
    return [dict(r) for r in reader]


def days_of(raw: str | None) -> tuple[int, str]:
    """The report's window in days (default 90) and a problem with what was typed, if any."""
    if raw is None or raw.strip() == "":
        return DEFAULT_DAYS, ""
    try:
        days = int(raw.strip())
    except ValueError:
        return DEFAULT_DAYS, f"Days: {raw[:20]!r} is not a whole number; showing {DEFAULT_DAYS}."
    if not 1 <= days <= MAX_DAYS:
        return DEFAULT_DAYS, f"Days: between 1 and {MAX_DAYS}; showing {DEFAULT_DAYS}."
    return days, ""


def _iso(t: float | None) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds") if t is not None else ""


async def reports_page(request: web.Request) -> web.StreamResponse:
    c = await console(request)
    days, days_problem = days_of(request.query.get("days"))
    refused = 0
    # the credentials report (IAM's own actions: refusals audited by the API)
    cred_error = ""
    cred_table = None
    generated_at: float | None = None
    try:
        report = await credentials(c)
        rows = await asyncio.to_thread(_parse, report.content)
        generated_at = report.generated_at
        cred_table = table(
            request,
            rows,
            PREVIEW_COLUMNS,
            search=lambda r: f"{r.get('user', '')} {r.get('arn', '')}",
            default_sort="user",
            extra={"days": str(days)} if days != DEFAULT_DAYS else {},
        )
    except BrokerError as e:
        refused += e.status == 403
        cred_error = e.public_message
    # the unused-access report
    unused_error = ""
    findings: list[Finding] = []
    more = False
    try:
        await c.authorize(UNUSED_ACTION, "*")
        review = UnusedAccess(c.broker.settings, c.broker.store, c.broker.clock)
        async for f in review.findings(days):
            if len(findings) >= PREVIEW:
                more = True
                break
            findings.append(f)
    except BrokerError as e:
        refused += e.status == 403
        unused_error = e.public_message
    if refused == 2:  # nothing here the caller may see
        return await c.page(
            "console/reports.html",
            section="reports",
            status=403,
            error="You are not allowed to see the reports "
            "(iam:GenerateCredentialReport, iam:GetCredentialReport, "
            f"{UNUSED_ACTION}).",
            **_empty(days),
        )
    return await c.page(
        "console/reports.html",
        section="reports",
        cred_table=cred_table,
        cred_error=cred_error,
        generated_at=generated_at,
        columns=len(HEADER),
        days=days,
        days_problem=days_problem,
        unused_error=unused_error,
        findings=findings,
        more=more,
        preview=PREVIEW,
        denied=False,
    )


def _empty(days: int) -> dict[str, Any]:
    return {
        "cred_table": None,
        "cred_error": "",
        "generated_at": None,
        "columns": len(HEADER),
        "days": days,
        "days_problem": "",
        "unused_error": "",
        "findings": [],
        "more": False,
        "preview": PREVIEW,
        "denied": True,
    }


def _attachment(name: str) -> dict[str, str]:
    return {
        "Content-Type": "text/csv; charset=utf-8",
        "Content-Disposition": f'attachment; filename="{name}"',
        "Cache-Control": "no-store",
    }


async def credentials_csv(request: web.Request) -> web.StreamResponse:
    c = await console(request)
    report = await credentials(c)
    stamp = datetime.fromtimestamp(report.generated_at, UTC).strftime("%Y%m%dT%H%M%SZ")
    return web.Response(body=report.content, headers=_attachment(f"credentials-{stamp}.csv"))


UNUSED_HEADER = ("kind", "name", "arn", "reason", "created_at", "last_used")


def _unused_line(f: Finding) -> bytes:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(
        [f.kind, cell(f.name), cell(f.arn), cell(f.reason), _iso(f.created_at), _iso(f.last_used)]
    )
    return buf.getvalue().encode()


async def unused_csv(request: web.Request) -> web.StreamResponse:
    c = await console(request)
    await c.authorize(UNUSED_ACTION, "*")
    days, problem = days_of(request.query.get("days"))
    if problem:
        raise InvalidRequest(
            "bad_days", public_message=f"days: a whole number from 1 to {MAX_DAYS}."
        )
    review = UnusedAccess(c.broker.settings, c.broker.store, c.broker.clock)
    resp = web.StreamResponse(headers=_attachment(f"unused-{days}-days.csv"))
    await start_download(request, resp)
    await resp.write(",".join(UNUSED_HEADER).encode() + b"\n")
    lines: list[bytes] = []
    async for f in review.findings(days):
        lines.append(_unused_line(f))
        if len(lines) >= 500:
            await resp.write(b"".join(lines))
            lines = []
    if lines:
        await resp.write(b"".join(lines))
    await resp.write_eof()
    return resp


ROUTES = (
    ("GET", "/console/reports", reports_page),
    ("GET", "/console/reports/credentials.csv", credentials_csv),
    ("GET", "/console/reports/unused.csv", unused_csv),
)
