"""``/console/audit``: the audit trail, newest first, filtered and paged on the server, with the
hash chain's verification status on top; ``/console/audit.csv``: the filtered rows as CSV.

Both are authorized as ``broker:LookupAuditEvents`` on ``*`` (IAM has no action for the broker's
own trail; a refusal is audited by :meth:`Console.authorize`).

Paging: the store offers the rows by id (``Store.audit_chain(after_id=, limit=)``, the index the
chain verification reads), so a page is found by reading backwards from a cursor (``before``:
the id the next page starts below) a chunk at a time, keeping the rows that match the filters.
A request reads at most ``SCAN_BUDGET`` rows: when a filter matches rarely, the page says how
far back it searched and links to search on from there, instead of reading the whole trail.

Verification: the same check as ``broker audit verify`` (every row's hash, the links between
them, the signed checkpoints) when the trail has at most ``FULL_VERIFY_ROWS`` rows. A longer
trail is checked for its newest ``FULL_VERIFY_ROWS`` rows only (their hashes and links, and the
checkpoints that fall among them), and the page says so: the full check is
``broker audit verify``, which an operator runs (or schedules) outside the request path.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from broker.domain import audit_chain
from broker.domain.audit_chain import ChainRow, Checkpoint
from broker.service.container import Broker
from broker.service.credential_report import text as cell
from broker.web.console.base import PER_PAGE, console
from broker.web.pages import apply_refreshed_cookie
from broker.web.render import SECURITY_HEADERS

ACTION = "broker:LookupAuditEvents"
OUTCOMES = ("success", "failure", "denied")
CHUNK = 1000  # rows read per store round trip
SCAN_BUDGET = 10_000  # rows read at most for one page
CSV_BUDGET = 200_000  # rows read at most for one CSV
CSV_MAX_ROWS = 50_000  # rows written at most to one CSV
FULL_VERIFY_ROWS = 10_000  # ~0.3 s of reading and hashing
MAX_FILTER = 256
SKEW = 3600.0  # rows are in time order only roughly (instances' clocks): read this far past since


@dataclass(frozen=True)
class Filters:
    principal: str = ""
    action: str = ""
    outcome: str = ""
    since: str = ""  # YYYY-MM-DD (UTC), as typed in the date field
    until: str = ""
    request_id: str = ""
    since_t: float | None = None
    until_t: float | None = None  # exclusive: the start of the day after ``until``
    problems: tuple[str, ...] = ()

    def query(self) -> dict[str, str]:
        values = {
            "principal": self.principal,
            "action": self.action,
            "outcome": self.outcome,
            "since": self.since,
            "until": self.until,
            "request_id": self.request_id,
        }
        return {k: v for k, v in values.items() if v}

    @property
    def any(self) -> bool:
        return bool(self.query())

    def matches(self, row: ChainRow) -> bool:
        if self.outcome and row.outcome != self.outcome:
            return False
        if self.request_id and row.request_id != self.request_id:
            return False
        if self.principal and self.principal.casefold() not in row.principal.casefold():
            return False
        if self.action and self.action.casefold() not in row.action.casefold():
            return False
        if self.since_t is not None and row.time < self.since_t:
            return False
        return self.until_t is None or row.time < self.until_t


def _day(raw: str, what: str, problems: list[str]) -> tuple[str, float | None]:
    raw = raw.strip()[:32]
    if not raw:
        return "", None
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        problems.append(f"{what}: not a date (YYYY-MM-DD); ignored.")
        return "", None
    return raw, datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()


def filters_of(query: Mapping[str, str]) -> Filters:
    """The filters of the query string; bad ones are ignored with a note (a list never fails)."""
    problems: list[str] = []
    outcome = query.get("outcome", "")
    if outcome and outcome not in OUTCOMES:
        problems.append("outcome: choose success, failure or denied; ignored.")
        outcome = ""
    since, since_t = _day(query.get("since", ""), "since", problems)
    until, until_t = _day(query.get("until", ""), "until", problems)
    if until_t is not None:
        until_t += timedelta(days=1).total_seconds()
    return Filters(
        principal=query.get("principal", "").strip()[:MAX_FILTER],
        action=query.get("action", "").strip()[:MAX_FILTER],
        outcome=outcome,
        since=since,
        until=until,
        request_id=query.get("request_id", "").strip()[:MAX_FILTER],
        since_t=since_t,
        until_t=until_t,
        problems=tuple(problems),
    )


def _cursor(raw: str | None) -> int | None:
    try:
        value = int(raw) if raw else None
    except ValueError:
        return None
    return value if value is not None and value > 0 else None


async def scan(
    b: Broker, f: Filters, *, before: int | None, budget: int
) -> AsyncIterator[tuple[ChainRow | None, int]]:
    """Matching rows newest first, starting below ``before``; yields (row, lowest id read so
    far). Stops after ``budget`` rows read, or at the oldest row, or (with ``since``) once the
    rows are well older than it; then yields (None, lowest id read)."""
    head = await b.store.audit_head()
    upper = (head.id if head else 0) if before is None else before - 1
    read = 0
    lowest = upper + 1
    while upper >= 1 and read < budget:
        after = max(0, upper - min(CHUNK, budget - read))
        rows = await b.store.audit_chain(after_id=after, limit=upper - after)
        for row in reversed(rows):
            if row.id > upper:  # ids with gaps: the limit reached past the window
                continue
            read += 1
            lowest = row.id
            if f.matches(row):
                yield row, lowest
        upper = after
        if f.since_t is not None and rows and rows[0].time < f.since_t - SKEW:
            upper = 0  # everything older is older than since
    yield None, (lowest if upper >= 1 else 0)


@dataclass
class Page:
    rows: list[dict[str, Any]] = field(default_factory=list)
    older: str = ""  # link to the next (older) page, "" if none
    searched_to: int = 0  # the scan stopped at its budget here (not at the end of the trail)


def _view(row: ChainRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "time": row.time,
        "principal": row.principal,
        "action": row.action,
        "outcome": row.outcome,
        "reason": row.reason,
        "request_id": row.request_id,
        "source_ip": row.source_ip,
    }


async def page_of(b: Broker, f: Filters, before: int | None, per_page: int, number: int) -> Page:
    out = Page()
    found: list[ChainRow] = []
    stop = 0
    async for row, lowest in scan(b, f, before=before, budget=SCAN_BUDGET):
        if row is None:
            stop = lowest
            break
        found.append(row)
        if len(found) > per_page:
            break
    out.rows = [_view(r) for r in found[:per_page]]
    query = {**f.query(), "page": str(number + 1)}
    if len(found) > per_page:
        query["before"] = str(found[per_page - 1].id)
    elif stop > 1:
        out.searched_to = stop
        query["before"] = str(stop)
    else:
        return out
    out.older = "/console/audit?" + urlencode(query)
    return out


@dataclass(frozen=True)
class ChainStatus:
    ok: bool
    scope: str  # what was verified
    text: str  # the verdict for people
    broken_row: int | None = None
    notes: tuple[str, ...] = ()


async def chain_status(b: Broker) -> ChainStatus:
    """The verification ``broker audit verify`` runs, bounded (see the module's text)."""
    await b.auditor.flush()
    head = await b.store.audit_head()
    if head is None:
        return ChainStatus(True, "no rows yet", "The audit trail is empty.")
    if head.id <= FULL_VERIFY_ROWS:
        report = await b.audit_chain.verify()
        scope = f"every row (1–{head.id}) and every signed checkpoint"
    else:
        first = head.id - FULL_VERIFY_ROWS + 1
        rows: list[ChainRow] = []
        after = first - 1
        while True:
            chunk = await b.store.audit_chain(after_id=after, limit=CHUNK * 5)
            rows += chunk
            if len(chunk) < CHUNK * 5:
                break
            after = chunk[-1].id
        cps = [
            Checkpoint(id=cp.id or 0, last_id=cp.last_id, hash=cp.hash, created_at=cp.created_at)
            for cp in await b.store.list_audit_checkpoints()
            if rows and cp.last_id >= rows[0].id
        ]
        start = rows[0].prev_hash if rows else audit_chain.GENESIS
        report = await asyncio.to_thread(audit_chain.verify_chain, rows, cps, start=start)
        scope = (
            f"the newest {len(rows)} rows ({first}–{head.id}) and the checkpoints among them; "
            "older rows are checked by `broker audit verify`"
        )
    if report.broken is not None:
        br = report.broken
        return ChainStatus(
            False,
            scope,
            f"The chain breaks at row {br.row_id} ({br.kind}): {br.detail}",
            broken_row=br.row_id,
            notes=report.notes,
        )
    return ChainStatus(True, scope, f"{report.rows} chained rows verified.", notes=report.notes)


async def audit_page(request: web.Request) -> web.StreamResponse:
    c = await console(request)
    await c.authorize(ACTION, "*")
    f = filters_of(request.query)
    before = _cursor(request.query.get("before"))
    number = max(1, _cursor(request.query.get("page")) or 1) if before else 1
    page = await page_of(c.broker, f, before, PER_PAGE, number)
    status = await chain_status(c.broker)
    csv_link = "/console/audit.csv" + ("?" + urlencode(f.query()) if f.any else "")
    return await c.page(
        "console/audit.html",
        section="audit",
        f=f,
        outcomes=OUTCOMES,
        page=page,
        number=number,
        first=before is None,
        newest="/console/audit" + ("?" + urlencode(f.query()) if f.any else ""),
        chain=status,
        csv_link=csv_link,
        scan_budget=SCAN_BUDGET,
    )


async def start_download(request: web.Request, resp: web.StreamResponse) -> None:
    """Send a streamed download's headers: what the console's wrapper adds to a response after
    the handler (the security headers, a refreshed session cookie) must be there before."""
    apply_refreshed_cookie(request, resp)
    for k, v in SECURITY_HEADERS.items():
        resp.headers.setdefault(k, v)
    await resp.prepare(request)


CSV_HEADER = (
    "id",
    "time",
    "principal",
    "action",
    "outcome",
    "reason",
    "request_id",
    "source_ip",
    "details",
)


def csv_line(row: ChainRow) -> bytes:
    """One row; every cell from outside that a spreadsheet would run as a formula is quoted
    (as the credentials report does: ``broker.service.credential_report.text``)."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(
        [
            str(row.id),
            datetime.fromtimestamp(row.time, UTC).isoformat(timespec="seconds"),
            cell(row.principal),
            cell(row.action),
            cell(row.outcome),
            cell(row.reason),
            cell(row.request_id),
            cell(row.source_ip),
            cell(json.dumps(dict(row.details), sort_keys=True, default=str)) if row.details else "",
        ]
    )
    return buf.getvalue().encode()


async def audit_csv(request: web.Request) -> web.StreamResponse:
    c = await console(request)
    await c.authorize(ACTION, "*")
    f = filters_of(request.query)
    before = _cursor(request.query.get("before"))
    stamp = datetime.fromtimestamp(c.broker.clock.now(), UTC).strftime("%Y%m%dT%H%M%SZ")
    resp = web.StreamResponse(
        headers={
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": f'attachment; filename="audit-{stamp}.csv"',
            "Cache-Control": "no-store",
        }
    )
    await start_download(request, resp)
    await resp.write(",".join(CSV_HEADER).encode() + b"\n")
    written = 0
    lines: list[bytes] = []
    async for row, _ in scan(c.broker, f, before=before, budget=CSV_BUDGET):
        if row is None:
            break
        lines.append(csv_line(row))
        written += 1
        if len(lines) >= 500:
            await resp.write(b"".join(lines))
            lines = []
        if written >= CSV_MAX_ROWS:
            break
    if lines:
        await resp.write(b"".join(lines))
    await resp.write_eof()
    return resp


ROUTES = (
    ("GET", "/console/audit", audit_page),
    ("GET", "/console/audit.csv", audit_csv),
)
