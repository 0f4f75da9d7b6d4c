"""The audit trail: every security-relevant outcome, appended to the store and logged.

Events never carry secrets: callers pass reasons and identifiers, never tokens or passwords.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from broker.clock import Clock
from broker.errors import StoreError
from broker.storage.base import AuditEvent, Store

log = logging.getLogger("broker.audit")


@dataclass(frozen=True)
class RequestInfo:
    """Who is asking, as far as the web layer could tell (trusted-proxy aware)."""

    request_id: str = ""
    source_ip: str = ""
    user_agent: str = ""


class Auditor:
    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    async def record(
        self,
        action: str,
        outcome: str,
        *,
        req: RequestInfo | None = None,
        principal: str = "",
        reason: str = "",
        details: Mapping[str, Any] | None = None,
    ) -> None:
        req = req or RequestInfo()
        event = AuditEvent(
            time=self._clock.now(),
            action=action,
            outcome=outcome,
            request_id=req.request_id,
            principal=principal,
            reason=reason,
            source_ip=req.source_ip,
            details=dict(details or {}),
        )
        level = logging.INFO if outcome == "success" else logging.WARNING
        log.log(
            level,
            "audit %s %s principal=%s reason=%s",
            action,
            outcome,
            principal or "-",
            reason or "-",
            extra={"request_id": req.request_id},
        )
        try:
            await self._store.append_audit(event)
        except StoreError:
            # The outcome already happened (or was already refused); losing the row must not
            # turn a refusal into an error page, but it must be loud.
            log.exception("could not write audit event %s/%s", action, outcome)
