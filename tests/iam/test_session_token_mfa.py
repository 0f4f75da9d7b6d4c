"""GetSessionToken with MFA (issue 13): a user's long-lived key and a current code of the user's
virtual MFA device give temporary credentials that carry MFA, so a policy requiring
``aws:MultiFactorAuthPresent`` allows them and not the same user's credentials without MFA;
``aws:MultiFactorAuthAge`` counts from the code; a code is accepted once; the AWS CLI's
``get-session-token --serial-number --token-code`` works as written."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pyotp
import pytest
from botocore.exceptions import ClientError

from broker.clock import FrozenClock
from tests.iam.conftest import (
    AWS_CLI,
    IamEnv,
    advance,
    allow,
    call,
    error_code,
)
from tests.iam.keys_support import key_client, user_with_key
from tests.sts.conftest import ACCOUNT, aws_env

BUCKET = "arn:aws:s3:::reports/q3.csv"
NEEDS_MFA = {
    "Effect": "Allow",
    "Action": "s3:GetObject",
    "Resource": "*",
    "Condition": {"Bool": {"aws:MultiFactorAuthPresent": "true"}},
}
FRESH_MFA = {
    "Effect": "Allow",
    "Action": "s3:PutObject",
    "Resource": "*",
    "Condition": {"NumericLessThan": {"aws:MultiFactorAuthAge": "300"}},
}


@pytest.fixture
def env(clocked_iam_env: IamEnv) -> IamEnv:
    return clocked_iam_env


async def decision(env: IamEnv, creds: dict[str, Any], action: str) -> str:
    body = {"action": action, "resource": BUCKET}
    headers = {"Authorization": f"Bearer {creds['SessionToken']}"}
    async with (
        aiohttp.ClientSession() as s,
        s.post(f"{env.url}/v1/authorize", json=body, headers=headers) as r,
    ):
        assert r.status == 200, await r.text()
        return str((await r.json())["decision"])


async def enrolled(env: IamEnv, clock: FrozenClock, user: str) -> tuple[str, pyotp.TOTP]:
    admin = await env.client("admin")
    out = await call(admin, "create_virtual_mfa_device", VirtualMFADeviceName=f"{user}-phone")
    serial = out["VirtualMFADevice"]["SerialNumber"]
    otp = pyotp.TOTP(out["VirtualMFADevice"]["Base32StringSeed"].decode("ascii"))
    now = clock.now()
    await call(
        admin,
        "enable_mfa_device",
        UserName=user,
        SerialNumber=serial,
        AuthenticationCode1=otp.at(now - 30),
        AuthenticationCode2=otp.at(now),
    )
    return serial, otp


async def test_mfa_session_credentials_satisfy_mfa_policies(
    env: IamEnv, clock: FrozenClock
) -> None:
    key = await user_with_key(env, "ci", allow("sts:GetSessionToken"), NEEDS_MFA, FRESH_MFA)
    serial, otp = await enrolled(env, clock, "ci")
    sts = key_client(env.url, "sts", key)

    plain = (await call(sts, "get_session_token", DurationSeconds=3600))["Credentials"]
    assert await decision(env, plain, "s3:GetObject") == "implicitDeny"
    assert await decision(env, plain, "s3:PutObject") == "implicitDeny"  # no age without MFA

    await advance(env, clock, 30)  # the next code (enrolment used the current ones)
    code = otp.at(clock.now())
    out = await call(
        sts, "get_session_token", DurationSeconds=3600, SerialNumber=serial, TokenCode=code
    )
    strong = out["Credentials"]
    assert await decision(env, strong, "s3:GetObject") == "allowed"
    assert await decision(env, strong, "s3:PutObject") == "allowed"
    me = await call(key_client(env.url, "sts", strong), "get_caller_identity")
    assert me["Arn"] == f"arn:broker:iam::{ACCOUNT}:user/ci"
    # with MFA, the session may call the IAM API as its user's policies allow (AWS's rule)
    iam = key_client(env.url, "iam", strong)
    with pytest.raises(ClientError) as e:
        await call(iam, "list_users")
    assert error_code(e.value) == "AccessDenied"  # decided by the policy, not refused outright

    # the same code again, a wrong code, another user's device: refused, nothing issued
    for params in (
        {"SerialNumber": serial, "TokenCode": code},
        {"SerialNumber": serial, "TokenCode": "000000" if code != "000000" else "111111"},
        {"SerialNumber": f"arn:broker:iam::{ACCOUNT}:mfa/nobody", "TokenCode": otp.now()},
    ):
        with pytest.raises(ClientError) as e:
            await call(sts, "get_session_token", **params)
        assert error_code(e.value) == "AccessDenied"
        assert "MultiFactorAuthentication failed" in str(e.value)
    await env.broker.broker.auditor.flush()
    events = await env.broker.broker.store.list_audit(action="sts.GetSessionToken")
    assert sum(1 for ev in events if ev.outcome == "failure") >= 3
    assert code not in json.dumps([ev.details for ev in events], default=str)

    # MultiFactorAuthAge counts from the code: ten minutes later the fresh-MFA rule no longer
    # holds, while MultiFactorAuthPresent still does
    await advance(env, clock, 600)
    assert await decision(env, strong, "s3:PutObject") == "implicitDeny"
    assert await decision(env, strong, "s3:GetObject") == "allowed"


async def test_aws_cli_get_session_token_with_mfa(env: IamEnv, clock: FrozenClock) -> None:
    key = await user_with_key(env, "ci", allow("sts:GetSessionToken"), NEEDS_MFA)
    serial, otp = await enrolled(env, clock, "ci")
    await advance(env, clock, 30)
    cli_env = aws_env(
        env.tmp,
        AWS_ACCESS_KEY_ID=key["AccessKeyId"],
        AWS_SECRET_ACCESS_KEY=key["SecretAccessKey"],
    )
    proc = await asyncio.create_subprocess_exec(
        *(AWS_CLI, "--endpoint-url", env.url, "sts", "get-session-token"),
        *("--serial-number", serial, "--token-code", otp.at(clock.now()), "--output", "json"),
        env=cli_env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, err.decode()
    creds = json.loads(out)["Credentials"]
    assert creds["AccessKeyId"].startswith("ASIA")
    assert await decision(env, creds, "s3:GetObject") == "allowed"
