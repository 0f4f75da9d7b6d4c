"""AssumeRoleWithWebIdentity: a token's claims and session tags cannot forge the broker's
global condition keys (issue 11, 0b).

The provider signs whatever claims it likes: ``MultiFactorAuthPresent``, ``aws:SourceIp``, a
tag named ``MultiFactorAuthPresent``. None of them may satisfy a trust policy that requires
MFA (``aws:MultiFactorAuthPresent``) or a network (``aws:SourceIp``), and none may reach a
permission policy's global keys through ``PrincipalTag/*``. The broker runs for real (HTTP,
its store, a provider that signs real tokens); only the provider's claims are the attacker's.
A second broker is configured as if the config check had been bypassed (its provider renamed
``aws``/``broker`` after loading), to show the claims-to-keys code holds on its own.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpServer

from broker.clock import FrozenClock
from broker.config import Settings, load_settings
from broker.web.app import create_app
from tests.conftest import RunningBroker
from tests.sts.conftest import (
    RoleSpec,
    creds_of,
    last_failure,
    parse,
    role_tables,
    web_identity,
)
from tests.support.fake_idp import FakeIdP
from tests.support.oidc_server import free_port

PROVIDERS = ["fake", "aws", "broker"]

MFA_ONLY = {"Bool": {"aws:MultiFactorAuthPresent": "true"}}
OFFICE_ONLY = {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}
TAGS = "https://aws.amazon.com/tags"

MFA_READER = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": "s3:GetObject",
            "Resource": "*",
            "Condition": {"Bool": {"aws:MultiFactorAuthPresent": "true"}},
        }
    ],
}


def _trust(condition: dict[str, Any]) -> dict[str, Any]:
    """Provider ``fake``'s user-1, under ``condition`` (global keys only)."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Federated": "fake"},
                "Action": ["sts:AssumeRoleWithWebIdentity", "sts:TagSession"],
                "Condition": {**condition, "StringEquals": {"fake:sub": "user-1"}},
            }
        ],
    }


