"""The container's health check: ``python -m broker.healthcheck`` asks ``GET /healthz`` of the
broker at the address its config listens on, and exits 0 when it answers 200, 1 otherwise.

It reads the same config as ``broker serve`` (``--config``, default ``$BROKER_CONFIG``), so it
follows ``BROKER_LISTEN`` in the image's config, or the ``[server] listen`` of a mounted file,
without a port written into the Dockerfile. Standard library only: the image has no curl.
"""

from __future__ import annotations

import argparse
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence

from broker.config import DEFAULT_CONFIG_PATH, load_settings
from broker.errors import ConfigError

# A wildcard address accepts connections on loopback too. "::" is IPv6 only: the broker binds
# it with IPV6_V6ONLY (socket.create_server's default), so 127.0.0.1 would not reach it.
_LOOPBACK = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}  # noqa: S104 (we connect)


def healthz_url(host: str, port: int) -> str:
    """The ``/healthz`` URL of a broker listening on ``host:port``."""
    host = _LOOPBACK.get(host, host)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/healthz"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m broker.healthcheck",
        description="exit 0 if the broker of this config answers GET /healthz with 200",
    )
    parser.add_argument(
        "--config",
        default=os.environ.get("BROKER_CONFIG", str(DEFAULT_CONFIG_PATH)),
        help="path of the TOML config file (default: $BROKER_CONFIG or config/broker.toml)",
    )
    parser.add_argument("--timeout", type=float, default=4.0, help="seconds (default 4)")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config)
    except ConfigError as e:
        print(f"unhealthy: the config does not load: {e.problems[0]}", file=sys.stderr)
        return 1
    url = healthz_url(settings.server.listen_host, settings.server.listen_port)
    # Straight to the local socket: an HTTP_PROXY in the container's environment must not carry
    # the probe elsewhere.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        # The URL is built above from the config: always http, never a file: or other scheme.
        with opener.open(url, timeout=args.timeout) as r:
            status = r.status
    except urllib.error.HTTPError as e:
        status = e.code
    except (OSError, ValueError) as e:
        print(f"unhealthy: {url}: {getattr(e, 'reason', e)}", file=sys.stderr)
        return 1
    if status != 200:
        print(f"unhealthy: {url} answered {status}", file=sys.stderr)
        return 1
    print(f"healthy: {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
