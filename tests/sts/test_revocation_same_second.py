"""STS credentials and token-exchange results against a revocation made within the same second.

A revocation voids every credential issued up to its time (``before``, to the fraction). The
credentials' issue time is their token's ``iat``; a whole-second one (``int(now)``) put a
credential issued after the revocation, within the same second, at or before ``before``: dead on
arrival, though ``revoke_role_sessions`` promises that "new ones can be issued afterwards".
The clock here is frozen at a whole second, so every step below happens within one second.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import jwt
import pytest

from broker.domain.tokens import issue_time
from tests.sts.conftest import CALLER, Env, creds_of, post, post_raw, sign, web_identity
from tests.sts.test_token_exchange import call, exchange


async def _revoke(env: Env, kind: str) -> None:
    b = env.broker.broker
    if kind == "role":
        await b.offboarding.revoke_role_sessions("ci", actor="test")
    else:
        user = await b.store.find_user("fake", "user-1")
        assert user is not None
        await b.offboarding.revoke_user_sessions(user.id, actor="test")


async def _web_identity(env: Env) -> tuple[str, str, str]:
    reply = await post(env, web_identity(env.idp.mint({"sub": "user-1"})))
    assert reply.status == 200, reply
    return creds_of(reply)


async def _caller_status(env: Env, creds: tuple[str, str, str]) -> tuple[int, str]:
    body, headers = sign(env, CALLER, creds)
    reply = await post_raw(env, body, headers)
    return reply.status, reply.code


async def _bearer_status(env: Env, token: str) -> int:
    async with (
        aiohttp.ClientSession() as s,
        s.post(
            env.url + "/v1/authorize",
            json={"action": "s3:GetObject", "resource": "*"},
            headers={"Authorization": f"Bearer {token}"},
        ) as r,
    ):
        return r.status


async def _exchanged(env: Env) -> dict[str, Any]:
    status, body, _ = await call(env, "/oauth2/token", exchange(env.idp.mint({"sub": "user-1"})))
    assert status == 200, body
    return body


@pytest.fixture
async def known_user(env: Env) -> None:
    """``user-1`` has signed in once, so it has a user record an administrator can name."""
    await env.broker.broker.store.upsert_federated_user(
        "fake", "user-1", name="user-1", email="", groups=[], now=env.clock.now()
    )


@pytest.mark.parametrize("kind", ["role", "user"])
@pytest.mark.usefixtures("known_user")
async def test_credentials_issued_just_after_a_revocation_in_the_same_second_work(
    env: Env, kind: str
) -> None:
    env.clock.advance(0.2)
    old_creds = await _web_identity(env)
    old_token = (await _exchanged(env))["access_token"]
    assert await _caller_status(env, old_creds) == (200, "")

    env.clock.advance(0.3)
    await _revoke(env, kind)
    # issued before the revocation: ended, as a SigV4 credential and as a bearer token alike
    assert await _caller_status(env, old_creds) == (403, "InvalidClientTokenId")
    assert await _bearer_status(env, old_creds[2]) == 401
    assert await _bearer_status(env, old_token) == 401

    env.clock.advance(0.005)  # after the revocation, in the same second
    new_creds = await _web_identity(env)
    new = await _exchanged(env)
    assert await _caller_status(env, new_creds) == (200, "")
    assert await _bearer_status(env, new_creds[2]) == 200
    assert await _bearer_status(env, new["access_token"]) == 200
    assert new["expires_in"] == 3600
    status, info, _ = await call(
        env, "/oauth2/introspect", {"token": new["access_token"]}, bearer=new_creds[2]
    )
    assert (status, info["active"]) == (200, True)
    iat = jwt.decode(new["access_token"], options={"verify_signature": False})["iat"]
    assert iat == issue_time(env.clock.now())  # to the millisecond, in the same second
    assert info["iat"] == info["nbf"] == int(iat)  # RFC 7662 §2.2: integer timestamps
    status, info, _ = await call(
        env, "/oauth2/introspect", {"token": old_token}, bearer=new_creds[2]
    )
    assert info == {"active": False}


async def test_credentials_issued_at_the_instant_of_a_role_revocation_are_ended(env: Env) -> None:
    """Fail closed: the revocation voids what was issued up to and at its time."""
    env.clock.advance(0.4)
    await _revoke(env, "role")
    creds = await _web_identity(env)  # the clock has not moved: the same instant
    token = (await _exchanged(env))["access_token"]
    assert await _caller_status(env, creds) == (403, "InvalidClientTokenId")
    assert await _bearer_status(env, token) == 401
