"""The credentials report: AWS IAM's credential report (IAM User Guide, "Getting credential
reports for your AWS account"), one CSV row for the account root and one per user, with AWS's
columns in AWS's order and AWS's conventions:

- times in ISO 8601 (``2026-12-05T07:20:31+00:00``), booleans ``true``/``false``;
- ``password_last_used``: ``N/A`` without a password, ``no_information`` when the password
  was never used (the user's last local login otherwise);
- ``password_last_changed``: ``N/A`` without a password; ``password_next_rotation``: ``N/A``
  (the broker has no password-rotation policy);
- access keys 1 and 2 (oldest first): ``access_key_N_active`` is ``true`` only for an Active
  key; ``last_rotated`` is the key's creation time (``N/A`` without that key); the
  ``last_used_*`` columns are ``N/A`` when the key was never used (or has no region/service);
- signing certificates: the broker has none (``false``/``N/A``);
- a cell from outside that a spreadsheet would read as a formula (``=``, ``+``, ``-``, ``@``)
  starts with ``'`` (CSV injection: a federated user's name comes from its provider);
- the ``<root_account>`` row: ``not_supported`` for the password columns AWS says so for; the
  broker's root (``broker admin``, the local operator) has no password, no key and no MFA.
  Its ``user_creation_time`` is when the account's first user was created (the bootstrap).

The report is written as it is read (``write_report``: batches of users to a byte sink), so
memory stays bounded with any number of users. ``CredentialReports`` runs the IAM actions'
generation as AWS does: one report at a time, reused for four hours, built in the background
into ``report_jobs`` (gzip-compressed CSV).
"""

from __future__ import annotations

import asyncio
import csv
import gzip
import io
import logging
import tempfile
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Protocol

from broker.clock import Clock
from broker.config import Settings
from broker.errors import IamReportExpired, IamReportInProgress, IamReportNotPresent
from broker.service.audit import Auditor, RequestInfo
from broker.storage.base import CredentialRecord, KeyUse, ReportJob, Store

log = logging.getLogger(__name__)

#: AWS's columns, in AWS's order.
HEADER: Final = (
    "user",
    "arn",
    "user_creation_time",
    "password_enabled",
    "password_last_used",
    "password_last_changed",
    "password_next_rotation",
    "mfa_active",
    "access_key_1_active",
    "access_key_1_last_rotated",
    "access_key_1_last_used_date",
    "access_key_1_last_used_region",
    "access_key_1_last_used_service",
    "access_key_2_active",
    "access_key_2_last_rotated",
    "access_key_2_last_used_date",
    "access_key_2_last_used_region",
    "access_key_2_last_used_service",
    "cert_1_active",
    "cert_1_last_rotated",
    "cert_2_active",
    "cert_2_last_rotated",
)

KIND: Final = "credential_report"
ROOT_NAME: Final = "<root_account>"
NA: Final = "N/A"
NO_INFORMATION: Final = "no_information"
NOT_SUPPORTED: Final = "not_supported"
#: A report is reused, and expires, after four hours (AWS: "as often as once every four hours").
FRESH_FOR: Final = 4 * 3600.0
#: A generation still running after this long is taken as abandoned (its instance stopped).
ABANDONED_AFTER: Final = 15 * 60.0
BATCH: Final = 1000
_NO_CERTS: Final = ("false", NA, "false", NA)


class Sink(Protocol):
    def write(self, data: bytes, /) -> object: ...


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")


#: What a spreadsheet reads as the start of a formula (OWASP, "CSV Injection").
_FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r")


def text(value: str) -> str:
    """A cell from outside (a federated user's name comes from its identity provider's
    claims, a key's last-used region from the signer's credential scope): one that a
    spreadsheet would run as a formula gets a leading ``'``, so that an auditor opening the
    report runs nothing. (AWS does not do this; its names cannot come from outside.)"""
    return "'" + value if value.startswith(_FORMULA_START) else value


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _key_columns(key: KeyUse | None) -> list[str]:
    if key is None:
        return ["false", NA, NA, NA, NA]
    return [
        _bool(key.status == "Active"),
        iso(key.created_at),
        iso(key.last_used_at) if key.last_used_at is not None else NA,
        text(key.last_used_region) if key.last_used_region else NA,
        text(key.last_used_service) if key.last_used_service else NA,
    ]


def user_row(arn: str, record: CredentialRecord) -> list[str]:
    if record.has_password:
        last_used = iso(record.last_login_at) if record.last_login_at else NO_INFORMATION
        changed = iso(record.password_changed_at) if record.password_changed_at else NA
    else:
        last_used = changed = NA
    keys: list[KeyUse | None] = [*record.keys[:2], None, None]
    return [
        text(record.name),
        arn,
        iso(record.created_at),
        _bool(record.has_password),
        last_used,
        changed,
        NA,  # no password-rotation policy
        _bool(record.mfa_active),
        *_key_columns(keys[0]),
        *_key_columns(keys[1]),
        *_NO_CERTS,
    ]


