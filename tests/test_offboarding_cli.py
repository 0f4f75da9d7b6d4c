"""``broker admin users disable|enable|revoke-sessions`` and ``broker admin roles
revoke-sessions`` on a real SQLite store: what they change, what they print, what they audit."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from broker.cli import main
from broker.config import load_settings
from broker.storage import migrate, open_store
from broker.storage.base import Session, Store, User
from tests.conftest import E2E_ROLES, write_config

ACCOUNT = "000000000000"
ROLE_ARN = f"arn:broker:iam::{ACCOUNT}:role/local-admin"
T = TypeVar("T")


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = write_config(
        tmp_path, port=8000, oidc=None, roles={"local-admin": E2E_ROLES["local-admin"]}
    )

    async def seed(store: Store) -> None:
        await store.create_user(User(id="u-alice", provider="corp", subject="a", name="alice"))
        now = time.time()
        for sid in ("s1", "s2"):
            await store.create_session(
                Session(
                    id=sid,
                    user_id="u-alice",
                    provider="corp",
                    subject="a",
                    role_arn=ROLE_ARN,
                    created_at=now,
                    expires_at=now + 3600,
                    last_seen_at=now,
                )
            )

    on_store(path, seed, migrate_first=True)
    return path


def on_store(
    config: Path, work: Callable[[Store], Awaitable[T]], *, migrate_first: bool = False
) -> T:
    url = load_settings(config).store.url

    async def run() -> T:
        if migrate_first:
            await migrate(url)
        store = open_store(url)
        try:
            return await work(store)
        finally:
            await store.close()

    return asyncio.run(run())


def admin(capsys: pytest.CaptureFixture[str], config: Path, *argv: str) -> tuple[int, str, str]:
    code = main(["admin", *argv, "--config", str(config)])
    out, err = capsys.readouterr()
    return code, out, err


def admin_json(capsys: pytest.CaptureFixture[str], config: Path, *argv: str) -> Any:
    code, out, err = admin(capsys, config, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


async def _state(store: Store) -> tuple[bool, list[tuple[str, str]], list[tuple[str, str, str]]]:
    user = await store.get_user("u-alice")
    revocations = [(r.kind, r.target) for r in await store.revocations_since(0)]
    audit = [(e.action, e.outcome, e.reason) for e in await store.list_audit(limit=50)]
    return user.disabled, revocations, audit


def test_disable_enable_and_revoke(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = admin_json(capsys, config, "users", "disable", "alice", "--reason", "left the team")
    assert data == {"target": "u-alice", "name": "alice", "sessions_ended": 2}
    disabled, revocations, audit = on_store(config, _state)
    assert disabled
    assert revocations == [("user", "u-alice"), ("user", "corp/a")]  # corp/a: see StsService
    assert ("user.disable", "success", "") in audit
    session = on_store(config, lambda s: s.get_session("s1"))
    assert session is not None
    assert session.revoked_at is not None

    code, out, _ = admin(capsys, config, "users", "enable", "u-alice")  # by id too
    assert code == 0
    assert out.strip() == "enabled alice (u-alice)"
    assert not on_store(config, _state)[0]

    code, out, _ = admin(capsys, config, "users", "revoke-sessions", "alice")
    assert code == 0
    assert "ended 0 session(s) of alice" in out  # both ended already; a revocation is recorded
    code, out, _ = admin(capsys, config, "roles", "revoke-sessions", "local-admin")
    assert code == 0
    assert out.strip() == f"ended every credential of {ROLE_ARN} issued until now"
    disabled, revocations, audit = on_store(config, _state)
    assert not disabled
    assert revocations == [("user", "u-alice"), ("user", "corp/a")] * 2 + [("role", ROLE_ARN)]
    actions = [a for a, o, _ in audit if o == "success"]
    for action in ("user.enable", "user.revoke_sessions", "role.revoke_sessions"):
        assert action in actions


@pytest.mark.parametrize(
    ("argv", "action", "reason"),
    [
        (("users", "disable", "nobody"), "user.disable", "no_such_user:nobody"),
        (("users", "enable", "nobody"), "user.enable", "no_such_user:nobody"),
        (("roles", "revoke-sessions", "nope"), "role.revoke_sessions", "no_such_role:nope"),
    ],
)
def test_unknown_targets_fail_clearly_and_are_audited(
    config: Path, capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], action: str,
    reason: str
) -> None:  # fmt: skip
    code, _, err = admin(capsys, config, *argv)
    assert code == 1
    assert len(err.strip().splitlines()) == 1
    assert argv[-1] in err
    _, revocations, audit = on_store(config, _state)
    assert revocations == []
    assert (action, "failure", reason) in audit
