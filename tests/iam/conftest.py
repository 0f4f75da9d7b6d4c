"""IAM API tests: a broker whose role sessions are the IAM callers.

Callers get broker credentials the way a user would: AssumeRoleWithWebIdentity with an ID token
of the fake provider ``fake`` (sub = the caller's name). Roles: ``admin`` (``iam:*``, as the
bootstrap admin role), ``reader`` (``iam:Get*``/``iam:List*``), ``nobody`` (no IAM permission).
``iam_client`` is the real boto3 ``iam`` client; ``aws_iam`` runs the real AWS CLI.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from aiohttp import web
from aiohttp.test_utils import BaseTestServer
from botocore import UNSIGNED
from botocore.config import Config
from pytest_aiohttp import AiohttpServer

from broker.clock import Clock, FrozenClock, SystemClock
from tests.conftest import RunningBroker
from tests.sts.conftest import (
    ACCOUNT,
    RoleSpec,
    _provider,
    aws_env,
    start_broker,
    web_trust,
)
from tests.support.fake_idp import FakeIdP

AWS_CLI = shutil.which("aws", path=str(Path(sys.executable).parent)) or "aws"


def policy(*statements: Mapping[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": [dict(s) for s in statements]}


def allow(action: str | list[str], resource: str | list[str] = "*") -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource}


def iam_roles(provider: str = "fake") -> dict[str, RoleSpec]:
    def trust(sub: str) -> dict[str, Any]:
        return web_trust(provider, {"StringEquals": {f"{provider}:sub": sub}})

    return {
        "admin": RoleSpec(trust("admin"), (policy(allow(["iam:*", "sts:*", "http:*"])),)),
        "reader": RoleSpec(trust("reader"), (policy(allow(["iam:Get*", "iam:List*"])),)),
        "nobody": RoleSpec(trust("nobody"), (policy(allow("s3:GetObject")),)),
    }


@dataclass
class IamEnv:
    broker: RunningBroker
    idp: FakeIdP
    tmp: Path

    @property
    def url(self) -> str:
        return self.broker.url

    def arn(self, kind: str, name: str) -> str:
        return f"arn:broker:iam::{ACCOUNT}:{kind}/{name}"

    async def credentials(self, role: str, sub: str | None = None) -> dict[str, str]:
        """Broker credentials for ``role`` (as sub ``sub``, by default the role's name)."""
        token = self.idp.mint({"sub": sub or role})
        out = await asyncio.to_thread(
            sts_client(self.url).assume_role_with_web_identity,
            RoleArn=self.arn("role", role),
            RoleSessionName=sub or role,
            WebIdentityToken=token,
        )
        creds: dict[str, str] = out["Credentials"]
        return creds

    async def client(self, role: str = "admin") -> Any:
        return iam_client(self.url, await self.credentials(role))

    async def aws(self, creds: Mapping[str, str], *args: str) -> tuple[int, dict[str, Any], str]:
        """The real AWS CLI (``aws iam ...``) signed with ``creds``."""
        env = aws_env(
            self.tmp,
            AWS_ACCESS_KEY_ID=creds["AccessKeyId"],
            AWS_SECRET_ACCESS_KEY=creds["SecretAccessKey"],
            AWS_SESSION_TOKEN=creds["SessionToken"],
        )
        proc = await asyncio.create_subprocess_exec(
            AWS_CLI,
            "--endpoint-url",
            self.url,
            *args,
            "--output",
            "json",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
        text = out.decode()
        return proc.returncode or 0, json.loads(text) if text.strip() else {}, err.decode()


def sts_client(url: str) -> Any:
    """An unsigned STS client (AssumeRoleWithWebIdentity needs no credentials)."""
    return boto3.client(
        "sts",
        endpoint_url=url,
        region_name="us-east-1",
        config=Config(signature_version=UNSIGNED, retries={"max_attempts": 1}),
    )


def iam_client(url: str, creds: Mapping[str, str]) -> Any:
    return boto3.client(
        "iam",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
        config=Config(retries={"max_attempts": 1, "mode": "standard"}),
    )


def error_code(e: Any) -> str:
    code: str = e.response["Error"]["Code"]
    return code


async def call(client: Any, operation: str, **params: Any) -> Any:
    """A boto3 call off the event loop (the broker runs on it)."""
    return await asyncio.to_thread(getattr(client, operation), **params)


@pytest.fixture
async def runners() -> AsyncIterator[list[web.AppRunner]]:
    started: list[web.AppRunner] = []
    yield started
    for r in reversed(started):
        await r.cleanup()


async def start_iam_env(
    tmp_path: Path,
    aiohttp_server: AiohttpServer,
    runners: list[web.AppRunner],
    monkeypatch: pytest.MonkeyPatch,
    roles: dict[str, RoleSpec],
    clock: Clock | None = None,
) -> IamEnv:
    """A broker with ``roles`` whose provider ``fake`` is a fake IdP, for the AWS clients run
    in an environment that reads no user configuration; ``clock``: the broker's (the IdP's is
    the system clock)."""
    for k, v in aws_env(tmp_path).items():
        monkeypatch.setenv(k, v)
    idp = FakeIdP(clock=SystemClock())
    server: BaseTestServer = await aiohttp_server(idp.app)
    idp.bind(server)
    b = await start_broker(
        tmp_path / "b",
        roles=roles,
        providers=_provider("fake", idp.issuer, idp.client_id),
        runners=runners,
        clock=clock,
    )
    return IamEnv(b, idp, tmp_path)


@pytest.fixture
async def iam_env(
    tmp_path: Path,
    aiohttp_server: AiohttpServer,
    runners: list[web.AppRunner],
    monkeypatch: pytest.MonkeyPatch,
) -> IamEnv:
    return await start_iam_env(tmp_path, aiohttp_server, runners, monkeypatch, iam_roles())


@pytest.fixture
def clock() -> FrozenClock:
    """The broker's clock in tests that move time (MFA codes, MultiFactorAuthAge)."""
    return FrozenClock(time.time())


@pytest.fixture
async def clocked_iam_env(
    tmp_path: Path,
    aiohttp_server: AiohttpServer,
    runners: list[web.AppRunner],
    monkeypatch: pytest.MonkeyPatch,
    clock: FrozenClock,
) -> IamEnv:
    """``iam_env`` on ``clock``."""
    return await start_iam_env(tmp_path, aiohttp_server, runners, monkeypatch, iam_roles(), clock)


async def advance(env: IamEnv, clock: FrozenClock, seconds: float) -> None:
    """Move the broker's clock; its revocation state is current again at once (a poll)."""
    clock.advance(seconds)
    await env.broker.broker.poll_revocations()
