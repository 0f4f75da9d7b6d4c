"""``broker admin policies|groups|users ...`` (contract C5) on a real SQLite store, then
``broker simulate`` for the user and the group they shaped."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from broker.cli import main
from broker.config import load_settings
from broker.storage import migrate, open_store
from broker.storage.base import User
from tests.conftest import E2E_ROLES, write_config

ACCOUNT = "000000000000"
ALICE = f"arn:broker:iam::{ACCOUNT}:user/alice"
WRITE = {"Version": "2012-10-17", "Statement": [
    {"Sid": "Write", "Effect": "Allow", "Action": "s3:Put*", "Resource": "*"}]}  # fmt: skip
HOME = {"Version": "2012-10-17", "Statement": [
    {"Sid": "Home", "Effect": "Allow", "Action": "s3:*",
     "Resource": "arn:aws:s3:::home/${aws:username}/*"}]}  # fmt: skip
BOUND = {"Version": "2012-10-17", "Statement": [
    {"Sid": "Bound", "Effect": "Allow", "Action": "s3:*",
     "Resource": "arn:aws:s3:::home/*"}]}  # fmt: skip


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
            await store.create_user(User(id="u-alice", provider="corp", subject="a", name="alice"))
        finally:
            await store.close()

    asyncio.run(seed())
    for name, doc in (("write", WRITE), ("home", HOME), ("bound", BOUND)):
        (tmp_path / f"{name}.json").write_text(json.dumps(doc))
    return path


def admin(capsys: pytest.CaptureFixture[str], config: Path, *argv: str) -> Any:
    code, out, err = run(capsys, "admin", *argv, "--config", str(config), "--json")
    assert code == 0, err
    return json.loads(out)


def decide(capsys: pytest.CaptureFixture[str], config: Path, principal: str, action: str,
           resource: str) -> tuple[str, list[str]]:  # fmt: skip
    code, out, err = run(capsys, "simulate", "--config", str(config), "--principal", principal,
                         "--action", action, "--resource", resource, "--json")  # fmt: skip
    assert code == 0, err
    data = json.loads(out)
    return data["decision"], [f"{m['policy']}:{m['sid']}" for m in data["matched_statements"]]


def test_shape_a_user_with_groups_policies_and_a_boundary(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = config.parent
    created = admin(capsys, config, "policies", "create", "Write", str(d / "write.json"),
                    "--description", "writes")  # fmt: skip
    assert (created["name"], created["source"], created["description"]) == (
        "Write",
        "api",
        "writes",
    )
    admin(capsys, config, "policies", "create", "Bound", str(d / "bound.json"))
    assert [p["name"] for p in admin(capsys, config, "policies", "list")] == ["Bound", "Write"]
    admin(capsys, config, "groups", "create", "ops")
    admin(capsys, config, "groups", "add-user", "ops", "alice")
    admin(capsys, config, "groups", "attach-policy", "ops", "Write")
    admin(capsys, config, "users", "put-policy", ALICE, "home", str(d / "home.json"))

    user = admin(capsys, config, "users", "get", "alice")
    assert (user["arn"], user["groups"], list(user["inline_policies"])) == (
        ALICE,
        ["ops"],
        ["home"],
    )
    assert admin(capsys, config, "groups", "get", "ops")["members"] == ["u-alice"]
    policy = admin(capsys, config, "policies", "get", "Write")
    assert policy["attached_to"] == [{"type": "group", "principal": "ops", "as_boundary": False}]

    assert decide(capsys, config, ALICE, "s3:PutObject", "arn:aws:s3:::data/x") == (
        "allowed", ["policy/Write:Write"])  # fmt: skip
    assert decide(capsys, config, ALICE, "s3:GetObject", "arn:aws:s3:::home/alice/x") == (
        "allowed", ["user/alice/home:Home"])  # fmt: skip
    assert decide(capsys, config, ALICE, "s3:GetObject", "arn:aws:s3:::home/bob/x")[0] == (
        "implicitDeny")  # fmt: skip
    admin(capsys, config, "users", "set-boundary", "alice", "Bound")
    assert decide(capsys, config, ALICE, "s3:PutObject", "arn:aws:s3:::data/x")[0] == (
        "implicitDeny")  # fmt: skip
    assert decide(capsys, config, ALICE, "s3:PutObject", "arn:aws:s3:::home/alice/x")[0] == (
        "allowed")  # fmt: skip
    group = f"arn:broker:iam::{ACCOUNT}:group/ops"
    assert decide(capsys, config, group, "s3:PutObject", "arn:aws:s3:::data/x")[0] == "allowed"

    admin(capsys, config, "users", "delete-boundary", "alice")
    admin(capsys, config, "users", "delete-policy", "alice", "home")
    admin(capsys, config, "groups", "detach-policy", "ops", "Write")
    admin(capsys, config, "groups", "remove-user", "ops", "alice")
    admin(capsys, config, "groups", "delete", "ops")
    admin(capsys, config, "policies", "delete", "Write")

    _, out, _ = run(capsys, "audit", "list", "--config", str(config), "--json")
    actions = [e["action"] for e in json.loads(out) if e["action"].startswith("iam.")]
    assert actions[-4:] == [
        "iam.AddUserToGroup", "iam.CreateGroup", "iam.CreatePolicy", "iam.CreatePolicy"
    ]  # fmt: skip
    assert actions[0] == "iam.DeletePolicy"


REFUSALS: list[tuple[str, list[str], str]] = [
    ("unknown-user", ["users", "attach-policy", "nobody", "Write"], "no user named 'nobody'"),
    ("unknown-policy", ["users", "attach-policy", "alice", "Nope"], "no policy named 'Nope'"),
    ("bad-document", ["policies", "create", "Bad", "{dir}/broker.toml"], "is not a valid policy"),
    ("missing-file", ["policies", "create", "Bad", "{dir}/nope.json"], "cannot read"),
    ("bad-group-name", ["groups", "create", "no/slash"], "group names are"),
    ("unknown-group", ["groups", "add-user", "nope", "alice"], "no group named 'nope'"),
    ("config-role", ["roles", "attach-policy", "local-admin", "Write"],
     "declared in the config file"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "fragment"), [c[1:] for c in REFUSALS], ids=[c[0] for c in REFUSALS]
)
def test_refusals_are_one_line_change_nothing_and_are_audited(
    config: Path, capsys: pytest.CaptureFixture[str], argv: list[str], fragment: str
) -> None:
    admin(capsys, config, "policies", "create", "Write", str(config.parent / "write.json"))
    argv = [a.format(dir=config.parent) for a in argv]
    code, out, err = run(capsys, "admin", *argv, "--config", str(config))
    assert code == 1
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    assert fragment in err
    assert admin(capsys, config, "users", "get", "alice")["attached_policies"] == []
    assert [p["name"] for p in admin(capsys, config, "policies", "list")] == ["Write"]
    assert admin(capsys, config, "groups", "list") == []
    code, out, _ = run(capsys, "audit", "list", "--config", str(config), "--json")
    latest = json.loads(out)[0]
    assert (latest["outcome"], latest["action"].startswith("iam.")) == ("failure", True)


def test_admin_acts_as_the_account_root_and_running_brokers_learn_of_changes(
    capsys: pytest.CaptureFixture[str], config: Path
) -> None:
    settings = load_settings(config)

    async def read() -> tuple[str | None, list[Any]]:
        store = open_store(settings.store.url)
        try:
            return await store.get_meta("iam_generation"), await store.list_audit(
                action="iam.CreatePolicy"
            )
        finally:
            await store.close()

    before, _ = asyncio.run(read())
    admin(
        capsys,
        config,
        "policies",
        "create",
        "Write",
        str(config.parent / "write.json"),
    )
    after, events = asyncio.run(read())
    assert after is not None
    assert after != before  # what each broker polls every second
    assert events[0].principal.startswith("root/cli:")
    with pytest.raises(SystemExit) as exited:
        main(["admin", "--help"])
    assert exited.value.code == 0
    assert "as the account's root" in " ".join(capsys.readouterr().out.split())
