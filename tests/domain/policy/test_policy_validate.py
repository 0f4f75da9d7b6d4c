"""validate_policy: Access-Analyzer-style errors and warnings, each with a path and a fix."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.policy import evaluate, parse_policy, validate_policy
from tests.domain.policy.test_policy_properties import JSON, VALUES, statements


def doc(*statements: dict[str, Any], version: str | None = "2012-10-17") -> dict[str, Any]:
    d: dict[str, Any] = {"Statement": list(statements)}
    if version:
        d["Version"] = version
    return d


def allow(action: Any = "s3:GetObject", resource: Any = "arn:aws:s3:::b/*", **kw: Any) -> Any:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **kw}


def deny(action: Any = "s3:GetObject", resource: Any = "arn:aws:s3:::b/*", **kw: Any) -> Any:
    return {"Effect": "Deny", "Action": action, "Resource": resource, **kw}


def fed(condition: dict[str, Any] | None = None, principal: Any = None) -> dict[str, Any]:
    s: dict[str, Any] = {
        "Effect": "Allow",
        "Principal": principal or {"Federated": "github"},
        "Action": "sts:AssumeRoleWithWebIdentity",
    }
    if condition:
        s["Condition"] = condition
    return doc(s)


# (id, document, kind, expected [(severity, code, path)])
CASES: list[tuple[str, Any, str, list[tuple[str, str, str]]]] = [
    ("clean", doc(allow()), "identity", []),
    ("bad-json", '{"Statement": [', "identity", [("error", "MALFORMED_POLICY", "")]),
    ("missing-effect", doc({"Action": "s3:*", "Resource": "*"}), "identity",
     [("error", "MALFORMED_POLICY", "Statement[0].Effect")]),
    ("unknown-operator", doc(allow(Condition={"StringEqual": {"k:a": "x"}})), "identity",
     [("error", "MALFORMED_POLICY", "Statement[0].Condition.StringEqual")]),
    ("unknown-key", doc(allow(Effects="Allow")), "identity",
     [("error", "MALFORMED_POLICY", "Statement[0].Effects")]),
    ("wrong-value-type", doc(allow(Condition={"NumericLessThan": {"k:n": "ten"}})), "identity",
     [("error", "MALFORMED_POLICY", "Statement[0].Condition.NumericLessThan.k:n")]),
    ("bad-resource-arn", doc(allow(resource="arn:aws:s3")), "identity",
     [("error", "INVALID_ARN", "Statement[0].Resource")]),
    ("bad-principal-arn", doc({"Effect": "Allow", "Principal": {"AWS": "role/x"},
                               "Action": "sts:AssumeRole"}), "resource",
     [("error", "INVALID_ARN", "Statement[0].Principal.AWS")]),
    ("bad-arn-condition", doc(allow(Condition={"ArnLike": {"aws:PrincipalArn": ["arn:x"]}})),
     "identity", [("error", "INVALID_ARN", "Statement[0].Condition.ArnLike.aws:PrincipalArn[0]")]),
    # a condition on a claim that says nothing about who (here: how) is no restriction
    ("federated-no-sub", fed({"StringEquals": {"github:amr": "pwd"}}), "resource",
     [("warning", "FEDERATED_TRUST_WITHOUT_SUB_OR_AUD", "Statement[0].Condition")]),
    # an exact identity claim other than sub narrows whose tokens qualify: no warning
    ("federated-owner-not-sub", fed({"StringEquals": {"github:repository_owner": "o"}}),
     "resource", []),
    ("federated-domain-and-group",
     fed({"StringEquals": {"github:hd": "example.com"},
          "ForAnyValue:StringEquals": {"github:groups": "admins"}}), "resource", []),
    ("federated-owner-pattern-star",
     fed({"StringLike": {"github:repository_owner": "*"}}), "resource",
     [("warning", "FEDERATED_TRUST_WITHOUT_SUB_OR_AUD", "Statement[0].Condition")]),
    ("federated-owner-negated",
     fed({"StringNotEquals": {"github:repository_owner": "evil"}}), "resource",
     [("warning", "FEDERATED_TRUST_WITHOUT_SUB_OR_AUD", "Statement[0].Condition")]),
    ("federated-no-condition", fed(), "resource",
     [("warning", "FEDERATED_TRUST_WITHOUT_SUB_OR_AUD", "Statement[0]")]),
    ("federated-with-sub", fed({"StringLike": {"github:sub": "repo:o/r:*"}}), "resource", []),
    ("federated-with-aud-only", fed({"StringEquals": {"GitHub:AUD": "sts"}}), "resource",
     [("warning", "FEDERATED_TRUST_WITHOUT_SUB", "Statement[0].Condition")]),
    ("federated-arn-with-sub",
     fed({"StringEquals": {"google:sub": "1"}},
         {"Federated": "arn:broker:iam::000000000000:oidc-provider/google"}), "resource", []),
    ("federated-negated-sub-is-no-restriction",
     fed({"StringNotEquals": {"github:sub": "x"}}), "resource",
     [("warning", "FEDERATED_TRUST_WITHOUT_SUB_OR_AUD", "Statement[0].Condition")]),
    ("star-on-star", doc(allow("*", "*")), "identity",
     [("warning", "STAR_ACTION_ON_STAR_RESOURCE", "Statement[0].Action")]),
    ("service-star-is-fine", doc(allow("s3:*", "*")), "identity", []),
    ("allow-not-action", doc({"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}),
     "identity", [("warning", "ALLOW_WITH_NOT_ACTION", "Statement[0].NotAction")]),
    ("allow-not-resource", doc({"Effect": "Allow", "Action": "s3:*",
                                "NotResource": "arn:aws:s3:::secret/*"}), "identity",
     [("warning", "ALLOW_WITH_NOT_RESOURCE", "Statement[0].NotResource")]),
    ("deny-not-action-is-fine", doc(allow(), {"Effect": "Deny", "NotAction": "s3:*",
                                              "Resource": "*"}), "identity", []),
    ("forallvalues-absent", doc(allow(Condition={
        "ForAllValues:StringEquals": {"aws:TagKeys": ["a"]}})), "identity",
     [("warning", "FORALLVALUES_TRUE_WHEN_ABSENT",
       "Statement[0].Condition.ForAllValues:StringEquals.aws:TagKeys")]),
    ("forallvalues-with-null", doc(allow(Condition={
        "ForAllValues:StringEquals": {"aws:TagKeys": ["a"]}, "Null": {"aws:TagKeys": "false"}})),
     "identity", []),
    ("qualifier-single-valued", doc(allow(Condition={
        "ForAnyValue:IpAddress": {"aws:SourceIp": "10.0.0.0/8"}})), "identity",
     [("warning", "QUALIFIER_ON_SINGLE_VALUED_KEY",
       "Statement[0].Condition.ForAnyValue:IpAddress.aws:SourceIp")]),
    ("redundant", doc(allow("s3:*", "*"), allow()), "identity",
     [("warning", "REDUNDANT_STATEMENT", "Statement[1]")]),
    ("duplicate-reports-later", doc(allow(), allow()), "identity",
     [("warning", "REDUNDANT_STATEMENT", "Statement[1]")]),
    ("narrower-condition-is-redundant", doc(allow(), allow(Condition={
        "Bool": {"aws:MultiFactorAuthPresent": "true"}})), "identity",
     [("warning", "REDUNDANT_STATEMENT", "Statement[1]")]),
    ("conditioned-wide-is-not-covering", doc(allow("s3:*", "*", Condition={
        "Bool": {"aws:MultiFactorAuthPresent": "true"}}), allow()), "identity", []),
    ("question-does-not-cover-star", doc(allow("s3:?et*"), allow("s3:*et*")), "identity",
     [("warning", "REDUNDANT_STATEMENT", "Statement[0]")]),
    ("shadowed", doc(allow(), deny("s3:*", "*")), "identity",
     [("warning", "SHADOWED_STATEMENT", "Statement[0]")]),
    ("partly-denied-is-fine", doc(allow(), deny(resource="arn:aws:s3:::b/secret/*")),
     "identity", []),
    ("deny-null-contradiction", doc(allow(), deny(Condition={
        "Null": {"k:a": "true"}, "StringEquals": {"k:a": "x"}})), "identity",
     [("warning", "DENY_NEVER_MATCHES", "Statement[1].Condition.StringEquals.k:a")]),
    ("deny-empty-range", doc(allow(), deny(Condition={
        "NumericGreaterThan": {"k:n": "10"}, "NumericLessThan": {"k:n": "5"}})), "identity",
     [("warning", "DENY_NEVER_MATCHES", "Statement[1].Condition.NumericGreaterThan.k:n")]),
    ("deny-not-action-star", doc(allow(), {"Effect": "Deny", "NotAction": "*",
                                           "Resource": "*"}), "identity",
     [("warning", "DENY_NEVER_MATCHES", "Statement[1].NotAction")]),
    ("deny-unknown-global-key", doc(allow(), deny(Condition={
        "Bool": {"aws:ViaAWSService": "false"}})), "identity",
     [("warning", "DENY_NEVER_MATCHES", "Statement[1].Condition.Bool.aws:ViaAWSService")]),
    ("unknown-global-key-negated", doc(allow(Condition={
        "StringNotEquals": {"aws:RequestedRegion": "x"}})), "identity",
     [("warning", "UNKNOWN_GLOBAL_KEY",
       "Statement[0].Condition.StringNotEquals.aws:RequestedRegion")]),
    ("variables-without-version", doc(allow(resource="arn:aws:s3:::h/${aws:username}/*"),
                                      version=None), "identity",
     [("warning", "VARIABLES_NOT_SUBSTITUTED", "Version")]),
    ("resource-not-arn", doc(allow(resource="bucket/key")), "identity",
     [("warning", "RESOURCE_NOT_ARN_OR_URL", "Statement[0].Resource")]),
    ("url-resource-is-fine", doc(allow("http:GET", "https://app.example.com/*")), "identity", []),
]  # fmt: skip


@pytest.mark.parametrize(("document", "kind", "expected"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])  # fmt: skip
def test_findings(document: Any, kind: Any, expected: list[tuple[str, str, str]]) -> None:
    report = validate_policy(document, kind=kind)
    assert [(f.severity, f.code, f.path) for f in report.findings] == expected
    assert report.ok == (not any(s == "error" for s, _, _ in expected))
    for f in report.findings:
        assert f.message, f
        assert f.fix, f
        assert "\n" not in f.fix


def test_every_parse_error_has_a_fix() -> None:
    report = validate_policy(
        {"Version": 1, "Statement": [{"Effect": "Maybe", "Action": "s3", "Principal": "*",
                                      "Condition": {"Bogus": {"a": "b"}}, "X": 1}, "nope"]}
    )  # fmt: skip
    assert len(report.errors) >= 6
    assert all(f.fix for f in report.errors)


def test_to_dict_is_json() -> None:
    data = validate_policy(doc(allow("*", "*"))).to_dict()
    assert json.loads(json.dumps(data))["warnings"][0]["code"] == "STAR_ACTION_ON_STAR_RESOURCE"


@settings(max_examples=300)
@given(document=JSON | VALUES, kind=st.sampled_from(["identity", "resource"]))
def test_validate_never_raises(document: Any, kind: Any) -> None:
    report = validate_policy(document, kind=kind)
    assert report.ok == (report.policy is not None and not report.errors)


REQUESTS = st.tuples(
    st.sampled_from(["s3:GetObject", "s3:PutObject", "ec2:RunInstances", "iam:CreateUser"]),
    st.sampled_from(["arn:b/k", "arn:b/secret/x", "arn:c/k", "arn:b/alice"]),
    st.fixed_dictionaries(
        {},
        optional={
            "k:a": st.sampled_from(["x", "y"]),
            "k:t": st.lists(st.sampled_from(["a", "b", "c"]), max_size=3),
            "aws:MultiFactorAuthPresent": st.sampled_from(["true", "false"]),
            "aws:username": st.just("alice"),
        },
    ),
)


@settings(max_examples=300)
@given(
    stmts=st.lists(statements(), min_size=2, max_size=5), requests=st.lists(REQUESTS, max_size=8)
)
def test_redundant_and_shadowed_are_sound(stmts: list[Any], requests: list[Any]) -> None:
    """Removing a statement reported redundant or shadowed never changes whether a request is
    allowed."""
    document = {"Version": "2012-10-17", "Statement": stmts}
    report = validate_policy(document)
    flagged = [
        int(f.path[len("Statement[") : -1])
        for f in report.warnings
        if f.code in ("REDUNDANT_STATEMENT", "SHADOWED_STATEMENT")
    ]
    full = parse_policy(document)
    for index in flagged:
        rest = [s for i, s in enumerate(stmts) if i != index]
        smaller = parse_policy({"Version": "2012-10-17", "Statement": rest})
        for action, resource, context in requests:
            before = evaluate(action, resource, context, identity=[full]).allowed
            after = evaluate(action, resource, context, identity=[smaller]).allowed
            assert before == after, (index, action, resource, context)
