"""MFA as condition keys: ``amr`` (RFC 8176) read as MFA, the MFA time from ``auth_time`` or
``iat``, and ``MultiFactorAuthAge`` present only with MFA and a known time."""

from __future__ import annotations

from typing import Any

import pytest

from broker.domain.claims import amr_auth_time, amr_shows_mfa, global_context


@pytest.mark.parametrize(
    ("amr", "mfa"),
    [
        (["mfa"], True),
        (["pwd", "otp"], True),
        (["pwd", "hwk"], True),
        (["pin", "fpt"], True),
        (["swk", "face"], True),
        (["pwd"], False),
        (["otp"], False),
        (["hwk"], False),
        (["pwd", "pin"], False),
        (["otp", "sms"], False),
        ([], False),
        ("mfa", False),
        (None, False),
        ([1, "mfa"], True),
        ([{"mfa": 1}], False),
    ],
    ids=[
        "mfa",
        "pwd+otp",
        "pwd+hwk",
        "pin+fingerprint",
        "swk+face",
        "pwd",
        "otp-alone",
        "hwk-alone",
        "two-knowledge",
        "two-possession",
        "empty",
        "string-not-list",
        "absent",
        "junk-and-mfa",
        "object",
    ],
)
def test_amr_shows_mfa(amr: Any, mfa: bool) -> None:
    assert amr_shows_mfa(amr) is mfa


@pytest.mark.parametrize(
    ("claims", "when"),
    [
        ({"auth_time": 100, "iat": 200}, 100.0),
        ({"iat": 200}, 200.0),
        ({"auth_time": "100", "iat": 200}, 200.0),
        ({"auth_time": True, "iat": 200}, 200.0),
        ({}, None),
    ],
    ids=["auth_time", "iat", "string-auth_time", "bool-auth_time", "none"],
)
def test_amr_auth_time(claims: dict[str, Any], when: float | None) -> None:
    assert amr_auth_time(claims) == when


def test_multi_factor_auth_age() -> None:
    ctx = global_context(now=1000.0, source_ip="", mfa=True, mfa_authenticated_at=700.5)
    assert ctx["broker:MultiFactorAuthPresent"] == "true"
    assert ctx["broker:MultiFactorAuthAge"] == "299"
    ahead = global_context(now=1000.0, source_ip="", mfa=True, mfa_authenticated_at=1005.0)
    assert ahead["broker:MultiFactorAuthAge"] == "0"
    without = global_context(now=1000.0, source_ip="", mfa=False, mfa_authenticated_at=700.0)
    assert without["broker:MultiFactorAuthPresent"] == "false"
    assert "broker:MultiFactorAuthAge" not in without
    unknown = global_context(now=1000.0, source_ip="", mfa=True)
    assert "broker:MultiFactorAuthAge" not in unknown
