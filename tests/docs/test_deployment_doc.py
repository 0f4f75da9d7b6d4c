"""docs/deployment.md as written: ``broker serve --workers 4`` started in a directory holding the
shipped ``config/`` (on a free port), answering ``/healthz``, and stopping cleanly on
``SIGTERM``; and the systemd unit: its ``ExecStart`` runs ``broker serve`` with options the
command has, its stop settings fit the drain time the page states, and ``systemd-analyze
verify`` accepts it."""

from __future__ import annotations

import asyncio
import configparser
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import aiohttp
import pytest

from broker.cli import build_parser
from broker.web.serve import DRAIN_SECONDS
from tests.support.doc_snippets import ROOT, blocks, runs
from tests.support.oidc_server import free_port

PAGE = "docs/deployment.md"
BIN = Path(sys.executable).parent  # the venv's `broker`


def shell_env(home: Path) -> dict[str, str]:
    """An operator's shell: the venv's ``broker`` on PATH, no BROKER_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BROKER_")}
    home.mkdir(parents=True, exist_ok=True)
    env.update(HOME=str(home), PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}")
    return env


def wait_for_line(path: Path, text: str, proc: subprocess.Popen[bytes]) -> str:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        out = path.read_text(errors="replace")
        if text in out:
            return out
        assert proc.poll() is None, f"exited {proc.returncode} before {text!r}:\n{out}"
        time.sleep(0.1)
    raise AssertionError(f"no {text!r} within 120 s:\n{path.read_text(errors='replace')}")


def launch(
    argv: list[str], cwd: Path, env: dict[str, str], out: IO[bytes], err: IO[bytes]
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=err)


@runs(PAGE, "sh", section="Using every core")
async def test_serve_with_four_workers_as_written(tmp_path: Path) -> None:
    [block] = blocks(PAGE, "sh", section="Using every core")
    argv = shlex.split(block)
    assert argv == ["broker", "serve", "--workers", "4"]
    # the command's default config, config/broker.toml, in the directory it runs in
    shutil.copytree(ROOT / "config", tmp_path / "config")
    port = free_port()
    config = tmp_path / "config" / "broker.toml"
    config.write_text(config.read_text().replace("127.0.0.1:8000", f"127.0.0.1:{port}"))
    env = shell_env(tmp_path / "home")
    executable = shutil.which(argv[0], path=env["PATH"])
    assert executable == str(BIN / "broker")
    out_path, err_path = tmp_path / "stdout", tmp_path / "stderr"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        proc = launch([executable, *argv[1:]], tmp_path, env, out, err)
        try:
            text = await asyncio.to_thread(wait_for_line, out_path, "listening on", proc)
            listening = f"listening on 127.0.0.1:{port}; public URL http://127.0.0.1:{port}"
            assert f"{listening}; 4 workers" in text
            assert text.count("one-time password") == 1  # the first start, once
            async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}/healthz") as r:
                assert r.status == 200
                assert (await r.json())["status"] == "ok"
            proc.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(proc.wait, 60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert code == 0, err_path.read_text(errors="replace")[-4000:]
    assert "Traceback" not in err_path.read_text(errors="replace")


def unit() -> configparser.ConfigParser:
    [block] = blocks(PAGE, "ini", section="Signals")
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read_string(block)
    return parser


def test_the_systemd_unit_runs_broker_serve_and_stops_it_after_the_drain() -> None:
    u = unit()
    # a service unit: what it is and what it needs, how to run it, and what enables it
    assert set(u.sections()) == {"Unit", "Service", "Install"}
    assert u["Unit"]["Description"]
    assert u["Install"]["WantedBy"] == "multi-user.target"
    service = u["Service"]

    argv = shlex.split(service["ExecStart"])
    assert argv[0].endswith("/bin/broker")
    assert argv[1] == "serve"
    args = build_parser().parse_args(argv[1:])  # exits on an option `broker serve` lacks
    assert args.command == "serve"
    assert args.config == "/etc/broker/broker.toml"

    # the stop: SIGTERM to the supervisor only, which stops its workers; each finishes its
    # requests for up to the drain time the page states; SIGKILL only after that
    text = (ROOT / PAGE).read_text("utf-8")
    m = re.search(r"finishes the requests it has \(for up to (\d+) s\)", text)
    assert m, "the page no longer states the drain time"
    assert float(m.group(1)) == DRAIN_SECONDS
    assert service["KillMode"] == "mixed"
    assert service.get("KillSignal", "SIGTERM") == "SIGTERM"
    assert float(service["TimeoutStopSec"]) > DRAIN_SECONDS
    # a reload is the supervisor's SIGHUP
    assert shlex.split(service["ExecReload"]) == ["/bin/kill", "-HUP", "$MAINPID"]
    assert service["Restart"] == "on-failure"


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed on this machine")
    [block] = blocks(PAGE, "ini", section="Signals")
    # the venv's broker stands in for /opt/broker/.venv/bin/broker (verify checks it exists)
    assert "/opt/broker/.venv/bin/broker" in block
    path = tmp_path / "broker.service"
    path.write_text(block.replace("/opt/broker/.venv/bin/broker", str(BIN / "broker")))
    r = subprocess.run([analyze, "verify", str(path)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stderr.strip() == "", r.stderr  # no unknown key, no value it ignores
