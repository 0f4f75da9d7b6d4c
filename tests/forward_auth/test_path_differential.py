"""The path the broker decided on is the path the upstream served (issue 11, 5).

A corpus of tricky paths (``paths_corpus``) goes through the real nginx, Caddy and Traefik, on
the configs of docs/, to two real upstreams: an aiohttp app and a Node ``http`` server
(``tests/proxies/server.js``), each of which echoes the raw path it received and the path it
routed. The broker's decisions are read from the real ``ForwardAuth.decide`` as it runs.

For every request that reached an upstream: the broker allowed it, and the path the broker
decided on, the path the upstream routed and every other reading of the raw path the upstream
received (``paths_corpus.readings``) are one and the same. Against the broker alone: every path
of the corpus that upstreams read in more than one way is refused.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote_to_bytes

import aiohttp
import pytest
from aiohttp import web

from broker.domain.urls import OriginalRequest, UrlRejected
from broker.service.audit import RequestInfo
from broker.service.forward_auth import Verdict
from tests.conftest import RunningBroker
from tests.forward_auth.conftest import BrokerStarter, allow, deny, policy, session_token
from tests.forward_auth.paths_corpus import ambiguous, canonical, corpus, readings
from tests.proxies import run
from tests.proxies.node import find_node, node_upstream
from tests.proxies.upstream import make_app
from tests.support.oidc_server import free_port

CORPUS = corpus()
_ID = re.compile(r"[?&]n=(\d+)$")


def access(app: str) -> dict[str, Any]:
    return policy(allow("http:*", app + "/*", "App"), deny("http:*", app + "/admin/*", "NoAdmin"))


@dataclass
class Answer:
    status: int
    body: bytes

    def echo(self) -> dict[str, Any] | None:
        """What the upstream received, when the answer is an upstream's echo."""
        if self.status != 200:
            return None
        try:
            echo = json.loads(self.body)
        except ValueError:
            return None
        return echo if isinstance(echo, dict) and "routed" in echo else None


