"""Who may administer roles: every role action is ``iam:<Action>`` on the role's ARN (``*`` for
ListRoles). An unsigned call, a caller without the permission, and a caller allowed only on
other roles are refused with ``AccessDenied`` (``MissingAuthenticationToken`` unsigned), nothing
changes in the store, and the refusal is audited as ``iam.<Action>``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import BaseTestServer
from botocore.exceptions import ClientError
from pytest_aiohttp import AiohttpServer

from broker.clock import SystemClock
from tests.iam.conftest import IamEnv, allow, call, error_code, iam_roles, policy
from tests.sts.conftest import (
    ACCOUNT,
    RoleSpec,
    _provider,
    aws_env,
    start_broker,
    sts_post,
    web_trust,
)
from tests.support.fake_idp import FakeIdP

TEAM_ROLES = f"arn:broker:iam::{ACCOUNT}:role/team-*"


def trust_for(sub: str) -> dict[str, Any]:
    return web_trust("fake", {"StringEquals": {"fake:sub": sub}})


@pytest.fixture
async def env(
    tmp_path: Path,
    aiohttp_server: AiohttpServer,
    runners: list[web.AppRunner],
    monkeypatch: pytest.MonkeyPatch,
) -> IamEnv:
    """``iam_env``'s roles, and ``scoped`` (``iam:*`` on roles ``team-*`` only) and
    ``creator`` (``iam:CreateRole`` on every role, but not ``iam:TagRole``)."""
    for k, v in aws_env(tmp_path).items():
        monkeypatch.setenv(k, v)
    idp = FakeIdP(clock=SystemClock())
    server: BaseTestServer = await aiohttp_server(idp.app)
    idp.bind(server)
    roles = {
        **iam_roles(),
        "scoped": RoleSpec(trust_for("scoped"), (policy(allow("iam:*", TEAM_ROLES)),)),
        "creator": RoleSpec(trust_for("creator"), (policy(allow("iam:CreateRole")),)),
    }
    b = await start_broker(
        tmp_path / "b",
        roles=roles,
        providers=_provider("fake", idp.issuer, idp.client_id),
        runners=runners,
    )
    env = IamEnv(b, idp, tmp_path)
    api = b.broker.iam_api
    for name in ("victim", "team-x"):
        await api.call(
            api.root(),
            "CreateRole",
            {"RoleName": name, "AssumeRolePolicyDocument": json.dumps(trust_for("ci-bot"))},
        )
    return env


# (Action, boto3 operation, parameters): each on role ``victim`` (CreateRole: a new one)
ACTIONS: list[tuple[str, str, dict[str, Any]]] = [
    (
        "CreateRole",
        "create_role",
        {"RoleName": "victim2", "AssumeRolePolicyDocument": json.dumps(trust_for("mallory"))},
    ),
    ("GetRole", "get_role", {"RoleName": "victim"}),
    ("ListRoles", "list_roles", {}),
    ("UpdateRole", "update_role", {"RoleName": "victim", "MaxSessionDuration": 43200}),
    (
        "UpdateRoleDescription",
        "update_role_description",
        {"RoleName": "victim", "Description": "pwned"},
    ),
    (
        "UpdateAssumeRolePolicy",
        "update_assume_role_policy",
        {"RoleName": "victim", "PolicyDocument": json.dumps(trust_for("mallory"))},
    ),
    ("DeleteRole", "delete_role", {"RoleName": "victim"}),
]
CALLERS = ["unsigned", "nobody", "scoped"]


async def snapshot(env: IamEnv) -> tuple[object, ...]:
    store = env.broker.broker.store
    roles = await store.list_roles()
    return (
        roles,
        [await store.list_tags("role", r.name) for r in roles],
        [await store.attached_policies("role", r.name) for r in roles],
        len(await store.revocations_since(0)),
    )


def form(action: str, params: dict[str, Any]) -> dict[str, str]:
    return {"Action": action, "Version": "2010-05-08", **{k: str(v) for k, v in params.items()}}


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize(("action", "op", "params"), ACTIONS, ids=[a[0] for a in ACTIONS])
async def test_refused_callers_change_nothing_and_are_audited(
    env: IamEnv, action: str, op: str, params: dict[str, Any], caller: str
) -> None:
    store = env.broker.broker.store
    before = await snapshot(env)
    if caller == "unsigned":
        status, text = await sts_post(env.url, form(action, params))
        assert status == 403
        assert "MissingAuthenticationToken" in text
    else:
        client = await env.client(caller)
        with pytest.raises(ClientError) as e:
            await call(client, op, **params)
        assert error_code(e.value) == "AccessDenied"
        assert f"iam:{action}" in e.value.response["Error"]["Message"]
    assert await snapshot(env) == before
    await env.broker.broker.auditor.flush()  # refusals are batched
    events = await store.list_audit(action=f"iam.{action}", limit=5)
    assert events[0].outcome == "failure"
    if caller != "unsigned":
        assert events[0].reason.startswith("not_authorized")
        assert f"assumed-role/{caller}/" in events[0].principal


async def test_a_scoped_caller_may_act_on_its_own_roles(env: IamEnv) -> None:
    scoped = await env.client("scoped")
    trust = json.dumps(trust_for("ci-bot"))
    await call(scoped, "create_role", RoleName="team-new", AssumeRolePolicyDocument=trust)
    await call(scoped, "update_role_description", RoleName="team-x", Description="ours")
    assert (await call(scoped, "get_role", RoleName="team-x"))["Role"]["Description"] == "ours"
    await call(scoped, "delete_role", RoleName="team-new")
    assert await env.broker.broker.store.get_role("team-new") is None


async def test_tags_on_create_need_tag_role(env: IamEnv) -> None:
    creator = await env.client("creator")
    trust = json.dumps(trust_for("ci-bot"))
    with pytest.raises(ClientError) as e:
        await call(
            creator,
            "create_role",
            RoleName="tagged",
            AssumeRolePolicyDocument=trust,
            Tags=[{"Key": "team", "Value": "infra"}],
        )
    assert error_code(e.value) == "AccessDenied"
    assert "iam:TagRole" in e.value.response["Error"]["Message"]
    store = env.broker.broker.store
    assert await store.get_role("tagged") is None
    assert await store.list_tags("role", "tagged") == {}
    await call(creator, "create_role", RoleName="untagged", AssumeRolePolicyDocument=trust)
    assert await store.get_role("untagged") is not None
