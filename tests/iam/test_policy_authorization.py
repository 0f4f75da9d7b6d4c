"""The authorization table of the policy actions: an unsigned call, a caller without the
permission, and a caller with it only on other resources are refused, change nothing in the
store, and leave an audit row ``iam.<Action>`` ``failure``."""

from __future__ import annotations

from typing import Any

import pytest
from botocore import xform_name

from broker.service.iam_api import attachments, inline, policies
from broker.storage.base import Group, User
from tests.iam.conftest import IamEnv, allow, call, iam_client, policy
from tests.iam.policy_support import make_role
from tests.iam.test_policies import doc_json, expect
from tests.sts.conftest import sts_post

P = "arn:broker:iam::000000000000:policy/P"
DOC = doc_json("s3:PutObject")
TARGET = {
    "User": ("UserName", "alice"),
    "Group": ("GroupName", "devs"),
    "Role": ("RoleName", "app"),
}


def table() -> list[tuple[str, dict[str, Any]]]:
    rows: list[tuple[str, dict[str, Any]]] = [
        ("CreatePolicy", {"PolicyName": "New", "PolicyDocument": DOC}),
        ("GetPolicy", {"PolicyArn": P}),
        ("ListPolicies", {}),
        ("DeletePolicy", {"PolicyArn": P}),
        ("CreatePolicyVersion", {"PolicyArn": P, "PolicyDocument": DOC, "SetAsDefault": True}),
        ("GetPolicyVersion", {"PolicyArn": P, "VersionId": "v1"}),
        ("ListPolicyVersions", {"PolicyArn": P}),
        ("DeletePolicyVersion", {"PolicyArn": P, "VersionId": "v2"}),
        ("SetDefaultPolicyVersion", {"PolicyArn": P, "VersionId": "v2"}),
        ("ListEntitiesForPolicy", {"PolicyArn": P}),
    ]
    for kind, (param, name) in TARGET.items():
        rows += [
            (f"Attach{kind}Policy", {param: name, "PolicyArn": P}),
            (f"Detach{kind}Policy", {param: name, "PolicyArn": P}),
            (f"ListAttached{kind}Policies", {param: name}),
            (f"Put{kind}Policy", {param: name, "PolicyName": "x", "PolicyDocument": DOC}),
            (f"Get{kind}Policy", {param: name, "PolicyName": "inl"}),
            (f"Delete{kind}Policy", {param: name, "PolicyName": "inl"}),
            (f"List{kind}Policies", {param: name}),
        ]
        if kind != "Group":
            rows += [
                (f"Put{kind}PermissionsBoundary", {param: name, "PermissionsBoundary": P}),
                (f"Delete{kind}PermissionsBoundary", {param: name}),
            ]
    return rows


ROWS = table()


async def world(env: IamEnv) -> None:
    store = env.broker.broker.store
    await store.create_user(User("u-1", "local", "alice", "alice", created_at=1.0))
    await store.create_group(Group("devs", created_at=1.0))
    admin = await env.client("admin")
    await make_role(env, "app")
    await call(admin, "create_policy", PolicyName="P", PolicyDocument=doc_json())
    await call(admin, "create_policy_version", PolicyArn=P, PolicyDocument=DOC)
    for kind, (param, name) in TARGET.items():
        await call(admin, f"attach_{kind.lower()}_policy", PolicyArn=P, **{param: name})
        await call(
            admin,
            f"put_{kind.lower()}_policy",
            PolicyName="inl",
            PolicyDocument=DOC,
            **{param: name},
        )
    await call(admin, "put_user_permissions_boundary", UserName="alice", PermissionsBoundary=P)
    await call(admin, "put_role_permissions_boundary", RoleName="app", PermissionsBoundary=P)
    others = [env.arn(k, "other") for k in ("user", "group", "role")] + [env.arn("policy", "Other")]
    await make_role(env, "other", inline={"iam": policy(allow("iam:*", others))})


async def snapshot(env: IamEnv) -> Any:
    store = env.broker.broker.store
    return (
        await store.list_managed_policies(),
        await store.list_policy_versions("P"),
        [
            await store.attached_policies(k, p)
            for k, p in (("user", "u-1"), ("group", "devs"), ("role", "app"))
        ],
    )


async def last_failure(env: IamEnv, action: str) -> Any:
    await env.broker.broker.auditor.flush()  # refusals are batched
    events = await env.broker.broker.store.list_audit(action=f"iam.{action}")
    assert events, action
    assert events[0].outcome == "failure", (action, events[0])
    return events[0]


async def test_every_action_is_in_the_table(iam_env: IamEnv) -> None:
    mine = {a.name for m in (policies, attachments, inline) for a in m.ACTIONS}
    assert mine == {name for name, _ in ROWS}


@pytest.mark.parametrize("who", ["unsigned", "nobody", "other"])
async def test_refused_callers_change_nothing_and_are_audited(iam_env: IamEnv, who: str) -> None:
    await world(iam_env)
    before = await snapshot(iam_env)
    client = None if who == "unsigned" else iam_client(iam_env.url, await iam_env.credentials(who))
    for action, params in ROWS:
        if client is None:
            status, text = await sts_post(iam_env.url, {"Action": action, "Version": "2010-05-08"})
            assert status == 403, (action, text)
            assert "MissingAuthenticationToken" in text
            event = await last_failure(iam_env, action)
        else:
            e = await expect("AccessDenied", client, xform_name(action), **params)
            assert f"iam:{action}" in e.response["Error"]["Message"]
            event = await last_failure(iam_env, action)
            assert event.reason.startswith("not_authorized"), event
        assert await snapshot(iam_env) == before, action
    # the admin may do each (sanity: the table's calls are real ones)
    admin = await iam_env.client("admin")
    out = await call(admin, "get_policy", PolicyArn=P)
    assert out["Policy"]["AttachmentCount"] == 3
