"""Tokens carry ``iat`` / ``nbf`` to the millisecond (``tokens.issue_time``): relying parties that
verify them offline with the JWKS (PyJWT, joserfc) accept them, with no leeway, and tokens issued
before, with a whole-second ``iat``, still verify and are still revoked as before."""

from __future__ import annotations

import math
import time
import warnings
from typing import Any

import aiohttp
import jwt
import pytest
from joserfc import jwt as jose_jwt
from joserfc.errors import SecurityWarning
from joserfc.jwk import KeySet

from broker.clock import FrozenClock
from broker.domain import tokens
from tests.conftest import RunningBroker
from tests.forward_auth.conftest import VIEWER, BrokerStarter, session_token
from tests.forward_auth.test_auth_endpoint import APP, ask, cookie, nginx


@pytest.fixture
def clock() -> FrozenClock:
    """Just past (relying parties read the real clock), and not on a whole millisecond."""
    return FrozenClock(math.floor(time.time()) - 5 + 0.1234)


@pytest.fixture
async def b(start_broker: BrokerStarter, clock: FrozenClock) -> RunningBroker:
    return await start_broker(access={"viewer": VIEWER}, clock=clock)


async def _jwks(b: RunningBroker) -> dict[str, Any]:
    async with aiohttp.ClientSession() as s, s.get(b.url + "/.well-known/jwks.json") as r:
        doc: dict[str, Any] = await r.json()
        return doc


def _payload_text(token: str) -> str:
    return jwt.utils.base64url_decode(token.split(".")[1]).decode()


async def test_pyjwt_and_joserfc_accept_a_fresh_token_with_a_millisecond_iat(
    b: RunningBroker, clock: FrozenClock
) -> None:
    start = clock.now()
    session = await session_token(b, "viewer")
    status, headers, _ = await ask(b, nginx(APP + "/x", **cookie(session)))
    assert status == 200
    assertion = headers["X-Auth-Request-Assertion"]
    jwks = await _jwks(b)

    kid = jwt.get_unverified_header(assertion)["kid"]
    key = next(k for k in jwt.PyJWKSet.from_dict(jwks).keys if k.key_id == kid)
    for token, audience in ((assertion, APP), (session, b.url)):
        claims = jwt.decode(
            token,
            key,
            algorithms=["EdDSA"],
            audience=audience,
            issuer=b.url,
            leeway=0,
            options={"require": ["exp", "iat", "nbf"]},
        )
        assert claims["iat"] == claims["nbf"] == tokens.issue_time(start)
        assert f'"iat":{int(start)}.123,' in _payload_text(token)  # a JSON number, 3 decimals
        assert isinstance(claims["exp"], int)

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SecurityWarning)  # EdDSA, deprecated by RFC 9864
            decoded = jose_jwt.decode(token, KeySet.import_key_set(jwks), algorithms=["EdDSA"])  # type: ignore[arg-type]
        registry = jose_jwt.JWTClaimsRegistry(
            leeway=0, iss={"essential": True, "value": b.url}, iat={"essential": True}
        )
        registry.validate(decoded.claims)  # iat, nbf, exp against the real clock
        assert decoded.claims == claims


async def test_a_token_with_a_whole_second_iat_still_verifies_and_is_still_revoked(
    b: RunningBroker, clock: FrozenClock
) -> None:
    """Tokens in flight when the broker is upgraded carry an integer ``iat``."""
    start = clock.now()
    fresh = await session_token(b, "viewer")
    claims = jwt.decode(fresh, options={"verify_signature": False})
    claims["iat"] = claims["nbf"] = int(claims["iat"])
    old = b.broker.keyring.sign(claims, typ=tokens.SESSION_TYP)
    assert f'"iat":{int(start)},' in _payload_text(old)
    status, _, _ = await ask(b, nginx(APP + "/x", **cookie(old)))
    assert status == 200
    clock.advance(0.1)  # a revocation in the same second voids it ...
    await b.broker.offboarding.revoke_role_sessions("viewer", actor="test")
    status, _, _ = await ask(b, nginx(APP + "/x", **cookie(old)))
    assert status == 401
    clock.advance(0.1)  # ... and spares what is issued after it
    status, _, _ = await ask(b, nginx(APP + "/x", **cookie(await session_token(b, "viewer"))))
    assert status == 200
