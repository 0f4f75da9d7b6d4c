"""No self-escalation through users: a caller bounded by a permissions boundary may create users
only under its boundary, and may not give an unbounded user a password, a group's policies or
tags (which are condition keys). End to end with real boto3; each refusal changes nothing."""

from __future__ import annotations

import json
from typing import Any

from tests.iam.conftest import IamEnv, allow, call, policy
from tests.iam.policy_support import make_role
from tests.iam.test_policies import expect


async def world(env: IamEnv) -> tuple[Any, Any]:
    """(admin client, dev client): dev has iam:* on users, groups and itself, bounded by
    ``Boundary`` (the same); ``boss`` is an unbounded user, ``intern`` one under Boundary."""
    arn = env.arn
    reach = [arn("role", "dev"), arn("user", "*"), arn("group", "*"), arn("policy", "*")]
    limits = policy(allow("iam:*", reach))
    admin = await env.client("admin")
    await call(admin, "create_policy", PolicyName="Boundary", PolicyDocument=json.dumps(limits))
    await make_role(env, "dev", inline={"self": limits}, boundary="Boundary")
    await call(admin, "create_user", UserName="boss")
    await call(
        admin, "create_user", UserName="intern", PermissionsBoundary=arn("policy", "Boundary")
    )
    await call(admin, "create_group", GroupName="admins")
    return admin, await env.client("dev")


async def denied(env: IamEnv, client: Any, operation: str, action: str, **params: Any) -> None:
    e = await expect("AccessDenied", client, operation, **params)
    assert "permissions boundary" in e.response["Error"]["Message"]
    await env.broker.broker.auditor.flush()  # refusals are batched
    events = await env.broker.broker.store.list_audit(action=f"iam.{action}")
    assert events[0].outcome == "failure"
    assert events[0].reason.startswith("escalation:")


async def test_new_users_carry_the_callers_boundary(iam_env: IamEnv) -> None:
    admin, dev = await world(iam_env)
    store = iam_env.broker.broker.store
    await denied(iam_env, dev, "create_user", "CreateUser", UserName="free")
    assert not await store.find_users_by_name("free")
    other = iam_env.arn("policy", "Other")
    await call(
        admin,
        "create_policy",
        PolicyName="Other",
        PolicyDocument=json.dumps(policy(allow("s3:GetObject"))),
    )
    await denied(
        iam_env, dev, "create_user", "CreateUser", UserName="free", PermissionsBoundary=other
    )
    assert not await store.find_users_by_name("free")
    boundary = iam_env.arn("policy", "Boundary")
    out = await call(dev, "create_user", UserName="hire", PermissionsBoundary=boundary)
    assert out["User"]["PermissionsBoundary"]["PermissionsBoundaryArn"] == boundary
    [hire] = await store.find_users_by_name("hire")
    assert (await store.attached_policies("user", hire.id)).boundary == "Boundary"


async def test_an_unbounded_user_gets_no_password_group_or_tags(iam_env: IamEnv) -> None:
    _, dev = await world(iam_env)
    store = iam_env.broker.broker.store
    [boss] = await store.find_users_by_name("boss")
    await denied(
        iam_env,
        dev,
        "create_login_profile",
        "CreateLoginProfile",
        UserName="boss",
        Password="a long enough password 1",
    )
    await denied(iam_env, dev, "add_user_to_group", "AddUserToGroup", GroupName="admins",
                 UserName="boss")  # fmt: skip
    await denied(iam_env, dev, "tag_user", "TagUser", UserName="boss",
                 Tags=[{"Key": "team", "Value": "admins"}])  # fmt: skip
    [after] = await store.find_users_by_name("boss")
    assert after.password_hash is None
    assert await store.user_groups(boss.id) == []
    assert await store.list_tags("user", boss.id) == {}
    # the same for a user under the caller's boundary is fine
    await call(dev, "create_login_profile", UserName="intern", Password="a long enough password 1")
    await call(dev, "add_user_to_group", GroupName="admins", UserName="intern")
    await call(dev, "tag_user", UserName="intern", Tags=[{"Key": "team", "Value": "x"}])
