"""evaluate and evaluate_trust: matching rules, the decision logic, and what decided it."""

from __future__ import annotations

from typing import Any

import pytest

from broker.domain.policy.wildcard import Glob
from broker.policy import Decision, MatchedStatement, Policy, evaluate, evaluate_trust, parse_policy


def policy(
    *statements: dict[str, Any], name: str = "p", version: str | None = "2012-10-17"
) -> Policy:
    document: dict[str, Any] = {"Statement": list(statements)}
    if version is not None:
        document["Version"] = version
    return parse_policy(document, name=name)


def allow(action: Any = "*", resource: Any = "*", **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def deny(action: Any = "*", resource: Any = "*", **extra: Any) -> dict[str, Any]:
    return {"Effect": "Deny", "Action": action, "Resource": resource, **extra}


# --- wildcards ---------------------------------------------------------------------------------

GLOB_CASES: list[tuple[str, str, str, bool]] = [
    ("literal", "abc", "abc", True),
    ("literal-differs", "abc", "abd", False),
    ("star-all", "*", "", True),
    ("star-empty-run", "a*b", "ab", True),
    ("star-crosses-slash-colon", "arn:*", "arn:x:y/z", True),
    ("star-middle", "a*c*e", "abcde", True),
    ("star-middle-order", "a*c*e", "aecxe", True),
    ("star-middle-missing", "a*c*e", "abde", False),
    ("stars-suffix-overlap", "*ab*ab", "ab", False),
    ("stars-suffix", "*ab*ab", "abab", True),
    ("question", "a?c", "abc", True),
    ("question-not-empty", "a?c", "ac", False),
    ("question-star", "?*?", "ab", True),
    ("question-star-short", "?*?", "a", False),
    ("question-in-middle-segment", "x*a?c*y", "xxxabcyy", True),
    ("question-newline", "a?b", "a\nb", True),
    ("dot-literal", "a.b", "aXb", False),
    ("plus-paren-literal", "f(x)+[1]", "f(x)+[1]", True),
    ("regex-meta-no-regex", "^a$|b", "^a$|b", True),
    ("backslash", "a\\*", "a\\zz", True),
    ("many-stars-no-match", "a*a*a*a*a*a*a*a*a*b", "a" * 5000, False),
    ("many-stars-match", "a*a*a*a*a*a*a*a*a*b", "a" * 5000 + "b", True),
]


@pytest.mark.parametrize(
    ("pattern", "subject", "expected"),
    [(p, s, e) for _, p, s, e in GLOB_CASES],
    ids=[c[0] for c in GLOB_CASES],
)
def test_glob(pattern: str, subject: str, expected: bool) -> None:
    assert Glob.of(pattern).matches(subject) is expected


def test_glob_ignore_case() -> None:
    assert Glob.of("S3:Get*", ignore_case=True).matches("s3:GETOBJECT")
    assert Glob.of("*", ignore_case=True).is_universal


# --- actions and resources ---------------------------------------------------------------------

MATCH_CASES: list[tuple[str, dict[str, Any], str, str, str]] = [
    ("action-exact", allow("s3:GetObject"), "s3:GetObject", "r", "allowed"),
    ("action-case-insensitive", allow("S3:getobject"), "s3:GetObject", "r", "allowed"),
    ("action-prefix-wildcard", allow("s3:Get*"), "s3:GetObjectAcl", "r", "allowed"),
    ("action-question", allow("s3:Get?bject"), "s3:GetObject", "r", "allowed"),
    ("action-other-service", allow("s3:*"), "sqs:SendMessage", "r", "implicitDeny"),
    ("action-service-wildcard", allow("s*:Send*"), "sqs:SendMessage", "r", "allowed"),
    ("action-list", allow(["ec2:*", "s3:List*"]), "s3:ListBucket", "r", "allowed"),
    (
        "notaction-allows-others",
        {"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"},
        "s3:GetObject",
        "r",
        "allowed",
    ),
    (
        "notaction-excludes",
        {"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"},
        "IAM:CreateUser",
        "r",
        "implicitDeny",
    ),
    (
        "resource-exact",
        allow(resource="arn:aws:s3:::b/k"),
        "s3:GetObject",
        "arn:aws:s3:::b/k",
        "allowed",
    ),
    (
        "resource-case-sensitive",
        allow(resource="arn:aws:s3:::B/k"),
        "s3:GetObject",
        "arn:aws:s3:::b/k",
        "implicitDeny",
    ),
    (
        "resource-star-crosses",
        allow(resource="arn:aws:s3:::b/*"),
        "s3:GetObject",
        "arn:aws:s3:::b/x/y:z",
        "allowed",
    ),
    (
        "resource-regex-meta",
        allow(resource="https://a.example.com/(x)+/*"),
        "http:GET",
        "https://a.example.com/(x)+/y",
        "allowed",
    ),
    (
        "resource-dot-not-any",
        allow(resource="https://a.example.com/*"),
        "http:GET",
        "https://aXexample.com/",
        "implicitDeny",
    ),
    ("resource-question", allow(resource="doc-?"), "s3:GetObject", "doc-1", "allowed"),
    (
        "notresource",
        {"Effect": "Allow", "Action": "*", "NotResource": "secret/*"},
        "s3:GetObject",
        "public/a",
        "allowed",
    ),
    (
        "notresource-excludes",
        {"Effect": "Allow", "Action": "*", "NotResource": "secret/*"},
        "s3:GetObject",
        "secret/a",
        "implicitDeny",
    ),
    (
        "http-route",
        allow("http:GET", "https://grafana.example.com/*"),
        "http:GET",
        "https://grafana.example.com/d/1",
        "allowed",
    ),
    (
        "http-method",
        allow("http:GET", "https://grafana.example.com/*"),
        "http:POST",
        "https://grafana.example.com/d/1",
        "implicitDeny",
    ),
]


@pytest.mark.parametrize(
    ("statement", "action", "resource", "expected"),
    [(s, a, r, e) for _, s, a, r, e in MATCH_CASES],
    ids=[c[0] for c in MATCH_CASES],
)
def test_action_and_resource_matching(
    statement: dict[str, Any], action: str, resource: str, expected: str
) -> None:
    decision = evaluate(action=action, resource=resource, context={}, identity=[policy(statement)])
    assert decision.decision == expected


RESOURCE_VARIABLE_CASES: list[tuple[str, str | None, str, dict[str, Any], str, bool]] = [
    (
        "username",
        "2012-10-17",
        "home/${aws:username}/*",
        {"aws:username": "alice"},
        "home/alice/x",
        True,
    ),
    (
        "username-other",
        "2012-10-17",
        "home/${aws:username}/*",
        {"aws:username": "alice"},
        "home/bob/x",
        False,
    ),
    (
        "broker-alias",
        "2012-10-17",
        "home/${broker:username}/*",
        {"aws:username": "alice"},
        "home/alice/x",
        True,
    ),
    ("claim", "2012-10-17", "u/${google:sub}", {"google:sub": "123"}, "u/123", True),
    (
        "principal-tag",
        "2012-10-17",
        "t/${aws:PrincipalTag/team}/*",
        {"aws:principaltag/TEAM": "ops"},
        "t/ops/a",
        True,
    ),
    ("absent-no-match", "2012-10-17", "home/${aws:username}/*", {}, "home//x", False),
    ("absent-default", "2012-10-17", "home/${aws:username, 'anon'}/*", {}, "home/anon/x", True),
    (
        "value-is-literal",
        "2012-10-17",
        "home/${aws:username}",
        {"aws:username": "*"},
        "home/alice",
        False,
    ),
    ("escapes", "2012-10-17", "a/${*}/${?}/${$}", {}, "a/*/?/$", True),
    (
        "no-version-literal",
        None,
        "home/${aws:username}",
        {"aws:username": "alice"},
        "home/${aws:username}",
        True,
    ),
    (
        "no-version-no-substitution",
        None,
        "home/${aws:username}",
        {"aws:username": "alice"},
        "home/alice",
        False,
    ),
    (
        "old-version-literal",
        "2008-10-17",
        "home/${aws:username}",
        {"aws:username": "alice"},
        "home/alice",
        False,
    ),
]


@pytest.mark.parametrize(
    ("version", "pattern", "context", "resource", "expected"),
    [(v, p, c, r, e) for _, v, p, c, r, e in RESOURCE_VARIABLE_CASES],
    ids=[c[0] for c in RESOURCE_VARIABLE_CASES],
)
def test_variables_in_resources(
    version: str | None, pattern: str, context: dict[str, Any], resource: str, expected: bool
) -> None:
    p = policy(allow("s3:GetObject", pattern), version=version)
    decision = evaluate(action="s3:GetObject", resource=resource, context=context, identity=[p])
    assert decision.allowed is expected


# --- the decision logic ------------------------------------------------------------------------

READ = allow("s3:Get*", "arn:aws:s3:::b/*", Sid="Read")
WRITE = allow("s3:Put*", "arn:aws:s3:::b/*", Sid="Write")
DENY_SECRET = deny("s3:*", "arn:aws:s3:::b/secret/*", Sid="NoSecret")

LOGIC_CASES: list[tuple[str, list[Policy], Policy | None, list[Policy], str, str, str]] = [
    # (id, identity, boundary, session, action, resource, decision)
    ("no-policies", [], None, [], "s3:GetObject", "arn:aws:s3:::b/k", "implicitDeny"),
    ("identity-allows", [policy(READ)], None, [], "s3:GetObject", "arn:aws:s3:::b/k", "allowed"),
    (
        "identity-silent",
        [policy(READ)],
        None,
        [],
        "s3:PutObject",
        "arn:aws:s3:::b/k",
        "implicitDeny",
    ),
    (
        "deny-wins-same-policy",
        [policy(READ, DENY_SECRET)],
        None,
        [],
        "s3:GetObject",
        "arn:aws:s3:::b/secret/k",
        "explicitDeny",
    ),
    (
        "deny-wins-other-policy",
        [policy(READ), policy(DENY_SECRET)],
        None,
        [],
        "s3:GetObject",
        "arn:aws:s3:::b/secret/k",
        "explicitDeny",
    ),
    (
        "deny-alone",
        [policy(DENY_SECRET)],
        None,
        [],
        "s3:GetObject",
        "arn:aws:s3:::b/secret/k",
        "explicitDeny",
    ),
    (
        "boundary-allows",
        [policy(READ)],
        policy(allow("s3:*")),
        [],
        "s3:GetObject",
        "arn:aws:s3:::b/k",
        "allowed",
    ),
    (
        "boundary-narrows",
        [policy(READ, WRITE)],
        policy(allow("s3:Get*")),
        [],
        "s3:PutObject",
        "arn:aws:s3:::b/k",
        "implicitDeny",
    ),
    (
        "boundary-does-not-grant",
        [policy(READ)],
        policy(allow("s3:*")),
        [],
        "s3:PutObject",
        "arn:aws:s3:::b/k",
        "implicitDeny",
    ),
    (
        "boundary-deny",
        [policy(READ)],
        policy(allow(), DENY_SECRET),
        [],
        "s3:GetObject",
        "arn:aws:s3:::b/secret/x",
        "explicitDeny",
    ),
    (
        "session-allows",
        [policy(READ)],
        None,
        [policy(allow("s3:GetObject"))],
        "s3:GetObject",
        "arn:aws:s3:::b/k",
        "allowed",
    ),
    (
        "session-narrows",
        [policy(READ)],
        None,
        [policy(allow("s3:GetObjectAcl"))],
        "s3:GetObject",
        "arn:aws:s3:::b/k",
        "implicitDeny",
    ),
    (
        "session-any-of",
        [policy(READ)],
        None,
        [policy(allow("sqs:*")), policy(allow("s3:*"))],
        "s3:GetObject",
        "arn:aws:s3:::b/k",
        "allowed",
    ),
    (
        "session-does-not-grant",
        [policy(READ)],
        None,
        [policy(allow())],
        "s3:PutObject",
        "arn:aws:s3:::b/k",
        "implicitDeny",
    ),
    (
        "session-deny",
        [policy(READ)],
        None,
        [policy(allow(), deny("s3:GetObject"))],
        "s3:GetObject",
        "arn:aws:s3:::b/k",
        "explicitDeny",
    ),
    (
        "boundary-and-session",
        [policy(READ)],
        policy(allow("s3:*")),
        [policy(allow("s3:Get*"))],
        "s3:GetObject",
        "arn:aws:s3:::b/k",
        "allowed",
    ),
    (
        "boundary-ok-session-not",
        [policy(READ)],
        policy(allow("s3:*")),
        [policy(allow("ec2:*"))],
        "s3:GetObject",
        "arn:aws:s3:::b/k",
        "implicitDeny",
    ),
]


@pytest.mark.parametrize(
    ("identity", "boundary", "session", "action", "resource", "expected"),
    [c[1:] for c in LOGIC_CASES],
    ids=[c[0] for c in LOGIC_CASES],
)
def test_decision_logic(
    identity: list[Policy],
    boundary: Policy | None,
    session: list[Policy],
    action: str,
    resource: str,
    expected: str,
) -> None:
    decision = evaluate(
        action=action,
        resource=resource,
        context={},
        identity=identity,
        boundary=boundary,
        session=session,
    )
    assert decision.decision == expected
    assert decision.allowed is (expected == "allowed")
    if expected == "implicitDeny":
        assert decision.matched_statements == ()
    else:
        assert decision.matched_statements
        effect = "Allow" if expected == "allowed" else "Deny"
        assert {m.effect for m in decision.matched_statements} == {effect}


def test_matched_statements_for_explicit_deny_lists_every_deny() -> None:
    identity = policy(READ, deny("s3:*", "*", Sid="All"), DENY_SECRET, name="dev")
    boundary = policy(allow(), deny("s3:Get*", "*"), name="limit")
    decision = evaluate(
        action="s3:GetObject",
        resource="arn:aws:s3:::b/secret/k",
        identity=[identity],
        boundary=boundary,
    )
    assert decision.matched_statements == (
        MatchedStatement("dev", "All", 1, "Deny"),
        MatchedStatement("dev", "NoSecret", 2, "Deny"),
        MatchedStatement("limit", None, 1, "Deny"),
    )


def test_matched_statements_for_allowed_include_boundary_and_session() -> None:
    identity = policy(READ, allow("s3:GetObject", "*", Sid="Exact"), WRITE, name="dev")
    boundary = policy(allow("s3:*", Sid="Bound"), name="limit")
    session = policy(allow(Sid="Sess"), name="session")
    decision = evaluate("s3:GetObject", "arn:aws:s3:::b/k", None, [identity], boundary, [session])
    assert decision.to_dict() == {
        "decision": "allowed",
        "matched_statements": [
            {"policy": "dev", "sid": "Read", "index": 0, "effect": "Allow"},
            {"policy": "dev", "sid": "Exact", "index": 1, "effect": "Allow"},
            {"policy": "limit", "sid": "Bound", "index": 0, "effect": "Allow"},
            {"policy": "session", "sid": "Sess", "index": 0, "effect": "Allow"},
        ],
    }


def test_implicit_deny_to_dict() -> None:
    assert Decision("implicitDeny").to_dict() == {
        "decision": "implicitDeny",
        "matched_statements": [],
    }


def test_condition_in_deny_uses_context() -> None:
    p = policy(
        allow("s3:*"),
        deny("s3:*", Condition={"Bool": {"aws:MultiFactorAuthPresent": "false"}}, Sid="NeedMfa"),
    )
    no_mfa = evaluate("s3:GetObject", "r", {"aws:MultiFactorAuthPresent": "false"}, [p])
    with_mfa = evaluate("s3:GetObject", "r", {"broker:multifactorauthpresent": True}, [p])
    assert no_mfa.decision == "explicitDeny"
    assert with_mfa.decision == "allowed"


def test_identity_evaluation_rejects_resource_policies() -> None:
    trust = parse_policy(
        {"Statement": {"Effect": "Allow", "Principal": "*", "Action": "*"}}, kind="resource"
    )
    with pytest.raises(ValueError, match="resource policy"):
        evaluate("s3:GetObject", "r", identity=[trust])
    with pytest.raises(ValueError, match="identity policy"):
        evaluate_trust(policy(allow()), principal={"AWS": "x"}, action="sts:AssumeRole")


def test_context_rejects_unsupported_values() -> None:
    with pytest.raises(TypeError):
        evaluate("s3:GetObject", "r", {"k:a": {"nested": 1}}, [policy(allow())])


# --- trust policies ----------------------------------------------------------------------------

GOOGLE_ARN = "arn:broker:iam::000000000000:oidc-provider/google"
GOOGLE = {"Federated": ["google", GOOGLE_ARN]}
WEB = "sts:AssumeRoleWithWebIdentity"
ROLE = "arn:broker:iam::000000000000:role/dev"


def trust(*statements: dict[str, Any]) -> Policy:
    return parse_policy(
        {"Version": "2012-10-17", "Statement": list(statements)}, name="dev-trust", kind="resource"
    )


GOOGLE_ADMINS = {
    "Sid": "GoogleAdmins",
    "Effect": "Allow",
    "Principal": {"Federated": "google"},
    "Action": WEB,
    "Condition": {
        "StringEquals": {"google:hd": "example.com"},
        "ForAnyValue:StringEquals": {"google:groups": ["admins", "sre"]},
    },
}

TRUST_CASES: list[tuple[str, list[dict[str, Any]], dict[str, Any], str, dict[str, Any], str]] = [
    (
        "federated-ok",
        [GOOGLE_ADMINS],
        GOOGLE,
        WEB,
        {"google:hd": "example.com", "google:groups": ["admins"]},
        "allowed",
    ),
    (
        "federated-by-arn",
        [{**GOOGLE_ADMINS, "Principal": {"Federated": GOOGLE_ARN}}],
        {"Federated": GOOGLE_ARN},
        WEB,
        {"google:hd": "example.com", "google:groups": "sre"},
        "allowed",
    ),
    (
        "wrong-hd",
        [GOOGLE_ADMINS],
        GOOGLE,
        WEB,
        {"google:hd": "evil.com", "google:groups": ["admins"]},
        "implicitDeny",
    ),
    ("missing-hd", [GOOGLE_ADMINS], GOOGLE, WEB, {"google:groups": ["admins"]}, "implicitDeny"),
    ("no-groups", [GOOGLE_ADMINS], GOOGLE, WEB, {"google:hd": "example.com"}, "implicitDeny"),
    (
        "other-provider",
        [GOOGLE_ADMINS],
        {"Federated": "okta"},
        WEB,
        {"google:hd": "example.com", "google:groups": ["admins"]},
        "implicitDeny",
    ),
    (
        "other-action",
        [GOOGLE_ADMINS],
        GOOGLE,
        "sts:AssumeRole",
        {"google:hd": "example.com", "google:groups": ["admins"]},
        "implicitDeny",
    ),
    (
        "wrong-principal-type",
        [GOOGLE_ADMINS],
        {"AWS": "google"},
        WEB,
        {"google:hd": "example.com", "google:groups": ["admins"]},
        "implicitDeny",
    ),
    (
        "star-principal",
        [{"Effect": "Allow", "Principal": "*", "Action": "sts:*"}],
        {"Service": "x"},
        WEB,
        {},
        "allowed",
    ),
    (
        "aws-star-is-everyone",
        [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:*"}],
        GOOGLE,
        WEB,
        {},
        "allowed",
    ),
    (
        "principal-wildcard",
        [
            {
                "Effect": "Allow",
                "Principal": {"AWS": "arn:broker:iam::*:role/ci-*"},
                "Action": "sts:AssumeRole",
            }
        ],
        {"AWS": "arn:broker:iam::000000000000:role/ci-build"},
        "sts:AssumeRole",
        {},
        "allowed",
    ),
    (
        "deny-wins",
        [
            GOOGLE_ADMINS,
            {
                "Effect": "Deny",
                "Principal": "*",
                "Action": "*",
                "Condition": {"StringLike": {"google:email": "*@contractor.example.com"}},
            },
        ],
        GOOGLE,
        WEB,
        {
            "google:hd": "example.com",
            "google:groups": ["admins"],
            "google:email": "x@contractor.example.com",
        },
        "explicitDeny",
    ),
    (
        "notprincipal-deny",
        [
            {"Effect": "Allow", "Principal": "*", "Action": "*"},
            {"Effect": "Deny", "NotPrincipal": {"Federated": "google"}, "Action": "*"},
        ],
        {"Federated": "okta"},
        WEB,
        {},
        "explicitDeny",
    ),
    (
        "notprincipal-spares",
        [
            {"Effect": "Allow", "Principal": "*", "Action": "*"},
            {"Effect": "Deny", "NotPrincipal": {"Federated": "google"}, "Action": "*"},
        ],
        GOOGLE,
        WEB,
        {},
        "allowed",
    ),
    (
        "resource-matches",
        [{"Effect": "Allow", "Principal": "*", "Action": "*", "Resource": ROLE}],
        GOOGLE,
        WEB,
        {},
        "allowed",
    ),
    (
        "resource-differs",
        [{"Effect": "Allow", "Principal": "*", "Action": "*", "Resource": ROLE + "x"}],
        GOOGLE,
        WEB,
        {},
        "implicitDeny",
    ),
]


@pytest.mark.parametrize(
    ("statements", "principal", "action", "context", "expected"),
    [c[1:] for c in TRUST_CASES],
    ids=[c[0] for c in TRUST_CASES],
)
def test_trust(
    statements: list[dict[str, Any]],
    principal: dict[str, Any],
    action: str,
    context: dict[str, Any],
    expected: str,
) -> None:
    decision = evaluate_trust(
        trust(*statements), principal=principal, action=action, context=context, resource=ROLE
    )
    assert decision.decision == expected


def test_trust_reports_statement_and_ignores_resource_when_none() -> None:
    policy_ = trust(
        GOOGLE_ADMINS, {"Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "other"}
    )
    decision = evaluate_trust(
        policy_,
        principal=GOOGLE,
        action=WEB,
        context={"google:hd": "example.com", "google:groups": ["admins"]},
    )
    assert decision.matched_statements == (
        MatchedStatement("dev-trust", "GoogleAdmins", 0, "Allow"),
        MatchedStatement("dev-trust", None, 1, "Allow"),
    )


def test_context_keys_under_both_prefixes_are_one_key() -> None:
    p = policy(allow(Condition={"ForAllValues:StringEquals": {"aws:TagKeys": ["env", "team"]}}))
    both = {"aws:TagKeys": ["env"], "broker:tagkeys": ["team", "env"]}
    assert evaluate("s3:GetObject", "r", both, [p]).allowed
    extra = {"aws:TagKeys": ["env"], "BROKER:TagKeys": ["cost"]}
    assert not evaluate("s3:GetObject", "r", extra, [p]).allowed


def test_policy_package_imports_only_stdlib_and_broker_errors() -> None:
    import ast
    import sys
    from pathlib import Path

    import broker.domain.policy as package

    allowed = set(sys.stdlib_module_names) | {"broker"}
    roots = [Path(package.__file__).parent, Path(package.__file__).parents[2] / "policy.py"]
    files = [f for r in roots for f in (r.glob("*.py") if r.is_dir() else [r])]
    assert len(files) > 5
    for file in files:
        for node in ast.walk(ast.parse(file.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] in allowed, f"{file.name} imports {name}"
                if name.startswith("broker."):
                    # json_input: the bounded JSON reader, itself stdlib only
                    assert name in {"broker.errors", "broker.domain.json_input"} or name.startswith(
                        "broker.domain.policy"
                    )
