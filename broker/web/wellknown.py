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
            # the broker CLI's public client ``broker-cli`` (docs/cli.md)
            "authorization_endpoint": f"{base}/oauth2/authorize",
            "device_authorization_endpoint": f"{base}/oauth2/device",
            "token_endpoint": f"{base}/oauth2/token",
            "revocation_endpoint": f"{base}/oauth2/revoke",
            "grant_types_supported": [
                "authorization_code",
                "refresh_token",
                "urn:ietf:params:oauth:grant-type:device_code",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ],
            "response_types_supported": ["code"],
            "code_challenge_methods_supported": ["S256"],
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
