"""RFC 7636 (PKCE) and the random values of the authorization-code flow (state, nonce).

The S256 transform is authlib's (``authlib.oauth2.rfc7636``); the verifier is ours only in that
its length and alphabet are fixed here (§4.1).
"""

from __future__ import annotations

import secrets

from authlib.oauth2.rfc7636 import create_s256_code_challenge


def random_token(nbytes: int = 32) -> str:
    """``nbytes`` random bytes, base64url without padding (43 characters for 32 bytes)."""
    return secrets.token_urlsafe(nbytes)


def s256_challenge(verifier: str) -> str:
    """RFC 7636 §4.2: ``BASE64URL(SHA256(ASCII(code_verifier)))``."""
    return str(create_s256_code_challenge(verifier))


def new_pkce() -> tuple[str, str]:
    """``(code_verifier, code_challenge)`` for ``code_challenge_method=S256`` (RFC 7636 §4.1)."""
    verifier = random_token(32)  # 43 characters of [A-Za-z0-9_-], within §4.1's 43..128
    return verifier, s256_challenge(verifier)
