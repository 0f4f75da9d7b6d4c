"""Access activity from every place a credential is judged (STS, the IAM API, ``/v1/authorize``,
``/auth``), flushed to the store (SQLite and PostgreSQL), and read back through GetRole's
``RoleLastUsed`` and GenerateServiceLastAccessedDetails / GetServiceLastAccessedDetails with the
real boto3 client."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import boto3
import pytest
from aiohttp import web
from aiohttp.test_utils import BaseTestServer
from botocore.config import Config
from botocore.exceptions import ClientError
from pytest_aiohttp import AiohttpServer

from broker.clock import SystemClock
from broker.storage.base import ActivityRow, ReportJob
from tests.iam.conftest import IamEnv, allow, call, error_code, iam_roles, policy
from tests.sts.conftest import ACCOUNT, RoleSpec, _provider, aws_env, start_broker
from tests.support.fake_idp import FakeIdP
from tests.support.postgres import fresh_schema

APP = "https://app.example.com"
ADMIN = f"arn:broker:iam::{ACCOUNT}:role/admin"
TARGET_TRUST = policy(
    {"Effect": "Allow", "Principal": {"AWS": ADMIN}, "Action": ["sts:AssumeRole", "sts:TagSession"]}
)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def store_url(request: pytest.FixtureRequest) -> AsyncIterator[str | None]:
    """The broker's own SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield None
        return
    async with fresh_schema("broker_activity") as url:
        yield url


@pytest.fixture
async def env(
    store_url: str | None,
    tmp_path: Path,
    aiohttp_server: AiohttpServer,
    runners: list[web.AppRunner],
    monkeypatch: pytest.MonkeyPatch,
) -> IamEnv:
    for k, v in aws_env(tmp_path).items():
        monkeypatch.setenv(k, v)
    idp = FakeIdP(clock=SystemClock())
    server: BaseTestServer = await aiohttp_server(idp.app)
    idp.bind(server)
    b = await start_broker(
        tmp_path / "b",
        roles={**iam_roles(), "target": RoleSpec(TARGET_TRUST, (policy(allow("s3:GetObject")),))},
        providers=_provider("fake", idp.issuer, idp.client_id),
        runners=runners,
        trusted_proxies=("127.0.0.1/32",),
        store_url=store_url,
    )
    return IamEnv(b, idp, tmp_path)


async def activity(env: IamEnv, principal: str) -> set[tuple[str, str]]:
    broker = env.broker.broker
    await broker.forward_auth.flush()
    await broker.flush_activity()
    rows: list[ActivityRow] = await broker.store.activity_page(
        principal, since=0, after=("", ""), limit=1000
    )
    return {(r.action, r.resource) for r in rows}


