"""SimulatePrincipalPolicy and SimulateCustomPolicy: real boto3 and AWS CLI calls answered by
the broker's one simulator (the same engine that authorizes requests)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from aiohttp import web
from botocore.config import Config
from botocore.exceptions import ClientError
from pytest_aiohttp import AiohttpServer

from broker.service.iam_api import simulation
from broker.service.iam_api.simulation import statement_spans
from broker.storage.base import RoleRecord
from tests.iam.conftest import (
    IamEnv,
    allow,
    call,
    error_code,
    iam_roles,
    policy,
    start_iam_env,
)
from tests.sts.conftest import (
    ACCOUNT,
    RoleSpec,
    sts_post,
    web_trust,
)

ALICE = f"arn:broker:iam::{ACCOUNT}:user/alice"


def doc(*statements: dict[str, Any]) -> str:
    return json.dumps(policy(*statements))


def deny(action: str, resource: str = "*") -> dict[str, Any]:
    return {"Effect": "Deny", "Action": action, "Resource": resource}


@pytest.fixture
async def sim_env(
    tmp_path: Path,
    aiohttp_server: AiohttpServer,
    runners: list[web.AppRunner],
    monkeypatch: pytest.MonkeyPatch,
) -> IamEnv:
    """``iam_env``'s roles, plus ``simalice``: may simulate only the user ``alice``."""
    roles = iam_roles()
    roles["simalice"] = RoleSpec(
        web_trust("fake", {"StringEquals": {"fake:sub": "simalice"}}),
        (policy(allow("iam:SimulatePrincipalPolicy", ALICE)),),
    )
    return await start_iam_env(tmp_path, aiohttp_server, runners, monkeypatch, roles)


async def _alice(env: IamEnv) -> None:
    """User alice: inline s3:* and iam:List*, a group allowing ec2:Describe*, a boundary
    allowing s3:Get* and ec2:* only, and a managed policy denying s3:GetObject on secret/."""
    iam = env.broker.broker.iam
    admin = await env.client("admin")
    await call(admin, "create_user", UserName="alice")
    await iam.put_inline_policy(
        "user", "alice", "own", policy(allow(["s3:*", "iam:List*"])), actor="test"
    )
    await iam.create_group("devs", actor="test")
    await iam.add_user_to_group("devs", "alice", actor="test")
    await iam.put_inline_policy(
        "group", "devs", "ec2", policy(allow("ec2:Describe*")), actor="test"
    )
    await iam.create_policy(
        "NoSecrets", policy(deny("s3:GetObject", "arn:aws:s3:::b/secret/*")), actor="test"
    )
    await iam.attach_policy("user", "alice", "NoSecrets", actor="test")
    await iam.create_policy("Bound", policy(allow(["s3:Get*", "ec2:*"])), actor="test")
    await iam.set_boundary("user", "alice", "Bound", actor="test")


def _by_action(out: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["EvalActionName"], r["EvalResourceName"]): r for r in out["EvaluationResults"]}


def ids(result: dict[str, Any]) -> list[tuple[str, str]]:
    return [(m["SourcePolicyId"], m["SourcePolicyType"]) for m in result["MatchedStatements"]]


# --- SimulateCustomPolicy ----------------------------------------------------------------


