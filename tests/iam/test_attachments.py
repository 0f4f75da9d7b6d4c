"""Attachments, inline policies and permissions boundaries of users, groups and roles through
the real boto3 ``iam`` client and AWS CLI: happy paths and AWS's error codes."""

from __future__ import annotations

import json

from broker.storage.base import AttachedPolicies, Group, User
from tests.iam.conftest import IamEnv, allow, call, policy
from tests.iam.policy_support import make_role
from tests.iam.test_policies import doc_json, expect


async def setup(env: IamEnv) -> str:
    b = env.broker.broker
    await b.store.create_user(User("u-1", "local", "alice", "alice", created_at=1.0))
    await b.store.create_group(Group("devs", created_at=1.0))
    await make_role(env, "app")
    iam = await env.client("admin")
    out = await call(iam, "create_policy", PolicyName="P", PolicyDocument=doc_json())
    arn: str = out["Policy"]["Arn"]
    return arn


async def test_attach_list_and_detach_on_users_groups_and_roles(iam_env: IamEnv) -> None:
    arn = await setup(iam_env)
    iam = await iam_env.client("admin")
    store = iam_env.broker.broker.store
    for kind, param, name in (
        ("User", "UserName", "alice"),
        ("Group", "GroupName", "devs"),
        ("Role", "RoleName", "app"),
    ):
        await call(iam, f"attach_{kind.lower()}_policy", PolicyArn=arn, **{param: name})
        await call(iam, f"attach_{kind.lower()}_policy", PolicyArn=arn, **{param: name})
        listed = await call(iam, f"list_attached_{kind.lower()}_policies", **{param: name})
        assert listed["AttachedPolicies"] == [{"PolicyName": "P", "PolicyArn": arn}]
    entities = await call(iam, "list_entities_for_policy", PolicyArn=arn)
    assert [g["GroupName"] for g in entities["PolicyGroups"]] == ["devs"]
    assert entities["PolicyGroups"][0]["GroupId"].startswith("AGPA")
    assert [u["UserName"] for u in entities["PolicyUsers"]] == ["alice"]
    assert entities["PolicyUsers"][0]["UserId"].startswith("AIDA")
    assert [r["RoleName"] for r in entities["PolicyRoles"]] == ["app"]
    assert entities["PolicyRoles"][0]["RoleId"].startswith("AROA")
    only_roles = await call(iam, "list_entities_for_policy", PolicyArn=arn, EntityFilter="Role")
    assert (only_roles["PolicyUsers"], len(only_roles["PolicyRoles"])) == ([], 1)
    page = await call(iam, "list_entities_for_policy", PolicyArn=arn, MaxItems=2)
    assert page["IsTruncated"] is True
    rest = await call(iam, "list_entities_for_policy", PolicyArn=arn, Marker=page["Marker"])
    assert (len(page["PolicyGroups"]), len(page["PolicyUsers"]), len(rest["PolicyRoles"])) == (
        1,
        1,
        1,
    )
    got = (await call(iam, "get_policy", PolicyArn=arn))["Policy"]
    assert got["AttachmentCount"] == 3
    attached = await call(iam, "list_policies", OnlyAttached=True)
    assert [p["PolicyName"] for p in attached["Policies"]] == ["P"]
    await expect("DeleteConflict", iam, "delete_policy", PolicyArn=arn)

    await call(iam, "detach_role_policy", RoleName="app", PolicyArn=arn)
    await expect("NoSuchEntity", iam, "detach_role_policy", RoleName="app", PolicyArn=arn)
    assert (await store.attached_policies("role", "app")).managed == ()
    await call(iam, "detach_user_policy", UserName="alice", PolicyArn=arn)
    await call(iam, "detach_group_policy", GroupName="devs", PolicyArn=arn)
    await call(iam, "delete_policy", PolicyArn=arn)


async def test_attachment_errors(iam_env: IamEnv) -> None:
    arn = await setup(iam_env)
    iam = await iam_env.client("admin")
    store = iam_env.broker.broker.store
    missing = iam_env.arn("policy", "Missing")
    await expect("NoSuchEntity", iam, "attach_role_policy", RoleName="app", PolicyArn=missing)
    await expect("NoSuchEntity", iam, "attach_role_policy", RoleName="ghost", PolicyArn=arn)
    await expect("NoSuchEntity", iam, "attach_user_policy", UserName="ghost", PolicyArn=arn)
    await expect("NoSuchEntity", iam, "attach_group_policy", GroupName="ghost", PolicyArn=arn)
    await expect("NoSuchEntity", iam, "list_attached_role_policies", RoleName="ghost")
    # config roles are read-only; config policies may be attached to API roles
    await expect("UnmodifiableEntity", iam, "attach_role_policy", RoleName="admin", PolicyArn=arn)
    await call(
        iam, "attach_role_policy", RoleName="app", PolicyArn=iam_env.arn("policy", "ReadOnly")
    )
    assert await store.attached_policies("role", "admin") == AttachedPolicies()
    for i in range(9):
        await call(iam, "create_policy", PolicyName=f"Q{i}", PolicyDocument=doc_json())
        await call(
            iam, "attach_role_policy", RoleName="app", PolicyArn=iam_env.arn("policy", f"Q{i}")
        )
    await expect("LimitExceeded", iam, "attach_role_policy", RoleName="app", PolicyArn=arn)
    assert len((await store.attached_policies("role", "app")).managed) == 10


