"""Issue 15 item 7: errors and options of the ``broker`` command that left newcomers guessing."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from broker.cli import main, with_broker
from broker.config import load_settings

REPO = Path(__file__).resolve().parents[1]


def _run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "broker.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
    )


@pytest.fixture
def config(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "config", tmp_path / "config")
    return tmp_path / "config" / "broker.toml"


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.startswith("broker 0.")


def test_a_missing_default_config_names_the_absolute_path_and_the_ways_to_give_one(
    tmp_path: Path,
) -> None:
    r = _run("audit", "list", cwd=tmp_path)
    assert r.returncode == 2
    assert str(tmp_path / "config" / "broker.toml") in r.stderr
    assert "--config PATH" in r.stderr
    assert "BROKER_CONFIG" in r.stderr
    assert "Traceback" not in r.stderr


def test_group_commands_take_config_and_json_before_the_verb(config: Path) -> None:
    r = _run("keys", "--config", str(config), "--json", "rotate")
    assert r.returncode == 0, r.stderr
    assert "kid" in json.loads(r.stdout)
    r = _run("audit", "--json", "--config", str(config), "list", "--limit", "1")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)[0]["action"] == "keys.rotate"
    r = _run("admin", "--config", str(config), "users", "--json", "list")
    assert r.returncode == 0, r.stderr
    assert isinstance(json.loads(r.stdout), list | dict)
    # the verb's own option wins over its group's
    r = _run("audit", "--config", "/nonexistent.toml", "list", "--config", str(config))
    assert r.returncode == 0, r.stderr


def test_audit_list_limit_has_help_and_serve_takes_no_json() -> None:
    assert "at most this many events" in _run("audit", "list", "--help").stdout
    r = _run("serve", "--json")
    assert r.returncode == 2
    assert "unrecognized arguments: --json" in r.stderr


def test_a_closed_pipe_ends_quietly(config: Path) -> None:
    """``broker audit list --json | head``: the reader leaves early; no BrokenPipeError."""

    async def fill(broker: Any) -> None:  # more than a pipe's 64 KiB buffer of JSON
        for i in range(600):
            await broker.auditor.record("test.filler", "success", principal=f"p{i}" * 20)

    asyncio.run(with_broker(load_settings(config), fill))
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "broker.cli", "audit", "list", "--json"),
            *("--limit", "600", "--config", str(config)),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    proc.stdout.read(1)
    proc.stdout.close()  # like `head -c1`
    err = proc.stderr.read().decode()
    proc.wait(timeout=60)
    assert "BrokenPipeError" not in err
    assert "Traceback" not in err
