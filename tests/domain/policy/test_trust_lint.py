"""The trust-policy lint (issue 11, 0d): the classic federation mistakes earn warnings.

``StringLike "<provider>:sub": "*"`` (with or without ``aud "*"``) admits every identity the
provider issues tokens to -- for GitHub Actions, every workflow of every repository on GitHub;
for a Kubernetes issuer, every service account. A trust policy with no ``sub`` condition at all
is the same mistake. ``StringLike "*@example.com"`` on an e-mail address also matches
``a@evil.test@example.com``. Each is a warning (the policy is valid), with the path of the
condition and a fix that says what to write instead.
"""

from __future__ import annotations

from typing import Any

import pytest

from broker.policy import evaluate, evaluate_trust, parse_policy, validate_policy


def trust(condition: dict[str, Any] | None, provider: Any = "github", **kw: Any) -> dict[str, Any]:
    st: dict[str, Any] = {
        "Effect": "Allow",
        "Principal": {"Federated": provider},
        "Action": kw.pop("action", "sts:AssumeRoleWithWebIdentity"),
        **kw,
    }
    if condition is not None:
        st["Condition"] = condition
    return {"Version": "2012-10-17", "Statement": [st]}


SUB_ANY = "FEDERATED_TRUST_SUB_MATCHES_ANY"
NO_SUB = "FEDERATED_TRUST_WITHOUT_SUB"
NO_SUB_OR_AUD = "FEDERATED_TRUST_WITHOUT_SUB_OR_AUD"
EMAIL = "EMAIL_PATTERN_ADMITS_OTHER_DOMAINS"
AUD = {"StringEquals": {"github:aud": "sts.example"}}

