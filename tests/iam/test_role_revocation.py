"""Revoking a role's sessions as the IAM console does ("Revoke active sessions": the inline
policy ``AWSRevokeOlderSessions`` denying everything to tokens issued before now), and a role
created through the API being usable on a second instance: two brokers on one PostgreSQL, a
role created on A is assumed on B and used at B's ``/auth``; revoking its sessions on A makes
the next ``/auth`` on B a 401 within the revocation poll (contract C4: 2 s)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpServer

from broker.clock import SystemClock
from broker.service.role_admin import REVOKE_POLICY_NAME, revoke_older_sessions_time
from tests.conftest import RunningBroker
from tests.iam.conftest import IamEnv, allow, call, iam_client, iam_roles, policy, sts_client
from tests.sts.conftest import _provider, aws_env, start_broker, web_trust
from tests.support.fake_idp import FakeIdP
from tests.support.postgres import fresh_schema

T = "2026-12-04T17:00:00Z"
T_EPOCH = datetime(2026, 12, 4, 17, 0, tzinfo=UTC).timestamp()
APP = "https://app.example.com/"
WAIT = 15.0  # a bound on "eventually" for setup steps, not a timing assertion
CONTRACT = 2.0  # C4: a revocation takes effect on every instance within 2 s
SLACK = 1.0  # request latency on a loaded two-core test machine


def console_policy(when: str = T, **changes: Any) -> dict[str, Any]:
    """What the IAM console's "Revoke active sessions" puts on the role."""
    statement: dict[str, Any] = {
        "Effect": "Deny",
        "Action": ["*"],
        "Resource": ["*"],
        "Condition": {"DateLessThan": {"aws:TokenIssueTime": when}},
    }
    statement.update(changes)
    return {"Version": "2012-10-17", "Statement": [statement]}


@pytest.mark.parametrize(
    ("name", "document", "expected"),
    [
        (REVOKE_POLICY_NAME, console_policy(), T_EPOCH),
        (REVOKE_POLICY_NAME, console_policy(Action="*", Resource="*"), T_EPOCH),
        (
            REVOKE_POLICY_NAME,
            console_policy(Condition={"DateLessThan": {"broker:tokenissuetime": [T]}}),
            T_EPOCH,
        ),
        (REVOKE_POLICY_NAME, console_policy(str(int(T_EPOCH))), T_EPOCH),
        ("SomethingElse", console_policy(), None),
        (REVOKE_POLICY_NAME, console_policy(Effect="Allow"), None),
        (REVOKE_POLICY_NAME, console_policy(Action="s3:*"), None),
        (REVOKE_POLICY_NAME, console_policy(Resource="arn:aws:s3:::b/*"), None),
        (
            REVOKE_POLICY_NAME,
            console_policy(
                Condition={
                    "DateLessThan": {"aws:TokenIssueTime": T},
                    "IpAddress": {"aws:SourceIp": "10.0.0.0/8"},
                }
            ),
            None,
        ),
        (
            REVOKE_POLICY_NAME,
            console_policy(Condition={"DateLessThan": {"aws:CurrentTime": T}}),
            None,
        ),
        (REVOKE_POLICY_NAME, console_policy("not a date"), None),
        (REVOKE_POLICY_NAME, console_policy(NotAction="s3:*"), None),
        (REVOKE_POLICY_NAME, {"Statement": "nonsense"}, None),
    ],
    ids=[
        "console",
        "scalar-star",
        "broker-alias-list",
        "epoch",
        "other-name",
        "allow",
        "narrower-action",
        "narrower-resource",
        "extra-condition",
        "other-key",
        "bad-date",
        "not-action",
        "nonsense",
    ],
)
def test_which_policies_revoke_every_older_session(
    name: str, document: dict[str, Any], expected: float | None
) -> None:
    assert revoke_older_sessions_time(name, document) == expected


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def trust_for(sub: str) -> dict[str, Any]:
    return web_trust("fake", {"StringEquals": {"fake:sub": sub}})


