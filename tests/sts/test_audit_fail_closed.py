"""STS, token exchange and revocation fail closed when their audit row cannot be written: the
caller gets a 503 (``ServiceUnavailable`` / ``temporarily_unavailable``) and no credential, and
nothing is revoked. The fault is a real trigger on the broker's SQLite ``audit_events``."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import aiohttp

from tests.sts.conftest import Env, creds_of, issue, post, web_identity

GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
ID_TOKEN = "urn:ietf:params:oauth:token-type:id_token"


def db(env: Env) -> Path:
    path = env.broker.settings.sqlite_path
    assert path is not None
    return path


def audit_down(env: Env) -> None:
    with sqlite3.connect(db(env)) as conn:
        conn.execute(
            "CREATE TRIGGER audit_down BEFORE INSERT ON audit_events "
            "BEGIN SELECT RAISE(ABORT, 'audit store down'); END"
        )


def audit_up(env: Env) -> None:
    with sqlite3.connect(db(env)) as conn:
        conn.execute("DROP TRIGGER audit_down")


async def form_post(
    env: Env, path: str, form: dict[str, str], bearer: str | None = None
) -> tuple[int, dict[str, Any], str]:
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    async with (
        aiohttp.ClientSession() as s,
        s.post(env.url + path, data=form, headers=headers) as r,
    ):
        text = await r.text()
        body = await r.json() if r.content_type == "application/json" else {}
        return r.status, body, text


async def test_assume_role_with_web_identity_issues_nothing_unaudited(env: Env) -> None:
    token = env.idp.mint({"sub": "user-1"})
    audit_down(env)
    reply = await post(env, web_identity(token))
    audit_up(env)
    assert reply.status == 503
    assert reply.code == "ServiceUnavailable"
    assert reply.root.find(".//{https://sts.amazonaws.com/doc/2011-06-15/}Credentials") is None
    # and once the audit store is back, the same request succeeds and is audited
    reply = await post(env, web_identity(env.idp.mint({"sub": "user-1"})))
    assert reply.status == 200
    akid = creds_of(reply)[0]
    events = await env.broker.broker.store.list_audit(limit=20)
    assert any(e.details.get("access_key_id") == akid for e in events)


async def test_token_exchange_issues_nothing_unaudited(env: Env) -> None:
    form = {
        "grant_type": GRANT,
        "subject_token": env.idp.mint({"sub": "user-1"}),
        "subject_token_type": ID_TOKEN,
        "scope": "role:ci",
    }
    audit_down(env)
    status, body, text = await form_post(env, "/oauth2/token", form)
    audit_up(env)
    assert status == 503
    assert body["error"] == "temporarily_unavailable"
    assert "access_token" not in text


async def test_revocation_changes_nothing_unaudited(env: Env) -> None:
    _, _, session_token = await issue(env)
    revocations = env.broker.broker.store.revocations_since
    before = len(await revocations(0))
    audit_down(env)
    status, body, _ = await form_post(env, "/oauth2/revoke", {"token": session_token})
    audit_up(env)
    assert status == 503
    assert body["error"] == "temporarily_unavailable"
    assert len(await revocations(0)) == before
    status, info, _ = await form_post(
        env, "/oauth2/introspect", {"token": session_token}, bearer=session_token
    )
    assert info["active"] is True
    status, _, _ = await form_post(env, "/oauth2/revoke", {"token": session_token})
    assert status == 200
    assert len(await revocations(0)) == before + 1