# (id, document, kind, expected [(code, path)], words the message must have)
CASES: list[tuple[str, dict[str, Any], str, list[tuple[str, str]], list[str]]] = [
    # --- sub admits every value ---
    ("sub-star", trust({"StringLike": {"github:sub": "*"}}), "resource",
     [(SUB_ANY, "Statement[0].Condition.StringLike.github:sub")],
     ['"*"', "every identity of github", "no condition on github:aud"]),
    ("sub-star-aud-star", trust({"StringLike": {"github:sub": "*", "github:aud": "*"}}),
     "resource", [(SUB_ANY, "Statement[0].Condition.StringLike.github:sub")],
     ["every identity of github", 'github:aud "*" admits every audience']),
    ("sub-double-star", trust({"StringLike": {"github:sub": "**"}, **AUD}), "resource",
     [(SUB_ANY, "Statement[0].Condition.StringLike.github:sub")], ['"**"']),
    ("sub-question-star", trust({"StringLike": {"github:sub": "?*"}, **AUD}), "resource",
     [(SUB_ANY, "Statement[0].Condition.StringLike.github:sub")], ['"?*"']),
    ("sub-star-among-values",
     trust({"StringLike": {"github:sub": ["repo:o/r:*", "*"]}, **AUD}), "resource",
     [(SUB_ANY, "Statement[0].Condition.StringLike.github:sub")], ['"*"']),
    ("sub-star-upper-case-key", trust({"StringLike": {"GitHub:SUB": "*"}, **AUD}), "resource",
     [(SUB_ANY, "Statement[0].Condition.StringLike.GitHub:SUB")], []),
    ("sub-star-if-exists", trust({"StringLikeIfExists": {"github:sub": "*"}, **AUD}),
     "resource", [(SUB_ANY, "Statement[0].Condition.StringLikeIfExists.github:sub")], []),
    ("sub-star-for-any-value",
     trust({"ForAnyValue:StringLike": {"github:sub": "*"}, **AUD}), "resource",
     [(SUB_ANY, "Statement[0].Condition.ForAnyValue:StringLike.github:sub")], []),
    ("sub-star-provider-arn",
     trust({"StringLike": {"github:sub": "*"}, **AUD},
           provider="arn:broker:iam::000000000000:oidc-provider/github"), "resource",
     [(SUB_ANY, "Statement[0].Condition.StringLike.github:sub")], []),
    ("sub-star-any-principal",
     trust({"StringLike": {"k8s:sub": "*"}}, provider=None, Principal="*"), "resource",
     [(SUB_ANY, "Statement[0].Condition.StringLike.k8s:sub")], ["any identity provider"]),
    ("sub-star-all-actions", trust({"StringLike": {"github:sub": "*"}, **AUD}, action="sts:*"),
     "resource", [(SUB_ANY, "Statement[0].Condition.StringLike.github:sub")], []),
    ("sub-star-two-providers",
     trust({"StringLike": {"github:sub": "*", "gitlab:sub": "project_path:g/p:*"}},
           provider=["github", "gitlab"]), "resource",
     [(SUB_ANY, "Statement[0].Condition.StringLike.github:sub")], ["github"]),
    # --- a real restriction beside the wildcard is enough (conditions are ANDed) ---
    ("sub-star-and-sub-equals",
     trust({"StringLike": {"github:sub": "*"},
            "StringEquals": {"github:sub": "repo:o/r:ref:refs/heads/main"}}), "resource", [], []),
    ("sub-repo-prefix-is-fine", trust({"StringLike": {"github:sub": "repo:o/*"}}), "resource",
     [], []),
    ("sub-repo-star-is-fine", trust({"StringLike": {"github:sub": "repo:*"}}), "resource",
     [], []),
    ("sub-equals-literal-star-is-fine", trust({"StringEquals": {"github:sub": "*"}}),
     "resource", [], []),
    ("sub-star-in-deny-is-fine",
     {"Version": "2012-10-17", "Statement": [
         {"Effect": "Deny", "Principal": {"Federated": "github"},
          "Action": "sts:AssumeRoleWithWebIdentity",
          "Condition": {"StringLike": {"github:sub": "*"}}}]}, "resource", [], []),
    ("sub-star-other-action-is-fine",
     trust({"StringLike": {"github:sub": "*"}}, action="sts:TagSession"), "resource", [], []),
    ("sub-star-in-identity-policy-is-fine",
     {"Version": "2012-10-17", "Statement": [
         {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*",
          "Condition": {"StringLike": {"github:sub": "*"}}}]}, "identity", [], []),
    # --- no sub condition at all ---
    ("aud-without-sub", trust(AUD), "resource",
     [(NO_SUB, "Statement[0].Condition")],
     ["github:aud", "github:sub", "every identity of github"]),
    ("aud-star-without-sub", trust({"StringLike": {"github:aud": "*"}}), "resource",
     [(NO_SUB_OR_AUD, "Statement[0].Condition")],
     ["github:sub", 'github:aud "*" admits every audience']),
    ("nothing", trust(None), "resource", [(NO_SUB_OR_AUD, "Statement[0]")],
     ["github:sub or github:aud"]),
    # --- registered providers: named host[:port]/path, by ARN (AWS's form) ---
    ("registered-by-arn-with-sub-is-fine",
     trust({"StringEquals": {"token.actions.githubusercontent.com:sub": "repo:o/r:ref:x",
                             "token.actions.githubusercontent.com:aud": "sts"}},
           provider="arn:broker:iam::000000000000:oidc-provider/token.actions.githubusercontent.com"),
     "resource", [], []),
    ("registered-with-path-and-port-by-arn-with-sub-is-fine",
     trust({"StringEquals": {"idp.example.com:8443/tenant/a:sub": "x"}},
           provider="arn:broker:iam::000000000000:oidc-provider/idp.example.com:8443/tenant/a"),
     "resource", [], []),
    ("registered-with-path-by-arn-sub-star",
     trust({"StringLike": {"idp.example.com/tenant:sub": "*"}},
           provider="arn:broker:iam::000000000000:oidc-provider/idp.example.com/tenant"),
     "resource", [(SUB_ANY, "Statement[0].Condition.StringLike.idp.example.com/tenant:sub")],
     ["every identity of idp.example.com/tenant"]),
    # --- e-mail suffix patterns ---
    ("email-suffix",
     trust({"StringEquals": {"google:sub": "1"},
            "StringLike": {"google:email": "*@example.com"}}, provider="google"), "resource",
     [(EMAIL, "Statement[0].Condition.StringLike.google:email")],
     ["a@evil.test@example.com", "google:hd"]),
    ("email-suffix-in-list",
     trust({"StringEquals": {"google:sub": "1"},
            "StringLike": {"google:email": ["a@example.com", "*@example.com"]}},
           provider="google"), "resource",
     [(EMAIL, "Statement[0].Condition.StringLike.google:email[1]")], ["example.com"]),
    ("email-suffix-identity-policy",
     {"Version": "2012-10-17", "Statement": [
         {"Effect": "Allow", "Action": "http:GET", "Resource": "https://app.example.com/*",
          "Condition": {"ForAnyValue:StringLike": {"corp:emails": "*@corp.example"}}}]},
     "identity", [(EMAIL, "Statement[0].Condition.ForAnyValue:StringLike.corp:emails")],
     ["a@evil.test@corp.example"]),
    ("email-suffix-anchored-is-fine",
     trust({"StringEquals": {"google:sub": "1"},
            "StringLike": {"google:email": "*@example.com"},
            "StringNotLike": {"google:email": "*@*@*"}}, provider="google"), "resource", [], []),
    ("email-exact-is-fine",
     trust({"StringEquals": {"google:sub": "1", "google:email": "a@example.com"}},
           provider="google"), "resource", [], []),
    ("email-equals-star-literal-is-fine",
     trust({"StringEquals": {"google:sub": "1", "google:email": "*@example.com"}},
           provider="google"), "resource", [], []),
    ("email-local-wildcard-only-before-domain-is-fine",
     trust({"StringEquals": {"google:sub": "1"},
            "StringLike": {"google:email": "a@*.example.com"}}, provider="google"),
     "resource", [], []),
    ("sub-star-and-email-suffix",
     trust({"StringLike": {"google:sub": "*", "google:email": "*@example.com"}},
           provider="google"), "resource",
     [(SUB_ANY, "Statement[0].Condition.StringLike.google:sub"),
      (EMAIL, "Statement[0].Condition.StringLike.google:email")], []),
]  # fmt: skip


