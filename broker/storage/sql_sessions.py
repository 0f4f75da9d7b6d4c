"""Browser sessions and revocations: the SQL half of the ``Store`` protocol's session methods
(``create_session`` ... ``purge_sessions``) and of ``add_revocation``, ``revocations_since`` and
``purge_revocations``.

Revoking a session records a revocation in the same transaction; revocation ids are handed out
under a lock on PostgreSQL so that they become visible in id order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from broker.storage import schema as t
from broker.storage.base import Revocation, Session
from broker.storage.sql_base import SqlBase

# Taken (transaction-scoped) before a revocation row gets its id on PostgreSQL, so that ids
# become visible in id order and ``revocations_since(last_seen_id)`` never skips one.
_REVOCATION_LOCK: Final = 0x62726F6B65720002


def _session(row: sa.Row[Any]) -> Session:
    m = row._mapping
    return Session(
        id=m["id"],
        user_id=m["user_id"],
        provider=m["provider"],
        subject=m["subject"],
        role_arn=m["role_arn"],
        email=m["email"],
        groups=tuple(m["groups"]),
        mfa=bool(m["mfa"]),
        tags=dict(m["tags"]),
        created_at=m["created_at"],
        expires_at=m["expires_at"],
        idle_timeout=m["idle_timeout"],
        last_seen_at=m["last_seen_at"],
        revoked_at=m["revoked_at"],
        revoked_reason=m["revoked_reason"],
        provider_sid=m["provider_sid"] or "",
        mfa_authenticated_at=m["mfa_authenticated_at"],
    )


def _revocation(row: sa.Row[Any]) -> Revocation:
    m = row._mapping
    return Revocation(
        kind=m["kind"],
        target=m["target"],
        before=m["issued_before"],
        created_at=m["created_at"],
        id=int(m["id"]),
    )


class SessionsSql(SqlBase):
    """Sessions, and the revocations that end them (or credentials without a session)."""

    async def _lock_revocations(self, conn: AsyncConnection) -> None:
        if self._target.dialect == "postgresql":
            await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_REVOCATION_LOCK)))

    async def _insert_revocation(self, conn: AsyncConnection, revocation: Revocation) -> int:
        await self._lock_revocations(conn)
        result = await conn.execute(
            sa.insert(t.revocations)
            .values(
                kind=revocation.kind,
                target=revocation.target,
                issued_before=revocation.before,
                created_at=revocation.created_at,
            )
            .returning(t.revocations.c.id)
        )
        return int(result.scalar_one())

    # -- sessions

    async def create_session(self, session: Session) -> None:
        async with self._write(f"create session {session.id!r}") as conn:
            await conn.execute(
                sa.insert(t.sessions).values(
                    id=session.id,
                    user_id=session.user_id,
                    provider=session.provider,
                    subject=session.subject,
                    role_arn=session.role_arn,
                    email=session.email,
                    groups=list(session.groups),
                    mfa=session.mfa,
                    tags=dict(session.tags),
                    created_at=session.created_at,
                    expires_at=session.expires_at,
                    idle_timeout=session.idle_timeout,
                    last_seen_at=session.last_seen_at,
                    revoked_at=session.revoked_at,
                    revoked_reason=session.revoked_reason,
                    provider_sid=session.provider_sid or None,
                    mfa_authenticated_at=session.mfa_authenticated_at,
                )
            )

    async def get_session(self, session_id: str) -> Session | None:
        async with self._read("get session") as conn:
            row = (
                await conn.execute(sa.select(t.sessions).where(t.sessions.c.id == session_id))
            ).first()
        return _session(row) if row is not None else None

    async def touch_sessions(self, last_seen: Mapping[str, float]) -> None:
        """One batched UPDATE; a session's ``last_seen_at`` only moves forward; unknown ids
        are ignored."""
        if not last_seen:
            return
        stmt = (
            sa.update(t.sessions)
            .where(
                t.sessions.c.id == sa.bindparam("b_id"),
                t.sessions.c.last_seen_at < sa.bindparam("b_seen"),
            )
            .values(last_seen_at=sa.bindparam("b_seen"))
        )
        # a fixed order keeps concurrent batches from deadlocking on PostgreSQL row locks
        params = [{"b_id": sid, "b_seen": seen} for sid, seen in sorted(last_seen.items())]
        async with self._write("touch sessions") as conn:
            await conn.execute(stmt, params)

    async def provider_session_users(self, provider: str, provider_sid: str) -> list[str]:
        if not provider_sid:
            return []
        s = t.sessions.c
        stmt = (
            sa.select(s.user_id)
            .where(s.provider_sid == provider_sid, s.provider == provider)
            .distinct()
            .order_by(s.user_id)
        )
        async with self._read("find sessions by provider sid") as conn:
            return [str(r[0]) for r in await conn.execute(stmt)]

    async def list_user_sessions(
        self, user_id: str, *, now: float, limit: int = 200
    ) -> list[Session]:
        """By the ``user_id`` index; live as ``purge_sessions`` would keep it, unrevoked."""
        s = t.sessions.c
        seen = sa.case((s.last_seen_at > s.created_at, s.last_seen_at), else_=s.created_at)
        stmt = (
            sa.select(t.sessions)
            .where(
                s.user_id == user_id,
                s.revoked_at.is_(None),
                s.expires_at > now,
                sa.or_(s.idle_timeout <= 0, seen + s.idle_timeout > now),
            )
            .order_by(s.created_at.desc(), s.id)
            .limit(max(0, limit))
        )
        async with self._read("list user sessions") as conn:
            return [_session(r) for r in await conn.execute(stmt)]

    async def revoke_session(self, session_id: str, *, now: float, reason: str) -> bool:
        """Revoke one live session and record a ``session`` revocation; False if the session is
        unknown or already revoked (nothing changes then)."""
        async with self._write("revoke session") as conn:
            result = await conn.execute(
                sa.update(t.sessions)
                .where(t.sessions.c.id == session_id, t.sessions.c.revoked_at.is_(None))
                .values(revoked_at=now, revoked_reason=reason)
            )
            if result.rowcount == 0:
                return False
            await self._insert_revocation(
                conn, Revocation(kind="session", target=session_id, before=now, created_at=now)
            )
        return True

    async def revoke_provider_session(
        self, provider: str, provider_sid: str, *, now: float, reason: str
    ) -> list[Revocation]:
        if not provider_sid:
            return []
        s = t.sessions.c
        mine = sa.and_(s.provider_sid == provider_sid, s.provider == provider)
        done: list[Revocation] = []
        async with self._write("revoke provider session") as conn:
            ids = [
                str(r[0]) for r in await conn.execute(sa.select(s.id).where(mine).order_by(s.id))
            ]
            if not ids:
                return []
            await conn.execute(
                sa.update(t.sessions)
                .where(mine, s.id.in_(ids), s.revoked_at.is_(None))
                .values(revoked_at=now, revoked_reason=reason)
            )
            for session_id in ids:
                r = Revocation(kind="origin", target=session_id, before=now, created_at=now)
                done.append(replace(r, id=await self._insert_revocation(conn, r)))
        return done

    async def revoke_user_sessions(self, user_id: str, *, now: float, reason: str) -> int:
        """Revoke the user's live sessions and always record one ``user`` revocation (which
        also voids credentials that have no session row); returns how many were revoked."""
        async with self._write("revoke user sessions") as conn:
            result = await conn.execute(
                sa.update(t.sessions)
                .where(
                    t.sessions.c.user_id == user_id,
                    t.sessions.c.revoked_at.is_(None),
                    t.sessions.c.expires_at > now,
                )
                .values(revoked_at=now, revoked_reason=reason)
            )
            await self._insert_revocation(
                conn, Revocation(kind="user", target=user_id, before=now, created_at=now)
            )
            return result.rowcount

    async def add_revocation(self, revocation: Revocation) -> Revocation:
        async with self._write("add revocation") as conn:
            new_id = await self._insert_revocation(conn, revocation)
        return replace(revocation, id=new_id)

    async def revocations_since(self, after_id: int) -> list[Revocation]:
        async with self._read("list revocations") as conn:
            rows = await conn.execute(
                sa.select(t.revocations)
                .where(t.revocations.c.id > after_id)
                .order_by(t.revocations.c.id)
            )
            return [_revocation(r) for r in rows]

    async def purge_revocations(self, before: float) -> int:
        async with self._write("purge revocations") as conn:
            result = await conn.execute(
                sa.delete(t.revocations).where(t.revocations.c.issued_before < before)
            )
            return result.rowcount

    async def purge_sessions(self, now: float) -> int:
        """Delete sessions past their absolute end or idle for longer than their idle timeout
        (idle time counts from ``last_seen_at``, or ``created_at`` if never seen)."""
        s = t.sessions
        seen = sa.case((s.c.last_seen_at > s.c.created_at, s.c.last_seen_at), else_=s.c.created_at)
        async with self._write("purge sessions") as conn:
            result = await conn.execute(
                sa.delete(s).where(
                    sa.or_(
                        s.c.expires_at <= now,
                        sa.and_(s.c.idle_timeout > 0, seen + s.c.idle_timeout <= now),
                    )
                )
            )
            return result.rowcount
