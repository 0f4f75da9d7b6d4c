"""Condition operators, one table: (condition block, request context, whether it holds)."""

from __future__ import annotations

from typing import Any

import pytest

from broker.policy import evaluate, parse_policy

Case = tuple[str, dict[str, Any], dict[str, Any], bool]


def holds(condition: dict[str, Any], context: dict[str, Any], version: str | None) -> bool:
    doc: dict[str, Any] = {
        "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": condition}]
    }
    if version is not None:
        doc["Version"] = version
    policy = parse_policy(doc, name="c")
    return evaluate(action="s3:GetObject", resource="r", context=context, identity=[policy]).allowed


SE = "StringEquals"
CASES: list[Case] = [
    # --- strings ---------------------------------------------------------------------------
    ("str-eq", {SE: {"k:a": "x"}}, {"k:a": "x"}, True),
    ("str-eq-case-sensitive", {SE: {"k:a": "x"}}, {"k:a": "X"}, False),
    ("str-eq-any-policy-value", {SE: {"k:a": ["x", "y"]}}, {"k:a": "y"}, True),
    ("str-eq-absent", {SE: {"k:a": "x"}}, {}, False),
    ("str-eq-star-literal", {SE: {"k:a": "a*"}}, {"k:a": "abc"}, False),
    ("str-eq-star-literal-exact", {SE: {"k:a": "a*"}}, {"k:a": "a*"}, True),
    ("str-eq-number-policy-value", {SE: {"k:n": 3}}, {"k:n": "3"}, True),
    ("str-eq-bool-context", {SE: {"k:b": "true"}}, {"k:b": True}, True),
    ("str-eq-keys-and", {SE: {"k:a": "x", "k:b": "y"}}, {"k:a": "x", "k:b": "z"}, False),
    ("str-eq-keys-and-ok", {SE: {"k:a": "x", "k:b": "y"}}, {"k:a": "x", "k:b": "y"}, True),
    ("str-eq-multi-context-any", {SE: {"k:a": "x"}}, {"k:a": ["q", "x"]}, True),
    ("str-eq-empty-list-absent", {SE: {"k:a": "x"}}, {"k:a": []}, False),
    ("str-ne", {"StringNotEquals": {"k:a": "x"}}, {"k:a": "y"}, True),
    ("str-ne-equal", {"StringNotEquals": {"k:a": "x"}}, {"k:a": "x"}, False),
    ("str-ne-none-of", {"StringNotEquals": {"k:a": ["x", "y"]}}, {"k:a": "y"}, False),
    ("str-ne-absent-true", {"StringNotEquals": {"k:a": "x"}}, {}, True),
    ("str-ne-multi-context", {"StringNotEquals": {"k:a": "x"}}, {"k:a": ["y", "x"]}, False),
    ("str-eq-ic", {"StringEqualsIgnoreCase": {"k:a": "Admin"}}, {"k:a": "aDMIN"}, True),
    ("str-eq-ic-differs", {"StringEqualsIgnoreCase": {"k:a": "Admin"}}, {"k:a": "admins"}, False),
    ("str-ne-ic", {"StringNotEqualsIgnoreCase": {"k:a": "Admin"}}, {"k:a": "ADMIN"}, False),
    ("str-ne-ic-other", {"StringNotEqualsIgnoreCase": {"k:a": "Admin"}}, {"k:a": "root"}, True),
    ("str-like-star", {"StringLike": {"k:a": "dev-*"}}, {"k:a": "dev-alice"}, True),
    ("str-like-star-empty", {"StringLike": {"k:a": "dev-*"}}, {"k:a": "dev-"}, True),
    ("str-like-question", {"StringLike": {"k:a": "v?"}}, {"k:a": "v1"}, True),
    ("str-like-question-one-char", {"StringLike": {"k:a": "v?"}}, {"k:a": "v12"}, False),
    ("str-like-case", {"StringLike": {"k:a": "Dev*"}}, {"k:a": "dev1"}, False),
    ("str-like-regex-meta", {"StringLike": {"k:a": "a.b+(c)*"}}, {"k:a": "a.b+(c)x"}, True),
    ("str-like-dot-literal", {"StringLike": {"k:a": "a.b"}}, {"k:a": "axb"}, False),
    ("str-not-like", {"StringNotLike": {"k:a": "*@example.com"}}, {"k:a": "x@evil.com"}, True),
    (
        "str-not-like-hit",
        {"StringNotLike": {"k:a": "*@example.com"}},
        {"k:a": "x@example.com"},
        False,
    ),
    # --- numbers ---------------------------------------------------------------------------
    ("num-eq", {"NumericEquals": {"k:n": "3"}}, {"k:n": "3.0"}, True),
    ("num-eq-json-number", {"NumericEquals": {"k:n": 10}}, {"k:n": 10}, True),
    ("num-ne", {"NumericNotEquals": {"k:n": ["1", "2"]}}, {"k:n": "3"}, True),
    ("num-ne-hit", {"NumericNotEquals": {"k:n": ["1", "2"]}}, {"k:n": "2"}, False),
    ("num-lt", {"NumericLessThan": {"k:n": "10"}}, {"k:n": "9.99"}, True),
    ("num-lt-equal", {"NumericLessThan": {"k:n": "10"}}, {"k:n": "10"}, False),
    ("num-le", {"NumericLessThanEquals": {"k:n": "10"}}, {"k:n": "10"}, True),
    ("num-gt", {"NumericGreaterThan": {"k:n": "-1"}}, {"k:n": "0"}, True),
    ("num-ge", {"NumericGreaterThanEquals": {"k:n": "1e2"}}, {"k:n": "100"}, True),
    ("num-ge-below", {"NumericGreaterThanEquals": {"k:n": "100"}}, {"k:n": "99"}, False),
    ("num-context-not-number", {"NumericLessThan": {"k:n": "10"}}, {"k:n": "ten"}, False),
    # --- dates -----------------------------------------------------------------------------
    (
        "date-eq-iso-epoch",
        {"DateEquals": {"k:t": "2024-01-01T00:00:00Z"}},
        {"k:t": "1704067200"},
        True,
    ),
    ("date-ne", {"DateNotEquals": {"k:t": "2024-01-01"}}, {"k:t": "2024-01-02"}, True),
    (
        "date-lt",
        {"DateLessThan": {"aws:CurrentTime": "2030-01-01T00:00:00Z"}},
        {"aws:CurrentTime": "2029-12-31T23:59:59Z"},
        True,
    ),
    (
        "date-lt-after",
        {"DateLessThan": {"aws:CurrentTime": "2030-01-01T00:00:00Z"}},
        {"aws:CurrentTime": "2030-01-01T00:00:01+00:00"},
        False,
    ),
    ("date-le", {"DateLessThanEquals": {"k:t": 1700000000}}, {"k:t": "2023-11-14T22:13:20Z"}, True),
    (
        "date-gt-offset",
        {"DateGreaterThan": {"k:t": "2024-01-01T00:00:00Z"}},
        {"k:t": "2024-01-01T00:30:00+01:00"},
        False,
    ),
    (
        "date-ge",
        {"DateGreaterThanEquals": {"k:t": "2024-01-01T00:00:00Z"}},
        {"k:t": "2024-01-01T01:00:00+01:00"},
        True,
    ),
    ("date-context-garbage", {"DateGreaterThan": {"k:t": "2024-01-01"}}, {"k:t": "soon"}, False),
    # --- bool, binary, ip ------------------------------------------------------------------
    (
        "bool-true",
        {"Bool": {"aws:MultiFactorAuthPresent": "true"}},
        {"aws:MultiFactorAuthPresent": "true"},
        True,
    ),
    (
        "bool-json-true",
        {"Bool": {"aws:MultiFactorAuthPresent": True}},
        {"aws:MultiFactorAuthPresent": "TRUE"},
        True,
    ),
    (
        "bool-false-vs-true",
        {"Bool": {"aws:MultiFactorAuthPresent": "false"}},
        {"aws:MultiFactorAuthPresent": "true"},
        False,
    ),
    ("bool-absent", {"Bool": {"aws:MultiFactorAuthPresent": "true"}}, {}, False),
    ("binary-eq", {"BinaryEquals": {"k:b": "aGVsbG8="}}, {"k:b": "aGVsbG8="}, True),
    ("binary-ne", {"BinaryEquals": {"k:b": "aGVsbG8="}}, {"k:b": "d29ybGQ="}, False),
    (
        "ip-v4-cidr",
        {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}},
        {"aws:SourceIp": "10.20.30.40"},
        True,
    ),
    (
        "ip-v4-outside",
        {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}},
        {"aws:SourceIp": "11.0.0.1"},
        False,
    ),
    (
        "ip-v4-host",
        {"IpAddress": {"aws:SourceIp": "192.0.2.7"}},
        {"aws:SourceIp": "192.0.2.7"},
        True,
    ),
    (
        "ip-v6",
        {"IpAddress": {"aws:SourceIp": "2001:db8::/32"}},
        {"aws:SourceIp": "2001:db8:1::5"},
        True,
    ),
    (
        "ip-v6-vs-v4",
        {"IpAddress": {"aws:SourceIp": "2001:db8::/32"}},
        {"aws:SourceIp": "10.0.0.1"},
        False,
    ),
    (
        "ip-v4-mapped",
        {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}},
        {"aws:SourceIp": "::ffff:10.0.0.1"},
        True,
    ),
    (
        "ip-any-of",
        {"IpAddress": {"aws:SourceIp": ["10.0.0.0/8", "192.168.0.0/16"]}},
        {"aws:SourceIp": "192.168.1.1"},
        True,
    ),
    (
        "ip-context-garbage",
        {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}},
        {"aws:SourceIp": "nope"},
        False,
    ),
    ("not-ip", {"NotIpAddress": {"aws:SourceIp": "10.0.0.0/8"}}, {"aws:SourceIp": "8.8.8.8"}, True),
    (
        "not-ip-inside",
        {"NotIpAddress": {"aws:SourceIp": "10.0.0.0/8"}},
        {"aws:SourceIp": "10.0.0.1"},
        False,
    ),
    # --- arns ------------------------------------------------------------------------------
    (
        "arn-eq",
        {"ArnEquals": {"aws:PrincipalArn": "arn:broker:iam::000000000000:role/dev"}},
        {"aws:PrincipalArn": "arn:broker:iam::000000000000:role/dev"},
        True,
    ),
    (
        "arn-like",
        {"ArnLike": {"aws:PrincipalArn": "arn:broker:iam::*:role/dev-*"}},
        {"aws:PrincipalArn": "arn:broker:iam::000000000000:role/dev-ops"},
        True,
    ),
    (
        "arn-like-star-stays-in-component",
        {"ArnLike": {"aws:PrincipalArn": "arn:*:role/dev"}},
        {"aws:PrincipalArn": "arn:broker:iam::000000000000:role/dev"},
        False,
    ),
    (
        "arn-like-resource-crosses-colon",
        {"ArnLike": {"aws:PrincipalArn": "arn:broker:sts::*:assumed-role/*"}},
        {"aws:PrincipalArn": "arn:broker:sts::0:assumed-role/dev/a:b"},
        True,
    ),
    (
        "arn-like-not-an-arn",
        {"ArnLike": {"aws:PrincipalArn": "arn:broker:iam::*:role/*"}},
        {"aws:PrincipalArn": "role/dev"},
        False,
    ),
    (
        "arn-not-equals",
        {"ArnNotEquals": {"aws:PrincipalArn": "arn:broker:iam::0:role/dev"}},
        {"aws:PrincipalArn": "arn:broker:iam::0:role/ops"},
        True,
    ),
    (
        "arn-not-like-hit",
        {"ArnNotLike": {"aws:PrincipalArn": "arn:broker:iam::0:role/*"}},
        {"aws:PrincipalArn": "arn:broker:iam::0:role/ops"},
        False,
    ),
    # --- Null and IfExists -----------------------------------------------------------------
    ("null-true-absent", {"Null": {"k:a": "true"}}, {}, True),
    ("null-true-present", {"Null": {"k:a": "true"}}, {"k:a": "x"}, False),
    ("null-false-present", {"Null": {"k:a": "false"}}, {"k:a": "x"}, True),
    ("null-false-absent", {"Null": {"k:a": False}}, {}, False),
    ("null-empty-list-is-absent", {"Null": {"k:a": "true"}}, {"k:a": []}, True),
    ("ifexists-absent", {"StringEqualsIfExists": {"k:a": "x"}}, {}, True),
    ("ifexists-present-mismatch", {"StringEqualsIfExists": {"k:a": "x"}}, {"k:a": "y"}, False),
    ("ifexists-present-match", {"StringEqualsIfExists": {"k:a": "x"}}, {"k:a": "x"}, True),
    ("ifexists-numeric-absent", {"NumericLessThanIfExists": {"k:n": "1"}}, {}, True),
    (
        "ifexists-ip-present",
        {"IpAddressIfExists": {"aws:SourceIp": "10.0.0.0/8"}},
        {"aws:SourceIp": "8.8.8.8"},
        False,
    ),
    ("ifexists-negated-absent", {"StringNotLikeIfExists": {"k:a": "x*"}}, {}, True),
    # --- set qualifiers --------------------------------------------------------------------
    (
        "any-hit",
        {"ForAnyValue:StringEquals": {"aws:TagKeys": ["env", "team"]}},
        {"aws:TagKeys": ["cost", "env"]},
        True,
    ),
    (
        "any-miss",
        {"ForAnyValue:StringEquals": {"aws:TagKeys": ["env"]}},
        {"aws:TagKeys": ["cost"]},
        False,
    ),
    ("any-absent", {"ForAnyValue:StringEquals": {"aws:TagKeys": ["env"]}}, {}, False),
    (
        "any-empty",
        {"ForAnyValue:StringEquals": {"aws:TagKeys": ["env"]}},
        {"aws:TagKeys": []},
        False,
    ),
    ("any-absent-ifexists", {"ForAnyValue:StringEqualsIfExists": {"aws:TagKeys": "env"}}, {}, True),
    (
        "any-negated",
        {"ForAnyValue:StringNotEquals": {"aws:TagKeys": ["env"]}},
        {"aws:TagKeys": ["env", "x"]},
        True,
    ),
    (
        "any-negated-all-listed",
        {"ForAnyValue:StringNotEquals": {"aws:TagKeys": ["env"]}},
        {"aws:TagKeys": ["env"]},
        False,
    ),
    (
        "all-subset",
        {"ForAllValues:StringEquals": {"aws:TagKeys": ["env", "team"]}},
        {"aws:TagKeys": ["team"]},
        True,
    ),
    (
        "all-extra",
        {"ForAllValues:StringEquals": {"aws:TagKeys": ["env", "team"]}},
        {"aws:TagKeys": ["team", "cost"]},
        False,
    ),
    ("all-absent", {"ForAllValues:StringEquals": {"aws:TagKeys": ["env"]}}, {}, True),
    (
        "all-empty",
        {"ForAllValues:StringEquals": {"aws:TagKeys": ["env"]}},
        {"aws:TagKeys": []},
        True,
    ),
    (
        "all-like",
        {"ForAllValues:StringLike": {"corp:groups": "eng-*"}},
        {"corp:groups": ["eng-a", "eng-b"]},
        True,
    ),
    (
        "all-negated",
        {"ForAllValues:StringNotEquals": {"aws:TagKeys": ["secret"]}},
        {"aws:TagKeys": ["env", "team"]},
        True,
    ),
    (
        "all-negated-hit",
        {"ForAllValues:StringNotEquals": {"aws:TagKeys": ["secret"]}},
        {"aws:TagKeys": ["env", "secret"]},
        False,
    ),
    ("all-numeric", {"ForAllValues:NumericLessThan": {"k:n": "5"}}, {"k:n": ["1", "4"]}, True),
    # --- keys: case and aws:/broker: aliases -----------------------------------------------
    (
        "key-case-insensitive",
        {SE: {"Google:HD": "example.com"}},
        {"google:hd": "example.com"},
        True,
    ),
    (
        "key-aws-in-policy-broker-in-context",
        {SE: {"aws:username": "alice"}},
        {"broker:username": "alice"},
        True,
    ),
    (
        "key-broker-in-policy-aws-in-context",
        {SE: {"broker:SourceIdentity": "a"}},
        {"AWS:SOURCEIDENTITY": "a"},
        True,
    ),
    (
        "key-other-prefix-not-alias",
        {SE: {"google:username": "alice"}},
        {"aws:username": "alice"},
        False,
    ),
    (
        "several-operators-and",
        {SE: {"k:a": "x"}, "Bool": {"k:b": "true"}},
        {"k:a": "x", "k:b": "false"},
        False,
    ),
]


