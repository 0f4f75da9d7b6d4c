"""A real nginx in front of an overloaded broker (issue 17): the broker's 503 from /auth makes
``auth_request`` deny (nginx answers 500; the app is never reached), a signed-in session
included; once the broker keeps up again the same request goes through."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from broker.web import admission
from broker.web.keys import ADMISSION
from tests.forward_auth.conftest import BrokerStarter, allow, policy, session_token
from tests.proxies import run
from tests.proxies.upstream import make_app
from tests.support.oidc_server import free_port


async def test_nginx_denies_while_the_broker_refuses_for_overload(
    tmp_path: Path, start_broker: BrokerStarter, monkeypatch: pytest.MonkeyPatch
) -> None:
    if run.find_binary("nginx") is None:
        pytest.skip("nginx is not installed (scripts/test installs the Debian package)")
    monkeypatch.setattr(admission, "TICK", 3600.0)  # the test sets the event loop's lag itself
    upstream = web.AppRunner(make_app())
    await upstream.setup()
    upstream_port = free_port()
    await web.TCPSite(upstream, "127.0.0.1", upstream_port).start()
    port = free_port()
    app = f"http://127.0.0.1:{port}"
    b = await start_broker(access={"dev": policy(allow("http:*", app + "/*", "App"))})
    token = await session_token(b, "dev")
    cm = run.nginx(tmp_path, port=port, broker=b.url, upstream=f"http://127.0.0.1:{upstream_port}")
    proxy = await asyncio.to_thread(cm.__enter__)
    try:
        async with aiohttp.ClientSession(cookies={"broker_session": token}) as s:
            b.app[ADMISSION].lag = 10.0  # above queue_timeout: every request is refused
            for path in ("/page", "/other"):
                async with s.get(app + path, allow_redirects=False) as r:
                    body = await r.text()
                    assert r.status == 500, proxy.logs()
                    assert "routed" not in body  # not the app's echo: it was never reached
            b.app[ADMISSION].lag = 0.0  # recovered
            async with s.get(app + "/third", allow_redirects=False) as r:
                assert r.status == 200, proxy.logs()
    finally:
        await asyncio.to_thread(cm.__exit__, None, None, None)
        await upstream.cleanup()