def _trust_without_sub(condition: dict[str, Any]) -> dict[str, Any]:
    """For a provider renamed into a reserved namespace, which yields no claim keys at all."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Federated": PROVIDERS},
                "Action": ["sts:AssumeRoleWithWebIdentity", "sts:TagSession"],
                "Condition": condition,
            }
        ],
    }


def _settings(directory: Path, idp: FakeIdP, port: int, rename_to: str | None) -> Settings:
    """A broker trusting ``idp`` as provider ``fake``; ``rename_to`` renames that provider
    after the config check, as a bug or another code path might."""
    directory.mkdir(parents=True, exist_ok=True)
    trust = _trust if rename_to is None else _trust_without_sub
    roles = {
        "mfa": RoleSpec(trust(MFA_ONLY)),
        "office": RoleSpec(trust(OFFICE_ONLY)),
        "tagged": RoleSpec(_trust({}), policies=(MFA_READER,)),
    }
    text = "\n".join(
        [
            "[server]",
            f'listen = "127.0.0.1:{port}"',
            f'public_url = "http://127.0.0.1:{port}"',
            "[store]",
            'url = "sqlite:///broker.db"',
            "[keys]",
            'kek = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY="',
            "[providers.fake]",
            f'issuer = "{idp.issuer}"',
            f'client_id = "{idp.client_id}"',
            role_tables(directory, roles),
        ]
    )
    (directory / "broker.toml").write_text(text)
    settings = load_settings(directory / "broker.toml")
    if rename_to is not None:
        provider = dataclasses.replace(settings.providers["fake"], name=rename_to)
        settings = dataclasses.replace(settings, providers={rename_to: provider})
    return settings


async def _start(
    directory: Path,
    idp: FakeIdP,
    clock: FrozenClock,
    started: list[web.AppRunner],
    *,
    rename_to: str | None = None,
) -> RunningBroker:
    port = free_port()
    settings = _settings(directory, idp, port, rename_to)
    runner = web.AppRunner(create_app(settings, clock=clock))
    await runner.setup()
    started.append(runner)
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return RunningBroker(f"http://127.0.0.1:{port}", settings, runner.app, runner)


async def _assume(url: str, token: str, role: str) -> Any:
    async with aiohttp.ClientSession() as s, s.post(url + "/", data=web_identity(token, role)) as r:
        return parse(r.status, await r.text())


@pytest.fixture
async def idp(aiohttp_server: AiohttpServer, frozen: FrozenClock) -> FakeIdP:
    fake = FakeIdP(clock=frozen)
    fake.bind(await aiohttp_server(fake.app))
    return fake


FORGED_CLAIMS = [
    ({"MultiFactorAuthPresent": True}, "mfa", "plain-mfa-claim"),
    ({"aws:MultiFactorAuthPresent": True}, "mfa", "aws-named-mfa-claim"),
    ({"AWS:MULTIFACTORAUTHPRESENT": "true"}, "mfa", "upper-case-mfa-claim"),
    ({"broker:MultiFactorAuthPresent": "true"}, "mfa", "broker-named-mfa-claim"),
    ({"amr": ["pwd"], TAGS: {"principal_tags": {"MultiFactorAuthPresent": ["true"]}}}, "mfa",
     "mfa-session-tag"),
    ({"aws:SourceIp": "10.1.2.3"}, "office", "aws-named-source-ip-claim"),
    ({"SourceIp": ["10.1.2.3"]}, "office", "plain-source-ip-claim"),
    ({TAGS: {"principal_tags": {"aws:SourceIp": ["10.1.2.3"]}}}, "office",
     "aws-named-session-tag"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("claims", "role"), [c[:2] for c in FORGED_CLAIMS], ids=[c[2] for c in FORGED_CLAIMS]
)
async def test_claims_cannot_forge_global_keys(
    tmp_path: Path,
    idp: FakeIdP,
    frozen: FrozenClock,
    runners: list[web.AppRunner],
    claims: dict[str, Any],
    role: str,
) -> None:
    b = await _start(tmp_path / "b", idp, frozen, runners)
    reply = await _assume(b.url, idp.mint({"sub": "user-1", **claims}), role)
    assert (reply.status, reply.code) == (403, "AccessDenied"), reply
    env = _Audit(b)
    assert (await env.last_failure()).startswith("trust_policy:")
    # The role is reachable with real MFA: what denied was the forged key, not the role.
    if role == "mfa":
        ok = await _assume(b.url, idp.mint({"sub": "user-1", "amr": ["pwd", "mfa"]}), role)
        assert ok.status == 200, ok


@pytest.mark.parametrize("name", ["aws", "broker"], ids=["aws", "broker"])
async def test_a_provider_in_a_reserved_namespace_cannot_forge_global_keys(
    tmp_path: Path, idp: FakeIdP, frozen: FrozenClock, runners: list[web.AppRunner], name: str
) -> None:
    b = await _start(tmp_path / "b", idp, frozen, runners, rename_to=name)
    forged = {"MultiFactorAuthPresent": True, "SourceIp": "10.1.2.3", "sub": "user-1"}
    for role in ("mfa", "office"):
        reply = await _assume(b.url, idp.mint(forged), role)
        assert (reply.status, reply.code) == (403, "AccessDenied"), (role, reply)
    ok = await _assume(b.url, idp.mint({"sub": "user-1", "amr": ["mfa"]}), "mfa")
    assert ok.status == 200, ok


async def test_a_session_tag_cannot_forge_global_keys_of_the_session(
    tmp_path: Path, idp: FakeIdP, frozen: FrozenClock, runners: list[web.AppRunner]
) -> None:
    """Tags become ``PrincipalTag/<key>`` of the session, never ``aws:MultiFactorAuthPresent``:
    a permission policy that needs MFA stays shut for a session whose tags claim it."""
    b = await _start(tmp_path / "b", idp, frozen, runners)
    tags = {"MultiFactorAuthPresent": ["true"], "aws:MultiFactorAuthPresent": ["true"]}
    token = idp.mint({"sub": "user-1", TAGS: {"principal_tags": tags}})
    reply = await _assume(b.url, token, "tagged")
    assert reply.status == 200, reply
    _, _, session_token = creds_of(reply)
    async with (
        aiohttp.ClientSession() as s,
        s.post(
            b.url + "/v1/authorize",
            json={"action": "s3:GetObject", "resource": "arn:aws:s3:::b/k"},
            headers={"Authorization": f"Bearer {session_token}"},
        ) as r,
    ):
        assert r.status == 200, await r.text()
        assert (await r.json())["decision"] == "implicitDeny"


class _Audit:
    """``last_failure`` of tests/sts/conftest.py for a broker started here."""

    def __init__(self, b: RunningBroker) -> None:
        self.broker = b

    async def last_failure(self) -> str:
        return await last_failure(self)  # type: ignore[arg-type]