async def test_custom_policy_allowed_explicit_and_implicit_deny(iam_env: IamEnv) -> None:
    iam = await iam_env.client("reader")
    admin = await iam_env.client("admin")
    out = await call(
        admin,
        "simulate_custom_policy",
        PolicyInputList=[
            doc(allow("s3:*")),
            doc({"Sid": "NoDelete", **deny("s3:DeleteObject", "arn:aws:s3:::b/*")}),
        ],
        ActionNames=["s3:GetObject", "s3:DeleteObject", "ec2:RunInstances"],
        ResourceArns=["arn:aws:s3:::b/k"],
    )
    assert out["IsTruncated"] is False
    got = _by_action(out)
    assert len(got) == 3
    ok = got[("s3:GetObject", "arn:aws:s3:::b/k")]
    assert ok["EvalDecision"] == "allowed"
    # positions: line 1, the column just past each brace (counting from 1), as AWS's examples
    first = doc(allow("s3:*"))
    start, end = first.index('{"Effect"'), len(first) - 3  # ...}]}
    assert ok["MatchedStatements"] == [
        {
            "SourcePolicyId": "PolicyInputList.1",
            "SourcePolicyType": "none",
            "StartPosition": {"Line": 1, "Column": start + 2},
            "EndPosition": {"Line": 1, "Column": end + 2},
        }
    ]
    denied = got[("s3:DeleteObject", "arn:aws:s3:::b/k")]
    assert denied["EvalDecision"] == "explicitDeny"
    assert ids(denied) == [("PolicyInputList.2", "none")]
    none = got[("ec2:RunInstances", "arn:aws:s3:::b/k")]
    assert none["EvalDecision"] == "implicitDeny"
    assert none.get("MatchedStatements", []) == []
    assert "PermissionsBoundaryDecisionDetail" not in ok
    # iam:Get*/List* is not iam:SimulateCustomPolicy
    with pytest.raises(ClientError) as e:
        await call(
            iam,
            "simulate_custom_policy",
            PolicyInputList=[doc(allow("s3:*"))],
            ActionNames=["s3:GetObject"],
        )
    assert error_code(e.value) == "AccessDenied"


async def test_a_context_key_changes_the_decision(iam_env: IamEnv) -> None:
    admin = await iam_env.client("admin")
    office = doc(
        {
            **allow("s3:GetObject"),
            "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}},
        }
    )
    missing = await call(
        admin, "simulate_custom_policy", PolicyInputList=[office], ActionNames=["s3:GetObject"]
    )
    (result,) = missing["EvaluationResults"]
    assert result["EvalDecision"] == "implicitDeny"
    assert result["EvalResourceName"] == "*"
    assert result["MissingContextValues"] == ["aws:SourceIp"]

    def at(ip: str) -> dict[str, Any]:
        return {
            "PolicyInputList": [office],
            "ActionNames": ["s3:GetObject"],
            "ContextEntries": [
                {"ContextKeyName": "aws:SourceIp", "ContextKeyValues": [ip], "ContextKeyType": "ip"}
            ],
        }

    inside = (await call(admin, "simulate_custom_policy", **at("10.1.2.3")))["EvaluationResults"]
    assert inside[0]["EvalDecision"] == "allowed"
    assert inside[0]["MissingContextValues"] == []
    outside = (await call(admin, "simulate_custom_policy", **at("192.0.2.1")))["EvaluationResults"]
    assert outside[0]["EvalDecision"] == "implicitDeny"

    with pytest.raises(ClientError) as e:
        await call(admin, "simulate_custom_policy", **at("not-an-ip"))
    assert error_code(e.value) == "InvalidInput"


async def test_custom_boundary_limits_and_reports_its_own_decision(iam_env: IamEnv) -> None:
    admin = await iam_env.client("admin")
    out = await call(
        admin,
        "simulate_custom_policy",
        PolicyInputList=[doc(allow(["s3:*", "ec2:*"]))],
        PermissionsBoundaryPolicyInputList=[doc(allow("s3:Get*"))],
        ActionNames=["s3:GetObject", "ec2:RunInstances"],
    )
    got = _by_action(out)
    get = got[("s3:GetObject", "*")]
    assert get["EvalDecision"] == "allowed"
    assert get["PermissionsBoundaryDecisionDetail"] == {"AllowedByPermissionsBoundary": True}
    assert ids(get) == [
        ("PolicyInputList.1", "none"),
        ("PermissionsBoundaryPolicyInputList.1", "none"),
    ]
    run = got[("ec2:RunInstances", "*")]
    assert run["EvalDecision"] == "implicitDeny"
    assert run["PermissionsBoundaryDecisionDetail"] == {"AllowedByPermissionsBoundary": False}

    with pytest.raises(ClientError) as e:
        await call(
            admin,
            "simulate_custom_policy",
            PolicyInputList=[doc(allow("s3:*"))],
            PermissionsBoundaryPolicyInputList=[doc(allow("s3:*")), doc(allow("s3:*"))],
            ActionNames=["s3:GetObject"],
        )
    assert error_code(e.value) == "InvalidInput"