@pytest.mark.parametrize(
    ("condition", "context", "expected"),
    [(c, ctx, e) for _, c, ctx, e in CASES],
    ids=[i for i, *_ in CASES],
)
def test_condition(condition: dict[str, Any], context: dict[str, Any], expected: bool) -> None:
    assert holds(condition, context, "2012-10-17") is expected


VARIABLE_CASES: list[tuple[str, str | None, str, dict[str, Any], bool]] = [
    ("var-username", "2012-10-17", "${aws:username}", {"aws:username": "alice"}, True),
    ("var-broker-alias", "2012-10-17", "${broker:username}", {"aws:username": "alice"}, True),
    ("var-claim", "2012-10-17", "${google:sub}", {"google:sub": "alice"}, True),
    (
        "var-principal-tag",
        "2012-10-17",
        "${aws:PrincipalTag/team}",
        {"aws:PrincipalTag/team": "alice"},
        True,
    ),
    ("var-absent-no-match", "2012-10-17", "${aws:username}", {}, False),
    ("var-default", "2012-10-17", "${aws:username, 'alice'}", {}, True),
    ("var-default-unused", "2012-10-17", "${aws:username,'alice'}", {"aws:username": "bob"}, False),
    ("var-multivalued-no-match", "2012-10-17", "${k:multi}", {"k:multi": ["alice", "bob"]}, False),
    ("var-old-version-literal", "2008-10-17", "${aws:username}", {"aws:username": "alice"}, False),
    ("var-no-version-literal", None, "${aws:username}", {"aws:username": "alice"}, False),
]


