"""A small in-process fake of the CLI contract (/work/notes/cli-contract.md, docs/cli.md), for
what a real broker does not produce on demand: device polling answers in a chosen order
(``slow_down``, ``expired_token``), an access token that is already expired, a slow refresh so
that two CLI processes race for it, exact counts of refreshes. End-to-end behaviour is tested
against the real broker in tests/cli/test_cli_e2e.py."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from tests.support.oidc_server import free_port


def fake_jwt(sub: str) -> str:
    part = base64.urlsafe_b64encode(json.dumps({"sub": sub}).encode()).decode().rstrip("=")
    return f"eyJhbGciOiJub25lIn0.{part}.sig-{secrets.token_hex(8)}"


@dataclass
class Fake:
    url: str = ""
    login_expires_in: int = 3600
    refresh_expires_in: int = 3600
    refresh_delay: float = 0.0
    credential_lifetime: int = 3600
    device_answers: list[str] = field(default_factory=list)
    deny: bool = False
    redirect_api: bool = False
    captured: list[str] = field(default_factory=list)
    refreshes: int = 0
    credential_requests: int = 0
    revoked: list[str] = field(default_factory=list)
    verifiers_checked: int = 0
    codes: dict[str, tuple[str, str]] = field(default_factory=dict)
    refresh_tokens: set[str] = field(default_factory=set)
    access_tokens: set[str] = field(default_factory=set)
    issued_keys: set[str] = field(default_factory=set)  # role credentials handed out
    ended_keys: set[str] = field(default_factory=set)  # ... and ended (revoked) since
    identity_checks: int = 0

    def tokens(self, expires_in: int) -> dict[str, Any]:
        access, refresh = fake_jwt("alice"), secrets.token_urlsafe(16)
        self.access_tokens.add(access)
        self.refresh_tokens.add(refresh)
        return {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": expires_in,
            "refresh_token": refresh,
            "scope": "openid",
        }

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/.well-known/openid-configuration", self.discovery)
        app.router.add_get("/oauth2/authorize", self.authorize)
        app.router.add_post("/oauth2/token", self.token)
        app.router.add_post("/oauth2/device", self.device)
        app.router.add_post("/oauth2/revoke", self.revoke)
        app.router.add_get("/v1/roles", self.roles)
        app.router.add_post("/v1/credentials", self.credentials)
        app.router.add_post("/", self.sts)
        app.router.add_get("/capture", self.capture)
        return app

    async def discovery(self, _: web.Request) -> web.Response:
        u = self.url
        return web.json_response(
            {
                "issuer": u,
                "authorization_endpoint": f"{u}/oauth2/authorize",
                "device_authorization_endpoint": f"{u}/oauth2/device",
                "token_endpoint": f"{u}/oauth2/token",
                "revocation_endpoint": f"{u}/oauth2/revoke",
                "code_challenge_methods_supported": ["S256"],
            }
        )

    async def authorize(self, request: web.Request) -> web.Response:
        q = request.query
        assert q["client_id"] == "broker-cli"
        assert q["code_challenge_method"] == "S256"
        assert q["redirect_uri"].startswith("http://127.0.0.1:")
        state = q["state"]
        if self.deny:
            raise web.HTTPSeeOther(f"{q['redirect_uri']}?error=access_denied&state={state}")
        code = secrets.token_urlsafe(16)
        self.codes[code] = (q["code_challenge"], q["redirect_uri"])
        raise web.HTTPSeeOther(f"{q['redirect_uri']}?code={code}&state={state}")

    async def token(self, request: web.Request) -> web.Response:
        form = await request.post()
        grant = form.get("grant_type")
        if grant == "authorization_code":
            challenge, redirect_uri = self.codes.pop(str(form["code"]))
            verifier = str(form["code_verifier"])
            if create_s256_code_challenge(verifier) != challenge or redirect_uri != form.get(
                "redirect_uri"
            ):
                return web.json_response({"error": "invalid_grant"}, status=400)
            self.verifiers_checked += 1
            return web.json_response(self.tokens(self.login_expires_in))
        if grant == "refresh_token":
            self.refreshes += 1
            await asyncio.sleep(self.refresh_delay)
            old = str(form["refresh_token"])
            if old not in self.refresh_tokens:
                return web.json_response({"error": "invalid_grant"}, status=400)
            self.refresh_tokens.discard(old)  # rotated
            return web.json_response(self.tokens(self.refresh_expires_in))
        if grant == "urn:ietf:params:oauth:grant-type:device_code":
            answer = self.device_answers.pop(0) if self.device_answers else "tokens"
            if answer == "tokens":
                return web.json_response(self.tokens(self.login_expires_in))
            return web.json_response({"error": answer}, status=400)
        return web.json_response({"error": "unsupported_grant_type"}, status=400)

    async def device(self, _: web.Request) -> web.Response:
        return web.json_response(
            {
                "device_code": secrets.token_urlsafe(16),
                "user_code": "BCDF-GHJK",
                "verification_uri": f"{self.url}/device",
                "verification_uri_complete": f"{self.url}/device?user_code=BCDF-GHJK",
                "expires_in": 600,
                "interval": 1,
            }
        )

    async def revoke(self, request: web.Request) -> web.Response:
        token = str((await request.post())["token"])
        self.revoked.append(token)
        self.refresh_tokens.discard(token)
        return web.Response(status=200)

    def _bearer(self, request: web.Request) -> bool:
        auth = request.headers.get("Authorization", "")
        return auth.startswith("Bearer ") and auth[7:] in self.access_tokens

    async def capture(self, request: web.Request) -> web.Response:
        self.captured.append(request.headers.get("Authorization", ""))
        return web.json_response({"roles": []})

    async def roles(self, request: web.Request) -> web.Response:
        if self.redirect_api:  # as a compromised proxy might: the token elsewhere
            raise web.HTTPFound(f"http://localhost:{request.url.port}/capture")
        if not self._bearer(request):
            return web.json_response({"error": "invalid_token"}, status=401)
        dev = {"name": "dev", "arn": "arn:broker:iam::000000000000:role/dev", "description": "Dev"}
        return web.json_response({"roles": [dev]})

    async def credentials(self, request: web.Request) -> web.Response:
        if not self._bearer(request):
            return web.json_response({"error": "invalid_token"}, status=401)
        body = await request.json()
        if body["role"] != "dev":
            return web.json_response(
                {"error": "access_denied", "error_description": "no trust"}, status=403
            )
        self.credential_requests += 1
        expires = datetime.fromtimestamp(time.time() + self.credential_lifetime, UTC)
        key = f"ASIA{secrets.token_hex(8).upper()}"
        self.issued_keys.add(key)
        return web.json_response(
            {
                "Version": 1,
                "AccessKeyId": key,
                "SecretAccessKey": secrets.token_urlsafe(30),
                "SessionToken": fake_jwt("dev"),
                "Expiration": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
        )

    async def sts(self, request: web.Request) -> web.Response:
        """STS ``GetCallerIdentity`` as the CLI asks it of cached role credentials: accepted
        while the key is one handed out and not ended (the signature itself is not checked:
        the real broker's is, in tests/cli/test_cli_e2e.py)."""
        form = await request.post()
        auth = request.headers.get("Authorization", "")
        key = auth.partition("Credential=")[2].partition("/")[0]
        if (
            form.get("Action") != "GetCallerIdentity"
            or "X-Amz-Security-Token" not in request.headers
        ):
            return web.Response(status=400, text="<ErrorResponse/>", content_type="text/xml")
        self.identity_checks += 1
        if key not in self.issued_keys or key in self.ended_keys:
            return web.Response(status=403, text="<ErrorResponse/>", content_type="text/xml")
        return web.Response(text="<GetCallerIdentityResponse/>", content_type="text/xml")


async def serve(fake: Fake) -> AsyncIterator[Fake]:
    port = free_port()
    fake.url = f"http://127.0.0.1:{port}"
    runner = web.AppRunner(fake.app())
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield fake
    finally:
        await runner.cleanup()
