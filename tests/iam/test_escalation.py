"""No self-escalation (broker/service/iam_api/escalation.py), end to end with real boto3.

The caller ``dev`` is an API role with ``iam:*`` only on itself, on policies, and on the roles
``power`` (unbounded, trusts dev) and ``sub`` (bounded like dev, trusts dev); its permissions
boundary ``Boundary`` allows the same and nothing else. Every classic escalation path is refused
with ``AccessDenied``, changes nothing in the store, and leaves an audit row; what is allowed
stays within the boundary (a following call is still denied)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from broker.errors import IamAccessDenied
from broker.service.audit import RequestInfo
from broker.service.iam_api import Call, Caller, escalation
from broker.service.verified import Credential
from broker.storage.base import Group, RoleRecord, User
from tests.iam.conftest import IamEnv, allow, call, iam_client, policy
from tests.iam.policy_support import make_role
from tests.iam.test_policies import expect
from tests.sts.conftest import web_trust


def wide() -> str:
    return json.dumps(policy(allow("*")))


async def world(env: IamEnv) -> tuple[Any, Any]:
    """(admin client, dev client) with the roles and policies of the module docstring."""
    arn = env.arn
    reach = [arn("role", "dev"), arn("policy", "*"), arn("role", "power"), arn("role", "sub")]
    limits = policy(allow("iam:*", reach))
    admin = await env.client("admin")
    await call(admin, "create_policy", PolicyName="Boundary", PolicyDocument=json.dumps(limits))
    # a wider version the admin left behind, not the default
    await call(
        admin, "create_policy_version", PolicyArn=arn("policy", "Boundary"), PolicyDocument=wide()
    )
    await call(admin, "create_policy", PolicyName="Wide", PolicyDocument=wide())
    await call(
        admin,
        "create_policy",
        PolicyName="PowerPolicy",
        PolicyDocument=json.dumps(policy(allow("iam:*"))),
    )
    await make_role(env, "dev", inline={"self": limits}, boundary="Boundary")
    await make_role(env, "power", managed=["PowerPolicy"], trusts=["dev"])
    await make_role(env, "sub", boundary="Boundary", trusts=["dev"])
    return admin, await env.client("dev")


async def snapshot(env: IamEnv) -> Any:
    store = env.broker.broker.store
    return (
        await store.list_managed_policies(),
        [await store.list_policy_versions(p) for p in ("Boundary", "Wide", "PowerPolicy")],
        [await store.attached_policies("role", r) for r in ("dev", "power", "sub")],
        await store.list_roles(),
    )


async def refused(env: IamEnv, client: Any, operation: str, action: str, **params: Any) -> None:
    before = await snapshot(env)
    e = await expect("AccessDenied", client, operation, **params)
    assert "permissions boundary" in e.response["Error"]["Message"]
    assert await snapshot(env) == before
    await env.broker.broker.auditor.flush()  # refusals are batched
    events = await env.broker.broker.store.list_audit(action=f"iam.{action}")
    assert events[0].outcome == "failure"
    assert events[0].reason.startswith("escalation:"), events[0]


async def test_the_boundary_policy_cannot_be_widened(iam_env: IamEnv) -> None:
    _, dev = await world(iam_env)
    boundary = iam_env.arn("policy", "Boundary")
    await refused(
        iam_env,
        dev,
        "create_policy_version",
        "CreatePolicyVersion",
        PolicyArn=boundary,
        PolicyDocument=wide(),
        SetAsDefault=True,
    )
    await refused(
        iam_env,
        dev,
        "create_policy_version",
        "CreatePolicyVersion",
        PolicyArn=boundary,
        PolicyDocument=wide(),
    )
    await refused(
        iam_env,
        dev,
        "set_default_policy_version",
        "SetDefaultPolicyVersion",
        PolicyArn=boundary,
        VersionId="v2",
    )
    await refused(
        iam_env,
        dev,
        "delete_policy_version",
        "DeletePolicyVersion",
        PolicyArn=boundary,
        VersionId="v2",
    )
    await refused(iam_env, dev, "delete_policy", "DeletePolicy", PolicyArn=boundary)
    await expect("AccessDenied", dev, "list_users")  # still bounded


async def test_the_own_boundary_cannot_be_removed_or_replaced(iam_env: IamEnv) -> None:
    _, dev = await world(iam_env)
    await refused(
        iam_env,
        dev,
        "delete_role_permissions_boundary",
        "DeleteRolePermissionsBoundary",
        RoleName="dev",
    )
    await refused(
        iam_env,
        dev,
        "put_role_permissions_boundary",
        "PutRolePermissionsBoundary",
        RoleName="dev",
        PermissionsBoundary=iam_env.arn("policy", "Wide"),
    )
    await refused(
        iam_env,
        dev,
        "delete_role_permissions_boundary",
        "DeleteRolePermissionsBoundary",
        RoleName="sub",
    )
    # setting its own boundary is no escalation (it narrows): allowed, on itself a no-op
    await call(
        dev,
        "put_role_permissions_boundary",
        RoleName="dev",
        PermissionsBoundary=iam_env.arn("policy", "Boundary"),
    )
    assert (await iam_env.broker.broker.store.attached_policies("role", "dev")).boundary == (
        "Boundary"
    )


async def test_wider_policies_on_itself_stay_within_the_boundary(iam_env: IamEnv) -> None:
    _, dev = await world(iam_env)
    await call(dev, "attach_role_policy", RoleName="dev", PolicyArn=iam_env.arn("policy", "Wide"))
    await call(dev, "put_role_policy", RoleName="dev", PolicyName="all", PolicyDocument=wide())
    store = iam_env.broker.broker.store
    assert (await store.attached_policies("role", "dev")).managed == ("Wide",)
    fresh = await iam_env.client("dev")
    for client in (dev, fresh):
        await expect("AccessDenied", client, "list_users")
        await expect("AccessDenied", client, "create_user", UserName="mallory")
        await expect("AccessDenied", client, "get_user", UserName="admin")
    assert not await store.find_users_by_name("mallory")
    # and the same through a role it can assume that carries its boundary
    await call(dev, "attach_role_policy", RoleName="sub", PolicyArn=iam_env.arn("policy", "Wide"))
    sub = iam_client(iam_env.url, await iam_env.credentials("sub", sub="dev"))
    await expect("AccessDenied", sub, "list_users")


async def test_a_more_privileged_role_it_can_assume_cannot_be_changed(iam_env: IamEnv) -> None:
    _, dev = await world(iam_env)
    power_policy = iam_env.arn("policy", "PowerPolicy")
    # directly
    await refused(
        iam_env,
        dev,
        "attach_role_policy",
        "AttachRolePolicy",
        RoleName="power",
        PolicyArn=iam_env.arn("policy", "Wide"),
    )
    await refused(
        iam_env,
        dev,
        "put_role_policy",
        "PutRolePolicy",
        RoleName="power",
        PolicyName="all",
        PolicyDocument=wide(),
    )
    await refused(
        iam_env,
        dev,
        "detach_role_policy",
        "DetachRolePolicy",
        RoleName="power",
        PolicyArn=power_policy,
    )
    # PassRole-style chain: widen the policy attached to the unbounded role
    await refused(
        iam_env,
        dev,
        "create_policy_version",
        "CreatePolicyVersion",
        PolicyArn=power_policy,
        PolicyDocument=wide(),
        SetAsDefault=True,
    )
    power = iam_client(iam_env.url, await iam_env.credentials("power", sub="dev"))
    await call(power, "list_users")  # power is what it was


async def test_policies_only_used_under_the_same_boundary_may_change(iam_env: IamEnv) -> None:
    admin, dev = await world(iam_env)
    wide_arn = iam_env.arn("policy", "Wide")
    await call(dev, "attach_role_policy", RoleName="sub", PolicyArn=wide_arn)
    # Wide is attached only to sub (bounded like dev): dev may change it
    await call(
        dev, "create_policy_version", PolicyArn=wide_arn, PolicyDocument=wide(), SetAsDefault=True
    )
    # once an unbounded role uses it, not any more
    await call(admin, "attach_role_policy", RoleName="power", PolicyArn=wide_arn)
    await refused(
        iam_env,
        dev,
        "set_default_policy_version",
        "SetDefaultPolicyVersion",
        PolicyArn=wide_arn,
        VersionId="v1",
    )


async def test_unbounded_callers_are_not_restricted(iam_env: IamEnv) -> None:
    admin, _ = await world(iam_env)
    boundary = iam_env.arn("policy", "Boundary")
    await call(admin, "set_default_policy_version", PolicyArn=boundary, VersionId="v2")
    await call(admin, "delete_role_permissions_boundary", RoleName="sub")
    await call(
        admin, "attach_role_policy", RoleName="power", PolicyArn=iam_env.arn("policy", "Wide")
    )


def credential(env: IamEnv, role: str) -> Caller:
    now = time.time()
    cred = Credential(
        kind="access",
        session_id="s",
        user_id="",
        provider="fake",
        subject=role,
        role_arn=env.arn("role", role),
        email="",
        groups=(),
        mfa=False,
        issued_at=now,
        expires_at=now + 3600,
    )
    return Caller(arn=env.arn("role", role), actor=role, credential=cred)


async def test_the_check_for_trust_and_new_principals(iam_env: IamEnv) -> None:
    """What the roles and users actions call: ``UpdateAssumeRolePolicy`` on a role, and
    ``CreateRole``/``CreateUser`` with a ``PermissionsBoundary``."""
    await world(iam_env)
    api = iam_env.broker.broker.iam_api
    dev = Call(api=api, caller=credential(iam_env, "dev"), params={}, req=RequestInfo())
    boss = Call(api=api, caller=api.root(), params={}, req=RequestInfo())
    with pytest.raises(IamAccessDenied) as e:
        await escalation.require_bounded_target(dev, "role", "power", "power")
    assert e.value.reason == "escalation:target_not_bounded:role/power"
    await escalation.require_bounded_target(dev, "role", "sub", "sub")
    await escalation.require_bounded_target(boss, "role", "power", "power")
    await escalation.require_boundary_for_new(dev, "role", iam_env.arn("policy", "Boundary"))
    for other in (None, iam_env.arn("policy", "Wide")):
        with pytest.raises(IamAccessDenied):
            await escalation.require_boundary_for_new(dev, "role", other)
    await escalation.require_boundary_for_new(boss, "user", None)
    # an empty group may be changed; one with an unbounded member not
    store = iam_env.broker.broker.store
    await store.create_group(Group("g"))
    await escalation.require_bounded_target(dev, "group", "g", "g")
    await store.create_user(User("u-1", "local", "u", "u"))
    await store.add_group_member("g", "u-1")
    with pytest.raises(IamAccessDenied):
        await escalation.require_bounded_target(dev, "group", "g", "g")
    await store.set_boundary("user", "u-1", "Boundary")
    await escalation.require_bounded_target(dev, "group", "g", "g")


async def test_a_caller_bounded_by_a_document_of_its_own_changes_no_principal(
    iam_env: IamEnv,
) -> None:
    # its boundary is no managed policy: no target can carry it (fail closed)
    await world(iam_env)
    reach = [iam_env.arn("role", "docb"), iam_env.arn("role", "sub"), iam_env.arn("policy", "*")]
    limits = policy(allow("iam:*", reach))
    now = time.time()
    trust = web_trust("fake", {"StringEquals": {"fake:sub": "docb"}})
    store = iam_env.broker.broker.store
    await store.put_role(RoleRecord("docb", "", trust, [limits], limits, 3600.0, "api", now, now))
    await iam_env.broker.broker.iam_api.changed()
    docb = await iam_env.client("docb")
    wide_arn = iam_env.arn("policy", "Wide")
    await refused(
        iam_env, docb, "attach_role_policy", "AttachRolePolicy", RoleName="sub", PolicyArn=wide_arn
    )
    await refused(
        iam_env,
        docb,
        "put_role_permissions_boundary",
        "PutRolePermissionsBoundary",
        RoleName="sub",
        PermissionsBoundary=iam_env.arn("policy", "Boundary"),
    )
    await call(docb, "get_policy", PolicyArn=wide_arn)  # reading is no change
