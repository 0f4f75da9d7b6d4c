"""Token types the broker issues. Verifiers check ``typ`` so one kind is never taken for another."""

from __future__ import annotations

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