async def test_results_are_paged_with_marker_and_max_items(iam_env: IamEnv) -> None:
    admin = await iam_env.client("admin")
    actions = [f"s3:Action{i}" for i in range(5)]
    params = {"PolicyInputList": [doc(allow("s3:*"))], "ActionNames": actions}
    first = await call(admin, "simulate_custom_policy", MaxItems=2, **params)
    assert first["IsTruncated"] is True
    seen = [r["EvalActionName"] for r in first["EvaluationResults"]]
    marker = first["Marker"]
    while marker:
        page = await call(admin, "simulate_custom_policy", MaxItems=2, Marker=marker, **params)
        seen += [r["EvalActionName"] for r in page["EvaluationResults"]]
        marker = page.get("Marker")
    assert seen == actions
    paginator = admin.get_paginator("simulate_custom_policy")
    pages = await asyncio.to_thread(
        lambda: list(paginator.paginate(PaginationConfig={"PageSize": 2}, **params))
    )
    assert len(pages) == 3
    assert [r["EvalActionName"] for p in pages for r in p["EvaluationResults"]] == actions


async def test_malformed_and_invalid_input(iam_env: IamEnv) -> None:
    admin = await iam_env.client("admin")
    for bad in ("{not json", json.dumps({"Statement": [{"Effect": "Maybe", "Action": "s3:*"}]})):
        with pytest.raises(ClientError) as e:
            await call(
                admin, "simulate_custom_policy", PolicyInputList=[bad], ActionNames=["s3:GetObject"]
            )
        assert error_code(e.value) == "MalformedPolicyDocument", bad
        assert "PolicyInputList.1" in e.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as e:
        await call(
            admin,
            "simulate_custom_policy",
            PolicyInputList=[doc(allow("s3:*"))],
            ActionNames=["s3:GetObject"],
            ResourcePolicy=json.dumps(policy({**allow("s3:*"), "Principal": "*"})),
        )
    assert error_code(e.value) == "InvalidInput"
    with pytest.raises(ClientError) as e:
        await call(
            admin,
            "simulate_custom_policy",
            PolicyInputList=[doc(allow("s3:*"))],
            ActionNames=["nocolon"],
        )
    assert error_code(e.value) == "InvalidInput"


async def test_model_constraints_are_validation_errors(iam_env: IamEnv) -> None:
    creds = await iam_env.credentials("admin")
    raw = boto3.client(
        "iam",
        endpoint_url=iam_env.url,
        region_name="us-east-1",
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
        config=Config(parameter_validation=False, retries={"max_attempts": 1}),
    )
    # ContextKeyName is 5..256 characters; MaxItems 1..1000
    with pytest.raises(ClientError) as e:
        await call(
            raw,
            "simulate_custom_policy",
            PolicyInputList=[doc(allow("s3:*"))],
            ActionNames=["s3:GetObject"],
            ContextEntries=[{"ContextKeyName": "ab", "ContextKeyValues": ["x"]}],
        )
    assert error_code(e.value) == "ValidationError"
    with pytest.raises(ClientError) as e:
        await call(
            raw,
            "simulate_principal_policy",
            PolicySourceArn=ALICE,
            ActionNames=["s3:GetObject"],
            MaxItems=0,
        )
    assert error_code(e.value) == "ValidationError"


# --- SimulatePrincipalPolicy ---------------------------------------------------------------


