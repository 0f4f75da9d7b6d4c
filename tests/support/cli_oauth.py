"""The ``broker-cli`` public client's side of the OAuth flows, for tests: PKCE, the authorize
URL, the token endpoint's grants, and a tiny loopback server that catches the redirect."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import web

CLIENT_ID = "broker-cli"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


@dataclass(frozen=True)
class Pkce:
    verifier: str
    challenge: str

    @staticmethod
    def new() -> Pkce:
        verifier = secrets.token_urlsafe(48)
        digest = hashlib.sha256(verifier.encode()).digest()
        return Pkce(verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode())


def authorize_url(
    base: str, redirect_uri: str, pkce: Pkce, state: str, overrides: dict[str, str] | None = None
) -> str:
    params = {
        "response_type": "code",
        "client_id": CLIENT_ID,
        "redirect_uri": redirect_uri,
        "code_challenge": pkce.challenge,
        "code_challenge_method": "S256",
        "state": state,
        **(overrides or {}),
    }
    return f"{base}/oauth2/authorize?{urlencode(params)}"


async def token_request(base: str, **form: str) -> tuple[int, dict[str, Any]]:
    data = {"client_id": CLIENT_ID, **form}
    async with aiohttp.ClientSession() as s, s.post(f"{base}/oauth2/token", data=data) as r:
        return r.status, await r.json()


async def redeem(
    base: str, code: str, redirect_uri: str, verifier: str
) -> tuple[int, dict[str, Any]]:
    return await token_request(
        base,
        grant_type="authorization_code",
        code=code,
        redirect_uri=redirect_uri,
        code_verifier=verifier,
    )


async def bearer_get(base: str, path: str, token: str) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession() as s, s.get(f"{base}{path}", headers=headers) as r:
        return r.status, await r.json()


async def role_credentials(base: str, token: str, body: Any) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        aiohttp.ClientSession() as s,
        s.post(f"{base}/v1/credentials", json=body, headers=headers) as r,
    ):
        return r.status, await r.json()


@dataclass
class Loopback:
    """What the CLI's loopback server received: each callback's query."""

    port: int = 0
    received: list[dict[str, str]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def redirect_uri(self) -> str:
        return f"http://127.0.0.1:{self.port}/callback"


@asynccontextmanager
async def loopback_server() -> AsyncIterator[Loopback]:
    """A local server on 127.0.0.1:<ephemeral> answering ``/callback`` (as the CLI does)."""
    box = Loopback()

    async def callback(request: web.Request) -> web.Response:
        box.received.append(dict(request.query))
        box.arrived.set()
        return web.Response(text="You can close this window.")

    app = web.Application()
    app.router.add_get("/callback", callback)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    box.port = int(runner.addresses[0][1])
    try:
        yield box
    finally:
        await runner.cleanup()
