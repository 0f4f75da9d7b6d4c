"""``AssumeRole`` with ``SerialNumber`` + ``TokenCode`` (the real AWS CLI and boto3): a code of
the caller's user's device gives credentials that carry MFA, so a role whose trust policy
requires ``aws:MultiFactorAuthPresent`` admits it and a permission policy that requires it
allows; without MFA both deny; a replayed, wrong or other device's code is AWS's
``AccessDenied`` ("MultiFactorAuthentication failed ..."), audited; ``aws:MultiFactorAuthAge``
is measured on the broker's (frozen) clock from when the code was accepted."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import boto3
import botocore.exceptions
import pyotp
import pytest
from aiohttp import web
from botocore.config import Config
from pytest_aiohttp import AiohttpServer

from broker.clock import FrozenClock
from tests.iam.conftest import (
    IamEnv,
    advance,
    allow,
    call,
    iam_roles,
    policy,
    start_iam_env,
    sts_client,
)
from tests.sts.conftest import ACCOUNT, RoleSpec, arn, chain_trust, web_trust

MFA_FAILED = "MultiFactorAuthentication failed with invalid MFA one time pass code."
READ_WITH_MFA = policy(
    allow("sts:AssumeRole"),
    {
        "Effect": "Allow",
        "Action": "app:Read",
        "Resource": "*",
        "Condition": {"Bool": {"aws:MultiFactorAuthPresent": "true"}},
    },
)


def roles() -> dict[str, RoleSpec]:
    out = iam_roles()
    out["dev"] = RoleSpec(
        web_trust("fake", {"StringEquals": {"fake:sub": "dev-1"}}),
        (policy(allow("sts:AssumeRole")),),
    )
    out["plain"] = RoleSpec(chain_trust("dev"), (READ_WITH_MFA,))
    out["mfa-only"] = RoleSpec(
        chain_trust("dev", condition={"Bool": {"aws:MultiFactorAuthPresent": "true"}}),
        (READ_WITH_MFA,),
    )
    # a web identity whose ID token shows MFA (RFC 8176 amr), authenticated < 100 s ago
    out["web-mfa"] = RoleSpec(
        web_trust(
            "fake",
            {
                "StringEquals": {"fake:sub": "w1"},
                "Bool": {"aws:MultiFactorAuthPresent": "true"},
                "NumericLessThan": {"aws:MultiFactorAuthAge": "100"},
            },
        )
    )
    out["fresh-mfa"] = RoleSpec(
        chain_trust("mfa-only", condition={"NumericLessThan": {"aws:MultiFactorAuthAge": "120"}}),
    )
    return out


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(time.time())


@pytest.fixture
async def env(
    tmp_path: Path,
    aiohttp_server: AiohttpServer,
    runners: list[web.AppRunner],
    monkeypatch: pytest.MonkeyPatch,
    clock: FrozenClock,
) -> IamEnv:
    return await start_iam_env(tmp_path, aiohttp_server, runners, monkeypatch, roles(), clock)


def signed_sts(url: str, creds: dict[str, str]) -> Any:
    return boto3.client(
        "sts",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
        config=Config(retries={"max_attempts": 1, "mode": "standard"}),
    )


def claims(token: str) -> dict[str, Any]:
    """The payload of a broker token (its signature is the broker's business here)."""
    segment = token.split(".")[1]
    data: dict[str, Any] = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    return data


async def authorize(url: str, token: str, action: str) -> str:
    async with (
        aiohttp.ClientSession() as s,
        s.post(
            f"{url}/v1/authorize",
            json={"action": action, "resource": "*", "context": {}},
            headers={"Authorization": f"Bearer {token}"},
        ) as r,
    ):
        decision: str = (await r.json())["decision"]
        return decision


async def enrolled(env: IamEnv, clock: FrozenClock) -> tuple[str, pyotp.TOTP]:
    """dev-1 (a federated user who has signed in) with an enabled device; codes up to the
    current step are used."""
    b = env.broker.broker
    await b.store.upsert_federated_user(
        "fake", "dev-1", name="dev-1", email="", groups=(), now=clock.now()
    )
    iam = await env.client("admin")
    device = (await call(iam, "create_virtual_mfa_device", VirtualMFADeviceName="dev-1"))[
        "VirtualMFADevice"
    ]
    otp = pyotp.TOTP(device["Base32StringSeed"].decode())
    now = clock.now()
    await call(
        iam,
        "enable_mfa_device",
        UserName="dev-1",
        SerialNumber=device["SerialNumber"],
        AuthenticationCode1=otp.at(now - 30),
        AuthenticationCode2=otp.at(now),
    )
    return device["SerialNumber"], otp


async def refused(client: Any, **params: Any) -> str:
    with pytest.raises(botocore.exceptions.ClientError) as e:
        await call(client, "assume_role", **params)
    err = e.value.response["Error"]
    assert err["Code"] == "AccessDenied", err
    message: str = err["Message"]
    return message


async def test_mfa_assume_role_with_the_aws_cli_and_boto3(env: IamEnv, clock: FrozenClock) -> None:
    serial, otp = await enrolled(env, clock)
    dev = await env.credentials("dev", "dev-1")
    sts = signed_sts(env.url, dev)

    # without MFA: the trust policy that requires it denies; the one that does not admits,
    # and the permission policy that requires it denies
    await refused(sts, RoleArn=arn("mfa-only"), RoleSessionName="s1")
    plain = (await call(sts, "assume_role", RoleArn=arn("plain"), RoleSessionName="s1"))[
        "Credentials"
    ]
    assert claims(plain["SessionToken"])["mfa"] is False
    assert await authorize(env.url, plain["SessionToken"], "app:Read") == "implicitDeny"

    # with a code of dev-1's device, through the real AWS CLI
    await advance(env, clock, 30)
    code = otp.at(clock.now())
    rc, out, err = await env.aws(
        dev,
        "sts",
        "assume-role",
        "--role-arn",
        arn("mfa-only"),
        "--role-session-name",
        "with-mfa",
        "--serial-number",
        serial,
        "--token-code",
        code,
    )
    assert rc == 0, err
    mfa_creds = out["Credentials"]
    c = claims(mfa_creds["SessionToken"])
    assert c["mfa"] is True
    assert c["mfa_at"] == pytest.approx(clock.now())
    assert await authorize(env.url, mfa_creds["SessionToken"], "app:Read") == "allowed"

    # the same code again (replay), a wrong code, a malformed one, another device's serial
    assert (
        await refused(
            sts, RoleArn=arn("plain"), RoleSessionName="s1", SerialNumber=serial, TokenCode=code
        )
        == MFA_FAILED
    )
    wrong = f"{(int(otp.at(clock.now() + 30)) + 1) % 1_000_000:06d}"
    assert (
        await refused(
            sts, RoleArn=arn("plain"), RoleSessionName="s1", SerialNumber=serial, TokenCode=wrong
        )
        == MFA_FAILED
    )
    other = f"arn:broker:iam::{ACCOUNT}:mfa/someone-else"
    assert (
        await refused(
            sts,
            RoleArn=arn("plain"),
            RoleSessionName="s1",
            SerialNumber=other,
            TokenCode=otp.at(clock.now() + 30),
        )
        == MFA_FAILED
    )
    with pytest.raises(botocore.exceptions.ClientError) as e:
        await call(
            sts, "assume_role", RoleArn=arn("plain"), RoleSessionName="s1", SerialNumber=serial
        )
    assert e.value.response["Error"]["Code"] == "ValidationError"

    # a caller without a device (admin) cannot claim dev-1's device
    admin_sts = signed_sts(env.url, await env.credentials("admin"))
    await refused(
        admin_sts,
        RoleArn=arn("plain"),
        RoleSessionName="s1",
        SerialNumber=serial,
        TokenCode=otp.at(clock.now() + 30),
    )

    # boto3, the next step's code: plain now allows app:Read
    with_mfa = await call(
        sts,
        "assume_role",
        RoleArn=arn("plain"),
        RoleSessionName="s2",
        SerialNumber=serial,
        TokenCode=otp.at(clock.now() + 30),
    )
    assert await authorize(env.url, with_mfa["Credentials"]["SessionToken"], "app:Read") == (
        "allowed"
    )

    await env.broker.broker.auditor.flush()  # refusals are written in batches
    events = await env.broker.broker.store.list_audit(limit=500, action="sts.AssumeRole")
    reasons = [e.reason for e in events if e.outcome == "failure"]
    assert "mfa_code_wrong_or_used" in reasons
    assert "mfa_serial_not_users_device" in reasons
    assert "no_enabled_mfa_device" in reasons
    assert otp.secret not in json.dumps([e.__dict__ for e in events], default=str)


async def test_multi_factor_auth_age_on_the_brokers_clock(env: IamEnv, clock: FrozenClock) -> None:
    serial, otp = await enrolled(env, clock)
    sts = signed_sts(env.url, await env.credentials("dev", "dev-1"))
    await advance(env, clock, 30)
    first = await call(
        sts,
        "assume_role",
        RoleArn=arn("mfa-only"),
        RoleSessionName="s1",
        SerialNumber=serial,
        TokenCode=otp.at(clock.now()),
    )
    chained = signed_sts(env.url, first["Credentials"])
    # 60 s after the code: younger than 120 s (the clock stays within SigV4's 5-minute skew)
    await advance(env, clock, 60)
    fresh = await call(chained, "assume_role", RoleArn=arn("fresh-mfa"), RoleSessionName="f1")
    c = claims(fresh["Credentials"]["SessionToken"])
    assert c["mfa"] is True  # carried through the chain, with the original time
    assert c["mfa_at"] == pytest.approx(clock.now() - 60)
    # 160 s after: too old
    await advance(env, clock, 100)
    await refused(chained, RoleArn=arn("fresh-mfa"), RoleSessionName="f1")
    await env.broker.broker.auditor.flush()  # refusals are written in batches
    events = await env.broker.broker.store.list_audit(limit=50, action="sts.AssumeRole")
    assert any(e.reason.startswith("trust_policy:") for e in events if e.outcome == "failure")


async def test_without_mfa_there_is_no_auth_time(env: IamEnv, clock: FrozenClock) -> None:
    """Credentials without MFA carry no MFA time (so no aws:MultiFactorAuthAge)."""
    await enrolled(env, clock)
    sts = signed_sts(env.url, await env.credentials("dev", "dev-1"))
    plain = (await call(sts, "assume_role", RoleArn=arn("plain"), RoleSessionName="s1"))[
        "Credentials"
    ]
    assert "mfa_at" not in claims(plain["SessionToken"])


@pytest.mark.parametrize(
    ("amr", "auth_age", "admitted"),
    [
        (["pwd", "otp"], 50, True),
        (["mfa"], 50, True),
        (["otp"], 50, False),  # one factor
        (["pwd"], 50, False),
        (None, 50, False),
        (["pwd", "hwk"], 200, False),  # too long ago
    ],
    ids=["pwd+otp", "mfa", "otp-alone", "pwd", "no-amr", "stale"],
)
async def test_web_identity_mfa_from_amr(
    env: IamEnv, clock: FrozenClock, amr: list[str] | None, auth_age: int, admitted: bool
) -> None:
    extra: dict[str, Any] = {"sub": "w1", "auth_time": int(clock.now()) - auth_age}
    if amr is not None:
        extra["amr"] = amr
    params = {
        "RoleArn": arn("web-mfa"),
        "RoleSessionName": "w1",
        "WebIdentityToken": env.idp.mint(extra),
    }
    client = sts_client(env.url)
    if not admitted:
        with pytest.raises(botocore.exceptions.ClientError) as e:
            await call(client, "assume_role_with_web_identity", **params)
        assert e.value.response["Error"]["Code"] == "AccessDenied"
        return
    out = await call(client, "assume_role_with_web_identity", **params)
    c = claims(out["Credentials"]["SessionToken"])
    assert c["mfa"] is True
    assert c["mfa_at"] == extra["auth_time"]
