"""Tags on users and roles through the real boto3 client and AWS CLI: add, overwrite, list
(paged), remove, the limit of 50 (also under a race), AWS's rules for keys and values, config
roles read-only, and the authorization table."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.iam.conftest import IamEnv, call, error_code
from tests.iam.users_support import api_role, audit, store, users_env

__all__ = ["users_env"]


async def refused(client: Any, op: str, **kw: Any) -> str:
    with pytest.raises(ClientError) as e:
        await call(client, op, **kw)
    return error_code(e.value)


def tags(**kv: str) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in kv.items()]


async def user_tags(env: IamEnv, name: str) -> dict[str, str]:
    user = (await store(env).find_users_by_name(name))[0]
    return await store(env).list_tags("user", user.id)


async def test_user_tags_round_trip(users_env: IamEnv) -> None:
    env = users_env
    iam = await env.client("admin")
    await call(iam, "create_user", UserName="carol")
    await call(iam, "tag_user", UserName="carol", Tags=tags(team="infra", env="prod"))
    await call(iam, "tag_user", UserName="carol", Tags=tags(team="data", **{"cost center": ""}))
    listed = await call(iam, "list_user_tags", UserName="carol")
    assert listed["Tags"] == tags(**{"cost center": "", "env": "prod", "team": "data"})
    assert listed["IsTruncated"] is False
    page = await call(iam, "list_user_tags", UserName="carol", MaxItems=2)
    assert len(page["Tags"]) == 2
    assert page["IsTruncated"] is True
    rest = await call(iam, "list_user_tags", UserName="carol", Marker=page["Marker"])
    assert rest["Tags"] == tags(team="data")
    await call(iam, "untag_user", UserName="carol", TagKeys=["team", "absent"])
    assert await user_tags(env, "carol") == {"cost center": "", "env": "prod"}
    assert [e.outcome for e in await audit(env, "iam.TagUser")] == ["success", "success"]


async def test_user_tag_errors_change_nothing(users_env: IamEnv) -> None:
    env = users_env
    iam = await env.client("admin")
    await call(iam, "create_user", UserName="carol")
    await call(iam, "tag_user", UserName="carol", Tags=tags(**{f"k{i}": "v" for i in range(45)}))
    more = tags(**{f"n{i}": "v" for i in range(6)})
    assert await refused(iam, "tag_user", UserName="carol", Tags=more) == "LimitExceeded"
    assert len(await user_tags(env, "carol")) == 45
    assert await refused(iam, "tag_user", UserName="zed", Tags=tags(a="b")) == "NoSuchEntity"
    assert await refused(iam, "untag_user", UserName="zed", TagKeys=["a"]) == "NoSuchEntity"
    assert await refused(iam, "list_user_tags", UserName="zed") == "NoSuchEntity"
    dup = [{"Key": "a", "Value": "1"}, {"Key": "a", "Value": "2"}]
    bad: list[tuple[list[dict[str, str]], str]] = [
        (dup, "InvalidInput"),
        (tags(**{"aws:owner": "x"}), "InvalidInput"),
        (tags(**{"a<b": "x"}), "InvalidInput"),
        (tags(a="semi;colon"), "InvalidInput"),
        (tags(**{"k" * 129: "x"}), "ValidationError"),
        (tags(a="v" * 257), "ValidationError"),
        (tags(**{f"x{i}": "v" for i in range(51)}), "ValidationError"),
    ]
    for given, code in bad:
        assert await refused(iam, "tag_user", UserName="carol", Tags=given) == code, given
    assert len(await user_tags(env, "carol")) == 45
    assert await refused(iam, "untag_user", UserName="carol", TagKeys=["a>b"]) == "InvalidInput"


async def test_racing_taggers_never_exceed_fifty(users_env: IamEnv) -> None:
    env = users_env
    a, b = await env.client("admin"), await env.client("admin")
    await call(a, "create_user", UserName="carol")

    async def add(client: Any, prefix: str) -> str:
        try:
            await call(
                client,
                "tag_user",
                UserName="carol",
                Tags=tags(**{f"{prefix}{i}": "v" for i in range(30)}),
            )
            return "tagged"
        except ClientError as e:
            return error_code(e)

    results = await asyncio.gather(add(a, "a"), add(b, "b"))
    assert sorted(results) == ["LimitExceeded", "tagged"]
    assert len(await user_tags(env, "carol")) == 30


async def test_role_tags(users_env: IamEnv) -> None:
    env = users_env
    iam = await env.client("admin")
    await api_role(env, "tagged")
    await call(iam, "tag_role", RoleName="tagged", Tags=tags(team="infra", env="prod"))
    listed = await call(iam, "list_role_tags", RoleName="tagged")
    assert listed["Tags"] == tags(env="prod", team="infra")
    await call(iam, "untag_role", RoleName="tagged", TagKeys=["env"])
    assert await store(env).list_tags("role", "tagged") == {"team": "infra"}
    # roles declared in the config file are read-only
    assert await refused(iam, "tag_role", RoleName="reader", Tags=tags(a="b")) == (
        "UnmodifiableEntity"
    )
    assert await refused(iam, "untag_role", RoleName="reader", TagKeys=["a"]) == (
        "UnmodifiableEntity"
    )
    assert (await call(iam, "list_role_tags", RoleName="reader"))["Tags"] == []
    assert await store(env).list_tags("role", "reader") == {}
    for op, kw in (
        ("tag_role", {"Tags": tags(a="b")}),
        ("untag_role", {"TagKeys": ["a"]}),
        ("list_role_tags", {}),
    ):
        assert await refused(iam, op, RoleName="ghost", **kw) == "NoSuchEntity"
    assert await refused(iam, "tag_role", RoleName="tagged", Tags=tags(**{"aws:x": "1"})) == (
        "InvalidInput"
    )
    assert await refused(iam, "tag_role", RoleName="r" * 65, Tags=tags(a="b")) == (
        "ValidationError"
    )
    assert await store(env).list_tags("role", "tagged") == {"team": "infra"}


async def test_aws_cli_tags(users_env: IamEnv) -> None:
    env = users_env
    creds = await env.credentials("admin")
    await call(await env.client("admin"), "create_user", UserName="carol")
    await api_role(env, "tagged")
    code, _, err = await env.aws(
        creds, "iam", "tag-user", "--user-name", "carol", "--tags", "Key=team,Value=infra"
    )
    assert code == 0, err
    code, out, err = await env.aws(creds, "iam", "list-user-tags", "--user-name", "carol")
    assert code == 0, err
    assert out["Tags"] == tags(team="infra")
    code, _, err = await env.aws(
        creds, "iam", "tag-role", "--role-name", "tagged", "--tags", "Key=env,Value=prod"
    )
    assert code == 0, err
    code, out, err = await env.aws(creds, "iam", "list-role-tags", "--role-name", "tagged")
    assert code == 0, err
    assert out["Tags"] == tags(env="prod")
    code, _, err = await env.aws(
        creds, "iam", "tag-role", "--role-name", "admin", "--tags", "Key=env,Value=prod"
    )
    assert code != 0
    assert "UnmodifiableEntity" in err


@pytest.mark.parametrize("role", ["nobody", "reader", "scoped"])
async def test_callers_without_the_permission_change_nothing(users_env: IamEnv, role: str) -> None:
    env = users_env
    admin = await env.client("admin")
    await call(admin, "create_user", UserName="bob")
    await call(admin, "tag_user", UserName="bob", Tags=tags(k="v"))
    await api_role(env, "other")
    await call(admin, "tag_role", RoleName="other", Tags=tags(k="v"))
    caller = await env.client(role)
    calls: list[tuple[str, dict[str, Any]]] = [
        ("tag_user", {"UserName": "bob", "Tags": tags(x="y")}),
        ("untag_user", {"UserName": "bob", "TagKeys": ["k"]}),
        ("tag_role", {"RoleName": "other", "Tags": tags(x="y")}),
        ("untag_role", {"RoleName": "other", "TagKeys": ["k"]}),
    ]
    if role != "reader":
        calls += [
            ("list_user_tags", {"UserName": "bob"}),
            ("list_role_tags", {"RoleName": "other"}),
        ]
    for op, kw in calls:
        assert await refused(caller, op, **kw) == "AccessDenied", op
    assert await user_tags(env, "bob") == {"k": "v"}
    assert await store(env).list_tags("role", "other") == {"k": "v"}
    for action in ("iam.TagUser", "iam.UntagUser", "iam.TagRole", "iam.UntagRole"):
        failures = [e for e in await audit(env, action) if e.outcome == "failure"]
        assert failures
        assert failures[0].reason.startswith("not_authorized")


async def test_scoped_caller_tags_only_its_role(users_env: IamEnv) -> None:
    env = users_env
    await api_role(env, "tagged")
    scoped = await env.client("scoped")
    await call(scoped, "tag_role", RoleName="tagged", Tags=tags(team="a"))
    assert (await call(scoped, "list_role_tags", RoleName="tagged"))["Tags"] == tags(team="a")
    await call(scoped, "untag_role", RoleName="tagged", TagKeys=["team"])
    assert await store(env).list_tags("role", "tagged") == {}
