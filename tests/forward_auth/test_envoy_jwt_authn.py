"""docs/envoy.md's ``jwt_authn`` configuration against a running broker's tokens.

Envoy is not packaged for this platform, so its ``jwt_authn`` checks are re-stated here as Envoy
implements them (``source/common/jwt``: ``jwt.cc`` parses, ``verify.cc`` checks): the ``alg``
must be one Envoy implements; ``kid`` a string; ``iat``/``nbf``/``exp`` numbers read as whole
seconds (rounded down); the provider's ``issuer`` equal to ``iss``; one of its ``audiences`` in
``aud``; ``now + skew >= nbf`` and ``now <= exp + skew``; and the signature valid under the JWKS
key with that ``kid``. The JWKS is fetched from the document's URI (its host swapped for the
test broker's)."""

from __future__ import annotations

import base64
import json
import re
import time
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import jwt
import pytest
import yaml

from broker.clock import FrozenClock
from broker.domain import tokens
from broker.keyring import JWKS_MAX_AGE, PUBLISH_AHEAD
from tests.conftest import RunningBroker
from tests.forward_auth.conftest import VIEWER, BrokerStarter, session_token
from tests.support.doc_snippets import ROOT

ENVOY_ALGS = {"ES256", "ES384", "ES512", "HS256", "HS384", "HS512", "RS256", "RS384", "RS512"}
ENVOY_ALGS |= {"PS256", "PS384", "PS512", "EdDSA"}
DOC_ISSUER = "https://broker.example.com"


def doc_yaml(marker: str) -> Any:
    text = (ROOT / "docs" / "envoy.md").read_text(encoding="utf-8")
    (block,) = [b for b in re.findall(r"```yaml\n(.*?)```", text, re.S) if marker in b]
    return yaml.safe_load(block)


def jwt_authn() -> dict[str, Any]:
    (flt,) = doc_yaml("envoy.filters.http.jwt_authn")
    assert flt["name"] == "envoy.filters.http.jwt_authn"
    config: dict[str, Any] = flt["typed_config"]
    return config


def seconds(duration: str) -> float:
    assert duration.endswith("s"), duration
    return float(duration[:-1])


def envoy_accepts(token: str, provider: dict[str, Any], jwks: dict[str, Any], now: float) -> str:
    """ "ok", or why Envoy's jwt_authn refuses ``token`` under ``provider``."""

    def part(i: int) -> Any:
        raw = token.split(".")[i]
        return json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))

    header, payload = part(0), part(1)
    if header.get("alg") not in ENVOY_ALGS:
        return "JwtHeaderNotImplementedAlg"
    if not isinstance(header.get("kid", ""), str):
        return "JwtHeaderBadKid"
    times = {k: int(payload[k]) for k in ("iat", "nbf", "exp") if k in payload}
    if payload.get("iss") != provider["issuer"]:
        return "JwtUnknownIssuer"
    aud = payload.get("aud", [])
    if not set([aud] if isinstance(aud, str) else aud) & set(provider["audiences"]):
        return "JwtAudienceNotAllowed"
    skew = provider.get("clock_skew_seconds", 60)
    if int(now) + skew < times.get("nbf", 0):
        return "JwtNotYetValid"
    if times.get("exp") and int(now) > times["exp"] + skew:
        return "JwtExpired"
    keys = [k for k in jwks["keys"] if k.get("kid") == header.get("kid")]
    if not keys:
        return "JwksKidAlgMismatch"
    try:
        jwt.decode(
            token,
            jwt.PyJWK.from_dict(keys[0]).key,
            algorithms=[header["alg"]],
            options={"verify_aud": False, "verify_iss": False, "verify_exp": False},
            leeway=skew + 1,
        )
    except jwt.InvalidSignatureError:
        return "JwtVerificationFail"
    return "ok"


