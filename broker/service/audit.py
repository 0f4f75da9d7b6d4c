"""The audit trail: every security-relevant outcome, appended to the store and logged.

Events never carry secrets: callers pass reasons and identifiers, never tokens or passwords.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from broker.clock import Clock
from broker.errors import AuditUnavailable, StoreError
from broker.storage.base import AuditEvent, Store

log = logging.getLogger("broker.audit")

BATCH_SIZE: Final = 200  # a queue this long is written at once
FLUSH_INTERVAL: Final = 0.05  # seconds an event may wait for its batch to fill
MAX_QUEUED: Final = 10_000  # past this, ``record_batched`` waits for the writer (backpressure)
MAX_WRITE: Final = 1_000  # events per transaction
MAX_RETRY_DELAY: Final = 5.0  # seconds between attempts while the store refuses writes
CLOSE_ATTEMPTS: Final = 3


@dataclass(frozen=True)
class RequestInfo:
    """Who is asking, as far as the web layer could tell (trusted-proxy aware)."""

    request_id: str = ""
    source_ip: str = ""
    user_agent: str = ""


class Auditor:
    """Builds audit events, logs each one, and writes them to the store in one of two ways.

    ``record_or_fail`` is write-through and fail-closed: it returns once the row is committed
    and raises ``AuditUnavailable`` (503 on every surface) otherwise. Whatever changes state or
    issues a credential writes its row this way *before* the change or the hand-over, so that
    nothing happens without its audit row (Vault's promise; see docs/audit.md).

    ``record`` is write-through: it returns once the row is committed (or, if the store fails,
    once the failure is logged: a refusal must not turn into an error page). Refusals and
    other events that change nothing use it.

    ``record_batched`` is for the hot path's events that grant nothing by themselves
    (forward-auth's counted allows and its denials, STS and token-exchange refusals): the event
    goes to an in-memory queue and returns at once; a writer task appends
    the queue in one transaction (``Store.append_audit_many``) when ``batch_size`` events are
    waiting or ``flush_interval`` after the first one arrived. The queue is bounded: when
    ``max_queued`` events are waiting, ``record_batched`` waits until the writer has made room
    (backpressure), it never drops an event. A failed write is logged at ERROR and retried with
    a growing delay (up to ``MAX_RETRY_DELAY``); the events stay queued, in order, until they
    are committed.

    Visibility: a batched event reaches the store within about ``flush_interval``. Whoever must
    read the audit log right after an action (tests, an operator tool in this process) calls
    ``await flush()`` first: when it returns normally, every event recorded before the call is
    committed (it raises ``StoreError`` otherwise, and the events stay queued). ``Broker.tick``
    flushes every second and ``Broker.close`` calls ``close()``, which flushes (retrying a few
    times) before the store closes.

    Crash window: on a hard crash (SIGKILL, power loss, OOM kill) the batched events of the last
    ``flush_interval`` or so (~50–100 ms; longer while the store is refusing writes) that were
    not yet committed are lost from the store. Every event is also logged (``broker.audit``
    logger, INFO for successes, WARNING otherwise) at the moment it is recorded, so the log
    keeps a trace of them.
    """

    def __init__(
        self,
        store: Store,
        clock: Clock,
        *,
        batch_size: int = BATCH_SIZE,
        flush_interval: float = FLUSH_INTERVAL,
        max_queued: int = MAX_QUEUED,
    ) -> None:
        self._store = store
        self._clock = clock
        self.batch_size = max(1, batch_size)
        self.flush_interval = flush_interval
        self.max_queued = max(self.batch_size, max_queued)
        # Queued events stay at the head of the list until their transaction has committed.
        self._queue: list[AuditEvent] = []
        self._written = 0  # events committed (or given up at close) since start
        self._queued = 0  # events ever queued
        self._lock = asyncio.Lock()  # one write at a time, in queue order
        self._pending = asyncio.Event()  # the queue is not empty
        self._full = asyncio.Event()  # a batch is ready: write without waiting
        self._room = asyncio.Condition()
        self._writer: asyncio.Task[None] | None = None
        self._closed = False

    # --- building and logging -----------------------------------------------------------

    def _event(
        self,
        action: str,
        outcome: str,
        req: RequestInfo | None,
        principal: str,
        reason: str,
        details: Mapping[str, Any] | None,
        at: float | None,
    ) -> AuditEvent:
        req = req or RequestInfo()
        event = AuditEvent(
            time=self._clock.now() if at is None else at,
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
        return event

    # --- write-through ------------------------------------------------------------------

    async def record(
        self,
        action: str,
        outcome: str,
        *,
        req: RequestInfo | None = None,
        principal: str = "",
        reason: str = "",
        details: Mapping[str, Any] | None = None,
        at: float | None = None,
    ) -> None:
        """Write the event now; returns when it is committed or its failure logged.

        ``at``: the event's time if not now (an event recorded after the fact)."""
        event = self._event(action, outcome, req, principal, reason, details, at)
        try:
            await self._store.append_audit(event)
        except StoreError:
            # The outcome already happened (or was already refused); losing the row must not
            # turn a refusal into an error page, but it must be loud.
            log.exception("could not write audit event %s/%s", action, outcome)

    async def record_or_fail(
        self,
        action: str,
        outcome: str,
        *,
        req: RequestInfo | None = None,
        principal: str = "",
        reason: str = "",
        details: Mapping[str, Any] | None = None,
    ) -> None:
        """Write the event now; ``AuditUnavailable`` if the store does not commit it. Call it
        before making the change (or handing out the credential) the event records."""
        await self.record_all_or_fail(
            self.event(
                action, outcome, req=req, principal=principal, reason=reason, details=details
            )
        )

    def event(
        self,
        action: str,
        outcome: str,
        *,
        req: RequestInfo | None = None,
        principal: str = "",
        reason: str = "",
        details: Mapping[str, Any] | None = None,
    ) -> AuditEvent:
        """An event for ``record_all_or_fail`` (logged now, as every recorded event is)."""
        return self._event(action, outcome, req, principal, reason, details, None)

    async def record_all_or_fail(self, *events: AuditEvent) -> None:
        """``record_or_fail`` for several events, in one transaction: all are written or none
        (and ``AuditUnavailable`` is raised)."""
        try:
            await self._store.append_audit_many(events)
        except StoreError as e:
            what = ",".join(f"{ev.action}/{ev.outcome}" for ev in events)
            log.error("could not write audit event(s) %s: refusing the request", what)
            raise AuditUnavailable(f"audit_unavailable:{events[0].action}") from e

    # --- batched ------------------------------------------------------------------------

    async def record_batched(
        self,
        action: str,
        outcome: str,
        *,
        req: RequestInfo | None = None,
        principal: str = "",
        reason: str = "",
        details: Mapping[str, Any] | None = None,
        at: float | None = None,
        wait: bool = True,
    ) -> None:
        """Queue the event for the writer; see the class documentation.

        Waits only while the queue is full. ``wait=False`` queues even then: only for a caller
        that bounds its own backlog and must not block (forward-auth's periodic flush, which
        checks ``backlogged`` first). After ``close()`` this writes through, like ``record``."""
        event = self._event(action, outcome, req, principal, reason, details, at)
        if self._closed:
            await self._write_through(event)
            return
        if wait and len(self._queue) >= self.max_queued:
            async with self._room:
                await self._room.wait_for(lambda: len(self._queue) < self.max_queued)
            if self._closed:
                await self._write_through(event)
                return
        self._queue.append(event)
        self._queued += 1
        self._pending.set()
        if len(self._queue) >= self.batch_size:
            self._full.set()
        self._ensure_writer()

    @property
    def queued(self) -> int:
        """Events waiting to be committed (including a batch being written)."""
        return len(self._queue)

    @property
    def backlogged(self) -> bool:
        """The queue is full: the store is slow or refusing writes."""
        return len(self._queue) >= self.max_queued

    async def flush(self) -> None:
        """Commit every event queued before this call. Raises ``StoreError`` if the store
        refuses (after logging it); the events stay queued for the writer's next attempt."""
        target = self._queued
        while self._written < target:
            await self._write_some()

    async def close(self) -> None:
        """Stop the writer and commit what is queued (a few attempts). Events that still cannot
        be written are reported at ERROR (each was logged when recorded); later
        ``record_batched`` calls write through."""
        self._closed = True
        writer, self._writer = self._writer, None
        if writer is not None:
            # never cancel a write half-way (it may have committed): wait for it to end
            async with self._lock:
                writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
        for attempt in range(CLOSE_ATTEMPTS):
            try:
                await self.flush()
                break
            except StoreError:
                if attempt + 1 < CLOSE_ATTEMPTS:
                    await asyncio.sleep(self.flush_interval * 2**attempt)
        if self._queue:
            lost = len(self._queue)
            log.error(
                "AUDIT EVENTS LOST: %d audit events could not be written at shutdown "
                "(each was logged by broker.audit when recorded)",
                lost,
            )
            self._queue.clear()
            self._written += lost
        async with self._room:
            self._room.notify_all()

    # --- the writer ---------------------------------------------------------------------

    async def _write_through(self, event: AuditEvent) -> None:
        try:
            await self._store.append_audit(event)
        except StoreError:
            log.exception("could not write audit event %s/%s", event.action, event.outcome)

    async def _write_some(self) -> None:
        """Commit the head of the queue (up to ``MAX_WRITE`` events) in one transaction."""
        async with self._lock:
            batch = self._queue[:MAX_WRITE]
            if not batch:
                return
            try:
                await self._store.append_audit_many(batch)
            except StoreError as e:
                log.error(
                    "could not write %d audit events (%d queued; kept, will retry): %s",
                    len(batch),
                    len(self._queue),
                    e.reason,
                )
                raise
            del self._queue[: len(batch)]
            self._written += len(batch)
            if len(self._queue) < self.batch_size:
                self._full.clear()
            if not self._queue:
                self._pending.clear()
        async with self._room:
            self._room.notify_all()

    def _ensure_writer(self) -> None:
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._run(), name="audit-writer")

    async def _run(self) -> None:
        delay = first = min(self.flush_interval, MAX_RETRY_DELAY)
        while True:
            await self._pending.wait()
            if not self._full.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full.wait(), self.flush_interval)
            try:
                await self._write_some()
                delay = first
            except StoreError:
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_RETRY_DELAY)
            except Exception:
                log.exception("audit writer failed; %d events kept, will retry", len(self._queue))
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_RETRY_DELAY)
