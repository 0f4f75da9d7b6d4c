"""``POST /backchannel-logout/{provider}``: OpenID Connect Back-Channel Logout 1.0 §2.5 - §2.8.

The provider POSTs ``logout_token`` form-encoded. The answer is 200 with ``Cache-Control:
no-store`` when the logout succeeded, 400 with an OAuth 2.0 error document (``invalid_request``)
when the request or the token is invalid, 404 when the provider has no back-channel logout
configured, 5xx when the broker could not decide (store or provider JWKS unreachable; nothing
was ended and the same token may be sent again).
"""

from __future__ import annotations

from aiohttp import web

from broker.errors import BrokerError, InvalidLogoutToken
from broker.idp.id_token import MAX_TOKEN_LENGTH
from broker.web.keys import BROKER
from broker.web.oauth import NO_STORE, oauth_error
from broker.web.request_info import request_info

FORM = "application/x-www-form-urlencoded"
MAX_BODY = MAX_TOKEN_LENGTH + 1024  # the token, its name and a little more


async def _logout_token(request: web.Request) -> str:
    if request.content_type != FORM:
        raise InvalidLogoutToken("not_form_encoded")
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise InvalidLogoutToken("body_too_large")
    try:
        form = await request.post()
    except web.HTTPRequestEntityTooLarge as e:
        raise InvalidLogoutToken("body_too_large") from e
    values = form.getall("logout_token", [])
    if len(values) > 1:
        raise InvalidLogoutToken("logout_token_repeated")
    if not values or not isinstance(values[0], str) or not values[0]:
        raise InvalidLogoutToken("logout_token_missing")
    return values[0]


async def backchannel_logout(request: web.Request) -> web.Response:
    b = request.app[BROKER]
    req = request_info(request, b.settings.server.trusted_proxies)
    provider = request.match_info["provider"]
    try:
        try:
            token = await _logout_token(request)
        except BrokerError as e:
            await b.backchannel.refused(provider, e, req)
            raise
        await b.backchannel.logout(provider, token, req)
    except BrokerError as e:
        return oauth_error(e)
    return web.Response(status=200, headers=NO_STORE)