async def test_activity_is_recorded_everywhere_and_last_accessed_reads_it(env: IamEnv) -> None:
    admin, reader = env.arn("role", "admin"), env.arn("role", "reader")
    creds = await env.credentials("admin")  # AssumeRoleWithWebIdentity, for provider "fake"
    iam = await env.client("admin")
    await call(iam, "list_users")
    sts = boto3.client(
        "sts",
        endpoint_url=env.url,
        region_name="us-east-1",
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
        config=Config(retries={"max_attempts": 1}),
    )
    with pytest.raises(ClientError):  # reader's trust admits only sub "reader": refused
        await asyncio.to_thread(sts.assume_role, RoleArn=reader, RoleSessionName="xx")
    target = env.arn("role", "target")
    await asyncio.to_thread(sts.assume_role, RoleArn=target, RoleSessionName="chained")
    bearer = {"Authorization": f"Bearer {creds['SessionToken']}"}
    async with aiohttp.ClientSession() as s:
        body = {"action": "http:GET", "resource": f"{APP}/api"}
        async with s.post(f"{env.url}/v1/authorize", json=body, headers=bearer) as r:
            assert (await r.json())["decision"] == "allowed"
        denied = {"action": "s3:GetObject", "resource": "arn:aws:s3:::b/k"}
        async with s.post(f"{env.url}/v1/authorize", json=denied, headers=bearer) as r:
            assert (await r.json())["decision"] == "implicitDeny"
        for _ in range(3):
            headers = {**bearer, "X-Original-Method": "POST", "X-Original-URL": f"{APP}/save"}
            async with s.get(f"{env.url}/auth", headers=headers) as r:
                assert r.status == 200

    assert await activity(env, admin) == {
        ("iam:ListUsers", "*"),
        ("sts:AssumeRole", target),
        ("http:GET", f"{APP}/api"),
        ("http:POST", f"{APP}/save"),
    }  # the refused AssumeRole and the denied question are not activity
    assert await activity(env, env.arn("oidc-provider", "fake")) == {
        ("sts:AssumeRoleWithWebIdentity", admin)
    }
    store = env.broker.broker.store
    rows = await store.activity_page(admin, since=0, after=("http:POST", ""), limit=5)
    assert rows[0].count == 3  # three /auth allows, one row
    role = (await call(iam, "get_role", RoleName="admin"))["Role"]
    last = max(
        r.last_at for r in await store.activity_page(admin, since=0, after=("", ""), limit=9)
    )
    assert role["RoleLastUsed"]["LastUsedDate"].timestamp() == pytest.approx(last, abs=1)
    assert "RoleLastUsed" not in (await call(iam, "get_role", RoleName="nobody"))["Role"]

    job = await call(iam, "generate_service_last_accessed_details", Arn=admin)
    out = await call(iam, "get_service_last_accessed_details", JobId=job["JobId"])
    assert out["JobStatus"] == "COMPLETED"
    services = {s["ServiceNamespace"]: s for s in out["ServicesLastAccessed"]}
    assert set(services) == {"iam", "sts", "http"}  # admin's policy: iam:*, sts:*, http:*
    assert services["iam"]["LastAuthenticatedEntity"] == admin
    assert services["iam"]["TotalAuthenticatedEntities"] == 1
    assert "LastAuthenticated" in services["http"]
    assert services["sts"]["LastAuthenticatedEntity"] == admin
    job = await call(iam, "generate_service_last_accessed_details", Arn=target)
    out = await call(iam, "get_service_last_accessed_details", JobId=job["JobId"])
    (s3,) = out["ServicesLastAccessed"]  # target's policy: s3:GetObject, never used
    assert s3["ServiceNamespace"] == "s3"
    assert "LastAuthenticated" not in s3
    assert s3["TotalAuthenticatedEntities"] == 0

    # reader may not generate (iam:Generate... is not Get*/List*), may not read a bad job
    reader_iam = await env.client("reader")
    with pytest.raises(ClientError) as e:
        await call(reader_iam, "generate_service_last_accessed_details", Arn=admin)
    assert error_code(e.value) == "AccessDenied"
    with pytest.raises(ClientError) as e:
        await call(reader_iam, "get_service_last_accessed_details", JobId=str(uuid.uuid4()))
    assert error_code(e.value) == "NoSuchEntity"
    with pytest.raises(ClientError) as e:
        await call(iam, "generate_service_last_accessed_details", Arn="arn:aws:iam::1:role/x")
    assert error_code(e.value) == "InvalidInput"
    other = "arn:broker:iam::999999999999:role/admin"  # another account's
    with pytest.raises(ClientError) as e:
        await call(iam, "generate_service_last_accessed_details", Arn=other)
    assert error_code(e.value) == "NoSuchEntity"
    with pytest.raises(ClientError) as e:
        await call(iam, "generate_service_last_accessed_details", Arn=env.arn("role", "ghost"))
    assert error_code(e.value) == "NoSuchEntity"
    # another kind of report is not readable as a last-accessed job
    other_job = ReportJob(str(uuid.uuid4()), "credential_report", "", "COMPLETED", 1.0, 1.0, b"x")
    await store.put_report_job(other_job)
    with pytest.raises(ClientError) as e:
        await call(iam, "get_service_last_accessed_details", JobId=other_job.job_id)
    assert error_code(e.value) == "NoSuchEntity"
