"""Role assumption tests: a broker configured with the real OIDC providers (or the fake one), roles
for web identity and chaining, and helpers to get real ID tokens and to call the STS API."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import time
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import parse_qs, quote_plus, urlencode, urlsplit

import aiohttp
import pytest
from aiohttp import web
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from pytest_aiohttp import AiohttpServer

from broker.clock import Clock, FrozenClock
from broker.config import load_settings
from broker.web.app import create_app
from tests.conftest import ALLOW_ALL, RunningBroker, write_config
from tests.support.fake_idp import FakeIdP
from tests.support.login_driver import follow_login
from tests.support.oidc_server import OidcServer, free_port

ACCOUNT = "000000000000"
NS = "{https://sts.amazonaws.com/doc/2011-06-15/}"


def arn(role: str) -> str:
    return f"arn:broker:iam::{ACCOUNT}:role/{role}"


def web_trust(provider: str, condition: dict[str, Any], *, tag: bool = True) -> dict[str, Any]:
    actions = ["sts:AssumeRoleWithWebIdentity", "sts:SetSourceIdentity"]
    actions += ["sts:TagSession"] if tag else []
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Federated": provider},
                "Action": actions,
                "Condition": condition,
            }
        ],
    }


def chain_trust(*roles: str, condition: dict[str, Any] | None = None) -> dict[str, Any]:
    st: dict[str, Any] = {
        "Effect": "Allow",
        "Principal": {"AWS": [arn(r) for r in roles]},
        "Action": ["sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity"],
    }
    if condition:
        st["Condition"] = condition
    return {"Version": "2012-10-17", "Statement": [st]}


@dataclass
class RoleSpec:
    trust: dict[str, Any]
    policies: tuple[dict[str, Any], ...] = (ALLOW_ALL,)
    max_session_duration: str | None = None


def sts_roles(provider: str = "corp") -> dict[str, RoleSpec]:
    """ci: corp alice or bob (aud broker); deploy: chained from ci; short: 15-minute sessions;
    reader: may only read (s3:Get*); guarded: needs ExternalId; nobody: trusts no one here."""
    aud = {"StringEquals": {f"{provider}:aud": "broker" if provider == "corp" else "broker-test"}}
    subs = {f"{provider}:sub": ["alice", "bob", "user-1"]}
    return {
        "ci": RoleSpec(web_trust(provider, {**aud, "ForAnyValue:StringEquals": subs})),
        "deploy": RoleSpec(chain_trust("ci", "reader")),
        "deploy2": RoleSpec(chain_trust("deploy")),
        "short": RoleSpec(
            web_trust(provider, {"StringEquals": {f"{provider}:sub": "alice"}}),
            max_session_duration="15m",
        ),
        "reader": RoleSpec(
            web_trust(provider, {"StringEquals": {f"{provider}:sub": ["alice", "user-1"]}}),
            policies=(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {"Effect": "Allow", "Action": "s3:Get*", "Resource": "*"},
                        {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"},
                    ],
                },
            ),
        ),
        "guarded": RoleSpec(
            chain_trust("ci", condition={"StringEquals": {"sts:ExternalId": "ext-123"}})
        ),
        "nobody": RoleSpec(web_trust(provider, {"StringEquals": {f"{provider}:sub": "nobody"}})),
    }


def role_tables(directory: Path, roles: dict[str, RoleSpec]) -> str:
    directory.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []
    for name, spec in roles.items():
        (directory / f"{name}-trust.json").write_text(json.dumps(spec.trust))
        files = []
        for i, doc in enumerate(spec.policies):
            (directory / f"{name}-access-{i}.json").write_text(json.dumps(doc))
            files.append(f'"{name}-access-{i}.json"')
        lines += [
            f"[roles.{name}]",
            f'trust_policy = "{name}-trust.json"',
            f"policies = [{', '.join(files)}]",
        ]
        if spec.max_session_duration:
            lines.append(f'max_session_duration = "{spec.max_session_duration}"')
    return "\n".join(lines) + "\n"


async def start_broker(
    directory: Path,
    *,
    oidc: OidcServer | None = None,
    roles: dict[str, RoleSpec],
    providers: str = "",
    clock: Clock | None = None,
    runners: list[web.AppRunner],
    store_url: str | None = None,
    trusted_proxies: tuple[str, ...] = (),
    public_url: str | None = None,
) -> RunningBroker:
    """``store_url``: another store than the directory's SQLite file (several brokers on one
    PostgreSQL, sharing one ``public_url``, the issuer); ``trusted_proxies``: peers whose
    forwarded headers ``/auth`` reads."""
    port = free_port()
    extra = providers + role_tables(directory, roles)
    extra += '[policies.ReadOnly]\ndocument = "readonly.json"\n'
    (directory / "readonly.json").write_text(
        json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "s3:Get*", "Resource": "*"}],
            }
        )
    )
    path = write_config(
        directory,
        port=port,
        oidc=oidc,
        roles={},
        extra=extra,
        store_url=store_url,
        public_url=public_url,
    )
    if trusted_proxies:
        line = f"trusted_proxies = {json.dumps(list(trusted_proxies))}\n[store]"
        path.write_text(path.read_text().replace("[store]", line, 1))
    settings = load_settings(path)
    app = create_app(settings, clock=clock)
    runner = web.AppRunner(app)
    await runner.setup()
    runners.append(runner)
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return RunningBroker(f"http://127.0.0.1:{port}", settings, app, runner)


@pytest.fixture
async def runners() -> AsyncIterator[list[web.AppRunner]]:
    started: list[web.AppRunner] = []
    yield started
    for r in reversed(started):
        await r.cleanup()


@pytest.fixture
async def broker(
    tmp_path: Path, oidc_server: OidcServer, runners: list[web.AppRunner]
) -> RunningBroker:
    """A broker whose providers are the real corp and partner, with ``sts_roles()``."""
    return await start_broker(tmp_path / "b", oidc=oidc_server, roles=sts_roles(), runners=runners)


@pytest.fixture
def frozen() -> FrozenClock:
    return FrozenClock(float(int(time.time())))


# --- real ID tokens from the real provider ------------------------------------------------------


async def real_id_token(oidc: OidcServer, provider: str, username: str) -> str:
    """Run the authorization-code flow against the real provider as ``username`` and redeem the
    code: the ID token it issues to the client ``broker`` (aud = ``broker``)."""
    issuer = oidc.issuers[provider]
    redirect_uri = f"http://127.0.0.1:{free_port()}/callback/{provider}"
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        async with s.get(issuer + "/.well-known/openid-configuration") as r:
            doc = await r.json()
        verifier = secrets.token_urlsafe(48)
        challenge = (
            base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
            .rstrip(b"=")
            .decode()
        )
        params = {
            "response_type": "code",
            "client_id": oidc.client_id,
            "redirect_uri": redirect_uri,
            "scope": "openid email profile",
            "state": secrets.token_urlsafe(8),
            "nonce": secrets.token_urlsafe(8),
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        result = await follow_login(
            s,
            f"{doc['authorization_endpoint']}?{urlencode(params)}",
            username=username,
            password=oidc.accounts[username],
            provider_origins=[issuer],
            stop_at_rp=True,
        )
        assert result.left_provider, result.text
        code = parse_qs(urlsplit(result.url).query)["code"][0]
        pair = f"{quote_plus(oidc.client_id)}:{quote_plus(oidc.client_secret)}"
        async with s.post(
            doc["token_endpoint"],
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect_uri,
                "code_verifier": verifier,
            },
            headers={"Authorization": "Basic " + base64.b64encode(pair.encode()).decode()},
        ) as r:
            body = await r.json()
            assert r.status == 200, body
    token: str = body["id_token"]
    return token


# --- the AWS side ---------------------------------------------------------------------------------


def aws_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """An environment for the AWS CLI/SDK that reads no user config and no instance metadata."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k not in ("HOME",)}
    home = tmp_path / "aws-home"
    home.mkdir(exist_ok=True)
    env.update(
        {
            "HOME": str(home),
            "AWS_CONFIG_FILE": str(home / "config-none"),
            "AWS_SHARED_CREDENTIALS_FILE": str(home / "credentials-none"),
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            "AWS_MAX_ATTEMPTS": "1",
            "AWS_RETRY_MODE": "standard",
        }
    )
    env.update(extra)
    return env


