"""Two brokers on one PostgreSQL: an OIDC provider registered through the IAM API on one is
trusted by AssumeRoleWithWebIdentity on the other, and once deleted its tokens are refused at
once where it was deleted and within 2 seconds on the other instance."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import boto3
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.conftest import BrokerFactory, RunningBroker
from tests.sts.conftest import ACCOUNT, real_id_token, web_trust
from tests.support.oidc_server import OidcServer
from tests.support.postgres import fresh_schema

pytestmark = [pytest.mark.postgres, pytest.mark.oidc]


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    async with fresh_schema("broker_oidcreg") as url:
        yield url


async def _assume(b: RunningBroker, token: str) -> str:
    """ "ok" or the STS error code."""
    client = boto3.client(
        "sts",
        endpoint_url=b.url,
        region_name="us-east-1",
        config=Config(signature_version=UNSIGNED, retries={"max_attempts": 1}),
    )
    try:
        await asyncio.to_thread(
            client.assume_role_with_web_identity,
            RoleArn=f"arn:broker:iam::{ACCOUNT}:role/deployer",
            RoleSessionName="deploy",
            WebIdentityToken=token,
        )
    except ClientError as e:
        code: str = e.response["Error"]["Code"]
        return code
    return "ok"


async def _until(b: RunningBroker, token: str, want: str, started: float) -> float:
    while (got := await _assume(b, token)) != want:
        assert time.monotonic() - started < 2.0, f"{b.url}: still {got}, not {want}, after 2 s"
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def test_registration_and_deletion_reach_every_instance(
    pg_url: str, broker_factory: BrokerFactory, oidc_server: OidcServer
) -> None:
    issuer = oidc_server.issuers["corp"]
    name = issuer.split("://", 1)[1]
    arn = f"arn:broker:iam::{ACCOUNT}:oidc-provider/{name}"
    roles: dict[str, dict[str, Any]] = {
        "deployer": web_trust(arn, {"StringEquals": {f"{name}:sub": "alice"}}, tag=False)
    }
    a = await broker_factory(store_url=pg_url, name="a", roles=roles)
    b = await broker_factory(store_url=pg_url, name="b", roles=roles, public_url=a.url)
    token = await real_id_token(oidc_server, "corp", "alice")
    assert await _assume(b, token) == "InvalidIdentityToken"

    api = a.broker.iam_api
    await api.call(
        api.root(), "CreateOpenIDConnectProvider", {"Url": issuer, "ClientIDList": ["broker"]}
    )
    started = time.monotonic()
    assert await _assume(a, token) == "ok"  # at once where it was registered
    await _until(b, token, "ok", started)

    await api.call(api.root(), "DeleteOpenIDConnectProvider", {"OpenIDConnectProviderArn": arn})
    started = time.monotonic()
    assert await _assume(a, token) == "InvalidIdentityToken"  # at once where it was deleted
    await _until(b, token, "InvalidIdentityToken", started)
    await b.broker.auditor.flush()
    events = await b.broker.store.list_audit(action="sts.AssumeRoleWithWebIdentity")
    assert events[0].outcome == "failure"
    assert events[0].reason == "unknown_issuer"
    deletions = await a.broker.store.list_audit(action="iam.DeleteOpenIDConnectProvider")
    assert deletions[0].principal == "root"
