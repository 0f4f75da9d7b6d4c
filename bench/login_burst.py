"""Benchmark (not a test): ``/auth`` latency while wrong-password local logins are in flight.

Run (everything stays on 127.0.0.1)::

    .venv/bin/python bench/login_burst.py [--rounds 3] [--seconds 4] [--logins 20]

A server process hosts the broker's real application (SQLite store, its periodic tick running,
a local user and a session for it). This process probes ``/auth`` with the session cookie
(``--probes`` requests at a time, back to back) for ``--seconds``, once with nothing else going
on (idle) and once while ``--logins`` clients each keep one wrong-password local login in
flight (burst: each posts the login form again as soon as its 401 arrives). It prints the p99
of ``/auth`` in both phases and their ratio, per round and as the median over the rounds (the
two phases of a round are measured back to back, their order reversed every other round: the
machine's speed drifts). Goal: burst p99 within 3x idle p99.

``--modes pool,on-loop`` (the default) runs it against two servers in turn: ``pool`` is the
broker as it is (argon2 in ``PasswordHashing``'s low-priority worker threads); ``on-loop``
replaces the pool by a direct call on the event loop, as the broker did before, for comparison.
The failed-login limits are set high enough that no login is refused for them: every login of
the burst costs one argon2 verification. (In ``on-loop`` mode some logins may answer 503: a
SQLite write transaction left open while the loop hashes makes other writers time out.)
``--json`` prints the results as one JSON object. It takes about two minutes with the defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import logging
import math
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

APP_URL = "https://app.example.com/dashboards/1"
PASSWORD = "bench-password-" + "x" * 8
POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "http:*", "Resource": "https://app.example.com/*"}],
}
TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Federated": "local"},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {"local:sub": "bench"}},
        }
    ],
}


def write_config(directory: Path) -> Path:
    (directory / "trust.json").write_text(json.dumps(TRUST))
    (directory / "access.json").write_text(json.dumps(POLICY))
    kek = base64.b64encode(secrets.token_bytes(32)).decode()
    path = directory / "broker.toml"
    path.write_text(
        f"""log_level = "WARNING"
