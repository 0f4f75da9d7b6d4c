"""Benchmark (not a test): the broker under overload, with and without admission control.

Run (everything stays on 127.0.0.1)::

    .venv/bin/python bench/overload.py [--seconds 5] [--loads 1,3,10]

A server process (this script with ``--serve``) hosts a fake OpenID provider and the broker's
real application (SQLite store, its periodic tick running), on one core as ``broker serve``
does. The work is STS ``AssumeRoleWithWebIdentity``: each request an ID token to verify, a trust
policy to evaluate, credentials to sign and an audit row to write. This process is the load
generator: plain HTTP/1.1 keep-alive connections, one request at a time each.

1. **Capacity**: ``--capacity-connections`` (64) connections send back to back for
   ``--seconds`` (closed loop): the accepted req/s is the instance's capacity, measured now, on
   this machine. (With SQLite the broker gets more through with far more requests in flight,
   at seconds of latency: the ``off`` rows at 3x and 10x show how much.)
2. **Offered load**: for each of ``--loads`` (multiples of that capacity) requests are sent at
   that fixed rate for ``--seconds`` whether or not earlier ones were answered (open loop: the
   clients do not slow down because the broker does, as real clients that time out and retry
   do not), on a new connection when none is idle (at most ``--max-connections``; a request
   finding none is counted as not sent). Latency runs from when a request was due, not from
   when it got a connection. A request unanswered after ``--timeout`` counts as timed out.
   After the highest load the lowest is offered again: does the broker recover by itself?

It does this twice, each on a fresh server: ``off`` (no admission control: ``max_concurrency``
and ``queue_timeout`` out of reach) and ``on`` (``--max-concurrency``, ``--queue-timeout``: the
defaults of ``[server]``), and prints per phase: offered and sent req/s, accepted (2xx) req/s,
p50/p99 of the accepted, the share of 503s, other answers (non-2xx other than 503; 2xx whose
body is not a credential: must be 0), timeouts, requests not sent, the server's RSS after the
phase and its CPU use (it has threads: the store's, password hashing); for ``on`` the 503s by
reason (``/metrics``); then ratios at the highest load: ``on`` to ``off``, and ``on`` to its
capacity phase. It takes about three minutes with the defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ROLE_ARN = "arn:broker:iam::000000000000:role/ci"


# --- the server process ----------------------------------------------------------------------


async def serve(directory: Path, tokens: int, max_concurrency: int, queue_timeout: str) -> None:
    import logging

    from aiohttp import web

    from broker.clock import SystemClock
    from broker.config import load_settings
    from broker.runtime import tune_for_serving
    from broker.web.app import create_app
    from tests.conftest import trust, write_config
    from tests.support.fake_idp import FakeIdP
    from tests.support.oidc_server import free_port

    logging.basicConfig(level=logging.WARNING)
    idp = FakeIdP(clock=SystemClock())
    idp_port = free_port()
    idp.issuer = f"http://127.0.0.1:{idp_port}"
    runners = []

    async def start(app: web.Application, port: int) -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        # the backlog `broker serve` listens with (broker.cli._bind)
        await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
        runners.append(runner)

    await start(idp.app, idp_port)
    port = free_port()
    extra = f'[providers.fake]\nissuer = "{idp.issuer}"\nclient_id = "{idp.client_id}"\n'
    roles = {"ci": trust("fake", {"StringEquals": {"fake:aud": idp.client_id}})}
    path = write_config(directory, port=port, oidc=None, roles=roles, extra=extra)
    text = path.read_text().replace(
        "[server]\n",
        f'[server]\nmax_concurrency = {max_concurrency}\nqueue_timeout = "{queue_timeout}"\n',
        1,
    )
    path.write_text('log_level = "WARNING"\n' + text)
    settings = load_settings(path)
    await start(create_app(settings), port)
    tokens_file = directory / "tokens.txt"
    tokens_file.write_text(
        "\n".join(idp.mint({"sub": f"user-{i % 50}"}) for i in range(tokens)) + "\n"
    )
    tune_for_serving()  # as `broker serve` does once started
    print(json.dumps({"port": port, "tokens": str(tokens_file)}), flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes our stdin
    for r in reversed(runners):
        await r.cleanup()


# --- the load generator ----------------------------------------------------------------------


@dataclass
class Phase:
    name: str
    offered: float  # req/s asked for (0: closed loop)
    seconds: float
    sent: int = 0
    not_sent: int = 0  # no idle connection and no room for another
    statuses: Counter[int] = field(default_factory=Counter)
    bad_2xx: int = 0  # a 2xx whose body is not a credential
    timeouts: int = 0
    accepted_ms: list[float] = field(default_factory=list)
    rss_mb: float = 0.0
    cpu: float = 0.0  # the server's CPU seconds per second of the phase
    refused: Counter[str] = field(default_factory=Counter)  # by reason, from /metrics
    outstanding: int = 0

    def done(self, pid: int, cpu_before: float) -> None:
        self.rss_mb = rss_mb(pid)
        self.cpu = (cpu_seconds(pid) - cpu_before) / self.seconds

    def row(self) -> str:
        answered = sum(self.statuses.values())
        acc = self.accepted_ms
        p50 = statistics.median(acc) if acc else float("nan")
        p99 = statistics.quantiles(acc, n=100)[98] if len(acc) >= 2 else float("nan")
        other = answered - self.statuses[200] - self.statuses[503] + self.bad_2xx
        share = self.statuses[503] / max(1, self.sent)
        offered = f"{self.offered:8.0f}" if self.offered else "  closed"
        return (
            f"{self.name:9} {offered} {self.sent / self.seconds:8.0f}"
            f" {len(acc) / self.seconds:9.0f} {p50:8.1f} {p99:8.1f} {share:6.1%}"
            f" {other:6d} {self.timeouts:8d} {self.not_sent:8d} {self.rss_mb:7.1f}"
            f" {self.cpu:5.0%}"
        )


HEADER = (
    f"{'phase':9} {'offered':>8} {'sent/s':>8} {'accepted':>9} {'p50 ms':>8} {'p99 ms':>8}"
    f" {'503s':>6} {'other':>6} {'timeouts':>8} {'not sent':>8} {'RSS MB':>7} {'CPU':>5}"
)


class Client(asyncio.Protocol):
    """One keep-alive connection, one request at a time; answers parsed just enough."""

    def __init__(self, pool: list[Client], on_answer: Any) -> None:
        self.pool, self.on_answer = pool, on_answer
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.pending: tuple[float, Phase, int] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def send(self, request: bytes, due: float, phase: Phase, seq: int) -> None:
        assert self.transport is not None
        self.pending = (due, phase, seq)
        phase.outstanding += 1
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        head_end = self.buf.find(b"\r\n\r\n")
        if head_end < 0:
            return
        head = self.buf[:head_end].decode("latin-1")
        length = 0
        for line in head.split("\r\n")[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        if len(self.buf) < head_end + 4 + length:
            return
        body = self.buf[head_end + 4 : head_end + 4 + length]
        self.buf = self.buf[head_end + 4 + length :]
        status = int(head.split(" ", 2)[1])
        pending, self.pending = self.pending, None
        if pending is not None:
            pending[1].outstanding -= 1
            self.on_answer(pending[1], status, body, time.perf_counter() - pending[0])
            if not self.closed:
                self.pool.append(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self in self.pool:
            self.pool.remove(self)


class Load:
    def __init__(self, port: int, tokens: list[str], max_connections: int, timeout: float):
        self.port, self.max_connections, self.timeout = port, max_connections, timeout
        self.requests = [self._request(t) for t in tokens]
        self.idle: list[Client] = []
        self.open = 0
        self.next = 0

    def _request(self, token: str) -> bytes:
        body = urlencode(
            {
                "Action": "AssumeRoleWithWebIdentity",
                "Version": "2011-06-15",
                "RoleArn": ROLE_ARN,
                "RoleSessionName": "bench",
                "WebIdentityToken": token,
            }
        ).encode()
        head = (
            f"POST / HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body

    def on_answer(self, phase: Phase, status: int, body: bytes, seconds: float) -> None:
        phase.statuses[status] += 1
        if 200 <= status < 300:
            if b"<AccessKeyId>ASIA" in body:
                phase.accepted_ms.append(seconds * 1000)
            else:
                phase.bad_2xx += 1

    async def _connection(self) -> Client | None:
        if self.idle:
            return self.idle.pop()
        if self.open >= self.max_connections:
            return None
        self.open += 1
        loop = asyncio.get_running_loop()
        try:
            _, client = await loop.create_connection(
                lambda: Client(self.idle, self.on_answer), "127.0.0.1", self.port
            )
        except OSError:
            self.open -= 1
            return None
        return client

    async def one(self, phase: Phase, due: float) -> None:
        client = await self._connection()
        if client is None:
            phase.not_sent += 1
            return
        phase.sent += 1
        seq = self.next
        self.next += 1
        client.send(self.requests[seq % len(self.requests)], due, phase, seq)
        asyncio.get_running_loop().call_later(self.timeout, self._expire, client, seq)

    def _expire(self, client: Client, seq: int) -> None:
        if client.pending is None or client.pending[2] != seq:
            return  # answered
        client.pending[1].timeouts += 1
        client.pending[1].outstanding -= 1
        client.pending = None
        client.closed = True
        assert client.transport is not None
        client.transport.close()
        self.open -= 1

    async def open_loop(self, phase: Phase) -> None:
        start = time.perf_counter()
        tasks: set[asyncio.Task[None]] = set()
        while (elapsed := time.perf_counter() - start) < phase.seconds:
            due_count = math.floor(elapsed * phase.offered)
            while phase.sent + phase.not_sent < due_count:
                n = phase.sent + phase.not_sent
                task = asyncio.ensure_future(self.one(phase, start + n / phase.offered))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                await asyncio.sleep(0)  # let the connection be handed out
            await asyncio.sleep(0.001)
        await asyncio.gather(*tasks)
        while phase.outstanding:  # noqa: ASYNC110 (answers arrive in protocol callbacks)
            await asyncio.sleep(0.01)

    async def closed_loop(self, phase: Phase, connections: int) -> None:
        stop = time.perf_counter() + phase.seconds

        async def worker() -> None:
            while time.perf_counter() < stop:
                await self.one_closed(phase)

        await asyncio.gather(*(worker() for _ in range(connections)))

    async def one_closed(self, phase: Phase) -> None:
        client = await self._connection()
        if client is None:
            await asyncio.sleep(0.01)
            return
        done = asyncio.get_running_loop().create_future()
        answer = self.on_answer

        def on_answer(p: Phase, status: int, body: bytes, seconds: float) -> None:
            client.on_answer = answer  # before the connection is idle again
            answer(p, status, body, seconds)
            if not done.done():
                done.set_result(None)

        client.on_answer = on_answer
        phase.sent += 1
        seq = self.next
        self.next += 1
        client.send(self.requests[seq % len(self.requests)], time.perf_counter(), phase, seq)
        await done


async def refusals(port: int) -> Counter[str]:
    """``broker_overload_refused_total`` by reason, from the broker's /metrics."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    text = (await reader.read()).decode()
    writer.close()
    found: Counter[str] = Counter()
    for line in text.splitlines():
        if line.startswith("broker_overload_refused_total{"):
            found[line.split('"')[1]] = int(line.split()[-1])
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_server(
    tmp: str, args: argparse.Namespace, max_concurrency: int, queue_timeout: str
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            *(sys.executable, __file__, "--serve", tmp, "--tokens", str(args.tokens)),
            *("--max-concurrency", str(max_concurrency), "--queue-timeout", queue_timeout),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )


