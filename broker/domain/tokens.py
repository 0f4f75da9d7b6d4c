"""Token types the broker issues. Verifiers check ``typ`` so one kind is never taken for another."""

from __future__ import annotations

import math

SESSION_TYP = "broker-session+jwt"  # the session cookie's JWT and session bearer tokens
ASSERTION_TYP = "broker-assertion+jwt"  # forward-auth's X-Auth-Request-Assertion
ACCESS_TYP = "broker-access+jwt"  # role credentials from STS / token exchange

# claim names (beyond the registered ones: iss, sub, aud, exp, iat, nbf, jti)
CLAIM_SID = "sid"
CLAIM_ROLE = "role"
CLAIM_PROVIDER = "idp"
CLAIM_SUBJECT = "idp_sub"
CLAIM_EMAIL = "email"
CLAIM_GROUPS = "groups"
CLAIM_MFA = "mfa"
CLAIM_MFA_AT = "mfa_at"  # when the second factor was proved (NumericDate), only with mfa
CLAIM_TAGS = "tags"
CLAIM_USER = "uid"
# access tokens (STS SessionTokens) also carry
CLAIM_AKID = "akid"
CLAIM_SESSION_NAME = "sn"
CLAIM_SOURCE_IDENTITY = "si"
CLAIM_SESSION_POLICIES = "sp"
# credentials derived from a broker session (STS, token exchange, chains of them) also carry the
# id of the broker session they came from: the first one, not an intermediate credential's
CLAIM_ORIGIN_SID = "origin_sid"


def issue_time(now: float) -> float:
    """``now`` as the ``iat`` (and ``nbf``) of a token the broker issues: a NumericDate to the
    millisecond (RFC 7519 §2 allows a non-integer one), never later than ``now``.

    A revocation records its time to the fraction and voids every credential with
    ``iat <= before`` (``RevocationState.is_revoked``). Rounded down, a credential issued before
    a revocation always has ``iat <= before``, so it is voided (rounding to nearest could put it
    just past ``before`` and let it live); one issued after is spared unless it falls within the
    same millisecond. A whole-second ``iat`` voided for up to a second what was issued after."""
    ms = math.floor(now * 1000)
    t = ms / 1000
    if t > now:  # ``now * 1000`` rounded up onto the next millisecond
        t = (ms - 1) / 1000
    return t
