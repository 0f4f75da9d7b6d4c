"""What ``broker serve --workers N`` runs around the app: the first start, done once by the
supervisor before it forks (``first_start``), and one worker process (``serve_worker``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
from aiohttp import web

from broker.config import Settings
from broker.logs import setup_logging
from broker.runtime import tune_for_serving
from broker.service.container import Broker
from broker.web.app import create_app
from broker.web.keys import SHARED_COUNTERS
from broker.web.ops import own_counts
from broker.worker_metrics import WRITE_SECONDS, SharedCounters

log = logging.getLogger(__name__)
# On SIGTERM a worker finishes its requests for up to this long (aiohttp's default), then cuts
# off what is left after a last short wait.
DRAIN_SECONDS = 60.0
CUT_OFF_SECONDS = 1.0
ORPHAN_CHECK_SECONDS = 1.0


async def first_start(settings: Settings) -> str | None:
    """Migrate the store, make its first signing key and its first admin: once, before any
    worker exists, so that no two workers race for them and the admin's one-time password is
    created (and printed by the caller) exactly once. Returns that password, if one was made."""
    async with aiohttp.ClientSession() as http:
        broker = await Broker.open(settings, http=http, bootstrap=True)
        await broker.close()
    return broker.bootstrap_password


async def _tune(_: web.Application) -> None:
    tune_for_serving()  # once the broker has started and loaded what it keeps


async def _share_counters(app: web.Application) -> AsyncIterator[None]:
    """Write this worker's counters for the others' ``/metrics``, every ``WRITE_SECONDS`` and
    once more when it stops (after its last request)."""
    shared = app[SHARED_COUNTERS]

    def write() -> None:
        try:
            shared.write(own_counts(app))
        except OSError as e:  # the metrics are not worth failing requests for
            log.warning("cannot write this worker's counters: %s", e)

    async def every_interval() -> None:
        while True:
            await asyncio.sleep(WRITE_SECONDS)
            write()

    write()
    task = asyncio.create_task(every_interval())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        write()


def serve_worker(
    settings: Settings, sock: socket.socket, ready: Callable[[], None], run_dir: Path
) -> int:
    """One worker: the app on the inherited socket until SIGTERM, then a graceful stop (see
    ``_drain``). Calls ``ready()`` once it accepts connections. SIGINT is the supervisor's (see
    ``broker.supervisor``)."""
    setup_logging(settings.log_level)  # a reload may have changed the level
    app = create_app(settings, bootstrap=False)
    app[SHARED_COUNTERS] = SharedCounters(run_dir, os.getpid())
    app.on_startup.append(_tune)
    app.cleanup_ctx.append(_share_counters)
    asyncio.run(_serve(app, sock, ready))
    return 0


async def _serve(app: web.Application, sock: socket.socket, ready: Callable[[], None]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    orphaned = asyncio.create_task(_stop_when_orphaned(os.getppid(), stop))
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=CUT_OFF_SECONDS)
    await runner.setup()
    try:
        site = web.SockSite(runner, sock)
        await site.start()
        ready()
        await stop.wait()
        log.info("this worker stops accepting and finishes its requests")
        await site.stop()  # this process's copy of the socket: the other workers keep theirs
        assert runner.server is not None
        await _drain(runner.server, DRAIN_SECONDS)
    finally:
        orphaned.cancel()
        await runner.cleanup()  # what is left after the drain is cut off


async def _stop_when_orphaned(supervisor: int, stop: asyncio.Event) -> None:
    """A supervisor that was killed outright cannot stop its workers: they stop themselves, as
    on SIGTERM, rather than serve on unsupervised with a config nobody can reload."""
    orphaned = False
    while not orphaned:
        await asyncio.sleep(ORPHAN_CHECK_SECONDS)
        orphaned = os.getppid() != supervisor
    log.warning("the supervisor (pid %d) is gone: this worker stops", supervisor)
    stop.set()


async def _drain(server: web.Server, within: float) -> None:
    """Close each connection once it has no request in progress, until none is left.

    aiohttp's own shutdown closes every connection at once and then waits for the handlers,
    but a closed connection ignores what arrives after: a request whose body was still on its
    way (an upload, a form posted over a slow link) would never complete. Idle keep-alive
    connections are closed here as they become idle, so that clients open new ones (to
    another worker)."""
    deadline = asyncio.get_running_loop().time() + within
    while server.connections and asyncio.get_running_loop().time() < deadline:
        for conn in server.connections:
            # a private flag of aiohttp's: if it went away, every connection counts as idle
            # and this is aiohttp's own shutdown again
            if not getattr(conn, "_request_in_progress", False):
                conn.force_close()  # idle: nothing to lose (close() would not end it)
        await asyncio.sleep(0.05)
