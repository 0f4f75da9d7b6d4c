"""Fuzzing every endpoint that parses outside JSON (issue 11, 0c): whatever the token or body,
the answer is never a 5xx, and nothing is issued (no cookie, no credential, no success event).

Tokens and bodies come from ``tests/support/fuzz.py``: valid JSON, JSON nested past any limit
(up to 6,000 levels, closed or not), broken JSON, duplicate members, constants. Example counts
are modest: each example is an HTTP request to a live broker.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from hypothesis import strategies as st

from tests.sts.conftest import Env, issue, successes, web_identity
from tests.support.fuzz import assert_refused_or_answered, fuzz, hostile_json, hostile_tokens

EXAMPLES = 40
GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
ID_TOKEN = "urn:ietf:params:oauth:token-type:id_token"


async def _post(
    session: aiohttp.ClientSession, url: str, data: Any, headers: dict[str, str] | None = None
) -> None:
    async with session.post(url, data=data, headers=headers or {}) as r:
        assert_refused_or_answered(r.status, r.headers, await r.text())


@pytest.fixture
async def session() -> Any:
    async with aiohttp.ClientSession() as s:
        yield s


async def _nothing_issued(env: Env, before: int) -> None:
    assert await successes(env) == before


async def test_web_identity_token(env: Env, session: aiohttp.ClientSession) -> None:
    async def check(token: str) -> None:
        await _post(session, env.url + "/", web_identity(token))

    await fuzz(hostile_tokens, check, max_examples=EXAMPLES)
    await _nothing_issued(env, 0)


async def test_session_policy(env: Env, session: aiohttp.ClientSession) -> None:
    # role "nobody" trusts no one here: the policy is parsed, then the trust policy denies
    token = env.idp.mint({"sub": "user-1"})

    async def check(policy: str) -> None:
        await _post(session, env.url + "/", web_identity(token, "nobody", Policy=policy))

    await fuzz(hostile_json, check, max_examples=EXAMPLES)
    await _nothing_issued(env, 0)


async def test_subject_token(env: Env, session: aiohttp.ClientSession) -> None:
    async def check(token: str) -> None:
        form = {
            "grant_type": GRANT,
            "subject_token": token,
            "subject_token_type": ID_TOKEN,
            "scope": "role:ci",
        }
        await _post(session, env.url + "/oauth2/token", form)

    await fuzz(hostile_tokens, check, max_examples=EXAMPLES)
    await _nothing_issued(env, 0)


async def test_introspected_and_revoked_tokens(env: Env, session: aiohttp.ClientSession) -> None:
    _, _, mine = await issue(env)
    before = await successes(env)

    async def check(token: str) -> None:
        await _post(session, env.url + "/oauth2/revoke", {"token": token})
        bearer = {"Authorization": f"Bearer {mine}"}
        await _post(session, env.url + "/oauth2/introspect", {"token": token}, bearer)
        await _post(
            session,
            env.url + "/oauth2/introspect",
            {"token": "x"},
            {"Authorization": f"Bearer {token}"},
        )

    await fuzz(hostile_tokens, check, max_examples=EXAMPLES)
    await _nothing_issued(env, before)
    env.broker.broker.credentials.verify(mine)  # still valid: nothing was revoked


@pytest.mark.parametrize("path", ["/v1/authorize", "/v1/simulate"])
async def test_json_bodies(env: Env, session: aiohttp.ClientSession, path: str) -> None:
    _, _, token = await issue(env)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    before = await successes(env)
    bodies = st.one_of(
        hostile_json,
        hostile_json.map(lambda c: f'{{"action":"s3:GetObject","resource":"*","context":{c}}}'),
    )

    async def check(body: str) -> None:
        await _post(session, env.url + path, body.encode(), headers)

    await fuzz(bodies, check, max_examples=EXAMPLES)
    await _nothing_issued(env, before)


async def test_bearer_tokens_at_forward_auth(env: Env, session: aiohttp.ClientSession) -> None:
    async def check(token: str) -> None:
        headers = {"Authorization": f"Bearer {token}", "X-Original-URL": "https://a.example.com/"}
        async with session.get(env.url + "/auth", headers=headers) as r:
            assert 400 <= r.status < 500, r.status  # 400: aiohttp's 8 KiB header line limit
            assert "Set-Cookie" not in r.headers

    await fuzz(hostile_tokens, check, max_examples=EXAMPLES)


@pytest.mark.parametrize(
    "path", ["/", "/oauth2/token", "/oauth2/revoke", "/oauth2/introspect", "/login/local"]
)
async def test_raw_bodies(env: Env, session: aiohttp.ClientSession, path: str) -> None:
    """Whatever the body and its declared type (broken multipart included), a 4xx at most."""
    _, _, token = await issue(env)
    before = await successes(env)
    types = st.sampled_from(
        [
            "application/x-www-form-urlencoded",
            "multipart/form-data",
            "multipart/form-data; boundary=x",
            "application/json",
            "text/plain; charset=utf-16",
        ]
    )

    async def check(case: tuple[bytes, str]) -> None:
        body, content_type = case
        headers = {"Content-Type": content_type, "Authorization": f"Bearer {token}"}
        await _post(session, env.url + path, body, headers)

    await fuzz(st.tuples(st.binary(max_size=300), types), check, max_examples=EXAMPLES)
    await _nothing_issued(env, before)
