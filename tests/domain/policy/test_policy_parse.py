"""parse_policy: documents that parse, and bad documents with the exact path of each problem."""

from __future__ import annotations

import json
from typing import Any

import pytest

from broker.errors import BrokerError
from broker.policy import Policy, PolicyError, parse_policy


def allow(**extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*", **extra}


def doc(*statements: Any, **top: Any) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(statements), **top}


ERROR_CASES: list[tuple[str, Any, str, str, str]] = [
    # (id, document, kind, expected first path, a fragment of its message)
    ("bad-json", "{not json", "identity", "", "not valid JSON"),
    ("json-not-object", "[1, 2]", "identity", "", "must be a JSON object"),
    ("json-duplicate-key", '{"Statement": [], "Statement": []}', "identity", "", "duplicate key"),
    ("json-nan", '{"Version": NaN}', "identity", "", "NaN"),
    ("unknown-top-key", doc(allow(), Foo=1), "identity", "Foo", "unknown key"),
    ("bad-version", doc(allow(), Version="2020-01-01"), "identity", "Version", "must be"),
    ("bad-id", doc(allow(), Id=3), "identity", "Id", "must be a string"),
    ("no-statement", {"Version": "2012-10-17"}, "identity", "Statement", "is required"),
    ("empty-statement-list", doc(), "identity", "Statement", "at least one"),
    ("statement-scalar", {"Statement": "x"}, "identity", "Statement", "object or a list"),
    ("statement-not-object", doc(allow(), 3), "identity", "Statement[1]", "must be an object"),
    (
        "missing-effect",
        doc(allow(), {"Action": "s3:*", "Resource": "*"}),
        "identity",
        "Statement[1].Effect",
        "is required",
    ),
    (
        "bad-effect-case",
        doc({**allow(), "Effect": "allow"}),
        "identity",
        "Statement[0].Effect",
        '"Allow" or "Deny"',
    ),
    (
        "unknown-statement-key",
        doc(allow(Actions="s3:*")),
        "identity",
        "Statement[0].Actions",
        "unknown key",
    ),
    (
        "action-and-notaction",
        doc(allow(NotAction="s3:*")),
        "identity",
        "Statement[0]",
        "both Action and NotAction",
    ),
    (
        "no-action",
        doc({"Effect": "Deny", "Resource": "*"}),
        "identity",
        "Statement[0]",
        "needs Action or NotAction",
    ),
    (
        "no-resource",
        doc({"Effect": "Deny", "Action": "*"}),
        "identity",
        "Statement[0]",
        "needs Resource or NotResource",
    ),
    (
        "resource-and-notresource",
        doc(allow(NotResource="x")),
        "identity",
        "Statement[0]",
        "both Resource and NotResource",
    ),
    (
        "action-not-string",
        doc({**allow(), "Action": ["s3:Get", 7]}),
        "identity",
        "Statement[0].Action[1]",
        "must be a string",
    ),
    (
        "action-empty-list",
        doc({**allow(), "Action": []}),
        "identity",
        "Statement[0].Action",
        "empty list",
    ),
    (
        "action-no-service",
        doc({**allow(), "Action": "GetObject"}),
        "identity",
        "Statement[0].Action",
        "service:Action",
    ),
    (
        "resource-empty-string",
        doc({**allow(), "Resource": ["a", ""]}),
        "identity",
        "Statement[0].Resource[1]",
        "must not be empty",
    ),
    (
        "principal-in-identity",
        doc(allow(Principal="*")),
        "identity",
        "Statement[0].Principal",
        "not allowed in an identity policy",
    ),
    (
        "notprincipal-in-identity",
        doc(allow(NotPrincipal={"AWS": "*"})),
        "identity",
        "Statement[0].NotPrincipal",
        "not allowed",
    ),
    (
        "resource-policy-needs-principal",
        doc(allow()),
        "resource",
        "Statement[0]",
        "needs Principal or NotPrincipal",
    ),
    (
        "bad-principal-type",
        doc(allow(Principal={"User": "x"})),
        "resource",
        "Statement[0].Principal.User",
        "unknown principal type",
    ),
    (
        "principal-not-star-string",
        doc(allow(Principal="google")),
        "resource",
        "Statement[0].Principal",
        '"*"',
    ),
    (
        "unknown-operator",
        doc(allow(Condition={"StringEqualz": {"k:a": "x"}})),
        "identity",
        "Statement[0].Condition.StringEqualz",
        "unknown condition operator",
    ),
    (
        "operator-case-matters",
        doc(allow(Condition={"stringequals": {"k:a": "x"}})),
        "identity",
        "Statement[0].Condition.stringequals",
        "unknown",
    ),
    (
        "bad-qualifier",
        doc(allow(Condition={"ForSomeValues:StringEquals": {"k:a": "x"}})),
        "identity",
        "Statement[0].Condition.ForSomeValues:StringEquals",
        "unknown",
    ),
    (
        "null-ifexists",
        doc(allow(Condition={"NullIfExists": {"k:a": "true"}})),
        "identity",
        "Statement[0].Condition.NullIfExists",
        "IfExists",
    ),
    (
        "null-qualifier",
        doc(allow(Condition={"ForAnyValue:Null": {"k:a": "true"}})),
        "identity",
        "Statement[0].Condition.ForAnyValue:Null",
        "Null cannot",
    ),
    (
        "condition-not-object",
        doc(allow(Condition=["x"])),
        "identity",
        "Statement[0].Condition",
        "must be an object",
    ),
    (
        "operator-block-not-object",
        doc(allow(Condition={"StringEquals": "x"})),
        "identity",
        "Statement[0].Condition.StringEquals",
        "condition keys",
    ),
    (
        "condition-value-null",
        doc(allow(Condition={"StringEquals": {"k:a": None}})),
        "identity",
        "Statement[0].Condition.StringEquals.k:a",
        "string, number or boolean",
    ),
    (
        "condition-value-empty-list",
        doc(allow(Condition={"StringEquals": {"k:a": []}})),
        "identity",
        "Statement[0].Condition.StringEquals.k:a",
        "at least one value",
    ),
    (
        "bad-cidr",
        doc(allow(Condition={"IpAddress": {"aws:SourceIp": ["10.0.0.0/8", "10.0.0.0/33"]}})),
        "identity",
        "Statement[0].Condition.IpAddress.aws:SourceIp[1]",
        "not an IP address",
    ),
    (
        "bad-ip",
        doc(allow(Condition={"NotIpAddress": {"aws:SourceIp": "300.1.1.1"}})),
        "identity",
        "Statement[0].Condition.NotIpAddress.aws:SourceIp",
        "not an IP",
    ),
    (
        "bad-date",
        doc(allow(Condition={"DateLessThan": {"aws:CurrentTime": "next tuesday"}})),
        "identity",
        "Statement[0].Condition.DateLessThan.aws:CurrentTime",
        "not a date",
    ),
    (
        "bad-number",
        doc(allow(Condition={"NumericLessThan": {"k:n": "ten"}})),
        "identity",
        "Statement[0].Condition.NumericLessThan.k:n",
        "not a number",
    ),
    (
        "bad-bool",
        doc(allow(Condition={"Bool": {"k:b": "yes"}})),
        "identity",
        "Statement[0].Condition.Bool.k:b",
        "true",
    ),
    (
        "bad-null-value",
        doc(allow(Condition={"Null": {"k:b": "maybe"}})),
        "identity",
        "Statement[0].Condition.Null.k:b",
        "true",
    ),
    (
        "bad-base64",
        doc(allow(Condition={"BinaryEquals": {"k:b": "!!"}})),
        "identity",
        "Statement[0].Condition.BinaryEquals.k:b",
        "base64",
    ),
    (
        "unclosed-variable",
        doc({**allow(), "Resource": "arn:x:${aws:username"}),
        "identity",
        "Statement[0].Resource",
        "not closed",
    ),
    (
        "bad-variable-default",
        doc({**allow(), "Resource": "a/${aws:username, alice}"}),
        "identity",
        "Statement[0].Resource",
        "default",
    ),
    (
        "duplicate-sid",
        doc(allow(Sid="A"), allow(Sid="A")),
        "identity",
        "Statement[1].Sid",
        "duplicate Sid",
    ),
    ("sid-not-string", doc(allow(Sid=1)), "identity", "Statement[0].Sid", "must be a string"),
]


