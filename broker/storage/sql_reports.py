"""Reports: the SQL half of the ``Store`` protocol's ``credential_records`` (users with their
access keys and MFA state, read in batches) and the ``report_jobs`` bookkeeping.

``credential_records`` pages by keyset (``(name, id) > last``), one short read transaction per
batch, so neither side holds a cursor or a snapshot open while the caller writes CSV: memory
is bounded by the batch, not by the number of users. The batches are not one snapshot (a user
renamed meanwhile may show twice or not at all), as AWS's report is not one either.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Sequence
from typing import Final

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from broker.storage import schema as t
from broker.storage.base import CredentialRecord, KeyUse, ReportJob
from broker.storage.sql_base import SqlBase

# Class of the (transaction-scoped, two-key) PostgreSQL locks that serialise starting a report
# job per kind and subject; the second key is a hash of both.
_REPORT_LOCK: Final = 0x62720010

RUNNING: Final = "INPROGRESS"
COMPLETE: Final = "COMPLETE"
FAILED: Final = "FAILED"


def _job(m: sa.RowMapping, *, content: bool) -> ReportJob:
    return ReportJob(
        job_id=m["job_id"],
        kind=m["kind"],
        subject=m["subject"],
        status=m["status"],
        created_at=m["created_at"],
        completed_at=m["completed_at"],
        content=bytes(m["content"]) if content and m["content"] is not None else None,
    )


_JOB_COLUMNS = (
    t.report_jobs.c.job_id,
    t.report_jobs.c.kind,
    t.report_jobs.c.subject,
    t.report_jobs.c.status,
    t.report_jobs.c.created_at,
    t.report_jobs.c.completed_at,
)


class ReportsSql(SqlBase):
    async def credential_records(
        self, *, batch: int = 1000
    ) -> AsyncIterator[list[CredentialRecord]]:
        u = t.users
        after: tuple[str, str] | None = None
        while True:
            async with self._read("read credential records") as conn:
                stmt = (
                    sa.select(
                        u.c.id,
                        u.c.name,
                        u.c.created_at,
                        u.c.password_hash.is_not(None).label("has_password"),
                        u.c.last_login_at,
                        u.c.password_changed_at,
                    )
                    .order_by(u.c.name, u.c.id)
                    .limit(batch)
                )
                if after is not None:
                    stmt = stmt.where(sa.tuple_(u.c.name, u.c.id) > sa.tuple_(*after))
                users = (await conn.execute(stmt)).all()
                if not users:
                    return
                ids = [r.id for r in users]
                keys = await self._keys_of(conn, ids)
                mfa = await self._mfa_of(conn, ids)
            yield [
                CredentialRecord(
                    name=r.name,
                    created_at=r.created_at,
                    has_password=bool(r.has_password),
                    last_login_at=r.last_login_at,
                    password_changed_at=r.password_changed_at,
                    mfa_active=r.id in mfa,
                    keys=tuple(keys.get(r.id, ())),
                )
                for r in users
            ]
            if len(users) < batch:
                return
            after = (users[-1].name, users[-1].id)

    @staticmethod
    async def _keys_of(conn: AsyncConnection, ids: Sequence[str]) -> dict[str, list[KeyUse]]:
        k = t.access_keys
        stmt = (
            sa.select(
                k.c.user_id,
                k.c.status,
                k.c.created_at,
                k.c.last_used_at,
                k.c.last_used_region,
                k.c.last_used_service,
            )
            .where(k.c.user_id.in_(ids))
            .order_by(k.c.user_id, k.c.created_at, k.c.access_key_id)
        )
        found: dict[str, list[KeyUse]] = {}
        for r in await conn.execute(stmt):
            found.setdefault(r.user_id, []).append(
                KeyUse(
                    status=r.status,
                    created_at=r.created_at,
                    last_used_at=r.last_used_at,
                    last_used_region=r.last_used_region,
                    last_used_service=r.last_used_service,
                )
            )
        return found

    @staticmethod
    async def _mfa_of(conn: AsyncConnection, ids: Sequence[str]) -> set[str]:
        """Users with an *enabled* device (a created, not yet enabled one has no user)."""
        m = t.mfa_devices
        stmt = sa.select(m.c.user_id).where(m.c.user_id.in_(ids), m.c.enabled_at.is_not(None))
        return {r.user_id for r in await conn.execute(stmt)}

    async def first_user_created_at(self) -> float | None:
        async with self._read("first user created") as conn:
            value = (await conn.execute(sa.select(sa.func.min(t.users.c.created_at)))).scalar()
        return None if value is None else float(value)

    async def start_report_job(
        self, job: ReportJob, *, reuse_since: float, running_since: float
    ) -> tuple[ReportJob, bool]:
        j = t.report_jobs
        mine = (j.c.kind == job.kind, j.c.subject == job.subject)
        async with self._write("start report job") as conn:
            if self._target.dialect == "postgresql":  # SQLite: BEGIN IMMEDIATE serialises
                digest = hashlib.blake2b(f"{job.kind}\0{job.subject}".encode(), digest_size=4)
                key = int.from_bytes(digest.digest(), "big", signed=True)
                await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_REPORT_LOCK, key)))
            current = (
                await conn.execute(
                    sa.select(*_JOB_COLUMNS)
                    .where(
                        *mine,
                        sa.or_(
                            sa.and_(j.c.status == COMPLETE, j.c.created_at >= reuse_since),
                            sa.and_(j.c.status == RUNNING, j.c.created_at >= running_since),
                        ),
                    )
                    .order_by(j.c.created_at.desc())
                    .limit(1)
                )
            ).first()
            if current is not None:
                return _job(current._mapping, content=False), False
            await conn.execute(sa.delete(j).where(*mine))
            await conn.execute(
                sa.insert(j).values(
                    job_id=job.job_id,
                    kind=job.kind,
                    subject=job.subject,
                    status=RUNNING,
                    created_at=job.created_at,
                    completed_at=None,
                    content=None,
                )
            )
        return ReportJob(job.job_id, job.kind, job.subject, RUNNING, job.created_at), True

    async def finish_report_job(self, job_id: str, *, content: bytes | None, now: float) -> None:
        status = FAILED if content is None else COMPLETE
        async with self._write("finish report job") as conn:
            await conn.execute(
                sa.update(t.report_jobs)
                .where(t.report_jobs.c.job_id == job_id)
                .values(status=status, completed_at=now, content=content)
            )

    async def latest_report_job(self, kind: str, subject: str) -> ReportJob | None:
        j = t.report_jobs
        async with self._read("latest report job") as conn:
            row = (
                await conn.execute(
                    sa.select(j)
                    .where(j.c.kind == kind, j.c.subject == subject, j.c.status != FAILED)
                    .order_by(j.c.created_at.desc())
                    .limit(1)
                )
            ).first()
        return None if row is None else _job(row._mapping, content=True)
