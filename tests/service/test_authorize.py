"""The authorizer: a role's policies, boundary and session policies, decided in memory."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from broker.clock import FrozenClock
from broker.config import load_settings
from broker.policy import parse_policy
from broker.service.authorize import Principal
from broker.service.container import Broker
from broker.storage.base import RoleRecord
from tests.conftest import E2E_ROLES, write_config

VIEWER = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Sid": "Grafana",
            "Effect": "Allow",
            "Action": "http:*",
            "Resource": "https://grafana.example.com/*",
        },
        {
            "Sid": "NoAdmin",
            "Effect": "Deny",
            "Action": "http:*",
            "Resource": "https://grafana.example.com/admin/*",
        },
        {
            "Sid": "Home",
            "Effect": "Allow",
            "Action": "http:GET",
            "Resource": "https://home.example.com/${broker:username}/*",
        },
    ],
}


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[Broker]:
    path = write_config(
        tmp_path, port=8000, oidc=None, roles={"local-admin": E2E_ROLES["local-admin"]}
    )
    async with aiohttp.ClientSession() as http:
        b = await Broker.open(load_settings(path), http=http, clock=FrozenClock(time.time()))
        now = b.clock.now()
        for name, policies in (("viewer", [VIEWER]), ("broken", [{"Statement": "nope"}])):
            await b.store.put_role(
                RoleRecord(name, "", E2E_ROLES["viewer"], policies, None, 3600, "api", now, now)
            )
        await b.authorizer.refresh()
        try:
            yield b
        finally:
            await b.close()


CASES = [
    ("allowed", "viewer", "http:GET", "https://grafana.example.com/d/1", "allowed", ["Grafana"]),
    (
        "deny-wins",
        "viewer",
        "http:GET",
        "https://grafana.example.com/admin/x",
        "explicitDeny",
        ["NoAdmin"],
    ),
    ("other-host", "viewer", "http:GET", "https://other.example.com/", "implicitDeny", []),
    ("variable", "viewer", "http:GET", "https://home.example.com/alice/x", "allowed", ["Home"]),
    (
        "variable-other-user",
        "viewer",
        "http:GET",
        "https://home.example.com/bob/x",
        "implicitDeny",
        [],
    ),
    ("unknown-role", "nope", "http:GET", "https://grafana.example.com/d/1", "implicitDeny", []),
    ("broken-role", "broken", "http:GET", "https://grafana.example.com/d/1", "implicitDeny", []),
]


@pytest.mark.parametrize(
    ("role", "action", "resource", "decision", "sids"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
async def test_decisions(
    broker: Broker, role: str, action: str, resource: str, decision: str, sids: list[str]
) -> None:
    a = broker.authorizer
    p = Principal(role_arn=a.role_arn(role), username="alice")
    d = a.decide(
        p, action=action, resource=resource, context=a.context_for(p, source_ip="10.0.0.1")
    )
    assert d.decision == decision
    assert [m.sid for m in d.matched_statements] == sids


async def test_session_policy_narrows(broker: Broker) -> None:
    a = broker.authorizer
    p = Principal(role_arn=a.role_arn("viewer"), username="alice")
    narrow = parse_policy(
        {
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": "http:GET",
                    "Resource": "https://grafana.example.com/public/*",
                }
            ]
        },
        name="session",
    )
    ctx = a.context_for(p, source_ip="10.0.0.1")
    d = a.decide(
        p,
        action="http:GET",
        resource="https://grafana.example.com/d/1",
        context=ctx,
        session_policies=[narrow],
    )
    assert d.decision == "implicitDeny"
    d = a.decide(
        p,
        action="http:GET",
        resource="https://grafana.example.com/public/x",
        context=ctx,
        session_policies=[narrow],
    )
    assert d.decision == "allowed"


async def test_role_changes_are_picked_up_on_refresh(broker: Broker) -> None:
    a = broker.authorizer
    p = Principal(role_arn=a.role_arn("viewer"))
    ctx = a.context_for(p, source_ip="")
    before = a.role(p.role_arn)
    await a.refresh()
    assert a.role(p.role_arn) is before  # unchanged roles are not recompiled
    await broker.store.delete_role("viewer")
    await a.refresh()
    d = a.decide(p, action="http:GET", resource="https://grafana.example.com/d/1", context=ctx)
    assert d.decision == "implicitDeny"
