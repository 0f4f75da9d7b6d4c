"""End to end with the real AWS SDK (boto3) and the real AWS CLI against a running broker, with
ID tokens from the real OpenID Connect provider (node oidc-provider).

boto3 is synchronous and the broker runs in the test's event loop, so SDK calls run in a
thread (``asyncio.to_thread``); the CLI runs as a subprocess with an isolated environment.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import aiohttp
import boto3
import botocore.exceptions
import pytest
from botocore import UNSIGNED
from botocore.config import Config

from tests.conftest import RunningBroker
from tests.sts.conftest import ACCOUNT, arn, aws_env, real_id_token
from tests.support.oidc_server import OidcServer

pytestmark = pytest.mark.oidc

AWS_CLI = str(Path(sys.executable).parent / "aws")
READ_ONLY_SESSION = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}],
    }
)


@pytest.fixture(autouse=True)
def isolated_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for k, v in aws_env(tmp_path).items():
        monkeypatch.setenv(k, v)
    for k in list(__import__("os").environ):
        if k.startswith("AWS_") and k not in aws_env(tmp_path):
            monkeypatch.delenv(k)


def sts_client(url: str, creds: dict[str, str] | None = None) -> Any:
    cfg = Config(retries={"max_attempts": 1, "mode": "standard"})
    if creds is None:
        return boto3.client(
            "sts",
            endpoint_url=url,
            region_name="us-east-1",
            config=cfg.merge(Config(signature_version=UNSIGNED)),
        )
    return boto3.client(
        "sts",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
        config=cfg,
    )


async def web_identity(url: str, token: str, role: str, **kwargs: Any) -> dict[str, Any]:
    client = sts_client(url)
    out: dict[str, Any] = await asyncio.to_thread(
        client.assume_role_with_web_identity,
        RoleArn=arn(role),
        RoleSessionName=kwargs.pop("RoleSessionName", "build-42"),
        WebIdentityToken=token,
        **kwargs,
    )
    return out


async def authorize(url: str, token: str, action: str, resource: str = "*") -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as s,
        s.post(
            f"{url}/v1/authorize",
            json={"action": action, "resource": resource, "context": {}},
            headers={"Authorization": f"Bearer {token}"},
        ) as r,
    ):
        body: dict[str, Any] = await r.json()
        body["status"] = r.status
        return body


async def aws(tmp_path: Path, *args: str, **env: str) -> tuple[int, dict[str, Any], str]:
    proc = await asyncio.create_subprocess_exec(
        AWS_CLI,
        *args,
        "--output",
        "json",
        env=aws_env(tmp_path, **env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    text = out.decode()
    return proc.returncode or 0, json.loads(text) if text.strip() else {}, err.decode()


# --- boto3 ----------------------------------------------------------------------------------------


async def test_boto3_web_identity_returns_the_full_aws_result(
    broker: RunningBroker, oidc_server: OidcServer
) -> None:
    token = await real_id_token(oidc_server, "corp", "alice")
    out = await web_identity(broker.url, token, "ci")
    creds = out["Credentials"]
    assert creds["AccessKeyId"].startswith("ASIA")
    assert len(creds["AccessKeyId"]) == 20
    assert len(creds["SecretAccessKey"]) == 40
    assert creds["SessionToken"].count(".") == 2
    assert out["AssumedRoleUser"]["Arn"] == f"arn:broker:sts::{ACCOUNT}:assumed-role/ci/build-42"
    assert out["AssumedRoleUser"]["AssumedRoleId"].startswith("AROA")
    assert out["AssumedRoleUser"]["AssumedRoleId"].endswith(":build-42")
    assert out["SubjectFromWebIdentityToken"] == "alice"
    assert out["Audience"] == "broker"
    assert out["Provider"] == f"arn:broker:iam::{ACCOUNT}:oidc-provider/corp"
    assert out["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert len(out["ResponseMetadata"]["RequestId"]) == 36
    remaining = creds["Expiration"].timestamp() - __import__("time").time()
    assert 3500 < remaining <= 3600

    # the SessionToken is a bearer credential for /v1/authorize
    d = await authorize(broker.url, creds["SessionToken"], "s3:PutObject")
    assert d["decision"] == "allowed"

    await broker.broker.auditor.flush()  # STS events are batched
    events = await broker.broker.store.list_audit(action="sts.AssumeRoleWithWebIdentity")
    assert events[0].outcome == "success"
    assert events[0].details["access_key_id"] == creds["AccessKeyId"]
    assert creds["SecretAccessKey"] not in json.dumps([e.details for e in events])


async def test_boto3_get_caller_identity_and_chaining(
    broker: RunningBroker, oidc_server: OidcServer
) -> None:
    token = await real_id_token(oidc_server, "corp", "bob")
    first = (await web_identity(broker.url, token, "ci", RoleSessionName="bob-ci"))["Credentials"]
    signed = sts_client(broker.url, first)
    me = await asyncio.to_thread(signed.get_caller_identity)
    assert me["Arn"] == f"arn:broker:sts::{ACCOUNT}:assumed-role/ci/bob-ci"
    assert me["Account"] == ACCOUNT
    assert me["UserId"].endswith(":bob-ci")

    out = await asyncio.to_thread(
        signed.assume_role,
        RoleArn=arn("deploy"),
        RoleSessionName="chained",
        SourceIdentity="bob",
        Tags=[{"Key": "team", "Value": "infra"}],
        TransitiveTagKeys=["team"],
    )
    second = out["Credentials"]
    assert out["AssumedRoleUser"]["Arn"] == f"arn:broker:sts::{ACCOUNT}:assumed-role/deploy/chained"
    assert out["SourceIdentity"] == "bob"
    assert out["PackedPolicySize"] >= 1
    me2 = await asyncio.to_thread(sts_client(broker.url, second).get_caller_identity)
    assert me2["Arn"].endswith(":assumed-role/deploy/chained")

    # a chained session is capped at one hour, with AWS's words
    with pytest.raises(botocore.exceptions.ClientError) as e:
        await asyncio.to_thread(
            sts_client(broker.url, second).assume_role,
            RoleArn=arn("deploy2"),
            RoleSessionName="too-long",
            DurationSeconds=7200,
        )
    assert e.value.response["Error"]["Code"] == "ValidationError"
    assert "1 hour session limit for roles assumed by role chaining" in str(e.value)

    # the source identity is sticky and transitive tags pass on
    third = await asyncio.to_thread(
        sts_client(broker.url, second).assume_role,
        RoleArn=arn("deploy2"),
        RoleSessionName="third",
    )
    assert third["SourceIdentity"] == "bob"
    async with (
        aiohttp.ClientSession() as s,
        s.post(
            f"{broker.url}/oauth2/introspect",
            data={"token": third["Credentials"]["SessionToken"]},
            headers={"Authorization": f"Bearer {third['Credentials']['SessionToken']}"},
        ) as r,
    ):
        info = await r.json()
    assert info["active"] is True
    assert info["tags"] == {"team": "infra"}
    assert info["source_identity"] == "bob"


async def test_session_policy_narrows_and_carries_over(
    broker: RunningBroker, oidc_server: OidcServer
) -> None:
    token = await real_id_token(oidc_server, "corp", "alice")
    out = await web_identity(broker.url, token, "ci", Policy=READ_ONLY_SESSION)
    assert out["PackedPolicySize"] >= 1
    narrow = out["Credentials"]["SessionToken"]
    allowed = await authorize(broker.url, narrow, "s3:GetObject", "arn:aws:s3:::b/k")
    assert allowed["decision"] == "allowed"
    policies = {m["policy"] for m in allowed["matched_statements"]}
    assert "session-policy" in policies
    denied = await authorize(broker.url, narrow, "s3:PutObject", "arn:aws:s3:::b/k")
    assert denied["decision"] == "implicitDeny"
    assert denied["matched_statements"] == []

    # restricted credentials cannot mint broader ones: the session policy does not allow
    # sts:AssumeRole, so chaining is refused
    signed = sts_client(broker.url, out["Credentials"])
    with pytest.raises(botocore.exceptions.ClientError) as e:
        await asyncio.to_thread(signed.assume_role, RoleArn=arn("deploy"), RoleSessionName="xx")
    assert e.value.response["Error"]["Code"] == "AccessDenied"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403

    # allowed to chain, the restriction goes along
    chain_ok = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Action": ["s3:GetObject", "sts:AssumeRole"], "Resource": "*"}
            ],
        }
    )
    out = await web_identity(broker.url, token, "ci", Policy=chain_ok)
    chained = await asyncio.to_thread(
        sts_client(broker.url, out["Credentials"]).assume_role,
        RoleArn=arn("deploy"),
        RoleSessionName="narrow",
    )
    t = chained["Credentials"]["SessionToken"]
    assert (await authorize(broker.url, t, "s3:GetObject"))["decision"] == "allowed"
    assert (await authorize(broker.url, t, "s3:PutObject"))["decision"] == "implicitDeny"
    # ... and it cannot be swapped for a broader one
    with pytest.raises(botocore.exceptions.ClientError) as e:
        await asyncio.to_thread(
            sts_client(broker.url, out["Credentials"]).assume_role,
            RoleArn=arn("deploy"),
            RoleSessionName="wider",
            Policy=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
                }
            ),
        )
    assert e.value.response["Error"]["Code"] == "InvalidParameterValue"


async def test_policy_arns_name_managed_policies_from_the_store(
    broker: RunningBroker, oidc_server: OidcServer
) -> None:
    """PolicyArns: a managed policy an admin created at run time narrows the session like an
    inline Policy; an unknown one is refused with AWS's error."""
    await broker.broker.iam.create_policy(
        "GetOnly", READ_ONLY_SESSION, description="session narrowing", actor="test"
    )
    token = await real_id_token(oidc_server, "corp", "alice")
    policy_arn = f"arn:broker:iam::{ACCOUNT}:policy/GetOnly"
    out = await web_identity(broker.url, token, "ci", PolicyArns=[{"arn": policy_arn}])
    narrow = out["Credentials"]["SessionToken"]
    allowed = await authorize(broker.url, narrow, "s3:GetObject", "arn:aws:s3:::b/k")
    assert allowed["decision"] == "allowed"
    assert (await authorize(broker.url, narrow, "s3:PutObject"))["decision"] == "implicitDeny"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        await web_identity(
            broker.url, token, "ci", PolicyArns=[{"arn": f"arn:broker:iam::{ACCOUNT}:policy/Nope"}]
        )
    assert e.value.response["Error"]["Code"] == "InvalidParameterValue"
    assert "Policy Nope does not exist" in e.value.response["Error"]["Message"]