@pytest.mark.parametrize(
    ("version", "value", "context", "expected"),
    [(v, val, ctx, e) for _, v, val, ctx, e in VARIABLE_CASES],
    ids=[i for i, *_ in VARIABLE_CASES],
)
def test_variables_in_condition_values(
    version: str | None, value: str, context: dict[str, Any], expected: bool
) -> None:
    condition = {"StringEquals": {"k:who": value}}
    assert holds(condition, {**context, "k:who": "alice"}, version) is expected


def test_literal_variable_text_without_version() -> None:
    condition = {"StringEquals": {"k:who": "${aws:username}"}}
    assert holds(condition, {"k:who": "${aws:username}"}, None)


@pytest.mark.parametrize(
    ("value", "subject", "expected"),
    [
        ("a${*}", "a*", True),
        ("a${*}", "abc", False),
        ("a${?}", "a?", True),
        ("a${?}", "ab", False),
        ("cost${$}", "cost$", True),
        ("home/${aws:username}/*", "home/a*/x", True),
        ("home/${aws:username}/*", "home/ab/x", False),
    ],
    ids=[
        "escaped-star",
        "escaped-star-literal",
        "escaped-q",
        "escaped-q-literal",
        "dollar",
        "value-star-literal",
        "value-star-not-wild",
    ],
)
def test_escapes_and_variable_values_are_literal_in_like(
    value: str, subject: str, expected: bool
) -> None:
    condition = {"StringLike": {"k:s": value}}
    assert holds(condition, {"k:s": subject, "aws:username": "a*"}, "2012-10-17") is expected
