"""Access activity and the reads of the unused-access review: the SQL half of the ``Store``
protocol's ``add_activity``, the keyset pages (``users_page``, ``roles_page``, ...) and the
``report_jobs`` rows.

``add_activity`` is one ``INSERT ... ON CONFLICT DO UPDATE`` per call on both databases: the
counts add up and ``first_at``/``last_at`` widen (``min``/``max`` on SQLite, ``LEAST``/
``GREATEST`` on PostgreSQL), so instances flushing the same keys at once never lose a count.
Pages are keyset pages (``WHERE key > :after ORDER BY key LIMIT n``): each is one short read,
and a review of 100,000 users holds one page at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect

from broker.storage import schema as t
from broker.storage.base import (
    AccessKeyReview,
    ActivityRow,
    ManagedPolicyRecord,
    ReportJob,
    RoleRecord,
    User,
)
from broker.storage.sql_base import SqlBase
from broker.storage.sql_policies import _managed_policy
from broker.storage.sql_roles import role_from_row
from broker.storage.sql_users import user_from_row

_ASSUME_ACTIONS = ("sts:AssumeRole", "sts:AssumeRoleWithWebIdentity")


def _activity(row: sa.Row[Any]) -> ActivityRow:
    m = row._mapping
    return ActivityRow(
        principal_arn=m["principal_arn"],
        action=m["action"],
        resource=m["resource"],
        first_at=m["first_at"],
        last_at=m["last_at"],
        count=int(m["count"]),
    )


class ActivitySql(SqlBase):
    async def add_activity(self, rows: Sequence[ActivityRow]) -> None:
        if not rows:
            return
        a = t.access_activity
        values = [
            {
                "principal_arn": r.principal_arn,
                "action": r.action,
                "resource": r.resource,
                "first_at": r.first_at,
                "last_at": r.last_at,
                "count": r.count,
            }
            for r in rows
        ]
        # Rows of one flush have distinct keys (one ON CONFLICT row each), in key order so that
        # two instances upserting overlapping keys take their row locks in the same order.
        values.sort(key=lambda v: (v["principal_arn"], v["action"], v["resource"]))
        stmt: pg_dialect.Insert | sqlite_dialect.Insert
        pg = self.dialect == "postgresql"
        stmt = (pg_dialect.insert(a) if pg else sqlite_dialect.insert(a)).values(values)
        least = "least" if pg else "min"  # SQLite's min/max of two arguments are scalar
        greatest = "greatest" if pg else "max"
        ex = stmt.excluded
        upsert = stmt.on_conflict_do_update(
            index_elements=["principal_arn", "action", "resource"],
            set_={
                "count": a.c["count"] + ex["count"],
                "first_at": getattr(sa.func, least)(a.c.first_at, ex["first_at"]),
                "last_at": getattr(sa.func, greatest)(a.c.last_at, ex["last_at"]),
            },
        )
        async with self._write("record access activity") as conn:
            await conn.execute(upsert)

    async def activity_page(
        self, principal: str, *, since: float, after: tuple[str, str], limit: int
    ) -> list[ActivityRow]:
        a = t.access_activity
        stmt = (
            sa.select(a)
            .where(
                a.c.principal_arn == principal,
                a.c.last_at >= since,
                sa.tuple_(a.c.action, a.c.resource) > sa.tuple_(*after),
            )
            .order_by(a.c.action, a.c.resource)
            .limit(limit)
        )
        async with self._read("read access activity") as conn:
            return [_activity(r) for r in await conn.execute(stmt)]

    async def activity_summary(
        self, principals: Sequence[str], *, since: float | None = None
    ) -> list[tuple[str, str, float]]:
        if not principals:
            return []
        a = t.access_activity
        clauses: list[sa.ColumnElement[bool]] = [a.c.principal_arn.in_(list(principals))]
        if since is not None:
            clauses.append(a.c.last_at >= since)
        stmt = (
            sa.select(a.c.principal_arn, a.c.action, sa.func.max(a.c.last_at))
            .where(*clauses)
            .group_by(a.c.principal_arn, a.c.action)
            .order_by(a.c.principal_arn, a.c.action)
        )
        async with self._read("summarise access activity") as conn:
            return [(r[0], r[1], float(r[2])) for r in await conn.execute(stmt)]

    async def activity_last_used(self, principals: Sequence[str]) -> dict[str, float]:
        if not principals:
            return {}
        a = t.access_activity
        stmt = (
            sa.select(a.c.principal_arn, sa.func.max(a.c.last_at))
            .where(a.c.principal_arn.in_(list(principals)))
            .group_by(a.c.principal_arn)
        )
        async with self._read("read last activity") as conn:
            return {r[0]: float(r[1]) for r in await conn.execute(stmt)}

    async def assumed_roles(
        self, role_arns: Sequence[str], *, since: float | None = None
    ) -> dict[str, float]:
        if not role_arns:
            return {}
        a = t.access_activity
        clauses: list[sa.ColumnElement[bool]] = [
            a.c.resource.in_(list(role_arns)),
            a.c.action.in_(_ASSUME_ACTIONS),
        ]
        if since is not None:
            clauses.append(a.c.last_at >= since)
        stmt = sa.select(a.c.resource, sa.func.max(a.c.last_at)).where(*clauses)
        stmt = stmt.group_by(a.c.resource)
        async with self._read("read role assumptions") as conn:
            return {r[0]: float(r[1]) for r in await conn.execute(stmt)}

    async def users_page(self, *, after: str, limit: int) -> list[User]:
        u = t.users
        stmt = sa.select(u).where(u.c.id > after).order_by(u.c.id).limit(limit)
        async with self._read("page users") as conn:
            return [user_from_row(r) for r in await conn.execute(stmt)]

    async def roles_page(self, *, after: str, limit: int) -> list[RoleRecord]:
        r = t.roles
        stmt = sa.select(r).where(r.c.name > after).order_by(r.c.name).limit(limit)
        async with self._read("page roles") as conn:
            return [role_from_row(row) for row in await conn.execute(stmt)]

    async def managed_policies_page(self, *, after: str, limit: int) -> list[ManagedPolicyRecord]:
        p = t.managed_policies
        stmt = sa.select(p).where(p.c.name > after).order_by(p.c.name).limit(limit)
        async with self._read("page managed policies") as conn:
            return [_managed_policy(row) for row in await conn.execute(stmt)]

    async def access_keys_page(self, *, after: str, limit: int) -> list[AccessKeyReview]:
        k, u = t.access_keys, t.users
        stmt = (
            sa.select(
                k.c.access_key_id,
                k.c.user_id,
                sa.func.coalesce(u.c.name, ""),
                k.c.status,
                k.c.created_at,
                k.c.last_used_at,
            )
            .select_from(k.outerjoin(u, u.c.id == k.c.user_id))
            .where(k.c.access_key_id > after)
            .order_by(k.c.access_key_id)
            .limit(limit)
        )
        async with self._read("page access keys") as conn:
            return [AccessKeyReview(*row) for row in await conn.execute(stmt)]

    async def access_keys_last_used(self, user_ids: Sequence[str]) -> dict[str, float]:
        if not user_ids:
            return {}
        k = t.access_keys
        stmt = (
            sa.select(k.c.user_id, sa.func.max(k.c.last_used_at))
            .where(k.c.user_id.in_(list(user_ids)), k.c.last_used_at.is_not(None))
            .group_by(k.c.user_id)
        )
        async with self._read("read access keys' last use") as conn:
            return {r[0]: float(r[1]) for r in await conn.execute(stmt)}

    async def user_names(self, user_ids: Sequence[str]) -> dict[str, str]:
        if not user_ids:
            return {}
        u = t.users
        stmt = sa.select(u.c.id, u.c.name).where(u.c.id.in_(list(user_ids)))
        async with self._read("read user names") as conn:
            return {r[0]: r[1] for r in await conn.execute(stmt)}

    async def users_with_mfa(self, user_ids: Sequence[str]) -> set[str]:
        if not user_ids:
            return set()
        m = t.mfa_devices
        stmt = (
            sa.select(m.c.user_id)
            .where(m.c.user_id.in_(list(user_ids)), m.c.enabled_at.is_not(None))
            .distinct()
        )
        async with self._read("read MFA devices") as conn:
            return {r[0] for r in await conn.execute(stmt)}

    async def put_report_job(self, job: ReportJob) -> None:
        values = {
            "job_id": job.job_id,
            "kind": job.kind,
            "subject": job.subject,
            "status": job.status,
            "created_at": job.created_at,
            "completed_at": job.completed_at,
            "content": job.content,
        }
        async with self._write("save report job") as conn:
            await conn.execute(self._upsert(t.report_jobs, values, key=("job_id",)))

    async def get_report_job(self, job_id: str) -> ReportJob | None:
        j = t.report_jobs
        async with self._read("read report job") as conn:
            row = (await conn.execute(sa.select(j).where(j.c.job_id == job_id))).first()
        if row is None:
            return None
        m = row._mapping
        return ReportJob(
            job_id=m["job_id"],
            kind=m["kind"],
            subject=m["subject"],
            status=m["status"],
            created_at=m["created_at"],
            completed_at=m["completed_at"],
            content=bytes(m["content"]) if m["content"] is not None else None,
        )
