"""Password hashing off the event loop: a small, bounded pool of low-priority threads.

An argon2id hash or verification costs 0.1–0.25 s of CPU. Run on the event loop, a burst of
failed logins stalls every other request (``/auth`` above all). argon2-cffi releases the GIL
while it hashes, so threads run it in parallel with the loop; each worker lowers its own
scheduling priority (``SCHED_IDLE`` where the OS has it, else nice 19; best effort) so that
hashing takes what CPU the loop leaves rather than competing with it. The pool accepts at most
``workers + queue`` hashes at once; beyond that it refuses with ``Overloaded`` (503 and
``Retry-After``) instead of letting a flood of logins queue without bound.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import threading
from collections.abc import Callable
from typing import TypeVar

from broker.errors import Overloaded
from broker.service.passwords import hash_password, verify_password

log = logging.getLogger(__name__)

T = TypeVar("T")


def lower_thread_priority() -> None:
    """Make the calling thread yield the CPU to everything else (Linux applies both calls to
    the calling thread only; the threads argon2 starts for its lanes inherit it)."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))  # type: ignore[attr-defined,unused-ignore]
        return
    except (AttributeError, OSError):
        pass
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    except (AttributeError, OSError) as e:
        log.debug("could not lower the hashing thread's priority: %s", e)


class PasswordHashing:
    """``hash`` and ``verify`` in worker threads, at most ``workers + queue`` at once."""

    def __init__(self, *, workers: int, queue: int) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=workers,
            thread_name_prefix="broker-hash",
            initializer=lower_thread_priority,
        )
        # Taken on submission, given back by the worker when the job ends (even if the request
        # that wanted it was cancelled meanwhile), so the bound holds for the threads' real work.
        self._slots = threading.BoundedSemaphore(workers + queue)
        self.capacity = workers + queue

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        if not self._slots.acquire(blocking=False):
            raise Overloaded("password_hashing_queue_full")
        try:
            future = self._pool.submit(fn, *args)
        except BaseException:
            self._slots.release()
            raise
        future.add_done_callback(lambda _: self._slots.release())
        return await asyncio.wrap_future(future)

    async def hash(self, password: str) -> str:
        return await self._run(hash_password, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """True if ``password`` matches; a missing hash costs the same and is False."""
        return await self._run(verify_password, password_hash, password)

    def close(self) -> None:
        """Stop taking work; hashes already running finish in their threads."""
        self._pool.shutdown(wait=False, cancel_futures=True)
