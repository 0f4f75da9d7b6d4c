"""IAM users through the real boto3 client and AWS CLI: UpdateUser (rename), DeleteUser (AWS's
DeleteConflicts, ending the user's sessions), CreateUser's tags, the authorization table, bad
input and a race of two admins."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.iam.conftest import IamEnv, call, error_code
from tests.iam.users_support import (
    audit,
    browser,
    form,
    local_login,
    raw_iam,
    session_status,
    store,
    users_env,
)

__all__ = ["users_env"]

PASSWORD = "a long enough password 1"


async def refused(client: Any, op: str, **kw: Any) -> str:
    with pytest.raises(ClientError) as e:
        await call(client, op, **kw)
    return error_code(e.value)


async def test_create_with_tags_get_update_and_delete(users_env: IamEnv) -> None:
    env = users_env
    iam = await env.client("admin")
    out = await call(iam, "create_user", UserName="carol", Tags=[{"Key": "team", "Value": "infra"}])
    uid = out["User"]["UserId"]
    got = (await call(iam, "get_user", UserName="carol"))["User"]
    assert got["Tags"] == [{"Key": "team", "Value": "infra"}]
    # rename: same id, tags, groups and policies (keyed by the user's id) stay
    await call(iam, "create_group", GroupName="devs")
    await call(iam, "add_user_to_group", GroupName="devs", UserName="carol")
    await call(iam, "update_user", UserName="carol", NewUserName="caroline")
    assert await refused(iam, "get_user", UserName="carol") == "NoSuchEntity"
    renamed = (await call(iam, "get_user", UserName="caroline"))["User"]
    assert renamed["UserId"] == uid
    assert renamed["Arn"] == env.arn("user", "caroline")
    assert renamed["Tags"] == [{"Key": "team", "Value": "infra"}]
    groups = await call(iam, "list_groups_for_user", UserName="caroline")
    assert [g["GroupName"] for g in groups["Groups"]] == ["devs"]
    # the local login name follows the IAM name
    assert (await store(env).find_user("local", "caroline")) is not None
    assert (await store(env).find_user("local", "carol")) is None
    # DeleteConflict while in a group, then deleted
    assert await refused(iam, "delete_user", UserName="caroline") == "DeleteConflict"
    await call(iam, "remove_user_from_group", GroupName="devs", UserName="caroline")
    await call(iam, "delete_user", UserName="caroline")
    assert await refused(iam, "get_user", UserName="caroline") == "NoSuchEntity"
    assert await refused(iam, "delete_user", UserName="caroline") == "NoSuchEntity"
    assert not await store(env).find_users_by_name("caroline")
    outcomes = [(e.outcome, e.reason) for e in await audit(env, "iam.DeleteUser")][::-1]
    assert outcomes[0] == ("success", "")  # audited before the change, fail-closed
    assert outcomes[1][0] == "failure"
    assert outcomes[1][1].startswith("user_in_use:groups")
    assert [o for o, _ in outcomes[2:]] == ["success", "failure"]


async def test_update_user_errors(users_env: IamEnv) -> None:
    iam = await users_env.client("admin")
    await call(iam, "create_user", UserName="carol")
    await call(iam, "create_user", UserName="dave")
    assert await refused(iam, "update_user", UserName="carol", NewUserName="dave") == (
        "EntityAlreadyExists"
    )
    assert await refused(iam, "update_user", UserName="zed", NewUserName="x") == "NoSuchEntity"
    assert await refused(iam, "update_user", UserName="carol", NewPath="/eng/") == (
        "ValidationError"
    )
    assert await refused(iam, "update_user", UserName="carol", NewUserName="x" * 65) == (
        "ValidationError"
    )
    assert await refused(iam, "update_user", UserName="carol", NewUserName="bad name") == (
        "ValidationError"
    )
    names = sorted(u.name for u in await store(users_env).list_users())
    assert "carol" in names
    assert "dave" in names
    await call(iam, "update_user", UserName="carol")  # nothing to change: fine


@pytest.mark.parametrize("blocker", ["login_profile", "attached", "inline", "group"])
async def test_delete_user_conflicts_change_nothing(users_env: IamEnv, blocker: str) -> None:
    env = users_env
    iam = await env.client("admin")
    await call(iam, "create_user", UserName="carol", Tags=[{"Key": "k", "Value": "v"}])
    user = (await store(env).find_users_by_name("carol"))[0]
    if blocker == "login_profile":
        await call(iam, "create_login_profile", UserName="carol", Password=PASSWORD)
    elif blocker == "attached":
        await store(env).attach_policy("user", user.id, "ReadOnly")
    elif blocker == "inline":
        doc = {"Version": "2012-10-17", "Statement": []}
        await store(env).put_inline_policy("user", user.id, "p", doc)
    else:
        await call(iam, "create_group", GroupName="devs")
        await call(iam, "add_user_to_group", GroupName="devs", UserName="carol")
    assert await refused(iam, "delete_user", UserName="carol") == "DeleteConflict"
    assert (await store(env).get_user(user.id)).name == "carol"
    assert await store(env).list_tags("user", user.id) == {"k": "v"}
    failures = [e for e in await audit(env, "iam.DeleteUser") if e.outcome == "failure"]
    assert failures
    assert failures[0].reason.startswith("user_in_use:")


async def test_delete_user_ends_its_browser_session(users_env: IamEnv) -> None:
    env = users_env
    iam = await env.client("admin")
    await call(iam, "create_user", UserName="carol")
    await call(iam, "create_login_profile", UserName="carol", Password=PASSWORD)
    async with browser() as s:
        status, _ = await local_login(s, env, "carol", PASSWORD)
        assert status == 303
        assert await session_status(s, env) == 200
        await call(iam, "delete_login_profile", UserName="carol")
        assert await session_status(s, env) == 200  # as AWS: removing the password only
        await call(iam, "delete_user", UserName="carol")
        assert await session_status(s, env) == 401
    async with browser() as s:
        status, _ = await local_login(s, env, "carol", PASSWORD)
        assert status == 401
    assert [e.outcome for e in await audit(env, "user.revoke_sessions")] == ["success"]


async def test_aws_cli_updates_and_deletes_users(users_env: IamEnv) -> None:
    env = users_env
    creds = await env.credentials("admin")
    code, out, err = await env.aws(creds, "iam", "create-user", "--user-name", "erin")
    assert code == 0, err
    code, _, err = await env.aws(
        creds, "iam", "update-user", "--user-name", "erin", "--new-user-name", "erin2"
    )
    assert code == 0, err
    code, out, err = await env.aws(creds, "iam", "get-user", "--user-name", "erin2")
    assert code == 0, err
    assert out["User"]["UserName"] == "erin2"
    code, _, err = await env.aws(creds, "iam", "delete-user", "--user-name", "erin2")
    assert code == 0, err
    code, _, err = await env.aws(creds, "iam", "delete-user", "--user-name", "erin2")
    assert code != 0
    assert "NoSuchEntity" in err


# --- authorization --------------------------------------------------------------------------


UNSIGNED_CALLS: list[tuple[str, dict[str, str]]] = [
    ("CreateUser", {"UserName": "mallory"}),
    ("GetUser", {"UserName": "alice"}),
    ("UpdateUser", {"UserName": "alice", "NewUserName": "alice2"}),
    ("DeleteUser", {"UserName": "alice"}),
    ("TagUser", {"UserName": "alice", "Tags.member.1.Key": "k", "Tags.member.1.Value": "v"}),
    ("UntagUser", {"UserName": "alice", "TagKeys.member.1": "team"}),
    ("ListUserTags", {"UserName": "alice"}),
    ("ListGroupsForUser", {"UserName": "alice"}),
    ("CreateLoginProfile", {"UserName": "alice", "Password": "a long enough password 1"}),
    ("GetLoginProfile", {"UserName": "alice"}),
    ("UpdateLoginProfile", {"UserName": "alice", "PasswordResetRequired": "true"}),
    ("DeleteLoginProfile", {"UserName": "alice"}),
    ("CreateGroup", {"GroupName": "mallory"}),
    ("GetGroup", {"GroupName": "team-a"}),
    ("ListGroups", {}),
    ("UpdateGroup", {"GroupName": "team-a", "NewGroupName": "team-z"}),
    ("DeleteGroup", {"GroupName": "team-a"}),
    ("AddUserToGroup", {"GroupName": "team-a", "UserName": "alice"}),
    ("RemoveUserFromGroup", {"GroupName": "team-a", "UserName": "alice"}),
    ("TagRole", {"RoleName": "admin", "Tags.member.1.Key": "k", "Tags.member.1.Value": "v"}),
    ("UntagRole", {"RoleName": "admin", "TagKeys.member.1": "k"}),
    ("ListRoleTags", {"RoleName": "admin"}),
]


async def test_unauthenticated_calls_change_nothing(users_env: IamEnv) -> None:
    from tests.sts.conftest import sts_post

    env = users_env
    admin = await env.client("admin")
    await call(admin, "create_user", UserName="alice", Tags=[{"Key": "team", "Value": "a"}])
    await call(admin, "create_group", GroupName="team-a")
    alice = (await store(env).find_users_by_name("alice"))[0]
    creds = await env.credentials("admin")
    forged = {**creds, "SecretAccessKey": "x" * 40}
    for action, extra in UNSIGNED_CALLS:
        status, text = await sts_post(env.url, {"Action": action, "Version": "2010-05-08", **extra})
        assert status == 403, action
        assert "MissingAuthenticationToken" in text
        status, text = await raw_iam(env, forged, form({"Action": action, **extra}))
        assert status == 403, action
        assert "SignatureDoesNotMatch" in text, text
        events = await audit(env, f"iam.{action}")
        assert len([e for e in events if e.outcome == "failure"]) == 2, action
    assert sorted(u.name for u in await store(env).list_users()) == ["admin", "alice"]
    assert await store(env).get_user(alice.id) == alice
    assert await store(env).list_tags("user", alice.id) == {"team": "a"}
    assert [g.name for g in await store(env).list_groups()] == ["team-a"]
    assert await store(env).group_members("team-a") == []
    assert await store(env).list_tags("role", "admin") == {}


@pytest.mark.parametrize("role", ["nobody", "reader", "scoped"])
async def test_callers_without_the_permission_change_nothing(users_env: IamEnv, role: str) -> None:
    env = users_env
    admin = await env.client("admin")
    await call(admin, "create_user", UserName="bob")
    await call(admin, "create_user", UserName="alice")
    caller = await env.client(role)
    calls: list[tuple[str, dict[str, Any]]] = [
        ("create_user", {"UserName": "bob2"}),
        ("update_user", {"UserName": "bob", "NewUserName": "bob3"}),
        ("delete_user", {"UserName": "bob"}),
        ("tag_user", {"UserName": "bob", "Tags": [{"Key": "k", "Value": "v"}]}),
        ("untag_user", {"UserName": "bob", "TagKeys": ["k"]}),
    ]
    if role == "scoped":  # allowed on alice, but not to rename her to a name it lacks
        calls.append(("update_user", {"UserName": "alice", "NewUserName": "bob4"}))
    if role != "reader":
        calls += [
            ("get_user", {"UserName": "bob"}),
            ("list_user_tags", {"UserName": "bob"}),
            ("list_groups_for_user", {"UserName": "bob"}),
        ]
    for op, kw in calls:
        assert await refused(caller, op, **kw) == "AccessDenied", op
    names = sorted(u.name for u in await store(env).list_users())
    assert names == ["admin", "alice", "bob"]  # admin: the bootstrap user
    bob = (await store(env).find_users_by_name("bob"))[0]
    assert await store(env).list_tags("user", bob.id) == {}
    for action in ("iam.UpdateUser", "iam.DeleteUser", "iam.TagUser", "iam.CreateUser"):
        events = await audit(env, action)
        assert any(e.outcome == "failure" and e.reason.startswith("not_authorized") for e in events)


async def test_scoped_caller_administers_only_its_user(users_env: IamEnv) -> None:
    env = users_env
    scoped = await env.client("scoped")
    await call(scoped, "create_user", UserName="alice")
    await call(scoped, "tag_user", UserName="alice", Tags=[{"Key": "k", "Value": "v"}])
    assert (await call(scoped, "list_user_tags", UserName="alice"))["Tags"] == [
        {"Key": "k", "Value": "v"}
    ]
    await call(scoped, "untag_user", UserName="alice", TagKeys=["k"])
    await call(scoped, "delete_user", UserName="alice")
    assert not await store(env).find_users_by_name("alice")


async def test_a_user_id_is_not_a_user_name(users_env: IamEnv) -> None:
    """A caller allowed on ``user/a*`` must not reach bob by giving bob's internal id."""
    env = users_env
    admin = await env.client("admin")
    await call(admin, "create_user", UserName="bob")
    bob = (await store(env).find_users_by_name("bob"))[0]
    assert await refused(admin, "get_user", UserName=bob.id) == "NoSuchEntity"
    assert await refused(admin, "delete_user", UserName=bob.id) == "NoSuchEntity"
    assert await store(env).get_user(bob.id)


