"""Login: the roles an identity may choose cannot be widened by claims that forge the broker's
global condition keys (issue 11, 0b). ``RoleCatalog.candidates`` on a real SQLite store."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from broker.clock import FrozenClock
from broker.config import load_settings
from broker.domain.claims import Identity
from broker.service.roles import RoleCatalog
from broker.storage import migrate, open_store
from tests.conftest import write_config

KELVIN = "\u212a"


def _trust(condition: dict[str, Any]) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Federated": ["aws", "broker", "corp"]},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": condition,
            }
        ],
    }


ROLES = {
    "mfa": _trust({"Bool": {"aws:MultiFactorAuthPresent": "true"}}),
    "office": _trust({"IpAddress": {"broker:SourceIp": "10.0.0.0/8"}}),
}


@pytest.fixture
async def catalog(tmp_path: Path) -> AsyncIterator[RoleCatalog]:
    path = write_config(tmp_path, port=8000, oidc=None, roles=ROLES)
    settings = load_settings(path)
    await migrate(settings.store.url)
    store = open_store(settings.store.url)
    roles = RoleCatalog(settings, store, FrozenClock(1_900_000_000.0))
    await roles.reconcile()
    yield roles
    await store.close()


FORGERIES = [
    ("aws", {"MultiFactorAuthPresent": True, "SourceIp": "10.1.2.3"}, "aws"),
    ("AWS", {"multifactorauthpresent": "true", "sourceip": "10.1.2.3"}, "aws-upper"),
    ("broker", {"MultiFactorAuthPresent": "true", "SourceIp": ["10.1.2.3"]}, "broker"),
    (f"bro{KELVIN}er", {"MultiFactorAuthPresent": "true"}, "broker-kelvin-sign"),
    ("corp", {"aws:MultiFactorAuthPresent": True, "broker:SourceIp": "10.1.2.3"},
     "claims-named-like-global-keys"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("provider", "claims"), [f[:2] for f in FORGERIES], ids=[f[2] for f in FORGERIES]
)
async def test_forged_claims_open_no_role(
    catalog: RoleCatalog, provider: str, claims: dict[str, Any]
) -> None:
    identity = Identity(provider=provider, subject="u", name="u", claims=claims, mfa=False)
    found = await catalog.candidates(identity, source_ip="127.0.0.1")
    assert found == [], json.dumps([c.role.name for c in found])


async def test_real_mfa_and_network_open_the_roles(catalog: RoleCatalog) -> None:
    identity = Identity(provider="corp", subject="u", name="u", mfa=True)
    found = await catalog.candidates(identity, source_ip="10.9.9.9")
    assert [c.role.name for c in found] == ["mfa", "office"]
