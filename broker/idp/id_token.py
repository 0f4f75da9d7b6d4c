"""ID token validation, OpenID Connect Core 1.0 §3.1.3.7 (and §2 for the claims).

Split in two pure steps around the signature check, which needs the provider's keys:

1. ``parse_jws`` + ``check_header``: the compact JWS (RFC 7515 §7.1) is split and decoded
   strictly, and the header is judged before any key is looked up: ``alg`` must be in the
   allow-list (asymmetric only, intersected with discovery's
   ``id_token_signing_alg_values_supported``), key-carrying headers (``jku``, ``x5u``, ``jwk``,
   ``x5c``) are refused rather than ignored, any ``crit`` is refused (we understand no
   extension), and ``typ``, when present, must say JWT.
2. ``check_claims``, run only on a verified signature: authlib's ``CodeIDToken`` validation
   (``iss`` exact, ``sub``, ``aud``/``azp``, ``exp``/``nbf``/``iat`` with leeway, ``nonce``,
   ``at_hash`` against the access token of the same response), plus the token's age.

The JWS parsing and header rules stay hand-written: they are stricter than authlib's (duplicate
members, key-carrying headers and ``crit`` are refused outright) and run before any key lookup.
The compact form and its base64url are the broker's own tokens' (``broker.jose``): one spelling
per token, the same refusals.

Each failure raises ``InvalidIdToken(reason)`` with one of the reasons listed in ``REASONS``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from authlib.oidc.core import CodeIDToken, HybridIDToken
from joserfc.errors import ExpiredTokenError, InvalidClaimError, MissingClaimError

from broker import jose
from broker.domain import json_input
from broker.errors import ExpiredIdToken, InvalidIdToken, InvalidToken

REASONS = (
    "malformed",
    "too_deep",  # JSON nested deeper than json_input.MAX_DEPTH (refused before decoding)
    "alg_not_allowed",
    "forbidden_header:jku",
    "forbidden_header:x5u",
    "forbidden_header:jwk",
    "forbidden_header:x5c",
    "unknown_crit",
    "typ_mismatch",
    "unknown_kid",
    "key_alg_mismatch",
    "ambiguous_key",
    "bad_signature",
    "iss_mismatch",
    "missing_sub",
    "aud_mismatch",
    "azp_mismatch",
    "missing_exp",
    "expired",
    "not_yet_valid",
    "missing_iat",
    "iat_in_future",
    "iat_too_old",
    "nonce_missing",
    "nonce_mismatch",
    "at_hash_mismatch",
    "c_hash_mismatch",
    "events_present",
)

MAX_TOKEN_LENGTH = 64 * 1024
FORBIDDEN_HEADERS = (
    "jku",
    "x5u",
    "jwk",
    "x5c",
)  # RFC 7515 §4.1.2-6: keys/URLs chosen by the sender
ALLOWED_TYP = ("jwt", "application/jwt")  # RFC 7519 §5.1, compared case-insensitively


@dataclass(frozen=True)
class IdToken:
    """A verified ID token. ``issuer`` is the configured issuer (the canonical spelling)."""

    claims: Mapping[str, Any]
    header: Mapping[str, Any]
    issuer: str
    subject: str
    audience: tuple[str, ...]
    expires_at: float
    issued_at: float
    raw: str = field(repr=False)  # kept for id_token_hint at logout; a credential, never logged

    @property
    def nonce(self) -> str | None:
        v = self.claims.get("nonce")
        return v if isinstance(v, str) else None


@dataclass(frozen=True)
class UnverifiedJws:
    header: Mapping[str, Any]
    claims: Mapping[str, Any]
    signing_input: bytes
    signature: bytes = field(repr=False)


def _b64url(part: str) -> bytes:
    try:
        return jose.b64url_decode(part)
    except ValueError:
        raise InvalidIdToken("malformed") from None


def _json_object(raw: bytes) -> dict[str, Any]:
    """A JSON object without duplicate member names (a parser differential otherwise)."""
    try:
        return json_input.loads_object(raw, max_bytes=MAX_TOKEN_LENGTH)
    except json_input.JsonTooDeep:
        raise InvalidIdToken("too_deep") from None
    except json_input.JsonInputError:
        raise InvalidIdToken("malformed") from None


def parse_jws(token: str) -> UnverifiedJws:
    """Split a compact JWS; header and payload must be JSON objects without duplicate names."""
    try:
        parts = jose.split(token, MAX_TOKEN_LENGTH)
    except InvalidToken:
        raise InvalidIdToken("malformed") from None
    header = _json_object(_b64url(parts[0]))
    claims = _json_object(_b64url(parts[1]))
    signature = _b64url(parts[2])
    return UnverifiedJws(
        header=MappingProxyType(header),
        claims=MappingProxyType(claims),
        signing_input=f"{parts[0]}.{parts[1]}".encode("ascii"),
        signature=signature,
    )


def check_header(
    header: Mapping[str, Any], allowed_algs: Sequence[str], typs: Sequence[str] = ALLOWED_TYP
) -> tuple[str, str | None]:
    """Judge the JOSE header; returns ``(alg, kid)``. ``typs``: the accepted ``typ`` values,
    lower case (a logout token may also say ``logout+jwt``)."""
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in allowed_algs:
        raise InvalidIdToken("alg_not_allowed")
    for name in FORBIDDEN_HEADERS:
        if name in header:
            raise InvalidIdToken(f"forbidden_header:{name}")
    if "crit" in header:
        raise InvalidIdToken("unknown_crit")
    typ = header.get("typ")
    if typ is not None and (not isinstance(typ, str) or typ.lower() not in typs):
        raise InvalidIdToken("typ_mismatch")
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise InvalidIdToken("malformed")
    return alg, kid


@dataclass(frozen=True)
class ClaimRules:
    """What ``check_claims`` expects.

    ``audiences`` None means a login (the token came from our own code exchange): ``aud`` must
    contain ``client_id`` and ``azp``, when present or when there are several audiences, must
    be ``client_id``. Otherwise (a token presented directly) ``aud`` must contain one of
    ``audiences`` and ``azp`` is left to trust policies (``<provider>:azp``).
    """

    issuers: tuple[str, ...]
    client_id: str
    audiences: tuple[str, ...] | None
    nonce: str | None
    max_age: float | None
    leeway: float
    now: float


def _number(claims: Mapping[str, Any], name: str) -> float | None:
    v = claims.get(name)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise InvalidIdToken("malformed")
    return float(v)


# authlib's claim errors, as our reasons (``REASONS``); any other claim's error is "malformed"
_MISSING = {
    "iss": "iss_mismatch",
    "sub": "missing_sub",
    "aud": "aud_mismatch",
    "exp": "missing_exp",
    "iat": "missing_iat",
    "nonce": "nonce_missing",
    "azp": "azp_mismatch",
}
_INVALID = {
    "iss": "iss_mismatch",
    "sub": "missing_sub",
    "aud": "aud_mismatch",
    "nbf": "not_yet_valid",
    "iat": "iat_in_future",
    "nonce": "nonce_mismatch",
    "azp": "azp_mismatch",
    "at_hash": "at_hash_mismatch",
    "c_hash": "c_hash_mismatch",
}


def _authlib_validate(
    jws: UnverifiedJws, rules: ClaimRules, *, access_token: str | None, code: str | None
) -> None:
    """OIDC Core §3.1.3.7 steps 2-5, 9-11 and §3.1.3.8 (``at_hash``) by authlib's
    ``CodeIDToken``; a ``c_hash`` (§3.3.2.11), should the token carry one, by its hybrid rules."""
    expected = rules.audiences if rules.audiences is not None else (rules.client_id,)
    options: dict[str, Any] = {
        "iss": {"essential": True, "values": list(rules.issuers)},
        "sub": {"essential": True},
        "aud": {"essential": True, "values": list(expected)},
    }
    params: dict[str, Any] = {"nonce": rules.nonce, "access_token": access_token}
    if rules.audiences is None:
        params["client_id"] = rules.client_id  # a login: azp must be us (authlib's rule)
    claims = dict(jws.claims)
    header = dict(jws.header)
    try:
        CodeIDToken(claims, header, options, params).validate(now=rules.now, leeway=rules.leeway)
        if code is not None and "c_hash" in claims:
            HybridIDToken(claims, header, {}, {"code": code}).validate_c_hash()
    except ExpiredTokenError:
        raise ExpiredIdToken("expired") from None
    except MissingClaimError as e:
        raise InvalidIdToken(_MISSING.get(e.claim, "malformed")) from None
    except InvalidClaimError as e:
        raise InvalidIdToken(_INVALID.get(e.claim, "malformed")) from None


def check_claims(
    jws: UnverifiedJws,
    raw: str,
    rules: ClaimRules,
    *,
    access_token: str | None = None,
    code: str | None = None,
) -> IdToken:
    """OIDC Core §3.1.3.7 steps 2-11 on a token whose signature has been verified.

    The numeric dates are checked for type first (``malformed``: authlib would compare a string),
    then authlib validates the claims, then what it does not know: the token's age (``max_age``
    bounds ``iat``, as the login may not wait longer than its state lived)."""
    c = jws.claims
    for name in ("exp", "nbf", "iat", "auth_time"):
        _number(c, name)
    if "events" in c:
        # A Security Event Token (RFC 8417 §4.1), such as a logout token, is never an ID token.
        raise InvalidIdToken("events_present")
    _authlib_validate(jws, rules, access_token=access_token, code=code)
    iss, sub, aud_claim = c["iss"], c["sub"], c["aud"]
    aud = (aud_claim,) if isinstance(aud_claim, str) else tuple(aud_claim)
    exp, iat = float(c["exp"]), float(c["iat"])
    if rules.max_age is not None and rules.now - iat > rules.max_age + rules.leeway:
        raise InvalidIdToken("iat_too_old")
    assert isinstance(iss, str)
    assert isinstance(sub, str)
    return IdToken(
        claims=jws.claims,
        header=jws.header,
        issuer=rules.issuers[0],
        subject=sub,
        audience=aud,
        expires_at=exp,
        issued_at=iat,
        raw=raw,
    )
