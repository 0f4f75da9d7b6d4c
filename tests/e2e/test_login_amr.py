"""A federated sign-in through the real oidc-provider whose ID token says how the person
authenticated (``amr``, RFC 8176): ``pwd`` + ``otp`` is MFA (the session carries it, with the
provider's ``auth_time``, and a role that requires ``aws:MultiFactorAuthPresent`` is offered);
``otp`` alone or ``pwd`` alone is not."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from typing import Any

import aiohttp
import pytest

from tests.conftest import BrokerFactory, trust
from tests.support.login_driver import follow_login
from tests.support.oidc_server import (
    DEFAULT_ACCOUNTS,
    OidcServer,
    default_config,
    start_oidc_server,
)

pytestmark = [pytest.mark.oidc]


def account(amr: list[str] | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "password": "a-password",
        "claims": dict(DEFAULT_ACCOUNTS["bob"]["claims"]),
    }
    if amr is not None:
        out["amr"] = amr
    return out


ACCOUNTS = {
    "two-factors": account(["pwd", "otp"]),
    "otp-only": account(["otp"]),
    "password-only": account(["pwd"]),
    "no-amr": account(None),
}
ROLES = {
    "plain": trust("corp", {"StringLike": {"corp:sub": "*"}}),
    "secure": trust(
        "corp",
        {"StringLike": {"corp:sub": "*"}, "Bool": {"aws:MultiFactorAuthPresent": "true"}},
    ),
}


@pytest.fixture(scope="module")
def amr_oidc() -> Iterator[OidcServer]:
    config = default_config(
        {"corp": ["http://127.0.0.1/callback/corp"]},
        accounts=ACCOUNTS,
        algs={"corp": "RS256"},
        loopback_any_port=True,
    )
    config["providers"][0]["openid_claims"] = ["amr", "auth_time"]  # tests/oidc/server.js
    with start_oidc_server(config) as server:
        yield server


@pytest.fixture
async def browser_session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        yield s


@pytest.mark.parametrize(
    ("user", "mfa"),
    [("two-factors", True), ("otp-only", False), ("password-only", False), ("no-amr", False)],
    ids=["pwd+otp", "otp-alone", "pwd-alone", "no-amr"],
)
async def test_amr_decides_mfa(
    broker_factory: BrokerFactory,
    amr_oidc: OidcServer,
    browser_session: aiohttp.ClientSession,
    user: str,
    mfa: bool,
) -> None:
    b = await broker_factory(oidc=amr_oidc, roles=ROLES)
    before = time.time()
    r = await follow_login(
        browser_session,
        f"{b.url}/login/corp?role={'secure' if mfa else 'plain'}",
        username=user,
        password="a-password",
        provider_origins=amr_oidc.issuers.values(),
    )
    assert r.url == f"{b.url}/session", r.text
    async with browser_session.get(
        f"{b.url}/session", headers={"Accept": "application/json"}
    ) as resp:
        s = await resp.json()
    assert s["mfa"] is mfa
    if mfa:
        assert s["role_name"] == "secure"
        at = datetime.fromisoformat(s["mfa_authenticated_at"]).timestamp()
        assert int(before) - 1 <= at <= time.time()  # the provider's auth_time
    else:
        assert s["mfa_authenticated_at"] is None
        r = await follow_login(
            browser_session,
            f"{b.url}/login/corp?role=secure",
            username=user,
            password="a-password",
            provider_origins=amr_oidc.issuers.values(),
        )
        assert r.status == 403  # the MFA-only role is not offered without MFA