@pytest.mark.parametrize(
    ("document", "kind", "path", "fragment"),
    [(d, k, p, f) for _, d, k, p, f in ERROR_CASES],
    ids=[c[0] for c in ERROR_CASES],
)
def test_parse_error_path(document: Any, kind: str, path: str, fragment: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy(document, kind="resource" if kind == "resource" else "identity")
    assert caught.value.path == path
    assert fragment in caught.value.message
    assert caught.value.errors[0] == (path, caught.value.message)


def test_every_problem_is_collected() -> None:
    bad = {
        "Version": "1",
        "Oops": True,
        "Statement": [
            {"Effect": "Maybe", "Action": "s3:*", "Resource": "*"},
            {"Action": "s3:*", "Resource": "*", "Condition": {"Nope": {"a": "b"}}},
        ],
    }
    with pytest.raises(PolicyError) as caught:
        parse_policy(bad)
    assert [path for path, _ in caught.value.errors] == [
        "Oops",
        "Version",
        "Statement[0].Effect",
        "Statement[1].Effect",
        "Statement[1].Condition.Nope",
    ]
    assert isinstance(caught.value, BrokerError)
    assert caught.value.status == 400
    assert "Statement[1].Condition.Nope" in str(caught.value)


VALID_CASES: list[tuple[str, Any, str]] = [
    (
        "single-statement-object",
        {"Statement": {"Effect": "Allow", "Action": "*", "Resource": "*"}},
        "identity",
    ),
    (
        "version-2008",
        {
            "Version": "2008-10-17",
            "Statement": [{"Effect": "Deny", "Action": "*", "Resource": "*"}],
        },
        "identity",
    ),
    (
        "lists-everywhere",
        doc(
            {"Sid": "x", "Effect": "Allow", "Action": ["s3:Get*", "ec2:*"], "Resource": ["a", "b"]}
        ),
        "identity",
    ),
    (
        "not-elements",
        doc({"Effect": "Deny", "NotAction": "iam:*", "NotResource": "arn:x"}),
        "identity",
    ),
    ("json-text", json.dumps(doc(allow())), "identity"),
    ("json-bytes", json.dumps(doc(allow())).encode(), "identity"),
    (
        "trust-no-resource",
        doc(
            {
                "Effect": "Allow",
                "Principal": {"Federated": "google"},
                "Action": "sts:AssumeRoleWithWebIdentity",
            }
        ),
        "resource",
    ),
    (
        "trust-star-principal",
        doc({"Effect": "Allow", "Principal": "*", "Action": "sts:AssumeRole"}),
        "resource",
    ),
    (
        "trust-notprincipal",
        doc({"Effect": "Deny", "NotPrincipal": {"AWS": ["arn:a", "arn:b"]}, "Action": "*"}),
        "resource",
    ),
    (
        "all-operators",
        doc(
            allow(
                Condition={
                    "StringEquals": {"a:a": "x"},
                    "StringNotEquals": {"a:a": "x"},
                    "StringEqualsIgnoreCase": {"a:a": "x"},
                    "StringNotEqualsIgnoreCase": {"a:a": "x"},
                    "StringLike": {"a:a": "x*"},
                    "StringNotLike": {"a:a": "x?"},
                    "NumericEquals": {"a:n": 1},
                    "NumericNotEquals": {"a:n": "1.5"},
                    "NumericLessThan": {"a:n": "1"},
                    "NumericLessThanEquals": {"a:n": "1"},
                    "NumericGreaterThan": {"a:n": "1"},
                    "NumericGreaterThanEquals": {"a:n": "1"},
                    "DateEquals": {"a:d": "2024-01-01"},
                    "DateNotEquals": {"a:d": 1700000000},
                    "DateLessThan": {"a:d": "2024-01-01T00:00:00Z"},
                    "DateLessThanEquals": {"a:d": "2024-01-01"},
                    "DateGreaterThan": {"a:d": "2024-01-01"},
                    "DateGreaterThanEquals": {"a:d": "2024-01-01"},
                    "Bool": {"a:b": True},
                    "BinaryEquals": {"a:b": "AAEC"},
                    "IpAddress": {"a:ip": "::1/128"},
                    "NotIpAddress": {"a:ip": "10.0.0.0/8"},
                    "ArnEquals": {"a:arn": "arn:*"},
                    "ArnLike": {"a:arn": "arn:*"},
                    "ArnNotEquals": {"a:arn": "arn:*"},
                    "ArnNotLike": {"a:arn": "arn:*"},
                    "Null": {"a:x": "true"},
                    "StringEqualsIfExists": {"a:a": "x"},
                    "ForAnyValue:StringLike": {"a:a": "x"},
                    "ForAllValues:NumericLessThanIfExists": {"a:a": 1},
                }
            )
        ),
        "identity",
    ),
]


@pytest.mark.parametrize(
    ("document", "kind"),
    [(d, k) for _, d, k in VALID_CASES],
    ids=[c[0] for c in VALID_CASES],
)
def test_valid_documents_parse(document: Any, kind: str) -> None:
    policy = parse_policy(document, kind="resource" if kind == "resource" else "identity")
    assert isinstance(policy, Policy)
    assert policy.statements


def test_policy_fields_and_default_name() -> None:
    policy = parse_policy(doc(allow(Sid="Read"), allow(), Id="my-id"))
    assert policy.name == "my-id"
    assert policy.version == "2012-10-17"
    assert policy.id == "my-id"
    assert policy.kind == "identity"
    assert [(s.index, s.sid, s.effect) for s in policy.statements] == [
        (0, "Read", "Allow"),
        (1, None, "Allow"),
    ]
    assert parse_policy(doc(allow())).name == "inline"
    assert parse_policy(doc(allow()), name="dev-access").name == "dev-access"


def test_kind_must_be_known() -> None:
    with pytest.raises(ValueError, match="kind"):
        parse_policy(doc(allow()), kind="weird")  # type: ignore[arg-type]


def test_statements_are_indexed_by_service() -> None:
    policy = parse_policy(
        doc(
            {"Effect": "Allow", "Action": "s3:Get*", "Resource": "*"},
            {"Effect": "Allow", "Action": ["EC2:Describe*", "s3:List*"], "Resource": "*"},
            {"Effect": "Deny", "Action": "*", "Resource": "*"},
            {"Effect": "Deny", "Action": "s?:*", "Resource": "*"},
            {"Effect": "Deny", "NotAction": "iam:*", "Resource": "*"},
            {"Effect": "Allow", "Action": "iam:CreateUser", "Resource": "*"},
        )
    )
    assert [s.index for s in policy.candidates("s3:getobject")] == [0, 1, 2, 3, 4]
    assert [s.index for s in policy.candidates("ec2:describeimages")] == [1, 2, 3, 4]
    assert [s.index for s in policy.candidates("sqs:sendmessage")] == [2, 3, 4]
    assert [s.index for s in policy.candidates("iam:createuser")] == [2, 3, 4, 5]
