"""The audit log and its hash chain: the SQL half of ``Store.append_audit``,
``append_audit_many``, ``audit_chain``, ``audit_head``, the audit checkpoints and ``list_audit``.

Every append links its rows to the chain's head (``broker.domain.audit_chain.link``) in the
write transaction that inserts them, holding the audit lock on PostgreSQL, so two appends never
link to the same head.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Final

import sqlalchemy as sa

from broker.domain.audit_chain import GENESIS, ChainRow, link
from broker.storage import schema as t
from broker.storage.base import AuditCheckpoint, AuditEvent
from broker.storage.sql_base import SqlBase

# Taken (transaction-scoped) by every audit append on PostgreSQL: each append reads the chain's
# head and links its rows to it, so two appends must never interleave (SQLite serialises every
# writer with BEGIN IMMEDIATE).
_AUDIT_LOCK: Final = 0x62726F6B65720004


def _audit_event(row: sa.Row[Any]) -> AuditEvent:
    m = row._mapping
    return AuditEvent(
        time=m["time"],
        action=m["action"],
        outcome=m["outcome"],
        request_id=m["request_id"],
        principal=m["principal"],
        reason=m["reason"],
        source_ip=m["source_ip"],
        details=dict(m["details"]),
        id=int(m["id"]),
    )


def _audit_values(event: AuditEvent) -> dict[str, Any]:
    return {
        "time": float(event.time),
        "action": event.action,
        "outcome": event.outcome,
        "request_id": event.request_id,
        "principal": event.principal,
        "reason": event.reason,
        "source_ip": event.source_ip,
        # as the JSON column gives it back (tuples become lists, keys strings), so that the
        # hash computed now is the hash of what is read later
        "details": json.loads(json.dumps(dict(event.details), default=str)),
    }


def _chain_row(row: sa.Row[Any]) -> ChainRow:
    m = row._mapping
    return ChainRow(
        id=int(m["id"]),
        time=m["time"],
        action=m["action"],
        outcome=m["outcome"],
        request_id=m["request_id"],
        principal=m["principal"],
        reason=m["reason"],
        source_ip=m["source_ip"],
        details=m["details"],
        prev_hash=m["prev_hash"] or "",
        hash=m["hash"] or "",
    )


def _checkpoint(row: sa.Row[Any]) -> AuditCheckpoint:
    m = row._mapping
    return AuditCheckpoint(
        last_id=int(m["last_id"]),
        hash=m["hash"],
        created_at=m["created_at"],
        token=m["token"],
        id=int(m["id"]),
    )


class AuditSql(SqlBase):
    """Audit events (hash-chained) and audit checkpoints."""

    async def append_audit(self, event: AuditEvent) -> None:
        await self._append_chained([event], "append audit event")

    async def append_audit_many(self, events: Sequence[AuditEvent]) -> None:
        """One transaction, one ``executemany``; ids follow the order of ``events``."""
        if events:
            await self._append_chained(events, f"append {len(events)} audit events")

    async def _append_chained(self, events: Sequence[AuditEvent], what: str) -> None:
        """Link the rows to the chain's head and insert them, holding the audit lock (on
        PostgreSQL; SQLite's write transaction already excludes every other writer)."""
        rows = [_audit_values(e) for e in events]
        a = t.audit_events
        async with self._write(what) as conn:
            if self._target.dialect == "postgresql":
                await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_AUDIT_LOCK)))
            head = (
                await conn.execute(sa.select(a.c.hash).order_by(a.c.id.desc()).limit(1))
            ).first()
            prev = (head[0] if head is not None else None) or GENESIS
            for row, (prev_hash, digest) in zip(rows, link(prev, rows), strict=True):
                row["prev_hash"] = prev_hash
                row["hash"] = digest
            if len(rows) == 1:
                await conn.execute(sa.insert(a).values(**rows[0]))
            else:
                await conn.execute(sa.insert(a), rows)

    async def audit_chain(self, *, after_id: int = 0, limit: int = 1000) -> list[ChainRow]:
        a = t.audit_events
        stmt = sa.select(a).where(a.c.id > after_id).order_by(a.c.id).limit(max(limit, 0))
        async with self._read("read the audit chain") as conn:
            return [_chain_row(r) for r in await conn.execute(stmt)]

    async def audit_head(self) -> ChainRow | None:
        a = t.audit_events
        async with self._read("read the audit chain's head") as conn:
            row = (await conn.execute(sa.select(a).order_by(a.c.id.desc()).limit(1))).first()
        return _chain_row(row) if row is not None else None

    async def add_audit_checkpoint(self, checkpoint: AuditCheckpoint) -> AuditCheckpoint:
        c = t.audit_checkpoints
        values = {
            "last_id": checkpoint.last_id,
            "hash": checkpoint.hash,
            "created_at": checkpoint.created_at,
            "token": checkpoint.token,
        }
        async with self._write("add audit checkpoint") as conn:
            result = await conn.execute(sa.insert(c).values(**values).returning(c.c.id))
            return replace(checkpoint, id=int(result.scalar_one()))

    async def list_audit_checkpoints(self) -> list[AuditCheckpoint]:
        c = t.audit_checkpoints
        async with self._read("list audit checkpoints") as conn:
            return [_checkpoint(r) for r in await conn.execute(sa.select(c).order_by(c.c.id))]

    async def latest_audit_checkpoint(self) -> AuditCheckpoint | None:
        c = t.audit_checkpoints
        stmt = sa.select(c).order_by(c.c.id.desc()).limit(1)
        async with self._read("read the latest audit checkpoint") as conn:
            row = (await conn.execute(stmt)).first()
        return _checkpoint(row) if row is not None else None

    async def list_audit(
        self, *, limit: int = 100, action: str | None = None, since: float | None = None
    ) -> list[AuditEvent]:
        """Newest first (by time, then by insertion); ``action`` matches exactly, ``since``
        keeps events at or after that time."""
        a = t.audit_events
        stmt = sa.select(a).order_by(a.c.time.desc(), a.c.id.desc()).limit(max(limit, 0))
        if action is not None:
            stmt = stmt.where(a.c.action == action)
        if since is not None:
            stmt = stmt.where(a.c.time >= since)
        async with self._read("list audit events") as conn:
            return [_audit_event(r) for r in await conn.execute(stmt)]
