"""An instance cut off from PostgreSQL fails closed: once its revocation state is older than
``[session] revocation_max_staleness``, ``/auth`` denies every session (403, never a 401 that
would send the browser round a login loop), audited; ``/readyz`` says why without the store's
error text; and when the database is reachable again it recovers by itself, having learnt the
logout made elsewhere meanwhile.

The cut is real: the broker reaches PostgreSQL through a TCP relay that resets its connections.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import pytest

from broker.storage import open_store
from tests.conftest import RunningBroker
from tests.forward_auth.conftest import VIEWER, BrokerStarter, session_token
from tests.support.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.postgres]
STALENESS = 3  # seconds: short, yet well above the 1 s poll interval
WAIT = 20.0  # a generous bound on "eventually": this is not a timing test


@pytest.fixture
async def pg() -> AsyncIterator[tuple[str, str]]:
    """(DSN, schema) of a fresh schema, dropped afterwards."""
    dsn = os.environ.get("BROKER_TEST_POSTGRES_DSN", "")
    if not dsn:
        pytest.skip("set BROKER_TEST_POSTGRES_DSN to run the PostgreSQL fault tests")
    schema = f"broker_fault_{secrets.token_hex(4)}"
    yield dsn, schema
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


@pytest.fixture
async def relay(pg: tuple[str, str]) -> AsyncIterator[TcpProxy]:
    u = urlsplit(pg[0])
    proxy = await TcpProxy(u.hostname or "127.0.0.1", u.port or 5432).start()
    yield proxy
    await proxy.close()


def via(dsn: str, port: int) -> str:
    u = urlsplit(dsn)
    netloc = u.netloc.rsplit("@", 1)
    user = netloc[0] + "@" if len(netloc) == 2 else ""
    return f"{u.scheme}://{user}127.0.0.1:{port}{u.path}"


async def auth(b: RunningBroker, token: str) -> tuple[int, dict[str, str], str]:
    headers = {
        "X-Original-Method": "GET",
        "X-Original-URL": "https://app.example.com/",
        "Cookie": f"broker_session={token}",
    }
    async with aiohttp.ClientSession() as s, s.get(f"{b.url}/auth", headers=headers) as r:
        return r.status, dict(r.headers), await r.text()


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not await check():
        assert time.monotonic() < deadline, f"not within {WAIT} s: {what}"
        await asyncio.sleep(0.1)


async def test_cut_off_instance_denies_after_the_staleness_window_and_recovers(
    pg: tuple[str, str], relay: TcpProxy, start_broker: BrokerStarter
) -> None:
    dsn, schema = pg
    b = await start_broker(
        access={"viewer": VIEWER},
        store_url=f"{via(dsn, relay.port)}?schema={schema}",
        extra=f'[session]\nrevocation_max_staleness = "{STALENESS}s"\n',
    )
    logged_out = await session_token(b, "viewer", subject="alice")
    staying = await session_token(b, "viewer", subject="bob")
    assert (await auth(b, logged_out))[0] == 200
    assert (await auth(b, staying))[0] == 200
    alice_sid = b.broker.sessions.verify(logged_out).session_id

    relay.cut()
    # Meanwhile another instance, which still reaches the database, logs alice out.
    other = open_store(f"{dsn}?schema={schema}")
    try:
        assert await other.revoke_session(alice_sid, now=time.time(), reason="logout")
    finally:
        await other.close()

    async def denied() -> bool:
        return (await auth(b, staying))[0] != 200

    await eventually(denied, "the cut-off instance stops answering 200")
    for token in (staying, logged_out):
        status, headers, body = await auth(b, token)
        assert status == 403  # not 401: no login redirect loop
        assert "Location" not in headers
        assert "X-Auth-Request-Redirect" not in headers
        assert body == "Forbidden\n"
    async with aiohttp.ClientSession() as s, s.get(f"{b.url}/readyz") as r:
        ready = await r.json()
        assert r.status == 503
    assert ready["checks"]["revocations"] == "failing: revocation state stale"
    assert ready["checks"]["store"] == "failing: store unavailable"
    assert str(relay.port) not in str(ready)

    relay.restore()

    async def recovered() -> bool:
        return (await auth(b, staying))[0] == 200

    await eventually(recovered, "the instance recovers once the database is back")
    assert (await auth(b, logged_out))[0] == 401  # the logout made meanwhile holds here too

    async def audited() -> bool:
        await b.broker.forward_auth.flush()
        events = await b.broker.store.list_audit(limit=500, action="forward_auth")
        return any(e.reason == "revocation_state_stale" for e in events)

    await eventually(audited, "the denials are audited")
