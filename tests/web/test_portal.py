"""``/session`` as a portal (issue 14): switch role without signing out, and take a role's
command line credentials in the browser. Attacks first; a real sign-in through a fake
provider, the credentials used with boto3 against the broker."""

from __future__ import annotations

import asyncio
import html
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from botocore.exceptions import ClientError
from pytest_aiohttp import AiohttpServer

from broker.clock import FrozenClock
from broker.config import load_settings
from broker.web.app import create_app
from tests.conftest import RunningBroker, trust, write_config
from tests.support.fake_idp import FakeIdP
from tests.support.login_driver import HtmlForm, parse_forms
from tests.support.oidc_server import free_port
from tests.web.test_cli_auth import Env, store_url, sts  # noqa: F401 (store_url: a fixture)

ROLES = {
    "dev": trust("fake", {"StringEquals": {"fake:sub": "user-1"}}),
    "qa": trust("fake", {"StringEquals": {"fake:sub": "user-1"}}),
    "ops": trust("fake", {"StringEquals": {"fake:sub": "someone-else"}}),
}


@pytest.fixture
async def env(tmp_path: Path, aiohttp_server: AiohttpServer, store_url: str) -> AsyncIterator[Env]:  # noqa: F811
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
    """A browser signed in as user-1 (who may take dev and qa), holding dev."""
    env.idp.id_token_claims.update(sub="user-1", email="user-1@example.com")
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        async with s.get(f"{env.url}/login/fake?role=dev") as r:
            assert r.status == 200, await r.text()
            assert str(r.url).endswith("/session")
        yield s


async def session(env: Env, s: aiohttp.ClientSession) -> dict[str, object]:
    async with s.get(f"{env.url}/session", headers={"Accept": "application/json"}) as r:
        assert r.status == 200, await r.text()
        data: dict[str, object] = await r.json()
        return data


async def portal_form(env: Env, s: aiohttp.ClientSession, action: str) -> HtmlForm:
    async with s.get(f"{env.url}/session") as r:
        assert r.status == 200
        return next(f for f in parse_forms(await r.text()) if f.action.startswith(action))


def csrf_of(form: HtmlForm) -> str:
    return dict(form.fields)["csrf"]


async def post(
    env: Env, s: aiohttp.ClientSession, path: str, data: dict[str, str]
) -> tuple[int, str]:
    headers = {"Origin": env.url}
    async with s.post(f"{env.url}{path}", data=data, headers=headers) as r:
        return r.status, await r.text()


def exports(page: str, role: str) -> dict[str, str]:
    m = re.search(rf'<pre class="copyable" id="exports-{role}">(.*?)</pre>', page, re.S)
    assert m is not None, page
    lines = html.unescape(m.group(1)).splitlines()
    return dict(line.removeprefix("export ").split("=", 1) for line in lines)


def as_process(e: dict[str, str]) -> dict[str, str]:
    return {
        "AccessKeyId": e["AWS_ACCESS_KEY_ID"],
        "SecretAccessKey": e["AWS_SECRET_ACCESS_KEY"],
        "SessionToken": e["AWS_SESSION_TOKEN"],
    }


# --- attacks ---------------------------------------------------------------------------------


@pytest.mark.parametrize("csrf", ["", "forged"])
async def test_a_switch_without_the_csrf_token_is_refused_and_audited(
    env: Env, browser: aiohttp.ClientSession, csrf: str
) -> None:
    before = await session(env, browser)
    status, _ = await post(env, browser, "/session/role", {"csrf": csrf, "role": "qa"})
    assert status == 403
    assert await session(env, browser) == before
    refused = [e for e in await env.audit("role.choose") if e.outcome == "failure"]
    assert refused
    assert refused[0].reason.startswith("csrf")


@pytest.mark.parametrize("role", ["ops", "nonexistent", ""])
async def test_a_switch_to_a_role_not_allowed_is_refused_and_audited(
    env: Env, browser: aiohttp.ClientSession, role: str
) -> None:
    before = await session(env, browser)
    form = await portal_form(env, browser, "/session/role")
    status, _ = await post(env, browser, "/session/role", {"csrf": csrf_of(form), "role": role})
    assert status in (400, 403)
    assert await session(env, browser) == before  # the same session, the same role
    reasons = [e.reason for e in await env.audit("role.choose") if e.outcome != "success"]
    assert reasons[0] == (f"role_not_allowed:{role}" if role else "role_missing")


async def test_credentials_without_the_csrf_token_are_refused_and_audited(
    env: Env, browser: aiohttp.ClientSession
) -> None:
    status, text = await post(env, browser, "/session/credentials", {"csrf": "x", "role": "dev"})
    assert status == 403
    assert "AWS_SECRET_ACCESS_KEY" not in text
    refused = [e for e in await env.audit("cli.credentials") if e.outcome == "failure"]
    assert refused
    assert refused[0].reason.startswith("csrf")


async def test_credentials_for_a_role_not_allowed_are_refused(
    env: Env, browser: aiohttp.ClientSession
) -> None:
    form = await portal_form(env, browser, "/session/credentials")
    status, text = await post(
        env, browser, "/session/credentials", {"csrf": csrf_of(form), "role": "ops"}
    )
    assert status == 403
    assert "AWS_SECRET_ACCESS_KEY=" not in text
    async with browser.get(f"{env.url}/session") as r:  # never shown on a GET
        assert "AWS_SECRET_ACCESS_KEY=" not in await r.text()


