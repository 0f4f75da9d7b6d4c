"""Claims become IAM condition keys ``<provider>:<claim>`` (contract C2)."""

from __future__ import annotations

from typing import Any

import pytest

from broker.domain.claims import claims_to_context, federated_principal, global_context
from broker.domain.tokens import issue_time
from broker.policy import evaluate, parse_policy

CASES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("string", {"hd": "example.com"}, {"google:hd": "example.com"}),
    ("list", {"groups": ["a", "b"]}, {"google:groups": ["a", "b"]}),
    ("bool", {"email_verified": True}, {"google:email_verified": "true"}),
    ("false", {"email_verified": False}, {"google:email_verified": "false"}),
    ("number", {"iat": 1700000000}, {"google:iat": "1700000000"}),
    ("nested-object-dropped", {"address": {"x": 1}}, {}),
    ("list-of-mixed", {"groups": ["a", 1, {"x": 1}, None]}, {"google:groups": ["a", "1"]}),
    ("null-dropped", {"x": None}, {}),
]


@pytest.mark.parametrize(("claims", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_claims_to_context(claims: dict[str, Any], expected: dict[str, Any]) -> None:
    assert claims_to_context("google", claims) == expected


def test_federated_principal_accepts_name_and_arn() -> None:
    assert federated_principal("corp", "123456789012") == {
        "Federated": ["corp", "arn:broker:iam::123456789012:oidc-provider/corp"]
    }


def test_global_context() -> None:
    ctx = global_context(now=1_700_000_000, source_ip="10.0.0.1", mfa=True)
    assert ctx["broker:CurrentTime"] == "2023-11-14T22:13:20Z"
    assert ctx["broker:EpochTime"] == "1700000000"
    assert ctx["broker:SourceIp"] == "10.0.0.1"
    assert ctx["broker:MultiFactorAuthPresent"] == "true"


@pytest.mark.parametrize(
    ("operator", "value", "allowed"),
    [
        ("DateGreaterThanEquals", "2023-11-14T22:13:20Z", True),
        ("DateLessThan", "2023-11-14T22:13:21Z", True),
        ("DateLessThan", "2023-11-14T22:13:20Z", False),
        ("DateGreaterThan", "2023-11-14T22:13:20Z", False),
        ("DateEquals", "1700000000", True),
    ],
    ids=lambda v: str(v),
)
def test_token_issue_time_is_whole_seconds_as_in_aws(
    operator: str, value: str, allowed: bool
) -> None:
    """A token's ``iat`` has milliseconds (``tokens.issue_time``); ``aws:TokenIssueTime`` keeps
    AWS's form, whole seconds in ISO 8601 (the second it was issued in), and compares as such."""
    iat = issue_time(1_700_000_000.9996)
    assert iat == 1_700_000_000.999
    ctx = global_context(now=1_700_000_005.5, source_ip="", token_issued_at=iat)
    assert ctx["broker:TokenIssueTime"] == "2023-11-14T22:13:20Z"
    doc = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "s3:GetObject",
                "Resource": "*",
                "Condition": {operator: {"aws:TokenIssueTime": value}},
            }
        ],
    }
    d = evaluate(
        action="s3:GetObject",
        resource="arn:aws:s3:::b/k",
        context=ctx,
        identity=[parse_policy(doc)],
        boundary=None,
        session=[],
    )
    assert (d.decision == "allowed") is allowed
