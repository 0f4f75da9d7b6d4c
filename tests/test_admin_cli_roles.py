"""``broker admin roles create|update-trust|delete`` (contract C5): the local root on the
server host, through the same service as the IAM API's role actions, audited as the root."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from broker.cli import main
from broker.config import load_settings
from broker.storage import open_store
from broker.storage.base import AuditEvent, RoleRecord
from tests.conftest import E2E_ROLES, trust, write_config


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = write_config(
        tmp_path, port=8000, oidc=None, roles={"local-admin": E2E_ROLES["local-admin"]}
    )
    (tmp_path / "trust.json").write_text(
        json.dumps(trust("local", {"StringEquals": {"local:sub": "ops"}}))
    )
    (tmp_path / "other.json").write_text(
        json.dumps(trust("local", {"StringEquals": {"local:sub": "other"}}))
    )
    (tmp_path / "reads.json").write_text(
        json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "s3:Get*", "Resource": "*"}],
            }
        )
    )
    (tmp_path / "broken.json").write_text('{"Statement": [{"Effect": "Allow"}]')
    return path


def admin(capsys: pytest.CaptureFixture[str], config: Path, *argv: str) -> Any:
    code, out, err = run(capsys, "admin", *argv, "--config", str(config), "--json")
    assert code == 0, err
    return json.loads(out)


def refused(capsys: pytest.CaptureFixture[str], config: Path, *argv: str) -> str:
    code, _, err = run(capsys, "admin", *argv, "--config", str(config))
    assert code == 1
    assert len(err.strip().splitlines()) == 1
    return err


def stored(config: Path) -> tuple[list[RoleRecord], list[AuditEvent]]:
    settings = load_settings(config)

    async def read() -> tuple[list[RoleRecord], list[AuditEvent]]:
        store = open_store(settings.store.url)
        try:
            return await store.list_roles(), await store.list_audit(limit=100)
        finally:
            await store.close()

    return asyncio.run(read())


def test_create_update_and_delete_a_role(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = config.parent
    created = admin(capsys, config, "roles", "create", "ops", str(d / "trust.json"),
                    "--description", "Operators", "--max-session-duration", "7200")  # fmt: skip
    assert (created["name"], created["source"], created["max_session_duration"]) == (
        "ops",
        "api",
        7200.0,
    )
    assert "ops" in [r["name"] for r in admin(capsys, config, "roles", "list")]
    admin(capsys, config, "roles", "update-trust", "ops", str(d / "other.json"))
    roles, events = stored(config)
    (ops,) = [r for r in roles if r.name == "ops"]
    assert ops.trust_policy == trust("local", {"StringEquals": {"local:sub": "other"}})
    done = {e.action for e in events if e.outcome == "success"}
    assert {"iam.CreateRole", "iam.UpdateAssumeRolePolicy"} <= done
    assert all(e.principal.startswith("root/cli:") for e in events if e.action.startswith("iam."))

    # refused: a config role, a duplicate, a broken trust policy; nothing changes
    assert "config" in refused(capsys, config, "roles", "delete", "local-admin")
    assert "already exists" in refused(
        capsys, config, "roles", "create", "OPS", str(d / "trust.json")
    )
    refused(capsys, config, "roles", "create", "new", str(d / "broken.json"))
    refused(capsys, config, "roles", "create", "new", str(d / "trust.json"),
            "--max-session-duration", "60")  # fmt: skip
    roles, events = stored(config)
    assert sorted(r.name for r in roles) == ["local-admin", "ops"]
    failures = [e.action for e in events if e.outcome == "failure"]
    assert {"iam.DeleteRole", "iam.CreateRole"} <= set(failures)

    admin(capsys, config, "roles", "put-policy", "ops", "reads", str(d / "reads.json"))
    assert "detach" in refused(capsys, config, "roles", "delete", "ops")  # DeleteConflict
    admin(capsys, config, "roles", "delete-policy", "ops", "reads")
    admin(capsys, config, "roles", "delete", "arn:broker:iam::000000000000:role/ops")
    roles, events = stored(config)
    assert [r.name for r in roles] == ["local-admin"]
    assert events[0].action in {"iam.DeleteRole", "role.revoke_sessions"}
