"""Administering users (the IAM API's ``UpdateUser``/``DeleteUser``/login profiles): the SQL
half of the ``Store`` protocol's ``rename_user``, ``delete_user`` and the conditional password
writes ``create_password``/``update_password``/``clear_password``."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from broker.errors import Conflict, RecordNotFound
from broker.storage import schema as t
from broker.storage.base import User
from broker.storage.sql_base import SqlBase


def user_from_row(row: sa.Row[Any]) -> User:
    m = row._mapping
    return User(
        id=m["id"],
        provider=m["provider"],
        subject=m["subject"],
        name=m["name"],
        email=m["email"],
        groups=tuple(m["groups"]),
        created_at=m["created_at"],
        first_login_at=m["first_login_at"],
        last_login_at=m["last_login_at"],
        password_hash=m["password_hash"],
        must_change_password=bool(m["must_change_password"]),
        disabled=bool(m["disabled"]),
        password_changed_at=m["password_changed_at"],
    )


def user_values(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "provider": user.provider,
        "subject": user.subject,
        "name": user.name,
        "email": user.email,
        "groups": list(user.groups),
        "created_at": user.created_at,
        "first_login_at": user.first_login_at,
        "last_login_at": user.last_login_at,
        "password_hash": user.password_hash,
        "must_change_password": user.must_change_password,
        "disabled": user.disabled,
        "password_changed_at": user.password_changed_at,
    }


class UsersAdminMixin(SqlBase):
    async def rename_user(self, user_id: str, name: str, *, subject: str | None = None) -> User:

        values: dict[str, str] = {"name": name}
        if subject is not None:
            values["subject"] = subject
        async with self._write("rename user") as conn:
            row = (
                await conn.execute(
                    sa.update(t.users)
                    .where(t.users.c.id == user_id)
                    .values(**values)
                    .returning(*t.users.c)
                )
            ).first()
            if row is None:
                raise RecordNotFound(f"user {user_id!r} not found")
            return user_from_row(row)

    async def create_password(
        self, user_id: str, password_hash: str, *, must_change: bool, now: float
    ) -> bool:
        values: dict[str, str | float] = {"password_hash": password_hash}
        values["password_changed_at"] = now
        return await self._set_password_if(user_id, values, must_change, exists=False)

    async def update_password(
        self, user_id: str, password_hash: str | None, *, must_change: bool, now: float
    ) -> bool:
        values: dict[str, str | float] = {}
        if password_hash is not None:  # only the flag changes: the password keeps its age
            values = {"password_hash": password_hash, "password_changed_at": now}
        return await self._set_password_if(user_id, values, must_change, exists=True)

    async def _set_password_if(
        self, user_id: str, values: dict[str, str | float], must_change: bool, *, exists: bool
    ) -> bool:
        u = t.users
        has = u.c.password_hash.is_not(None) if exists else u.c.password_hash.is_(None)
        async with self._write("set password") as conn:
            result = await conn.execute(
                sa.update(u)
                .where(u.c.id == user_id, has)
                .values(**values, must_change_password=must_change)
            )
            if result.rowcount:
                return True
            await self._require(conn, u.c.id, user_id, "user")
            return False

    async def clear_password(self, user_id: str) -> bool:
        async with self._write("clear password") as conn:
            current = (
                await conn.execute(
                    sa.select(t.users.c.password_hash).where(t.users.c.id == user_id)
                )
            ).first()
            if current is None:
                raise RecordNotFound(f"user {user_id!r} not found")
            if current.password_hash is None:
                return False
            await conn.execute(
                sa.update(t.users)
                .where(t.users.c.id == user_id)
                .values(password_hash=None, must_change_password=False, password_changed_at=None)
            )
            return True

    async def delete_user(self, user_id: str) -> User:

        async with self._write("delete user") as conn:
            # The row first: on PostgreSQL this waits for anyone who holds it ``FOR KEY SHARE``
            # (adding a membership or a policy), whose rows the checks below then see.
            row = (
                await conn.execute(
                    sa.delete(t.users).where(t.users.c.id == user_id).returning(*t.users.c)
                )
            ).first()
            if row is None:
                raise RecordNotFound(f"user {user_id!r} not found")
            user = user_from_row(row)
            problems: list[str] = []
            if user.password_hash is not None:
                problems.append("login_profile")
            gm = t.group_members
            if (await conn.execute(sa.select(gm.c.user_id).where(gm.c.user_id == user_id))).first():
                problems.append("groups")
            ak = t.access_keys
            if (await conn.execute(sa.select(ak.c.user_id).where(ak.c.user_id == user_id))).first():
                problems.append("access_keys")
            mfa = t.mfa_devices.c
            if (await conn.execute(sa.select(mfa.user_id).where(mfa.user_id == user_id))).first():
                problems.append("mfa_devices")  # as AWS: deactivate them first
            for table, what in (
                (t.policy_attachments, "attached_policies"),
                (t.inline_policies, "inline_policies"),
            ):
                stmt = sa.select(table.c.principal).where(
                    table.c.principal_type == "user", table.c.principal == user_id
                )
                if (await conn.execute(stmt)).first():
                    problems.append(what)
            if problems:  # rolled back with the transaction: nothing deleted
                raise Conflict(
                    "user_in_use:" + ",".join(problems),
                    public_message=f"Cannot delete entity, must remove {', '.join(problems)} "
                    "first.",
                )
            pb = t.permissions_boundaries
            await conn.execute(
                sa.delete(pb).where(pb.c.principal_type == "user", pb.c.principal == user_id)
            )
            await conn.execute(
                sa.delete(t.tags).where(t.tags.c.kind == "user", t.tags.c.principal == user_id)
            )
            return user
