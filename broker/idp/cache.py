"""A value fetched on demand from a provider: cached for a time, refreshed by one request at a time.

``Refreshing`` is what discovery and the JWKS share. Concurrent callers that need a fetch wait
on one shared task (so a thousand requests make one HTTP call), and ``may_attempt`` says whether
the cooldown since the last attempt has passed (so a flood of unknown key ids, or a provider
that is down, costs at most one request per cooldown). There is no lock shared between
providers: each provider's client holds its own ``Refreshing`` values.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from broker.clock import Clock
from broker.errors import ProviderUnavailable

T = TypeVar("T")

log = logging.getLogger(__name__)


class Refreshing(Generic[T]):
    def __init__(
        self,
        fetch: Callable[[], Awaitable[T]],
        *,
        clock: Clock,
        ttl: float,
        cooldown: float,
        name: str,
    ) -> None:
        self._fetch = fetch
        self._clock = clock
        self._ttl = ttl
        self._cooldown = cooldown
        self._name = name
        self._value: T | None = None
        self._fetched_at = 0.0
        self._attempted_at: float | None = None
        self._inflight: asyncio.Task[T] | None = None

    @property
    def value(self) -> T | None:
        """The last value fetched successfully (possibly stale), or None."""
        return self._value

    def may_attempt(self) -> bool:
        """True when a fetch is under way (joining it is free) or the cooldown has passed."""
        if self._inflight is not None:
            return True
        return (
            self._attempted_at is None or self._clock.now() - self._attempted_at >= self._cooldown
        )

    async def refresh(self) -> T:
        """Fetch now, or join the fetch already under way."""
        task = self._inflight
        if task is None:
            self._attempted_at = self._clock.now()
            task = asyncio.get_running_loop().create_task(self._run())
            self._inflight = task
            task.add_done_callback(self._done)
        # shield: one caller giving up (cancelled) must not cancel the fetch the others wait on.
        return await asyncio.shield(task)

    async def _run(self) -> T:
        started = self._clock.now()
        value = await self._fetch()
        self._value = value
        self._fetched_at = started
        return value

    def _done(self, task: asyncio.Task[T]) -> None:
        if self._inflight is task:
            self._inflight = None

    async def get(self) -> T:
        """The cached value; fetched when there is none, refreshed when older than the ttl.

        When a refresh fails but an older value exists, the older value is used (and the next
        attempt waits for the cooldown): a provider's brief outage does not stop logins.
        """
        value = self._value
        if value is None:
            return await self.refresh()
        if self._clock.now() - self._fetched_at < self._ttl or not self.may_attempt():
            return value
        try:
            return await self.refresh()
        except ProviderUnavailable as e:
            log.warning("%s: refresh failed (%s); using the cached copy", self._name, e.reason)
            return value
