"""The README's first command: `broker serve` on the shipped config, as a real process."""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.support.login_driver import parse_forms
from tests.support.oidc_server import free_port

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def shipped_config(tmp_path: Path) -> tuple[Path, int]:
    """The shipped config/ copied aside, listening on a free port instead of 8000."""
    shutil.copytree(REPO / "config", tmp_path / "config")
    port = free_port()
    path = tmp_path / "config" / "broker.toml"
    text = path.read_text().replace("127.0.0.1:8000", f"127.0.0.1:{port}")
    path.write_text(text)
    return path, port


def broker_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "broker.cli", *args]


@pytest.fixture
def served(shipped_config: tuple[Path, int]) -> Iterator[tuple[subprocess.Popen[str], str, int]]:
    path, port = shipped_config
    proc = subprocess.Popen(
        broker_cmd("serve", "--config", str(path)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=path.parent.parent,
    )
    assert proc.stdout is not None
    out = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        out.append(line)
        if "listening on" in line:
            break
    text = "".join(out)
    m = re.search(r"one-time password:\s+(\S+)", text)
    assert m, f"no one-time password printed:\n{text}"
    try:
        yield proc, m.group(1), port
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
            for f in (proc.stdout, proc.stderr):
                if f:
                    f.close()


async def test_first_start_prints_a_one_time_password_and_logs_in(
    served: tuple[subprocess.Popen[str], str, int], shipped_config: tuple[Path, int]
) -> None:
    proc, otp, port = served
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        async with s.get(f"{base}/") as r:  # / -> /login, the provider list
            assert str(r.url) == f"{base}/login"
        async with s.get(f"{base}/login/local") as r:
            fields = dict(parse_forms(await r.text())[0].fields)
        data = {**fields, "username": "admin", "password": otp}
        async with s.post(f"{base}/login/local", data=data) as r:
            assert str(r.url) == f"{base}/password"
            pw = dict(parse_forms(await r.text())[0].fields)
        new = "a much better password"
        async with s.post(
            f"{base}/password", data={**pw, "new_password": new, "confirm": new}
        ) as r:
            assert str(r.url) == f"{base}/session"
            assert "admin" in await r.text()
        async with s.get(f"{base}/session", headers={"Accept": "application/json"}) as r:
            data2 = await r.json()
        assert data2["role"] == "arn:broker:iam::000000000000:role/admin"
        assert data2["provider"] == "local"
        assert data2["subject"] == "admin"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0
    assert proc.stderr is not None
    logs = proc.stderr.read()
    assert otp not in logs
    assert new not in logs
    lines = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    assert lines
    assert all("request_id" in line for line in lines)
    assert any(line["request_id"] for line in lines if "/session" in line["message"])
    # the embedded default generated its KEK beside the database, with a warning
    path, _ = shipped_config
    assert (path.parent.parent / "var" / "broker.kek").stat().st_mode & 0o077 == 0
    assert any("no [keys].kek configured" in line["message"] for line in lines)


def test_cli_commands(shipped_config: tuple[Path, int]) -> None:
    path, _ = shipped_config
    cfg = ["--config", str(path)]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(broker_cmd(*args), capture_output=True, text=True, timeout=60)

    r = run("migrate", *cfg, "--json")
    assert r.returncode == 0
    assert json.loads(r.stdout) == {"ok": True}
    r = run("keys", "rotate", *cfg, "--json")
    assert r.returncode == 0, r.stderr
    kid = json.loads(r.stdout)["kid"]
    r = run("audit", "list", *cfg, "--json")
    events = json.loads(r.stdout)
    assert events[0]["action"] == "keys.rotate"
    assert events[0]["principal"] == kid
    r = run("check-config", "--config", str(path.parent / "missing.toml"))
    assert r.returncode == 2
    assert "cannot read the config file" in r.stderr
    for args in (["--help"], ["serve", "--help"], ["keys", "rotate", "--help"]):
        assert run(*args).returncode == 0


def test_a_busy_port_fails_in_one_line_before_the_one_time_password(
    shipped_config: tuple[Path, int],
) -> None:
    """Issue 15 item 1: the port is bound before the first start creates the admin user, so a
    busy port spends no password; ``--listen`` picks another address."""
    path, port = shipped_config
    with socket.create_server(("127.0.0.1", port)):  # someone else holds the port
        r = subprocess.run(
            broker_cmd("serve", "--config", str(path)),
            capture_output=True,
            text=True,
            timeout=60,
            cwd=path.parent.parent,
        )
    assert r.returncode == 2
    assert "one-time password" not in r.stdout
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in lines[0]
    assert "--listen HOST:PORT" in lines[0]
    assert "Traceback" not in r.stderr

    other = free_port()
    proc = subprocess.Popen(
        broker_cmd("serve", "--config", str(path), "--listen", f"127.0.0.1:{other}"),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=path.parent.parent,
    )
    try:
        assert proc.stdout is not None
        out = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            out.append(line)
            if "listening on" in line:
                break
        text = "".join(out)
        assert "one-time password" in text, text  # the password was not spent by the failure
        assert f"listening on 127.0.0.1:{other}; public URL http://127.0.0.1:{other}" in text
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
        if proc.stdout:
            proc.stdout.close()


def test_a_second_broker_on_the_port_of_a_running_one_fails_in_one_line(
    served: tuple[subprocess.Popen[str], str, int], tmp_path: Path
) -> None:
    """The issue's own case: a second ``broker serve`` (a fresh copy of the shipped config, so
    an empty store of its own) on the port of a running broker exits 2 with the one line,
    creates nothing (no admin user, no password printed, no store, no KEK file), and leaves the
    first one serving."""
    first, _, port = served
    second = tmp_path / "second"
    shutil.copytree(REPO / "config", second / "config")
    path = second / "config" / "broker.toml"
    path.write_text(path.read_text().replace("127.0.0.1:8000", f"127.0.0.1:{port}"))
    r = subprocess.run(
        broker_cmd("serve", "--config", str(path)),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=second,
    )
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stdout == ""  # no one-time password, no "listening on"
    [line] = r.stderr.strip().splitlines()
    assert line.startswith(f"broker: cannot listen on 127.0.0.1:{port}: ")
    assert "--listen HOST:PORT" in line
    assert not (second / "var").exists()  # neither the store nor its KEK file was created
    assert first.poll() is None
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as answer:
        assert answer.status == 200


def test_listen_must_be_host_and_port(shipped_config: tuple[Path, int]) -> None:
    path, _ = shipped_config
    r = subprocess.run(
        broker_cmd("serve", "--config", str(path), "--listen", "nonsense"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2
    assert "is not HOST:PORT" in r.stderr
