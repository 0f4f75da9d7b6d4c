"""A new default policy version is in force on every instance: two brokers on one PostgreSQL
store; a change made through one is enforced by the other within 2 s (its IAM generation
poll), and a bounded caller's refused escalation on one leaves the other unchanged."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import BaseTestServer
from botocore.exceptions import ClientError
from pytest_aiohttp import AiohttpServer

from broker.clock import SystemClock
from broker.config import load_settings
from broker.storage.base import RoleRecord
from broker.web.app import create_app
from tests.conftest import RunningBroker, write_config
from tests.iam.conftest import IamEnv, allow, call, error_code, iam_client, iam_roles, policy
from tests.sts.conftest import _provider, aws_env, role_tables, web_trust
from tests.support.fake_idp import FakeIdP
from tests.support.oidc_server import free_port
from tests.support.postgres import fresh_schema

pytestmark = [pytest.mark.postgres]


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    async with fresh_schema("broker_iampol") as url:
        yield url


async def start_on(
    directory: Path, store_url: str, idp: FakeIdP, runners: list[web.AppRunner]
) -> RunningBroker:
    port = free_port()
    extra = _provider("fake", idp.issuer, idp.client_id) + role_tables(directory, iam_roles())
    settings = load_settings(
        write_config(directory, port=port, oidc=None, roles={}, extra=extra, store_url=store_url)
    )
    app = create_app(settings)
    runner = web.AppRunner(app)
    await runner.setup()
    runners.append(runner)
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return RunningBroker(f"http://127.0.0.1:{port}", settings, app, runner)


async def eventually(check: Any, seconds: float = 2.0) -> float:
    """Seconds until ``check()`` (a coroutine function) returns True; fails after ``seconds``."""
    start = time.monotonic()
    while True:
        if await check():
            return time.monotonic() - start
        assert time.monotonic() - start < seconds, "not in force in time"
        await asyncio.sleep(0.1)


async def test_a_new_default_version_is_in_force_on_the_other_instance(
    tmp_path: Path,
    pg_url: str,
    aiohttp_server: AiohttpServer,
    runners: list[web.AppRunner],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for k, v in aws_env(tmp_path).items():
        monkeypatch.setenv(k, v)
    idp = FakeIdP(clock=SystemClock())
    server: BaseTestServer = await aiohttp_server(idp.app)
    idp.bind(server)
    a = await start_on(tmp_path / "a", pg_url, idp, runners)
    b = await start_on(tmp_path / "b", pg_url, idp, runners)
    env_a, env_b = IamEnv(a, idp, tmp_path), IamEnv(b, idp, tmp_path)
    admin = await env_a.client("admin")
    arn = env_a.arn("policy", "T")
    await call(
        admin,
        "create_policy",
        PolicyName="T",
        PolicyDocument=json.dumps(policy(allow("iam:ListUsers"))),
    )
    now = time.time()
    trust = web_trust("fake", {"StringEquals": {"fake:sub": "tester"}})
    await a.broker.store.put_role(
        RoleRecord("tester", "", trust, [], None, 3600.0, "api", now, now)
    )
    await call(admin, "attach_role_policy", RoleName="tester", PolicyArn=arn)

    async def allowed() -> bool:
        try:
            tester = iam_client(b.url, await env_b.credentials("tester"))
        except ClientError:  # the role is not known there yet
            return False
        try:
            await call(tester, "list_users")
        except ClientError as e:
            code = error_code(e)
        else:
            return True
        assert code == "AccessDenied"
        return False

    async def denied() -> bool:
        return not await allowed()

    await eventually(allowed)
    await call(
        admin,
        "create_policy_version",
        PolicyArn=arn,
        PolicyDocument=json.dumps(policy(allow("iam:GetUser"))),
        SetAsDefault=True,
    )
    await eventually(denied)
    await call(admin, "set_default_policy_version", PolicyArn=arn, VersionId="v1")
    await eventually(allowed)
    record = await b.broker.store.get_managed_policy("T")
    assert record is not None
    assert record.default_version == "v1"
