"""The broker as the ``broker-cli`` authorization server (issue 14): the loopback flow with PKCE,
refresh-token rotation, revocation, ``/v1/roles`` and ``/v1/credentials``. Attacks first; the
browser is a real sign-in through a fake provider, the credentials are used with boto3."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

import aiohttp
import boto3
import pytest
from aiohttp import web
from botocore.config import Config
from botocore.exceptions import ClientError
from pytest_aiohttp import AiohttpServer
from yarl import URL

from broker.clock import FrozenClock
from broker.config import load_settings
from broker.errors import StsAccessDenied
from broker.service.audit import RequestInfo
from broker.web.app import create_app
from tests.conftest import RunningBroker, trust, write_config
from tests.support.cli_oauth import (
    Pkce,
    authorize_url,
    bearer_get,
    redeem,
    role_credentials,
    token_request,
)
from tests.support.fake_idp import FakeIdP
from tests.support.login_driver import parse_forms
from tests.support.oidc_server import free_port
from tests.support.postgres import fresh_schema

ROLES = {
    "dev": trust("fake", {"StringEquals": {"fake:sub": "user-1"}}),
    "ops": trust("fake", {"StringEquals": {"fake:sub": "someone-else"}}),
    "user2": trust("fake", {"StringEquals": {"fake:sub": "user-2"}}),
}
LOOPBACK = "http://127.0.0.1:53682/callback"


@dataclass
class Env:
    broker: RunningBroker
    idp: FakeIdP
    clock: FrozenClock

    @property
    def url(self) -> str:
        return self.broker.url

    async def advance(self, seconds: float) -> None:
        """Time passes (the revocation state polls meanwhile, as it does every second)."""
        self.clock.advance(seconds)
        await self.broker.broker.revocations.poll()

    async def audit(self, action: str) -> list[Any]:
        await self.broker.broker.auditor.flush()  # refusals of the token endpoint are batched
        return list(await self.broker.broker.store.list_audit(limit=100, action=action))


@pytest.fixture(
    params=[pytest.param("sqlite"), pytest.param("postgres", marks=pytest.mark.postgres)]
)
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """Each test on SQLite and on a fresh PostgreSQL schema (single use is the store's)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'broker.db'}"
        return
    async with fresh_schema("broker_cli") as url:
        yield url


@pytest.fixture
async def env(tmp_path: Path, aiohttp_server: AiohttpServer, store_url: str) -> AsyncIterator[Env]:
    clock = FrozenClock(float(int(time.time())))
    idp = FakeIdP(clock=clock)
    idp.bind(await aiohttp_server(idp.app))
    port = free_port()
    extra = f"""
[providers.fake]
issuer = "{idp.issuer}"
client_id = "{idp.client_id}"
client_secret = "{idp.client_secret}"
"""
    path = write_config(
        tmp_path / "broker", port=port, oidc=None, roles=ROLES, extra=extra, store_url=store_url
    )
    settings = load_settings(path)
    app = create_app(settings, clock=clock)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
        yield Env(RunningBroker(f"http://127.0.0.1:{port}", settings, app, runner), idp, clock)
    finally:
        await runner.cleanup()


@pytest.fixture
async def browser(env: Env) -> AsyncIterator[aiohttp.ClientSession]:
    """A browser signed in as user-1 through the provider."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        await sign_in(env, s, "user-1")
        yield s


async def sign_in(env: Env, s: aiohttp.ClientSession, sub: str) -> None:
    env.idp.id_token_claims["sub"] = sub
    env.idp.id_token_claims["email"] = f"{sub}@example.com"
    async with s.get(f"{env.url}/login/fake?role={'dev' if sub == 'user-1' else 'user2'}") as r:
        assert r.status == 200, await r.text()
        assert str(r.url).endswith("/session")


async def confirm(s: aiohttp.ClientSession, url: str) -> dict[str, str]:
    async with s.get(url, allow_redirects=False) as r:
        assert r.status == 200, await r.text()
        forms = parse_forms(await r.text())
    return dict(forms[0].fields)


class HasUrl(Protocol):
    @property
    def url(self) -> str: ...


async def approve(
    env: HasUrl, s: aiohttp.ClientSession, url: str, decision: str = "approve"
) -> dict[str, list[str]]:
    """The confirmation page, approved: the query the loopback redirect carries."""
    fields = await confirm(s, url)
    fields["decision"] = decision
    async with s.post(f"{env.url}/oauth2/authorize", data=fields, allow_redirects=False) as r:
        assert r.status == 303, await r.text()
        location = r.headers["Location"]
    assert location.startswith(LOOPBACK + "?")
    return parse_qs(urlsplit(location).query)


async def cli_login(env: Env, s: aiohttp.ClientSession) -> dict[str, Any]:
    pkce = Pkce.new()
    q = await approve(env, s, authorize_url(env.url, LOOPBACK, pkce, "st-1"))
    status, tokens = await redeem(env.url, q["code"][0], LOOPBACK, pkce.verifier)
    assert status == 200, tokens
    return dict(tokens)


def sts(url: str, creds: dict[str, str]) -> Any:
    return boto3.client(
        "sts",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
        config=Config(retries={"max_attempts": 1, "mode": "standard"}),
    )


# --- discovery -------------------------------------------------------------------------------


async def test_discovery_names_the_cli_endpoints(env: Env) -> None:
    url = f"{env.url}/.well-known/openid-configuration"
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        doc = await r.json()
    assert doc["authorization_endpoint"] == f"{env.url}/oauth2/authorize"
    assert doc["device_authorization_endpoint"] == f"{env.url}/oauth2/device"
    assert doc["token_endpoint"] == f"{env.url}/oauth2/token"
    assert doc["revocation_endpoint"] == f"{env.url}/oauth2/revoke"
    assert doc["code_challenge_methods_supported"] == ["S256"]
    for grant in (
        "authorization_code",
        "refresh_token",
        "urn:ietf:params:oauth:grant-type:device_code",
    ):
        assert grant in doc["grant_types_supported"]


# --- the loopback flow ------------------------------------------------------------------------


async def test_the_loopback_flow_gives_role_credentials_that_boto3_uses(
    env: Env, browser: aiohttp.ClientSession
) -> None:
    pkce = Pkce.new()
    url = authorize_url(env.url, LOOPBACK, pkce, "state-xyz")
    async with browser.get(url, allow_redirects=False) as r:
        page = await r.text()
        assert r.headers["X-Frame-Options"] == "DENY"  # no clickjacking of the approval
    assert "Sign in the broker CLI on this computer as user-1@example.com?" in page
    assert "53682" in page
    q = await approve(env, browser, url)
    assert q["state"] == ["state-xyz"]  # state echoed
    status, tokens = await redeem(env.url, q["code"][0], LOOPBACK, pkce.verifier)
    assert status == 200, tokens
    assert set(tokens) == {"access_token", "token_type", "expires_in", "refresh_token", "scope"}
    assert tokens["token_type"] == "Bearer"
    assert tokens["scope"] == "openid"
    assert 0 < tokens["expires_in"] <= env.broker.settings.session.token_lifetime

    status, roles = await bearer_get(env.url, "/v1/roles", tokens["access_token"])
    assert status == 200
    assert roles == {
        "roles": [
            {
                "name": "dev",
                "arn": "arn:broker:iam::000000000000:role/dev",
                "description": "The dev role",
            }
        ]
    }
    status, creds = await role_credentials(
        env.url, tokens["access_token"], {"role": "dev", "duration_seconds": 900}
    )
    assert status == 200, creds
    assert creds["Version"] == 1
    assert creds["AccessKeyId"].startswith("ASIA")
    assert creds["Expiration"].endswith("Z")
    me = await asyncio.to_thread(sts(env.url, creds).get_caller_identity)
    assert me["Arn"].startswith("arn:broker:sts::000000000000:assumed-role/dev/")
    # the CLI session is a session of its own, of the same user
    cli = env.broker.broker.sessions.verify(tokens["access_token"])
    assert cli.session_id.startswith("cli-")
    claims = env.broker.broker.sessions.keyring.verify(
        creds["SessionToken"], typ="broker-access+jwt", audience=env.url
    )
    assert claims["origin_sid"] == cli.session_id


async def test_a_role_the_person_may_not_take_is_refused_and_audited(
    env: Env, browser: aiohttp.ClientSession
) -> None:
    tokens = await cli_login(env, browser)
    status, body = await role_credentials(env.url, tokens["access_token"], {"role": "ops"})
    assert status == 403
    assert body["error"] == "access_denied"
    assert "SessionToken" not in body
    refused = [e for e in await env.audit("cli.credentials") if e.outcome == "failure"]
    assert refused
    assert refused[0].reason.startswith("trust_policy:")
    for bad in (
        {},
        {"role": 3},
        {"role": "dev", "duration_seconds": "x"},
        {"role": "dev", "x": 1},
        {"role": "dev", "duration_seconds": 60},
        {"role": "no/such"},
        {"role": "nosuch"},
        {"role": "dev", "duration_seconds": 3600 * 13},
    ):
        status, body = await role_credentials(env.url, tokens["access_token"], bad)
        assert status in (400, 403), (bad, body)
        assert "SessionToken" not in body
    status, body = await role_credentials(env.url, "not-a-token", {"role": "dev"})
    assert (status, body["error"]) == (401, "invalid_token")
    status, body = await bearer_get(env.url, "/v1/roles", "x.y.z")
    assert (status, body["error"]) == (401, "invalid_token")


async def test_a_replayed_code_is_refused(env: Env, browser: aiohttp.ClientSession) -> None:
    pkce = Pkce.new()
    q = await approve(env, browser, authorize_url(env.url, LOOPBACK, pkce, "s"))
    assert (await redeem(env.url, q["code"][0], LOOPBACK, pkce.verifier))[0] == 200
    status, body = await redeem(env.url, q["code"][0], LOOPBACK, pkce.verifier)
    assert (status, body["error"]) == (400, "invalid_grant")
    reasons = [e.reason for e in await env.audit("cli.token.authorization_code")]
    assert "code_unknown_used_or_expired" in reasons


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"code_verifier": Pkce.new().verifier}, "code_verifier_mismatch"),
        ({"redirect_uri": "http://127.0.0.1:53683/callback"}, "redirect_uri_mismatch"),
    ],
    ids=["wrong-verifier", "other-port"],
)
async def test_a_code_with_a_wrong_verifier_or_port_is_refused_and_spent(
    env: Env, browser: aiohttp.ClientSession, change: dict[str, str], reason: str
) -> None:
    pkce = Pkce.new()
    q = await approve(env, browser, authorize_url(env.url, LOOPBACK, pkce, "s"))
    form = {"code": q["code"][0], "redirect_uri": LOOPBACK, "code_verifier": pkce.verifier}
    status, body = await token_request(
        env.url, grant_type="authorization_code", **{**form, **change}
    )
    assert (status, body["error"]) == (400, "invalid_grant")
    assert reason in [e.reason for e in await env.audit("cli.token.authorization_code")]
    # the right values afterwards find nothing: a stolen code gets one guess
    status, body = await redeem(env.url, q["code"][0], LOOPBACK, pkce.verifier)
    assert (status, body["error"]) == (400, "invalid_grant")


async def test_a_code_redeemed_by_another_client_is_refused(
    env: Env, browser: aiohttp.ClientSession
) -> None:
    pkce = Pkce.new()
    q = await approve(env, browser, authorize_url(env.url, LOOPBACK, pkce, "s"))
    status, body = await token_request(
        env.url,
        grant_type="authorization_code",
        client_id="other-app",
        code=q["code"][0],
        redirect_uri=LOOPBACK,
        code_verifier=pkce.verifier,
    )
    assert (status, body["error"]) == (401, "invalid_client")
    assert "unknown_client" in [e.reason for e in await env.audit("cli.token.authorization_code")]


async def test_a_code_expires_after_60_seconds(env: Env, browser: aiohttp.ClientSession) -> None:
    pkce = Pkce.new()
    q = await approve(env, browser, authorize_url(env.url, LOOPBACK, pkce, "s"))
    await env.advance(61)
    status, body = await redeem(env.url, q["code"][0], LOOPBACK, pkce.verifier)
    assert (status, body["error"]) == (400, "invalid_grant")


@pytest.mark.parametrize(
    "override",
    [
        {"code_challenge_method": "plain"},
        {"code_challenge_method": ""},
        {"redirect_uri": "https://evil.test/callback"},
        {"redirect_uri": "http://localhost:53682/callback"},
        {"redirect_uri": "http://127.0.0.1:53682/other"},
        {"redirect_uri": "http://127.0.0.1/callback"},
        {"redirect_uri": "http://127.0.0.1:53682/callback?x=https://evil.test"},
        {"redirect_uri": "http://evil.test@127.0.0.1:53682/callback"},
        {"redirect_uri": "http://127.0.0.1:53682@evil.test/callback"},
        {"client_id": "other-app"},
        {"response_type": "token"},
        {"code_challenge": "short"},
        {"state": ""},
    ],
)
async def test_a_bad_authorization_request_is_an_error_page_never_a_redirect(
    env: Env, browser: aiohttp.ClientSession, override: dict[str, str]
) -> None:
    url = authorize_url(env.url, LOOPBACK, Pkce.new(), "s", override)
    async with browser.get(url, allow_redirects=False) as r:
        assert r.status == 400
        assert "Location" not in r.headers
    assert any(e.outcome == "failure" for e in await env.audit("cli.authorize"))


async def test_not_signed_in_goes_to_login_and_comes_back(env: Env) -> None:
    pkce = Pkce.new()
    url = authorize_url(env.url, LOOPBACK, pkce, "back")
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        async with s.get(url, allow_redirects=False) as r:
            assert r.status == 303
            location = r.headers["Location"]
        assert location.startswith("/login?rd=")
        rd = parse_qs(urlsplit(location).query)["rd"][0]
        assert rd.startswith("/oauth2/authorize?")
        env.idp.id_token_claims["sub"] = "user-1"
        # the provider login, started with that rd, ends on the confirmation page
        async with s.get(f"{env.url}/login/fake?" + urlsplit(location).query) as r:
            assert r.status == 200
            assert "Sign in the broker CLI on this computer" in await r.text()
            back = str(r.url)
        q = await approve(env, s, back)
    assert q["state"] == ["back"]
    assert (await redeem(env.url, q["code"][0], LOOPBACK, pkce.verifier))[0] == 200


async def test_deny_redirects_with_access_denied(env: Env, browser: aiohttp.ClientSession) -> None:
    q = await approve(env, browser, authorize_url(env.url, LOOPBACK, Pkce.new(), "d"), "deny")
    assert q == {"error": ["access_denied"], "state": ["d"]}


async def test_approval_needs_the_sessions_csrf_token(
    env: Env, browser: aiohttp.ClientSession
) -> None:
    fields = await confirm(browser, authorize_url(env.url, LOOPBACK, Pkce.new(), "s"))
    for forged, headers in (
        ({**fields, "csrf": "forged", "decision": "approve"}, {}),
        ({**fields, "decision": "approve"}, {"Origin": "https://evil.test"}),
    ):
        async with browser.post(
            f"{env.url}/oauth2/authorize", data=forged, headers=headers, allow_redirects=False
        ) as r:
            assert r.status == 403
            assert "Location" not in r.headers
    assert "csrf_mismatch" in [e.reason for e in await env.audit("cli.authorize")]


# --- refresh, rotation, revocation ------------------------------------------------------------


async def test_refresh_rotates_and_a_reused_refresh_token_ends_the_cli_session(
    env: Env, browser: aiohttp.ClientSession
) -> None:
    first = await cli_login(env, browser)
    status, creds = await role_credentials(env.url, first["access_token"], {"role": "dev"})
    assert status == 200
    status, second = await token_request(
        env.url, grant_type="refresh_token", refresh_token=first["refresh_token"]
    )
    assert status == 200, second
    assert second["refresh_token"] != first["refresh_token"]
    assert (await bearer_get(env.url, "/v1/roles", second["access_token"]))[0] == 200
    # the old refresh token again: someone else holds a copy; the CLI session ends
    status, body = await token_request(
        env.url, grant_type="refresh_token", refresh_token=first["refresh_token"]
    )
    assert (status, body["error"]) == (400, "invalid_grant")
    status, body = await token_request(
        env.url, grant_type="refresh_token", refresh_token=second["refresh_token"]
    )
    assert (status, body["error"]) == (400, "invalid_grant")
    assert (await bearer_get(env.url, "/v1/roles", second["access_token"]))[0] == 401
    with pytest.raises(ClientError):  # role credentials taken with it end too
        await asyncio.to_thread(sts(env.url, creds).get_caller_identity)
    assert "refresh_token_reused" in [e.reason for e in await env.audit("cli.token.refresh_token")]
    # the browser's own session is not the CLI's: it lives on
    async with browser.get(f"{env.url}/session", headers={"Accept": "application/json"}) as r:
        assert r.status == 200


@pytest.mark.parametrize("which", ["refresh_token", "access_token"])
async def test_revocation_ends_the_cli_session_and_its_credentials(
    env: Env, browser: aiohttp.ClientSession, which: str
) -> None:
    tokens = await cli_login(env, browser)
    status, creds = await role_credentials(env.url, tokens["access_token"], {"role": "dev"})
    assert status == 200
    revoke = f"{env.url}/oauth2/revoke"
    async with aiohttp.ClientSession() as s, s.post(revoke, data={"token": tokens[which]}) as r:
        assert r.status == 200
    status, body = await token_request(
        env.url, grant_type="refresh_token", refresh_token=tokens["refresh_token"]
    )
    assert (status, body["error"]) == (400, "invalid_grant")
    status, body = await role_credentials(env.url, tokens["access_token"], {"role": "dev"})
    assert (status, body["error"]) == (401, "invalid_token")
    with pytest.raises(ClientError):
        await asyncio.to_thread(sts(env.url, creds).get_caller_identity)


@pytest.mark.parametrize("how", ["revoke-sessions", "disable"])
async def test_revoking_the_users_sessions_or_disabling_the_user_ends_the_refresh(
    env: Env, browser: aiohttp.ClientSession, how: str
) -> None:
    tokens = await cli_login(env, browser)
    status, creds = await role_credentials(env.url, tokens["access_token"], {"role": "dev"})
    assert status == 200
    user = env.broker.broker.sessions.verify(tokens["access_token"]).user_id
    offboarding = env.broker.broker.offboarding
    if how == "disable":
        await offboarding.disable_user(user, actor="test")
    else:
        await offboarding.revoke_user_sessions(user, actor="test")
    with pytest.raises(ClientError):
        await asyncio.to_thread(sts(env.url, creds).get_caller_identity)
    status, body = await role_credentials(env.url, tokens["access_token"], {"role": "dev"})
    assert (status, body["error"]) == (401, "invalid_token")
    status, body = await token_request(
        env.url, grant_type="refresh_token", refresh_token=tokens["refresh_token"]
    )
    assert (status, body["error"]) == (400, "invalid_grant")
    assert "cli_session_revoked" in [e.reason for e in await env.audit("cli.token.refresh_token")]


async def test_signing_out_in_the_browser_leaves_the_cli_session(
    env: Env, browser: aiohttp.ClientSession
) -> None:
    """``POST /logout`` ends the browser's own session only: the CLI session approved from it
    is a session of its own (docs/cli.md, "What ends a CLI session"), and lives on with the
    role credentials taken with it, until ``broker logout`` or the broker ends it."""
    tokens = await cli_login(env, browser)
    status, creds = await role_credentials(env.url, tokens["access_token"], {"role": "dev"})
    assert status == 200
    async with browser.get(f"{env.url}/logout") as r:
        fields = dict(parse_forms(await r.text())[0].fields)
    async with browser.post(f"{env.url}/logout", data=fields) as r:
        assert r.status == 200
    async with browser.get(f"{env.url}/session", headers={"Accept": "application/json"}) as r:
        assert r.status == 401  # the browser is signed out
    assert [e.outcome for e in await env.audit("logout")] == ["success"]

    assert (await bearer_get(env.url, "/v1/roles", tokens["access_token"]))[0] == 200
    who = await asyncio.to_thread(sts(env.url, creds).get_caller_identity)
    assert ":assumed-role/dev/" in who["Arn"]
    status, fresh = await token_request(
        env.url, grant_type="refresh_token", refresh_token=tokens["refresh_token"]
    )
    assert status == 200, fresh
    status, _ = await role_credentials(env.url, fresh["access_token"], {"role": "dev"})
    assert status == 200
    # and it still ends as a CLI session does (broker logout: RFC 7009)
    revoke = f"{env.url}/oauth2/revoke"
    async with (
        aiohttp.ClientSession() as s,
        s.post(revoke, data={"token": fresh["refresh_token"]}) as r,
    ):
        assert r.status == 200
    assert (await bearer_get(env.url, "/v1/roles", fresh["access_token"]))[0] == 401
    with pytest.raises(ClientError):
        await asyncio.to_thread(sts(env.url, creds).get_caller_identity)


async def test_a_cli_session_ends_when_idle_or_at_its_lifetime(
    env: Env, browser: aiohttp.ClientSession
) -> None:
    """As a browser session does ([session] idle_timeout, lifetime): a refresh keeps it in use,
    one after idle_timeout without any is refused, and none outlives the lifetime."""
    cfg = env.broker.settings.session
    idle = await cli_login(env, browser)
    await env.advance(cfg.idle_timeout + 1)
    status, body = await token_request(
        env.url, grant_type="refresh_token", refresh_token=idle["refresh_token"]
    )
    assert (status, body["error"]) == (400, "invalid_grant")
    assert "cli_session_idle" in [e.reason for e in await env.audit("cli.token.refresh_token")]

    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as again:
        await sign_in(env, again, "user-1")
        tokens = await cli_login(env, again)
    step = cfg.idle_timeout / 2
    used = 0.0
    while used + step < cfg.lifetime:  # in use all along
        await env.advance(step)
        used += step
        status, tokens = await token_request(
            env.url, grant_type="refresh_token", refresh_token=tokens["refresh_token"]
        )
        assert status == 200, (used, tokens)
    await env.advance(cfg.lifetime - used)
    status, body = await token_request(
        env.url, grant_type="refresh_token", refresh_token=tokens["refresh_token"]
    )
    assert (status, body["error"]) == (400, "invalid_grant")


async def test_a_code_approved_by_a_session_that_logged_out_is_refused(
    env: Env, browser: aiohttp.ClientSession
) -> None:
    pkce = Pkce.new()
    q = await approve(env, browser, authorize_url(env.url, LOOPBACK, pkce, "s"))
    async with browser.get(f"{env.url}/logout") as r:
        fields = dict(parse_forms(await r.text())[0].fields)
    async with browser.post(f"{env.url}/logout", data=fields) as r:
        assert r.status == 200
    status, body = await redeem(env.url, q["code"][0], LOOPBACK, pkce.verifier)
    assert (status, body["error"]) == (400, "invalid_grant")


async def test_the_portal_path_a_browser_session_takes_role_credentials(
    env: Env, browser: aiohttp.ClientSession
) -> None:
    """``/session``'s command line panel uses the same service method with the browser's own
    session as the caller: the credentials then carry that session as their origin."""
    b = env.broker.broker
    token = browser.cookie_jar.filter_cookies(URL(env.url))["broker_session"].value
    ctx = b.sessions.verify(token)
    issued = await b.cli.credentials(ctx, "dev", 900, RequestInfo(source_ip="127.0.0.1"))
    claims = b.sessions.keyring.verify(
        issued.session_token, typ="broker-access+jwt", audience=env.url
    )
    assert claims["origin_sid"] == ctx.session_id
    assert int(issued.expiration - issued.issued_at) == 900
    with pytest.raises(StsAccessDenied):
        await b.cli.credentials(ctx, "ops", None, RequestInfo(source_ip="127.0.0.1"))