async def test_inline_policies(iam_env: IamEnv) -> None:
    await setup(iam_env)
    iam = await iam_env.client("admin")
    store = iam_env.broker.broker.store
    doc = policy(allow("s3:PutObject"))
    for kind, param, name in (
        ("user", "UserName", "alice"),
        ("group", "GroupName", "devs"),
        ("role", "RoleName", "app"),
    ):
        await call(
            iam,
            f"put_{kind}_policy",
            PolicyName="inl",
            PolicyDocument=json.dumps(doc),
            **{param: name},
        )
        got = await call(iam, f"get_{kind}_policy", PolicyName="inl", **{param: name})
        assert (got[param], got["PolicyName"], got["PolicyDocument"]) == (name, "inl", doc)
        listed = await call(iam, f"list_{kind}_policies", **{param: name})
        assert listed["PolicyNames"] == ["inl"]
        await expect("NoSuchEntity", iam, f"get_{kind}_policy", PolicyName="none", **{param: name})
        await call(iam, f"delete_{kind}_policy", PolicyName="inl", **{param: name})
        await expect(
            "NoSuchEntity", iam, f"delete_{kind}_policy", PolicyName="inl", **{param: name}
        )
        assert (await call(iam, f"list_{kind}_policies", **{param: name}))["PolicyNames"] == []
    await expect(
        "UnmodifiableEntity",
        iam,
        "put_role_policy",
        RoleName="admin",
        PolicyName="x",
        PolicyDocument=json.dumps(doc),
    )
    assert await store.attached_policies("role", "admin") == AttachedPolicies()
    await expect(
        "NoSuchEntity",
        iam,
        "put_role_policy",
        RoleName="ghost",
        PolicyName="x",
        PolicyDocument=json.dumps(doc),
    )


