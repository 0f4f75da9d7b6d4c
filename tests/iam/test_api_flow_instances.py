"""Issue 12's whole path on two instances of one PostgreSQL store, with the real oidc-provider:
an admin registers the provider and creates a role trusting it through the IAM API on A; on B
the role is assumed with a real ID token (AssumeRoleWithWebIdentity) and the credential is used
at ``/auth``; revoking the role's sessions on A (the IAM console's way) makes B's next ``/auth``
a 401 within 2 s (contract C4)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpServer

from broker.clock import SystemClock
from tests.conftest import RunningBroker
from tests.iam.conftest import IamEnv, allow, call, iam_client, iam_roles, policy, sts_client
from tests.iam.test_role_revocation import (
    CONTRACT,
    SLACK,
    WAIT,
    auth,
    grant_app,
    revoke_as_console,
    within,
)
from tests.sts.conftest import ACCOUNT, _provider, aws_env, real_id_token, start_broker
from tests.support.fake_idp import FakeIdP
from tests.support.oidc_server import OidcServer
from tests.support.postgres import fresh_schema

pytestmark = [pytest.mark.postgres, pytest.mark.oidc]


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    async with fresh_schema("broker_iamflow") as url:
        yield url


async def test_registered_provider_api_role_auth_and_revocation_on_two_instances(
    pg_url: str,
    oidc_server: OidcServer,
    tmp_path: Path,
    aiohttp_server: AiohttpServer,
    runners: list[web.AppRunner],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for k, v in aws_env(tmp_path).items():
        monkeypatch.setenv(k, v)
    idp = FakeIdP(clock=SystemClock())  # only for the admin's own credentials
    idp.bind(await aiohttp_server(idp.app))
    brokers: list[RunningBroker] = []
    for name in ("a", "b"):
        brokers.append(
            await start_broker(
                tmp_path / name,
                roles=iam_roles(),
                providers=_provider("fake", idp.issuer, idp.client_id),
                runners=runners,
                store_url=pg_url,
                trusted_proxies=("127.0.0.1/32",),
                public_url=brokers[0].url if brokers else None,
            )
        )
    a, b = brokers
    admin = iam_client(a.url, await IamEnv(a, idp, tmp_path).credentials("admin"))

    # on A, through the IAM API: the real provider, and a role trusting its alice
    issuer = oidc_server.issuers["corp"]
    out = await call(
        admin,
        "create_open_id_connect_provider",
        Url=issuer,
        ClientIDList=[oidc_server.client_id],
    )
    name = issuer.split("://", 1)[1].rstrip("/")
    assert out["OpenIDConnectProviderArn"] == f"arn:broker:iam::{ACCOUNT}:oidc-provider/{name}"
    trust = policy(
        {
            "Effect": "Allow",
            "Principal": {"Federated": out["OpenIDConnectProviderArn"]},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {f"{name}:sub": "alice"}},
        }
    )
    await call(admin, "create_role", RoleName="deploy", AssumeRolePolicyDocument=json.dumps(trust))
    await grant_app(admin, "deploy")
    await call(
        admin,
        "put_role_policy",
        RoleName="deploy",
        PolicyName="nothing-else",
        PolicyDocument=json.dumps(policy(allow("sts:GetCallerIdentity"))),
    )

    # on B: a real ID token of alice for the new role, then /auth
    token = await real_id_token(oidc_server, "corp", "alice")
    sessions: list[str] = []

    async def assumed_on_b() -> bool:
        try:
            creds = await call(
                sts_client(b.url),
                "assume_role_with_web_identity",
                RoleArn=f"arn:broker:iam::{ACCOUNT}:role/deploy",
                RoleSessionName="alice",
                WebIdentityToken=token,
            )
        except Exception:
            return False
        sessions.append(creds["Credentials"]["SessionToken"])
        return True

    await within(WAIT, assumed_on_b, "B trusts the provider and the role registered on A")
    session = sessions[-1]
    await within(CONTRACT + SLACK, lambda: _allowed(b, session), "B has the role's policies")
    assert await auth(a, session) == 200
    bob = await real_id_token(oidc_server, "corp", "bob")  # the trust policy names alice only
    with pytest.raises(Exception, match="AccessDenied"):
        await call(
            sts_client(b.url),
            "assume_role_with_web_identity",
            RoleArn=f"arn:broker:iam::{ACCOUNT}:role/deploy",
            RoleSessionName="bob",
            WebIdentityToken=bob,
        )

    await asyncio.sleep(1.1)  # the console's revocation time has whole seconds
    await revoke_as_console(admin, "deploy")
    took = await within(
        CONTRACT + SLACK, lambda: _refused(b, session), "B refuses the revoked session"
    )
    assert took <= CONTRACT + SLACK


async def _refused(b: RunningBroker, token: str) -> bool:
    return await auth(b, token) == 401


async def _allowed(b: RunningBroker, token: str) -> bool:
    return await auth(b, token) == 200
