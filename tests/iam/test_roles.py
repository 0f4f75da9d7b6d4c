"""IAM role actions through real boto3 and the real AWS CLI: Create/Get/List/Update/Delete
Role, UpdateRoleDescription, UpdateAssumeRolePolicy, their AWS error codes, bad input that
stores nothing, read-only config roles, and a role created here being assumable at once."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from broker.domain.claims import Identity
from tests.iam.conftest import IamEnv, allow, call, error_code, policy, sts_client
from tests.iam.users_support import form, raw_iam
from tests.sts.conftest import ACCOUNT, web_trust
from tests.support.login_driver import parse_forms

READ_ONLY_ARN = f"arn:broker:iam::{ACCOUNT}:policy/ReadOnly"


def trust_for(sub: str, provider: str = "fake") -> dict[str, Any]:
    return web_trust(provider, {"StringEquals": {f"{provider}:sub": sub}})


def unchecked(client: Any) -> Any:
    """The same caller without botocore's client-side checks (AWS's own answers to bad input)."""
    creds = client._request_signer._credentials
    return boto3.client(
        "iam",
        endpoint_url=client.meta.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id=creds.access_key,
        aws_secret_access_key=creds.secret_key,
        aws_session_token=creds.token,
        config=Config(parameter_validation=False, retries={"max_attempts": 1}),
    )


async def assume(env: IamEnv, role: str, sub: str) -> dict[str, str]:
    out = await call(
        sts_client(env.url),
        "assume_role_with_web_identity",
        RoleArn=env.arn("role", role),
        RoleSessionName=sub,
        WebIdentityToken=env.idp.mint({"sub": sub}),
    )
    creds: dict[str, str] = out["Credentials"]
    return creds


async def test_boto3_role_lifecycle(iam_env: IamEnv) -> None:
    iam = await iam_env.client("admin")
    out = await call(
        iam,
        "create_role",
        RoleName="deploy",
        AssumeRolePolicyDocument=json.dumps(trust_for("ci-bot")),
        Description="Deploys things",
        MaxSessionDuration=7200,
        PermissionsBoundary=READ_ONLY_ARN,
        Tags=[{"Key": "team", "Value": "infra"}],
    )
    role = out["Role"]
    assert role["RoleName"] == "deploy"
    assert role["Arn"] == iam_env.arn("role", "deploy")
    assert role["RoleId"].startswith("AROA")
    assert role["Path"] == "/"
    assert role["AssumeRolePolicyDocument"] == trust_for("ci-bot")  # boto3 decodes it
    assert role["Description"] == "Deploys things"
    assert role["MaxSessionDuration"] == 7200
    assert role["PermissionsBoundary"] == {
        "PermissionsBoundaryType": "PermissionsBoundaryPolicy",
        "PermissionsBoundaryArn": READ_ONLY_ARN,
    }
    assert role["Tags"] == [{"Key": "team", "Value": "infra"}]
    got = (await call(iam, "get_role", RoleName="deploy"))["Role"]
    assert got == role

    listed = await call(iam, "list_roles")
    assert listed["IsTruncated"] is False
    (entry,) = [r for r in listed["Roles"] if r["RoleName"] == "deploy"]
    assert "Tags" not in entry  # as IAM: ListRoles leaves tags and boundary out
    assert {r["RoleName"] for r in listed["Roles"]} >= {"deploy", "admin", "reader", "nobody"}
    assert (await call(iam, "list_roles", PathPrefix="/other/"))["Roles"] == []

    await call(iam, "update_role", RoleName="deploy", Description="", MaxSessionDuration=3600)
    got = (await call(iam, "get_role", RoleName="deploy"))["Role"]
    assert "Description" not in got
    assert got["MaxSessionDuration"] == 3600
    out = await call(iam, "update_role_description", RoleName="deploy", Description="New")
    assert out["Role"]["Description"] == "New"
    await call(
        iam,
        "update_assume_role_policy",
        RoleName="deploy",
        PolicyDocument=json.dumps(trust_for("other-bot")),
    )
    got = (await call(iam, "get_role", RoleName="deploy"))["Role"]
    assert got["AssumeRolePolicyDocument"] == trust_for("other-bot")
    assert got["CreateDate"] == role["CreateDate"]

    await call(iam, "delete_role", RoleName="deploy")
    with pytest.raises(ClientError) as e:
        await call(iam, "get_role", RoleName="deploy")
    assert error_code(e.value) == "NoSuchEntity"
    store = iam_env.broker.broker.store
    assert await store.list_tags("role", "deploy") == {}
    actions = [e.action for e in await store.list_audit(limit=50) if e.outcome == "success"]
    for action in ("CreateRole", "UpdateRole", "UpdateRoleDescription"):
        assert f"iam.{action}" in actions
    assert {"iam.UpdateAssumeRolePolicy", "iam.DeleteRole"} <= set(actions)


async def test_aws_error_codes(iam_env: IamEnv) -> None:
    iam = await iam_env.client("admin")
    trust = json.dumps(trust_for("ci-bot"))
    await call(iam, "create_role", RoleName="Deploy", AssumeRolePolicyDocument=trust)
    cases: list[tuple[str, dict[str, Any], str]] = [
        (
            "create_role",
            {"RoleName": "Deploy", "AssumeRolePolicyDocument": trust},
            "EntityAlreadyExists",
        ),
        # IAM names are unique regardless of case
        (
            "create_role",
            {"RoleName": "deploy", "AssumeRolePolicyDocument": trust},
            "EntityAlreadyExists",
        ),
        ("get_role", {"RoleName": "ghost"}, "NoSuchEntity"),
        ("update_role", {"RoleName": "ghost", "Description": "x"}, "NoSuchEntity"),
        ("update_role_description", {"RoleName": "ghost", "Description": "x"}, "NoSuchEntity"),
        (
            "update_assume_role_policy",
            {"RoleName": "ghost", "PolicyDocument": trust},
            "NoSuchEntity",
        ),
        ("delete_role", {"RoleName": "ghost"}, "NoSuchEntity"),
        (
            "update_assume_role_policy",
            {"RoleName": "Deploy", "PolicyDocument": "{"},
            "MalformedPolicyDocument",
        ),
    ]
    for op, params, code in cases:
        with pytest.raises(ClientError) as e:
            await call(iam, op, **params)
        assert error_code(e.value) == code, (op, params)
    status = e.value.response["ResponseMetadata"]["HTTPStatusCode"]
    assert status == 400
    got = (await call(iam, "get_role", RoleName="Deploy"))["Role"]
    assert got["AssumeRolePolicyDocument"] == trust_for("ci-bot")


BAD_CREATES: list[tuple[str, dict[str, Any], str]] = [
    ("129-char name", {"RoleName": "r" * 129}, "ValidationError"),
    ("65-char name", {"RoleName": "r" * 65}, "ValidationError"),
    ("space in name", {"RoleName": "has space"}, "ValidationError"),
    ("slash in name", {"RoleName": "sla/sh"}, "ValidationError"),
    ("non-ASCII name", {"RoleName": "r\u00f4le"}, "ValidationError"),
    ("empty name", {"RoleName": ""}, "ValidationError"),
    ("session 3599", {"MaxSessionDuration": 3599}, "ValidationError"),
    ("session 43201", {"MaxSessionDuration": 43201}, "ValidationError"),
    ("other path", {"Path": "/team/"}, "ValidationError"),
    ("not JSON", {"AssumeRolePolicyDocument": "{not json"}, "MalformedPolicyDocument"),
    (
        "duplicate keys",
        {"AssumeRolePolicyDocument": '{"Version":"2012-10-17","Version":"2012-10-17"}'},
        "MalformedPolicyDocument",
    ),
    (
        "no Principal (an identity policy)",
        {"AssumeRolePolicyDocument": json.dumps(policy(allow("sts:AssumeRole")))},
        "MalformedPolicyDocument",
    ),
    (
        "unknown condition operator",
        {
            "AssumeRolePolicyDocument": json.dumps(
                web_trust("fake", {"StringEqualz": {"fake:sub": "x"}})
            )
        },
        "MalformedPolicyDocument",
    ),
    (
        "trust policy over the quota",
        {
            "AssumeRolePolicyDocument": json.dumps(
                web_trust("fake", {"StringEquals": {"fake:sub": [f"s{i:05d}" for i in range(700)]}})
            )
        },
        "LimitExceeded",
    ),
    (
        "bad boundary ARN",
        {"PermissionsBoundary": "arn:broker:iam::000000000000:role/x"},
        "InvalidInput",
    ),
    (
        "boundary of another account",
        {"PermissionsBoundary": "arn:broker:iam::111111111111:policy/ReadOnly"},
        "InvalidInput",
    ),
    (
        "missing boundary policy",
        {"PermissionsBoundary": f"arn:broker:iam::{ACCOUNT}:policy/Nope"},
        "NoSuchEntity",
    ),
    (
        "duplicate tag keys",
        {"Tags": [{"Key": "team", "Value": "a"}, {"Key": "team", "Value": "b"}]},
        "InvalidInput",
    ),
    ("reserved tag key", {"Tags": [{"Key": "aws:owner", "Value": "a"}]}, "InvalidInput"),
    (
        "too many tags",
        {"Tags": [{"Key": f"k{i}", "Value": "v"} for i in range(51)]},
        "ValidationError",
    ),
]


@pytest.mark.parametrize(("why", "params", "code"), BAD_CREATES, ids=[c[0] for c in BAD_CREATES])
async def test_bad_input_is_the_aws_error_and_stores_nothing(
    iam_env: IamEnv, why: str, params: dict[str, Any], code: str
) -> None:
    iam = unchecked(await iam_env.client("admin"))
    store = iam_env.broker.broker.store
    before = await store.list_roles()
    full = {
        "RoleName": "newrole",
        "AssumeRolePolicyDocument": json.dumps(trust_for("ci-bot")),
        **params,
    }
    with pytest.raises(ClientError) as e:
        await call(iam, "create_role", **full)
    assert error_code(e.value) == code, e.value.response["Error"]
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] < 500
    assert await store.list_roles() == before
    assert await store.list_tags("role", str(full["RoleName"])) == {}
    await iam_env.broker.broker.auditor.flush()  # refusals are batched
    events = await store.list_audit(action="iam.CreateRole")
    assert events[0].outcome == "failure"


@pytest.mark.parametrize(
    ("op", "params"),
    [
        ("update_role", {"Description": "mine now"}),
        ("update_role", {"MaxSessionDuration": 7200}),
        ("update_role_description", {"Description": "mine now"}),
        ("update_assume_role_policy", {"PolicyDocument": json.dumps(trust_for("mallory"))}),
        ("delete_role", {}),
    ],
    ids=[
        "UpdateRole-description",
        "UpdateRole-duration",
        "UpdateRoleDescription",
        "UpdateAssumeRolePolicy",
        "DeleteRole",
    ],
)
async def test_config_roles_are_unmodifiable(
    iam_env: IamEnv, op: str, params: dict[str, Any]
) -> None:
    iam = await iam_env.client("admin")
    store = iam_env.broker.broker.store
    before = await store.get_role("reader")
    with pytest.raises(ClientError) as e:
        await call(iam, op, RoleName="reader", **params)
    assert error_code(e.value) == "UnmodifiableEntity"
    assert await store.get_role("reader") == before
    got = (await call(iam, "get_role", RoleName="reader"))["Role"]  # readable all the same
    assert got["Arn"] == iam_env.arn("role", "reader")


async def test_delete_conflicts_while_policies_remain_and_ends_sessions(iam_env: IamEnv) -> None:
    b = iam_env.broker.broker
    iam = await iam_env.client("admin")
    trust = json.dumps(trust_for("ci-bot"))
    await call(iam, "create_role", RoleName="deploy", AssumeRolePolicyDocument=trust)
    await b.iam.put_inline_policy(
        "role", "deploy", "reads", policy(allow("s3:GetObject")), actor="root"
    )
    await b.iam.attach_policy("role", "deploy", "ReadOnly", actor="root")
    await b.iam_api.changed()
    creds = await assume(iam_env, "deploy", "ci-bot")
    for remove in (
        b.iam.detach_policy("role", "deploy", "ReadOnly", actor="root"),  # an attached one
        b.iam.delete_inline_policy("role", "deploy", "reads", actor="root"),  # an inline one
    ):
        with pytest.raises(ClientError) as e:
            await call(iam, "delete_role", RoleName="deploy")
        assert error_code(e.value) == "DeleteConflict"
        assert await b.store.get_role("deploy") is not None
        await remove
    assert await authorize_status(iam_env, creds) == 200
    await call(iam, "delete_role", RoleName="deploy")
    assert await authorize_status(iam_env, creds) == 401  # its sessions ended with it
    # a new role of the same name does not bring the old role's credentials back
    await call(iam, "create_role", RoleName="deploy", AssumeRolePolicyDocument=trust)
    assert await authorize_status(iam_env, creds) == 401


async def authorize_status(env: IamEnv, creds: dict[str, str]) -> int:
    body = {"action": "s3:GetObject", "resource": "arn:aws:s3:::bucket/key"}
    headers = {"Authorization": f"Bearer {creds['SessionToken']}"}
    async with (
        aiohttp.ClientSession() as s,
        s.post(f"{env.url}/v1/authorize", json=body, headers=headers) as r,
    ):
        return r.status


async def test_a_created_role_is_assumable_at_once_and_follows_its_trust(
    iam_env: IamEnv,
) -> None:
    b = iam_env.broker.broker
    iam = await iam_env.client("admin")
    await call(
        iam,
        "create_role",
        RoleName="deploy",
        AssumeRolePolicyDocument=json.dumps(trust_for("ci-bot")),
        MaxSessionDuration=7200,
    )
    creds = await assume(iam_env, "deploy", "ci-bot")  # no wait: the caches were refreshed
    assert creds["SessionToken"]
    out = await call(
        sts_client(iam_env.url),
        "assume_role_with_web_identity",
        RoleArn=iam_env.arn("role", "deploy"),
        RoleSessionName="long",
        WebIdentityToken=iam_env.idp.mint({"sub": "ci-bot"}),
        DurationSeconds=7200,
    )
    assert out["Credentials"]["Expiration"]
    role = (await call(iam, "get_role", RoleName="deploy"))["Role"]
    assert out["AssumedRoleUser"]["AssumedRoleId"] == f"{role['RoleId']}:long"
    # browser logins through the provider see it among the identity's roles
    identity = Identity(provider="fake", subject="ci-bot", name="ci-bot", claims={"sub": "ci-bot"})
    names = [c.role.name for c in await b.roles.candidates(identity, source_ip="127.0.0.1")]
    assert "deploy" in names

    await call(
        iam,
        "update_assume_role_policy",
        RoleName="deploy",
        PolicyDocument=json.dumps(trust_for("other-bot")),
    )
    with pytest.raises(ClientError) as e:
        await assume(iam_env, "deploy", "ci-bot")
    assert error_code(e.value) == "AccessDenied"
    await assume(iam_env, "deploy", "other-bot")
    names = [c.role.name for c in await b.roles.candidates(identity, source_ip="127.0.0.1")]
    assert "deploy" not in names


async def test_aws_cli_creates_role_as_in_the_issue_and_pages_past_100(
    iam_env: IamEnv, tmp_path: Path
) -> None:
    creds = await iam_env.credentials("admin")
    trust = tmp_path / "trust.json"
    trust.write_text(json.dumps(trust_for("ci-bot")))
    code, out, err = await iam_env.aws(
        creds,
        "iam",
        "create-role",
        "--role-name",
        "deploy",
        "--assume-role-policy-document",
        f"file://{trust}",
        "--max-session-duration",
        "7200",
    )
    assert code == 0, err
    assert out["Role"]["MaxSessionDuration"] == 7200
    assert out["Role"]["AssumeRolePolicyDocument"] == trust_for("ci-bot")
    code, out, err = await iam_env.aws(
        creds,
        "iam",
        "create-role",
        "--role-name",
        "deploy",
        "--assume-role-policy-document",
        f"file://{trust}",
    )
    assert code != 0
    assert "EntityAlreadyExists" in err
    code, out, err = await iam_env.aws(
        creds, "iam", "update-role", "--role-name", "deploy", "--description", "CLI"
    )
    assert code == 0, err
    code, out, err = await iam_env.aws(creds, "iam", "get-role", "--role-name", "deploy")
    assert code == 0, err
    assert out["Role"]["Description"] == "CLI"

    api = iam_env.broker.broker.iam_api
    for i in range(105):
        await api.call(
            api.root(),
            "CreateRole",
            {"RoleName": f"bulk{i:03d}", "AssumeRolePolicyDocument": json.dumps(trust_for("x"))},
        )
    code, out, err = await iam_env.aws(creds, "iam", "list-roles")  # auto-paginates
    assert code == 0, err
    names = [r["RoleName"] for r in out["Roles"]]
    assert [n for n in names if n.startswith("bulk")] == [f"bulk{i:03d}" for i in range(105)]
    assert len(names) == len(set(names)) == 105 + 4  # and admin, reader, nobody, deploy

    code, out, err = await iam_env.aws(creds, "iam", "delete-role", "--role-name", "deploy")
    assert code == 0, err
    code, out, err = await iam_env.aws(creds, "iam", "delete-role", "--role-name", "deploy")
    assert code != 0
    assert "NoSuchEntity" in err


async def test_a_retired_key_verifies_for_as_long_as_an_api_role_session_lasts(
    iam_env: IamEnv,
) -> None:
    # the config's roles and sessions last at most 8 h; a role created here may issue 12 h
    b = iam_env.broker.broker
    assert max(r.max_session_duration for r in iam_env.broker.settings.roles.values()) < 43200
    new = await b.rotate_keys(reason="test")
    retired = [k for k in await b.store.list_signing_keys() if k.kid != new.kid]
    assert retired
    for key in retired:
        assert key.retired_at is not None
        assert key.expires_at is not None
        assert key.expires_at - key.retired_at >= 43200


async def test_browser_login_takes_a_role_created_through_the_api(iam_env: IamEnv) -> None:
    # the bootstrap local user admin signs in; its only role is one created just now
    b = iam_env.broker
    password = b.broker.bootstrap_password
    assert password
    iam = await iam_env.client("admin")
    trust = web_trust("local", {"StringEquals": {"local:sub": "admin"}})
    await call(iam, "create_role", RoleName="ops", AssumeRolePolicyDocument=json.dumps(trust))
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        async with s.get(f"{b.url}/login/local") as r:
            fields = dict(parse_forms(await r.text())[0].fields)
        async with s.post(
            f"{b.url}/login/local",
            data={**fields, "username": "admin", "password": password},
            allow_redirects=False,
        ) as r:
            assert r.status == 303
        async with s.get(f"{b.url}/password") as r:
            form = dict(parse_forms(await r.text())[0].fields)
        new = "correct horse battery staple"
        data = {**form, "new_password": new, "confirm": new}
        async with s.post(f"{b.url}/password", data=data) as r:
            assert r.status == 200, await r.text()
        async with s.get(f"{b.url}/session", headers={"Accept": "application/json"}) as r:
            assert r.status == 200
            assert (await r.json())["role"] == iam_env.arn("role", "ops")


async def test_two_admins_racing_one_wins(iam_env: IamEnv) -> None:
    admins = [await iam_env.client("admin") for _ in range(2)]
    store = iam_env.broker.broker.store

    async def attempt(i: int, op: str, **params: Any) -> str:
        try:
            await call(admins[i % 2], op, **params)
        except ClientError as e:
            return error_code(e)
        return "ok"

    results = await asyncio.gather(
        *(
            attempt(
                i,
                "create_role",
                RoleName="race" if i % 2 else "RACE",
                AssumeRolePolicyDocument=json.dumps(trust_for(f"sub-{i}")),
                Tags=[{"Key": "by", "Value": str(i)}],
            )
            for i in range(6)
        )
    )
    assert sorted(results) == ["EntityAlreadyExists"] * 5 + ["ok"]
    winner = results.index("ok")
    (role,) = [r for r in await store.list_roles() if r.name.lower() == "race"]
    assert role.trust_policy == trust_for(f"sub-{winner}")
    assert await store.list_tags("role", role.name) == {"by": str(winner)}

    results = await asyncio.gather(
        *(attempt(i, "delete_role", RoleName=role.name) for i in range(4))
    )
    assert sorted(results) == ["NoSuchEntity"] * 3 + ["ok"]
    assert await store.get_role(role.name) is None


async def test_duplicated_parameters_and_non_utf8_bodies_store_nothing(iam_env: IamEnv) -> None:
    creds = await iam_env.credentials("admin")
    trust = json.dumps(trust_for("ci-bot"))
    create = {"Action": "CreateRole", "RoleName": "dup", "AssumeRolePolicyDocument": trust}
    bodies: list[str | bytes] = [
        form(create) + "&RoleName=dup2",
        form(create) + "&AssumeRolePolicyDocument=" + quote(json.dumps(trust_for("mallory"))),
        b"Action=CreateRole&Version=2010-05-08&RoleName=\xff&AssumeRolePolicyDocument="
        + quote(trust).encode(),
        form({**create, "RoleName": "bad\u00e9"}).encode("latin-1", "replace"),
    ]
    store = iam_env.broker.broker.store
    before = await store.list_roles()
    for body in bodies:
        status, text = await raw_iam(iam_env, creds, body)
        assert status == 400, (body, text)
    assert await store.list_roles() == before
    status, _ = await raw_iam(iam_env, creds, form(create))  # the same, well-formed: created
    assert status == 200
    assert await store.get_role("dup") is not None
