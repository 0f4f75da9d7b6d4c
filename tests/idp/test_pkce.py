"""RFC 7636 PKCE values and random tokens."""

from __future__ import annotations

import re

from broker.idp import new_pkce, random_token
from broker.idp.pkce import s256_challenge


def test_rfc7636_appendix_b_vector() -> None:
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert s256_challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_new_pkce() -> None:
    verifier, challenge = new_pkce()
    assert re.fullmatch(r"[A-Za-z0-9_-]{43,128}", verifier)  # §4.1 unreserved characters
    assert challenge == s256_challenge(verifier)
    assert new_pkce()[0] != verifier


def test_random_token() -> None:
    assert len(random_token()) == 43
    assert len(random_token(16)) == 22
    assert random_token() != random_token()
    assert re.fullmatch(r"[A-Za-z0-9_-]+", random_token())
