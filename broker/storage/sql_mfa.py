"""Virtual MFA devices: the SQL half of the ``Store`` protocol's ``*_mfa_device*`` methods.

Single use of a code is the compare-and-set ``UPDATE ... SET last_step = :step WHERE
last_step < :step`` (one statement: of concurrent requests with the same code, one changes the
row). At most one device is enabled per user: the unique index on ``user_id`` decides races
between two enables (the loser gets a unique violation, reported as False).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from broker.errors import AlreadyExists
from broker.storage import schema as t
from broker.storage.base import MfaDevice
from broker.storage.sql_base import SqlBase


def _device(row: sa.Row[Any]) -> MfaDevice:
    m = row._mapping
    return MfaDevice(
        serial_number=m["serial_number"],
        name=m["name"],
        path=m["path"],
        seed_sealed=bytes(m["seed_sealed"]),
        seal_kid=m["seal_kid"],
        created_at=m["created_at"],
        user_id=m["user_id"],
        enabled_at=m["enabled_at"],
        last_step=int(m["last_step"]),
    )


class MfaSql(SqlBase):
    """Virtual MFA devices and the single use of their codes."""

    async def create_mfa_device(self, device: MfaDevice) -> None:
        async with self._write("create MFA device") as conn:
            await conn.execute(
                sa.insert(t.mfa_devices).values(
                    serial_number=device.serial_number,
                    name=device.name,
                    path=device.path,
                    user_id=device.user_id,
                    seed_sealed=device.seed_sealed,
                    seal_kid=device.seal_kid,
                    created_at=device.created_at,
                    enabled_at=device.enabled_at,
                    last_step=device.last_step,
                )
            )

    async def get_mfa_device(self, serial_number: str) -> MfaDevice | None:
        c = t.mfa_devices.c
        async with self._read("get MFA device") as conn:
            row = (
                await conn.execute(sa.select(t.mfa_devices).where(c.serial_number == serial_number))
            ).first()
        return _device(row) if row is not None else None

    async def list_mfa_devices(self, *, user_id: str | None = None) -> list[MfaDevice]:
        c = t.mfa_devices.c
        stmt = sa.select(t.mfa_devices).order_by(c.serial_number)
        if user_id is not None:
            stmt = stmt.where(c.user_id == user_id)
        async with self._read("list MFA devices") as conn:
            rows = (await conn.execute(stmt)).all()
        return [_device(r) for r in rows]

    async def enable_mfa_device(
        self, serial_number: str, user_id: str, *, step: int, now: float
    ) -> bool:
        c = t.mfa_devices.c
        stmt = (
            sa.update(t.mfa_devices)
            .where(c.serial_number == serial_number, c.user_id.is_(None), c.last_step < step)
            .values(user_id=user_id, enabled_at=now, last_step=step)
        )
        try:
            async with self._write("enable MFA device") as conn:
                return (await conn.execute(stmt)).rowcount == 1
        except AlreadyExists:  # the unique index: the user has an enabled device already
            return False

    async def advance_mfa_step(self, serial_number: str, user_id: str, step: int) -> bool:
        c = t.mfa_devices.c
        stmt = (
            sa.update(t.mfa_devices)
            .where(c.serial_number == serial_number, c.user_id == user_id, c.last_step < step)
            .values(last_step=step)
        )
        async with self._write("use MFA code") as conn:
            return (await conn.execute(stmt)).rowcount == 1

    async def deactivate_mfa_device(
        self, serial_number: str, user_id: str, *, step: int | None = None
    ) -> bool:
        c = t.mfa_devices.c
        where = [c.serial_number == serial_number, c.user_id == user_id]
        values: dict[str, Any] = {"user_id": None, "enabled_at": None}
        if step is not None:
            where.append(c.last_step < step)
            values["last_step"] = step
        async with self._write("deactivate MFA device") as conn:
            result = await conn.execute(sa.update(t.mfa_devices).where(*where).values(**values))
            return result.rowcount == 1

    async def purge_unassigned_mfa_devices(self, *, path: str, created_before: float) -> int:
        c = t.mfa_devices.c
        stmt = sa.delete(t.mfa_devices).where(
            c.path == path, c.user_id.is_(None), c.created_at < created_before
        )
        async with self._write("purge MFA enrolments") as conn:
            return int((await conn.execute(stmt)).rowcount)

    async def delete_mfa_device(self, serial_number: str) -> bool:
        c = t.mfa_devices.c
        async with self._write("delete MFA device") as conn:
            result = await conn.execute(
                sa.delete(t.mfa_devices).where(
                    c.serial_number == serial_number, c.user_id.is_(None)
                )
            )
            return result.rowcount == 1
