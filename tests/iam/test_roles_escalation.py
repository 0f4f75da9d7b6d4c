"""No self-escalation through the role actions (the rules of ``iam_api/escalation.py``): a
caller under a permissions boundary, even one allowed ``iam:*`` everywhere, creates only roles
that carry its own boundary, and changes the trust only of such roles -- so it cannot make a
more privileged role assumable by itself (``UpdateAssumeRolePolicy``) or mint an unbounded one
(``CreateRole``). Refusals are ``AccessDenied``, change nothing, and are audited."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.iam.conftest import IamEnv, allow, call, error_code, policy
from tests.sts.conftest import web_trust


def trust_for(sub: str) -> str:
    return json.dumps(web_trust("fake", {"StringEquals": {"fake:sub": sub}}))


@pytest.fixture
async def bounded(iam_env: IamEnv) -> Any:
    """A client of role ``bounded``: ``iam:*`` on everything, under the boundary
    ``Boundary``; and role ``power`` (no boundary) that the admin made."""
    admin = await iam_env.client("admin")
    everything = json.dumps(policy(allow(["iam:*", "sts:*"])))
    await call(admin, "create_policy", PolicyName="Boundary", PolicyDocument=everything)
    await call(
        admin,
        "create_role",
        RoleName="bounded",
        AssumeRolePolicyDocument=trust_for("bounded"),
        PermissionsBoundary=iam_env.arn("policy", "Boundary"),
    )
    await call(
        admin, "put_role_policy", RoleName="bounded", PolicyName="all", PolicyDocument=everything
    )
    await call(admin, "create_role", RoleName="power", AssumeRolePolicyDocument=trust_for("ci"))
    await call(
        admin, "put_role_policy", RoleName="power", PolicyName="all", PolicyDocument=everything
    )
    return await iam_env.client("bounded")


async def refused(env: IamEnv, client: Any, op: str, action: str, **params: Any) -> None:
    store = env.broker.broker.store
    before = await store.list_roles()
    with pytest.raises(ClientError) as e:
        await call(client, op, **params)
    assert error_code(e.value) == "AccessDenied"
    assert "permissions boundary" in e.value.response["Error"]["Message"]
    assert await store.list_roles() == before
    await env.broker.broker.auditor.flush()  # refusals are batched
    events = await store.list_audit(action=f"iam.{action}")
    assert events[0].outcome == "failure"
    assert events[0].reason.startswith("escalation:")


async def test_a_bounded_caller_creates_only_roles_under_its_boundary(
    iam_env: IamEnv, bounded: Any
) -> None:
    await refused(
        iam_env,
        bounded,
        "create_role",
        "CreateRole",
        RoleName="free",
        AssumeRolePolicyDocument=trust_for("bounded"),
    )
    await refused(
        iam_env,
        bounded,
        "create_role",
        "CreateRole",
        RoleName="other",
        AssumeRolePolicyDocument=trust_for("bounded"),
        PermissionsBoundary=iam_env.arn("policy", "ReadOnly"),
    )
    out = await call(
        bounded,
        "create_role",
        RoleName="mine",
        AssumeRolePolicyDocument=trust_for("bounded"),
        PermissionsBoundary=iam_env.arn("policy", "Boundary"),
    )
    boundary = out["Role"]["PermissionsBoundary"]["PermissionsBoundaryArn"]
    assert boundary == iam_env.arn("policy", "Boundary")


async def test_a_bounded_caller_cannot_make_a_wider_role_assumable(
    iam_env: IamEnv, bounded: Any
) -> None:
    store = iam_env.broker.broker.store
    power = await store.get_role("power")
    await refused(
        iam_env,
        bounded,
        "update_assume_role_policy",
        "UpdateAssumeRolePolicy",
        RoleName="power",
        PolicyDocument=trust_for("bounded"),
    )
    assert await store.get_role("power") == power
    # a role under the same boundary: its trust may change
    await call(
        bounded,
        "create_role",
        RoleName="mine",
        AssumeRolePolicyDocument=trust_for("ci"),
        PermissionsBoundary=iam_env.arn("policy", "Boundary"),
    )
    await call(
        bounded, "update_assume_role_policy", RoleName="mine", PolicyDocument=trust_for("bounded")
    )
    role = await store.get_role("mine")
    assert role is not None
    assert role.trust_policy == json.loads(trust_for("bounded"))