def server_ready(server: subprocess.Popen[str]) -> tuple[int, list[str]]:
    """The port the server announced, and the ID tokens it minted for the requests."""
    assert server.stdout is not None
    line = server.stdout.readline()
    while line and not line.startswith("{"):
        line = server.stdout.readline()
    if not line:
        raise RuntimeError("the bench server exited before it was ready")
    ready = json.loads(line)
    return int(ready["port"]), Path(ready["tokens"]).read_text().split()


async def run_mode(args: argparse.Namespace, mode: str) -> list[Phase]:
    on = mode == "on"
    max_concurrency = args.max_concurrency if on else 10**9
    queue_timeout = args.queue_timeout if on else "1000d"
    with tempfile.TemporaryDirectory(prefix="broker-bench-") as tmp:
        server = start_server(tmp, args, max_concurrency, queue_timeout)
        try:
            port, tokens = server_ready(server)
            load = Load(port, tokens, args.max_connections, args.timeout)

            warm = Phase("warm-up", 0, 1.0)
            await load.closed_loop(warm, args.capacity_connections)
            cap = Phase("capacity", 0, args.seconds)
            before = cpu_seconds(server.pid)
            await load.closed_loop(cap, args.capacity_connections)
            cap.done(server.pid, before)
            capacity = len(cap.accepted_ms) / cap.seconds
            print(f"{mode}: {cap.row()}", file=sys.stderr, flush=True)
            phases = [cap]
            loads = [float(x) for x in args.loads.split(",")]
            for factor in [*loads, min(loads)]:
                name = f"{factor:g}x" + (" again" if len(phases) > len(loads) else "")
                phase = Phase(name, capacity * factor, args.seconds)
                before, refused = cpu_seconds(server.pid), await refusals(port)
                await load.open_loop(phase)
                phase.done(server.pid, before)
                phase.refused = await refusals(port) - refused
                phases.append(phase)
                print(f"{mode}: {phase.row()}", file=sys.stderr, flush=True)
                await asyncio.sleep(1.0)  # a pause between two phases
            return phases
        finally:
            if server.stdin:
                server.stdin.close()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


