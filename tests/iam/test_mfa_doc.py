"""docs/mfa.md's commands as written, with the real AWS CLI: an administrator creates and
enables alice's device (codes computed with ``pyotp`` from the secret file the first command
wrote), then alice assumes a role whose trust policy requires MFA and gets MFA session
credentials with ``get-session-token``; without a code, the role refuses her."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pyotp
import pytest

from broker.clock import FrozenClock
from tests.iam.conftest import (
    AWS_CLI,
    IamEnv,
    allow,
    call,
    policy,
)
from tests.iam.keys_support import user_with_key
from tests.sts.conftest import ACCOUNT, aws_env
from tests.support.doc_snippets import blocks, runs

PAGE = "docs/mfa.md"
ALICE = f"arn:broker:iam::{ACCOUNT}:user/alice"


@pytest.fixture
def env(clocked_iam_env: IamEnv) -> IamEnv:
    return clocked_iam_env


async def bash(env: IamEnv, script: str, cwd: Path, creds: dict[str, str], **extra: str) -> str:
    keys = {
        "AWS_ACCESS_KEY_ID": creds["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": creds["SecretAccessKey"],
    }
    if "SessionToken" in creds:
        keys["AWS_SESSION_TOKEN"] = creds["SessionToken"]
    environ = aws_env(env.tmp, BROKER=env.url, AWS_DEFAULT_OUTPUT="json", **keys, **extra)
    environ["PATH"] = f"{Path(AWS_CLI).parent}{os.pathsep}{environ.get('PATH', '')}"
    proc = await asyncio.create_subprocess_exec(
        *("bash", "-euo", "pipefail", "-c", script),
        cwd=cwd,
        env=environ,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=240)
    assert proc.returncode == 0, err.decode()
    return out.decode()


@runs(PAGE, "sh", section="The IAM API")
@runs(PAGE, "sh", section="STS: `AssumeRole` with `SerialNumber` + `TokenCode`")
async def test_the_documented_commands(env: IamEnv, clock: FrozenClock, tmp_path: Path) -> None:
    create, enable = blocks(PAGE, "sh", section="The IAM API")
    assume, session = blocks(
        PAGE, "sh", section="STS: `AssumeRole` with `SerialNumber` + `TokenCode`"
    )
    key = await user_with_key(env, "alice", allow(["sts:AssumeRole", "sts:GetSessionToken"]))
    admin_iam = await env.client("admin")
    trust = policy(
        {
            "Effect": "Allow",
            "Principal": {"AWS": ALICE},
            "Action": "sts:AssumeRole",
            "Condition": {"Bool": {"aws:MultiFactorAuthPresent": "true"}},
        }
    )
    await call(
        admin_iam, "create_role", RoleName="prod", AssumeRolePolicyDocument=json.dumps(trust)
    )
    admin = await env.credentials("admin")
    work = tmp_path / "work"
    work.mkdir()

    await bash(env, create, work, admin)
    otp = pyotp.TOTP((work / "alice-seed.txt").read_text().strip())
    now = clock.now()
    out = await bash(env, enable, work, admin, CODE1=otp.at(now - 30), CODE2=otp.at(now))
    listed = json.loads(out)  # the last command's output: list-mfa-devices
    assert [d["SerialNumber"] for d in listed["MFADevices"]] == [
        f"arn:broker:iam::{ACCOUNT}:mfa/alice-phone"
    ]

    # without a code the trust policy refuses her; with the next code it lets her in
    no_code = assume.split("--serial-number")[0].rstrip(" \\\n") + ' --endpoint-url "$BROKER"'
    with pytest.raises(AssertionError, match="AccessDenied"):
        await bash(env, no_code, work, key)
    clock.advance(30)
    await env.broker.broker.poll_revocations()
    out = await bash(env, assume, work, key, CODE=otp.at(clock.now()))
    assert json.loads(out)["AssumedRoleUser"]["Arn"].endswith(":assumed-role/prod/me")

    clock.advance(30)
    await env.broker.broker.poll_revocations()
    out = await bash(env, session, work, key, CODE=otp.at(clock.now()))
    creds = json.loads(out)["Credentials"]
    assert creds["AccessKeyId"].startswith("ASIA")
    # the same code twice: refused
    with pytest.raises(AssertionError, match="AccessDenied"):
        await bash(env, session, work, key, CODE=otp.at(clock.now()))
