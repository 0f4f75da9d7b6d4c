"""Real ``broker serve`` OS processes for tests, and the CLI run as its own process.

:func:`broker_processes` yields a :class:`BrokerProcesses`; its :meth:`~BrokerProcesses.start`
launches ``python -m broker.cli serve --config ... --workers 1`` with stdout and stderr going to
files (so a chatty process never blocks on a full pipe), and :meth:`BrokerProcess.wait_ready` polls
``/readyz`` until it answers 200. When the block ends every process still running gets SIGTERM
(then SIGKILL after a grace period), and the tail of each one's stderr is printed: pytest shows it
with a failing test only. A process that dies or never gets ready fails the test with its
stderr::

    with broker_processes(tmp_path) as procs:
        a, b = procs.start(config_a, "a"), procs.start(config_b, "b")
        await asyncio.gather(a.wait_ready(), b.wait_ready())
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import aiohttp

REPO = Path(__file__).resolve().parents[2]
READY_TIMEOUT = 60.0  # generous: several Python processes start at once on a 2-core machine
STOP_TIMEOUT = 20.0
STDERR_TAIL = 4000


def broker_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "broker.cli", *args]


def run_cli(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """``broker ARGS...`` as its own process (as an operator runs it), output captured."""
    return subprocess.run(
        broker_cmd(*args), capture_output=True, text=True, timeout=timeout, cwd=REPO
    )


async def run_cli_async(*args: str) -> subprocess.CompletedProcess[str]:
    """:func:`run_cli` off the event loop, so the brokers' clients keep running meanwhile."""
    return await asyncio.to_thread(run_cli, *args)


@dataclass
class BrokerProcess:
    name: str
    config: Path
    port: int
    proc: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path
    _files: list[IO[bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def describe(self) -> str:
        tail = self.stderr()[-STDERR_TAIL:]
        return f"broker {self.name} ({self.url}, exit {self.proc.poll()}); stderr tail:\n{tail}"

    async def wait_ready(self, within: float = READY_TIMEOUT) -> None:
        """Poll ``/readyz`` until 200; fail with the process's stderr if it exits or times out."""
        deadline = time.monotonic() + within
        async with aiohttp.ClientSession() as s:
            while True:
                if self.proc.poll() is not None:
                    raise AssertionError(f"exited before it was ready: {self.describe()}")
                try:
                    async with s.get(f"{self.url}/readyz") as r:
                        if r.status == 200:
                            return
                except aiohttp.ClientError:
                    pass  # not listening yet
                if time.monotonic() > deadline:
                    raise AssertionError(f"not ready within {within} s: {self.describe()}")
                await asyncio.sleep(0.1)

    def stop(self) -> int:
        """SIGTERM, then SIGKILL after :data:`STOP_TIMEOUT`; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for f in self._files:
            f.close()
        self._files.clear()
        return self.proc.returncode


class BrokerProcesses:
    """Starts broker processes and remembers them, so that they are always stopped."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.started: list[BrokerProcess] = []

    def start(self, config: Path, name: str, port: int, *, workers: int = 1) -> BrokerProcess:
        """``broker serve`` on ``config`` (which must listen on ``port``); not waited for. One
        worker unless told (``--workers 1``: a single process, no supervisor)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        out_path = self.directory / f"{name}.stdout"
        err_path = self.directory / f"{name}.stderr"
        out, err = out_path.open("wb"), err_path.open("wb")
        proc = subprocess.Popen(
            broker_cmd("serve", "--config", str(config), "--workers", str(workers)),
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            cwd=config.parent,
        )
        p = BrokerProcess(name, config, port, proc, out_path, err_path, [out, err])
        self.started.append(p)
        return p

    def stop_all(self) -> None:
        for p in self.started:
            p.stop()
            print(f"--- {p.describe()}")  # pytest shows it with a failing test only


@contextmanager
def broker_processes(directory: Path) -> Iterator[BrokerProcesses]:
    procs = BrokerProcesses(directory)
    try:
        yield procs
    finally:
        procs.stop_all()
