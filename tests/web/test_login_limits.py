"""Local logins under pressure: limits shared through the store, ``Retry-After`` on refusals,
and a full hashing pool answering 503 rather than queueing without bound."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import E2E_ROLES, BrokerFactory, RunningBroker
from tests.support.login_driver import parse_forms
from tests.support.postgres import fresh_schema

ROLES = {"local-admin": E2E_ROLES["local-admin"]}


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        yield s


async def login(
    client: aiohttp.ClientSession, b: RunningBroker, username: str, password: str
) -> tuple[int, dict[str, str]]:
    async with client.get(f"{b.url}/login/local") as r:
        fields = dict(parse_forms(await r.text())[0].fields)
    data = {**fields, "username": username, "password": password}
    async with client.post(f"{b.url}/login/local", data=data, allow_redirects=False) as r:
        await r.read()
        return r.status, dict(r.headers)


async def test_a_refused_login_says_when_to_retry(
    client: aiohttp.ClientSession, broker_factory: BrokerFactory
) -> None:
    b = await broker_factory(
        oidc=None, roles=ROLES, extra="[login]\nmax_failures_per_user = 2\nfailure_window = '10m'\n"
    )
    assert [(await login(client, b, "admin", "wrong"))[0] for _ in range(2)] == [401, 401]
    status, headers = await login(client, b, "admin", b.broker.bootstrap_password)
    assert status == 429
    assert 0 < int(headers["Retry-After"]) <= 600
    assert "Set-Cookie" not in headers


@pytest.fixture(
    params=[pytest.param("sqlite"), pytest.param("postgres", marks=pytest.mark.postgres)]
)
async def shared_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A store URL for two brokers: a SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'shared.db'}"
        return
    async with fresh_schema("broker_limits") as url:
        yield url


async def test_limits_are_shared_by_two_brokers_on_one_store(
    shared_store: str, client: aiohttp.ClientSession, broker_factory: BrokerFactory
) -> None:
    # (shared_store first: its schema is dropped only after both brokers have stopped)
    shared = dict(
        oidc=None,
        roles=ROLES,
        store_url=shared_store,
        extra="[login]\nmax_failures_per_user = 3\n",
    )
    a = await broker_factory(name="a", **shared)
    b = await broker_factory(name="b", **shared)
    password = a.broker.bootstrap_password
    assert password
    assert b.broker.bootstrap_password is None  # one store, one admin
    assert (await login(client, a, "admin", "wrong"))[0] == 401
    assert (await login(client, b, "admin", "wrong"))[0] == 401
    assert (await login(client, a, "admin", "wrong"))[0] == 401
    for instance in (b, a):
        status, headers = await login(client, instance, "admin", password)
        assert status == 429
        assert "Retry-After" in headers


async def test_spraying_other_names_does_not_unlock_a_user(
    client: aiohttp.ClientSession, broker_factory: BrokerFactory
) -> None:
    b = await broker_factory(
        oidc=None,
        roles=ROLES,
        extra="[login]\nmax_failures_per_user = 2\nmax_failures_per_address = 100000\n",
    )
    for _ in range(2):
        assert (await login(client, b, "admin", "wrong"))[0] == 401
    for i in range(20):
        assert (await login(client, b, f"spray-{i}", "wrong"))[0] == 401
    assert (await login(client, b, "admin", b.broker.bootstrap_password))[0] == 429


@contextlib.asynccontextmanager
async def hashing_pool_full(b: RunningBroker) -> AsyncIterator[None]:
    """Every slot of the broker's hashing pool (``hash_workers = 1``, ``hash_queue = 0``) taken
    by a job that stands for a hash that takes long, until the block ends."""
    started, release = threading.Event(), threading.Event()

    def hog() -> bool:
        started.set()
        return release.wait(30)

    busy = asyncio.ensure_future(b.broker.hashing._run(hog))
    try:
        assert await asyncio.to_thread(started.wait, 30)
        yield
    finally:
        release.set()
        await busy


ONE_SLOT = "[login]\nmax_failures_per_user = 1\nhash_workers = 1\nhash_queue = 0\n"


async def test_a_full_hashing_pool_answers_503_and_charges_nothing(
    client: aiohttp.ClientSession, broker_factory: BrokerFactory
) -> None:
    b = await broker_factory(oidc=None, roles=ROLES, extra=ONE_SLOT)
    async with hashing_pool_full(b):
        status, headers = await login(client, b, "admin", b.broker.bootstrap_password)
        assert status == 503
        assert headers["Retry-After"] == "1"
        assert "Set-Cookie" not in headers
    events = await b.broker.store.list_audit(action="login")
    assert any(e.reason == "password_hashing_queue_full" for e in events)
    # The refused attempt was not counted against the user (limit 1): the right password works.
    status, headers = await login(client, b, "admin", b.broker.bootstrap_password)
    assert status == 303
    assert headers["Location"] == "/password"


async def test_a_password_change_refused_for_load_leaves_the_ticket_usable(
    client: aiohttp.ClientSession, broker_factory: BrokerFactory
) -> None:
    b = await broker_factory(oidc=None, roles=ROLES, extra=ONE_SLOT)
    assert (await login(client, b, "admin", b.broker.bootstrap_password))[0] == 303
    async with client.get(f"{b.url}/password") as r:
        fields = dict(parse_forms(await r.text())[0].fields)
    new = "correct horse battery staple"
    data = {**fields, "new_password": new, "confirm": new}
    url = f"{b.url}/password"
    async with hashing_pool_full(b), client.post(url, data=data, allow_redirects=False) as r:
        assert r.status == 503
        assert r.headers["Retry-After"] == "1"
    user = await b.broker.store.find_user("local", "admin")
    assert user.must_change_password  # nothing changed
    events = await b.broker.store.list_audit(action="user.password_change")
    assert [e.reason for e in events if e.outcome == "failure"] == ["password_hashing_queue_full"]
    async with client.post(f"{b.url}/password", data=data) as r:
        assert r.status == 200
        assert str(r.url) == f"{b.url}/session"