async def test_principal_policy_of_a_user_with_groups_managed_and_boundary(
    iam_env: IamEnv,
) -> None:
    await _alice(iam_env)
    admin = await iam_env.client("admin")
    out = await call(
        admin,
        "simulate_principal_policy",
        PolicySourceArn=ALICE,
        ActionNames=["s3:GetObject", "s3:PutObject", "ec2:DescribeInstances", "iam:ListUsers"],
        ResourceArns=["arn:aws:s3:::b/k", "arn:aws:s3:::b/secret/x"],
    )
    got = _by_action(out)
    assert len(got) == 8
    get = got[("s3:GetObject", "arn:aws:s3:::b/k")]
    assert get["EvalDecision"] == "allowed"
    assert {"SourcePolicyId": "own", "SourcePolicyType": "user"} in get["MatchedStatements"]
    assert get["PermissionsBoundaryDecisionDetail"] == {"AllowedByPermissionsBoundary": True}
    secret = got[("s3:GetObject", "arn:aws:s3:::b/secret/x")]
    assert secret["EvalDecision"] == "explicitDeny"
    assert secret["MatchedStatements"] == [
        {"SourcePolicyId": "NoSecrets", "SourcePolicyType": "user-managed"}
    ]
    # identity allows s3:PutObject, the boundary does not
    put = got[("s3:PutObject", "arn:aws:s3:::b/k")]
    assert put["EvalDecision"] == "implicitDeny"
    assert put["PermissionsBoundaryDecisionDetail"] == {"AllowedByPermissionsBoundary": False}
    described = got[("ec2:DescribeInstances", "arn:aws:s3:::b/k")]
    assert described["EvalDecision"] == "allowed"
    assert {"SourcePolicyId": "ec2", "SourcePolicyType": "group"} in described["MatchedStatements"]
    assert got[("iam:ListUsers", "arn:aws:s3:::b/k")]["EvalDecision"] == "implicitDeny"

    # PolicyInputList adds policies; PermissionsBoundaryPolicyInputList replaces the boundary
    wider = await call(
        admin,
        "simulate_principal_policy",
        PolicySourceArn=ALICE,
        ActionNames=["s3:PutObject", "sqs:SendMessage"],
        PolicyInputList=[doc(allow("sqs:*"))],
        PermissionsBoundaryPolicyInputList=[doc(allow(["s3:*", "sqs:*"]))],
    )
    assert {r["EvalActionName"]: r["EvalDecision"] for r in wider["EvaluationResults"]} == {
        "s3:PutObject": "allowed",
        "sqs:SendMessage": "allowed",
    }


async def test_principal_policy_of_a_group(iam_env: IamEnv) -> None:
    await _alice(iam_env)
    admin = await iam_env.client("admin")
    out = await call(
        admin,
        "simulate_principal_policy",
        PolicySourceArn=f"arn:broker:iam::{ACCOUNT}:group/devs",
        ActionNames=["ec2:DescribeInstances", "s3:GetObject"],
    )
    assert {r["EvalActionName"]: r["EvalDecision"] for r in out["EvaluationResults"]} == {
        "ec2:DescribeInstances": "allowed",
        "s3:GetObject": "implicitDeny",
    }


async def test_the_admin_role_is_allowed_iam_everything(iam_env: IamEnv) -> None:
    admin = await iam_env.client("admin")
    out = await call(
        admin,
        "simulate_principal_policy",
        PolicySourceArn=iam_env.arn("role", "admin"),
        ActionNames=["iam:CreateUser", "iam:DeleteRole", "iam:SimulatePrincipalPolicy"],
        ResourceArns=[iam_env.arn("user", "x"), iam_env.arn("role", "y")],
    )
    results = out["EvaluationResults"]
    assert len(results) == 6
    for r in results:
        assert r["EvalDecision"] == "allowed", r
        assert r["MatchedStatements"] == [
            {"SourcePolicyId": "admin/policy[0]", "SourcePolicyType": "role"}
        ]
    nobody = await call(
        admin,
        "simulate_principal_policy",
        PolicySourceArn=iam_env.arn("role", "nobody"),
        ActionNames=["iam:CreateUser"],
    )
    assert nobody["EvaluationResults"][0]["EvalDecision"] == "implicitDeny"


