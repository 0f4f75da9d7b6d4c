"""IAM groups through the real boto3 client and AWS CLI: create, get (with its users, paged),
list (paged past 100 by the CLI), delete (AWS's DeleteConflict), membership, authorization,
bad input and a race of two admins."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.iam.conftest import IamEnv, call, error_code
from tests.iam.users_support import audit, form, raw_iam, store, users_env

__all__ = ["users_env"]


async def refused(client: Any, op: str, **kw: Any) -> str:
    with pytest.raises(ClientError) as e:
        await call(client, op, **kw)
    return error_code(e.value)


async def test_group_lifecycle(users_env: IamEnv) -> None:
    env = users_env
    iam = await env.client("admin")
    group = (await call(iam, "create_group", GroupName="devs"))["Group"]
    assert group["GroupName"] == "devs"
    assert group["Arn"] == env.arn("group", "devs")
    assert group["GroupId"].startswith("AGPA")
    assert group["Path"] == "/"
    for name in ("carol", "dave"):
        await call(iam, "create_user", UserName=name)
        await call(iam, "add_user_to_group", GroupName="devs", UserName=name)
    await call(iam, "add_user_to_group", GroupName="devs", UserName="dave")  # idempotent
    got = await call(iam, "get_group", GroupName="devs")
    assert got["Group"] == group
    assert [u["UserName"] for u in got["Users"]] == ["carol", "dave"]
    assert got["IsTruncated"] is False
    page = await call(iam, "get_group", GroupName="devs", MaxItems=1)
    assert [u["UserName"] for u in page["Users"]] == ["carol"]
    assert page["IsTruncated"] is True
    rest = await call(iam, "get_group", GroupName="devs", Marker=page["Marker"])
    assert [u["UserName"] for u in rest["Users"]] == ["dave"]
    listed = await call(iam, "list_groups")
    assert [g["GroupName"] for g in listed["Groups"]] == ["devs"]
    assert (await call(iam, "list_groups", PathPrefix="/eng/"))["Groups"] == []
    for_user = await call(iam, "list_groups_for_user", UserName="carol")
    assert [g["GroupName"] for g in for_user["Groups"]] == ["devs"]
    # DeleteConflict while it has members, then policies
    assert await refused(iam, "delete_group", GroupName="devs") == "DeleteConflict"
    await call(iam, "remove_user_from_group", GroupName="devs", UserName="carol")
    await call(iam, "remove_user_from_group", GroupName="devs", UserName="dave")
    await store(env).attach_policy("group", "devs", "ReadOnly")
    assert await refused(iam, "delete_group", GroupName="devs") == "DeleteConflict"
    assert await store(env).get_group("devs") is not None
    await store(env).detach_policy("group", "devs", "ReadOnly")
    await call(iam, "delete_group", GroupName="devs")
    assert await store(env).get_group("devs") is None
    assert await refused(iam, "get_group", GroupName="devs") == "NoSuchEntity"
    outcomes = [e.outcome for e in await audit(env, "iam.DeleteGroup")]
    assert sorted(outcomes) == ["failure", "failure", "success"]


async def test_group_errors(users_env: IamEnv) -> None:
    env = users_env
    iam = await env.client("admin")
    await call(iam, "create_group", GroupName="devs")
    await call(iam, "create_user", UserName="carol")
    assert await refused(iam, "create_group", GroupName="devs") == "EntityAlreadyExists"
    assert await refused(iam, "delete_group", GroupName="ops") == "NoSuchEntity"
    assert await refused(iam, "get_group", GroupName="ops") == "NoSuchEntity"
    assert await refused(iam, "add_user_to_group", GroupName="ops", UserName="carol") == (
        "NoSuchEntity"
    )
    assert await refused(iam, "add_user_to_group", GroupName="devs", UserName="zed") == (
        "NoSuchEntity"
    )
    assert await refused(iam, "remove_user_from_group", GroupName="devs", UserName="carol") == (
        "NoSuchEntity"
    )
    assert await refused(iam, "list_groups_for_user", UserName="zed") == "NoSuchEntity"
    for bad in ("g" * 129, "bad name", "a/b", "a:b"):
        assert await refused(iam, "create_group", GroupName=bad) == "ValidationError", bad
    assert await refused(iam, "create_group", GroupName="ops", Path="/eng/") == ("ValidationError")
    creds = await env.credentials("admin")
    status, _ = await raw_iam(
        env, creds, form({"Action": "CreateGroup", "GroupName": "ops"}) + "&GroupName=ops2"
    )
    assert status == 400
    status, _ = await raw_iam(env, creds, b"Action=CreateGroup&Version=2010-05-08&GroupName=\xff")
    assert status == 400
    assert [g.name for g in await store(env).list_groups()] == ["devs"]
    assert await store(env).group_members("devs") == []


async def test_aws_cli_pages_groups_past_one_hundred(users_env: IamEnv) -> None:
    env = users_env
    iam = await env.client("admin")
    names = [f"g{i:03d}" for i in range(105)]
    for name in names:
        await call(iam, "create_group", GroupName=name)
    creds = await env.credentials("reader")
    code, out, err = await env.aws(creds, "iam", "list-groups")
    assert code == 0, err
    assert [g["GroupName"] for g in out["Groups"]] == names
    code, out, err = await env.aws(creds, "iam", "list-groups", "--max-items", "10")
    assert code == 0, err
    assert len(out["Groups"]) == 10
    assert out["NextToken"]
    admin = await env.credentials("admin")
    code, out, err = await env.aws(admin, "iam", "create-group", "--group-name", "cli")
    assert code == 0, err
    code, out, err = await env.aws(admin, "iam", "get-group", "--group-name", "cli")
    assert code == 0, err
    assert out["Group"]["GroupName"] == "cli"
    assert out["Users"] == []
    code, out, err = await env.aws(admin, "iam", "delete-group", "--group-name", "nope")
    assert code != 0
    assert "NoSuchEntity" in err


@pytest.mark.parametrize("role", ["nobody", "reader", "scoped"])
async def test_callers_without_the_permission_change_nothing(users_env: IamEnv, role: str) -> None:
    env = users_env
    admin = await env.client("admin")
    await call(admin, "create_group", GroupName="team-b")
    await call(admin, "create_user", UserName="bob")
    await call(admin, "add_user_to_group", GroupName="team-b", UserName="bob")
    await call(admin, "create_group", GroupName="empty")
    caller = await env.client(role)
    calls: list[tuple[str, dict[str, Any]]] = [
        ("create_group", {"GroupName": "team-c"}),
        ("delete_group", {"GroupName": "empty"}),
        ("add_user_to_group", {"GroupName": "empty", "UserName": "bob"}),
        ("remove_user_from_group", {"GroupName": "team-b", "UserName": "bob"}),
    ]
    if role != "reader":
        calls += [("get_group", {"GroupName": "team-b"}), ("list_groups", {})]
    for op, kw in calls:
        assert await refused(caller, op, **kw) == "AccessDenied", op
    assert sorted(g.name for g in await store(env).list_groups()) == ["empty", "team-b"]
    assert await store(env).group_members("empty") == []
    assert len(await store(env).group_members("team-b")) == 1
    for action in ("iam.CreateGroup", "iam.DeleteGroup", "iam.AddUserToGroup"):
        failures = [e for e in await audit(env, action) if e.outcome == "failure"]
        assert failures
        assert failures[0].reason.startswith("not_authorized")


async def test_scoped_caller_administers_only_its_group(users_env: IamEnv) -> None:
    env = users_env
    admin = await env.client("admin")
    await call(admin, "create_user", UserName="bob")
    scoped = await env.client("scoped")
    await call(scoped, "create_group", GroupName="team-a")
    await call(scoped, "add_user_to_group", GroupName="team-a", UserName="bob")
    got = await call(scoped, "get_group", GroupName="team-a")
    assert [u["UserName"] for u in got["Users"]] == ["bob"]
    await call(scoped, "remove_user_from_group", GroupName="team-a", UserName="bob")
    await call(scoped, "delete_group", GroupName="team-a")
    assert await store(env).get_group("team-a") is None


async def test_two_admins_creating_the_same_group_one_wins(users_env: IamEnv) -> None:
    env = users_env
    a, b = await env.client("admin"), await env.client("admin")

    async def create(client: Any) -> str:
        try:
            await call(client, "create_group", GroupName="racers")
            return "created"
        except ClientError as e:
            return error_code(e)

    results = await asyncio.gather(create(a), create(b))
    assert sorted(results) == ["EntityAlreadyExists", "created"]
    assert [g.name for g in await store(env).list_groups()] == ["racers"]


async def test_update_group_renames_with_members_and_policies(users_env: IamEnv) -> None:
    env = users_env
    iam = await env.client("admin")
    await call(iam, "create_group", GroupName="devs")
    await call(iam, "create_group", GroupName="ops")
    await call(iam, "create_user", UserName="carol")
    await call(iam, "add_user_to_group", GroupName="devs", UserName="carol")
    await store(env).attach_policy("group", "devs", "ReadOnly")
    assert await refused(iam, "update_group", GroupName="devs", NewGroupName="ops") == (
        "EntityAlreadyExists"
    )
    assert await refused(iam, "update_group", GroupName="nope", NewGroupName="x") == (
        "NoSuchEntity"
    )
    assert await refused(iam, "update_group", GroupName="devs", NewPath="/x/") == (
        "ValidationError"
    )
    assert await refused(iam, "update_group", GroupName="devs", NewGroupName="g" * 129) == (
        "ValidationError"
    )
    assert await store(env).get_group("devs") is not None
    await call(iam, "update_group", GroupName="devs", NewGroupName="engineers")
    got = await call(iam, "get_group", GroupName="engineers")
    assert [u["UserName"] for u in got["Users"]] == ["carol"]
    assert (await store(env).attached_policies("group", "engineers")).managed == ("ReadOnly",)
    assert await refused(iam, "get_group", GroupName="devs") == "NoSuchEntity"
    # the scoped caller may rename team-a only to a name it is also allowed on
    scoped = await env.client("scoped")
    await call(scoped, "create_group", GroupName="team-a")
    assert await refused(scoped, "update_group", GroupName="team-a", NewGroupName="team-z") == (
        "AccessDenied"
    )
    assert await refused(scoped, "update_group", GroupName="ops", NewGroupName="team-a") == (
        "AccessDenied"
    )
    assert sorted(g.name for g in await store(env).list_groups()) == ["engineers", "ops", "team-a"]
    creds = await env.credentials("admin")
    code, _, err = await env.aws(
        creds, "iam", "update-group", "--group-name", "ops", "--new-group-name", "operations"
    )
    assert code == 0, err
    assert await store(env).get_group("operations") is not None


async def test_members_and_a_users_groups_are_paged(users_env: IamEnv) -> None:
    env = users_env
    iam = await env.client("admin")
    await call(iam, "create_group", GroupName="big")
    users = [f"m{i:02d}" for i in range(12)]
    for name in users:
        await call(iam, "create_user", UserName=name)
        await call(iam, "add_user_to_group", GroupName="big", UserName=name)
    groups = [f"g{i:02d}" for i in range(7)]
    for name in groups:
        await call(iam, "create_group", GroupName=name)
        await call(iam, "add_user_to_group", GroupName=name, UserName="m00")
    creds = await env.credentials("reader")
    code, out, err = await env.aws(
        creds, "iam", "get-group", "--group-name", "big", "--page-size", "5"
    )
    assert code == 0, err
    assert [u["UserName"] for u in out["Users"]] == users
    code, out, err = await env.aws(
        creds, "iam", "list-groups-for-user", "--user-name", "m00", "--page-size", "3"
    )
    assert code == 0, err
    assert [g["GroupName"] for g in out["Groups"]] == ["big", *groups]
    page = await call(iam, "list_groups_for_user", UserName="m00", MaxItems=3)
    assert page["IsTruncated"] is True
    assert len(page["Groups"]) == 3
