"""Values a browser or a login uses once: the SQL half of the ``Store`` protocol's login
states (``put_login_state``, ``consume_login_state``, ``purge_login_states``), other single-use
values (``put_single_use`` ... ``purge_single_use``, ``forget_binding``), the back-channel
logouts pending logins must see (``put_provider_logout``, ``provider_logouts``,
``purge_provider_logouts``) and failed-login counts (``add_login_failures``,
``forgive_login_failures``, ``purge_login_failures``).

Consuming is one ``DELETE ... RETURNING`` statement, so concurrent consumers race on the row and
exactly one gets it back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from broker.storage import schema as t
from broker.storage.base import LoginFailures, LoginState, ProviderLogout, SingleUse
from broker.storage.sql_base import SqlBase


def _login_state(row: sa.Row[Any]) -> LoginState:
    m = row._mapping
    return LoginState(
        state=m["state"],
        provider=m["provider"],
        browser_binding=m["browser_binding"],
        nonce=m["nonce"],
        code_verifier=m["code_verifier"],
        redirect_after=m["redirect_after"],
        role=m["role"],
        created_at=m["created_at"],
        expires_at=m["expires_at"],
    )


def _single_use(row: sa.Row[Any]) -> SingleUse:
    return SingleUse(
        kind=row.kind,
        key=row.key,
        binding=row.binding,
        payload=row.payload,
        created_at=row.created_at,
        expires_at=row.expires_at,
    )


class LoginsSql(SqlBase):
    """Login states, other single-use values and failed-login counts."""

    # -- login state

    async def put_login_state(self, state: LoginState) -> None:
        async with self._write("put login state") as conn:
            await conn.execute(
                sa.insert(t.login_states).values(
                    state=state.state,
                    provider=state.provider,
                    browser_binding=state.browser_binding,
                    nonce=state.nonce,
                    code_verifier=state.code_verifier,
                    redirect_after=state.redirect_after,
                    role=state.role,
                    created_at=state.created_at,
                    expires_at=state.expires_at,
                )
            )

    async def consume_login_state(
        self, state: str, *, browser_binding: str, now: float
    ) -> LoginState | None:
        # One statement: the row is deleted and returned only if all three conditions hold,
        # so concurrent consumers race on the row lock and exactly one gets it back.
        stmt = (
            sa.delete(t.login_states)
            .where(
                t.login_states.c.state == state,
                t.login_states.c.browser_binding == browser_binding,
                t.login_states.c.expires_at > now,
            )
            .returning(*t.login_states.c)
        )
        async with self._write("consume login state") as conn:
            row = (await conn.execute(stmt)).first()
        return _login_state(row) if row is not None else None

    async def purge_login_states(self, now: float) -> int:
        async with self._write("purge login states") as conn:
            result = await conn.execute(
                sa.delete(t.login_states).where(t.login_states.c.expires_at <= now)
            )
            return result.rowcount

    # -- other single-use values

    async def put_single_use(self, value: SingleUse) -> None:
        async with self._write(f"put single-use {value.kind}") as conn:
            await conn.execute(
                sa.insert(t.single_use).values(
                    kind=value.kind,
                    key=value.key,
                    binding=value.binding,
                    payload=dict(value.payload),
                    created_at=value.created_at,
                    expires_at=value.expires_at,
                )
            )

    @staticmethod
    def _single_use_is(kind: str, key: str, binding: str, now: float) -> tuple[Any, ...]:
        c = t.single_use.c
        return (c.kind == kind, c.key == key, c.binding == binding, c.expires_at > now)

    async def peek_single_use(
        self, kind: str, key: str, *, binding: str, now: float
    ) -> SingleUse | None:
        async with self._read(f"peek single-use {kind}") as conn:
            row = (
                await conn.execute(
                    sa.select(t.single_use).where(*self._single_use_is(kind, key, binding, now))
                )
            ).first()
        return _single_use(row) if row is not None else None

    async def consume_single_use(
        self, kind: str, key: str, *, binding: str, now: float
    ) -> SingleUse | None:
        # One statement, as for login states: concurrent consumers race on the row; one wins.
        stmt = (
            sa.delete(t.single_use)
            .where(*self._single_use_is(kind, key, binding, now))
            .returning(*t.single_use.c)
        )
        async with self._write(f"consume single-use {kind}") as conn:
            row = (await conn.execute(stmt)).first()
        return _single_use(row) if row is not None else None

    async def forget_binding(self, binding: str) -> int:
        if not binding:
            return 0  # "" marks values no browser holds: never a browser's binding
        async with self._write("forget browser binding") as conn:
            a = await conn.execute(sa.delete(t.single_use).where(t.single_use.c.binding == binding))
            b = await conn.execute(
                sa.delete(t.login_states).where(t.login_states.c.browser_binding == binding)
            )
            return int(a.rowcount) + int(b.rowcount)

    async def purge_single_use(self, now: float) -> int:
        async with self._write("purge single-use values") as conn:
            result = await conn.execute(
                sa.delete(t.single_use).where(t.single_use.c.expires_at <= now)
            )
            return result.rowcount

    # -- back-channel logouts (tombstones for pending logins)

    async def put_provider_logout(self, logout: ProviderLogout) -> None:
        c = t.provider_logouts.c
        stmt = self._upsert(
            t.provider_logouts,
            {
                "provider": logout.provider,
                "kind": logout.kind,
                "value": logout.value,
                "logged_out_at": logout.logged_out_at,
                "expires_at": logout.expires_at,
            },
            key=("provider", "kind", "value"),
            update={
                # one statement: concurrent logouts of the same session keep the later of each
                "logged_out_at": lambda x: sa.case(
                    (x.logged_out_at > c.logged_out_at, x.logged_out_at), else_=c.logged_out_at
                ),
                "expires_at": lambda x: sa.case(
                    (x.expires_at > c.expires_at, x.expires_at), else_=c.expires_at
                ),
            },
        )
        async with self._write("put provider logout") as conn:
            await conn.execute(stmt)

    async def provider_logouts(
        self, provider: str, *, sid: str, subject: str, now: float
    ) -> list[ProviderLogout]:
        c = t.provider_logouts.c
        wanted = [(kind, value) for kind, value in (("sid", sid), ("sub", subject)) if value]
        if not wanted:
            return []
        stmt = sa.select(t.provider_logouts).where(
            c.provider == provider,
            c.expires_at > now,
            sa.or_(*(sa.and_(c.kind == k, c.value == v) for k, v in wanted)),
        )
        async with self._read("find provider logouts") as conn:
            rows = (await conn.execute(stmt)).all()
        found = [
            ProviderLogout(
                provider=r.provider,
                kind=r.kind,
                value=r.value,
                logged_out_at=r.logged_out_at,
                expires_at=r.expires_at,
            )
            for r in rows
        ]
        return sorted(found, key=lambda x: x.kind != "sid")

    async def purge_provider_logouts(self, now: float) -> int:
        async with self._write("purge provider logouts") as conn:
            result = await conn.execute(
                sa.delete(t.provider_logouts).where(t.provider_logouts.c.expires_at <= now)
            )
            return result.rowcount

    # -- failed-login counts

    async def add_login_failures(
        self, keys: Sequence[str], *, now: float, window: float
    ) -> list[LoginFailures]:
        c = t.login_failures.c
        counts: dict[str, LoginFailures] = {}
        async with self._write("count login failures") as conn:
            # One upsert per key, in a fixed order (two writers never wait on each other in a
            # cycle); each is atomic, so concurrent failures on every instance all count.
            ended = c.window_end <= now  # the stored row's window
            for key in sorted(set(keys)):
                stmt = self._upsert(
                    t.login_failures,
                    {"key": key, "failures": 1, "window_end": now + window},
                    key=("key",),
                    update={
                        "failures": sa.case((ended, 1), else_=c.failures + 1),
                        "window_end": lambda x: sa.case((ended, x.window_end), else_=c.window_end),
                    },
                ).returning(c.failures, c.window_end)
                row = (await conn.execute(stmt)).one()
                counts[key] = LoginFailures(key, int(row.failures), float(row.window_end))
        return [counts[k] for k in keys]

    async def forgive_login_failures(
        self, *, clear: Sequence[str] = (), once: Sequence[str] = ()
    ) -> None:
        c = t.login_failures.c
        async with self._write("forgive login failures") as conn:
            if clear:
                await conn.execute(sa.delete(t.login_failures).where(c.key.in_(list(clear))))
            if once:
                await conn.execute(
                    sa.update(t.login_failures)
                    .where(c.key.in_(list(once)), c.failures > 0)
                    .values(failures=c.failures - 1)
                )

    async def purge_login_failures(self, now: float) -> int:
        async with self._write("purge login failures") as conn:
            result = await conn.execute(
                sa.delete(t.login_failures).where(t.login_failures.c.window_end <= now)
            )
            return result.rowcount
