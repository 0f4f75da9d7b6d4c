"""The golden corpus: table cases of AWS IAM's documented evaluation behaviour.

Each case: an id, the policies (identity, optional boundary, session; or one trust policy and a
caller), the request (action, resource, context), the expected decision and the statements that
decided it, written ``"<policy name>#<Sid>"`` (``"<policy name>#<index>"`` without a Sid).

Sources (AWS IAM User Guide): "IAM JSON policy elements: Condition operators", "Condition
with multiple context keys or values", "Single-valued vs. multivalued context keys", "IAM policy
elements: Variables and tags", "Policy evaluation logic" (identity policies, permissions
boundaries, session policies), "IAM JSON policy elements: Principal/NotPrincipal/NotAction/
NotResource".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

S3 = "s3:GetObject"
OBJ = "arn:aws:s3:::bucket/key"


@dataclass(frozen=True)
class Case:
    id: str
    identity: dict[str, Any]  # policy name -> document
    action: str
    resource: str
    context: dict[str, Any]
    decision: str
    deciding: tuple[str, ...]
    boundary: dict[str, Any] | None = None  # named "boundary"
    session: dict[str, Any] = field(default_factory=dict)  # name -> document
    caller: dict[str, Any] | None = None  # trust cases: the identity policy "trust" + caller


CASES: list[Case] = []


def doc(*statements: dict[str, Any], version: str | None = "2012-10-17") -> dict[str, Any]:
    d: dict[str, Any] = {"Statement": list(statements)}
    if version is not None:
        d["Version"] = version
    return d


def st(
    sid: str | None = "S",
    effect: str = "Allow",
    action: Any = "*",
    resource: Any = "*",
    **extra: Any,
) -> dict[str, Any]:
    out: dict[str, Any] = {"Effect": effect}
    if sid is not None:
        out["Sid"] = sid
    if "NotAction" not in extra:
        out["Action"] = action
    if "NotResource" not in extra:
        out["Resource"] = resource
    out.update(extra)
    return out


def add(case_id: str, identity: dict[str, Any], action: str, resource: str,
        context: dict[str, Any], decision: str, deciding: tuple[str, ...] | list[str] = (),
        **kw: Any) -> None:  # fmt: skip
    CASES.append(
        Case(case_id, identity, action, resource, context, decision, tuple(deciding), **kw)
    )


def cond(case_id: str, condition: dict[str, Any], context: dict[str, Any], holds: bool,
         *, version: str | None = "2012-10-17") -> None:  # fmt: skip
    """One Allow statement with ``condition``: allowed iff the condition holds."""
    policy = {"p": doc(st(Condition=condition), version=version)}
    if holds:
        add(case_id, policy, S3, OBJ, context, "allowed", ["p#S"])
    else:
        add(case_id, policy, S3, OBJ, context, "implicitDeny")


# --- string operators ---------------------------------------------------------------------------
SE = {"StringEquals": {"k:a": "Prod"}}
cond("str-equals", SE, {"k:a": "Prod"}, True)
cond("str-equals-case-sensitive", SE, {"k:a": "prod"}, False)
cond("str-equals-absent", SE, {}, False)
cond("str-equals-other", SE, {"k:a": "Dev"}, False)
cond("str-equals-no-wildcard", {"StringEquals": {"k:a": "P*"}}, {"k:a": "Prod"}, False)
cond("str-equals-star-literal", {"StringEquals": {"k:a": "P*"}}, {"k:a": "P*"}, True)
cond("str-equals-any-request-value", SE, {"k:a": ["Dev", "Prod"]}, True)
cond("str-equals-key-case-insensitive", {"StringEquals": {"K:A": "Prod"}}, {"k:a": "Prod"}, True)
cond("str-not-equals", {"StringNotEquals": {"k:a": "Prod"}}, {"k:a": "Dev"}, True)
cond("str-not-equals-same", {"StringNotEquals": {"k:a": "Prod"}}, {"k:a": "Prod"}, False)
cond("str-not-equals-absent-is-true", {"StringNotEquals": {"k:a": "Prod"}}, {}, True)
cond(
    "str-not-equals-multi-value-nor", {"StringNotEquals": {"k:a": ["x", "y"]}}, {"k:a": "y"}, False
)
cond(
    "str-not-equals-multi-value-none", {"StringNotEquals": {"k:a": ["x", "y"]}}, {"k:a": "z"}, True
)
cond("str-equals-ignore-case", {"StringEqualsIgnoreCase": {"k:a": "PROD"}}, {"k:a": "prod"}, True)
cond(
    "str-equals-ignore-case-differs",
    {"StringEqualsIgnoreCase": {"k:a": "PROD"}},
    {"k:a": "dev"},
    False,
)
cond(
    "str-not-equals-ignore-case",
    {"StringNotEqualsIgnoreCase": {"k:a": "PROD"}},
    {"k:a": "prod"},
    False,
)
cond(
    "str-not-equals-ignore-case-other",
    {"StringNotEqualsIgnoreCase": {"k:a": "PROD"}},
    {"k:a": "dev"},
    True,
)
cond("str-like-star", {"StringLike": {"k:a": "team-*"}}, {"k:a": "team-blue"}, True)
cond("str-like-star-empty", {"StringLike": {"k:a": "team-*"}}, {"k:a": "team-"}, True)
cond("str-like-no-match", {"StringLike": {"k:a": "team-*"}}, {"k:a": "teams"}, False)
cond("str-like-question", {"StringLike": {"k:a": "v?"}}, {"k:a": "v1"}, True)
cond("str-like-question-one-char", {"StringLike": {"k:a": "v?"}}, {"k:a": "v12"}, False)
cond("str-like-case-sensitive", {"StringLike": {"k:a": "Team*"}}, {"k:a": "team-x"}, False)
cond("str-like-regex-chars-literal", {"StringLike": {"k:a": "a.c*"}}, {"k:a": "abc"}, False)
cond("str-not-like", {"StringNotLike": {"k:a": "team-*"}}, {"k:a": "ops"}, True)
cond("str-not-like-matches", {"StringNotLike": {"k:a": "team-*"}}, {"k:a": "team-a"}, False)
cond("str-not-like-absent", {"StringNotLike": {"k:a": "team-*"}}, {}, True)

# --- numeric ------------------------------------------------------------------------------------
cond("num-equals", {"NumericEquals": {"k:n": "10"}}, {"k:n": "10.0"}, True)
cond("num-equals-differs", {"NumericEquals": {"k:n": "10"}}, {"k:n": "11"}, False)
cond("num-not-equals", {"NumericNotEquals": {"k:n": "10"}}, {"k:n": "11"}, True)
cond("num-not-equals-absent", {"NumericNotEquals": {"k:n": "10"}}, {}, True)
cond("num-less-than", {"NumericLessThan": {"k:n": "10"}}, {"k:n": "9"}, True)
cond("num-less-than-equal-bound", {"NumericLessThan": {"k:n": "10"}}, {"k:n": "10"}, False)
cond("num-less-than-equals", {"NumericLessThanEquals": {"k:n": "10"}}, {"k:n": "10"}, True)
cond("num-greater-than", {"NumericGreaterThan": {"k:n": "10"}}, {"k:n": "10.5"}, True)
cond("num-greater-than-equals", {"NumericGreaterThanEquals": {"k:n": "10"}}, {"k:n": "9.99"}, False)
cond("num-not-a-number", {"NumericLessThan": {"k:n": "10"}}, {"k:n": "ten"}, False)
cond("num-absent", {"NumericLessThan": {"k:n": "10"}}, {}, False)
cond("num-policy-number-type", {"NumericLessThan": {"k:n": 10}}, {"k:n": 3}, True)
cond(
    "num-mfa-age",
    {"NumericLessThan": {"aws:MultiFactorAuthAge": "3600"}},
    {"aws:MultiFactorAuthAge": "120"},
    True,
)

# --- dates --------------------------------------------------------------------------------------
T = "aws:CurrentTime"
cond(
    "date-greater-than",
    {"DateGreaterThan": {T: "2020-01-01T00:00:00Z"}},
    {T: "2021-06-01T12:00:00Z"},
    True,
)
cond(
    "date-greater-than-before",
    {"DateGreaterThan": {T: "2020-01-01T00:00:00Z"}},
    {T: "2019-12-31T23:59:59Z"},
    False,
)
cond(
    "date-less-than",
    {"DateLessThan": {T: "2030-01-01T00:00:00Z"}},
    {T: "2025-01-01T00:00:00Z"},
    True,
)
cond("date-equals", {"DateEquals": {T: "2024-02-29T10:00:00Z"}}, {T: "2024-02-29T10:00:00Z"}, True)
cond(
    "date-not-equals",
    {"DateNotEquals": {T: "2024-02-29T10:00:00Z"}},
    {T: "2024-03-01T10:00:00Z"},
    True,
)
cond("date-epoch-policy", {"DateGreaterThan": {T: "1577836800"}}, {T: "2021-01-01T00:00:00Z"}, True)
cond(
    "date-epoch-request",
    {"DateLessThan": {"aws:EpochTime": "2020-01-01T00:00:00Z"}},
    {"aws:EpochTime": "1500000000"},
    True,
)
cond(
    "date-offset",
    {"DateEquals": {T: "2024-01-01T01:00:00+01:00"}},
    {T: "2024-01-01T00:00:00Z"},
    True,
)
cond(
    "date-less-than-equals",
    {"DateLessThanEquals": {T: "2024-01-01"}},
    {T: "2024-01-01T00:00:00Z"},
    True,
)
cond(
    "date-greater-than-equals",
    {"DateGreaterThanEquals": {T: "2024-01-01"}},
    {T: "2023-12-31T23:00:00Z"},
    False,
)
cond("date-not-a-date", {"DateGreaterThan": {T: "2020-01-01T00:00:00Z"}}, {T: "yesterday"}, False)
cond("date-absent", {"DateGreaterThan": {T: "2020-01-01T00:00:00Z"}}, {}, False)

# --- bool, binary -------------------------------------------------------------------------------
MFA = "aws:MultiFactorAuthPresent"
cond("bool-true", {"Bool": {MFA: "true"}}, {MFA: "true"}, True)
cond("bool-false-request", {"Bool": {MFA: "true"}}, {MFA: "false"}, False)
cond("bool-json-bool-value", {"Bool": {MFA: True}}, {MFA: True}, True)
cond("bool-case-insensitive-value", {"Bool": {MFA: "TRUE"}}, {MFA: "true"}, True)
cond("bool-absent", {"Bool": {MFA: "false"}}, {}, False)
cond("bool-not-a-bool", {"Bool": {MFA: "true"}}, {MFA: "yes"}, False)
cond(
    "binary-equals",
    {"BinaryEquals": {"k:b": "QmluYXJ5VmFsdWU="}},
    {"k:b": "QmluYXJ5VmFsdWU="},
    True,
)
cond(
    "binary-equals-differs",
    {"BinaryEquals": {"k:b": "QmluYXJ5VmFsdWU="}},
    {"k:b": "b3RoZXI="},
    False,
)

# --- IP addresses -------------------------------------------------------------------------------
IP = "aws:SourceIp"
cond("ip-in-cidr", {"IpAddress": {IP: "203.0.113.0/24"}}, {IP: "203.0.113.7"}, True)
cond("ip-outside-cidr", {"IpAddress": {IP: "203.0.113.0/24"}}, {IP: "198.51.100.7"}, False)
cond("ip-single-address", {"IpAddress": {IP: "203.0.113.7"}}, {IP: "203.0.113.7"}, True)
cond(
    "ip-any-of-list",
    {"IpAddress": {IP: ["10.0.0.0/8", "192.168.0.0/16"]}},
    {IP: "192.168.4.4"},
    True,
)
cond("ip-v6", {"IpAddress": {IP: "2001:db8::/32"}}, {IP: "2001:db8:1::5"}, True)
cond("ip-v6-outside", {"IpAddress": {IP: "2001:db8::/32"}}, {IP: "2001:db9::5"}, False)
cond("ip-v4-not-in-v6", {"IpAddress": {IP: "2001:db8::/32"}}, {IP: "10.0.0.1"}, False)
cond("ip-not-an-address", {"IpAddress": {IP: "10.0.0.0/8"}}, {IP: "ten"}, False)
cond("not-ip-outside", {"NotIpAddress": {IP: "10.0.0.0/8"}}, {IP: "203.0.113.7"}, True)
cond("not-ip-inside", {"NotIpAddress": {IP: "10.0.0.0/8"}}, {IP: "10.2.3.4"}, False)
cond("not-ip-absent", {"NotIpAddress": {IP: "10.0.0.0/8"}}, {}, True)

# --- ARNs ---------------------------------------------------------------------------------------
PA = "aws:PrincipalArn"
cond(
    "arn-like-role",
    {"ArnLike": {PA: "arn:aws:iam::*:role/dev-*"}},
    {PA: "arn:aws:iam::123456789012:role/dev-ci"},
    True,
)
cond(
    "arn-like-other-type",
    {"ArnLike": {PA: "arn:aws:iam::*:role/dev-*"}},
    {PA: "arn:aws:iam::123456789012:user/dev-ci"},
    False,
)
cond(
    "arn-like-star-not-crossing-colon",
    {"ArnLike": {PA: "arn:aws:s3:::*"}},
    {PA: "arn:aws:iam::1:role/x"},
    False,
)
cond(
    "arn-like-region-star",
    {"ArnLike": {PA: "arn:aws:ec2:*:123456789012:instance/*"}},
    {PA: "arn:aws:ec2:eu-west-1:123456789012:instance/i-1"},
    True,
)
cond(
    "arn-equals",
    {"ArnEquals": {PA: "arn:broker:iam::000000000000:role/dev"}},
    {PA: "arn:broker:iam::000000000000:role/dev"},
    True,
)
cond(
    "arn-equals-case-sensitive",
    {"ArnEquals": {PA: "arn:broker:iam::000000000000:role/dev"}},
    {PA: "arn:broker:iam::000000000000:role/Dev"},
    False,
)
cond(
    "arn-not-like",
    {"ArnNotLike": {PA: "arn:aws:iam::*:role/admin*"}},
    {PA: "arn:aws:iam::1:role/dev"},
    True,
)
cond("arn-not-equals-absent", {"ArnNotEquals": {PA: "arn:aws:iam::1:role/dev"}}, {}, True)
cond(
    "arn-like-resource-with-colons",
    {"ArnLike": {PA: "arn:aws:logs:*:*:log-group:*"}},
    {PA: "arn:aws:logs:us-east-1:1:log-group:g:log-stream:s"},
    True,
)
cond("arn-like-not-an-arn", {"ArnLike": {PA: "arn:aws:iam::*:role/*"}}, {PA: "role/x"}, False)

# --- Null -------------------------------------------------------------------------------------
cond("null-true-absent", {"Null": {"aws:TokenIssueTime": "true"}}, {}, True)
cond(
    "null-true-present",
    {"Null": {"aws:TokenIssueTime": "true"}},
    {"aws:TokenIssueTime": "2024-01-01T00:00:00Z"},
    False,
)
cond("null-false-present", {"Null": {"k:a": "false"}}, {"k:a": "x"}, True)
cond("null-false-absent", {"Null": {"k:a": "false"}}, {}, False)
cond("null-empty-list-is-absent", {"Null": {"k:t": "true"}}, {"k:t": []}, True)

# --- IfExists -----------------------------------------------------------------------------------
cond("if-exists-absent", {"StringEqualsIfExists": {"k:a": "x"}}, {}, True)
cond("if-exists-present-match", {"StringEqualsIfExists": {"k:a": "x"}}, {"k:a": "x"}, True)
cond("if-exists-present-mismatch", {"StringEqualsIfExists": {"k:a": "x"}}, {"k:a": "y"}, False)
cond("if-exists-numeric-absent", {"NumericLessThanIfExists": {"k:n": "5"}}, {}, True)
cond("if-exists-numeric-present", {"NumericLessThanIfExists": {"k:n": "5"}}, {"k:n": "7"}, False)
cond("if-exists-ip-absent", {"IpAddressIfExists": {IP: "10.0.0.0/8"}}, {}, True)
cond("if-exists-bool-present", {"BoolIfExists": {MFA: "true"}}, {MFA: "false"}, False)
cond(
    "if-exists-arn-like",
    {"ArnLikeIfExists": {PA: "arn:aws:iam::*:role/*"}},
    {PA: "arn:aws:iam::1:role/r"},
    True,
)
cond("if-exists-date-absent", {"DateLessThanIfExists": {T: "2020-01-01"}}, {}, True)

# --- set qualifiers -----------------------------------------------------------------------------
TK = "aws:TagKeys"
ANY = {"ForAnyValue:StringEquals": {TK: ["env", "team"]}}
ALL = {"ForAllValues:StringEquals": {TK: ["env", "team"]}}
cond("any-value-one-matches", ANY, {TK: ["env", "cost"]}, True)
cond("any-value-none-matches", ANY, {TK: ["cost"]}, False)
cond("any-value-absent-false", ANY, {}, False)
cond("any-value-empty-false", ANY, {TK: []}, False)
cond("any-value-single-string", ANY, {TK: "team"}, True)
cond("all-values-subset", ALL, {TK: ["env"]}, True)
cond("all-values-all", ALL, {TK: ["team", "env"]}, True)
cond("all-values-extra", ALL, {TK: ["env", "cost"]}, False)
cond("all-values-absent-true", ALL, {}, True)
cond("all-values-empty-true", ALL, {TK: []}, True)
cond("all-values-with-null-false-absent", {**ALL, "Null": {TK: "false"}}, {}, False)
cond(
    "any-value-not-equals", {"ForAnyValue:StringNotEquals": {TK: ["env"]}}, {TK: ["env", "x"]}, True
)
cond(
    "any-value-not-equals-all-listed",
    {"ForAnyValue:StringNotEquals": {TK: ["env"]}},
    {TK: ["env"]},
    False,
)
cond(
    "all-values-not-equals",
    {"ForAllValues:StringNotEquals": {TK: ["secret"]}},
    {TK: ["a", "b"]},
    True,
)
cond(
    "all-values-not-equals-one-listed",
    {"ForAllValues:StringNotEquals": {TK: ["secret"]}},
    {TK: ["a", "secret"]},
    False,
)
cond("all-values-like", {"ForAllValues:StringLike": {TK: "app-*"}}, {TK: ["app-a", "app-b"]}, True)
cond("any-value-like-ifexists-absent", {"ForAnyValue:StringLikeIfExists": {TK: "app-*"}}, {}, True)
cond(
    "any-value-ignore-case",
    {"ForAnyValue:StringEqualsIgnoreCase": {"corp:groups": "Admins"}},
    {"corp:groups": ["dev", "admins"]},
    True,
)

# --- several keys (AND), several values (OR), several operators (AND) ---------------------------
TWO = {"StringEquals": {"k:a": "x", "k:b": "y"}}
cond("keys-and-both", TWO, {"k:a": "x", "k:b": "y"}, True)
cond("keys-and-one-wrong", TWO, {"k:a": "x", "k:b": "z"}, False)
cond("keys-and-one-absent", TWO, {"k:a": "x"}, False)
cond("values-or", {"StringEquals": {"k:a": ["x", "y", "z"]}}, {"k:a": "z"}, True)
cond(
    "operators-and-both",
    {"StringEquals": {"k:a": "x"}, "IpAddress": {IP: "10.0.0.0/8"}},
    {"k:a": "x", IP: "10.1.1.1"},
    True,
)
cond(
    "operators-and-one-fails",
    {"StringEquals": {"k:a": "x"}, "IpAddress": {IP: "10.0.0.0/8"}},
    {"k:a": "x", IP: "11.1.1.1"},
    False,
)
cond(
    "negated-multi-key-and",
    {"StringNotEquals": {"k:a": "x", "k:b": "y"}},
    {"k:a": "q", "k:b": "y"},
    False,
)

# --- policy variables ---------------------------------------------------------------------------
HOME = "arn:aws:s3:::home/${aws:username}/*"


def var(case_id: str, resource_pattern: str, resource: str, context: dict[str, Any],
        allowed: bool, version: str | None = "2012-10-17") -> None:  # fmt: skip
    policy = {"p": doc(st(action=S3, resource=resource_pattern), version=version)}
    if allowed:
        add(case_id, policy, S3, resource, context, "allowed", ["p#S"])
    else:
        add(case_id, policy, S3, resource, context, "implicitDeny")


U = "aws:username"
var("var-username", HOME, "arn:aws:s3:::home/alice/f", {U: "alice"}, True)
var("var-username-other", HOME, "arn:aws:s3:::home/bob/f", {U: "alice"}, False)
var("var-absent", HOME, "arn:aws:s3:::home//f", {}, False)
var("var-old-version-literal", HOME, "arn:aws:s3:::home/alice/f", {U: "alice"}, False, "2008-10-17")
var(
    "var-old-version-literal-text",
    HOME,
    "arn:aws:s3:::home/${aws:username}/f",
    {U: "alice"},
    True,
    "2008-10-17",
)
var("var-no-version-literal", HOME, "arn:aws:s3:::home/alice/f", {U: "alice"}, False, None)
var(
    "var-broker-alias",
    "arn:aws:s3:::home/${broker:username}/*",
    "arn:aws:s3:::home/alice/f",
    {U: "alice"},
    True,
)
var(
    "var-key-case",
    "arn:aws:s3:::home/${AWS:UserName}/*",
    "arn:aws:s3:::home/alice/f",
    {U: "alice"},
    True,
)
var("var-value-literal-star", HOME, "arn:aws:s3:::home/alXce/f", {U: "al*"}, False)
var("var-value-literal-star-exact", HOME, "arn:aws:s3:::home/al*/f", {U: "al*"}, True)
var(
    "var-default",
    "arn:aws:s3:::home/${aws:username, 'guest'}/*",
    "arn:aws:s3:::home/guest/f",
    {},
    True,
)
var(
    "var-default-unused",
    "arn:aws:s3:::home/${aws:username, 'guest'}/*",
    "arn:aws:s3:::home/guest/f",
    {U: "alice"},
    False,
)
var("var-escape-star", "arn:aws:s3:::b/a${*}", "arn:aws:s3:::b/a*", {}, True)
var("var-escape-star-not-wild", "arn:aws:s3:::b/a${*}", "arn:aws:s3:::b/ab", {}, False)
var("var-escape-question", "arn:aws:s3:::b/a${?}", "arn:aws:s3:::b/a?", {}, True)
var("var-escape-dollar", "arn:aws:s3:::b/${$}x", "arn:aws:s3:::b/$x", {}, True)
var(
    "var-principal-tag",
    "arn:aws:s3:::team/${aws:PrincipalTag/team}/*",
    "arn:aws:s3:::team/blue/x",
    {"aws:PrincipalTag/team": "blue"},
    True,
)
var(
    "var-provider-claim",
    "arn:aws:s3:::ci/${github:sub}",
    "arn:aws:s3:::ci/repo:o/r:ref:main",
    {"github:sub": "repo:o/r:ref:main"},
    True,
)
var(
    "var-multivalued-no-substitution",
    "arn:aws:s3:::g/${corp:groups}",
    "arn:aws:s3:::g/a",
    {"corp:groups": ["a", "b"]},
    False,
)
cond(
    "var-in-condition",
    {"StringEquals": {"k:owner": "${aws:username}"}},
    {"k:owner": "alice", U: "alice"},
    True,
)
cond(
    "var-in-condition-mismatch",
    {"StringEquals": {"k:owner": "${aws:username}"}},
    {"k:owner": "bob", U: "alice"},
    False,
)
cond(
    "var-in-condition-like",
    {"StringLike": {"k:path": "home/${aws:username}/*"}},
    {"k:path": "home/alice/x", U: "alice"},
    True,
)
cond(
    "var-in-condition-old-version",
    {"StringEquals": {"k:owner": "${aws:username}"}},
    {"k:owner": "alice", U: "alice"},
    False,
    version="2008-10-17",
)
cond(
    "var-in-arn-condition",
    {"ArnLike": {PA: "arn:aws:iam::*:role/${aws:PrincipalTag/team}-*"}},
    {PA: "arn:aws:iam::1:role/blue-x", "aws:PrincipalTag/team": "blue"},
    True,
)

# --- actions and resources ----------------------------------------------------------------------


def elem(
    case_id: str, statement: dict[str, Any], action: str, resource: str, allowed: bool
) -> None:
    policy = {"p": doc(statement)}
    if allowed:
        add(case_id, policy, action, resource, {}, "allowed", ["p#S"])
    else:
        add(case_id, policy, action, resource, {}, "implicitDeny")


elem("action-exact", st(action="s3:GetObject"), "s3:GetObject", OBJ, True)
elem("action-case-insensitive", st(action="S3:getobject"), "s3:GetObject", OBJ, True)
elem("action-other", st(action="s3:GetObject"), "s3:PutObject", OBJ, False)
elem("action-prefix-wildcard", st(action="s3:Get*"), "s3:GetObjectAcl", OBJ, True)
elem("action-service-wildcard", st(action="s3:*"), "s3:DeleteBucket", OBJ, True)
elem("action-service-wildcard-other-service", st(action="s3:*"), "ec2:RunInstances", OBJ, False)
elem("action-question", st(action="s3:?etObject"), "s3:GetObject", OBJ, True)
elem("action-star", st(action="*"), "iam:CreateUser", OBJ, True)
elem("action-list", st(action=["ec2:*", "s3:GetObject"]), "s3:GetObject", OBJ, True)
elem("action-wildcard-in-service", st(action="s?:GetObject"), "s3:GetObject", OBJ, True)
elem("not-action-other", st(NotAction="iam:*"), "s3:GetObject", OBJ, True)
elem("not-action-listed", st(NotAction="iam:*"), "iam:CreateUser", OBJ, False)
elem("not-action-list", st(NotAction=["iam:*", "sts:*"]), "sts:AssumeRole", OBJ, False)
elem("resource-exact", st(resource=OBJ), S3, OBJ, True)
elem("resource-case-sensitive", st(resource="arn:aws:s3:::Bucket/key"), S3, OBJ, False)
elem(
    "resource-wildcard-crosses-slash",
    st(resource="arn:aws:s3:::bucket/*"),
    S3,
    "arn:aws:s3:::bucket/a/b/c",
    True,
)
elem(
    "resource-wildcard-other-bucket",
    st(resource="arn:aws:s3:::bucket/*"),
    S3,
    "arn:aws:s3:::bucket2/a",
    False,
)
elem("resource-question", st(resource="arn:aws:s3:::bucket/k?y"), S3, OBJ, True)
elem("resource-list", st(resource=["arn:aws:s3:::a/*", "arn:aws:s3:::bucket/*"]), S3, OBJ, True)
elem("not-resource-other", st(NotResource="arn:aws:s3:::secret/*"), S3, OBJ, True)
elem(
    "not-resource-listed",
    st(NotResource="arn:aws:s3:::secret/*"),
    S3,
    "arn:aws:s3:::secret/x",
    False,
)
elem(
    "not-action-and-not-resource",
    st(NotAction="iam:*", NotResource="arn:aws:s3:::secret/*"),
    S3,
    OBJ,
    True,
)
elem(
    "http-route",
    st(action="http:GET", resource="https://grafana.example.com/*"),
    "http:GET",
    "https://grafana.example.com/d/1",
    True,
)
elem(
    "http-method",
    st(action="http:GET", resource="https://grafana.example.com/*"),
    "http:POST",
    "https://grafana.example.com/d/1",
    False,
)
elem(
    "http-host-wildcard",
    st(action="http:*", resource="https://*.example.com/*"),
    "http:GET",
    "https://app.example.com/",
    True,
)
elem(
    "http-host-wildcard-suffix-trick",
    st(action="http:*", resource="https://*.example.com/*"),
    "http:GET",
    "https://example.com.evil.test/",
    False,
)
elem("regex-metachar-literal", st(resource="arn:aws:s3:::b/(a|b)+"), S3, "arn:aws:s3:::b/a", False)

# --- evaluation logic: identity policies, boundaries, session policies -------------------------
ALLOW = st("Allow", action="s3:*", resource="*")
DENY = st("Deny", "Deny", action="s3:*", resource="arn:aws:s3:::secret/*")
SECRET = "arn:aws:s3:::secret/x"

add("eval-no-policies", {}, S3, OBJ, {}, "implicitDeny")
add("eval-allow", {"p": doc(ALLOW)}, S3, OBJ, {}, "allowed", ["p#Allow"])
add(
    "eval-deny-wins-same-policy",
    {"p": doc(ALLOW, DENY)},
    S3,
    SECRET,
    {},
    "explicitDeny",
    ["p#Deny"],
)
add(
    "eval-deny-wins-other-policy",
    {"a": doc(ALLOW), "d": doc(DENY)},
    S3,
    SECRET,
    {},
    "explicitDeny",
    ["d#Deny"],
)
add("eval-deny-alone", {"d": doc(DENY)}, S3, SECRET, {}, "explicitDeny", ["d#Deny"])
add("eval-deny-not-matching", {"p": doc(ALLOW, DENY)}, S3, OBJ, {}, "allowed", ["p#Allow"])
add(
    "eval-every-allow-listed",
    {"a": doc(ALLOW), "b": doc(st("B", action=S3, resource=OBJ))},
    S3,
    OBJ,
    {},
    "allowed",
    ["a#Allow", "b#B"],
)
add(
    "eval-every-deny-listed",
    {"a": doc(DENY), "b": doc(st("D2", "Deny", action="*", resource="*"))},
    S3,
    SECRET,
    {},
    "explicitDeny",
    ["a#Deny", "b#D2"],
)
add(
    "eval-index-without-sid",
    {"p": doc(st(None, action=S3, resource=OBJ))},
    S3,
    OBJ,
    {},
    "allowed",
    ["p#0"],
)
add(
    "eval-conditional-deny-off",
    {"p": doc(ALLOW, st("D", "Deny", Condition={"Bool": {MFA: "false"}}))},
    S3,
    OBJ,
    {MFA: "true"},
    "allowed",
    ["p#Allow"],
)
add(
    "eval-conditional-deny-on",
    {"p": doc(ALLOW, st("D", "Deny", Condition={"Bool": {MFA: "false"}}))},
    S3,
    OBJ,
    {MFA: "false"},
    "explicitDeny",
    ["p#D"],
)
add(
    "eval-deny-not-action",
    {"p": doc(ALLOW, st("D", "Deny", NotAction="s3:Get*"))},
    "s3:PutObject",
    OBJ,
    {},
    "explicitDeny",
    ["p#D"],
)
add(
    "eval-deny-not-action-excluded",
    {"p": doc(ALLOW, st("D", "Deny", NotAction="s3:Get*"))},
    S3,
    OBJ,
    {},
    "allowed",
    ["p#Allow"],
)
add(
    "eval-statement-object",
    {"p": {"Version": "2012-10-17", "Statement": ALLOW}},
    S3,
    OBJ,
    {},
    "allowed",
    ["p#Allow"],
)

BOUND = doc(st("B", action="s3:Get*", resource="*"))
add(
    "boundary-both-allow",
    {"p": doc(ALLOW)},
    S3,
    OBJ,
    {},
    "allowed",
    ["p#Allow", "boundary#B"],
    boundary=BOUND,
)
add(
    "boundary-does-not-allow",
    {"p": doc(ALLOW)},
    "s3:PutObject",
    OBJ,
    {},
    "implicitDeny",
    boundary=BOUND,
)
add(
    "boundary-alone-grants-nothing",
    {"p": doc(st("X", action="ec2:*"))},
    S3,
    OBJ,
    {},
    "implicitDeny",
    boundary=BOUND,
)
add(
    "boundary-deny-wins",
    {"p": doc(ALLOW)},
    S3,
    OBJ,
    {},
    "explicitDeny",
    ["boundary#BD"],
    boundary=doc(st("BD", "Deny", action=S3)),
)
add(
    "boundary-empty-allows-nothing",
    {"p": doc(ALLOW)},
    S3,
    OBJ,
    {},
    "implicitDeny",
    boundary=doc(st("B", action="ec2:*")),
)
add(
    "boundary-conditional",
    {"p": doc(ALLOW)},
    S3,
    OBJ,
    {IP: "10.0.0.1"},
    "allowed",
    ["p#Allow", "boundary#B"],
    boundary=doc(st("B", Condition={"IpAddress": {IP: "10.0.0.0/8"}})),
)
add(
    "boundary-conditional-fails",
    {"p": doc(ALLOW)},
    S3,
    OBJ,
    {IP: "11.0.0.1"},
    "implicitDeny",
    boundary=doc(st("B", Condition={"IpAddress": {IP: "10.0.0.0/8"}})),
)

SESSION = {"s": doc(st("Sess", action="s3:GetObject", resource="*"))}
add(
    "session-both-allow",
    {"p": doc(ALLOW)},
    S3,
    OBJ,
    {},
    "allowed",
    ["p#Allow", "s#Sess"],
    session=SESSION,
)
add(
    "session-does-not-allow",
    {"p": doc(ALLOW)},
    "s3:PutObject",
    OBJ,
    {},
    "implicitDeny",
    session=SESSION,
)
add(
    "session-alone-grants-nothing",
    {"p": doc(st("X", action="ec2:*"))},
    S3,
    OBJ,
    {},
    "implicitDeny",
    session=SESSION,
)
add(
    "session-deny-wins",
    {"p": doc(ALLOW)},
    S3,
    OBJ,
    {},
    "explicitDeny",
    ["s#SD"],
    session={"s": doc(st("SD", "Deny", action="s3:*"))},
)
add(
    "session-any-of-several",
    {"p": doc(ALLOW)},
    S3,
    OBJ,
    {},
    "allowed",
    ["p#Allow", "s2#S2"],
    session={"s1": doc(st("S1", action="ec2:*")), "s2": doc(st("S2", action="s3:*"))},
)
add(
    "session-and-boundary",
    {"p": doc(ALLOW)},
    S3,
    OBJ,
    {},
    "allowed",
    ["p#Allow", "boundary#B", "s#Sess"],
    boundary=BOUND,
    session=SESSION,
)
add(
    "session-and-boundary-boundary-refuses",
    {"p": doc(ALLOW)},
    S3,
    OBJ,
    {},
    "implicitDeny",
    boundary=doc(st("B", action="ec2:*")),
    session=SESSION,
)
add(
    "session-and-boundary-session-refuses",
    {"p": doc(ALLOW)},
    "s3:GetBucketAcl",
    OBJ,
    {},
    "implicitDeny",
    boundary=BOUND,
    session=SESSION,
)
add(
    "identity-deny-beats-boundary-and-session",
    {"p": doc(ALLOW, DENY)},
    S3,
    SECRET,
    {},
    "explicitDeny",
    ["p#Deny"],
    boundary=BOUND,
    session=SESSION,
)

# --- global keys: aws:/broker: aliases, case ------------------------------------------------
cond(
    "alias-aws-policy-broker-context",
    {"StringEquals": {"aws:username": "alice"}},
    {"broker:username": "alice"},
    True,
)
cond(
    "alias-broker-policy-aws-context",
    {"IpAddress": {"broker:SourceIp": "10.0.0.0/8"}},
    {"aws:SourceIp": "10.9.9.9"},
    True,
)
cond("alias-key-case", {"StringEquals": {"AWS:USERNAME": "alice"}}, {"aws:username": "alice"}, True)
cond(
    "alias-tag-key",
    {"StringEquals": {"aws:PrincipalTag/Team": "blue"}},
    {"broker:principaltag/team": "blue"},
    True,
)
cond(
    "alias-not-other-prefix",
    {"StringEquals": {"aws:username": "alice"}},
    {"corp:username": "alice"},
    False,
)

# --- trust (resource-based) policies -------------------------------------------------------
WEB = "sts:AssumeRoleWithWebIdentity"
GOOGLE = {"Federated": ["google", "arn:broker:iam::000000000000:oidc-provider/google"]}


def trust(case_id: str, statements: list[dict[str, Any]], caller: dict[str, Any],
          context: dict[str, Any], decision: str, deciding: tuple[str, ...] | list[str] = (),
          action: str = WEB) -> None:  # fmt: skip
    document = {"Version": "2012-10-17", "Statement": statements}
    add(case_id, {"trust": document}, action, "arn:broker:iam::000000000000:role/dev",
        context, decision, deciding, caller=caller)  # fmt: skip


def tst(sid: str, principal: Any, effect: str = "Allow", **extra: Any) -> dict[str, Any]:
    return {"Sid": sid, "Effect": effect, "Principal": principal, "Action": WEB, **extra}


HD = {"StringEquals": {"google:hd": "example.com"}}
trust(
    "trust-federated-name",
    [tst("T", {"Federated": "google"}, Condition=HD)],
    GOOGLE,
    {"google:hd": "example.com"},
    "allowed",
    ["trust#T"],
)
trust(
    "trust-federated-arn",
    [tst("T", {"Federated": "arn:broker:iam::000000000000:oidc-provider/google"})],
    GOOGLE,
    {},
    "allowed",
    ["trust#T"],
)
trust("trust-other-provider", [tst("T", {"Federated": "corp"})], GOOGLE, {}, "implicitDeny")
trust(
    "trust-claim-mismatch",
    [tst("T", {"Federated": "google"}, Condition=HD)],
    GOOGLE,
    {"google:hd": "evil.test"},
    "implicitDeny",
)
trust("trust-everyone", [tst("T", "*")], GOOGLE, {}, "allowed", ["trust#T"])
trust("trust-aws-star", [tst("T", {"AWS": "*"})], GOOGLE, {}, "allowed", ["trust#T"])
trust(
    "trust-wrong-action",
    [tst("T", {"Federated": "google"})],
    GOOGLE,
    {},
    "implicitDeny",
    action="sts:AssumeRole",
)
trust(
    "trust-deny-wins",
    [
        tst("T", {"Federated": "google"}),
        tst(
            "D",
            {"Federated": "google"},
            "Deny",
            Condition={"StringEquals": {"google:email": "mallory@example.com"}},
        ),
    ],
    GOOGLE,
    {"google:email": "mallory@example.com"},
    "explicitDeny",
    ["trust#D"],
)
trust(
    "trust-not-principal-deny",
    [tst("T", "*"), tst("D", None, "Deny", NotPrincipal={"Federated": "google"})],
    {"Federated": ["corp"]},
    {},
    "explicitDeny",
    ["trust#D"],
)
trust(
    "trust-not-principal-deny-excluded",
    [tst("T", "*"), tst("D", None, "Deny", NotPrincipal={"Federated": "google"})],
    GOOGLE,
    {},
    "allowed",
    ["trust#T"],
)
trust(
    "trust-role-arn-principal",
    [
        {
            "Sid": "T",
            "Effect": "Allow",
            "Principal": {"AWS": "arn:broker:iam::000000000000:role/ci"},
            "Action": "sts:AssumeRole",
        }
    ],
    {"AWS": ["arn:broker:iam::000000000000:role/ci"]},
    {},
    "allowed",
    ["trust#T"],
    action="sts:AssumeRole",
)
trust(
    "trust-role-arn-other",
    [
        {
            "Sid": "T",
            "Effect": "Allow",
            "Principal": {"AWS": "arn:broker:iam::000000000000:role/ci"},
            "Action": "sts:AssumeRole",
        }
    ],
    {"AWS": ["arn:broker:iam::000000000000:role/dev"]},
    {},
    "implicitDeny",
    action="sts:AssumeRole",
)
trust(
    "trust-service",
    [
        {
            "Sid": "T",
            "Effect": "Allow",
            "Principal": {"Service": "ec2.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ],
    {"Service": "ec2.amazonaws.com"},
    {},
    "allowed",
    ["trust#T"],
    action="sts:AssumeRole",
)
trust(
    "trust-groups-any-value",
    [
        tst(
            "T",
            {"Federated": "google"},
            Condition={"ForAnyValue:StringEquals": {"google:groups": "admins"}},
        )
    ],
    GOOGLE,
    {"google:groups": ["dev", "admins"]},
    "allowed",
    ["trust#T"],
)
trust(
    "trust-sub-like",
    [
        tst(
            "T",
            {"Federated": "github"},
            Condition={"StringLike": {"github:sub": "repo:org/*:ref:refs/heads/main"}},
        )
    ],
    {"Federated": "github"},
    {"github:sub": "repo:org/app:ref:refs/heads/main"},
    "allowed",
    ["trust#T"],
)
trust(
    "trust-sub-like-branch",
    [
        tst(
            "T",
            {"Federated": "github"},
            Condition={"StringLike": {"github:sub": "repo:org/*:ref:refs/heads/main"}},
        )
    ],
    {"Federated": "github"},
    {"github:sub": "repo:org/app:ref:refs/heads/dev"},
    "implicitDeny",
)

for _c in CASES:
    for _s in _c.identity.get("trust", {}).get("Statement", []):
        if _s.get("Principal", "") is None:
            del _s["Principal"]
