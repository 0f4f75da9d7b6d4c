"""``broker serve --workers N``: one parent process that runs N serving processes on one socket.

The command line binds the listening socket and does the store's first start (migrations, the
first signing key, the first admin's one-time password) once, in this process; then
:class:`Supervisor` forks the workers, which inherit the socket and accept from it in turn (the
kernel hands each connection to one of them). The workers share nothing else but the store, as
several instances do: sessions and revocations cross between them through it (contract C4).

Signals to the supervisor:

- SIGTERM, SIGINT: stop. The supervisor closes its copy of the socket and sends SIGTERM to every
  worker, which stops accepting, finishes its in-flight requests (aiohttp's graceful shutdown)
  and exits; the supervisor exits 0 once all have exited cleanly (1 if one did not).
- SIGHUP: reload. The config is read and checked as ``broker check-config`` does; if it has a
  problem the supervisor logs it and keeps the workers it has. Otherwise it replaces the workers
  one at a time: a new one starts, and only once it accepts connections is an old one sent
  SIGTERM, so there is always a worker accepting and no connection is dropped.
- A worker that dies otherwise (a crash, SIGKILL, the OOM killer) is replaced; one that keeps
  dying soon after it started is restarted after a growing delay (:class:`RestartPolicy`).

What a worker runs is given (``run_worker``): this module knows nothing of HTTP. It uses
``os.fork`` without ``exec``, so it runs only where fork does (Linux, macOS).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)

S = TypeVar("S")
WORKERS_ENV = "BROKER_WORKERS"
# How often the loop wakes with nothing to do: only a restart delay waits on it.
TICK_SECONDS = 0.5
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
HANDLED = (*STOP_SIGNALS, signal.SIGHUP, signal.SIGCHLD)
Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


def default_workers(environ: Mapping[str, str] = os.environ) -> int:
    """``$BROKER_WORKERS`` if set, else the cores this process may run on (its CPU affinity,
    which containers and ``taskset`` restrict, rather than the machine's count)."""
    raw = environ.get(WORKERS_ENV, "").strip()
    if raw:
        if not raw.isdigit() or int(raw) < 1:
            raise ValueError(f"{WORKERS_ENV}={raw!r} is not a number of workers (1 or more)")
        return int(raw)
    return max(1, len(os.sched_getaffinity(0)))


@dataclass(frozen=True)
class RestartPolicy:
    """When to start a worker again after one died.

    A death after :attr:`stable_after` seconds of service is a crash of a working worker: it is
    replaced at once. A death sooner than that (or before it was ready) is a *quick failure*,
    most likely one that the next start will repeat (the store is down, the config points at
    something missing): the n-th quick failure in a row waits ``base * 2**(n-1)`` seconds, at
    most ``cap``, so a worker that cannot start costs a fork every ``cap`` seconds, not a spin.
    """

    base: float = 0.5
    cap: float = 30.0
    stable_after: float = 10.0

    def delay(self, quick_failures: int) -> float:
        if quick_failures <= 0:
            return 0.0
        return float(min(self.cap, self.base * 2 ** min(quick_failures - 1, 32)))

    def failures_after(self, previous: int, *, lived: float, was_ready: bool) -> int:
        """The count of quick failures in a row once a worker that lived ``lived`` s died."""
        quick = not was_ready or lived < self.stable_after
        return previous + 1 if quick else 0


@dataclass
class Worker:
    slot: int  # which of the N places it fills
    generation: int  # the config it was started with (incremented by each reload)
    pid: int
    started_at: float
    ready_fd: int | None  # the pipe it writes to once it accepts; None once read or closed
    ready: bool = False


def describe_status(status: int) -> str:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(sig).name}"
        return f"killed by signal {sig}"
    return f"exit {os.waitstatus_to_exitcode(status)}"


