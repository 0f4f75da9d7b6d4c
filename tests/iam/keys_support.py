"""Shared by the access-key suites: clients signed with an IAM user's long-lived key, a user
with a key and policies, and a bounded wait."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import boto3
from botocore.config import Config

from tests.iam.conftest import IamEnv, allow, call, policy


def key_client(url: str, service: str, key: Mapping[str, str]) -> Any:
    """A boto3 client signed with a long-lived access key (no session token), or with
    temporary credentials when ``key`` has a ``SessionToken``."""
    return boto3.client(
        service,
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id=key["AccessKeyId"],
        aws_secret_access_key=key["SecretAccessKey"],
        aws_session_token=key.get("SessionToken"),
        config=Config(retries={"max_attempts": 1, "mode": "standard"}),
    )


async def user_with_key(env: IamEnv, name: str, *statements: Mapping[str, Any]) -> dict[str, str]:
    """User ``name`` (inline policy ``main`` of ``statements`` if any) and a new access key."""
    admin = await env.client("admin")
    await call(admin, "create_user", UserName=name)
    if statements:
        await call(
            admin,
            "put_user_policy",
            UserName=name,
            PolicyName="main",
            PolicyDocument=json.dumps(policy(*statements)),
        )
    created = await call(admin, "create_access_key", UserName=name)
    key: dict[str, str] = created["AccessKey"]
    return key


EVERYTHING = allow(["iam:*", "sts:*"])


async def eventually(check: Callable[[], Awaitable[bool]], seconds: float = 2.0) -> float:
    """Seconds until ``check()`` returns True; fails after ``seconds`` (a bounded wait, not a
    timing assertion on the broker's speed beyond the contract's 2 s)."""
    start = time.monotonic()
    while True:
        if await check():
            return time.monotonic() - start
        assert time.monotonic() - start < seconds, "not in force in time"
        await asyncio.sleep(0.05)