async def assume(url: str, idp: FakeIdP, role: str, sub: str) -> str:
    out = await call(
        sts_client(url),
        "assume_role_with_web_identity",
        RoleArn=f"arn:broker:iam::000000000000:role/{role}",
        RoleSessionName=sub,
        WebIdentityToken=idp.mint({"sub": sub}),
    )
    token: str = out["Credentials"]["SessionToken"]
    return token


async def authorize(url: str, token: str) -> tuple[int, str]:
    body = {"action": "http:GET", "resource": APP + "x"}
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        aiohttp.ClientSession() as s,
        s.post(f"{url}/v1/authorize", json=body, headers=headers) as r,
    ):
        out = await r.json()
        return r.status, str(out.get("decision", ""))


async def auth(b: RunningBroker, token: str) -> int:
    """``/auth`` as nginx asks it, with the STS SessionToken as a bearer credential."""
    headers = {
        "X-Original-Method": "GET",
        "X-Original-URL": APP + "x",
        "Authorization": f"Bearer {token}",
    }
    async with aiohttp.ClientSession() as s, s.get(f"{b.url}/auth", headers=headers) as r:
        return r.status


async def within(seconds: float, check: Callable[[], Awaitable[bool]], what: str) -> float:
    start = time.monotonic()
    while not await check():
        assert time.monotonic() - start < seconds, f"not within {seconds} s: {what}"
        await asyncio.sleep(0.05)
    return time.monotonic() - start


async def grant_app(iam: Any, role: str) -> None:
    """An inline policy allowing the app (``PutRolePolicy``)."""
    await call(
        iam,
        "put_role_policy",
        RoleName=role,
        PolicyName="app",
        PolicyDocument=json.dumps(policy(allow("http:GET", APP + "*"))),
    )


async def revoke_as_console(iam: Any, role: str) -> None:
    """What the IAM console's "Revoke active sessions" does: ``PutRolePolicy``."""
    document = console_policy(now_iso())
    await call(
        iam,
        "put_role_policy",
        RoleName=role,
        PolicyName=REVOKE_POLICY_NAME,
        PolicyDocument=json.dumps(document),
    )


async def deny_older_by_policy_only(b: RunningBroker, role: str) -> None:
    """The same inline policy stored without the revocation (the generic mechanism alone: an
    inline deny that the policy engine evaluates), as the root through the service."""
    document = console_policy(now_iso())
    await b.broker.iam.put_inline_policy("role", role, REVOKE_POLICY_NAME, document, actor="root")
    await b.broker.iam_api.changed()


async def test_console_revocation_denies_by_policy_and_revokes(iam_env: IamEnv) -> None:
    b = iam_env.broker
    iam = await iam_env.client("admin")
    trust = json.dumps(trust_for("ci-bot"))
    await call(iam, "create_role", RoleName="deploy", AssumeRolePolicyDocument=trust)
    await grant_app(iam, "deploy")
    token = await assume(iam_env.url, iam_env.idp, "deploy", "ci-bot")
    assert await authorize(iam_env.url, token) == (200, "allowed")
    await asyncio.sleep(1.1)  # the console's time has whole seconds

    # the policy alone (the generic mechanism): every older token is denied by it
    await deny_older_by_policy_only(b, "deploy")
    assert await authorize(iam_env.url, token) == (200, "explicitDeny")
    assert not await b.broker.store.list_audit(action="role.revoke_sessions")
    # PutRolePolicy of it also records the revocation: the token is not valid at all
    await revoke_as_console(iam, "deploy")
    status, _ = await authorize(iam_env.url, token)
    assert status == 401
    events = await b.broker.store.list_audit(action="role.revoke_sessions")
    assert events[0].outcome == "success"
    assert events[0].principal.endswith("assumed-role/admin/admin")
    assert events[0].details["note"] == REVOKE_POLICY_NAME

    await asyncio.sleep(1.1)
    fresh = await assume(iam_env.url, iam_env.idp, "deploy", "ci-bot")
    assert await authorize(iam_env.url, fresh) == (200, "allowed")  # issued after: fine


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    async with fresh_schema("broker_iamroles") as url:
        yield url


