"""The people-facing and operator pages without an external provider: the local provider."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from broker.errors import StoreError
from tests.conftest import E2E_ROLES, BrokerFactory, RunningBroker
from tests.support.login_driver import parse_forms


@pytest.fixture
async def broker(broker_factory: BrokerFactory) -> RunningBroker:
    return await broker_factory(
        oidc=None,
        roles={"local-admin": E2E_ROLES["local-admin"]},
        extra="[login]\nmax_failures_per_user = 3\nmax_failures_per_address = 5\n",
    )


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        yield s


async def _form(client: aiohttp.ClientSession, b: RunningBroker) -> dict[str, str]:
    async with client.get(f"{b.url}/login/local") as r:
        return dict(parse_forms(await r.text())[0].fields)


async def test_operator_endpoints(client: aiohttp.ClientSession, broker: RunningBroker) -> None:
    async with client.get(f"{broker.url}/healthz") as r:
        assert r.status == 200
        assert (await r.json())["status"] == "ok"
    async with client.get(f"{broker.url}/readyz") as r:
        body = await r.json()
        assert r.status == 200, body
        assert body["checks"] == {"store": "ok", "keys": "ok", "revocations": "ok"}
    async with client.get(f"{broker.url}/metrics") as r:
        assert "broker_http_requests_total" in await r.text()


async def test_readyz_fails_when_the_store_is_gone(
    client: aiohttp.ClientSession, broker: RunningBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def down() -> None:
        raise StoreError("database is locked")

    monkeypatch.setattr(broker.broker.store, "ping", down)  # fault injection
    async with client.get(f"{broker.url}/readyz") as r:
        assert r.status == 503
        text = await r.text()
    assert "locked" not in text  # the store's error text stays in the log
    assert (await r.json())["checks"]["store"] == "failing: store unavailable"


async def test_readyz_says_when_the_revocation_state_is_stale(
    client: aiohttp.ClientSession, broker: RunningBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    b = broker.broker

    async def unreachable(after_id: int) -> list[object]:
        raise StoreError("could not connect to 10.1.2.3:5432: password authentication failed")

    monkeypatch.setattr(b.store, "revocations_since", unreachable)  # fault injection
    for _ in range(100):  # until no poll that started before the fault is still in flight
        # as if the last good poll were older than the limit (the clock here is the real one)
        old = time.time() - b.settings.session.revocation_max_staleness - 1
        b.revocations.polled_at = min(b.revocations.polled_at, old)
        async with client.get(f"{broker.url}/readyz") as r:
            body = await r.json()
            if r.status == 503:
                break
        await asyncio.sleep(0.1)
    assert body["checks"]["revocations"] == "failing: revocation state stale"
    assert "10.1.2.3" not in str(body)
    assert "password" not in str(body)
    monkeypatch.undo()
    await b.poll_revocations()  # what the polling loop does every second
    async with client.get(f"{broker.url}/readyz") as r:
        assert r.status == 200


async def test_pages_carry_security_headers_and_request_ids(
    client: aiohttp.ClientSession, broker: RunningBroker
) -> None:
    async with client.get(f"{broker.url}/login") as r:
        assert r.status == 200
        assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
        assert r.headers["X-Frame-Options"] == "DENY"
        assert len(r.headers["X-Request-Id"]) == 16
        # the only provider is the local one: its form is shown at once, no extra click
        assert 'action="/login/local"' in await r.text()
    async with client.get(f"{broker.url}/no/such/page") as r:
        assert r.status == 404
        assert "Not found" in await r.text()
    async with client.get(f"{broker.url}/login/nope") as r:
        assert r.status == 404


async def test_session_without_cookie(client: aiohttp.ClientSession, broker: RunningBroker) -> None:
    async with client.get(f"{broker.url}/session", headers={"Accept": "application/json"}) as r:
        assert r.status == 401
        assert (await r.json())["error"] == "unauthenticated"
    async with client.get(f"{broker.url}/session", allow_redirects=False) as r:
        assert r.status == 303
        assert r.headers["Location"] in (
            "/login?rd=%2Fsession",
            "/login?rd=/session",
        )


async def test_local_login_needs_the_csrf_token(
    client: aiohttp.ClientSession, broker: RunningBroker
) -> None:
    otp = broker.broker.bootstrap_password
    fields = await _form(client, broker)
    data = {**fields, "csrf": "forged", "username": "admin", "password": otp}
    async with client.post(f"{broker.url}/login/local", data=data, allow_redirects=False) as r:
        assert r.status == 403
        assert "Set-Cookie" not in r.headers
    data = {**fields, "username": "admin", "password": otp}
    headers = {"Origin": "https://evil.test"}
    async with client.post(
        f"{broker.url}/login/local", data=data, headers=headers, allow_redirects=False
    ) as r:
        assert r.status == 403
    user = await broker.broker.store.find_user("local", "admin")
    assert user is not None
    assert user.must_change_password


@pytest.mark.parametrize(
    ("case", "usernames"),
    [("per-user", ["admin"] * 4), ("per-address", [f"u{i}" for i in range(6)])],
    ids=["per-user", "per-address"],
)
async def test_local_login_is_rate_limited(
    client: aiohttp.ClientSession, broker: RunningBroker, case: str, usernames: list[str]
) -> None:
    fields = await _form(client, broker)
    statuses = []
    for name in usernames:
        data = {**fields, "username": name, "password": "wrong-password"}
        async with client.post(f"{broker.url}/login/local", data=data) as r:
            statuses.append(r.status)
    assert statuses[-1] == 429
    assert statuses[0] == 401
    # Even the right password is refused while blocked, and nothing is issued.
    data = {**fields, "username": usernames[-1], "password": broker.broker.bootstrap_password or ""}
    async with client.post(f"{broker.url}/login/local", data=data, allow_redirects=False) as r:
        assert r.status == 429
        assert "Set-Cookie" not in r.headers
    events = await broker.broker.store.list_audit(action="login")
    assert any(e.reason == "rate_limited" for e in events)


async def test_unknown_user_and_wrong_password_look_the_same(
    client: aiohttp.ClientSession, broker: RunningBroker
) -> None:
    fields = await _form(client, broker)
    texts = []
    for name in ("admin", "nobody"):
        data = {**fields, "username": name, "password": "wrong-password"}
        async with client.post(f"{broker.url}/login/local", data=data) as r:
            assert r.status == 401
            texts.append((await r.text()).split("<footer>")[0].replace(name, "NAME"))
    assert texts[0] == texts[1]
    reasons = {e.reason for e in await broker.broker.store.list_audit(action="login")}
    assert {"wrong_password", "unknown_user"} <= reasons


async def test_logout_get_shows_a_confirmation(
    client: aiohttp.ClientSession, broker: RunningBroker
) -> None:
    async with client.get(f"{broker.url}/logout") as r:
        assert r.status == 200
        assert "Not signed in" in await r.text()
    async with client.post(f"{broker.url}/logout", data={}) as r:
        assert r.status == 401


async def test_wrong_method_is_405_with_allow(
    client: aiohttp.ClientSession, broker: RunningBroker
) -> None:
    async with client.delete(f"{broker.url}/session") as r:
        assert r.status == 405
        assert "GET" in r.headers["Allow"]
        assert r.headers["X-Request-Id"]
        assert "frame-ancestors" in r.headers["Content-Security-Policy"]
