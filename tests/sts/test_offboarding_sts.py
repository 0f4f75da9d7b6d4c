"""Offboarding and STS: a disabled user gets no credentials from a web identity token, the
credentials it got before end (also those issued before its first browser login, under the
``provider/subject`` stand-in id), and a store that cannot say whether the user is disabled
refuses rather than guessing."""

from __future__ import annotations

from typing import Any

import pytest

from broker.errors import StoreError
from tests.sts.conftest import CALLER, Env, last_failure, post, post_raw, sign, web_identity
from tests.sts.conftest import issue as issue_creds


async def test_a_disabled_user_gets_nothing_and_loses_what_it_had(env: Env) -> None:
    b = env.broker.broker
    before_login = await issue_creds(env, sub="user-1")  # user id: the stand-in fake/user-1
    user = await b.store.upsert_federated_user(  # then signs in through the browser
        "fake", "user-1", name="u1", email="", groups=[], now=env.clock.now()
    )
    env.clock.advance(1)
    after_login = await issue_creds(env, sub="user-1")
    for creds in (before_login, after_login):
        body, headers = sign(env, CALLER, creds)
        assert (await post_raw(env, body, headers)).status == 200

    await b.offboarding.disable_user(user.id, actor="test")
    for creds in (before_login, after_login):
        body, headers = sign(env, CALLER, creds)
        reply = await post_raw(env, body, headers)
        assert (reply.status, reply.code) == (403, "InvalidClientTokenId")
    env.clock.advance(1)
    reply = await post(env, web_identity(env.idp.mint({"sub": "user-1"})))
    assert (reply.status, reply.code) == (403, "AccessDenied")
    assert await last_failure(env) == "user_disabled"

    await b.offboarding.enable_user(user.id, actor="test")
    await b.poll_revocations()
    assert (await post(env, web_identity(env.idp.mint({"sub": "user-1"})))).status == 200


async def test_a_store_that_cannot_say_who_the_user_is_refuses(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def down(provider: str, subject: str) -> Any:
        raise StoreError("connection refused")

    monkeypatch.setattr(env.broker.broker.store, "find_user", down)
    reply = await post(env, web_identity(env.idp.mint({"sub": "user-2"})))
    assert (reply.status, reply.code, reply.type) == (503, "ServiceUnavailable", "Receiver")
    assert "connection" not in reply.message
