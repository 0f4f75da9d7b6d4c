"""Benchmark of ``broker serve --workers N`` (not a test): ``/auth`` throughput with N workers
against one.

Run (needs ``wrk``: ``apt-get install wrk``; everything stays on 127.0.0.1)::

    .venv/bin/python bench/workers.py [--workers 2] [--rounds 5] [--duration 4] [--connections 64]

Two real ``broker serve`` process trees run side by side on one SQLite store and the config of
``bench/forward_auth.py``: one with ``--workers 1`` (the baseline, one process), one with
``--workers N``. ``wrk`` (one thread, its own process) sends ``/auth`` with a valid session cookie
(an allowed request, as nginx's ``auth_request`` sends it) to each in turn for ``--duration``
seconds, ``--rounds`` times, the order reversed every other round; the ratio of requests per
second is taken within each round and the median printed, with the range. The machines are
shared and drift: only the ratio means anything. wrk takes a core of its own, so on a machine
with C cores expect at most about (C - 1)x, not Nx.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import forward_auth  # noqa: E402  (the config and the wrk runner of the forward-auth bench)


async def session_cookie(config: Path) -> str:
    """A session of the role ``app`` for the user ``bench``, made in the store directly."""
    import aiohttp

    from broker.config import load_settings
    from broker.domain.claims import Identity
    from broker.service.container import Broker
    from broker.web.cookies import Cookies

    settings = load_settings(config)
    async with aiohttp.ClientSession() as http:
        broker = await Broker.open(settings, http=http, bootstrap=False)
        try:
            user = await broker.store.upsert_federated_user(
                "local", "bench", name="bench", email="b@example.com", groups=[], now=time.time()
            )
            identity = Identity("local", "bench", "bench", "b@example.com", (), user_id=user.id)
            _, token = await broker.sessions.create(
                identity, broker.roles.arn("app"), max_session_duration=3600
            )
        finally:
            await broker.close()
    return f"{Cookies(settings).session}={token}"


def start(config: Path, workers: int) -> tuple[subprocess.Popen[bytes], str]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    serve = ["serve", "--config", str(config), "--listen", f"127.0.0.1:{port}"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "broker.cli", *serve, "--workers", str(workers)],
        cwd=config.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"broker serve --workers {workers} did not get ready")
        time.sleep(0.2)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--duration", type=int, default=4)
    p.add_argument("--connections", type=int, default=64)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        config = forward_auth.write_config(Path(tmp))
        cookie = asyncio.run(session_cookie(config))
        headers = {
            "X-Original-Method": "GET",
            "X-Original-URL": forward_auth.APP_URL,
            "Cookie": cookie,
        }
        servers = {n: start(config, n) for n in (1, args.workers)}
        try:
            names = list(servers)

            def run(n: int, duration: int) -> float:
                url = servers[n][1] + "/auth"
                got = forward_auth.wrk(
                    url,
                    duration=duration,
                    connections=args.connections,
                    headers=headers,
                    script=None,
                )
                if got["errors"]:
                    raise RuntimeError(f"{got['errors']} answers were not 2xx from {n} worker(s)")
                return float(got["rps"])

            for n in names:  # warm-up: caches, JIT-free but allocators and connections
                run(n, 2)
            ratios = []
            for i in range(args.rounds):
                order = names if i % 2 == 0 else names[::-1]
                rps = {n: run(n, args.duration) for n in order}
                ratio = rps[args.workers] / rps[1]
                ratios.append(ratio)
                print(
                    f"round {i + 1}: 1 worker {rps[1]:,.0f} req/s, {args.workers} workers "
                    f"{rps[args.workers]:,.0f} req/s: {ratio:.2f}x",
                    flush=True,
                )
            print(
                f"/auth, valid session, {args.workers} workers / 1 worker: "
                f"{statistics.median(ratios):.2f}x (median of {args.rounds} rounds, "
                f"{min(ratios):.2f}x to {max(ratios):.2f}x)"
            )
        finally:
            for proc, _ in servers.values():
                proc.terminate()
                proc.wait(timeout=90)


if __name__ == "__main__":
    main()