async def main(args: argparse.Namespace) -> None:
    results: dict[str, list[Phase]] = {}
    for mode in ("off", "on"):
        results[mode] = await run_mode(args, mode)
    print(
        f"STS AssumeRoleWithWebIdentity, {args.seconds:g}s per phase, loopback,"
        f" {os.cpu_count()} CPUs; on: max_concurrency={args.max_concurrency},"
        f" queue_timeout={args.queue_timeout}; client timeout {args.timeout:g}s"
    )
    for mode, phases in results.items():
        print(f"\nadmission control {mode}")
        print(HEADER)
        for p in phases:
            print(p.row())
        if mode == "on":
            for p in phases[1:]:
                reasons = ", ".join(f"{k} {v}" for k, v in sorted(p.refused.items()) if v)
                print(f"  503s at {p.name}, by reason: {reasons or 'none'}")
    top = f"{max(float(x) for x in args.loads.split(',')):g}x"
    off = next(p for p in results["off"] if p.name == top)
    on = next(p for p in results["on"] if p.name == top)

    def p99(p: Phase) -> float:
        return statistics.quantiles(p.accepted_ms, n=100)[98] if len(p.accepted_ms) > 1 else 0

    cap = results["on"][0]
    accepted, accepted_off, accepted_cap = (len(p.accepted_ms) for p in (on, off, cap))
    print(
        f"\nat {top}: accepted req/s on/off {accepted / max(1, accepted_off):.2f}x;"
        f" p99 of accepted on/off {p99(on) / max(p99(off), 1e-9):.2f}x;"
        f" accepted on / capacity {accepted / on.seconds / (accepted_cap / cap.seconds):.2f}x;"
        f" p99 on / p99 at capacity {p99(on) / max(p99(cap), 1e-9):.2f}x;"
        f" RSS on {on.rss_mb / cap.rss_mb:.2f}x capacity's"
    )


def cli() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--loads", default="1,3,10", help="offered loads, multiples of capacity")
    p.add_argument("--capacity-connections", type=int, default=64)
    p.add_argument("--max-connections", type=int, default=2000)
    p.add_argument("--timeout", type=float, default=10.0, help="client timeout, seconds")
    p.add_argument("--tokens", type=int, default=2000)
    p.add_argument("--max-concurrency", type=int, default=256)
    p.add_argument("--queue-timeout", default="2s")
    p.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve, args.tokens, args.max_concurrency, args.queue_timeout))
        return
    asyncio.run(main(args))


if __name__ == "__main__":
    cli()
