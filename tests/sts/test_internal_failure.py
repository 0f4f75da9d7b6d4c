"""An unexpected exception behind ``POST /`` (a bug, not a refusal) is AWS's ``500
InternalFailure`` (``Receiver``), not ``503 ServiceUnavailable``: a 503 tells the SDKs to retry
what will fail again. The traceback goes to the server log, the failure to the audit log; the
caller learns nothing of it. The deliberate 503s (overload, revocation state stale, audit
unavailable) are tested where they are made and stay 503s.

The fault is injected into the real handler's service (``StsService``) of a running broker."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import boto3
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.sts.conftest import Env, arn, post, web_identity

SECRETISH = "token-in-the-exception-text"


def explode(*_: Any, **__: Any) -> Any:
    raise RuntimeError(f"unexpected: {SECRETISH}")


async def failures_of(env: Env, action: str) -> list[Any]:
    await env.broker.broker.auditor.flush()
    events = await env.broker.broker.store.list_audit(limit=50, action=action)
    return [e for e in events if e.outcome == "failure"]


async def test_an_unexpected_exception_is_internal_failure_and_audited(
    env: Env, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(env.broker.broker.sts, "assume_role_with_web_identity", explode)
    with caplog.at_level(logging.ERROR):
        reply = await post(env, web_identity(env.idp.mint({"sub": "user-1"})))
    assert (reply.status, reply.code, reply.type) == (500, "InternalFailure", "Receiver")
    assert SECRETISH not in reply.message
    assert reply.root.find(".//{https://sts.amazonaws.com/doc/2011-06-15/}Credentials") is None
    # the traceback is the server's
    logged = [r for r in caplog.records if r.exc_info and r.levelno >= logging.ERROR]
    assert logged, caplog.text
    assert reply.request_id in logged[0].getMessage()
    # and the failure is audited, under the action and the request's id
    [event] = [
        e
        for e in await failures_of(env, "sts.AssumeRoleWithWebIdentity")
        if e.details.get("request_id") == reply.request_id
    ]
    assert event.reason == "internal_failure:RuntimeError"
    assert SECRETISH not in str(event.details)


async def test_boto3_sees_internal_failure(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(env.broker.broker.sts, "assume_role_with_web_identity", explode)
    sts = boto3.client(
        "sts",
        endpoint_url=env.url,
        region_name="us-east-1",
        config=Config(signature_version=UNSIGNED, retries={"max_attempts": 1}),
    )
    with pytest.raises(ClientError) as e:
        await asyncio.to_thread(
            sts.assume_role_with_web_identity,
            RoleArn=arn("ci"),
            RoleSessionName="build-1",
            WebIdentityToken=env.idp.mint({"sub": "user-1"}),
        )
    assert e.value.response["Error"]["Code"] == "InternalFailure"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    request_id = e.value.response["ResponseMetadata"]["RequestId"]
    events = await failures_of(env, "sts.AssumeRoleWithWebIdentity")
    assert [e.reason for e in events if e.details.get("request_id") == request_id] == [
        "internal_failure:RuntimeError"
    ]
