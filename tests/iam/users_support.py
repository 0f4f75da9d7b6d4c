"""Shared by the users, groups and tags suites: a broker with, besides ``admin``/``reader``/
``nobody``, a ``scoped`` role allowed ``iam:*`` only on user ``alice``, group ``team-a`` and
role ``tagged``, and a ``staff`` role that local users can sign in to (``/login/local``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlencode

import aiohttp
import pytest
from aiohttp import web
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from pytest_aiohttp import AiohttpServer
from yarl import URL

from broker.storage.base import AuditEvent, RoleRecord, Store
from tests.iam.conftest import IamEnv, allow, iam_roles, policy, start_iam_env
from tests.sts.conftest import ACCOUNT, RoleSpec, web_trust
from tests.support.login_driver import parse_forms

LOCAL_USERS = ["carol", "dave", "erin", "frank"]


def scoped_roles() -> dict[str, RoleSpec]:
    roles = iam_roles()
    mine = [
        f"arn:broker:iam::{ACCOUNT}:user/alice",
        f"arn:broker:iam::{ACCOUNT}:group/team-a",
        f"arn:broker:iam::{ACCOUNT}:role/tagged",
    ]
    roles["scoped"] = RoleSpec(
        web_trust("fake", {"StringEquals": {"fake:sub": "scoped"}}),
        (policy(allow("iam:*", mine)),),
    )
    local = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Federated": "local"},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {"StringEquals": {"local:sub": LOCAL_USERS}},
            }
        ],
    }
    roles["staff"] = RoleSpec(local, (policy(allow("s3:GetObject")),))
    return roles


@pytest.fixture
async def users_env(
    tmp_path: Path,
    aiohttp_server: AiohttpServer,
    runners: list[web.AppRunner],
    monkeypatch: pytest.MonkeyPatch,
) -> IamEnv:
    return await start_iam_env(tmp_path, aiohttp_server, runners, monkeypatch, scoped_roles())


def store(env: IamEnv) -> Store:
    s: Store = env.broker.broker.store
    return s


async def audit(env: IamEnv, action: str) -> list[AuditEvent]:
    await env.broker.broker.auditor.flush()
    return await store(env).list_audit(action=action, limit=100)


async def api_role(env: IamEnv, name: str) -> None:
    """A role as the roles API would store it (source ``api``)."""
    trust = web_trust("fake", {"StringEquals": {"fake:sub": name}})
    await store(env).put_role(
        RoleRecord(
            name=name,
            description="",
            trust_policy=trust,
            policies=(),
            permissions_boundary=None,
            max_session_duration=3600,
            source="api",
        )
    )


async def raw_iam(
    env: IamEnv,
    creds: Mapping[str, str],
    body: bytes | str,
    *,
    query: str = "",
    service: str = "iam",
) -> tuple[int, str]:
    """A SigV4-signed ``POST /`` (scope ``service``) with a body of our own making."""
    url = env.url + "/" + (f"?{query}" if query else "")
    req = AWSRequest(
        method="POST",
        url=url,
        data=body,
        headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
    )
    SigV4Auth(
        Credentials(creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"]),
        service,
        "us-east-1",
    ).add_auth(req)
    raw = req.body if isinstance(req.body, bytes) else str(req.body).encode()
    async with (
        aiohttp.ClientSession() as s,
        s.post(url, data=raw, headers=dict(req.headers.items())) as r,
    ):
        return r.status, await r.text()


def form(params: Mapping[str, str]) -> str:
    return urlencode({"Version": "2010-05-08", **params})


# --- browser login as a local user ----------------------------------------------------------


async def local_login(
    s: aiohttp.ClientSession, env: IamEnv, user: str, password: str
) -> tuple[int, str]:
    """Submit /login/local; (status, Location) without following redirects."""
    async with s.get(f"{env.url}/login/local") as r:
        fields = dict(parse_forms(await r.text())[0].fields)
    async with s.post(
        f"{env.url}/login/local",
        data={**fields, "username": user, "password": password},
        allow_redirects=False,
    ) as r:
        return r.status, r.headers.get("Location", "")


async def change_password(s: aiohttp.ClientSession, env: IamEnv, new: str) -> tuple[int, str]:
    async with s.get(f"{env.url}/password") as r:
        fields = dict(parse_forms(await r.text())[0].fields)
    async with s.post(
        f"{env.url}/password", data={**fields, "new_password": new, "confirm": new}
    ) as r:
        return r.status, str(r.url)


def session_cookie(s: aiohttp.ClientSession, env: IamEnv) -> str | None:
    c = s.cookie_jar.filter_cookies(URL(env.url)).get("broker_session")
    return c.value if c else None


async def session_status(s: aiohttp.ClientSession, env: IamEnv) -> int:
    async with s.get(f"{env.url}/session", headers={"Accept": "application/json"}) as r:
        return r.status


def browser() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