async def sts_post(
    url: str, params: dict[str, str], headers: dict[str, str] | None = None
) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as s,
        s.post(url + "/", data=params, headers=headers or {}) as r,
    ):
        return r.status, await r.text()


# --- a broker with fake providers, on a frozen clock ---------------------------------------------


@dataclass
class Env:
    broker: RunningBroker
    idp: FakeIdP
    other: FakeIdP
    down_issuer: str
    clock: FrozenClock

    @property
    def url(self) -> str:
        return self.broker.url


def _provider(name: str, issuer: str, client_id: str) -> str:
    return f'[providers.{name}]\nissuer = "{issuer}"\nclient_id = "{client_id}"\n'


@pytest.fixture
async def env(
    tmp_path: Path,
    aiohttp_server: AiohttpServer,
    frozen: FrozenClock,
    runners: list[web.AppRunner],
) -> Env:
    idp = FakeIdP(clock=frozen)
    idp.bind(await aiohttp_server(idp.app))
    other = FakeIdP(clock=frozen)
    other.bind(await aiohttp_server(other.app))
    down = f"http://127.0.0.1:{free_port()}"
    providers = (
        _provider("fake", idp.issuer, idp.client_id)
        + _provider("other", other.issuer, other.client_id)
        + _provider("down", down, "broker-test")
        + "timeout = 2\n"
    )
    b = await start_broker(
        tmp_path / "b", roles=sts_roles("fake"), providers=providers, clock=frozen, runners=runners
    )
    return Env(b, idp, other, down, frozen)


