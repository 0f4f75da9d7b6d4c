"""What each principal was allowed to do, counted in memory and written to the store in batches
(table ``access_activity``): the unused-access review, service last-accessed details and policy
generation read it.

``note`` is on the hot path (forward-auth's ``/auth``): a dict lookup and, for a key already
counted, three stores into a small list. No I/O: ``flush`` (the broker's periodic tick, with the
batched last-seen times) hands the aggregate to the store as one upsert per batch of rows, which
adds the counts and widens ``first_at``/``last_at`` (several instances add to the same rows).

Bounded: at most ``max_keys`` distinct (principal, action, resource) keys are kept between two
flushes. Past that a new key is *collapsed* to a coarser resource (a URL to its origin and
``/*``, an ARN to everything before its last ``/`` and ``/*``, anything else to ``*``), in a
second map of at most ``max_keys // 10`` keys, so that a flood of distinct paths still shows
what was used, only less precisely. When that is full too the note is dropped and counted
(``dropped``, logged at the next flush). What a collapsed key stands for is recorded as is: a
policy generated from it grants the wildcard (see ``broker.service.policy_generation``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from broker.clock import Clock
from broker.errors import StoreError
from broker.storage.base import ActivityRow, Store

log = logging.getLogger(__name__)

DEFAULT_MAX_KEYS = 100_000
FLUSH_BATCH = 500  # rows per upsert statement

Key = tuple[str, str, str]  # principal ARN, action, resource


def collapse_resource(resource: str) -> str:
    """The coarser resource a new key is counted under once the aggregate is full."""
    scheme, sep, rest = resource.partition("://")
    if sep:
        host = rest.split("/", 1)[0]
        return f"{scheme}://{host}/*"
    if resource.startswith("arn:") and "/" in resource:
        return resource.rsplit("/", 1)[0] + "/*"
    return "*"


class ActivityLog:
    def __init__(self, store: Store, clock: Clock, *, max_keys: int = DEFAULT_MAX_KEYS) -> None:
        self._store = store
        self._clock = clock
        self.max_keys = max_keys
        self._counts: dict[Key, list[float]] = {}  # key -> [first_at, last_at, count]
        self._collapsed: dict[Key, list[float]] = {}
        self.dropped = 0  # notes lost since the last flush (both maps full)

    def note(self, principal: str, action: str, resource: str, count: int = 1) -> None:
        """An allowed decision (``count`` of them, now). Never blocks, never fails."""
        key = (principal, action, resource)
        entry = self._counts.get(key)
        now = self._clock.now()
        if entry is not None:
            entry[1] = now
            entry[2] += count
        elif len(self._counts) < self.max_keys:
            self._counts[key] = [now, now, count]
        else:
            self._note_collapsed((principal, action, collapse_resource(resource)), now, count)

    def _note_collapsed(self, key: Key, now: float, count: int) -> None:
        entry = self._collapsed.get(key)
        if entry is not None:
            entry[1] = now
            entry[2] += count
        elif len(self._collapsed) < max(1, self.max_keys // 10):
            self._collapsed[key] = [now, now, count]
        else:
            self.dropped += count

    def __len__(self) -> int:
        return len(self._counts) + len(self._collapsed)

    def pending(self) -> list[ActivityRow]:
        """What is counted and not yet written (tests, diagnostics)."""
        return [_row(k, v) for m in (self._counts, self._collapsed) for k, v in m.items()]

    async def flush(self) -> int:
        """Write the aggregate (one upsert per ``FLUSH_BATCH`` rows); returns the rows written.
        On a store error the counts are merged back (within the bounds) and it raises."""
        if not self._counts and not self._collapsed and not self.dropped:
            return 0
        counts, self._counts = self._counts, {}
        collapsed, self._collapsed = self._collapsed, {}
        if self.dropped:
            log.warning(
                "access activity: %d allowed decisions were not recorded (more than %d distinct "
                "keys between two flushes)",
                self.dropped,
                self.max_keys + self.max_keys // 10,
            )
            self.dropped = 0
        rows = [_row(k, v) for m in (counts, collapsed) for k, v in m.items()]
        start = 0
        try:
            while start < len(rows):
                await self._store.add_activity(rows[start : start + FLUSH_BATCH])
                start += FLUSH_BATCH
        except StoreError:
            self._merge(rows[start:])  # each batch is one transaction: these were not written
            raise
        return len(rows)

    def _merge(self, rows: Iterable[ActivityRow]) -> None:
        """Put rows that could not be written back (a later flush retries them)."""
        for r in rows:
            key = (r.principal_arn, r.action, r.resource)
            entry = self._counts.get(key)
            if entry is not None:
                entry[0] = min(entry[0], r.first_at)
                entry[1] = max(entry[1], r.last_at)
                entry[2] += r.count
            elif len(self._counts) < self.max_keys:
                self._counts[key] = [r.first_at, r.last_at, float(r.count)]
            else:
                self.dropped += r.count


def _row(key: Key, entry: list[float]) -> ActivityRow:
    return ActivityRow(key[0], key[1], key[2], entry[0], entry[1], int(entry[2]))
