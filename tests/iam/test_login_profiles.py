"""Login profiles (a local user's password, with AWS's must-change flag) through boto3 and the
AWS CLI, and the browser login they give at /login/local."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.iam.conftest import IamEnv, call, error_code
from tests.iam.users_support import (
    audit,
    browser,
    change_password,
    local_login,
    session_status,
    store,
    users_env,
)

__all__ = ["users_env"]

PASSWORD = "a long enough password 1"
NEW = "correct horse battery staple"
CLIENT_LOGGERS = ("botocore", "boto3", "urllib3", "s3transfer")


async def refused(client: Any, op: str, **kw: Any) -> str:
    with pytest.raises(ClientError) as e:
        await call(client, op, **kw)
    return error_code(e.value)


async def test_password_reset_required_asks_for_a_new_password_at_login(
    users_env: IamEnv, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    env = users_env
    iam = await env.client("admin")
    await call(iam, "create_user", UserName="carol")
    out = await call(
        iam,
        "create_login_profile",
        UserName="carol",
        Password=PASSWORD,
        PasswordResetRequired=True,
    )
    assert out["LoginProfile"]["UserName"] == "carol"
    assert out["LoginProfile"]["PasswordResetRequired"] is True
    assert PASSWORD not in str(out)
    got = await call(iam, "get_login_profile", UserName="carol")
    assert got["LoginProfile"]["PasswordResetRequired"] is True
    user = (await store(env).find_users_by_name("carol"))[0]
    assert (user.password_hash or "").startswith("$argon2id$")
    assert user.must_change_password
    async with browser() as s:
        assert await local_login(s, env, "carol", "wrong password here") == (401, "")
        assert await local_login(s, env, "carol", PASSWORD) == (303, "/password")
        status, url = await change_password(s, env, NEW)
        assert status == 200
        assert url == f"{env.url}/session"
        assert await session_status(s, env) == 200
    got = await call(iam, "get_login_profile", UserName="carol")
    assert got["LoginProfile"]["PasswordResetRequired"] is False
    # the password is never logged nor audited
    events = await audit(env, "iam.CreateLoginProfile")
    assert [e.outcome for e in events] == ["success"]
    assert PASSWORD not in str(events[0].details)
    # (the client's own debug log shows what it sends; the broker's side must not)
    server = [r.getMessage() for r in caplog.records if not r.name.startswith(CLIENT_LOGGERS)]
    assert server
    assert not [m for m in server if PASSWORD in m or NEW in m]


async def test_update_and_delete_login_profile(users_env: IamEnv) -> None:
    env = users_env
    iam = await env.client("admin")
    await call(iam, "create_user", UserName="dave")
    await call(iam, "create_login_profile", UserName="dave", Password=PASSWORD)
    async with browser() as s:
        status, where = await local_login(s, env, "dave", PASSWORD)
        assert status == 303
        assert where != "/password"
    await call(iam, "update_login_profile", UserName="dave", Password=NEW)
    async with browser() as s:
        assert (await local_login(s, env, "dave", PASSWORD))[0] == 401
    async with browser() as s:
        assert (await local_login(s, env, "dave", NEW))[0] == 303
    await call(iam, "update_login_profile", UserName="dave", PasswordResetRequired=True)
    async with browser() as s:
        assert await local_login(s, env, "dave", NEW) == (303, "/password")
    await call(iam, "delete_login_profile", UserName="dave")
    assert await refused(iam, "get_login_profile", UserName="dave") == "NoSuchEntity"
    async with browser() as s:
        assert (await local_login(s, env, "dave", NEW))[0] == 401
    assert (await store(env).find_users_by_name("dave"))[0].password_hash is None


async def test_login_profile_errors(users_env: IamEnv) -> None:
    env = users_env
    iam = await env.client("admin")
    await call(iam, "create_user", UserName="erin")
    # no such user / no profile yet
    for op in ("get_login_profile", "delete_login_profile"):
        assert await refused(iam, op, UserName="nobody-here") == "NoSuchEntity"
        assert await refused(iam, op, UserName="erin") == "NoSuchEntity"
    assert await refused(iam, "update_login_profile", UserName="erin", Password=NEW) == (
        "NoSuchEntity"
    )
    assert await refused(iam, "create_login_profile", UserName="zed", Password=NEW) == (
        "NoSuchEntity"
    )
    # the broker's password rules
    for weak in ("short", "erin", "ERIN"):
        code = await refused(iam, "create_login_profile", UserName="erin", Password=weak)
        assert code == "PasswordPolicyViolation", weak
    assert await refused(iam, "create_login_profile", UserName="erin", Password="€" * 20) == (
        "ValidationError"
    )
    assert await refused(iam, "create_login_profile", UserName="erin") == "ValidationError"
    assert (await store(env).find_users_by_name("erin"))[0].password_hash is None
    # one profile per user
    await call(iam, "create_login_profile", UserName="erin", Password=PASSWORD)
    assert await refused(iam, "create_login_profile", UserName="erin", Password=NEW) == (
        "EntityAlreadyExists"
    )
    assert await refused(iam, "update_login_profile", UserName="erin", Password="short") == (
        "PasswordPolicyViolation"
    )
    async with browser() as s:
        assert (await local_login(s, env, "erin", PASSWORD))[0] == 303  # unchanged
    # a federated user signs in at its provider
    await store(env).upsert_federated_user(
        "fake", "sub-9", name="fedora", email="", groups=[], now=1.0
    )
    assert await refused(iam, "create_login_profile", UserName="fedora", Password=NEW) == (
        "InvalidInput"
    )
    assert await refused(iam, "get_login_profile", UserName="fedora") == "NoSuchEntity"
    assert (await store(env).find_users_by_name("fedora"))[0].password_hash is None


async def test_bootstrap_admin_has_a_must_change_login_profile(users_env: IamEnv) -> None:
    iam = await users_env.client("reader")
    got = await call(iam, "get_login_profile", UserName="admin")
    assert got["LoginProfile"]["PasswordResetRequired"] is True


async def test_aws_cli_login_profiles(users_env: IamEnv) -> None:
    env = users_env
    creds = await env.credentials("admin")
    await call(await env.client("admin"), "create_user", UserName="frank")
    code, out, err = await env.aws(
        creds,
        "iam",
        "create-login-profile",
        "--user-name",
        "frank",
        "--password",
        PASSWORD,
        "--password-reset-required",
    )
    assert code == 0, err
    assert out["LoginProfile"]["PasswordResetRequired"] is True
    code, out, err = await env.aws(creds, "iam", "get-login-profile", "--user-name", "frank")
    assert code == 0, err
    assert out["LoginProfile"]["UserName"] == "frank"
    code, _, err = await env.aws(
        creds, "iam", "update-login-profile", "--user-name", "frank", "--password", "short"
    )
    assert code != 0
    assert "PasswordPolicyViolation" in err
    code, _, err = await env.aws(creds, "iam", "delete-login-profile", "--user-name", "frank")
    assert code == 0, err


@pytest.mark.parametrize("role", ["nobody", "reader", "scoped"])
async def test_callers_without_the_permission_change_nothing(users_env: IamEnv, role: str) -> None:
    env = users_env
    admin = await env.client("admin")
    await call(admin, "create_user", UserName="bob")
    await call(admin, "create_user", UserName="carol")
    await call(admin, "create_login_profile", UserName="carol", Password=PASSWORD)
    caller = await env.client(role)
    calls: list[tuple[str, dict[str, Any]]] = [
        ("create_login_profile", {"UserName": "bob", "Password": NEW}),
        ("update_login_profile", {"UserName": "carol", "Password": NEW}),
        ("update_login_profile", {"UserName": "carol", "PasswordResetRequired": True}),
        ("delete_login_profile", {"UserName": "carol"}),
    ]
    if role != "reader":
        calls.append(("get_login_profile", {"UserName": "carol"}))
    for op, kw in calls:
        assert await refused(caller, op, **kw) == "AccessDenied", op
    assert (await store(env).find_users_by_name("bob"))[0].password_hash is None
    carol = (await store(env).find_users_by_name("carol"))[0]
    assert not carol.must_change_password
    async with browser() as s:
        assert (await local_login(s, env, "carol", PASSWORD))[0] == 303
    for action in ("iam.CreateLoginProfile", "iam.UpdateLoginProfile", "iam.DeleteLoginProfile"):
        failures = [e for e in await audit(env, action) if e.outcome == "failure"]
        assert failures
        assert failures[0].reason.startswith("not_authorized")


async def test_a_renamed_local_user_signs_in_with_its_new_name(users_env: IamEnv) -> None:
    env = users_env
    iam = await env.client("admin")
    await call(iam, "create_user", UserName="carol")
    await call(iam, "create_login_profile", UserName="carol", Password=PASSWORD)
    await call(iam, "update_user", UserName="carol", NewUserName="dave")
    assert (await call(iam, "get_login_profile", UserName="dave"))["LoginProfile"]
    async with browser() as s:
        assert (await local_login(s, env, "carol", PASSWORD))[0] == 401
    async with browser() as s:
        assert (await local_login(s, env, "dave", PASSWORD))[0] == 303


async def test_two_admins_creating_a_login_profile_one_wins(users_env: IamEnv) -> None:
    env = users_env
    a, b = await env.client("admin"), await env.client("admin")
    await call(a, "create_user", UserName="carol")

    async def create(client: Any, password: str) -> str:
        try:
            await call(client, "create_login_profile", UserName="carol", Password=password)
            return "created"
        except ClientError as e:
            return error_code(e)

    results = await asyncio.gather(create(a, PASSWORD), create(b, NEW))
    assert sorted(results) == ["EntityAlreadyExists", "created"]
    winner = PASSWORD if results[0] == "created" else NEW
    loser = NEW if winner == PASSWORD else PASSWORD
    async with browser() as s:
        assert (await local_login(s, env, "carol", loser))[0] == 401
    async with browser() as s:
        assert (await local_login(s, env, "carol", winner))[0] == 303
