"""Managed policies and their versions through the real boto3 ``iam`` client and AWS CLI:
happy paths, AWS's error codes, bad input (nothing stored)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.iam.conftest import IamEnv, allow, call, error_code, policy
from tests.iam.policy_support import make_role

DOC = policy(allow("s3:GetObject"))


def doc_json(action: str = "s3:GetObject") -> str:
    return json.dumps(policy(allow(action)))


async def expect(code: str, client: Any, operation: str, **params: Any) -> ClientError:
    with pytest.raises(ClientError) as e:
        await call(client, operation, **params)
    assert error_code(e.value) == code, e.value.response
    return e.value


async def test_create_get_list_and_delete_a_policy(iam_env: IamEnv) -> None:
    iam = await iam_env.client("admin")
    out = await call(
        iam, "create_policy", PolicyName="Reader", PolicyDocument=doc_json(), Description="r"
    )
    p = out["Policy"]
    arn = iam_env.arn("policy", "Reader")
    assert p["Arn"] == arn
    assert p["PolicyName"] == "Reader"
    assert p["PolicyId"].startswith("ANPA")
    assert len(p["PolicyId"]) == 21
    assert p["DefaultVersionId"] == "v1"
    assert p["AttachmentCount"] == 0
    got = (await call(iam, "get_policy", PolicyArn=arn))["Policy"]
    assert got["PolicyId"] == p["PolicyId"]
    assert got["Description"] == "r"
    listed = await call(iam, "list_policies", Scope="Local")
    assert listed["IsTruncated"] is False
    assert [x["PolicyName"] for x in listed["Policies"]] == ["Reader"]
    assert (await call(iam, "list_policies", OnlyAttached=True))["Policies"] == []
    version = (await call(iam, "get_policy_version", PolicyArn=arn, VersionId="v1"))[
        "PolicyVersion"
    ]
    assert version["Document"] == policy(allow("s3:GetObject"))
    assert version["IsDefaultVersion"] is True

    await expect(
        "EntityAlreadyExists",
        iam,
        "create_policy",
        PolicyName="Reader",
        PolicyDocument=doc_json("s3:PutObject"),
    )
    await call(iam, "delete_policy", PolicyArn=arn)
    await expect("NoSuchEntity", iam, "get_policy", PolicyArn=arn)
    await expect("NoSuchEntity", iam, "delete_policy", PolicyArn=arn)
    await expect(
        "NoSuchEntity", iam, "get_policy", PolicyArn="arn:broker:iam::123456789012:policy/Reader"
    )
    await expect("InvalidInput", iam, "get_policy", PolicyArn="arn:broker:s3:::bucket/xxxxx")
    assert await iam_env.broker.broker.store.get_managed_policy("Reader") is None


async def test_versions_limit_default_and_deletion(iam_env: IamEnv) -> None:
    iam = await iam_env.client("admin")
    store = iam_env.broker.broker.store
    arn = (await call(iam, "create_policy", PolicyName="P", PolicyDocument=doc_json()))["Policy"][
        "Arn"
    ]
    v2 = (await call(iam, "create_policy_version", PolicyArn=arn, PolicyDocument=doc_json("s3:A")))[
        "PolicyVersion"
    ]
    assert (v2["VersionId"], v2["IsDefaultVersion"]) == ("v2", False)
    before = await store.get_managed_policy("P")
    assert before is not None
    assert before.document == DOC
    v3 = (
        await call(
            iam,
            "create_policy_version",
            PolicyArn=arn,
            PolicyDocument=doc_json("s3:B"),
            SetAsDefault=True,
        )
    )["PolicyVersion"]
    assert v3["IsDefaultVersion"] is True
    after = await store.get_managed_policy("P")
    assert after is not None
    assert after.document == policy(allow("s3:B"))
    assert after.updated_at > before.updated_at
    assert (await call(iam, "get_policy", PolicyArn=arn))["Policy"]["DefaultVersionId"] == "v3"
    for a in ("s3:C", "s3:D"):
        await call(iam, "create_policy_version", PolicyArn=arn, PolicyDocument=doc_json(a))
    await expect(
        "LimitExceeded",
        iam,
        "create_policy_version",
        PolicyArn=arn,
        PolicyDocument=doc_json("s3:E"),
        SetAsDefault=True,
    )
    versions = (await call(iam, "list_policy_versions", PolicyArn=arn))["Versions"]
    assert [v["VersionId"] for v in versions] == ["v5", "v4", "v3", "v2", "v1"]
    assert [v["IsDefaultVersion"] for v in versions] == [False, False, True, False, False]
    page = await call(iam, "list_policy_versions", PolicyArn=arn, MaxItems=2)
    assert page["IsTruncated"] is True
    assert len(page["Versions"]) == 2

    await expect("DeleteConflict", iam, "delete_policy_version", PolicyArn=arn, VersionId="v3")
    await expect("NoSuchEntity", iam, "delete_policy_version", PolicyArn=arn, VersionId="v9")
    await expect("NoSuchEntity", iam, "set_default_policy_version", PolicyArn=arn, VersionId="v9")
    await expect("NoSuchEntity", iam, "get_policy_version", PolicyArn=arn, VersionId="v9")
    await call(iam, "set_default_policy_version", PolicyArn=arn, VersionId="v1")
    current = await store.get_managed_policy("P")
    assert current is not None
    assert current.document == DOC
    # a policy with non-default versions is not deleted
    await expect("DeleteConflict", iam, "delete_policy", PolicyArn=arn)
    for v in ("v2", "v3", "v4", "v5"):
        await call(iam, "delete_policy_version", PolicyArn=arn, VersionId=v)
    v6 = await call(iam, "create_policy_version", PolicyArn=arn, PolicyDocument=doc_json("s3:F"))
    assert v6["PolicyVersion"]["VersionId"] == "v6"  # numbers are never reused
    await call(iam, "delete_policy_version", PolicyArn=arn, VersionId="v6")
    await call(iam, "delete_policy", PolicyArn=arn)
    assert await store.list_policy_versions("P") == []


async def test_a_new_default_version_is_in_force_at_once(iam_env: IamEnv) -> None:
    # the role "tester" gets its permissions from a managed policy; the default version decides
    iam = await iam_env.client("admin")
    arn = (
        await call(iam, "create_policy", PolicyName="T", PolicyDocument=doc_json("iam:ListUsers"))
    )["Policy"]["Arn"]
    await make_role(iam_env, "tester", managed=["T"])
    tester = await iam_env.client("tester")
    await call(tester, "list_users")
    await call(
        iam,
        "create_policy_version",
        PolicyArn=arn,
        PolicyDocument=doc_json("iam:ListRoles"),
        SetAsDefault=True,
    )
    await expect("AccessDenied", tester, "list_users")
    await call(iam, "set_default_policy_version", PolicyArn=arn, VersionId="v1")
    await call(tester, "list_users")


async def test_bad_documents_and_names_store_nothing(iam_env: IamEnv) -> None:
    iam = await iam_env.client("admin")
    store = iam_env.broker.broker.store
    statement = {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:x:"}
    big = policy(statement)
    pad = 6145 - len(json.dumps(big, separators=(",", ":")))
    big["Statement"][0]["Resource"] = "arn:x:" + "a" * pad
    assert len(json.dumps(big, separators=(",", ":"))) == 6145
    bad = {
        "malformed": "{not json",
        "unknown element": json.dumps({"Version": "2012-10-17", "Statement": [], "Foo": 1}),
        "no effect": json.dumps({"Version": "2012-10-17", "Statement": [{"Action": "*"}]}),
        "too large": json.dumps(big, separators=(",", ":")),
    }
    for what, document in bad.items():
        e = await expect(
            "MalformedPolicyDocument",
            iam,
            "create_policy",
            PolicyName="Bad",
            PolicyDocument=document,
        )
        assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 400, what
    ok = await call(iam, "create_policy", PolicyName="Ok", PolicyDocument=doc_json())
    arn = ok["Policy"]["Arn"]
    for document in bad.values():
        await expect(
            "MalformedPolicyDocument",
            iam,
            "create_policy_version",
            PolicyArn=arn,
            PolicyDocument=document,
            SetAsDefault=True,
        )
    await expect(
        "ValidationError", iam, "create_policy", PolicyName="x" * 129, PolicyDocument=doc_json()
    )
    await expect(
        "ValidationError", iam, "create_policy", PolicyName="bad name", PolicyDocument=doc_json()
    )
    await expect(
        "ValidationError", iam, "create_policy", PolicyName="sl/ash", PolicyDocument=doc_json()
    )
    await expect(
        "ValidationError",
        iam,
        "create_policy",
        PolicyName="p",
        Path="/a/",
        PolicyDocument=doc_json(),
    )
    names = [p.name for p in await store.list_managed_policies()]
    assert names == ["Ok", "ReadOnly"]
    assert len(await store.list_policy_versions("Ok")) == 1
    await iam_env.broker.broker.auditor.flush()  # refusals are batched
    events = await store.list_audit(action="iam.CreatePolicy")
    assert any(e.outcome == "failure" and "malformed" in e.reason for e in events)


async def test_config_policies_are_unmodifiable(iam_env: IamEnv) -> None:
    iam = await iam_env.client("admin")
    arn = iam_env.arn("policy", "ReadOnly")
    listed = await call(iam, "list_policies", Scope="AWS")
    assert [p["PolicyName"] for p in listed["Policies"]] == ["ReadOnly"]
    for op, kw in (
        ("create_policy_version", {"PolicyDocument": doc_json()}),
        ("set_default_policy_version", {"VersionId": "v1"}),
        ("delete_policy_version", {"VersionId": "v1"}),
        ("delete_policy", {}),
    ):
        await expect("UnmodifiableEntity", iam, op, PolicyArn=arn, **kw)
    record = await iam_env.broker.broker.store.get_managed_policy("ReadOnly")
    assert record is not None
    assert record.default_version == "v1"


async def test_aws_cli_creates_a_policy_from_a_file_and_pages_versions(iam_env: IamEnv) -> None:
    creds = await iam_env.credentials("admin")
    path = iam_env.tmp / "p.json"
    path.write_text(json.dumps(DOC, indent=2))
    code, out, err = await iam_env.aws(
        creds,
        "iam",
        "create-policy",
        "--policy-name",
        "FromCli",
        "--policy-document",
        f"file://{path}",
    )
    assert code == 0, err
    arn = out["Policy"]["Arn"]
    for a in ("s3:A", "s3:B", "s3:C"):
        path.write_text(doc_json(a))
        code, out, err = await iam_env.aws(
            creds,
            "iam",
            "create-policy-version",
            "--policy-arn",
            arn,
            "--policy-document",
            f"file://{path}",
            "--set-as-default",
        )
        assert code == 0, err
    code, out, err = await iam_env.aws(
        creds, "iam", "list-policy-versions", "--policy-arn", arn, "--page-size", "1"
    )
    assert code == 0, err
    assert [v["VersionId"] for v in out["Versions"]] == ["v4", "v3", "v2", "v1"]
    code, out, err = await iam_env.aws(
        creds, "iam", "get-policy-version", "--policy-arn", arn, "--version-id", "v4"
    )
    assert code == 0, err
    assert out["PolicyVersion"]["Document"] == policy(allow("s3:C"))
    path.write_text("{")
    code, out, err = await iam_env.aws(
        creds,
        "iam",
        "create-policy",
        "--policy-name",
        "Broken",
        "--policy-document",
        f"file://{path}",
    )
    assert code != 0
    assert "MalformedPolicyDocument" in err


async def test_two_admins_racing(iam_env: IamEnv) -> None:
    a, b = await iam_env.client("admin"), await iam_env.client("admin")
    store = iam_env.broker.broker.store

    async def attempt(client: Any, operation: str, **params: Any) -> str:
        try:
            await call(client, operation, **params)
        except ClientError as e:
            return error_code(e)
        return "ok"

    for i in range(3):
        name = f"Race{i}"
        results = await asyncio.gather(
            attempt(a, "create_policy", PolicyName=name, PolicyDocument=doc_json("s3:A")),
            attempt(b, "create_policy", PolicyName=name, PolicyDocument=doc_json("s3:B")),
        )
        assert sorted(results) == ["EntityAlreadyExists", "ok"]
        assert len(await store.list_policy_versions(name)) == 1
    arn = iam_env.arn("policy", "Race0")
    for action in ("s3:C", "s3:D", "s3:E"):
        await call(a, "create_policy_version", PolicyArn=arn, PolicyDocument=doc_json(action))
    results = await asyncio.gather(
        attempt(
            a,
            "create_policy_version",
            PolicyArn=arn,
            PolicyDocument=doc_json("s3:F"),
            SetAsDefault=True,
        ),
        attempt(
            b,
            "create_policy_version",
            PolicyArn=arn,
            PolicyDocument=doc_json("s3:G"),
            SetAsDefault=True,
        ),
    )
    assert sorted(results) == ["LimitExceeded", "ok"]
    versions = await store.list_policy_versions("Race0")
    assert [v.version_id for v in versions] == ["v5", "v4", "v3", "v2", "v1"]
    record = await store.get_managed_policy("Race0")
    assert record is not None
    assert record.document == versions[0].document


async def test_aws_cli_lists_policies_past_one_page(iam_env: IamEnv) -> None:
    creds = await iam_env.credentials("admin")
    iam = await iam_env.client("admin")
    for i in range(12):
        await call(iam, "create_policy", PolicyName=f"p{i:03d}", PolicyDocument=doc_json())
    code, out, err = await iam_env.aws(
        creds, "iam", "list-policies", "--scope", "Local", "--page-size", "5"
    )
    assert code == 0, err
    assert [p["PolicyName"] for p in out["Policies"]] == [f"p{i:03d}" for i in range(12)]
    page = await call(iam, "list_policies", MaxItems=5)
    assert page["IsTruncated"] is True
    nxt = await call(iam, "list_policies", MaxItems=5, Marker=page["Marker"])
    assert nxt["Policies"][0]["PolicyName"] not in [p["PolicyName"] for p in page["Policies"]]
    await expect(
        "InvalidInput",
        iam,
        "create_policy",
        PolicyName="Tagged",
        PolicyDocument=doc_json(),
        Tags=[{"Key": "k", "Value": "v"}],
    )
    assert await iam_env.broker.broker.store.get_managed_policy("Tagged") is None


async def test_hostile_documents_are_4xx_and_store_nothing(iam_env: IamEnv) -> None:
    iam = await iam_env.client("admin")
    store = iam_env.broker.broker.store
    arn = (await call(iam, "create_policy", PolicyName="Ok", PolicyDocument=doc_json()))["Policy"][
        "Arn"
    ]
    nested = "[" * 5000 + "]" * 5000
    hostile = [
        "null",
        "[]",
        '"text"',
        "1e999",
        "NaN",
        '{"Statement": 5}',
        '{"Version": 1}',
        '{"Version": "2012-10-17", "Statement": {"Effect": "Maybe", "Action": "*"}}',
        '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": 1, '
        '"Resource": "*"}]}',
        '{"Version": "2012-10-17", "Version": "2008-10-17", "Statement": []}',
        '{"Version": "2012-10-17", "Statement": [' + nested + "]}",
        "\ufeff{}",
        "{" + '"a":' * 3000 + "1" + "}" * 3000,
    ]
    for document in hostile:
        with pytest.raises(ClientError) as e:
            await call(iam, "create_policy", PolicyName="H", PolicyDocument=document)
        status = e.value.response["ResponseMetadata"]["HTTPStatusCode"]
        assert 400 <= status < 500, (document[:60], e.value.response)
        with pytest.raises(ClientError) as e:
            await call(
                iam,
                "create_policy_version",
                PolicyArn=arn,
                PolicyDocument=document,
                SetAsDefault=True,
            )
        status = e.value.response["ResponseMetadata"]["HTTPStatusCode"]
        assert 400 <= status < 500, (document[:60], e.value.response)
    assert await store.get_managed_policy("H") is None
    assert len(await store.list_policy_versions("Ok")) == 1
