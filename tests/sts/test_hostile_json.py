"""Inputs that used to crash handlers (issue 11, 0c): deeply nested JSON in a token's JOSE header
or payload, in a ``/v1/authorize`` or ``/v1/simulate`` body, in a session policy, and bodies
larger than the broker reads. Each must get its surface's own 4xx (never a 5xx: AWS SDKs retry
503), change nothing (no credential issued) and be audited with a specific reason.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import aiohttp
import pytest

from tests.sts.conftest import NS, Env, issue, last_failure, post, post_raw, successes, web_identity

GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
ID_TOKEN = "urn:ietf:params:oauth:token-type:id_token"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def nested(depth: int, inner: str = "1") -> str:
    return "[" * depth + inner + "]" * depth


def nested_header_token(env: Env, depth: int = 4000) -> str:
    """A token whose JOSE header nests ``depth`` levels (the payload is a real one)."""
    genuine = env.idp.mint({"sub": "user-1"})
    _, payload, signature = genuine.split(".")
    header = '{"alg":"RS256","kid":' + nested(depth) + "}"
    return f"{b64(header.encode())}.{payload}.{signature}"


def nested_payload_token(env: Env, depth: int = 4000) -> str:
    header, _, signature = env.idp.mint({"sub": "user-1"}).split(".")
    payload = '{"iss":"' + env.idp.issuer + '","x":' + nested(depth) + "}"
    return f"{header}.{b64(payload.encode())}.{signature}"


async def failures(env: Env, action: str) -> list[str]:
    await env.broker.broker.auditor.flush()
    events = await env.broker.broker.store.list_audit(limit=200)
    return [str(e.reason) for e in events if e.action == action and e.outcome == "failure"]


# --- STS ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make", [nested_header_token, nested_payload_token], ids=["header", "payload"]
)
async def test_nested_web_identity_token_is_an_invalid_identity_token(env: Env, make: Any) -> None:
    reply = await post(env, web_identity(make(env)))
    assert (reply.status, reply.code, reply.type) == (400, "InvalidIdentityToken", "Sender")
    assert reply.root.find(f".//{NS}Credentials") is None
    assert await successes(env) == 0
    assert "too_deep" in await last_failure(env)


async def test_nested_session_policy_is_a_malformed_policy_document(env: Env) -> None:
    token = env.idp.mint({"sub": "user-1"})
    reply = await post(env, web_identity(token, Policy=nested(1000)))
    assert (reply.status, reply.code) == (400, "MalformedPolicyDocument")
    assert await successes(env) == 0


@pytest.mark.parametrize("size", [2 * 1024 * 1024, 5 * 1024 * 1024], ids=["2MB", "5MB"])
async def test_an_oversize_sts_body_is_413_and_audited(env: Env, size: int) -> None:
    body = b"Action=AssumeRoleWithWebIdentity&Version=2011-06-15&Policy=" + b"a" * size
    reply = await post_raw(env, body, FORM)
    assert (reply.status, reply.code, reply.type) == (413, "RequestEntityTooLarge", "Sender")
    assert "body_too_large" in await last_failure(env)


async def test_an_oversize_chunked_sts_body_is_413(env: Env) -> None:
    async def chunks() -> Any:
        for _ in range(40):
            yield b"a" * (64 * 1024)

    async with (
        aiohttp.ClientSession() as s,
        s.post(env.url + "/", data=chunks(), headers=FORM) as r,
    ):
        assert r.status == 413
        assert "RequestEntityTooLarge" in await r.text()


# --- OAuth token exchange -------------------------------------------------------------------------


async def _oauth(env: Env, path: str, data: Any, headers: dict[str, str] | None = None) -> Any:
    async with (
        aiohttp.ClientSession() as s,
        s.post(env.url + path, data=data, headers=headers or {}) as r,
    ):
        assert r.content_type == "application/json", await r.text()
        return r.status, await r.json()


@pytest.mark.parametrize(
    "make", [nested_header_token, nested_payload_token], ids=["header", "payload"]
)
async def test_nested_subject_token_is_invalid_grant(env: Env, make: Any) -> None:
    form = {
        "grant_type": GRANT,
        "subject_token": make(env),
        "subject_token_type": ID_TOKEN,
        "scope": "role:ci",
    }
    status, body = await _oauth(env, "/oauth2/token", form)
    assert (status, body["error"]) == (400, "invalid_grant")
    assert any("too_deep" in r for r in await failures(env, "oauth2.token_exchange"))


@pytest.mark.parametrize("path", ["/oauth2/token", "/oauth2/revoke"])
async def test_an_oversize_oauth_body_is_413(env: Env, path: str) -> None:
    body = b"grant_type=x&token=" + b"a" * (2 * 1024 * 1024)
    status, doc = await _oauth(env, path, body, FORM)
    assert (status, doc["error"]) == (413, "invalid_request")


# --- /v1/authorize and /v1/simulate ---------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [b"[" * 50_000, nested(20_000).encode(), b'{"action":' + nested(5000).encode() + b"}"],
    ids=["open_brackets", "balanced", "inside_object"],
)
async def test_a_nested_authorize_body_is_400(env: Env, body: bytes) -> None:
    _, _, token = await issue(env)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    status, doc = await _oauth(env, "/v1/authorize", body, headers)
    assert (status, doc["error"]) == (400, "invalid_request")
    assert await failures(env, "authorize")


async def test_an_oversize_authorize_body_is_413(env: Env) -> None:
    _, _, token = await issue(env)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    async def chunks() -> Any:
        for _ in range(40):
            yield b" " * (64 * 1024)

    status, doc = await _oauth(env, "/v1/authorize", chunks(), headers)
    assert (status, doc["error"]) == (413, "invalid_request")
    assert await failures(env, "authorize")


async def test_a_nested_simulate_body_is_400(env: Env) -> None:
    _, _, token = await issue(env)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    body = json.dumps({"action": "s3:GetObject", "resource": "*"})[:-1] + ',"context":'
    status, doc = await _oauth(env, "/v1/simulate", (body + nested(5000) + "}").encode(), headers)
    assert status == 400, doc


@pytest.mark.parametrize("path", ["/login/local", "/roles", "/logout", "/password"])
async def test_an_oversize_form_to_a_page_is_refused(env: Env, path: str) -> None:
    """A page that reads the body answers 413 (audited); the others refuse before reading it
    (no flow cookie). Neither sets a cookie."""
    body = b"username=admin&password=" + b"a" * (2 * 1024 * 1024)
    async with (
        aiohttp.ClientSession() as s,
        s.post(env.url + path, data=body, headers=FORM, allow_redirects=False) as r,
    ):
        assert 400 <= r.status < 500
        assert "Set-Cookie" not in r.headers
        status = r.status
    if path == "/login/local":
        assert status == 413
        assert "body_too_large" in await last_failure(env)