[server]
listen = "127.0.0.1:0"
public_url = "http://127.0.0.1"
trusted_proxies = ["127.0.0.1/32"]
[store]
url = "sqlite:///broker.db"
[keys]
kek = "{kek}"
[session]
# The on-loop baseline blocks the event loop for seconds at a time, so its revocation polling
# stalls; with the default (10 s) its /auth fails closed (403) on a loaded machine. The
# benchmark measures latency, not that: both modes get the longest allowed staleness.
revocation_max_staleness = "5m"
[login]
max_failures_per_user = 100000000
max_failures_per_address = 100000000
[providers.local]
type = "local"
[roles.app]
trust_policy = "trust.json"
policies = ["access.json"]
"""
    )
    return path


# --- the server process ----------------------------------------------------------------------


async def serve(directory: Path, mode: str) -> None:
    from aiohttp import web

    from broker.config import load_settings
    from broker.domain.claims import Identity
    from broker.runtime import tune_for_serving
    from broker.storage.base import User
    from broker.web.app import create_app
    from broker.web.keys import BROKER
    from broker.web.pages import COOKIES

    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("broker.audit").setLevel(logging.ERROR)  # a line per failed login
    app = create_app(load_settings(directory / "broker.toml"))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = int(runner.addresses[0][1])
    broker = app[BROKER]
    if mode == "on-loop":

        async def on_loop(fn: Any, *args: Any) -> Any:
            return fn(*args)  # the hash blocks the event loop, as before the pool

        broker.hashing._run = on_loop  # type: ignore[method-assign]
    now = broker.clock.now()
    user = await broker.store.create_user(
        User(
            id="bench",
            provider="local",
            subject="bench",
            name="bench",
            created_at=now,
            password_hash=await broker.hashing.hash(PASSWORD),
        )
    )
    identity = Identity("local", "bench", "bench", "", (), user_id=user.id)
    _, token = await broker.sessions.create(
        identity, broker.roles.arn("app"), max_session_duration=3600
    )
    tune_for_serving()  # as `broker serve` does once started
    ready = {"port": port, "cookie": f"{app[COOKIES].session}={token}"}
    print(json.dumps(ready), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until stdin closes
    await runner.cleanup()


@contextlib.contextmanager
def bench_server(directory: Path, mode: str) -> Iterator[dict[str, Any]]:
    """The server process (this script with ``--serve``); yields its port and session cookie."""
    write_config(directory)
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(directory), "--mode", mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        while line and not line.startswith("{"):  # the first-start announcement
            line = server.stdout.readline()
        if not line:
            raise RuntimeError("the bench server exited before it was ready")
        yield json.loads(line)
    finally:
        if server.stdin:
            server.stdin.close()  # the server's signal to stop
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    if server.returncode:
        raise RuntimeError(f"the bench server exited with {server.returncode}")


# --- the load ----------------------------------------------------------------------------------


def p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]


async def probe(
    base: str, cookie: str, *, seconds: float, probes: int, statuses: Counter[int]
) -> list[float]:
    """``/auth`` latencies (ms), ``probes`` requests at a time, back to back."""
    import aiohttp

    headers = {"X-Original-Method": "GET", "X-Original-URL": APP_URL, "Cookie": cookie}
    latencies: list[float] = []
    end = time.perf_counter() + seconds

    async def prober(http: aiohttp.ClientSession) -> None:
        while time.perf_counter() < end:
            t0 = time.perf_counter()
            async with http.get(f"{base}/auth", headers=headers) as r:
                await r.read()
                statuses[r.status] += 1
            latencies.append((time.perf_counter() - t0) * 1000)

    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        await asyncio.gather(*(prober(http) for _ in range(probes)))
    return latencies


async def failing_logins(base: str, stop: asyncio.Event, statuses: Counter[int]) -> None:
    """One client keeping one wrong-password local login in flight until ``stop``."""
    import aiohttp

    from tests.support.login_driver import parse_forms

    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as http:
        async with http.get(f"{base}/login/local") as r:
            fields = dict(parse_forms(await r.text())[0].fields)
        data = {**fields, "username": "bench", "password": "wrong-password"}
        while not stop.is_set():
            async with http.post(f"{base}/login/local", data=data, allow_redirects=False) as r:
                await r.read()
                statuses[r.status] += 1


async def measure(ready: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    base = f"http://127.0.0.1:{ready['port']}"
    auth: Counter[int] = Counter()
    logins: Counter[int] = Counter()
    await probe(base, ready["cookie"], seconds=min(1.0, args.seconds), probes=1, statuses=auth)
    rounds = []
    for n in range(args.rounds):
        result: dict[str, Any] = {}
        for phase in ("idle", "burst") if n % 2 == 0 else ("burst", "idle"):
            if phase == "idle":
                lat = await probe(
                    base, ready["cookie"], seconds=args.seconds, probes=args.probes, statuses=auth
                )
                result["idle"] = {"p99": p99(lat), "n": len(lat)}
                continue
            stop = asyncio.Event()
            before = sum(logins.values())
            clients = [
                asyncio.ensure_future(failing_logins(base, stop, logins))
                for _ in range(args.logins)
            ]
            await asyncio.sleep(min(0.5, args.seconds))  # every client has a login in flight
            lat = await probe(
                base, ready["cookie"], seconds=args.seconds, probes=args.probes, statuses=auth
            )
            stop.set()
            await asyncio.gather(*clients)  # drained: the next phase starts quiet
            result["burst"] = {
                "p99": p99(lat),
                "n": len(lat),
                "logins": sum(logins.values()) - before,
            }
        result["ratio"] = result["burst"]["p99"] / result["idle"]["p99"]
        rounds.append(result)
    return {
        "rounds": rounds,
        "ratio": statistics.median(r["ratio"] for r in rounds),
        "auth_statuses": dict(auth),
        "login_statuses": dict(logins),
    }


def report(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> None:
    print(
        f"/auth p99 with {args.logins} wrong-password logins in flight vs idle; "
        f"{args.probes} probes at a time, {args.rounds} rounds of {args.seconds}s per phase"
    )
    for mode, r in results.items():
        ratios = [x["ratio"] for x in r["rounds"]]
        idle = statistics.median(x["idle"]["p99"] for x in r["rounds"])
        burst = statistics.median(x["burst"]["p99"] for x in r["rounds"])
        logins = sum(x["burst"]["logins"] for x in r["rounds"]) / (args.rounds * args.seconds)
        verdict = (
            ""
            if mode != "pool"
            else ("  (goal <= 3x: met)" if r["ratio"] <= 3 else "  (goal <= 3x: MISSED)")
        )
        print(
            f"  {mode:8} idle p99 {idle:8.2f} ms  burst p99 {burst:9.2f} ms  "
            f"ratio {r['ratio']:7.2f}x (range {min(ratios):.2f}-{max(ratios):.2f})  "
            f"~{logins:.1f} logins/s{verdict}"
        )
        print(
            f"           /auth statuses {r['auth_statuses']}  login statuses {r['login_statuses']}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4, help="seconds per phase and round")
    parser.add_argument("--logins", type=int, default=20, help="wrong-password logins in flight")
    parser.add_argument("--probes", type=int, default=2, help="/auth requests at a time")
    parser.add_argument("--modes", default="pool,on-loop", help="pool, on-loop or both")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="pool", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve, args.mode))
        return
    results: dict[str, dict[str, Any]] = {}
    for mode in args.modes.split(","):
        with tempfile.TemporaryDirectory() as tmp, bench_server(Path(tmp), mode) as ready:
            results[mode] = asyncio.run(measure(ready, args))
    if args.json:
        print(json.dumps(results))
    else:
        report(results, args)


if __name__ == "__main__":
    main()