async def test_environment_variable_credential_flow_refreshes_by_itself(
    broker: RunningBroker, oidc_server: OidcServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(await real_id_token(oidc_server, "corp", "alice"))
    monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(token_file))
    monkeypatch.setenv("AWS_ROLE_ARN", arn("short"))
    monkeypatch.setenv("AWS_ROLE_SESSION_NAME", "env-flow")
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", broker.url)

    session = boto3.Session()
    client = session.client("sts")
    me = await asyncio.to_thread(client.get_caller_identity)
    assert me["Arn"] == f"arn:broker:sts::{ACCOUNT}:assumed-role/short/env-flow"
    creds = session.get_credentials()
    first = await asyncio.to_thread(creds.get_frozen_credentials)
    # 15-minute credentials are inside botocore's advisory refresh window: it fetches new ones
    second = await asyncio.to_thread(creds.get_frozen_credentials)
    assert first.access_key.startswith("ASIA")
    assert second.access_key.startswith("ASIA")
    assert first.access_key != second.access_key
    me = await asyncio.to_thread(client.get_caller_identity)
    assert me["Arn"].endswith("/short/env-flow")
    await broker.broker.auditor.flush()  # STS events are batched
    events = await broker.broker.store.list_audit(action="sts.AssumeRoleWithWebIdentity")
    assert sum(1 for e in events if e.outcome == "success") >= 2


