"""Rows of ``access_keys`` and ``mfa_devices`` written straight into a store's tables, for
the credentials report's tests (the report only reads them; their APIs live elsewhere)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from broker.storage import schema as t
from broker.storage.sql import SqlStore


async def insert_access_key(
    store: Any,
    user_id: str,
    key_id: str,
    *,
    status: str = "Active",
    created_at: float,
    last_used_at: float | None = None,
    region: str | None = None,
    service: str | None = None,
) -> None:
    assert isinstance(store, SqlStore)
    async with store._engine.begin() as conn:
        await conn.execute(
            sa.insert(t.access_keys).values(
                access_key_id=key_id,
                user_id=user_id,
                secret_sealed=b"sealed",  # never read by the report
                seal_kid="test",
                status=status,
                created_at=created_at,
                last_used_at=last_used_at,
                last_used_region=region,
                last_used_service=service,
            )
        )


async def insert_mfa_device(
    store: Any, serial: str, *, user_id: str | None, enabled_at: float | None, created_at: float
) -> None:
    """A virtual MFA device; ``user_id``/``enabled_at`` None: created but not enabled."""
    assert isinstance(store, SqlStore)
    async with store._engine.begin() as conn:
        await conn.execute(
            sa.insert(t.mfa_devices).values(
                serial_number=serial,
                name=serial.rsplit("/", 1)[-1],
                path="/",
                user_id=user_id,
                seed_sealed=b"sealed",
                seal_kid="test",
                created_at=created_at,
                enabled_at=enabled_at,
            )
        )
