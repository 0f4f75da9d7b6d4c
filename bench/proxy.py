"""nginx in front of an app, with and without the broker's auth (issue 17; not a test).

Run (needs ``wrk`` and nginx: ``apt-get install wrk nginx``; everything stays on 127.0.0.1)::

    .venv/bin/python bench/proxy.py [--rounds 3] [--duration 4] [--connections 32]

One nginx (one worker) serves three sites, each on its own port, all proxying to the same app:

1. ``no auth``: nginx → app, nothing else (the baseline);
2. ``auth, cache on``: the configuration docs/nginx.md shows (``tests/proxies/nginx-site.conf``):
   every request asks the broker through ``auth_request``, and nginx keeps the broker's allows
   for the rest of the second the broker allows (``Cache-Control: max-age=1`` with
   ``X-Accel-Expires: @<this second>``). Goal: >= 0.8x the baseline;
3. ``auth, cache off``: the same without the two ``proxy_cache`` lines, for reference: every
   request costs a subrequest to the broker.

The app and the broker run in one Python process (``bench/forward_auth.py``'s server: the app
is its bare 200 handler), so the broker's work and the app's share one core, as they would on a
small host. ``wrk`` sends a signed-in session's cookie to ``/``. The order of the scenarios is
reversed every other round and each ratio is taken within a round (these machines are shared,
their speed drifts): the medians over the rounds are printed, with the range. The server
process's CPU time per request (user + system from ``/proc``) is printed too.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import forward_auth as fa  # noqa: E402  (bench/forward_auth.py: its server and wrk runner)

from tests.proxies import run  # noqa: E402
from tests.support.oidc_server import free_port  # noqa: E402

HOST = "app.example.com"
# The URL nginx describes to the broker is built from its server_name and port.
fa.POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "http:*", "Resource": f"http://{HOST}:*"}],
}
CACHE_LINES = ("proxy_cache_path ", "proxy_cache broker_auth;", "proxy_cache_key ")

SCENARIOS = ["no auth", "auth, cache on", "auth, cache off"]
RATIOS = [
    ("auth with cache / no auth", "auth, cache on", "no auth", 0.8),
    ("auth without cache / no auth", "auth, cache off", "no auth", None),
]


def sites(prefix: Path, ports: dict[str, int], broker: str, app: str) -> str:
    """The three server blocks: the docs' site with and without its cache, and a bare proxy."""
    docs_site = {
        "server_name": HOST,
        "broker": broker,
        "upstream": app,
        "auth_cache": str(prefix / "auth-cache"),
    }
    cached = run.render(run.NGINX_SITE, {**docs_site, "listen": f"127.0.0.1:{ports['on']}"})
    uncached = run.render(run.NGINX_SITE, {**docs_site, "listen": f"127.0.0.1:{ports['off']}"})
    uncached = "\n".join(
        line for line in uncached.splitlines() if not line.strip().startswith(CACHE_LINES)
    )
    bare = f"""
server {{
    listen 127.0.0.1:{ports["none"]};
    server_name {HOST};
    location / {{
        proxy_set_header Host $host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_pass {app};
    }}
}}
"""
    return "\n".join((cached, uncached, bare))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=4, help="seconds per scenario and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    if shutil.which("wrk") is None or run.find_binary("nginx") is None:
        sys.exit("bench/proxy.py needs wrk and nginx (apt-get install wrk nginx)")
    ports = {"none": free_port(), "on": free_port(), "off": free_port()}
    port_of = {
        "no auth": ports["none"],
        "auth, cache on": ports["on"],
        "auth, cache off": ports["off"],
    }
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in SCENARIOS}
    with (
        tempfile.TemporaryDirectory(prefix="broker-bench-proxy-") as tmp,
        fa.bench_server(Path(tmp), fresh_tokens=1) as ready,
    ):
        prefix = Path(tmp) / "nginx"
        app = f"http://127.0.0.1:{ready['bare']}/auth"  # the bare handler answers any method
        broker = f"http://127.0.0.1:{ready['broker']}"
        text = sites(prefix, ports, broker, app)
        with run.nginx_serving(prefix, text, ports["off"], logs=False):
            headers = {"Cookie": ready["cookie"]}
            for name in SCENARIOS:  # warm up, and check every site answers 200
                r = fa.wrk(
                    f"http://127.0.0.1:{port_of[name]}/",
                    duration=1,
                    connections=args.connections,
                    headers=headers,
                    script=None,
                )
                if r["errors"]:
                    sys.exit(f"{name}: {r['errors']} non-2xx answers; see {prefix}/logs")
            for i in range(args.rounds):
                for name in SCENARIOS if i % 2 == 0 else SCENARIOS[::-1]:
                    runs[name].append(
                        fa.wrk(
                            f"http://127.0.0.1:{port_of[name]}/",
                            duration=args.duration,
                            connections=args.connections,
                            headers=headers,
                            script=None,
                            pid=ready["pid"],
                        )
                    )
    report(runs, args)


def report(runs: dict[str, list[dict[str, Any]]], args: argparse.Namespace) -> None:
    med = statistics.median
    print(
        f"nginx (1 worker) -> app; wrk -t1 -c{args.connections}, {args.rounds} rounds of"
        f" {args.duration}s per scenario (medians over the rounds)"
    )
    print(
        f"{'scenario':18} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8}"
        f" {'broker+app CPU us/req':>22}"
    )
    for name, rs in runs.items():
        print(
            f"{name:18} {med(r['rps'] for r in rs):9.0f} {med(r['p50'] for r in rs):8.2f}"
            f" {med(r['p99'] for r in rs):8.2f} {sum(r['errors'] for r in rs):8d}"
            f" {med(r['cpu_us'] for r in rs):22.1f}"
        )
    for label, a, b, goal in RATIOS:
        rps = [x["rps"] / y["rps"] for x, y in zip(runs[a], runs[b], strict=True)]
        p99 = [x["p99"] / y["p99"] for x, y in zip(runs[a], runs[b], strict=True)]
        aim = f"goal >= {goal}x; " if goal else ""
        print(
            f"ratio {label + ':':30} req/s {med(rps):.2f}x ({aim}rounds"
            f" {min(rps):.2f}-{max(rps):.2f}), p99 {med(p99):.2f}x"
        )


if __name__ == "__main__":
    main()