async def test_caller_arn_sets_the_user_context_keys(iam_env: IamEnv) -> None:
    await _alice(iam_env)
    admin = await iam_env.client("admin")
    own = doc(allow("s3:GetObject", "arn:aws:s3:::home/${aws:username}/*"))
    out = await call(
        admin,
        "simulate_custom_policy",
        PolicyInputList=[own],
        ActionNames=["s3:GetObject"],
        ResourceArns=["arn:aws:s3:::home/alice/f", "arn:aws:s3:::home/bob/f"],
        CallerArn=ALICE,
    )
    assert [r["EvalDecision"] for r in out["EvaluationResults"]] == ["allowed", "implicitDeny"]


async def test_principal_errors(iam_env: IamEnv) -> None:
    admin = await iam_env.client("admin")
    for unknown in (
        f"arn:broker:iam::{ACCOUNT}:user/ghost",
        f"arn:broker:iam::{ACCOUNT}:role/ghost",
        f"arn:broker:iam::{ACCOUNT}:group/ghost",
        "arn:broker:iam::111111111111:role/admin",
    ):
        with pytest.raises(ClientError) as e:
            await call(
                admin,
                "simulate_principal_policy",
                PolicySourceArn=unknown,
                ActionNames=["s3:GetObject"],
            )
        assert error_code(e.value) == "NoSuchEntity", unknown
    with pytest.raises(ClientError) as e:
        await call(
            admin,
            "simulate_principal_policy",
            PolicySourceArn="arn:broker:s3:::some-bucket-name",
            ActionNames=["s3:GetObject"],
        )
    assert error_code(e.value) == "InvalidInput"
    with pytest.raises(ClientError) as e:
        await call(
            admin,
            "simulate_principal_policy",
            PolicySourceArn=iam_env.arn("role", "admin"),
            PolicyInputList=['{"Statement": []'],
            ActionNames=["s3:GetObject"],
        )
    assert error_code(e.value) == "MalformedPolicyDocument"


# --- authorization -----------------------------------------------------------------------


async def test_unauthenticated_calls_are_refused_and_audited(iam_env: IamEnv) -> None:
    for action in ("SimulateCustomPolicy", "SimulatePrincipalPolicy"):
        status, text = await sts_post(
            iam_env.url,
            {
                "Action": action,
                "Version": "2010-05-08",
                "PolicySourceArn": iam_env.arn("role", "admin"),
                "PolicyInputList.member.1": doc(allow("s3:*")),
                "ActionNames.member.1": "s3:GetObject",
            },
        )
        assert status == 403, text
        assert "MissingAuthenticationToken" in text
        await iam_env.broker.broker.auditor.flush()  # refusals are batched
        events = await iam_env.broker.broker.store.list_audit(action=f"iam.{action}")
        assert events
        assert events[0].outcome == "failure"


async def test_permission_only_on_another_principal_is_access_denied(sim_env: IamEnv) -> None:
    await _alice(sim_env)
    store = sim_env.broker.broker.store
    limited = await sim_env.client("simalice")
    out = await call(
        limited, "simulate_principal_policy", PolicySourceArn=ALICE, ActionNames=["s3:GetObject"]
    )
    assert out["EvaluationResults"][0]["EvalDecision"] == "allowed"

    for role, source in (
        ("simalice", sim_env.arn("role", "admin")),
        ("simalice", sim_env.arn("user", "ghost")),
        ("nobody", ALICE),
        ("reader", ALICE),
    ):
        client = await sim_env.client(role)
        with pytest.raises(ClientError) as e:
            await call(
                client,
                "simulate_principal_policy",
                PolicySourceArn=source,
                ActionNames=["iam:CreateUser"],
            )
        assert error_code(e.value) == "AccessDenied", (role, source)
        assert source in e.value.response["Error"]["Message"]
        await sim_env.broker.broker.auditor.flush()  # refusals are batched
        events = await store.list_audit(action="iam.SimulatePrincipalPolicy")
        assert events[0].outcome == "failure"
        assert events[0].reason.startswith("not_authorized")
        assert events[0].principal.endswith(f"assumed-role/{role}/{role}")
    # a path in the ARN does not widen what the caller may simulate
    with pytest.raises(ClientError) as e:
        await call(
            limited,
            "simulate_principal_policy",
            PolicySourceArn=f"arn:broker:iam::{ACCOUNT}:role/x/admin",
            ActionNames=["iam:CreateUser"],
        )
    assert error_code(e.value) == "AccessDenied"
    with pytest.raises(ClientError) as e:
        await call(
            limited,
            "simulate_custom_policy",
            PolicyInputList=[doc(allow("s3:*"))],
            ActionNames=["s3:GetObject"],
        )
    assert error_code(e.value) == "AccessDenied"


