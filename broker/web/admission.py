"""Admission control: under overload the broker refuses excess requests early and cheaply
(503 + ``Retry-After``) instead of letting them queue until every answer is late.

A broker process is one asyncio event loop on one core, and a request can wait in two places:

- **for a turn** (``[server] max_concurrency`` handlers at once): a request beyond the limit waits
  for a free slot at most ``[server] queue_timeout``, then is refused. This bounds the work the
  loop interleaves, so the time each admitted request takes. Two rules keep a standing queue
  from forming (measured with bench/overload.py: with the wait bounded by time alone, under 10x
  the load every admitted request had first waited the whole ``queue_timeout``, and every
  refusal came that late too): when as many requests wait as are handled, the oldest waiting
  one is refused for each newcomer (``queue_full``), and while the queue is more than half full
  a free slot goes to the newest request rather than the oldest (adaptive LIFO, as in
  Facebook's "Fail at Scale"): under overload the requests served are fresh ones, whose
  clients are still waiting, and the p50/p99 of admitted requests fell by about a third and a
  quarter. A short queue (a burst) is still served first come, first served;
- **unseen, before any handler runs**: in the kernel's accept queue, in a socket's buffer, in the
  event loop's ready queue. No counter sees these requests: when the loop is busy with
  CPU-bound work (handlers that never wait), the slot limit never trips while requests wait
  longer and longer. What they wait is the event loop's lag (every ready callback runs once
  per loop iteration, so a request waits about one iteration): a ticker measures how late it
  wakes, and while that lag is over ``queue_timeout`` new requests are refused as soon as a
  handler sees them, before they do any work.

Refusing costs no store access and no cryptography: a counter, and the surface's own 503.
Refusals are counted (``/metrics``) and logged at most once a second, never audited one by one
(writing an audit row per refusal would add load exactly when there is too much).

Pure asyncio: the web layer calls ``check_lag``, ``acquire`` and ``release`` and renders the
``Overloaded`` they raise in each surface's own dialect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, deque
from collections.abc import AsyncIterator

from broker.errors import Overloaded

log = logging.getLogger(__name__)

TICK = 0.05  # seconds between two lag measurements
RETRY_AFTER = 1  # seconds: overload passes quickly, or clients should spread their retries
LOG_EVERY = 1.0  # at most one log line per second about refusals
REFUSED = "broker_overload_refused_total"
REASONS = ("event_loop_lag", "queue_full", "queue_timeout")  # why a request was refused


class Admission:
    def __init__(self, max_concurrency: int, queue_timeout: float) -> None:
        if max_concurrency < 1 or queue_timeout <= 0:
            raise ValueError("max_concurrency must be >= 1 and queue_timeout > 0")
        self.max_concurrency = max_concurrency
        self.queue_timeout = queue_timeout
        self.in_flight = 0
        self.lag = 0.0  # seconds: how late the ticker's last wake-up was
        self.shed: Counter[str] = Counter()  # refusals by reason
        self._waiters: deque[asyncio.Future[None]] = deque()
        self.waiting = 0  # requests waiting for a slot now
        self._logged_at = 0.0
        self._logged_count = 0

    def check_lag(self) -> None:
        """Refuse a request that has (about) already waited ``queue_timeout`` unseen."""
        if self.lag > self.queue_timeout:
            raise self._refuse("event_loop_lag")

    async def acquire(self) -> None:
        """A slot, now or within ``queue_timeout``; else ``Overloaded``. Pair with ``release``."""
        if self.in_flight < self.max_concurrency and not self.waiting:
            self.in_flight += 1
            return
        if self.waiting >= self.max_concurrency:  # as many wait as are served: no more
            self._settle(self._oldest(), Overloaded("queue_full"))
        if len(self._waiters) > 2 * self.waiting + 16:
            # settled waiters left behind (timed out, gone) are dropped now and then, so
            # the queue's memory follows the waiting requests, not the refused ones
            self._waiters = deque(w for w in self._waiters if not w.done())
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.append(waiter)
        self.waiting += 1
        timer = loop.call_later(self.queue_timeout, self._settle, waiter, _TIMED_OUT)
        try:
            await waiter
        except Overloaded as e:
            raise self._refuse(e.reason) from None
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self.release()  # handed a slot just as the caller went away: pass it on
            raise
        finally:
            timer.cancel()
            if not waiter.done():
                waiter.cancel()
            if waiter.cancelled():  # (the caller went away) not settled: no longer waiting
                self.waiting -= 1
        # ``release`` handed its slot over: ``in_flight`` already counts this request

    def release(self) -> None:
        """The slot goes to a waiting request: the longest-waiting one, or while the queue is
        more than half full (overload, not a burst) the newest one (adaptive LIFO)."""
        lifo = self.waiting > self.max_concurrency // 2
        while self._waiters:
            waiter = self._waiters.pop() if lifo else self._waiters.popleft()
            if not waiter.done():
                self._settle(waiter, None)
                return
        self.in_flight -= 1

    def _oldest(self) -> asyncio.Future[None] | None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                return waiter
        return None

    def _settle(self, waiter: asyncio.Future[None] | None, error: Overloaded | None) -> None:
        if waiter is None or waiter.done():
            return
        self.waiting -= 1
        if error is None:
            waiter.set_result(None)
        else:
            waiter.set_exception(Overloaded(error.reason))

    def _refuse(self, reason: str) -> Overloaded:
        self.shed[reason] += 1
        now = time.monotonic()
        if now - self._logged_at >= LOG_EVERY:
            total = sum(self.shed.values())
            log.warning(
                "overloaded: refused %d requests since the last report (%s); %d in flight, "
                "%d waiting, event loop lag %.0f ms",
                total - self._logged_count,
                reason,
                self.in_flight,
                self.waiting,
                self.lag * 1000,
            )
            self._logged_at, self._logged_count = now, total
        return Overloaded(f"overloaded:{reason}", retry_after=RETRY_AFTER)

    async def measure_lag(self, stop: asyncio.Event) -> None:
        """Until ``stop``: every ``TICK``, how much later than asked the loop woke us."""
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            start = loop.time()
            await asyncio.sleep(TICK)
            self.lag = max(0.0, loop.time() - start - TICK)

    def refusals(self) -> dict[str, int]:
        """Refusals by reason, as Prometheus samples of ``broker_overload_refused_total`` (counters:
        ``/metrics`` sums them over the workers of ``broker serve --workers N``)."""
        return {f'{REFUSED}{{reason="{reason}"}}': self.shed[reason] for reason in REASONS}

    def gauges(self) -> list[str]:
        """Prometheus text lines of this process's state: requests in flight and waiting, the
        event loop's lag (under ``--workers N``, the answering worker's)."""
        return [
            "# TYPE broker_requests_in_flight gauge",
            f"broker_requests_in_flight {self.in_flight}",
            "# TYPE broker_requests_waiting gauge",
            f"broker_requests_waiting {self.waiting}",
            "# TYPE broker_event_loop_lag_seconds gauge",
            f"broker_event_loop_lag_seconds {self.lag:.4f}",
        ]

    def metrics(self) -> list[str]:
        """This process's lines alone: refusals (every reason, zeros too) and gauges."""
        lines = [f"# TYPE {REFUSED} counter"]
        lines += [f"{k} {v}" for k, v in self.refusals().items()]
        return lines + self.gauges()

    async def running(self) -> AsyncIterator[None]:
        """The lag ticker, for as long as the context is open (an aiohttp ``cleanup_ctx``)."""
        stop = asyncio.Event()
        task = asyncio.create_task(self.measure_lag(stop))
        try:
            yield
        finally:
            stop.set()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


_TIMED_OUT = Overloaded("queue_timeout")