@pytest.mark.parametrize(
    ("document", "kind", "expected", "words"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_trust_lint(
    document: dict[str, Any], kind: Any, expected: list[tuple[str, str]], words: list[str]
) -> None:
    report = validate_policy(document, kind=kind)
    assert report.ok, report.errors
    found = [(f.code, f.path) for f in report.findings]
    assert sorted(found) == sorted(expected), [str(f) for f in report.findings]
    assert all(f.severity == "warning" for f in report.findings)
    text = " ".join(f"{f.message} {f.fix}" for f in report.findings)
    for word in words:
        assert word in text, (word, text)
    for f in report.findings:
        assert f.message, f
        assert f.fix, f
        assert "\n" not in f.fix, f


def test_fixes_say_what_to_write() -> None:
    [sub] = validate_policy(trust({"StringLike": {"github:sub": "*"}}), kind="resource").findings
    assert '"StringEquals": {"github:sub":' in sub.fix
    [no_sub] = validate_policy(trust(AUD), kind="resource").findings
    assert '"StringEquals": {"github:sub":' in no_sub.fix
    email_doc = trust(
        {"StringEquals": {"google:sub": "1"}, "StringLike": {"google:email": "*@example.com"}},
        provider="google",
    )
    [email] = validate_policy(email_doc, kind="resource").findings
    assert '"StringEquals": {"google:hd": "example.com"}' in email.fix
    assert '"StringNotLike": {"google:email": "*@*@*"}' in email.fix


def test_the_warned_patterns_really_admit_what_the_warnings_say() -> None:
    """The lint describes the engine: a wildcard sub lets in any subject, a suffix match lets in
    an address at another domain, and the anchored fix keeps that address out."""
    principal = {"Federated": ["github"]}
    wide = parse_policy(trust({"StringLike": {"github:sub": "*"}}), kind="resource")
    for subject in ("repo:attacker/x:ref:refs/heads/main", "system:serviceaccount:any:any"):
        d = evaluate_trust(
            wide,
            principal=principal,
            action="sts:AssumeRoleWithWebIdentity",
            context={"github:sub": subject},
        )
        assert d.decision == "allowed"
    suffix: dict[str, Any] = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "http:GET",
                "Resource": "*",
                "Condition": {"StringLike": {"corp:email": "*@example.com"}},
            }
        ],
    }
    evil = {"corp:email": "a@evil.test@example.com"}
    got = evaluate(action="http:GET", resource="x", context=evil, identity=[parse_policy(suffix)])
    assert got.decision == "allowed"
    anchored = {**suffix["Statement"][0]}
    anchored["Condition"] = {
        "StringLike": {"corp:email": "*@example.com"},
        "StringNotLike": {"corp:email": "*@*@*"},
    }
    fixed = parse_policy({"Version": "2012-10-17", "Statement": [anchored]})
    got = evaluate(action="http:GET", resource="x", context=evil, identity=[fixed])
    assert got.decision == "implicitDeny"
    good = {"corp:email": "a@example.com"}
    assert evaluate(action="http:GET", resource="x", context=good, identity=[fixed]).allowed
