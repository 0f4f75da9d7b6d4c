"""Logout tokens, OpenID Connect Back-Channel Logout 1.0 §2.4 and §2.6.

A logout token is verified like an ID token (``id_token.parse_jws`` and ``check_header``, the
signature with the provider's JWKS: see ``OIDCClient.verify_logout_token``), then its claims
here: authlib's ``JWTClaims`` checks ``iss`` (exactly the issuer), ``aud`` (holds our
``client_id``), ``iat`` (required, not in the future), ``exp`` and ``nbf`` when present, and a
non-empty ``jti``; then what makes it a logout token and not an ID token (§2.6 steps 4-6):
``events`` holds the back-channel logout event with an object value, ``sid`` and/or ``sub`` is
present, and ``nonce`` is not. Its ``iat`` may be at most ``max_age`` old, so a ``jti`` need
be remembered (single use, by the caller) only that long.

Each failure raises ``InvalidIdToken(reason)``; the reasons are those of ``id_token.REASONS``
plus ``LOGOUT_REASONS``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from authlib.oauth2.claims import JWTClaims
from joserfc.errors import ExpiredTokenError, InvalidClaimError, MissingClaimError

from broker.errors import ExpiredIdToken, InvalidIdToken
from broker.idp.id_token import ALLOWED_TYP, UnverifiedJws

BACKCHANNEL_LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout"
#: §2.4: "Logout Tokens SHOULD be explicitly typed"; plain JWT is accepted for older providers.
LOGOUT_TYP = (*ALLOWED_TYP, "logout+jwt", "application/logout+jwt")
MAX_AGE = 300.0  # seconds a logout token is accepted after its iat (plus the leeway)

LOGOUT_REASONS = (
    "events_missing",
    "events_not_logout",
    "event_not_object",
    "sid_and_sub_missing",
    "nonce_present",
    "jti_missing",
    "jti_replayed",
)

_MISSING = {
    "iss": "iss_mismatch",
    "aud": "aud_mismatch",
    "iat": "missing_iat",
    "jti": "jti_missing",
}
_INVALID = {
    "iss": "iss_mismatch",
    "aud": "aud_mismatch",
    "iat": "iat_in_future",
    "nbf": "not_yet_valid",
    "exp": "malformed",
    "sub": "malformed",
    "jti": "jti_missing",
}


@dataclass(frozen=True)
class LogoutToken:
    """A verified logout token: which of the provider's sessions (``sid``) and/or which of its
    users (``subject``) ended."""

    issuer: str
    subject: str | None
    sid: str | None
    jti: str
    issued_at: float
    expires_at: float | None


def _optional_text(claims: Mapping[str, Any], name: str) -> str | None:
    v = claims.get(name)
    if v is None:
        return None
    if not isinstance(v, str) or not v:
        raise InvalidIdToken("malformed")
    return v


def _number(claims: Mapping[str, Any], name: str) -> float | None:
    v = claims.get(name)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise InvalidIdToken("malformed")
    return float(v)


def check_logout_claims(
    jws: UnverifiedJws,
    *,
    issuers: tuple[str, ...],
    client_id: str,
    leeway: float,
    now: float,
    max_age: float = MAX_AGE,
) -> LogoutToken:
    """§2.6 steps 3-6 on a token whose signature has been verified (``issuers[0]`` is the
    configured issuer, the spelling the result carries)."""
    c = jws.claims
    for name in ("exp", "nbf", "iat"):
        _number(c, name)
    options: dict[str, Any] = {
        "iss": {"essential": True, "values": list(issuers)},
        "aud": {"essential": True, "values": [client_id]},
        "iat": {"essential": True},
        "jti": {"essential": True},
    }
    try:
        JWTClaims(dict(c), dict(jws.header), options).validate(now=int(now), leeway=int(leeway))
    except ExpiredTokenError:
        raise ExpiredIdToken("expired") from None
    except MissingClaimError as e:
        raise InvalidIdToken(_MISSING.get(e.claim, "malformed")) from None
    except InvalidClaimError as e:
        raise InvalidIdToken(_INVALID.get(e.claim, "malformed")) from None
    iat = float(c["iat"])
    if now - iat > max_age + leeway:
        raise InvalidIdToken("iat_too_old")
    events = c.get("events")
    if events is None:
        raise InvalidIdToken("events_missing")
    if not isinstance(events, Mapping) or BACKCHANNEL_LOGOUT_EVENT not in events:
        raise InvalidIdToken("events_not_logout")
    if not isinstance(events[BACKCHANNEL_LOGOUT_EVENT], Mapping):
        raise InvalidIdToken("event_not_object")
    if "nonce" in c:
        # §2.6 step 6: a token with a nonce could be an ID token passed off as a logout token.
        raise InvalidIdToken("nonce_present")
    sid = _optional_text(c, "sid")
    sub = _optional_text(c, "sub")
    if sid is None and sub is None:
        raise InvalidIdToken("sid_and_sub_missing")
    jti = c["jti"]
    if not isinstance(jti, str) or not jti:
        raise InvalidIdToken("jti_missing")
    return LogoutToken(
        issuer=issuers[0],
        subject=sub,
        sid=sid,
        jti=jti,
        issued_at=iat,
        expires_at=_number(c, "exp"),
    )
