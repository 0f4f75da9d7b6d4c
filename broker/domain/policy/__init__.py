"""The IAM-style policy language: parsing, condition operators, wildcards, variables, evaluation.

Owns: turning a JSON policy document into a typed :class:`Policy` (every problem reported at
once, with a path such as ``Statement[1].Condition.StringEquals``), and deciding requests against
identity, permissions-boundary, session and trust (resource-based) policies, with the statements
that decided them.

May import: the standard library and :mod:`broker.errors` only. No I/O of any kind.

Modules:
    errors      PolicyError
    model       Policy, Statement and the matchers it holds; Decision, MatchedStatement
    wildcard    ``*``/``?`` patterns with a linear-time matcher
    variables   ``${key}`` policy variables and templates that resolve them per request
    context     the request context, normalised once per evaluation
    conditions  the condition-operator registry (unknown operators are rejected when parsing)
    principals  ``Principal``/``NotPrincipal`` matching for resource-based policies
    parse       parse_policy
    evaluate    evaluate, evaluate_trust, PolicySet (policies compiled once)
    validate    validate_policy: errors and warnings (Access Analyzer style) with paths and fixes
"""

from broker.domain.policy.errors import PolicyError
from broker.domain.policy.evaluate import PolicySet, evaluate, evaluate_trust
from broker.domain.policy.model import Decision, MatchedStatement, Policy, Statement
from broker.domain.policy.parse import parse_policy
from broker.domain.policy.validate import Finding, ValidationReport, validate_policy

__all__ = [
    "Decision",
    "Finding",
    "MatchedStatement",
    "Policy",
    "PolicyError",
    "PolicySet",
    "Statement",
    "ValidationReport",
    "evaluate",
    "evaluate_trust",
    "parse_policy",
    "validate_policy",
]
