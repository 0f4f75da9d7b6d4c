"""How a provider registered through the IAM API is named (``providers.provider_name``): its
URL's host[:port]/path, as AWS names ``oidc-provider/token.actions.githubusercontent.com``; and
that name works as a ``Federated`` principal and as the prefix of condition keys with dots,
slashes and colons in it. Names in a reserved namespace (issue 11, 0b) are refused."""

from __future__ import annotations

import pytest

from broker.domain.claims import claims_to_context, federated_principal
from broker.errors import IamInvalidInput
from broker.policy import Policy, evaluate_trust, parse_policy
from broker.service.providers import is_loopback, name_from_arn, provider_name

KELVIN = "\u212a"
Principal = dict[str, list[str]]
ACCOUNT = "000000000000"


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("https://token.actions.githubusercontent.com", "token.actions.githubusercontent.com"),
        ("https://token.actions.githubusercontent.com/", "token.actions.githubusercontent.com"),
        ("https://Accounts.Google.COM", "accounts.google.com"),
        ("https://oidc.eks.eu-west-1.amazonaws.com/id/A", "oidc.eks.eu-west-1.amazonaws.com/id/A"),
        ("https://idp.example.com:8443/realms/x/", "idp.example.com:8443/realms/x"),
        ("http://127.0.0.1:5556/corp", "127.0.0.1:5556/corp"),
        ("http://localhost:9000", "localhost:9000"),
        ("http://[::1]:9000/x", "[::1]:9000/x"),
        ("https://sts.example.com", "sts.example.com"),  # only the namespace before ':' counts
        ("https://iam-idp", "iam-idp"),
    ],
)  # fmt: skip
def test_the_name_is_host_port_and_path(url: str, name: str) -> None:
    assert provider_name(url) == name


@pytest.mark.parametrize(
    "url",
    [
        "https://aws",
        "https://AWS",
        "https://aws:443",
        "https://broker:8443/x",
        f"https://bro{KELVIN}er",  # lower-cases to broker; and not ASCII anyway
        "https://sts:1/x",
        "https://iam",
        "https://http",
        "https://HTTP:80",
        "http://idp.example.com",  # http:// off loopback
        "http://10.0.0.1",
        "http://127.0.0.1.example.com",
        "ftp://idp.example.com",
        "idp.example.com",
        "https://",
        "https://u@idp.example.com",
        "https://idp.example.com?x=1",
        "https://idp.example.com#x",
        "https://idp.example.com/${aws:username}",
        "https://idp.example.com/a*",
        "https://idp.example.com/a?",
        "https://idp.example.com/\u00e9",
        "https://idp.example.com/a\tb",
        "https://idp.example.com:notaport",
    ],
)
def test_refused_urls(url: str) -> None:
    with pytest.raises(IamInvalidInput):
        provider_name(url)


def test_loopback() -> None:
    assert is_loopback("127.0.0.1")
    assert is_loopback("127.1.2.3")
    assert is_loopback("::1")
    assert is_loopback("localhost")
    assert not is_loopback("localhost.example.com")
    assert not is_loopback("10.0.0.1")


def test_arns() -> None:
    arn = f"arn:broker:iam::{ACCOUNT}:oidc-provider/idp.example.com:8443/t"
    assert name_from_arn(arn, ACCOUNT) == "idp.example.com:8443/t"
    aws = f"arn:aws:iam::{ACCOUNT}:oidc-provider/token.actions.githubusercontent.com"
    assert name_from_arn(aws, ACCOUNT) == "token.actions.githubusercontent.com"
    for bad in ("arn:broker:iam::0:oidc-provider/x", f"arn:broker:iam::{ACCOUNT}:role/x", "x"):
        with pytest.raises(IamInvalidInput):
            name_from_arn(bad, ACCOUNT)


@pytest.mark.parametrize(
    "name",
    ["token.actions.githubusercontent.com", "127.0.0.1:5556/corp", "idp.example.com:8443/a/b"],
)
def test_the_name_works_in_trust_policies_and_condition_keys(name: str) -> None:
    arn = f"arn:broker:iam::{ACCOUNT}:oidc-provider/{name}"
    for federated in (arn, name):
        trust = parse_policy(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Federated": federated},
                        "Action": "sts:AssumeRoleWithWebIdentity",
                        "Condition": {
                            "StringEquals": {f"{name}:aud": "sts.amazonaws.com"},
                            "StringLike": {f"{name.upper()}:SUB": "repo:o/r:*"},
                        },
                    }
                ],
            },
            kind="resource",
        )
        principal = federated_principal(name, ACCOUNT)

        def decide(
            claims: dict[str, object], trust: Policy = trust, principal: Principal = principal
        ) -> str:
            return evaluate_trust(
                trust,
                principal=principal,
                action="sts:AssumeRoleWithWebIdentity",
                context=claims_to_context(name, claims),
            ).decision

        assert decide({"sub": "repo:o/r:ref:refs/heads/main", "aud": "sts.amazonaws.com"}) == (
            "allowed"
        )
        assert decide({"sub": "repo:o/other:ref:x", "aud": "sts.amazonaws.com"}) != "allowed"
        assert decide({"sub": "repo:o/r:x", "aud": "other"}) != "allowed"
        other = federated_principal("idp.example.org", ACCOUNT)
        decision = evaluate_trust(
            trust,
            principal=other,
            action="sts:AssumeRoleWithWebIdentity",
            context=claims_to_context(name, {"sub": "repo:o/r:x", "aud": "sts.amazonaws.com"}),
        )
        assert decision.decision != "allowed"
