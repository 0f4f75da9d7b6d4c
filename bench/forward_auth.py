"""Benchmark of forward-auth's hot path (not a test): ``/auth`` next to bare aiohttp handlers.

Run (needs ``wrk``: ``apt-get install wrk``; everything stays on 127.0.0.1)::

    .venv/bin/python bench/forward_auth.py [--rounds 5] [--duration 4] [--connections 32]

One server process hosts, on four loopback ports, the broker's real application (SQLite store,
its periodic tick running), a bare aiohttp handler that returns 200, a bare handler that returns
200 with the same six identity headers /auth sends (the floor any /auth can reach: it shows what
the headers alone cost), and a bare handler that does one raw Ed25519 signature verification of
the bearer token it is sent. ``wrk`` (one thread, in its own process) loads each in turn for
``--duration`` seconds, and does so ``--rounds`` times, the order reversed every other round:
these machines are shared, their speed drifts by tens of percent within a minute, and a ratio
of two runs far apart in time measures the drift. Each ratio is taken within a round (its two
sides measured back to back) and the median over the rounds is printed, with the range:

1. ``/auth`` with a valid session cookie (an allowed request: cache hit, policy decision,
   identity headers, a cached assertion) vs the bare 200 handler. Goal: >= 0.9x.
2. ``/auth`` with a bearer token never seen before on every request (a full verification: JOSE
   header, signature, claims, revocation state, then the decision) vs the bare handler doing one
   raw signature verification. Goal: >= 0.8x. The broker is sent each pre-signed token once,
   across all rounds (``--fresh-tokens`` of them; the report says if they ran out).

Each run also reads the server process's CPU time (user + system, ``/proc/<pid>/stat``) before
and after, and prints the CPU microseconds per completed request: the cost of a request in a
unit that compares across machines of different speed (and the ratio of those costs).

The server process logs at WARNING (as with ``log_level = "WARNING"``), so the per-request access
log line is not part of what is measured. It takes about two minutes with the defaults: two
warm-ups of 2 s, 5 x 5 runs of 4 s, plus start-up and signing the tokens.

With ``--instructions`` (needs ``valgrind``) it counts instead, under callgrind, the instructions
the server process executes per request in each scenario, and prints the same ratios from them:
steadier than time on a busy machine (a few percent between runs), for telling what a change
to the hot path does. It takes about five minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import functools
import json
import logging
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

APP_URL = "https://app.example.com/dashboards/1"
POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Action": "http:*", "Resource": "https://app.example.com/*"},
        {"Effect": "Deny", "Action": "http:*", "Resource": "https://app.example.com/admin/*"},
    ],
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
FRESH_LUA = """
local tokens = {}
for line in io.lines(os.getenv("BENCH_TOKENS")) do tokens[#tokens + 1] = line end
local i = tonumber(os.getenv("BENCH_OFFSET"))
request = function()
  i = i + 1
  return wrk.format("GET", "/auth", {
    ["X-Original-Method"] = "GET",
    ["X-Original-URL"] = "APP_URL",
    ["Authorization"] = "Bearer " .. tokens[((i - 1) % #tokens) + 1],
  })
end
""".replace("APP_URL", APP_URL)


def write_config(directory: Path) -> Path:
    (directory / "trust.json").write_text(json.dumps(TRUST))
    (directory / "access.json").write_text(json.dumps(POLICY))
    kek = base64.b64encode(secrets.token_bytes(32)).decode()
    path = directory / "broker.toml"
    path.write_text(
        f"""log_level = "WARNING"
[server]
listen = "127.0.0.1:0"
public_url = "https://broker.example.com"
trusted_proxies = ["127.0.0.1/32"]
[store]
url = "sqlite:///broker.db"
[keys]
kek = "{kek}"
[providers.local]
type = "local"
[roles.app]
trust_policy = "trust.json"
policies = ["access.json"]
[[proxy.public]]
url = "https://app.example.com/healthz"
"""
    )
    return path


# --- the server process ----------------------------------------------------------------------


async def serve(directory: Path, fresh: int) -> None:
    from aiohttp import web
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from broker.config import load_settings
    from broker.domain import tokens
    from broker.domain.claims import Identity
    from broker.runtime import tune_for_serving
    from broker.web.app import create_app
    from broker.web.keys import BROKER
    from broker.web.pages import COOKIES

    logging.basicConfig(level=logging.WARNING)
    settings = load_settings(directory / "broker.toml")
    app = create_app(settings)
    runners = []

    async def start(application: web.Application) -> int:
        runner = web.AppRunner(application, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        return int(runner.addresses[0][1])

    broker_port = await start(app)
    broker = app[BROKER]

    async def bare(request: web.Request) -> web.Response:
        return web.Response(status=200)

    bare_app = web.Application()
    bare_app.router.add_route("*", "/auth", bare)
    bare_port = await start(bare_app)

    jwk = broker.keyring.jwks()["keys"][0]
    public = ed25519.Ed25519PublicKey.from_public_bytes(
        base64.urlsafe_b64decode(jwk["x"] + "=" * (-len(jwk["x"]) % 4))
    )

    async def bare_verify(request: web.Request) -> web.Response:
        token = request.headers.get("Authorization", "")[len("Bearer ") :]
        signing_input, _, sig = token.rpartition(".")
        public.verify(base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4)), signing_input.encode())
        return web.Response(status=200)

    verify_app = web.Application()
    verify_app.router.add_route("*", "/auth", bare_verify)
    verify_port = await start(verify_app)

    now = broker.clock.now()
    user = await broker.store.upsert_federated_user(
        "local", "bench", name="bench", email="bench@example.com", groups=["dev"], now=now
    )
    identity = Identity("local", "bench", "bench", "bench@example.com", ("dev",), user_id=user.id)
    _, token = await broker.sessions.create(
        identity, broker.roles.arn("app"), max_session_duration=3600
    )
    base = broker.sessions.verify(token).claims
    tokens_file = directory / "fresh-tokens.txt"
    with tokens_file.open("w") as f:
        for _ in range(fresh):
            claims = {**base, "jti": secrets.token_urlsafe(16)}
            f.write(broker.keyring.sign(claims, typ=tokens.SESSION_TYP) + "\n")
    # Signing them held the loop for longer than ``revocation_max_staleness``: /auth would fail
    # closed (403) until the polling loop's next turn. One poll now, as that loop would make.
    await broker.poll_revocations()
    cookie = f"{app[COOKIES].session}={token}"

    # The floor: a bare handler answering with the same six identity headers (same values, same
    # sizes) that /auth sends, so the cost of the headers themselves is visible on its own. The
    # very object /auth hands to ``web.Response`` (a read-only multidict, copied fastest), so the
    # floor is not made lower than /auth's own headers cost.
    identity_headers = broker.forward_auth._allowed(
        broker.credentials.verify(token), "https://app.example.com"
    ).headers

    async def floor(request: web.Request) -> web.Response:
        return web.Response(status=200, headers=identity_headers)

    floor_app = web.Application()
    floor_app.router.add_route("*", "/auth", floor)
    floor_port = await start(floor_app)
    tune_for_serving()  # as `broker serve` does once started
    print(
        json.dumps(
            {
                "broker": broker_port,
                "bare": bare_port,
                "floor": floor_port,
                "verify": verify_port,
                "cookie": cookie,
                "tokens": str(tokens_file),
            }
        ),
        flush=True,
    )
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes our stdin
    for r in reversed(runners):
        await r.cleanup()


# --- the load generator ----------------------------------------------------------------------


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if not m:
        return float("nan")
    return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (``/proc/<pid>/stat``): the cost per
    request taken from it compares across machines of different speed better than req/s."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def wrk(
    url: str,
    *,
    duration: int,
    connections: int,
    headers: dict[str, str],
    script: Path | None,
    offset: int = 0,
    pid: int | None = None,
) -> dict[str, Any]:
    """One wrk run; with ``pid``, also the CPU time that process spent per completed request."""
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency"]
    for k, v in headers.items():
        cmd += ["-H", f"{k}: {v}"]
    if script is not None:
        cmd += ["-s", str(script)]
    env = {**os.environ, "BENCH_OFFSET": str(offset)}
    cpu_before = cpu_seconds(pid) if pid is not None else 0.0
    out = subprocess.run(
        [*cmd, url], capture_output=True, text=True, check=True, timeout=duration + 60, env=env
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    sent = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    cpu = cpu_seconds(pid) - cpu_before if pid is not None else float("nan")
    return {
        "cpu_us": cpu * 1e6 / max(1, sent),  # the process's CPU per completed request
        "rps": rps,
        "p50": p50,
        "p99": p99,
        "errors": int(non2xx.group(1)) if non2xx else 0,
        # completed requests, plus those still in flight when wrk stopped (one per connection)
        "sent": sent + connections,
    }


# (scenario, server, request source): a fixed session cookie, or the fresh-token script. Each
# ratio's two sides are measured back to back within every round.
SCENARIOS = [
    ("auth, valid session", "broker", "cookie"),
    ("bare aiohttp 200", "bare", "cookie"),
    ("bare, six identity headers", "floor", "cookie"),
    ("auth, never-seen token", "broker", "fresh"),
    ("bare raw signature check", "verify", "fresh"),
]
RATIOS = [
    ("valid session / bare 200", "auth, valid session", "bare aiohttp 200", 0.9),
    (
        "never-seen token / bare signature",
        "auth, never-seen token",
        "bare raw signature check",
        0.8,
    ),
]
FLOOR = ("the floor: six headers / bare 200", "bare, six identity headers", "bare aiohttp 200")


@contextlib.contextmanager
def bench_server(
    directory: Path, fresh_tokens: int, prefix: Sequence[str] = ()
) -> Iterator[dict[str, Any]]:
    """The server process (this script with ``--serve``, run under ``prefix`` if given) on a
    config written to ``directory``; yields what it announced: its four ports, the session
    cookie and the fresh-token file, and its process id."""
    write_config(directory)
    server = subprocess.Popen(
        [
            *prefix,
            sys.executable,
            __file__,
            "--serve",
            str(directory),
            "--fresh-tokens",
            str(fresh_tokens),
        ],
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
        yield {**json.loads(line), "pid": server.pid}
    finally:
        if server.stdin:
            server.stdin.close()  # the server's signal to stop
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    if server.returncode:
        raise RuntimeError(f"the bench server exited with {server.returncode}")


def load_inputs(directory: Path, ready: dict[str, Any]) -> tuple[Path, dict[str, str]]:
    """What wrk sends: the fresh-token script (with its token file in the environment, for
    the script to read) and the session request's headers."""
    lua = directory / "fresh.lua"
    lua.write_text(FRESH_LUA)
    os.environ["BENCH_TOKENS"] = ready["tokens"]
    session_headers = {
        "X-Original-Method": "GET",
        "X-Original-URL": APP_URL,
        "Cookie": ready["cookie"],
    }
    return lua, session_headers


def count_instructions(args: argparse.Namespace) -> None:
    """Instructions per request of each scenario, counted by callgrind in the whole server
    process (event loop, HTTP parsing and writing, the handler), each scenario loaded by
    ``wrk -c4`` for ``--duration`` seconds with counting switched on around it, less what the
    idle server executes in the same time (the broker's periodic tick). The count moves by a
    few percent between runs (how many requests the event loop finds ready at once depends on
    the machine's load), where time moves by tens of percent, so it shows what a change does
    to the hot path better than time does. It is not the goal's measure: the kernel's work
    (sockets) is not counted, and instructions run at different speeds (the signature
    arithmetic retires more of them per cycle than the interpreter does)."""
    for tool in ("valgrind", "callgrind_control"):
        if shutil.which(tool) is None:
            sys.exit(f"--instructions needs {tool} on PATH (apt-get install valgrind)")
    fresh_tokens = min(args.fresh_tokens, 5_000)  # ~100 never-seen tokens/s under callgrind
    per_request: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="broker-bench-") as tmp:
        dumps = Path(tmp) / "callgrind"
        dumps.mkdir()
        prefix = (
            "valgrind",
            "--tool=callgrind",
            "--quiet",
            "--instr-atstart=no",
            f"--callgrind-out-file={dumps}/cg.%p",
        )
        with bench_server(Path(tmp), fresh_tokens, prefix) as ready:
            lua, session_headers = load_inputs(Path(tmp), ready)

            def control(*flags: str) -> None:
                subprocess.run(
                    ["callgrind_control", *flags, str(ready["pid"])],
                    check=True,
                    capture_output=True,
                    timeout=120,
                )

            def counted(run: Callable[[], Any]) -> tuple[Any, int, float]:
                """What ``run`` returns, and the instructions and seconds it was counted for."""
                control("--zero")
                control("--instr=on")
                start = time.monotonic()
                result = run()
                control("--instr=off")
                seconds = time.monotonic() - start
                before = set(dumps.iterdir())
                control("--dump")
                return result, _dumped_total(dumps, before), seconds

            # The idle server still runs the broker's periodic tick; its rate is subtracted so
            # that what each scenario is charged does not depend on how many requests shared it.
            _, idle, idle_seconds = counted(lambda: time.sleep(args.duration))
            idle_rate = idle / idle_seconds
            offset = 0
            for name, server_name, source in SCENARIOS:
                fresh = source == "fresh"
                url = f"http://127.0.0.1:{ready[server_name]}/auth"
                if not fresh:  # fill the caches a cookie request is served from
                    wrk(url, duration=1, connections=4, headers=session_headers, script=None)
                r, total, seconds = counted(
                    functools.partial(
                        wrk,
                        url,
                        duration=args.duration,
                        connections=4,
                        headers={} if fresh else session_headers,
                        script=lua if fresh else None,
                        offset=offset,
                    )
                )
                if fresh and server_name == "broker":
                    offset += r["sent"]
                per_request[name] = (total - idle_rate * seconds) / r["sent"]
    print(
        f"instructions per request (callgrind, the whole server process less its idle rate of"
        f" {idle_rate / 1e6:.1f}M/s; wrk -t1 -c4, {args.duration}s per scenario)"
    )
    for name, count in per_request.items():
        print(f"{name:34} {count:12,.0f}")
    if offset > fresh_tokens:
        print("  (fresh tokens wrapped around: some were seen before)")
    for label, a, b, goal in RATIOS:
        # fewer instructions is faster: the ratio is baseline / scenario, as for req/s
        print(
            f"ratio {label + ':':36} {per_request[b] / per_request[a]:.2f}x"
            f" (the goal, >= {goal}x, is for req/s)"
        )
        if label.startswith("valid"):
            print(f"  ({FLOOR[0]}: {per_request[FLOOR[2]] / per_request[FLOOR[1]]:.2f}x)")


def _dumped_total(dumps: Path, before: set[Path]) -> int:
    """The event total of the dump that appeared after ``before``, once fully written."""
    for _ in range(600):
        for path in set(dumps.iterdir()) - before:
            # the file's last line, complete only with its newline
            found = re.search(r"^totals: (\d+)\n", path.read_text(), re.M)
            if found:
                return int(found.group(1))
        time.sleep(0.1)
    raise RuntimeError("callgrind wrote no dump")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=4, help="seconds per scenario and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--fresh-tokens", type=int, default=150_000)
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="count instructions per request under callgrind instead (needs valgrind)",
    )
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve, args.fresh_tokens))
        return
    if shutil.which("wrk") is None:
        sys.exit("bench/forward_auth.py needs wrk on PATH (apt-get install wrk)")
    if args.instructions:
        count_instructions(args)
        return
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in SCENARIOS}
    wrapped = False
    with (
        tempfile.TemporaryDirectory(prefix="broker-bench-") as tmp,
        bench_server(Path(tmp), args.fresh_tokens) as ready,
    ):
        lua, session_headers = load_inputs(Path(tmp), ready)
        c = args.connections
        base = "http://127.0.0.1:{}/auth"
        for port in (ready["broker"], ready["bare"]):  # warm up
            wrk(
                base.format(port),
                duration=2,
                connections=c,
                headers=session_headers,
                script=None,
            )
        # The broker must see each fresh token once: its runs take the next unused ones (the
        # raw verification caches nothing, so it may reuse them).
        offset = 0
        for i in range(args.rounds):
            # Alternate the order, so drift in the machine's speed within a round does not
            # always favour the same side.
            for name, server_name, source in SCENARIOS if i % 2 == 0 else SCENARIOS[::-1]:
                fresh = source == "fresh"
                consumes = fresh and server_name == "broker"
                r = wrk(
                    base.format(ready[server_name]),
                    duration=args.duration,
                    connections=c,
                    headers={} if fresh else session_headers,
                    script=lua if fresh else None,
                    offset=offset if consumes else 0,
                    pid=ready["pid"],
                )
                if consumes:
                    offset += r["sent"]
                    wrapped = wrapped or offset > args.fresh_tokens
                runs[name].append(r)
    report(runs, args, wrapped)


