"""The rules around keys, end to end with boto3: AssumeRole with a key follows AWS's
same-account rule (a trust policy naming the user suffices; one naming the account root needs
the user's own permission; an explicit deny always wins); a disabled user's key is refused; a
caller bounded by a permissions boundary makes keys only for users under its boundary (a key
lets its holder act as the user); a user's own boundary limits what its key may do."""

from __future__ import annotations

import json
from typing import Any

from tests.iam.conftest import IamEnv, allow, call, policy
from tests.iam.keys_support import key_client, user_with_key
from tests.iam.test_access_keys import refused
from tests.iam.test_escalation_users import denied, world
from tests.sts.conftest import ACCOUNT

ROOT = f"arn:broker:iam::{ACCOUNT}:root"
CI = f"arn:broker:iam::{ACCOUNT}:user/ci"


def trusting(principal: str) -> str:
    return json.dumps(
        policy({"Effect": "Allow", "Principal": {"AWS": principal}, "Action": "sts:AssumeRole"})
    )


async def assume(client: Any, env: IamEnv, role: str) -> Any:
    return await call(client, "assume_role", RoleArn=env.arn("role", role), RoleSessionName="ss")


async def test_assume_role_as_aws_decides_within_one_account(iam_env: IamEnv) -> None:
    admin = await iam_env.client("admin")
    await call(admin, "create_role", RoleName="named", AssumeRolePolicyDocument=trusting(CI))
    await call(admin, "create_role", RoleName="account", AssumeRolePolicyDocument=trusting(ROOT))
    await call(
        admin,
        "create_role",
        RoleName="other",
        AssumeRolePolicyDocument=trusting(f"arn:broker:iam::{ACCOUNT}:user/someone"),
    )
    key = await user_with_key(iam_env, "ci")  # no policy of its own
    sts = key_client(iam_env.url, "sts", key)
    await assume(sts, iam_env, "named")  # the trust policy names the user: enough
    assert await refused(sts, "assume_role", RoleArn=iam_env.arn("role", "account"),
                         RoleSessionName="ss") == "AccessDenied"  # fmt: skip
    assert await refused(sts, "assume_role", RoleArn=iam_env.arn("role", "other"),
                         RoleSessionName="ss") == "AccessDenied"  # fmt: skip

    mine = policy(allow("sts:AssumeRole", iam_env.arn("role", "*")))
    await call(admin, "put_user_policy", UserName="ci", PolicyName="p",
               PolicyDocument=json.dumps(mine))  # fmt: skip
    await assume(sts, iam_env, "account")  # root trusted, and the user's policy allows
    assert await refused(sts, "assume_role", RoleArn=iam_env.arn("role", "other"),
                         RoleSessionName="ss") == "AccessDenied"  # fmt: skip

    deny = policy({"Effect": "Deny", "Action": "sts:AssumeRole", "Resource": "*"})
    await call(admin, "put_user_policy", UserName="ci", PolicyName="p",
               PolicyDocument=json.dumps(deny))  # fmt: skip
    assert await refused(sts, "assume_role", RoleArn=iam_env.arn("role", "named"),
                         RoleSessionName="ss") == "AccessDenied"  # fmt: skip


async def test_a_disabled_users_key_is_refused(iam_env: IamEnv) -> None:
    key = await user_with_key(iam_env, "ci", allow(["sts:*", "iam:*"]))
    sts = key_client(iam_env.url, "sts", key)
    session = (await call(sts, "get_session_token"))["Credentials"]
    await call(sts, "get_caller_identity")
    b = iam_env.broker.broker
    await b.offboarding.disable_user("ci", actor="test")
    assert await refused(sts, "get_caller_identity") == "InvalidClientTokenId"
    assert await refused(key_client(iam_env.url, "iam", key), "list_users") == (
        "InvalidClientTokenId"
    )
    # and the temporary credentials it made end with it (a user revocation)
    assert await refused(key_client(iam_env.url, "sts", session), "get_caller_identity") in (
        "InvalidClientTokenId",
        "ExpiredToken",
    )
    await b.offboarding.enable_user("ci", actor="test")
    await call(sts, "get_caller_identity")


async def test_a_bounded_caller_makes_keys_only_under_its_boundary(iam_env: IamEnv) -> None:
    admin, dev = await world(iam_env)  # dev: iam:* on users, bounded by Boundary
    await denied(iam_env, dev, "create_access_key", "CreateAccessKey", UserName="boss")
    assert (await call(admin, "list_access_keys", UserName="boss"))["AccessKeyMetadata"] == []
    made = await call(dev, "create_access_key", UserName="intern")  # carries Boundary
    kid = made["AccessKey"]["AccessKeyId"]
    boss = (await call(admin, "create_access_key", UserName="boss"))["AccessKey"]
    await call(
        dev,
        "update_access_key",
        UserName="boss",
        AccessKeyId=boss["AccessKeyId"],
        Status="Inactive",
    )  # fmt: skip  (switching a key off grants nothing)
    await denied(iam_env, dev, "update_access_key", "UpdateAccessKey", UserName="boss",
                 AccessKeyId=boss["AccessKeyId"], Status="Active")  # fmt: skip
    await call(dev, "update_access_key", UserName="intern", AccessKeyId=kid, Status="Inactive")


async def test_the_users_boundary_limits_its_key(iam_env: IamEnv) -> None:
    admin = await iam_env.client("admin")
    await call(admin, "create_policy", PolicyName="OnlyList",
               PolicyDocument=json.dumps(policy(allow("iam:List*"))))  # fmt: skip
    key = await user_with_key(iam_env, "ci", allow("iam:*"))
    iam = key_client(iam_env.url, "iam", key)
    await call(iam, "get_user", UserName="ci")
    await call(admin, "put_user_permissions_boundary", UserName="ci",
               PermissionsBoundary=iam_env.arn("policy", "OnlyList"))  # fmt: skip
    assert await refused(iam, "get_user", UserName="ci") == "AccessDenied"
    await call(iam, "list_users")
    # bounded now, the user cannot make a key for an unbounded user
    await call(admin, "create_user", UserName="free")
    assert await refused(iam, "create_access_key", UserName="free") == "AccessDenied"