# --- the AWS CLI -----------------------------------------------------------------------------


async def test_aws_cli_simulates_custom_and_principal_policies(iam_env: IamEnv) -> None:
    creds = await iam_env.credentials("admin")
    # inline, as AWS's own example: awscli v1 sends a file:// list item character by character
    document = doc(allow("s3:Get*"), deny("s3:GetObject", "arn:aws:s3:::b/x"))
    code, out, err = await iam_env.aws(
        creds,
        "iam",
        "simulate-custom-policy",
        "--policy-input-list",
        document,
        "--action-names",
        "s3:GetObject",
        "s3:PutObject",
        "--resource-arns",
        "arn:aws:s3:::b/x",
        "arn:aws:s3:::b/y",
    )
    assert code == 0, err
    decisions = {
        (r["EvalActionName"], r["EvalResourceName"]): r["EvalDecision"]
        for r in out["EvaluationResults"]
    }
    assert decisions == {
        ("s3:GetObject", "arn:aws:s3:::b/x"): "explicitDeny",
        ("s3:GetObject", "arn:aws:s3:::b/y"): "allowed",
        ("s3:PutObject", "arn:aws:s3:::b/x"): "implicitDeny",
        ("s3:PutObject", "arn:aws:s3:::b/y"): "implicitDeny",
    }
    code, out, err = await iam_env.aws(
        creds,
        "iam",
        "simulate-principal-policy",
        "--policy-source-arn",
        iam_env.arn("role", "reader"),
        "--action-names",
        "iam:ListRoles",
        "iam:CreateRole",
        "--context-entries",
        "ContextKeyName=aws:SourceIp,ContextKeyValues=10.0.0.1,ContextKeyType=ip",
    )
    assert code == 0, err
    assert {r["EvalActionName"]: r["EvalDecision"] for r in out["EvaluationResults"]} == {
        "iam:ListRoles": "allowed",
        "iam:CreateRole": "implicitDeny",
    }
    code, out, err = await iam_env.aws(
        creds,
        "iam",
        "simulate-principal-policy",
        "--policy-source-arn",
        iam_env.arn("user", "ghost"),
        "--action-names",
        "s3:GetObject",
    )
    assert code != 0
    assert "NoSuchEntity" in err


async def test_aws_cli_documentation_example(iam_env: IamEnv) -> None:
    """``aws iam simulate-custom-policy`` Example 1 of the AWS CLI's own documentation: the
    same decision and the same statement positions."""
    creds = await iam_env.credentials("admin")
    document = (
        '{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"dynamodb:*",'
        '"Resource":"*","Condition":{"DateGreaterThan":{"aws:CurrentTime":"2018-08-16T12:00:00Z"}}}}'
    )
    expected = {"allowed": "2019-04-25T11:00:00Z", "implicitDeny": "2014-04-25T11:00:00Z"}
    for decision, when in expected.items():
        code, out, err = await iam_env.aws(
            creds,
            "iam",
            "simulate-custom-policy",
            "--policy-input-list",
            document,
            "--action-names",
            "dynamodb:CreateBackup",
            "--context-entries",
            f"ContextKeyName='aws:CurrentTime',ContextKeyValues='{when}',ContextKeyType=date",
        )
        assert code == 0, err
        (result,) = out["EvaluationResults"]
        assert result["EvalActionName"] == "dynamodb:CreateBackup"
        assert result["EvalResourceName"] == "*"
        assert result["EvalDecision"] == decision
        assert result["MissingContextValues"] == []
        if decision == "allowed":
            (matched,) = result["MatchedStatements"]
            assert matched["SourcePolicyId"] == "PolicyInputList.1"
            assert matched["StartPosition"] == {"Line": 1, "Column": 38}
            assert matched["EndPosition"] == {"Line": 1, "Column": 167}
        else:
            assert result["MatchedStatements"] == []


