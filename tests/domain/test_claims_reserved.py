"""Claims can never become the broker's own condition keys (issue 11, 0b).

A provider's claims are ``<provider>:<claim>`` keys. Were a provider named ``aws`` or ``broker``
(in any case, or spelled with a character that lower-cases to one of those), its claim
``MultiFactorAuthPresent`` would be ``aws:MultiFactorAuthPresent``, the global key a trust
policy reads to require MFA. The config check refuses such names; these tests hold the code
that builds condition keys to the same rule on its own, whatever the names it is given.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.domain.claims import (
    RESERVED_NAMESPACES,
    claims_to_context,
    federated_principal,
    global_context,
)
from broker.domain.policy.context import canonical_key
from broker.policy import evaluate_trust, parse_policy

KELVIN = "\u212a"  # KELVIN SIGN: lower-cases to ASCII "k"

FORGED_CLAIMS: dict[str, Any] = {
    "MultiFactorAuthPresent": True,
    "multifactorauthpresent": "true",
    "SourceIp": "10.1.2.3",
    "aws:SourceIp": "10.1.2.3",
    "PrincipalTag/team": "admins",
    "RequestTag/team": "admins",
    "ExternalId": "ext-123",
    "RoleSessionName": "x",
    "sub": "user-1",
}

RESERVED_PROVIDERS = [
    ("aws", "aws"),
    ("AWS", "aws-upper"),
    ("Aws", "aws-mixed"),
    ("broker", "broker"),
    ("BROKER", "broker-upper"),
    (f"bro{KELVIN}er", "broker-kelvin-sign"),
    ("sts", "sts"),
    ("STS", "sts-upper"),
    ("iam", "iam"),
    ("http", "http"),
    ("HTTP", "http-upper"),
    ("aws:x", "aws-with-colon"),
]


def _namespace(key: str) -> str:
    return canonical_key(key).split(":", 1)[0]


@pytest.mark.parametrize(
    "provider", [p for p, _ in RESERVED_PROVIDERS], ids=[i for _, i in RESERVED_PROVIDERS]
)
def test_a_reserved_provider_name_yields_no_condition_keys(provider: str) -> None:
    assert claims_to_context(provider, FORGED_CLAIMS) == {}


@pytest.mark.parametrize(
    ("provider", "claim"),
    [
        ("google", "aws:SourceIp"),
        ("google", "AWS:MultiFactorAuthPresent"),
        ("google", "broker:MultiFactorAuthPresent"),
        ("corp", "sts:ExternalId"),
    ],
    ids=["aws-claim", "aws-claim-upper", "broker-claim", "sts-claim"],
)
def test_a_claim_named_like_a_global_key_stays_under_its_provider(
    provider: str, claim: str
) -> None:
    ctx = claims_to_context(provider, {claim: "x"})
    assert ctx == {f"{provider}:{claim}": "x"}
    assert _namespace(next(iter(ctx))) == provider


def test_ordinary_providers_are_unchanged() -> None:
    assert claims_to_context("github", {"sub": "repo:o/r:ref:refs/heads/main"}) == {
        "github:sub": "repo:o/r:ref:refs/heads/main"
    }
    assert claims_to_context("aws-sso", {"sub": "x"}) == {"aws-sso:sub": "x"}


@given(
    provider=st.text(min_size=0, max_size=12),
    claims=st.dictionaries(st.text(max_size=24), st.sampled_from(["true", True, 1, ["a"]])),
)
def test_no_provider_or_claim_name_reaches_a_reserved_namespace(
    provider: str, claims: dict[str, Any]
) -> None:
    for key in claims_to_context(provider, claims):
        assert _namespace(key) not in RESERVED_NAMESPACES, key


@given(provider=st.sampled_from(["aws", "broker", "sts", "iam", "http"]), data=st.data())
def test_every_case_variant_of_a_reserved_name_is_refused(provider: str, data: Any) -> None:
    flips = data.draw(st.lists(st.booleans(), min_size=len(provider), max_size=len(provider)))
    variant = "".join(c.upper() if f else c for c, f in zip(provider, flips, strict=True))
    assert claims_to_context(variant, FORGED_CLAIMS) == {}


# --- the forgery itself: a trust policy that requires MFA or a network --------------------------

MFA_TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Federated": ["aws", "broker", "corp"]},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"Bool": {"aws:MultiFactorAuthPresent": "true"}},
        }
    ],
}
NETWORK_TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Federated": ["aws", "broker", "corp"]},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}},
        }
    ],
}

FORGERIES = [
    ("aws", {"MultiFactorAuthPresent": True}, MFA_TRUST, "aws-mfa"),
    ("AWS", {"multifactorauthpresent": "true"}, MFA_TRUST, "aws-upper-mfa"),
    ("broker", {"MultiFactorAuthPresent": "true"}, MFA_TRUST, "broker-mfa"),
    (f"bro{KELVIN}er", {"MultiFactorAuthPresent": "true"}, MFA_TRUST, "kelvin-mfa"),
    ("corp", {"aws:MultiFactorAuthPresent": "true"}, MFA_TRUST, "claim-named-global-mfa"),
    ("aws", {"SourceIp": "10.1.2.3"}, NETWORK_TRUST, "aws-source-ip"),
    ("broker", {"SourceIp": ["10.1.2.3"]}, NETWORK_TRUST, "broker-source-ip-list"),
]


@pytest.mark.parametrize(
    ("provider", "claims", "trust"),
    [f[:3] for f in FORGERIES],
    ids=[f[3] for f in FORGERIES],
)
def test_forged_global_claims_do_not_satisfy_a_trust_policy(
    provider: str, claims: dict[str, Any], trust: dict[str, Any]
) -> None:
    policy = parse_policy(trust, kind="resource")
    context = {
        **global_context(now=1_700_000_000, source_ip="127.0.0.1", mfa=False),
        **claims_to_context(provider, claims),
    }
    d = evaluate_trust(
        policy,
        principal=federated_principal(provider.lower(), "000000000000"),
        action="sts:AssumeRoleWithWebIdentity",
        context=context,
    )
    assert d.decision == "implicitDeny", (context, d)
    # The same identity with real MFA from a real network is let in: the policy is not just shut.
    genuine = global_context(now=1_700_000_000, source_ip="10.9.9.9", mfa=True)
    d = evaluate_trust(
        policy,
        principal=federated_principal("corp", "000000000000"),
        action="sts:AssumeRoleWithWebIdentity",
        context=genuine,
    )
    assert d.decision == "allowed"
