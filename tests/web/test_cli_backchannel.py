"""A CLI session is a session of the person's provider session: the provider's back-channel
logout (``sid``) ends it, and the role credentials taken with it, like the browser's."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from botocore.exceptions import ClientError
from yarl import URL

from tests.support.cli_oauth import Pkce, authorize_url, redeem, role_credentials, token_request
from tests.web.test_backchannel_logout import Env, logout_token, post, sign_in
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