async def test_inline_size_limits_per_principal_type(iam_env: IamEnv) -> None:
    await setup(iam_env)
    iam = await iam_env.client("admin")
    store = iam_env.broker.broker.store

    def sized(n: int) -> str:
        d = policy({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:x:"})
        pad = n - len(json.dumps(d, separators=(",", ":")))
        d["Statement"][0]["Resource"] = "arn:x:" + "a" * pad
        text = json.dumps(d, separators=(",", ":"))
        assert len(text) == n
        return text

    await call(
        iam, "put_user_policy", UserName="alice", PolicyName="ok", PolicyDocument=sized(2048)
    )
    await expect(
        "MalformedPolicyDocument",
        iam,
        "put_user_policy",
        UserName="alice",
        PolicyName="big",
        PolicyDocument=sized(2049),
    )
    await call(iam, "put_role_policy", RoleName="app", PolicyName="ok", PolicyDocument=sized(10240))
    await expect(
        "MalformedPolicyDocument",
        iam,
        "put_role_policy",
        RoleName="app",
        PolicyName="big",
        PolicyDocument=sized(10241),
    )
    await expect(
        "MalformedPolicyDocument",
        iam,
        "put_role_policy",
        RoleName="app",
        PolicyName="bad",
        PolicyDocument='{"Version": "2012-10-17"',
    )
    assert sorted((await store.attached_policies("user", "u-1")).inline) == ["ok"]
    assert sorted((await store.attached_policies("role", "app")).inline) == ["ok"]


async def test_permissions_boundaries(iam_env: IamEnv) -> None:
    arn = await setup(iam_env)
    iam = await iam_env.client("admin")
    store = iam_env.broker.broker.store
    await call(iam, "put_role_permissions_boundary", RoleName="app", PermissionsBoundary=arn)
    await call(iam, "put_user_permissions_boundary", UserName="alice", PermissionsBoundary=arn)
    assert (await store.attached_policies("role", "app")).boundary == "P"
    assert (await store.attached_policies("user", "u-1")).boundary == "P"
    assert (await call(iam, "get_policy", PolicyArn=arn))["Policy"][
        "PermissionsBoundaryUsageCount"
    ] == 2
    used = await call(
        iam, "list_entities_for_policy", PolicyArn=arn, PolicyUsageFilter="PermissionsBoundary"
    )
    assert len(used["PolicyRoles"]) == 1
    await expect("DeleteConflict", iam, "delete_policy", PolicyArn=arn)
    bounds = await call(iam, "list_policies", PolicyUsageFilter="PermissionsBoundary")
    assert [p["PolicyName"] for p in bounds["Policies"]] == ["P"]
    assert (await call(iam, "list_policies", OnlyAttached=True))["Policies"] == []
    await expect(
        "NoSuchEntity",
        iam,
        "put_role_permissions_boundary",
        RoleName="app",
        PermissionsBoundary=iam_env.arn("policy", "Missing"),
    )
    await expect(
        "UnmodifiableEntity",
        iam,
        "put_role_permissions_boundary",
        RoleName="admin",
        PermissionsBoundary=arn,
    )
    await expect(
        "NoSuchEntity",
        iam,
        "put_user_permissions_boundary",
        UserName="alice",
        PermissionsBoundary=iam_env.arn("policy", "Missing"),
    )
    await expect(
        "NoSuchEntity",
        iam,
        "put_user_permissions_boundary",
        UserName="nobody-here",
        PermissionsBoundary=arn,
    )
    await expect(
        "InvalidInput",  # a user's ARN, not a policy's
        iam,
        "put_user_permissions_boundary",
        UserName="alice",
        PermissionsBoundary=iam_env.arn("user", "alice"),
    )
    await expect("NoSuchEntity", iam, "delete_user_permissions_boundary", UserName="nobody-here")
    assert (await store.attached_policies("user", "u-1")).boundary == "P"  # refusals change nothing
    await call(iam, "delete_role_permissions_boundary", RoleName="app")
    await call(iam, "delete_user_permissions_boundary", UserName="alice")
    await expect("NoSuchEntity", iam, "delete_role_permissions_boundary", RoleName="app")
    await expect("NoSuchEntity", iam, "delete_user_permissions_boundary", UserName="alice")
    assert (await store.attached_policies("role", "app")).boundary is None
    assert (await store.attached_policies("user", "u-1")).boundary is None
    failures = await store.list_audit(action="iam.PutUserPermissionsBoundary")
    assert len([e for e in failures if e.outcome == "failure"]) == 3


async def test_aws_cli_attaches_and_puts_inline(iam_env: IamEnv) -> None:
    arn = await setup(iam_env)
    creds = await iam_env.credentials("admin")
    code, _, err = await iam_env.aws(
        creds, "iam", "attach-role-policy", "--role-name", "app", "--policy-arn", arn
    )
    assert code == 0, err
    code, out, err = await iam_env.aws(
        creds, "iam", "list-attached-role-policies", "--role-name", "app"
    )
    assert code == 0, err
    assert out["AttachedPolicies"] == [{"PolicyName": "P", "PolicyArn": arn}]
    path = iam_env.tmp / "inline.json"
    path.write_text(doc_json("s3:ListBucket"))
    code, _, err = await iam_env.aws(
        creds,
        "iam",
        "put-role-policy",
        "--role-name",
        "app",
        "--policy-name",
        "lb",
        "--policy-document",
        f"file://{path}",
    )
    assert code == 0, err
    code, out, err = await iam_env.aws(
        creds, "iam", "get-role-policy", "--role-name", "app", "--policy-name", "lb"
    )
    assert code == 0, err
    assert out["PolicyDocument"] == policy(allow("s3:ListBucket"))


async def test_bad_inline_input_stores_nothing(iam_env: IamEnv) -> None:
    await setup(iam_env)
    iam = await iam_env.client("admin")
    store = iam_env.broker.broker.store
    for name in ("x" * 129, "bad name", "sl/ash"):
        await expect(
            "ValidationError",
            iam,
            "put_role_policy",
            RoleName="app",
            PolicyName=name,
            PolicyDocument=doc_json(),
        )
    await expect(
        "ValidationError",
        iam,
        "put_role_policy",
        RoleName="a" * 65,
        PolicyName="p",
        PolicyDocument=doc_json(),
    )
    unknown = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*", "Bogus": 1}
            ],
        }
    )
    await expect(
        "MalformedPolicyDocument",
        iam,
        "put_role_policy",
        RoleName="app",
        PolicyName="p",
        PolicyDocument=unknown,
    )
    assert (await store.attached_policies("role", "app")).inline == {}
    # whitespace does not count: a pretty-printed document of 6,144 characters without it
    d = policy({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:x:"})
    pad = 6144 - len(json.dumps(d, separators=(",", ":")))
    d["Statement"][0]["Resource"] = "arn:x:" + "a" * pad
    pretty = json.dumps(d, indent=8)
    assert len(pretty) > 6144
    await call(iam, "create_policy", PolicyName="Pretty", PolicyDocument=pretty)