# --- bad input ------------------------------------------------------------------------------


async def test_bad_input_is_refused_and_nothing_is_stored(users_env: IamEnv) -> None:
    env = users_env
    iam = await env.client("admin")
    await call(iam, "create_user", UserName="carol")
    for name in ("x" * 129, "bad/name", "tab\tname", "a:b"):
        assert await refused(iam, "delete_user", UserName=name) == "ValidationError", name
    assert await refused(iam, "create_user", UserName="x" * 65) == "ValidationError"
    too_many = [{"Key": f"k{i}", "Value": "v"} for i in range(51)]
    assert await refused(iam, "create_user", UserName="dave", Tags=too_many) == ("ValidationError")
    dup = [{"Key": "k", "Value": "1"}, {"Key": "k", "Value": "2"}]
    assert await refused(iam, "create_user", UserName="dave", Tags=dup) == "InvalidInput"
    assert await refused(
        iam, "create_user", UserName="dave", Tags=[{"Key": "aws:x", "Value": "1"}]
    ) == ("InvalidInput")
    assert await refused(
        iam, "create_user", UserName="dave", Tags=[{"Key": "a<b", "Value": "1"}]
    ) == ("InvalidInput")
    assert not await store(env).find_users_by_name("dave")
    creds = await env.credentials("admin")
    status, text = await raw_iam(
        env, creds, form({"Action": "DeleteUser", "UserName": "carol"}) + "&UserName=carol"
    )
    assert status == 400, text
    status, text = await raw_iam(
        env, creds, b"Action=CreateUser&Version=2010-05-08&UserName=d\xe9ve"
    )
    assert status == 400, text
    assert sorted(u.name for u in await store(env).list_users()) == ["admin", "carol"]


