"""The broker as a token issuer: OpenID Connect discovery metadata and the JWKS."""

from __future__ import annotations

from aiohttp import web

from broker.keyring import JWKS_MAX_AGE  # rotation publishes a key this long before it signs
from broker.web.keys import BROKER


async def openid_configuration(request: web.Request) -> web.StreamResponse:
    b = request.app[BROKER]
    base = b.settings.server.public_url
    return web.json_response(
        {
            "issuer": base,
            "jwks_uri": f"{base}/.well-known/jwks.json",
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [b.settings.keys.algorithm],
            "token_signing_alg_values_supported": [b.settings.keys.algorithm],
            "claims_supported": [
                "iss",
                "sub",
                "aud",
                "exp",
                "iat",
                "nbf",
                "jti",
                "sid",
                "role",
                "idp",
                "idp_sub",
                "email",
                "groups",
                "mfa",
                "mfa_at",
                "tags",
            ],
        },
        headers={"Cache-Control": f"public, max-age={JWKS_MAX_AGE}"},
    )


async def jwks(request: web.Request) -> web.StreamResponse:
    return web.json_response(
        request.app[BROKER].keyring.jwks(),
        headers={"Cache-Control": f"public, max-age={JWKS_MAX_AGE}"},
    )