def test_the_documented_configuration_matches_the_broker() -> None:
    config = jwt_authn()
    provider = config["providers"]["broker"]
    assert provider["issuer"] == DOC_ISSUER
    assert provider["audiences"] == [DOC_ISSUER]  # session and access tokens carry aud = iss
    jwks = provider["remote_jwks"]
    assert urlsplit(jwks["http_uri"]["uri"]).path == "/.well-known/jwks.json"
    # A rotated key is published PUBLISH_AHEAD before it signs: Envoy must refresh within that.
    assert seconds(jwks["cache_duration"]) <= JWKS_MAX_AGE < PUBLISH_AHEAD
    assert provider["from_headers"] == [{"name": "authorization", "value_prefix": "Bearer "}]
    assert provider["from_cookies"] == ["__Host-broker_session"]
    assert provider["forward"] is False
    claims = {c["claim_name"] for c in provider["claim_to_headers"]}
    assert claims <= {tokens.CLAIM_PROVIDER, tokens.CLAIM_SUBJECT, tokens.CLAIM_EMAIL}.union(
        {tokens.CLAIM_ROLE, tokens.CLAIM_SID}
    )
    # Every header Envoy sets from a claim is stripped from what the client sent first.
    filters = doc_yaml("envoy.filters.http.header_mutation")["http_filters"]
    (mutation,) = [f for f in filters if f["name"] == "envoy.filters.http.header_mutation"]
    removed = {m["remove"] for m in mutation["typed_config"]["mutations"]["request_mutations"]}
    assert {c["header_name"] for c in provider["claim_to_headers"]} <= removed
    (rule,) = config["rules"]
    assert rule["requires"] == {"provider_name": "broker"}
    routes = doc_yaml("ExtAuthzPerRoute")["routes"]
    off = routes[0]
    assert off["match"] == rule["match"]
    assert off["typed_per_filter_config"]["envoy.filters.http.ext_authz"]["disabled"] is True


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(time.time())


@pytest.fixture
async def b(start_broker: BrokerStarter, clock: FrozenClock) -> RunningBroker:
    return await start_broker(access={"viewer": VIEWER}, clock=clock)


async def fetch_jwks(b: RunningBroker, provider: dict[str, Any]) -> dict[str, Any]:
    """The JWKS from the documented URI's path, on the test broker."""
    path = urlsplit(provider["remote_jwks"]["http_uri"]["uri"]).path
    async with aiohttp.ClientSession() as s, s.get(b.url + path) as r:
        assert r.status == 200
        cache = r.headers["Cache-Control"]
        assert f"max-age={JWKS_MAX_AGE}" in cache
        jwks: dict[str, Any] = await r.json()
    return jwks


def for_broker(b: RunningBroker) -> dict[str, Any]:
    """The documented provider with the test broker's public URL as issuer and audience."""
    provider = dict(jwt_authn()["providers"]["broker"])
    issuer = b.settings.server.public_url
    provider["issuer"], provider["audiences"] = issuer, [issuer]
    return provider


async def test_session_tokens_pass_and_others_do_not(b: RunningBroker, clock: FrozenClock) -> None:
    provider = for_broker(b)
    jwks = await fetch_jwks(b, provider)
    token = await session_token(b, "viewer")
    assert envoy_accepts(token, provider, jwks, clock.now()) == "ok"
    claims = jwt.decode(token, options={"verify_signature": False})
    for mapping in provider["claim_to_headers"]:
        assert isinstance(claims[mapping["claim_name"]], str)  # a header value, not absent

    # The assertion an app gets: signed by the same key, but for the app's origin.
    assertion = b.broker.keyring.sign(
        {**claims, "aud": "https://app.example.com"}, typ=tokens.ASSERTION_TYP
    )
    assert envoy_accepts(assertion, provider, jwks, clock.now()) == "JwtAudienceNotAllowed"
    # Another broker's tokens: another issuer.
    other = dict(provider, issuer="https://other.example.com")
    assert envoy_accepts(token, other, jwks, clock.now()) == "JwtUnknownIssuer"
    # Past its exp by more than the skew.
    skew = provider["clock_skew_seconds"]
    assert envoy_accepts(token, provider, jwks, claims["exp"] + skew) == "ok"
    assert envoy_accepts(token, provider, jwks, claims["exp"] + skew + 1) == "JwtExpired"


async def test_forged_tokens_are_refused(b: RunningBroker, clock: FrozenClock) -> None:
    provider = for_broker(b)
    jwks = await fetch_jwks(b, provider)
    token = await session_token(b, "viewer")
    head, body, sig = token.split(".")
    claims = jwt.decode(token, options={"verify_signature": False})
    elevated = dict(claims, role=claims["role"].replace("viewer", "admin"))
    forged_body = base64.urlsafe_b64encode(json.dumps(elevated).encode()).rstrip(b"=").decode()
    forged = f"{head}.{forged_body}.{sig}"
    assert envoy_accepts(forged, provider, jwks, clock.now()) == "JwtVerificationFail"
    none = base64.urlsafe_b64encode(b'{"alg":"none"}').rstrip(b"=").decode()
    assert envoy_accepts(f"{none}.{body}.", provider, jwks, clock.now()) == (
        "JwtHeaderNotImplementedAlg"
    )
    unknown = base64.urlsafe_b64encode(b'{"alg":"EdDSA","kid":"nope"}').rstrip(b"=").decode()
    assert envoy_accepts(f"{unknown}.{body}.{sig}", provider, jwks, clock.now()) == (
        "JwksKidAlgMismatch"
    )