def report(runs: dict[str, list[dict[str, Any]]], args: argparse.Namespace, wrapped: bool) -> None:
    med = statistics.median
    print(
        f"wrk -t1 -c{args.connections}, {args.rounds} rounds of {args.duration}s per scenario,"
        f" loopback, {os.cpu_count()} CPUs (medians over the rounds)"
    )
    print(
        f"{'scenario':28} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8}"
        f" {'CPU us/req':>11}"
    )
    for name, rs in runs.items():
        print(
            f"{name:28} {med(r['rps'] for r in rs):10.0f} {med(r['p50'] for r in rs):8.2f}"
            f" {med(r['p99'] for r in rs):8.2f} {sum(r['errors'] for r in rs):8d}"
            f" {med(r['cpu_us'] for r in rs):11.1f}"
        )
    if wrapped:
        print("  (fresh tokens wrapped around: some were seen before; raise --fresh-tokens)")

    def ratios(a: str, b: str) -> list[float]:
        return [x["rps"] / y["rps"] for x, y in zip(runs[a], runs[b], strict=True)]

    def cpu_ratios(a: str, b: str) -> list[float]:
        return [x["cpu_us"] / y["cpu_us"] for x, y in zip(runs[a], runs[b], strict=True)]

    for label, a, b, goal in RATIOS:
        by_round = ratios(a, b)
        cpu = cpu_ratios(a, b)
        print(
            f"ratio {label + ':':36} {med(by_round):.2f}x (goal >= {goal}x;"
            f" rounds {min(by_round):.2f}-{max(by_round):.2f});"
            f" CPU per request {med(cpu):.2f}x the baseline's"
        )
        if label.startswith("valid"):
            f = ratios(FLOOR[1], FLOOR[2])
            print(f"  ({FLOOR[0]}: {med(f):.2f}x; rounds {min(f):.2f}-{max(f):.2f})")


if __name__ == "__main__":
    main()