# --- the AWS CLI ----------------------------------------------------------------------------------


async def test_aws_cli_web_identity_caller_identity_and_chaining(
    broker: RunningBroker, oidc_server: OidcServer, tmp_path: Path
) -> None:
    token = await real_id_token(oidc_server, "corp", "alice")
    code, out, err = await aws(
        tmp_path,
        "sts",
        "assume-role-with-web-identity",
        "--endpoint-url",
        broker.url,
        "--role-arn",
        arn("ci"),
        "--role-session-name",
        "build-42",
        "--web-identity-token",
        token,
    )
    assert code == 0, err
    creds = out["Credentials"]
    assert out["AssumedRoleUser"]["Arn"].endswith(":assumed-role/ci/build-42")
    signed_env = {
        "AWS_ACCESS_KEY_ID": creds["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": creds["SecretAccessKey"],
        "AWS_SESSION_TOKEN": creds["SessionToken"],
    }
    code, me, err = await aws(
        tmp_path, "sts", "get-caller-identity", "--endpoint-url", broker.url, **signed_env
    )
    assert code == 0, err
    assert me["Arn"] == f"arn:broker:sts::{ACCOUNT}:assumed-role/ci/build-42"
    code, chained, err = await aws(
        tmp_path,
        "sts",
        "assume-role",
        "--endpoint-url",
        broker.url,
        "--role-arn",
        arn("deploy"),
        "--role-session-name",
        "from-ci",
        **signed_env,
    )
    assert code == 0, err
    assert chained["AssumedRoleUser"]["Arn"].endswith(":assumed-role/deploy/from-ci")

    # AWS_ENDPOINT_URL_STS + the web identity variables, nothing else
    token_file = tmp_path / "token"
    token_file.write_text(token)
    code, me, err = await aws(
        tmp_path,
        "sts",
        "get-caller-identity",
        AWS_WEB_IDENTITY_TOKEN_FILE=str(token_file),
        AWS_ROLE_ARN=arn("ci"),
        AWS_ROLE_SESSION_NAME="cli-env",
        AWS_ENDPOINT_URL_STS=broker.url,
    )
    assert code == 0, err
    assert me["Arn"].endswith(":assumed-role/ci/cli-env")

    # an error comes back as AWS's: code and message
    code, _, err = await aws(
        tmp_path,
        "sts",
        "assume-role-with-web-identity",
        "--endpoint-url",
        broker.url,
        "--role-arn",
        arn("nobody"),
        "--role-session-name",
        "build-42",
        "--web-identity-token",
        token,
    )
    assert code != 0
    assert "AccessDenied" in err
