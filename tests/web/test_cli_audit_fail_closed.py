"""The CLI's authorization server fails closed when its audit row cannot be written: approving
the loopback flow issues no authorization code, and the device grant starts no device request;
the page answers 503 and the OAuth endpoint ``temporarily_unavailable`` (503). The fault is a
real trigger on the broker's SQLite ``audit_events``."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import aiohttp
import pytest

from tests.support.cli_oauth import Pkce, authorize_url
from tests.web.test_cli_auth import LOOPBACK, Env, confirm
from tests.web.test_cli_auth import browser as browser  # the fixtures, shared
from tests.web.test_cli_auth import env as env


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    """SQLite only: the fault is a trigger in its file."""
    return f"sqlite:///{tmp_path / 'broker.db'}"


def sql(env: Env, statement: str) -> int:
    path = env.broker.settings.sqlite_path
    assert path is not None
    with sqlite3.connect(path) as conn:
        row = conn.execute(statement).fetchone()
    return int(row[0]) if row else 0


def audit_down(env: Env) -> None:
    sql(
        env,
        "CREATE TRIGGER audit_down BEFORE INSERT ON audit_events "
        "BEGIN SELECT RAISE(ABORT, 'audit store down'); END",
    )


def audit_up(env: Env) -> None:
    sql(env, "DROP TRIGGER audit_down")


def pending(env: Env, kind: str) -> int:
    return sql(env, f"SELECT count(*) FROM single_use WHERE kind = '{kind}'")


async def test_no_authorization_code_is_issued_unaudited(
    env: Env, browser: aiohttp.ClientSession
) -> None:
    url = authorize_url(env.url, LOOPBACK, Pkce.new(), "st-1")
    fields = {**await confirm(browser, url), "decision": "approve"}
    audit_down(env)
    async with browser.post(f"{env.url}/oauth2/authorize", data=fields, allow_redirects=False) as r:
        body = await r.text()
        assert r.status == 503, body
        assert "Location" not in r.headers
    audit_up(env)
    assert "code=" not in body
    assert pending(env, "cli-code") == 0
    # the audit store is back: the same approval issues the code, audited
    async with browser.post(f"{env.url}/oauth2/authorize", data=fields, allow_redirects=False) as r:
        assert r.status == 303
        assert r.headers["Location"].startswith(LOOPBACK + "?code=")
    assert pending(env, "cli-code") == 1
    assert [e.outcome for e in await env.audit("cli.authorize")] == ["success"]


async def test_no_device_request_is_started_unaudited(env: Env) -> None:
    audit_down(env)
    async with (
        aiohttp.ClientSession() as s,
        s.post(f"{env.url}/oauth2/device", data={"client_id": "broker-cli"}) as r,
    ):
        body = await r.json()
        assert r.status == 503
    audit_up(env)
    assert body["error"] == "temporarily_unavailable"
    assert "device_code" not in body
    assert (pending(env, "cli-device"), pending(env, "cli-user-code")) == (0, 0)
    async with (
        aiohttp.ClientSession() as s,
        s.post(f"{env.url}/oauth2/device", data={"client_id": "broker-cli"}) as r,
    ):
        assert r.status == 200
    assert (pending(env, "cli-device"), pending(env, "cli-user-code")) == (1, 1)
    assert [e.outcome for e in await env.audit("cli.device")] == ["success"]
