"""The policy engine's public Python API (DESIGN C6): parse IAM-style JSON policies and decide
requests with them. Pure: no I/O. See :mod:`broker.domain.policy` for the implementation.

    from broker.policy import parse_policy, evaluate, PolicySet, PolicyError

    p = parse_policy(doc, name="dev-access")
    d = evaluate(action="s3:GetObject", resource="arn:aws:s3:::bucket/key",
                 context={"aws:SourceIp": "10.0.0.1"}, identity=[p], boundary=None, session=[])
    d.decision            # "allowed" | "explicitDeny" | "implicitDeny"
    d.matched_statements  # the statements that decided it

    rules = PolicySet(identity=[p], boundary=None, session=[])  # compiled once, then
    rules.evaluate("s3:GetObject", "arn:aws:s3:::bucket/key", {"aws:SourceIp": "10.0.0.1"})

    report = validate_policy(doc, kind="identity")   # never raises for a bad document
    for f in report.findings: print(f.severity, f.path, f.message, f.fix)

``evaluate()`` keeps what it compiles for the policies it was given (lists included: policies
are immutable, so the same policy objects find the same compiled set); a ``PolicySet`` skips
even that lookup. ``bench/policy.py`` measures both against vakt.
"""

from broker.domain.policy import (
    Decision,
    Finding,
    MatchedStatement,
    Policy,
    PolicyError,
    PolicySet,
    ValidationReport,
    evaluate,
    evaluate_trust,
    parse_policy,
    validate_policy,
)

__all__ = [
    "Decision",
    "Finding",
    "MatchedStatement",
    "Policy",
    "PolicyError",
    "PolicySet",
    "ValidationReport",
    "evaluate",
    "evaluate_trust",
    "parse_policy",
    "validate_policy",
]