class Supervisor(Generic[S]):
    """Runs ``workers`` copies of ``run_worker(settings, sock, ready, run_dir)`` in forked
    processes until SIGTERM or SIGINT. ``ready()`` is what a worker calls once it accepts
    connections; ``run_dir`` is a directory the workers share (removed when the supervisor
    exits). ``reload()`` reads and checks the config again on SIGHUP (raising an exception
    whose text says what is wrong); ``on_ready()`` is called once, when the first worker is
    ready."""

    def __init__(
        self,
        *,
        sock: socket.socket,
        workers: int,
        settings: S,
        reload: Callable[[], S],
        run_worker: Callable[[S, socket.socket, Callable[[], None], Path], int],
        on_ready: Callable[[], None] = lambda: None,
        policy: RestartPolicy | None = None,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be 1 or more")
        self._sock = sock
        self._n = workers
        self._settings = settings
        self._reload = reload
        self._run_worker = run_worker
        self._on_ready: Callable[[], None] | None = on_ready
        self._policy = policy or RestartPolicy()
        self._generation = 0
        self._serving: dict[int, Worker] = {}  # slot -> the worker that fills it
        self._starting: dict[int, Worker] = {}  # slot -> its replacement, not yet ready
        self._draining: dict[int, Worker] = {}  # pid -> a replaced worker, sent SIGTERM
        self._failures: dict[int, int] = {}  # slot -> quick failures in a row
        self._restart_at: dict[int, float] = {}  # slot -> not before (monotonic)
        self._signals: list[int] = []
        self._stopping = False
        self._unclean = False
        self._wakeup: tuple[int, int] | None = None
        self._run_dir: Path | None = None

    # --- the loop ----------------------------------------------------------------------------

    def run(self) -> int:
        """Serve until stopped; returns the exit code (0: every worker stopped cleanly)."""
        self._run_dir = Path(tempfile.mkdtemp(prefix="broker-run-"))
        previous = self._install_signals()
        try:
            for slot in range(self._n):
                if (w := self._try_spawn(slot)) is not None:
                    self._serving[slot] = w
            while True:
                self._handle_signals()
                self._reap()
                if self._stopping and not self._all():
                    break
                self._read_ready()
                if not self._stopping:
                    self._start_due()
                    self._roll()
                self._wait()
        finally:
            for w in self._all():  # only on an error of the supervisor itself
                with contextlib.suppress(ProcessLookupError):
                    os.kill(w.pid, signal.SIGTERM)
            self._restore_signals(previous)
            self._sock.close()
            shutil.rmtree(self._run_dir, ignore_errors=True)
        log.info("all workers have stopped")
        return 1 if self._unclean else 0

    def _all(self) -> list[Worker]:
        return [*self._serving.values(), *self._starting.values(), *self._draining.values()]

    def _wait(self) -> None:
        """Sleep until a signal, a worker's readiness, or the next restart due."""
        import select

        assert self._wakeup is not None
        fds = [self._wakeup[0], *(w.ready_fd for w in self._all() if w.ready_fd is not None)]
        timeout = TICK_SECONDS
        if self._restart_at and not self._stopping:
            due = min(self._restart_at.values()) - time.monotonic()
            timeout = max(0.0, min(timeout, due))
        readable, _, _ = select.select(fds, [], [], timeout)
        if self._wakeup[0] in readable:
            with contextlib.suppress(BlockingIOError):
                while os.read(self._wakeup[0], 512):
                    pass

    # --- signals -----------------------------------------------------------------------------

    def _install_signals(self) -> dict[int, Handler]:
        r, w = os.pipe()
        os.set_blocking(r, False)
        os.set_blocking(w, False)
        self._wakeup = (r, w)
        signal.set_wakeup_fd(w, warn_on_full_buffer=False)

        def note(signum: int, _: FrameType | None) -> None:
            self._signals.append(signum)  # handled by the loop, not here

        return {s: signal.signal(s, note) for s in HANDLED}

    def _restore_signals(self, previous: Mapping[int, Handler]) -> None:
        signal.set_wakeup_fd(-1)
        for s, handler in previous.items():
            signal.signal(s, handler)
        if self._wakeup is not None:
            for fd in self._wakeup:
                os.close(fd)
            self._wakeup = None

    def _handle_signals(self) -> None:
        while self._signals:
            signum = self._signals.pop(0)
            if signum in STOP_SIGNALS and not self._stopping:
                self._stop(signal.Signals(signum).name)
            elif signum == signal.SIGHUP and not self._stopping:
                self._reload_config()

    def _stop(self, why: str) -> None:
        log.info("%s: stopping %d worker(s) once their requests are done", why, len(self._all()))
        self._stopping = True
        self._sock.close()  # the workers' copies stay open until each stops accepting
        self._restart_at.clear()
        for w in self._all():
            self._signal(w, signal.SIGTERM)

    def _reload_config(self) -> None:
        try:
            settings = self._reload()
        except Exception as e:
            log.error("SIGHUP: the config was not reloaded, the workers keep the old one: %s", e)
            return
        self._settings = settings
        self._generation += 1
        log.info("SIGHUP: config reloaded; replacing the %d worker(s) one at a time", self._n)

    # --- workers -----------------------------------------------------------------------------

    def _spawn(self, slot: int) -> Worker:
        assert self._run_dir is not None
        r, w = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                os.close(r)
                self._in_child()
                code = self._run_worker(self._settings, self._sock, _ready_writer(w), self._run_dir)
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else 1
            except BaseException:
                traceback.print_exc()
            finally:
                with contextlib.suppress(Exception):
                    sys.stdout.flush()
                    sys.stderr.flush()
                os._exit(code)
        os.close(w)
        os.set_blocking(r, False)
        log.info("started worker %d (pid %d)", slot, pid)
        return Worker(slot, self._generation, pid, time.monotonic(), r)

    def _in_child(self) -> None:
        """Undo what belongs to the supervisor: its signal handling and its file descriptors."""
        signal.set_wakeup_fd(-1)
        for s in HANDLED:
            signal.signal(s, signal.SIG_DFL)
        # A Ctrl-C or a hang-up reaches the whole process group: the supervisor acts on it (a
        # second signal while a worker drains would cut its requests short).
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        if self._wakeup is not None:
            for fd in self._wakeup:
                os.close(fd)
        for other in self._all():
            if other.ready_fd is not None:
                os.close(other.ready_fd)

    def _signal(self, w: Worker, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):  # it exited already; reaped next
            os.kill(w.pid, sig)

    def _read_ready(self) -> None:
        for w in self._all():
            if w.ready_fd is None:
                continue
            try:
                data = os.read(w.ready_fd, 16)
            except BlockingIOError:
                continue
            os.close(w.ready_fd)
            w.ready_fd = None
            if data:  # (an empty read is a worker that exited first: reaped on its own)
                w.ready = True
                self._on_worker_ready(w)

    def _on_worker_ready(self, w: Worker) -> None:
        log.info("worker %d (pid %d) is accepting connections", w.slot, w.pid)
        if self._starting.get(w.slot) is w:  # a replacement: now the old one may go
            del self._starting[w.slot]
            old = self._serving.get(w.slot)
            self._serving[w.slot] = w
            if old is not None:
                self._draining[old.pid] = old
                self._signal(old, signal.SIGTERM)
                log.info("worker %d: pid %d replaces pid %d", w.slot, w.pid, old.pid)
            if self._stopping:
                self._signal(w, signal.SIGTERM)
        if self._on_ready is not None:
            on_ready, self._on_ready = self._on_ready, None
            on_ready()

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self._exited(pid, status)

    def _exited(self, pid: int, status: int) -> None:
        old = self._draining.pop(pid, None)
        if old is not None:
            self._closed(old)
            if status != 0:
                self._unclean = True
            log.info("replaced worker (pid %d) stopped: %s", pid, describe_status(status))
            return
        w = next((w for w in self._serving.values() if w.pid == pid), None)
        place = self._serving
        if w is None:
            w = next((w for w in self._starting.values() if w.pid == pid), None)
            place = self._starting
        if w is None:
            return  # not one of ours
        del place[w.slot]
        self._closed(w)
        what = describe_status(status)
        if self._stopping:
            # (one told to stop before it could take the signal had no request to finish)
            if status != 0 and not (not w.ready and status == signal.SIGTERM):
                self._unclean = True
            log.info("worker %d (pid %d) stopped: %s", w.slot, pid, what)
            return
        lived = time.monotonic() - w.started_at
        failures = self._policy.failures_after(
            self._failures.get(w.slot, 0), lived=lived, was_ready=w.ready
        )
        self._failures[w.slot] = failures
        delay = self._policy.delay(failures)
        self._restart_at[w.slot] = time.monotonic() + delay
        log.warning(
            "worker %d (pid %d) died (%s) after %.1f s; starting another in %.1f s",
            w.slot,
            pid,
            what,
            lived,
            delay,
        )

    def _closed(self, w: Worker) -> None:
        if w.ready_fd is not None:
            os.close(w.ready_fd)
            w.ready_fd = None

    def _start_due(self) -> None:
        now = time.monotonic()
        for slot in range(self._n):
            if slot in self._serving or slot in self._starting:
                continue
            if self._restart_at.get(slot, 0.0) <= now:
                self._restart_at.pop(slot, None)
                if (w := self._try_spawn(slot)) is not None:
                    self._serving[slot] = w

    def _roll(self) -> None:
        """After a reload: start the replacement of one worker of an older config at a time."""
        if self._starting:
            return
        now = time.monotonic()
        for slot, old in sorted(self._serving.items()):
            if old.generation < self._generation and self._restart_at.get(slot, 0.0) <= now:
                self._restart_at.pop(slot, None)
                if (w := self._try_spawn(slot)) is not None:
                    self._starting[slot] = w
                return

    def _try_spawn(self, slot: int) -> Worker | None:
        """A new worker, or None (logged, and tried again later) when the system has no
        process or memory to give: the workers there are keep serving."""
        try:
            return self._spawn(slot)
        except OSError as e:
            failures = self._failures.get(slot, 0) + 1
            self._failures[slot] = failures
            delay = self._policy.delay(failures)
            self._restart_at[slot] = time.monotonic() + delay
            log.error("cannot start worker %d: %s; trying again in %.1f s", slot, e, delay)
            return None


def _ready_writer(fd: int) -> Callable[[], None]:
    """What the worker calls once it accepts connections (once; later calls do nothing)."""
    done = False

    def ready() -> None:
        nonlocal done
        if not done:
            done = True
            os.write(fd, b"1")
            os.close(fd)

    return ready