# --- races ----------------------------------------------------------------------------------


async def test_two_admins_creating_the_same_user_one_wins(users_env: IamEnv) -> None:
    env = users_env
    a, b = await env.client("admin"), await env.client("admin")

    async def create(client: Any) -> str:
        try:
            await call(client, "create_user", UserName="racer")
            return "created"
        except ClientError as e:
            return error_code(e)

    results = await asyncio.gather(create(a), create(b))
    assert sorted(results) == ["EntityAlreadyExists", "created"]
    assert len(await store(env).find_users_by_name("racer")) == 1


async def test_two_admins_deleting_the_same_user_one_wins(users_env: IamEnv) -> None:
    env = users_env
    a, b = await env.client("admin"), await env.client("admin")
    await call(a, "create_user", UserName="racer")

    async def delete(client: Any) -> str:
        try:
            await call(client, "delete_user", UserName="racer")
            return "deleted"
        except ClientError as e:
            return error_code(e)

    results = await asyncio.gather(delete(a), delete(b))
    assert sorted(results) == ["NoSuchEntity", "deleted"]
    assert not await store(env).find_users_by_name("racer")


async def test_delete_user_ends_its_sts_credentials(users_env: IamEnv) -> None:
    """A federated user (signed in once, so it has a record) holding STS credentials: deleting
    it through the API voids them at once."""
    env = users_env
    await store(env).upsert_federated_user(
        "fake", "nobody", name="nobody-user", email="", groups=[], now=1.0
    )
    held = await env.client("nobody")
    assert await refused(held, "list_users") == "AccessDenied"  # authenticated, not allowed
    admin = await env.client("admin")
    await call(admin, "delete_user", UserName="nobody-user")
    code = await refused(held, "list_users")
    assert code in {"ExpiredToken", "InvalidClientTokenId"}, code
    assert not await store(env).find_users_by_name("nobody-user")
