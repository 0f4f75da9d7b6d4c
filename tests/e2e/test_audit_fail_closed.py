"""Fail-closed audit (Vault's promise): when the audit row of a change or a credential cannot be
written, the request fails (503) and nothing is changed or issued.

The fault is real: a trigger on the broker's own SQLite file makes every insert into
``audit_events`` fail, while the rest of the store keeps working."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from yarl import URL

from tests.conftest import E2E_ROLES, BrokerFactory, RunningBroker
from tests.support.login_driver import follow_login, parse_forms
from tests.support.oidc_server import OidcServer


def db(b: RunningBroker) -> Path:
    path = b.settings.sqlite_path
    assert path is not None
    return path


def audit_down(b: RunningBroker) -> None:
    with sqlite3.connect(db(b)) as conn:
        conn.execute(
            "CREATE TRIGGER audit_down BEFORE INSERT ON audit_events "
            "BEGIN SELECT RAISE(ABORT, 'audit store down'); END"
        )


def audit_up(b: RunningBroker) -> None:
    with sqlite3.connect(db(b)) as conn:
        conn.execute("DROP TRIGGER audit_down")


def count(b: RunningBroker, sql: str) -> int:
    with sqlite3.connect(db(b)) as conn:
        return int(conn.execute(sql).fetchone()[0])


@pytest.fixture
async def broker(broker_factory: BrokerFactory) -> RunningBroker:
    return await broker_factory(oidc=None, roles={"local-admin": E2E_ROLES["local-admin"]})


@pytest.fixture
async def browser() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        yield s


def session_cookie(s: aiohttp.ClientSession, b: RunningBroker) -> str | None:
    c = s.cookie_jar.filter_cookies(URL(b.url)).get("broker_session")
    return c.value if c else None


async def sign_in(s: aiohttp.ClientSession, b: RunningBroker, password: str) -> int:
    async with s.get(f"{b.url}/login/local") as r:
        fields = dict(parse_forms(await r.text())[0].fields)
    async with s.post(
        f"{b.url}/login/local",
        data={**fields, "username": "admin", "password": password},
        allow_redirects=False,
    ) as r:
        return r.status


async def change_password(s: aiohttp.ClientSession, b: RunningBroker, new: str) -> int:
    async with s.get(f"{b.url}/password") as r:
        form = dict(parse_forms(await r.text())[0].fields)
    async with s.post(f"{b.url}/password", data={**form, "new_password": new, "confirm": new}) as r:
        return r.status


async def session_status(s: aiohttp.ClientSession, b: RunningBroker) -> int:
    async with s.get(f"{b.url}/session", headers={"Accept": "application/json"}) as r:
        return r.status


NEW = "correct horse battery staple"


async def test_password_change_session_and_logout_fail_closed(
    broker: RunningBroker, browser: aiohttp.ClientSession
) -> None:
    b = broker
    otp = b.broker.bootstrap_password
    assert otp
    user_before = count(b, "SELECT count(*) FROM users WHERE must_change_password")

    # the password change cannot be audited: refused, the password stays as it was
    assert await sign_in(browser, b, otp) == 303
    audit_down(b)
    assert await change_password(browser, b, NEW) == 503
    audit_up(b)
    assert count(b, "SELECT count(*) FROM users WHERE must_change_password") == user_before
    assert count(b, "SELECT count(*) FROM sessions") == 0
    assert session_cookie(browser, b) is None

    # once the audit store is back, the same person completes the change
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as again:
        assert await sign_in(again, b, otp) == 303
        assert await change_password(again, b, NEW) == 200
        assert await session_status(again, b) == 200
    assert count(b, "SELECT count(*) FROM sessions") == 1

    # a session cannot be issued without its audit row: 503, no session, no cookie
    audit_down(b)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        assert await sign_in(s, b, NEW) == 503
        assert session_cookie(s, b) is None
    assert count(b, "SELECT count(*) FROM sessions") == 1
    audit_up(b)

    # logout cannot be audited: refused, the session lives on (nothing changed)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        assert await sign_in(s, b, NEW) == 303
        assert await session_status(s, b) == 200
        async with s.get(f"{b.url}/logout") as r:
            form = parse_forms(await r.text())[0]
        audit_down(b)
        async with s.post(f"{b.url}/logout", data=form.fields) as r:
            assert r.status == 503
        audit_up(b)
        assert await session_status(s, b) == 200
        assert count(b, "SELECT count(*) FROM sessions WHERE revoked_at IS NOT NULL") == 0
        async with s.post(f"{b.url}/logout", data=form.fields) as r:
            assert r.status == 200
    actions = [e.action for e in await b.broker.store.list_audit(limit=100)]
    assert "user.password_change" in actions
    assert "logout" in actions


async def test_the_periodic_tick_signs_the_chain_head(broker: RunningBroker) -> None:
    b = broker.broker
    await b.auditor.record("test.event", "success", principal="someone")
    b._last["checkpoint"] = 0.0  # as if the checkpoint interval had passed
    await b.tick()
    checkpoint = await b.store.latest_audit_checkpoint()
    head = await b.store.audit_head()
    assert checkpoint is not None
    assert head is not None
    assert (checkpoint.last_id, checkpoint.hash) == (head.id, head.hash)
    report = await b.audit_chain.verify()
    assert report.ok
    assert report.checkpoints == 1


@pytest.mark.oidc
async def test_a_role_choice_that_cannot_be_audited_issues_no_session(
    broker_factory: BrokerFactory, oidc_server: OidcServer, browser: aiohttp.ClientSession
) -> None:
    """The real provider signs alice in; the chooser's POST finds the audit store down."""
    b = await broker_factory(oidc=oidc_server)
    r = await follow_login(
        browser,
        f"{b.url}/login/corp",
        username="alice",
        password=oidc_server.accounts["alice"],
        provider_origins=oidc_server.issuers.values(),
    )
    assert r.url == f"{b.url}/roles"
    form = parse_forms(r.text)[0]
    audit_down(b)
    async with browser.post(
        f"{b.url}/roles", data=[*form.fields, ("role", "admin")], allow_redirects=False
    ) as resp:
        assert resp.status == 503
    audit_up(b)
    assert session_cookie(browser, b) is None
    assert count(b, "SELECT count(*) FROM sessions") == 0
    chosen = await b.broker.store.list_audit(action="role.choose")
    assert [e.outcome for e in chosen if e.outcome == "success"] == []


async def test_a_scheduled_key_rotation_waits_for_its_audit_row(broker: RunningBroker) -> None:
    """The periodic tick rotates a key that is due only once ``keys.rotate.start`` is written;
    while it cannot be, the tick goes on with its other work and the key stays."""
    b = broker.broker
    with sqlite3.connect(db(broker)) as conn:  # the current key was made rotate_every ago
        conn.execute("UPDATE signing_keys SET created_at = created_at - 400 * 86400")
    keys = "SELECT count(*) FROM signing_keys"
    before = count(broker, keys)
    audit_down(broker)
    b._last["keys"] = 0.0  # as if the key check interval had passed
    await b.tick()
    audit_up(broker)
    assert count(broker, keys) == before
    assert [e for e in await b.store.list_audit(limit=50) if e.action.startswith("keys.")] == []
    # the audit store is back: the next key check rotates, audited first
    b._last["keys"] = 0.0
    await b.tick()
    assert count(broker, keys) == before + 1
    actions = [e.action for e in await b.store.list_audit(limit=50)]
    assert actions.index("keys.rotate") < actions.index("keys.rotate.start")  # newest first
