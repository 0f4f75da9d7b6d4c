"""GetAccountSummary (and GetAccountAuthorizationDetails): real boto3 and AWS CLI calls."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError

from broker.service.iam_api.account import AWS_DEFAULT_QUOTAS, BROKER_QUOTAS
from broker.storage.base import User
from tests.iam.conftest import IamEnv, allow, call, error_code, policy
from tests.sts.conftest import sts_post


async def test_account_summary_counts_what_the_store_holds(iam_env: IamEnv) -> None:
    b = iam_env.broker.broker
    admin = await iam_env.client("admin")
    before = (await call(admin, "get_account_summary"))["SummaryMap"]
    assert isinstance(before, dict)
    assert before["Roles"] == len(await b.store.list_roles()) == 3
    assert before["Policies"] == len(await b.store.list_managed_policies())
    assert before["Users"] == await b.store.count_users()
    assert before["Providers"] == 1  # the fake OIDC provider of the config
    assert before["PolicySizeQuota"] == 6144
    assert before["UserPolicySizeQuota"] == 2048
    assert before["RolePolicySizeQuota"] == 10240
    assert before["AttachedPoliciesPerRoleQuota"] == 10
    assert before["VersionsPerPolicyQuota"] == 5
    assert before["UsersQuota"] == 5000
    assert set(before) == {
        "Users",
        "Groups",
        "Roles",
        "Policies",
        "PolicyVersionsInUse",
        "Providers",
        *AWS_DEFAULT_QUOTAS,
        *BROKER_QUOTAS,
    }
    assert all(isinstance(v, int) for v in before.values())

    await call(admin, "create_user", UserName="erin")
    await b.iam.create_group("ops", actor="test")
    await b.iam.create_policy("Ops", policy(allow("s3:*")), actor="test")
    await b.iam.attach_policy("group", "ops", "Ops", actor="test")
    await b.iam.attach_policy("user", "erin", "Ops", actor="test")
    await b.iam.set_boundary("user", "erin", "Ops", actor="test")
    after = (await call(admin, "get_account_summary"))["SummaryMap"]
    assert after["Users"] == before["Users"] + 1
    assert after["Groups"] == before["Groups"] + 1
    assert after["Policies"] == before["Policies"] + 1
    assert after["PolicyVersionsInUse"] == before["PolicyVersionsInUse"] + 3

    creds = await iam_env.credentials("reader")
    code, out, err = await iam_env.aws(creds, "iam", "get-account-summary")
    assert code == 0, err
    assert out["SummaryMap"] == after


async def test_account_summary_needs_permission(iam_env: IamEnv) -> None:
    nobody = await iam_env.client("nobody")
    with pytest.raises(ClientError) as e:
        await call(nobody, "get_account_summary")
    assert error_code(e.value) == "AccessDenied"
    assert "iam:GetAccountSummary" in e.value.response["Error"]["Message"]
    await iam_env.broker.broker.auditor.flush()  # refusals are batched
    events = await iam_env.broker.broker.store.list_audit(action="iam.GetAccountSummary")
    assert events[0].outcome == "failure"
    assert events[0].reason.startswith("not_authorized")
    status, text = await sts_post(
        iam_env.url, {"Action": "GetAccountSummary", "Version": "2010-05-08"}
    )
    assert status == 403
    assert "MissingAuthenticationToken" in text
    await iam_env.broker.broker.auditor.flush()  # refusals are batched
    events = await iam_env.broker.broker.store.list_audit(action="iam.GetAccountSummary")
    assert len(events) == 2


# --- GetAccountAuthorizationDetails --------------------------------------------------------


async def _populate(env: IamEnv) -> None:
    """alice (inline, a group, a managed policy, a boundary, a tag) in group devs; policy Ops."""
    b = env.broker.broker
    admin = await env.client("admin")
    await call(admin, "create_user", UserName="alice")
    (alice,) = await b.store.find_users_by_name("alice")
    await b.iam.put_inline_policy("user", "alice", "own", policy(allow("s3:*")), actor="test")
    await b.iam.create_group("devs", actor="test")
    await b.iam.add_user_to_group("devs", "alice", actor="test")
    await b.iam.put_inline_policy("group", "devs", "ec2", policy(allow("ec2:*")), actor="test")
    await b.iam.create_policy("Ops", policy(allow("sqs:*")), description="ops", actor="test")
    await b.iam.create_policy_version(
        "Ops", policy(allow(["sqs:*", "sns:*"])), set_as_default=True, actor="test"
    )
    await b.iam.attach_policy("user", "alice", "Ops", actor="test")
    await b.iam.attach_policy("group", "devs", "Ops", actor="test")
    await b.iam.set_boundary("user", "alice", "ReadOnly", actor="test")
    await b.store.tag("user", alice.id, {"team": "blue"}, limit=50)


async def test_authorization_details_lists_every_principal_and_policy(iam_env: IamEnv) -> None:
    await _populate(iam_env)
    reader = await iam_env.client("reader")  # iam:Get* covers it
    out = await call(reader, "get_account_authorization_details")
    assert out["IsTruncated"] is False
    users = {u["UserName"]: u for u in out["UserDetailList"]}
    alice = users["alice"]
    got = await call(reader, "get_user", UserName="alice")
    assert alice["UserId"] == got["User"]["UserId"]
    assert alice["Arn"] == iam_env.arn("user", "alice")
    assert alice["GroupList"] == ["devs"]
    assert alice["AttachedManagedPolicies"] == [
        {"PolicyName": "Ops", "PolicyArn": iam_env.arn("policy", "Ops")}
    ]
    assert alice["PermissionsBoundary"] == {
        "PermissionsBoundaryType": "PermissionsBoundaryPolicy",
        "PermissionsBoundaryArn": iam_env.arn("policy", "ReadOnly"),
    }
    (inline,) = alice["UserPolicyList"]
    assert inline["PolicyName"] == "own"
    assert inline["PolicyDocument"] == policy(allow("s3:*"))  # boto3 decodes the document
    assert alice["Tags"] == [{"Key": "team", "Value": "blue"}]

    (devs,) = out["GroupDetailList"]
    assert devs["GroupName"] == "devs"
    assert devs["GroupId"].startswith("AGPA")
    assert devs["GroupPolicyList"] == [
        {"PolicyName": "ec2", "PolicyDocument": policy(allow("ec2:*"))}
    ]
    assert [p["PolicyName"] for p in devs["AttachedManagedPolicies"]] == ["Ops"]

    roles = {r["RoleName"]: r for r in out["RoleDetailList"]}
    assert set(roles) == {"admin", "reader", "nobody"}
    admin = roles["admin"]
    assert admin["Arn"] == iam_env.arn("role", "admin")
    assert admin["RoleId"].startswith("AROA")
    got_role = (await call(reader, "get_role", RoleName="admin"))["Role"]
    for key in ("RoleId", "Arn", "CreateDate", "AssumeRolePolicyDocument"):
        assert admin[key] == got_role[key], key
    assert admin["AssumeRolePolicyDocument"]["Statement"][0]["Effect"] == "Allow"
    assert admin["RolePolicyList"] == [
        {
            "PolicyName": "admin/policy[0]",
            "PolicyDocument": policy(allow(["iam:*", "sts:*", "http:*"])),
        }
    ]

    policies = {p["PolicyName"]: p for p in out["Policies"]}
    assert set(policies) == {"Ops", "ReadOnly"}
    ops = policies["Ops"]
    assert ops["Arn"] == iam_env.arn("policy", "Ops")
    assert ops["AttachmentCount"] == 2
    assert ops["PermissionsBoundaryUsageCount"] == 0
    assert ops["Description"] == "ops"
    assert ops["DefaultVersionId"] == "v2"
    got_policy = (await call(reader, "get_policy", PolicyArn=ops["Arn"]))["Policy"]
    assert {k: v for k, v in ops.items() if k != "PolicyVersionList"} == got_policy
    versions = {v["VersionId"]: v for v in ops["PolicyVersionList"]}
    assert versions["v1"]["IsDefaultVersion"] is False
    assert versions["v1"]["Document"] == policy(allow("sqs:*"))
    assert versions["v2"]["IsDefaultVersion"] is True
    assert versions["v2"]["Document"] == policy(allow(["sqs:*", "sns:*"]))
    (readonly,) = policies["ReadOnly"]["PolicyVersionList"]
    assert readonly["IsDefaultVersion"] is True
    assert policies["ReadOnly"]["PermissionsBoundaryUsageCount"] == 1


async def test_authorization_details_filter(iam_env: IamEnv) -> None:
    await _populate(iam_env)
    admin = await iam_env.client("admin")
    out = await call(admin, "get_account_authorization_details", Filter=["Role", "Group"])
    assert out["UserDetailList"] == []
    assert out["Policies"] == []
    assert [g["GroupName"] for g in out["GroupDetailList"]] == ["devs"]
    assert len(out["RoleDetailList"]) == 3
    aws = await call(admin, "get_account_authorization_details", Filter=["AWSManagedPolicy"])
    assert all(aws[m] == [] for m in ("UserDetailList", "GroupDetailList", "RoleDetailList"))
    assert aws["Policies"] == []
    local = await call(admin, "get_account_authorization_details", Filter=["LocalManagedPolicy"])
    assert {p["PolicyName"] for p in local["Policies"]} == {"Ops", "ReadOnly"}
    with pytest.raises(ClientError) as e:
        await call(admin, "get_account_authorization_details", Filter=["Everything"])
    assert error_code(e.value) == "ValidationError"


async def test_authorization_details_page_across_the_lists(iam_env: IamEnv) -> None:
    await _populate(iam_env)
    admin = await iam_env.client("admin")
    whole = await call(admin, "get_account_authorization_details")
    members = ("UserDetailList", "GroupDetailList", "RoleDetailList", "Policies")
    total = sum(len(whole[m]) for m in members)
    collected: dict[str, list[Any]] = {m: [] for m in members}
    marker = None
    pages = 0
    while True:
        extra: dict[str, str] = {"Marker": marker} if marker else {}
        page = await call(admin, "get_account_authorization_details", MaxItems=2, **extra)
        pages += 1
        assert sum(len(page[m]) for m in members) <= 2
        for m in members:
            collected[m] += page[m]
        marker = page.get("Marker")
        if not page["IsTruncated"]:
            break
    assert pages == (total + 1) // 2
    assert collected == {m: whole[m] for m in members}

    creds = await iam_env.credentials("admin")
    code, out, err = await iam_env.aws(
        creds, "iam", "get-account-authorization-details", "--page-size", "2"
    )
    assert code == 0, err
    assert [u["UserName"] for u in out["UserDetailList"]] == [
        u["UserName"] for u in whole["UserDetailList"]
    ]
    assert [r["RoleName"] for r in out["RoleDetailList"]] == ["admin", "nobody", "reader"]
    assert {p["PolicyName"] for p in out["Policies"]} == {"Ops", "ReadOnly"}

    with pytest.raises(ClientError) as e:
        await call(admin, "get_account_authorization_details", Marker="garbage")
    assert error_code(e.value) == "InvalidInput"


async def test_authorization_details_needs_permission(iam_env: IamEnv) -> None:
    nobody = await iam_env.client("nobody")
    with pytest.raises(ClientError) as e:
        await call(nobody, "get_account_authorization_details")
    assert error_code(e.value) == "AccessDenied"
    await iam_env.broker.broker.auditor.flush()  # refusals are batched
    events = await iam_env.broker.broker.store.list_audit(
        action="iam.GetAccountAuthorizationDetails"
    )
    assert events[0].outcome == "failure"
    assert events[0].reason.startswith("not_authorized")
    status, text = await sts_post(
        iam_env.url, {"Action": "GetAccountAuthorizationDetails", "Version": "2010-05-08"}
    )
    assert status == 403
    assert "MissingAuthenticationToken" in text


async def test_aws_cli_auto_paginates_authorization_details_past_100(iam_env: IamEnv) -> None:
    store = iam_env.broker.broker.store
    for i in range(110):
        await store.create_user(
            User(id=str(uuid.uuid4()), provider="local", subject=f"p{i:03d}", name=f"p{i:03d}")
        )
    creds = await iam_env.credentials("reader")
    code, out, err = await iam_env.aws(
        creds, "iam", "get-account-authorization-details", "--filter", "User", "Role"
    )
    assert code == 0, err
    names = [u["UserName"] for u in out["UserDetailList"]]
    assert [n for n in names if n.startswith("p")] == [f"p{i:03d}" for i in range(110)]
    assert len(out["RoleDetailList"]) == 3
    assert "Marker" not in out