def test_statement_spans_skip_braces_in_strings_and_follow_lines() -> None:
    text = (
        '{\n  "Id": "x\\"}{",\n  "Statement": [\n'
        '    {"Sid": "a]", "Effect": "Allow", "Action": "s3:*", "Resource": "*"},\n'
        '    {\n      "Effect": "Deny", "Action": "s3:Delete*", "Resource": "*"\n    }\n  ]\n}'
    )
    spans = statement_spans(text)
    assert [json.loads(text[a : b + 1])["Effect"] for a, b in spans] == ["Allow", "Deny"]
    assert statement_spans('{"Statement": {"Effect": "Allow"}}') == [(14, 32)]
    assert statement_spans("[]") == []
    assert statement_spans('{"Version": "2012-10-17"}') == []


async def test_a_store_role_with_a_managed_boundary(iam_env: IamEnv) -> None:
    """A role with an attached policy and a managed boundary: the boundary limits, and its
    allowing statement is reported with the identity one."""
    b = iam_env.broker.broker
    await b.store.put_role(
        RoleRecord(
            name="deploy",
            description="",
            trust_policy=policy(
                {"Effect": "Allow", "Principal": {"Federated": "fake"}, "Action": "sts:*"}
            ),
            policies=(),
            permissions_boundary=None,
            max_session_duration=3600.0,
        )
    )
    await b.iam.create_policy("Deploy", policy(allow(["s3:*", "ec2:*"])), actor="test")
    await b.iam.attach_policy("role", "deploy", "Deploy", actor="test")
    await b.iam.set_boundary("role", "deploy", "ReadOnly", actor="test")
    await b.iam_api.changed()
    admin = await iam_env.client("admin")
    out = await call(
        admin,
        "simulate_principal_policy",
        PolicySourceArn=iam_env.arn("role", "deploy"),
        ActionNames=["s3:GetObject", "s3:PutObject", "sqs:SendMessage"],
    )
    got = {r["EvalActionName"]: r for r in out["EvaluationResults"]}
    assert got["s3:GetObject"]["EvalDecision"] == "allowed"
    assert ids(got["s3:GetObject"]) == [("Deploy", "user-managed"), ("ReadOnly", "user-managed")]
    assert got["s3:PutObject"]["EvalDecision"] == "implicitDeny"
    assert got["s3:PutObject"]["PermissionsBoundaryDecisionDetail"] == {
        "AllowedByPermissionsBoundary": False
    }
    assert got["sqs:SendMessage"]["EvalDecision"] == "implicitDeny"


def test_source_policy_ids_and_types_from_engine_names() -> None:
    assert simulation.source("policy/Ops") == ("Ops", "user-managed")
    assert simulation.source("user/alice/own") == ("own", "user")
    assert simulation.source("group/devs/ec2") == ("ec2", "group")
    assert simulation.source("role/deploy/extra") == ("extra", "role")
    assert simulation.source("admin/policy[0]") == ("admin/policy[0]", "role")
    assert simulation.source("policy/policy[1]") == (
        "policy/policy[1]",
        "role",
    )  # a role named "policy"
    assert simulation.source("PolicyInputList.3") == ("PolicyInputList.3", "none")
    assert simulation.source("PermissionsBoundaryPolicyInputList.1") == (
        "PermissionsBoundaryPolicyInputList.1",
        "none",
    )