@pytest.mark.postgres
async def test_api_role_on_a_second_instance_and_its_revocation_within_2s(
    pg_url: str,
    tmp_path: Path,
    aiohttp_server: AiohttpServer,
    runners: list[web.AppRunner],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for k, v in aws_env(tmp_path).items():
        monkeypatch.setenv(k, v)
    idp = FakeIdP(clock=SystemClock())
    idp.bind(await aiohttp_server(idp.app))
    brokers: list[RunningBroker] = []
    for name in ("a", "b"):  # one broker behind two addresses: A's URL is the issuer
        brokers.append(
            await start_broker(
                tmp_path / name,
                roles=iam_roles(),
                providers=_provider("fake", idp.issuer, idp.client_id),
                runners=runners,
                store_url=pg_url,
                trusted_proxies=("127.0.0.1/32",),
                public_url=brokers[0].url if brokers else None,
            )
        )
    a, b = brokers
    env_a = IamEnv(a, idp, tmp_path)
    admin = iam_client(a.url, await env_a.credentials("admin"))
    trust = json.dumps(trust_for("ci-bot"))
    await call(admin, "create_role", RoleName="deploy", AssumeRolePolicyDocument=trust)
    await grant_app(admin, "deploy")

    # B: the role is assumable, and allowed at /auth, once B has polled
    tokens: list[str] = []

    async def assumed_on_b() -> bool:
        try:
            tokens.append(await assume(b.url, idp, "deploy", "ci-bot"))
        except Exception:
            return False
        return True

    took = await within(WAIT, assumed_on_b, "B issues credentials for the new role")
    assert took < CONTRACT + SLACK, took
    token = tokens[-1]
    await within(CONTRACT + SLACK, lambda: ok(b, token), "B allows the new role at /auth")
    assert await auth(a, token) == 200

    await asyncio.sleep(1.1)  # the console's time has whole seconds
    await revoke_as_console(admin, "deploy")
    assert await auth(a, token) == 401  # here at once
    took = await within(CONTRACT + SLACK, lambda: refused(b, token), "B refuses the token")
    assert took <= CONTRACT + SLACK, took

    # sessions issued after the revocation work on both
    await asyncio.sleep(1.1)
    fresh = await assume(b.url, idp, "deploy", "ci-bot")
    assert await auth(b, fresh) == 200
    assert await auth(a, fresh) == 200


async def ok(b: RunningBroker, token: str) -> bool:
    return await auth(b, token) == 200


async def refused(b: RunningBroker, token: str) -> bool:
    return await auth(b, token) == 401


async def test_revoke_sessions_with_the_aws_cli(iam_env: IamEnv) -> None:
    iam = await iam_env.client("admin")
    trust = json.dumps(trust_for("ci-bot"))
    await call(iam, "create_role", RoleName="deploy", AssumeRolePolicyDocument=trust)
    await grant_app(iam, "deploy")
    token = await assume(iam_env.url, iam_env.idp, "deploy", "ci-bot")
    assert await authorize(iam_env.url, token) == (200, "allowed")
    await asyncio.sleep(1.1)
    creds = await iam_env.credentials("admin")
    code, _, err = await iam_env.aws(
        creds,
        "iam",
        "put-role-policy",
        "--role-name",
        "deploy",
        "--policy-name",
        REVOKE_POLICY_NAME,
        "--policy-document",
        json.dumps(console_policy(now_iso())),
    )
    assert code == 0, err
    status, _ = await authorize(iam_env.url, token)
    assert status == 401
