"""The policy engine's public Python API (DESIGN C6): parse IAM-style JSON policies and decide
requests with them. Pure: no I/O. See :mod:`broker.domain.policy` for the implementation.

    from broker.policy import parse_policy, evaluate, PolicyError

    p = parse_policy(doc, name="dev-access")
    d = evaluate(action="s3:GetObject", resource="arn:aws:s3:::bucket/key",
                 context={"aws:SourceIp": "10.0.0.1"}, identity=[p], boundary=None, session=[])
    d.decision            # "allowed" | "explicitDeny" | "implicitDeny"
    d.matched_statements  # the statements that decided it

    report = validate_policy(doc, kind="identity")   # never raises for a bad document
    for f in report.findings: print(f.severity, f.path, f.message, f.fix)
"""

from broker.domain.policy import (
    Decision,
    Finding,
    MatchedStatement,
    Policy,
    PolicyError,
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
    "ValidationReport",
    "evaluate",
    "evaluate_trust",
    "parse_policy",
    "validate_policy",
]
