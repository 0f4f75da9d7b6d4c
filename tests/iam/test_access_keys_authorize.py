"""A user's GROUP policy decides what its credentials may do at ``/v1/authorize`` and ``/auth``
(a GetSessionToken SessionToken as the bearer), and stops deciding the moment the user leaves
the group; another user's session is decided by its own (empty) policies."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import BaseTestServer
from pytest_aiohttp import AiohttpServer

from broker.clock import SystemClock
from tests.iam.conftest import IamEnv, allow, call, iam_roles, policy
from tests.iam.keys_support import key_client, user_with_key
from tests.sts.conftest import _provider, aws_env, start_broker
from tests.support.fake_idp import FakeIdP

APP = "https://app.example.com/"


@pytest.fixture
async def env(
    tmp_path: Path,
    aiohttp_server: AiohttpServer,
    runners: list[web.AppRunner],
    monkeypatch: pytest.MonkeyPatch,
) -> IamEnv:
    for k, v in aws_env(tmp_path).items():
        monkeypatch.setenv(k, v)
    idp = FakeIdP(clock=SystemClock())
    server: BaseTestServer = await aiohttp_server(idp.app)
    idp.bind(server)
    b = await start_broker(
        tmp_path / "b",
        roles=iam_roles(),
        providers=_provider("fake", idp.issuer, idp.client_id),
        runners=runners,
        trusted_proxies=("127.0.0.1/32",),
    )
    return IamEnv(b, idp, tmp_path)


async def authorize(url: str, token: str, action: str, resource: str) -> str:
    body = {"action": action, "resource": resource}
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        aiohttp.ClientSession() as s,
        s.post(f"{url}/v1/authorize", json=body, headers=headers) as r,
    ):
        assert r.status == 200
        out: dict[str, Any] = await r.json()
        return str(out["decision"])


async def auth(url: str, token: str, path: str) -> int:
    headers = {
        "X-Original-Method": "GET",
        "X-Original-URL": APP + path,
        "Authorization": f"Bearer {token}",
    }
    async with aiohttp.ClientSession() as s, s.get(f"{url}/auth", headers=headers) as r:
        return r.status


async def session_token(env: IamEnv, key: dict[str, str]) -> str:
    out = await call(key_client(env.url, "sts", key), "get_session_token")
    token: str = out["Credentials"]["SessionToken"]
    return token


async def test_the_group_policy_decides_and_stops_deciding(env: IamEnv) -> None:
    admin = await env.client("admin")
    await call(admin, "create_group", GroupName="readers")
    group_policy = policy(
        allow("app:Read", "res/*"),
        allow("http:GET", APP + "*"),
        {
            "Effect": "Deny",
            "Action": ["app:Read", "http:GET"],
            "Resource": ["res/secret", APP + "secret"],
        },
    )
    await call(
        admin,
        "put_group_policy",
        GroupName="readers",
        PolicyName="read",
        PolicyDocument=json.dumps(group_policy),
    )
    key = await user_with_key(env, "ci")  # no policy of its own
    await call(admin, "add_user_to_group", GroupName="readers", UserName="ci")
    token = await session_token(env, key)

    assert await authorize(env.url, token, "app:Read", "res/1") == "allowed"
    assert await authorize(env.url, token, "app:Read", "res/secret") == "explicitDeny"
    assert await authorize(env.url, token, "app:Write", "res/1") == "implicitDeny"
    assert await auth(env.url, token, "page") == 200
    assert await auth(env.url, token, "secret") == 403

    other = await user_with_key(env, "other")
    other_token = await session_token(env, other)
    assert await authorize(env.url, other_token, "app:Read", "res/1") == "implicitDeny"
    assert await auth(env.url, other_token, "page") == 403

    await call(admin, "remove_user_from_group", GroupName="readers", UserName="ci")
    assert await authorize(env.url, token, "app:Read", "res/1") == "implicitDeny"
    assert await auth(env.url, token, "page") == 403

    # the long-lived key itself is no bearer credential
    assert await auth(env.url, key["SecretAccessKey"], "page") == 401


async def test_the_users_tags_are_principal_tags(env: IamEnv) -> None:
    admin = await env.client("admin")
    team = {"StringEquals": {"aws:PrincipalTag/team": "infra"}}
    key = await user_with_key(
        env, "ci", {"Effect": "Allow", "Action": "app:Read", "Resource": "*", "Condition": team}
    )
    await call(admin, "tag_user", UserName="ci", Tags=[{"Key": "team", "Value": "infra"}])
    token = await session_token(env, key)
    assert await authorize(env.url, token, "app:Read", "res/1") == "allowed"
    await call(admin, "tag_user", UserName="ci", Tags=[{"Key": "team", "Value": "data"}])
    later = await session_token(env, key)  # a new session carries the new tags
    assert await authorize(env.url, later, "app:Read", "res/1") == "implicitDeny"
