"""``broker admin access-keys create|list|update|delete`` on a real SQLite store: the secret is
printed once, listing shows status and last use but never the secret, a third key is refused,
changes are audited as root."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from broker.cli import main
from broker.config import load_settings
from broker.storage import migrate, open_store
from broker.storage.base import AuditEvent, User
from tests.conftest import E2E_ROLES, write_config


def run(capsys: pytest.CaptureFixture[str], config: Path, *argv: str) -> tuple[int, str, str]:
    code = main(["admin", "access-keys", *argv, "--config", str(config)])
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
            await store.create_user(User(id="u-ci", provider="local", subject="ci", name="ci"))
        finally:
            await store.close()

    asyncio.run(seed())
    return path


def audit(config: Path) -> list[AuditEvent]:
    settings = load_settings(config)

    async def read() -> list[AuditEvent]:
        store = open_store(settings.store.url)
        try:
            return await store.list_audit(limit=100)
        finally:
            await store.close()

    return asyncio.run(read())


def test_create_list_update_delete(capsys: pytest.CaptureFixture[str], config: Path) -> None:
    code, out, err = run(capsys, config, "create", "ci", "--json")
    assert code == 0, err
    created: dict[str, Any] = json.loads(out)
    kid, secret = created["access_key_id"], created["secret_access_key"]
    assert kid.startswith("AKIA")
    assert len(secret) == 40
    code, text, err = run(capsys, config, "create", "arn:broker:iam::000000000000:user/ci")
    assert code == 0, err
    assert "SecretAccessKey:" in text
    assert "not shown again" in text

    code, out, err = run(capsys, config, "create", "ci")
    assert code != 0
    assert "AccessKeysPerUser" in err

    code, out, err = run(capsys, config, "list", "ci", "--json")
    assert code == 0, err
    rows = json.loads(out)
    assert [r["status"] for r in rows] == ["Active", "Active"]
    assert rows[0]["access_key_id"] == kid
    assert rows[0]["last_used_service"] == "N/A"
    assert secret not in out

    code, out, err = run(capsys, config, "update", "ci", kid, "Inactive", "--json")
    assert code == 0, err
    code, out, err = run(capsys, config, "list", "ci", "--json")
    assert json.loads(out)[0]["status"] == "Inactive"
    with pytest.raises(SystemExit):  # argparse: a status other than Active or Inactive
        run(capsys, config, "update", "ci", kid, "Sleeping")
    capsys.readouterr()
    code, out, err = run(capsys, config, "delete", "ci", kid)
    assert code == 0, err
    code, out, err = run(capsys, config, "delete", "ci", kid)
    assert code != 0
    assert "cannot be found" in err

    events = audit(config)
    done = [e.action for e in events if e.outcome == "success"]
    for action in ("iam.CreateAccessKey", "iam.UpdateAccessKey", "iam.DeleteAccessKey"):
        assert action in done
    assert all(e.principal.startswith("root/cli:") for e in events if e.action.startswith("iam."))
    dump = json.dumps([[e.action, e.reason, e.details] for e in events])
    assert secret not in dump
    assert any(e.reason == "access_key_limit" for e in events)
