"""A broker whose revocation state went stale (its store stopped answering the poll) refuses
every broker credential on the STS, OAuth and authorize APIs, each in its own format, with a
status SDKs retry (503), audited; it works again by itself after the next successful poll."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from broker.errors import StoreError
from broker.web.oauth import TOKEN_EXCHANGE, TT_ACCESS_TOKEN
from tests.sts.conftest import CALLER, Env, arn, issue, last_failure, post_raw, sign


def cut_off_revocations(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """The store stops answering the revocation poll, and the state ages past its limit."""
    b = env.broker.broker

    async def unreachable(after_id: int) -> list[Any]:
        raise StoreError("connection to server at 10.0.0.5 refused (secret internals)")

    monkeypatch.setattr(b.store, "revocations_since", unreachable)
    env.clock.advance(b.settings.session.revocation_max_staleness + 1)
    assert not b.revocations.healthy


async def json_post(
    env: Env, path: str, form: dict[str, str], token: str | None = None
) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession() as s,
        s.post(env.url + path, data=form, headers=headers) as r,
    ):
        return r.status, await r.json()


async def test_sts_answers_service_unavailable_and_recovers_by_itself(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    creds = await issue(env)
    cut_off_revocations(env, monkeypatch)
    body, headers = sign(env, CALLER, creds)
    reply = await post_raw(env, body, headers)
    assert (reply.status, reply.code, reply.type) == (503, "ServiceUnavailable", "Receiver")
    assert "10.0.0.5" not in reply.message
    assert await last_failure(env) == "revocation_state_stale"

    monkeypatch.undo()  # the store answers again: the next poll ends it
    await env.broker.broker.poll_revocations()
    body, headers = sign(env, CALLER, creds)
    assert (await post_raw(env, body, headers)).status == 200


async def test_token_exchange_and_authorize_answer_503_in_their_formats(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, _, token = await issue(env)
    cut_off_revocations(env, monkeypatch)
    status, body = await json_post(
        env,
        "/oauth2/token",
        {
            "grant_type": TOKEN_EXCHANGE,
            "subject_token": token,
            "subject_token_type": TT_ACCESS_TOKEN,
            "resource": arn("deploy"),
        },
    )
    assert (status, body["error"]) == (503, "temporarily_unavailable")
    assert await last_failure(env) == "revocation_state_stale"
    status, body = await json_post(
        env, "/v1/authorize", {}, token=token
    )  # the body is not even read
    assert (status, body["error"]) == (503, "temporarily_unavailable")
    status, body = await json_post(env, "/oauth2/introspect", {"token": token}, token=token)
    assert (status, body["error"]) == (503, "temporarily_unavailable")
