"""``broker report credentials`` on a real SQLite store, run as a command: AWS's CSV on stdout
or in ``--output FILE``, JSON with ``--json``, audited as the root; one clear line on error."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from broker.config import load_settings
from broker.service.credential_report import HEADER
from broker.storage import migrate, open_store
from broker.storage.base import User
from tests.conftest import write_config
from tests.support.credentials import insert_access_key, insert_mfa_device

T = 1_700_000_000.0


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = write_config(tmp_path, port=8000, oidc=None, roles={})
    url = load_settings(path).store.url

    async def seed() -> None:
        await migrate(url)
        store = open_store(url)
        try:
            await store.create_user(User("id-bob", "local", "bob", "bob", created_at=T))
            await store.create_user(
                User(
                    "id-ann",
                    "local",
                    "ann",
                    "ann",
                    created_at=T,
                    password_hash="$argon2id$hash",
                    password_changed_at=T + 1,
                )
            )
            await insert_access_key(store, "id-ann", "AKIAANN", created_at=T + 2)
            await insert_mfa_device(
                store, "mfa/ann", user_id="id-ann", enabled_at=T + 3, created_at=T
            )
        finally:
            await store.close()

    asyncio.run(seed())
    return path


def broker(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "broker.cli", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_prints_the_csv(config: Path) -> None:
    done = broker("report", "credentials", "--config", str(config))
    assert done.returncode == 0, done.stderr
    header, *rows = list(csv.reader(io.StringIO(done.stdout)))
    assert header == list(HEADER)
    assert [r[0] for r in rows] == ["<root_account>", "ann", "bob"]
    ann = dict(zip(header, rows[1], strict=True))
    assert ann["password_enabled"] == "true"
    assert ann["password_last_used"] == "no_information"
    assert ann["password_last_changed"] == "2023-11-14T22:13:21+00:00"
    assert ann["mfa_active"] == "true"
    assert ann["access_key_1_active"] == "true"
    assert ann["access_key_1_last_rotated"] == "2023-11-14T22:13:22+00:00"
    assert ann["access_key_2_active"] == "false"
    assert "argon2" not in done.stdout

    async def audited() -> list[str]:
        store = open_store(load_settings(config).store.url)
        try:
            return [e.principal for e in await store.list_audit(action="report.credentials")]
        finally:
            await store.close()

    [principal] = asyncio.run(audited())
    assert principal.startswith("root/cli:")


def test_output_file_and_json(config: Path, tmp_path: Path) -> None:
    target = tmp_path / "report.csv"
    done = broker("report", "credentials", "--config", str(config), "--output", str(target))
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert target.read_text().splitlines()[0] == ",".join(HEADER)
    assert not (tmp_path / "report.csv.partial").exists()
    done = broker("report", "credentials", "--config", str(config), "--json")
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert [r["user"] for r in rows] == ["<root_account>", "ann", "bob"]
    assert rows[2]["password_enabled"] == "false"


def test_errors_are_one_clear_line(config: Path, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir" / "report.csv"
    done = broker("report", "credentials", "--config", str(config), "--output", str(missing))
    assert done.returncode != 0
    assert done.stderr.strip().count("\n") == 0
    assert "cannot write" in done.stderr
    assert not missing.parent.exists()
    done = broker("report", "credentials", "--config", str(tmp_path / "absent.toml"))
    assert done.returncode != 0
    assert done.stdout == ""
