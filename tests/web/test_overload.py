"""Under overload (issue 17) a real ``broker serve`` refuses what it cannot take, each surface in
its own 503 with ``Retry-After``, never a 2xx; it keeps answering /healthz and /metrics, and it
recovers by itself.

The overload is made without timing: ``max_concurrency = 1``, and a client that sends a request's
headers but holds back its body keeps the only slot taken (the handler waits for the body) for as
long as the test wants. Every other request then waits ``queue_timeout`` for a turn and is refused.
/auth takes no slot (it waits on nothing); it is refused when the event loop lags more than
``queue_timeout``, shown on a broker in this process whose lag the test sets.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from broker.config import load_settings
from broker.web import admission as admission_module
from broker.web.app import create_app
from broker.web.keys import ADMISSION
from tests.conftest import write_config
from tests.support.broker_process import broker_processes
from tests.support.oidc_server import free_port

ADMISSION_KEYS = 'max_concurrency = 1\nqueue_timeout = "50ms"\n'


def overload_config(directory: Path, port: int) -> Path:
    path = write_config(directory, port=port, oidc=None)
    text = path.read_text().replace("[server]\n", "[server]\n" + ADMISSION_KEYS, 1)
    path.write_text(text)
    return path


class HeldRequest:
    """A POST whose body is held back: its handler holds a request slot until ``finish``."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def start(cls, port: int) -> HeldRequest:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"POST /oauth2/token HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 20\r\n\r\n"
            b"grant_type="
        )
        await writer.drain()
        return cls(reader, writer)

    async def finish(self) -> bytes:
        self.writer.write(b"123456789")
        await self.writer.drain()
        head = await self.reader.readuntil(b"\r\n\r\n")
        self.writer.close()
        return head


@pytest.fixture
async def overloaded(tmp_path: Path) -> AsyncIterator[tuple[str, int]]:
    port = free_port()
    with broker_processes(tmp_path / "procs") as procs:
        proc = procs.start(overload_config(tmp_path / "b", port), "overloaded", port)
        await proc.wait_ready()
        yield proc.url, port


async def slot_is_held(s: aiohttp.ClientSession, url: str) -> None:
    """Until the held request is in its handler (it shows as in flight in /metrics)."""
    for _ in range(500):
        async with s.get(f"{url}/metrics") as r:
            if "broker_requests_in_flight 1" in await r.text():
                return
        await asyncio.sleep(0.01)
    raise AssertionError("the held request never reached its handler")


def refused(r: aiohttp.ClientResponse) -> None:
    assert r.status == 503, r.status
    assert int(r.headers["Retry-After"]) >= 1


async def test_each_surface_refuses_in_its_own_503_and_the_broker_recovers(
    overloaded: tuple[str, int],
) -> None:
    url, port = overloaded
    sts_form = {
        "Action": "AssumeRoleWithWebIdentity",
        "Version": "2011-06-15",
        "RoleArn": "arn:broker:iam::000000000000:role/dev",
        "RoleSessionName": "s",
        "WebIdentityToken": "x.y.z",
    }
    iam_auth = (
        "AWS4-HMAC-SHA256 Credential=AKIAEXAMPLE/20250101/us-east-1/iam/aws4_request, "
        "SignedHeaders=host, Signature=00"
    )
    async with aiohttp.ClientSession() as s:
        held = await HeldRequest.start(port)
        await slot_is_held(s, url)

        async with s.post(f"{url}/", data=sts_form) as r:  # STS: AWS's ServiceUnavailable
            refused(r)
            body = await r.text()
            assert "<Code>ServiceUnavailable</Code>" in body
            assert 'xmlns="https://sts.amazonaws.com/doc/2011-06-15/"' in body
        iam_form = {"Action": "ListUsers", "Version": "2010-05-08"}
        async with s.post(f"{url}/", data=iam_form, headers={"Authorization": iam_auth}) as r:
            refused(r)
            body = await r.text()
            assert "<Code>ServiceUnavailable</Code>" in body
            assert 'xmlns="https://iam.amazonaws.com/doc/2010-05-08/"' in body
        token_form = {"grant_type": "urn:ietf:params:oauth:grant-type:token-exchange"}
        async with s.post(f"{url}/oauth2/token", data=token_form) as r:  # OAuth JSON
            refused(r)
            assert (await r.json())["error"] == "temporarily_unavailable"
        async with s.post(f"{url}/v1/authorize", json={}) as r:  # the JSON APIs alike
            refused(r)
            assert (await r.json())["error"] == "temporarily_unavailable"
        async with s.get(f"{url}/login") as r:  # pages: an HTML 503
            refused(r)
            assert r.content_type == "text/html"
            assert "busy" in await r.text()
        async with s.get(f"{url}/login", headers={"Accept": "application/json"}) as r:
            refused(r)
            assert (await r.json())["error"] == "temporarily_unavailable"
        # concurrent requests beyond the limit: every one refused, none a 2xx
        many = [s.get(f"{url}/.well-known/jwks.json") for _ in range(10)]
        for r in await asyncio.gather(*many):
            refused(r)
            r.release()
        # the operators' endpoints are never refused
        async with s.get(f"{url}/healthz") as r:
            assert r.status == 200
        async with s.get(f"{url}/readyz") as r:
            assert r.status == 200
        async with s.get(f"{url}/metrics") as r:
            metrics = await r.text()
        refusals = sum(
            int(line.split()[-1])
            for line in metrics.splitlines()
            if line.startswith("broker_overload_refused_total{")
        )
        assert refusals == 16  # (the one waiting for a turn, or, while it waits, at once)
        assert 'broker_http_requests_total{route="/login",status="503"} 2' in metrics

        head = await held.finish()  # the held request completes normally
        assert head.startswith(b"HTTP/1.1 400 ")  # (an unknown grant_type)
        # recovery: nothing to undo
        async with s.get(f"{url}/.well-known/jwks.json") as r:
            assert r.status == 200
            assert json.loads(await r.text())["keys"]
        async with s.get(f"{url}/login") as r:
            assert r.status == 200


async def test_forward_auth_answers_503_while_the_loop_lags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A proxy denies on a 503; a request the verdict cache does not answer is refused before
    any verification, and once the lag is gone /auth answers as before."""
    monkeypatch.setattr(admission_module, "TICK", 3600.0)  # the test sets the lag itself
    port = free_port()
    config = write_config(tmp_path, port=port, oidc=None)
    config.write_text(
        config.read_text().replace(
            "[server]\n", '[server]\ntrusted_proxies = ["127.0.0.1/32"]\n' + ADMISSION_KEYS, 1
        )
    )
    from aiohttp import web

    app = create_app(load_settings(config))
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
        url = f"http://127.0.0.1:{port}"
        headers = {"X-Original-Method": "GET", "X-Original-URL": "https://app.example.com/"}
        async with aiohttp.ClientSession() as s:
            app[ADMISSION].lag = 1.0  # more than queue_timeout: requests already waited that long
            async with s.get(f"{url}/auth", headers=headers) as r:
                refused(r)
                assert r.headers["Cache-Control"] == "no-store"
            async with s.get(f"{url}/healthz") as r:
                assert r.status == 200
            async with s.get(f"{url}/metrics") as r:
                metrics = await r.text()
            assert 'broker_http_requests_total{route="/auth",status="503"} 1' in metrics
            assert 'broker_overload_refused_total{reason="event_loop_lag"} 1' in metrics
            app[ADMISSION].lag = 0.0
            async with s.get(f"{url}/auth", headers=headers) as r:
                assert r.status == 401  # no session: the ordinary answer again
    finally:
        await runner.cleanup()