@dataclass
class Reply:
    status: int
    code: str
    message: str
    type: str
    request_id: str
    root: ET.Element


def parse(status: int, text: str) -> Reply:
    root = ET.fromstring(text)
    if root.tag == f"{NS}ErrorResponse":
        err = root.find(f"{NS}Error")
        assert err is not None
        return Reply(
            status,
            err.findtext(f"{NS}Code") or "",
            err.findtext(f"{NS}Message") or "",
            err.findtext(f"{NS}Type") or "",
            root.findtext(f"{NS}RequestId") or "",
            root,
        )
    rid = root.findtext(f"{NS}ResponseMetadata/{NS}RequestId") or ""
    return Reply(status, "", "", "", rid, root)


async def post(env: Env, params: dict[str, str], headers: dict[str, str] | None = None) -> Reply:
    async with (
        aiohttp.ClientSession() as s,
        s.post(env.url + "/", data=params, headers=headers or {}) as r,
    ):
        assert r.headers["Content-Type"].startswith("text/xml")
        reply = parse(r.status, await r.text())
        assert r.headers["x-amzn-RequestId"] == reply.request_id
        return reply


async def post_raw(env: Env, body: bytes, headers: dict[str, str]) -> Reply:
    async with aiohttp.ClientSession() as s, s.post(env.url + "/", data=body, headers=headers) as r:
        return parse(r.status, await r.text())


def web_identity(token: str, role: str = "ci", **extra: str) -> dict[str, str]:
    return {
        "Action": "AssumeRoleWithWebIdentity",
        "Version": "2011-06-15",
        "RoleArn": arn(role),
        "RoleSessionName": "build-42",
        "WebIdentityToken": token,
        **extra,
    }


def creds_of(reply: Reply) -> tuple[str, str, str]:
    c = reply.root.find(f".//{NS}Credentials")
    assert c is not None, ET.tostring(reply.root)
    return (
        c.findtext(f"{NS}AccessKeyId") or "",
        c.findtext(f"{NS}SecretAccessKey") or "",
        c.findtext(f"{NS}SessionToken") or "",
    )


def sign(
    env: Env,
    params: dict[str, str],
    creds: tuple[str, str, str],
    *,
    when: float | None = None,
    region: str = "us-east-1",
    service: str = "sts",
) -> tuple[bytes, dict[str, str]]:
    """A request signed by botocore's own SigV4 signer, at the broker's (frozen) time."""
    req = AWSRequest(
        method="POST",
        url=env.url + "/",
        data=urlencode(params),
        headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
    )
    moment = datetime.fromtimestamp(env.clock.now() if when is None else when, UTC)
    with mock.patch("botocore.auth.get_current_datetime", return_value=moment):
        SigV4Auth(Credentials(*creds), service, region).add_auth(req)
    body = req.body if isinstance(req.body, bytes) else str(req.body).encode()
    return body, dict(req.headers.items())


CALLER = {"Action": "GetCallerIdentity", "Version": "2011-06-15"}


async def issue(env: Env, role: str = "ci", **claims: Any) -> tuple[str, str, str]:
    reply = await post(env, web_identity(env.idp.mint({"sub": "user-1", **claims}), role))
    assert reply.status == 200, reply
    return creds_of(reply)


async def successes(env: Env) -> int:
    await env.broker.broker.auditor.flush()  # STS events are batched
    events = await env.broker.broker.store.list_audit(limit=1000)
    return sum(1 for e in events if e.outcome == "success" and e.action.startswith("sts."))


async def last_failure(env: Env) -> str:
    await env.broker.broker.auditor.flush()
    events = await env.broker.broker.store.list_audit(limit=50)
    failures = sorted(
        (e for e in events if e.outcome == "failure"), key=lambda e: e.id or 0, reverse=True
    )
    assert failures
    return str(failures[0].reason)
