"""Shared fixtures: the real OIDC providers (node oidc-provider 8) and a running broker."""

from __future__ import annotations

import json
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from hypothesis import settings

from broker.config import Settings, load_settings
from broker.web.app import create_app
from broker.web.keys import BROKER
from tests.support.oidc_server import OidcServer, default_config, free_port, start_oidc_server

# No timing assertions in tests: hypothesis' per-example deadline (200 ms) is one, and it fails
# at random on a loaded machine. A hang still shows, as a test that does not finish.
settings.register_profile("broker", deadline=None)
settings.load_profile("broker")


@pytest.fixture(scope="session")
def oidc_server() -> Iterator[OidcServer]:
    """corp (RS256) and partner (ES256); client ``broker`` accepts any 127.0.0.1 port."""
    config = default_config(
        {
            "corp": ["http://127.0.0.1/callback/corp"],
            "partner": ["http://127.0.0.1/callback/partner"],
        },
        loopback_any_port=True,
    )
    with start_oidc_server(config) as server:
        yield server


def trust(provider: str, condition: dict[str, Any]) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Federated": provider},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": condition,
            }
        ],
    }


ALLOW_ALL = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
}

# Roles of the end-to-end tests, by what the test accounts carry:
#   corp alice (groups admins, dev) -> admin, dev (the chooser); corp bob (dev) -> dev only;
#   partner alice (hd example.com) -> viewer; carol (hd other.test, no groups) -> none.
E2E_ROLES: dict[str, dict[str, Any]] = {
    "admin": trust("corp", {"ForAnyValue:StringEquals": {"corp:groups": "admins"}}),
    "dev": trust("corp", {"ForAnyValue:StringEquals": {"corp:groups": "dev"}}),
    "viewer": trust("partner", {"StringEquals": {"partner:hd": "example.com"}}),
    "local-admin": trust("local", {"StringEquals": {"local:sub": "admin"}}),
}


def write_config(
    directory: Path,
    *,
    port: int,
    oidc: OidcServer | None,
    store_url: str | None = None,
    roles: dict[str, dict[str, Any]] | None = None,
    extra: str = "",
    public_url: str | None = None,
) -> Path:
    """A broker.toml for tests; role documents are written as JSON files beside it."""
    directory.mkdir(parents=True, exist_ok=True)
    lines = [
        "[server]",
        f'listen = "127.0.0.1:{port}"',
        f'public_url = "{public_url or f"http://127.0.0.1:{port}"}"',
        'allowed_redirect_domains = [".example.com"]',
        "[store]",
        f'url = "{store_url or "sqlite:///broker.db"}"',
        "[keys]",
        'kek = "' + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY=" + '"',
        "[providers.local]",
        'type = "local"',
    ]
    if oidc is not None:
        for name, issuer in oidc.issuers.items():
            lines += [
                f"[providers.{name}]",
                f'issuer = "{issuer}"',
                f'client_id = "{oidc.client_id}"',
                f'client_secret = "{oidc.client_secret}"',
                'scopes = ["openid", "email", "profile"]',
            ]
    for name, doc in (roles if roles is not None else E2E_ROLES).items():
        (directory / f"{name}-trust.json").write_text(json.dumps(doc))
        (directory / f"{name}-access.json").write_text(json.dumps(ALLOW_ALL))
        lines += [
            f"[roles.{name}]",
            f'description = "The {name} role"',
            f'trust_policy = "{name}-trust.json"',
            f'policies = ["{name}-access.json"]',
        ]
    path = directory / "broker.toml"
    path.write_text("\n".join(lines) + "\n" + textwrap.dedent(extra))
    return path


@dataclass
class RunningBroker:
    url: str
    settings: Settings
    app: web.Application
    runner: web.AppRunner

    @property
    def broker(self) -> Any:
        return self.app[BROKER]


BrokerFactory = Callable[..., Awaitable[RunningBroker]]


@pytest.fixture
async def broker_factory(tmp_path: Path) -> AsyncIterator[BrokerFactory]:
    """Start real brokers (aiohttp on 127.0.0.1, a free port) from a generated config."""
    runners: list[web.AppRunner] = []

    async def start(
        *, oidc: OidcServer | None = None, name: str = "broker", **kwargs: Any
    ) -> RunningBroker:
        port = free_port()
        settings = load_settings(write_config(tmp_path / name, port=port, oidc=oidc, **kwargs))
        app = create_app(settings)
        runner = web.AppRunner(app)
        await runner.setup()
        runners.append(runner)
        await web.TCPSite(runner, "127.0.0.1", port).start()
        return RunningBroker(f"http://127.0.0.1:{port}", settings, app, runner)

    yield start
    for r in reversed(runners):
        await r.cleanup()
