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
from aiohttp.web_runner import GracefulExit

from broker.config import Settings
from broker.logs import setup_logging
from broker.runtime import tune_for_serving
from broker.service.container import Broker
from broker.web.app import create_app
from broker.web.keys import SHARED_COUNTERS
from broker.web.ops import own_counts
from broker.worker_metrics import WRITE_SECONDS, SharedCounters

log = logging.getLogger(__name__)


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
    """One worker: the app on the inherited socket until SIGTERM, then a graceful stop (no new
    connections; requests in flight finish, for up to aiohttp's 60 s). Calls ``ready()`` once
    it accepts connections. SIGINT is the supervisor's (see ``broker.supervisor``)."""
    setup_logging(settings.log_level)  # a reload may have changed the level
    app = create_app(settings, bootstrap=False)
    app[SHARED_COUNTERS] = SharedCounters(run_dir, os.getpid())
    app.on_startup.append(_tune)
    app.cleanup_ctx.append(_share_counters)
    loop = asyncio.new_event_loop()

    def stop() -> None:
        # once: a second SIGTERM must not cut the drain short
        loop.remove_signal_handler(signal.SIGTERM)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise GracefulExit()

    loop.add_signal_handler(signal.SIGTERM, stop)
    web.run_app(
        app,
        sock=sock,
        print=lambda _: ready(),
        access_log=None,
        handle_signals=False,
        loop=loop,
    )
    return 0
