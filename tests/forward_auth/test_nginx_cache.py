"""nginx's cache of the broker's answers (docs/nginx.md "Caching the broker's answers"), run by
a real nginx on the configuration the docs show: repeated requests with one credential reach
the broker about once a second, a revocation is still honoured within 2 s, and no 401 or 403 is
ever served from the cache."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from broker.web.keys import METRICS
from broker.web.middleware import forward_auth_metric
from tests.conftest import RunningBroker
from tests.forward_auth.conftest import BrokerStarter, allow, deny, policy, session_token
from tests.proxies import run
from tests.proxies.upstream import make_app
from tests.support.oidc_server import free_port


@dataclass
class Stack:
    app: str
    broker: RunningBroker
    proxy: run.Proxy

    def asked(self, status: int) -> int:
        """How many ``/auth`` requests the broker answered with ``status``."""
        fa = self.broker.broker.forward_auth
        cached_here = fa.cached_allows if status == 200 else 0  # its own per-second memo
        return int(self.broker.app[METRICS][forward_auth_metric(status)]) + cached_here


@pytest.fixture
async def stack(tmp_path: Path, start_broker: BrokerStarter) -> AsyncIterator[Stack]:
    if run.find_binary("nginx") is None:
        pytest.skip("nginx is not installed (scripts/test installs the Debian package)")
    runner = web.AppRunner(make_app())
    await runner.setup()
    upstream_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", upstream_port).start()
    port = free_port()
    app = f"http://127.0.0.1:{port}"
    b = await start_broker(
        access={"dev": policy(allow("http:*", app + "/*", "App"), deny("http:*", app + "/admin/*"))}
    )
    cm = run.nginx(tmp_path, port=port, broker=b.url, upstream=f"http://127.0.0.1:{upstream_port}")
    proxy = await asyncio.to_thread(cm.__enter__)
    try:
        yield Stack(app, b, proxy)
    finally:
        await asyncio.to_thread(cm.__exit__, None, None, None)
        await runner.cleanup()


async def get(url: str, token: str | None = None) -> int:
    cookies = {"broker_session": token} if token else {}
    async with (
        aiohttp.ClientSession(cookies=cookies) as s,
        s.get(url, allow_redirects=False) as r,
    ):
        await r.read()
        return r.status


async def test_repeated_requests_reach_the_broker_about_once_a_second(stack: Stack) -> None:
    token = await session_token(stack.broker, "dev")
    loop = asyncio.get_running_loop()
    before = stack.asked(200)
    start = loop.time()
    statuses = [await get(stack.app + "/page", token) for _ in range(30)]
    elapsed = loop.time() - start
    assert statuses == [200] * 30, stack.proxy.logs()
    asked = stack.asked(200) - before
    # one entry per second of nginx's cache (a request may straddle an expiry: +1)
    assert 1 <= asked <= int(elapsed) + 2, (asked, elapsed, stack.proxy.logs())
    # another URL, another entry: the broker decides each request's own URL
    assert await get(stack.app + "/other", token) == 200
    assert stack.asked(200) - before == asked + 1


async def test_a_revoked_session_is_refused_within_two_seconds(stack: Stack) -> None:
    token = await session_token(stack.broker, "dev")
    assert await get(stack.app + "/page", token) == 200  # now in nginx's cache
    broker = stack.broker.broker
    cred = broker.sessions.verify(token)
    loop = asyncio.get_running_loop()
    revoked_at = loop.time()
    await broker.sessions.end(cred, reason="test: revoked")
    while (status := await get(stack.app + "/page", token)) == 200:
        assert loop.time() - revoked_at < 2.0, "nginx still let a revoked session in after 2 s"
        await asyncio.sleep(0.05)
    assert status == 302  # sent to sign in
    for _ in range(5):  # and from then on, never again allowed
        assert await get(stack.app + "/page", token) == 302


async def test_denials_are_never_served_from_the_cache(stack: Stack) -> None:
    token = await session_token(stack.broker, "dev")
    before_401, before_403 = stack.asked(401), stack.asked(403)
    for _ in range(5):
        assert await get(stack.app + "/page") == 302  # 401 -> the login redirect
        assert await get(stack.app + "/admin/x", token) == 403
    # every denial was the broker's own, just now (and audited by it)
    assert stack.asked(401) - before_401 == 5
    assert stack.asked(403) - before_403 == 5
    # signing in is honoured at once for the URL that was just refused
    assert await get(stack.app + "/page", token) == 200


async def next_second() -> None:
    """Sleep until just after the next whole second of the wall clock (nginx's clock)."""
    now = time.time()
    await asyncio.sleep(math.floor(now) + 1.05 - now)


async def test_an_entry_ends_with_the_second_it_was_made_in(stack: Stack) -> None:
    """The broker's ``X-Accel-Expires: @<second>``: with ``max-age=1`` alone, nginx would serve
    an entry made at 12.1 until 14.0 (it counts whole seconds), stretching a revocation."""
    token = await session_token(stack.broker, "dev")
    for _ in range(5):  # two requests within one second (a loaded machine may need a retry)
        await next_second()
        second = int(time.time())
        before = stack.asked(200)
        assert await get(stack.app + "/page", token) == 200
        assert await get(stack.app + "/page", token) == 200
        if int(time.time()) == second:
            break
    else:
        pytest.skip("could not make two requests within one second on this machine")
    assert stack.asked(200) - before == 1, stack.proxy.logs()  # the second from nginx's cache
    await next_second()
    assert await get(stack.app + "/page", token) == 200
    assert stack.asked(200) - before == 2, stack.proxy.logs()  # the entry ended with its second
