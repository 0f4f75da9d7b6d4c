"""``broker audit verify`` and ``broker audit list`` against a SQLite store edited behind the
broker's back with the ``sqlite3`` module (as an operator with file access would)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from broker.cli import main
from broker.config import load_settings
from broker.storage import migrate, open_store
from broker.storage.base import AuditEvent
from tests.conftest import E2E_ROLES, write_config

T0 = 1_700_000_000.0


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = write_config(
        tmp_path, port=8000, oidc=None, roles={"local-admin": E2E_ROLES["local-admin"]}
    )
    settings = load_settings(path)

    async def seed() -> None:
        await migrate(settings.store.url)
        store = open_store(settings.store.url)
        try:
            for n in range(6):
                await store.append_audit(
                    AuditEvent(T0 + n, "login", "success", principal=f"corp/user{n}")
                )
        finally:
            await store.close()

    asyncio.run(seed())
    return path


def database(config: Path) -> Path:
    db = load_settings(config).sqlite_path
    assert db is not None
    return db


def sql(config: Path, statement: str, *params: Any) -> None:
    with sqlite3.connect(database(config)) as conn:
        conn.execute(statement, params)


def verify(capsys: pytest.CaptureFixture[str], config: Path) -> tuple[int, dict[str, Any]]:
    code, out, _ = run(capsys, "audit", "verify", "--config", str(config), "--json")
    return code, json.loads(out)


def test_an_untouched_trail_verifies_and_is_checkpointed(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = verify(capsys, config)
    assert code == 0
    assert report["ok"] is True
    assert report["rows"] >= 6
    # the command itself left a signed checkpoint of the head behind: the next run matches it
    code, again = verify(capsys, config)
    assert code == 0
    assert again["checkpoints"] >= 1
    code, out, _ = run(capsys, "audit", "verify", "--config", str(config))
    assert code == 0
    assert out.startswith("OK:")


def test_a_row_edited_with_sqlite3_is_named(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sql(config, "UPDATE audit_events SET principal = 'corp/mallory' WHERE id = 3")
    code, report = verify(capsys, config)
    assert code == 1
    assert report["ok"] is False
    assert report["broken"]["row_id"] == 3
    assert report["broken"]["kind"] == "changed"
    code, out, _ = run(capsys, "audit", "verify", "--config", str(config))
    assert code == 1
    assert "row 3" in out
    # the listing still shows the rows, with a warning
    code, out, err = run(capsys, "audit", "list", "--config", str(config), "--json")
    assert code == 0
    assert "corp/mallory" in out
    assert "WARNING" in err
    assert "row 3" in err


def test_a_deleted_row_is_named(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sql(config, "DELETE FROM audit_events WHERE id = 4")
    code, report = verify(capsys, config)
    assert code == 1
    assert report["broken"]["row_id"] == 5
    assert report["broken"]["kind"] == "deleted"


def test_an_edited_row_with_its_hash_recomputed_is_still_found(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from broker.domain.audit_chain import hash_of
    from broker.storage.sql import open_store as reopen

    async def rows() -> Any:
        store = reopen(load_settings(config).store.url)
        try:
            return await store.audit_chain()
        finally:
            await store.close()

    [row] = [r for r in asyncio.run(rows()) if r.id == 2]
    from dataclasses import replace

    forged = replace(row, principal="corp/mallory")
    sql(
        config,
        "UPDATE audit_events SET principal = ?, hash = ? WHERE id = 2",
        forged.principal,
        hash_of(forged),
    )
    code, report = verify(capsys, config)
    assert code == 1
    assert report["broken"]["row_id"] == 3


def test_a_rewritten_chain_is_caught_by_the_signed_checkpoint(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _ = verify(capsys, config)  # leaves a signed checkpoint of the head
    assert code == 0
    # rewrite every row consistently (the chain alone would hold)
    from broker.domain.audit_chain import GENESIS, row_hash

    with sqlite3.connect(database(config)) as conn:
        rows = conn.execute(
            "SELECT id, time, action, outcome, request_id, principal, reason, source_ip, details"
            " FROM audit_events ORDER BY id"
        ).fetchall()
        prev = GENESIS
        for id_, time, action, outcome, rid, principal, reason, ip, details in rows:
            principal = "corp/mallory" if id_ == 2 else principal
            h = row_hash(
                prev, time=time, action=action, outcome=outcome, request_id=rid,
                principal=principal, reason=reason, source_ip=ip, details=json.loads(details),
            )  # fmt: skip
            conn.execute(
                "UPDATE audit_events SET principal = ?, prev_hash = ?, hash = ? WHERE id = ?",
                (principal, prev, h, id_),
            )
            prev = h
    code, report = verify(capsys, config)
    assert code == 1
    assert report["broken"]["kind"] == "checkpoint"


def test_a_truncated_tail_is_caught_by_the_checkpoint(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = verify(capsys, config)
    assert code == 0
    head = report["head_id"]
    sql(config, "DELETE FROM audit_events WHERE id >= ?", head - 1)
    code, report = verify(capsys, config)
    assert code == 1
    assert report["broken"]["kind"] == "deleted"


def test_an_admin_change_that_cannot_be_audited_is_not_made(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = config.parent / "p.json"
    doc.write_text(json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:Get*", "Resource": "*"}]}))  # fmt: skip
    sql(
        config,
        "CREATE TRIGGER audit_down BEFORE INSERT ON audit_events "
        "BEGIN SELECT RAISE(ABORT, 'audit store down'); END",
    )
    code, out, err = run(capsys, "admin", "policies", "create", "P", str(doc), "--config",
                         str(config))  # fmt: skip
    assert code == 1
    assert out == ""
    assert "audit_unavailable" in err
    with sqlite3.connect(database(config)) as conn:
        assert conn.execute(
            "SELECT count(*) FROM managed_policies WHERE name = 'P'"
        ).fetchone() == (0,)
    code, _, err = run(capsys, "keys", "rotate", "--config", str(config))
    assert code == 1
    with sqlite3.connect(database(config)) as conn:
        assert conn.execute("SELECT count(*) FROM signing_keys").fetchone() == (1,)