async def test_without_a_session_nothing_is_switched_or_minted(env: Env) -> None:
    async with aiohttp.ClientSession() as s:
        for path in ("/session/role", "/session/credentials"):
            status, _ = await post(env, s, path, {"csrf": "x", "role": "dev"})
            assert status == 401


# --- the portal ------------------------------------------------------------------------------


async def test_the_portal_lists_the_roles_and_the_json_keeps_its_fields(
    env: Env, browser: aiohttp.ClientSession
) -> None:
    data = await session(env, browser)
    assert data["role_name"] == "dev"
    assert data["subject"] == "user-1"
    roles = data["roles"]
    assert isinstance(roles, list)
    assert [r["name"] for r in roles] == ["dev", "qa"]
    async with browser.get(f"{env.url}/session") as r:
        page = await r.text()
        assert r.headers["Cache-Control"] == "no-store"
    assert 'id="switch-qa"' in page
    assert 'id="switch-dev"' not in page
    assert 'id="portal-role-ops"' not in page
    assert f"credential_process = broker credentials --role qa --url {env.url}" in page
    assert f"broker login --url {env.url}" in page


async def test_switch_takes_the_other_role_without_signing_out(
    env: Env, browser: aiohttp.ClientSession
) -> None:
    before = await session(env, browser)
    form = await portal_form(env, browser, "/session/role")
    status, _ = await post(env, browser, "/session/role", {"csrf": csrf_of(form), "role": "qa"})
    assert status == 200
    after = await session(env, browser)
    assert after["role_name"] == "qa"
    assert after["subject"] == "user-1"
    assert after["session_id"] != before["session_id"]  # a new session: no fixation
    assert after["expires_at"] <= before["expires_at"]  # type: ignore[operator]
    chosen = [e for e in await env.audit("role.choose") if e.outcome == "success"]
    assert chosen[0].details["role"].endswith(":role/qa")
    # the session it replaces has ended
    old = await env.broker.broker.store.get_session(str(before["session_id"]))
    assert old is not None
    assert old.revoked_at is not None


async def test_credentials_work_and_end_with_the_browser_session(
    env: Env, browser: aiohttp.ClientSession
) -> None:
    form = await portal_form(env, browser, "/session/credentials")
    async with browser.post(
        f"{env.url}/session/credentials",
        data={"csrf": csrf_of(form), "role": "qa"},
        headers={"Origin": env.url},
    ) as r:
        page = await r.text()
        assert r.status == 200, page
        assert r.headers["Cache-Control"] == "no-store"
    assert [a.outcome for a in await env.audit("cli.credentials")] == ["success"]
    e = exports(page, "qa")
    assert e["AWS_DEFAULT_REGION"] == "us-east-1"
    assert 'id="credentials-expire"' in page
    assert '<details id="cli-qa" open>' in page
    creds = as_process(e)
    me = await asyncio.to_thread(sts(env.url, creds).get_caller_identity)
    assert me["Arn"].startswith("arn:broker:sts::000000000000:assumed-role/qa/")
    ctx = (await session(env, browser))["session_id"]
    claims = env.broker.broker.sessions.keyring.verify(
        creds["SessionToken"], typ="broker-access+jwt", audience=env.url
    )
    assert claims["origin_sid"] == ctx
    # signing out ends them
    async with browser.get(f"{env.url}/session") as r:
        logout = next(f for f in parse_forms(await r.text()) if f.action == "/logout")
    assert (await post(env, browser, "/logout", {"csrf": csrf_of(logout)}))[0] == 200
    await env.advance(1)
    with pytest.raises(ClientError):
        await asyncio.to_thread(sts(env.url, creds).get_caller_identity)


async def test_logout_without_portal_credentials_records_no_origin_revocation(
    env: Env, browser: aiohttp.ClientSession
) -> None:
    """What services derived from a console session outlives its plain logout (see
    ``test_backchannel_logout``): only a session that handed out portal credentials ends them."""
    async with browser.get(f"{env.url}/session") as r:
        logout = next(f for f in parse_forms(await r.text()) if f.action == "/logout")
    assert (await post(env, browser, "/logout", {"csrf": csrf_of(logout)}))[0] == 200
    kinds = [r.kind for r in await env.broker.broker.store.revocations_since(0)]
    assert "origin" not in kinds


async def test_switching_role_ends_the_credentials_taken_before(
    env: Env, browser: aiohttp.ClientSession
) -> None:
    form = await portal_form(env, browser, "/session/credentials")
    status, page = await post(
        env, browser, "/session/credentials", {"csrf": csrf_of(form), "role": "dev"}
    )
    assert status == 200
    creds = as_process(exports(page, "dev"))
    form = await portal_form(env, browser, "/session/role")
    assert (await post(env, browser, "/session/role", {"csrf": csrf_of(form), "role": "qa"}))[
        0
    ] == 200
    await env.advance(1)
    with pytest.raises(ClientError):
        await asyncio.to_thread(sts(env.url, creds).get_caller_identity)
