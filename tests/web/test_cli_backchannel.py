"""A CLI session is a session of the person's provider session: the provider's back-channel
logout (``sid``) ends it, and the role credentials taken with it, like the browser's."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from botocore.exceptions import ClientError
from yarl import URL

from broker.service import provider_logouts
from tests.support.cli_oauth import Pkce, authorize_url, redeem, role_credentials, token_request
from tests.web.test_backchannel_logout import SID, Env, logout_token, post, sign_in
from tests.web.test_backchannel_logout import env as env  # the fixture, shared
from tests.web.test_cli_auth import LOOPBACK, approve, sts


async def test_back_channel_logout_ends_the_cli_session(env: Env) -> None:
    browser_token = await sign_in(env)
    jar = aiohttp.CookieJar(unsafe=True)
    jar.update_cookies({"broker_session": browser_token}, URL(env.url))
    async with aiohttp.ClientSession(cookie_jar=jar) as browser:
        pkce = Pkce.new()
        q = await approve(env, browser, authorize_url(env.url, LOOPBACK, pkce, "s"))
    status, tokens = await redeem(env.url, q["code"][0], LOOPBACK, pkce.verifier)
    assert status == 200, tokens
    status, creds = await role_credentials(env.url, tokens["access_token"], {"role": "fake-user"})
    assert status == 200, creds

    assert (await post(env, {"logout_token": logout_token(env)}))[0] == 200

    status, body = await token_request(
        env.url, grant_type="refresh_token", refresh_token=tokens["refresh_token"]
    )
    assert (status, body["error"]) == (400, "invalid_grant")
    status, body = await role_credentials(env.url, tokens["access_token"], {"role": "fake-user"})
    assert (status, body["error"]) == (401, "invalid_token")
    with pytest.raises(ClientError):
        await asyncio.to_thread(sts(env.url, creds).get_caller_identity)


async def test_a_cli_login_approved_by_a_session_whose_provider_session_ended_is_refused(
    env: Env,
) -> None:
    """The race: the logout token's tombstone is in the store, its revocation of the approving
    session not yet (the backchannel handler writes the tombstone first). Redeeming the code
    then opens no CLI session."""
    browser_token = await sign_in(env)
    jar = aiohttp.CookieJar(unsafe=True)
    jar.update_cookies({"broker_session": browser_token}, URL(env.url))
    async with aiohttp.ClientSession(cookie_jar=jar) as browser:
        pkce = Pkce.new()
        q = await approve(env, browser, authorize_url(env.url, LOOPBACK, pkce, "s"))
    store = env.broker.broker.store
    now = env.clock.now()
    await provider_logouts.remember(store, "fake", sid=SID, subject="user-1", now=now, lifetime=600)

    status, body = await redeem(env.url, q["code"][0], LOOPBACK, pkce.verifier)

    assert (status, body["error"]) == (400, "invalid_grant")
    [event] = await store.list_audit(action="cli.token.authorization_code")
    assert (event.outcome, event.reason) == ("failure", "approving_provider_session_ended")
    user = await store.find_user("fake", "user-1")
    assert user is not None
    sessions = await store.list_user_sessions(user.id, now=now)
    assert [s.id.startswith("cli-") for s in sessions] == [False]  # only the browser's
