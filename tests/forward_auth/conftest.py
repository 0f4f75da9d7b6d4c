"""A broker with forward-auth policies, trusted proxies and public routes, and session tokens."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from broker.clock import Clock
from broker.config import load_settings
from broker.domain.claims import Identity
from tests.conftest import E2E_ROLES, RunningBroker, write_config
from tests.support.oidc_server import OidcServer, free_port


def policy(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def allow(action: str, resource: str, sid: str = "") -> dict[str, Any]:
    return {"Sid": sid, "Effect": "Allow", "Action": action, "Resource": resource}


def deny(action: str, resource: str, sid: str = "") -> dict[str, Any]:
    return {"Sid": sid, "Effect": "Deny", "Action": action, "Resource": resource}


# The example, for role `viewer`: all of one app but its admin pages, reads of another.
VIEWER = policy(
    allow("http:*", "https://app.example.com/*", "App"),
    deny("http:*", "https://app.example.com/admin/*", "NoAdmin"),
    allow("http:GET", "https://api.example.com:8443/*", "ApiReads"),
)

BrokerStarter = Callable[..., Awaitable[RunningBroker]]


@pytest.fixture
async def start_broker(tmp_path: Path) -> AsyncIterator[BrokerStarter]:
    """Start a broker whose role policies are given (``access``: role -> policy document)."""
    runners: list[web.AppRunner] = []

    async def start(
        *,
        access: dict[str, dict[str, Any]],
        oidc: OidcServer | None = None,
        trusted: tuple[str, ...] = ("127.0.0.1/32",),
        public: tuple[str, ...] = (),
        extra: str = "",
        clock: Clock | None = None,
        port: int | None = None,
        name: str = "broker",
        store_url: str | None = None,
        public_url: str | None = None,
    ) -> RunningBroker:
        port = port or free_port()
        roles = {r: E2E_ROLES.get(r, E2E_ROLES["viewer"]) for r in access}
        directory = tmp_path / name
        public_tables = "".join(f'[[proxy.public]]\nurl = "{u}"\n' for u in public)
        path = write_config(
            directory,
            port=port,
            oidc=oidc,
            roles=roles,
            extra=extra + "\n" + public_tables,
            store_url=store_url,
            public_url=public_url,
        )
        for role, doc in access.items():
            (directory / f"{role}-access.json").write_text(json.dumps(doc))
        text = path.read_text().replace(
            'allowed_redirect_domains = [".example.com"]',
            'allowed_redirect_domains = [".example.com", "127.0.0.1:*"]\n'
            f"trusted_proxies = {json.dumps(list(trusted))}",
        )
        path.write_text(text)
        settings = load_settings(path)
        from broker.web.app import create_app

        app = create_app(settings, clock=clock)
        runner = web.AppRunner(app)
        await runner.setup()
        runners.append(runner)
        await web.TCPSite(runner, "127.0.0.1", port).start()
        return RunningBroker(f"http://127.0.0.1:{port}", settings, app, runner)

    yield start
    for r in reversed(runners):
        await r.cleanup()


async def session_token(
    b: RunningBroker,
    role: str,
    *,
    provider: str = "corp",
    subject: str = "bob",
    email: str = "bob@example.com",
    groups: tuple[str, ...] = ("dev",),
    max_session_duration: int = 3600,
) -> str:
    """A session as a login would create it (the login itself is tested elsewhere)."""
    broker = b.broker
    now = broker.clock.now()
    user = await broker.store.upsert_federated_user(
        provider, subject, name=subject, email=email, groups=list(groups), now=now
    )
    identity = Identity(
        provider=provider,
        subject=subject,
        name=subject,
        email=email,
        groups=groups,
        user_id=user.id,
    )
    _, token = await broker.sessions.create(
        identity, broker.roles.arn(role), max_session_duration=max_session_duration
    )
    return str(token)