async def raw_get(port: int, target: str, token: str) -> Answer:
    """``GET target`` exactly as written (no client-side normalisation), ``Connection: close``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            (
                f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                f"Authorization: Bearer {token}\r\nConnection: close\r\n\r\n"
            ).encode("latin-1")
        )
        await writer.drain()
        data = await asyncio.wait_for(reader.read(-1), timeout=30)
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    if any(line.lower() == b"transfer-encoding: chunked" for line in lines[1:]):
        body = _dechunk(body)
    return Answer(status, body)


def _dechunk(data: bytes) -> bytes:
    out = bytearray()
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += data[:size]
        data = data[size + 2 :]
    return bytes(out)


class Decisions:
    """The broker's allowed requests, by the corpus index in their query: the real ``decide``
    runs, this only notes what it was asked and answered."""

    def __init__(self, b: RunningBroker, monkeypatch: pytest.MonkeyPatch) -> None:
        self.allowed: dict[int, str] = {}
        fa = b.broker.forward_auth
        decide = fa.decide

        def noting(
            original: OriginalRequest | UrlRejected,
            tokens: list[str],
            req: RequestInfo,
            *,
            raw: Any = None,
        ) -> Verdict:
            verdict: Verdict = decide(original, tokens, req, raw=raw)
            if verdict.status == 200 and isinstance(original, OriginalRequest):
                found = _ID.search(original.url)
                if found:
                    self.allowed[int(found[1])] = original.path
            return verdict

        monkeypatch.setattr(fa, "decide", noting)


def decoded(path: str) -> bytes:
    return canonical(unquote_to_bytes(path))


def check_served(served: dict[str, Any], index: int, decisions: Decisions) -> list[str]:
    """Problems with one request that reached the upstream (an empty list: none)."""
    received = served["path"].partition("?")[0]
    decided = decisions.allowed.get(index)
    if decided is None:
        return [f"{CORPUS[index]!r}: reached the upstream as {received!r} without an allow"]
    seen = readings(received)
    seen["upstream"] = decoded(served["routed"])
    if set(seen.values()) != {decoded(decided)}:
        return [f"{CORPUS[index]!r}: broker decided {decided!r}, upstream read {seen!r}"]
    return []


# --- the stacks ----------------------------------------------------------------------------


@pytest.fixture(params=["nginx", "caddy", "traefik"])
def proxy_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    if run.find_binary(kind) is None:
        pytest.skip(f"{kind} is not installed")
    return kind


@pytest.fixture(params=["aiohttp", "node"])
async def upstream(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    port = free_port()
    if request.param == "node":
        if find_node() is None:
            pytest.skip("node is not installed")
        with node_upstream(tmp_path / "node", port=port) as url:
            yield url
        return
    runner = web.AppRunner(make_app())
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


@dataclass
class Stack:
    port: int
    broker: RunningBroker
    proxy: run.Proxy


@pytest.fixture
async def stack(
    tmp_path: Path, proxy_kind: str, upstream: str, start_broker: BrokerStarter
) -> AsyncIterator[Stack]:
    port = free_port()
    app = f"http://127.0.0.1:{port}"
    b = await start_broker(access={"viewer": access(app)}, public=(app + "/public/*",))
    start = {"nginx": run.nginx, "caddy": run.caddy, "traefik": run.traefik}[proxy_kind]
    cm = start(tmp_path, port=port, broker=b.url, upstream=upstream)
    proxy = await asyncio.to_thread(cm.__enter__)  # Traefik's probe goes through the broker
    try:
        yield Stack(port, b, proxy)
    finally:
        await asyncio.to_thread(cm.__exit__, None, None, None)


async def test_the_upstream_serves_what_the_broker_decided(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    decisions = Decisions(stack.broker, monkeypatch)
    token = await session_token(stack.broker, "viewer")
    answers = [await raw_get(stack.port, f"{p}?n={i}", token) for i, p in enumerate(CORPUS)]
    problems: list[str] = []
    served = 0
    for i, answer in enumerate(answers):
        echo = answer.echo()
        if echo is not None:
            served += 1
            problems += check_served(echo, i, decisions)
        else:
            assert answer.status in (400, 403, 404), (CORPUS[i], answer, stack.proxy.logs())
    assert problems == [], "\n".join(problems)
    # Not vacuous: the plain paths went through, with the broker's path, to the upstream.
    plain = [i for i, p in enumerate(CORPUS) if not ambiguous(p) and p.startswith("/x/y")]
    assert plain
    assert all(answers[i].echo() is not None for i in plain), stack.proxy.logs()
    assert served >= len(plain)
    assert answers[CORPUS.index("/admin/users")].status == 403


async def test_the_broker_refuses_every_ambiguous_path(
    start_broker: BrokerStarter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The oracle without a proxy (nginx's header style): every path of the corpus that is read
    in more than one way is refused, and what is allowed is decided as every reading has it."""
    app = "https://app.example.com"
    b = await start_broker(access={"viewer": access(app)})
    decisions = Decisions(b, monkeypatch)
    token = await session_token(b, "viewer")
    wrong: list[str] = []
    async with aiohttp.ClientSession() as s:
        for i, path in enumerate(CORPUS):
            headers = {
                "X-Original-Method": "GET",
                "X-Original-URL": f"{app}{path}?n={i}",
                "Authorization": f"Bearer {token}",
            }
            async with s.get(b.url + "/auth", headers=headers) as r:
                status = r.status
            seen = set(readings(path).values())
            if ambiguous(path) and status != 403:
                wrong.append(f"{path!r}: {status}, readings {readings(path)}")
            if status == 200 and seen != {decoded(decisions.allowed[i])}:
                wrong.append(f"{path!r}: decided {decisions.allowed[i]!r}, readings {seen}")
    assert wrong == [], "\n".join(wrong)
    assert len(decisions.allowed) >= len([p for p in CORPUS if p.startswith("/x/y")])