def root_row(arn: str, created_at: float | None) -> list[str]:
    return [
        ROOT_NAME,
        arn,
        iso(created_at) if created_at is not None else NA,
        NOT_SUPPORTED,
        NA,  # the broker's root signs in with no password
        NOT_SUPPORTED,
        NOT_SUPPORTED,
        "false",
        *_key_columns(None),
        *_key_columns(None),
        *_NO_CERTS,
    ]


def _csv(rows: Sequence[Sequence[str]]) -> bytes:
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerows(rows)
    return text.getvalue().encode("utf-8")


async def report_rows(
    settings: Settings, store: Store, *, batch: int = BATCH
) -> AsyncIterator[list[list[str]]]:
    """The report's rows (the root's first, then each user's by name), ``batch`` at a time."""
    account = settings.server.account_id
    first = await store.first_user_created_at()
    yield [root_row(f"arn:broker:iam::{account}:root", first)]
    async for records in store.credential_records(batch=batch):
        yield [user_row(settings.arn("user", r.name), r) for r in records]


async def write_report(settings: Settings, store: Store, sink: Sink, *, batch: int = BATCH) -> int:
    """Write the report as CSV (AWS's header first) to ``sink``, batch by batch; returns the
    number of rows after the header."""
    sink.write(_csv([HEADER]))
    rows = 0
    async for chunk in report_rows(settings, store, batch=batch):
        sink.write(_csv(chunk))
        rows += len(chunk)
    return rows


@dataclass(frozen=True)
class Report:
    content: bytes  # the CSV
    generated_at: float


class CredentialReports:
    """``GenerateCredentialReport`` / ``GetCredentialReport`` for one account.

    The instance that starts a job builds it in a background task (the event loop keeps
    serving: each batch is a short read); every instance answers from ``report_jobs``."""

    def __init__(self, settings: Settings, store: Store, auditor: Auditor, clock: Clock) -> None:
        self._settings = settings
        self._store = store
        self._auditor = auditor
        self._clock = clock
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def _subject(self) -> str:
        return self._settings.server.account_id

    async def generate(self, *, actor: str, req: RequestInfo | None = None) -> str:
        """AWS's ``State``: ``STARTED`` (a new report is being built), ``INPROGRESS`` (one is
        being built already) or ``COMPLETE`` (a report younger than four hours exists)."""
        now = self._clock.now()
        job, started = await self._store.start_report_job(
            ReportJob(uuid.uuid4().hex, KIND, self._subject, "INPROGRESS", now),
            reuse_since=now - FRESH_FOR,
            running_since=now - ABANDONED_AFTER,
        )
        if not started:
            return "COMPLETE" if job.status == "COMPLETE" else "INPROGRESS"
        await self._auditor.record(
            "report.credentials", "success", req=req, principal=actor, details={"job": job.job_id}
        )
        task = asyncio.create_task(self._build(job.job_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return "STARTED"

    async def _build(self, job_id: str) -> None:
        content: bytes | None = None
        try:
            # the CSV is compressed as it is written: what is held is the compressed report
            with tempfile.SpooledTemporaryFile(max_size=8 << 20) as spool:
                with gzip.GzipFile(fileobj=spool, mode="wb") as sink:
                    await write_report(self._settings, self._store, sink)
                spool.seek(0)
                content = spool.read()
        except Exception:
            log.exception("credential report generation failed")
        finally:
            await self._store.finish_report_job(job_id, content=content, now=self._clock.now())

    async def get(self) -> Report:
        job = await self._store.latest_report_job(KIND, self._subject)
        now = self._clock.now()
        if job is None:
            raise IamReportNotPresent("no_credential_report")
        if job.status != "COMPLETE" or job.content is None:
            if job.created_at < now - ABANDONED_AFTER:
                raise IamReportNotPresent("credential_report_abandoned")
            raise IamReportInProgress("credential_report_in_progress")
        if job.created_at < now - FRESH_FOR:
            raise IamReportExpired("credential_report_expired")
        # megabytes with many users: not on the event loop
        return Report(await asyncio.to_thread(gzip.decompress, job.content), job.created_at)

    async def wait(self) -> None:
        """Let the generations this instance started finish."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def close(self) -> None:
        """Stop the generations running here (another instance takes over once they are
        ``ABANDONED_AFTER`` old)."""
        for task in self._tasks:
            task.cancel()
        await self.wait()
