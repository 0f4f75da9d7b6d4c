"""Typed, parsed policies and the decisions made with them.

A :class:`Policy` is only ever built by :func:`broker.domain.policy.parse.parse_policy`, which
checks everything once; nothing here re-validates.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from broker.domain.policy.conditions import Condition
from broker.domain.policy.context import RequestContext
from broker.domain.policy.principals import Caller, PrincipalSet
from broker.domain.policy.variables import GlobTemplate
from broker.domain.policy.wildcard import Glob

Effect = Literal["Allow", "Deny"]
PolicyKind = Literal["identity", "resource"]
DecisionName = Literal["allowed", "explicitDeny", "implicitDeny"]

ALLOWED: DecisionName = "allowed"
EXPLICIT_DENY: DecisionName = "explicitDeny"
IMPLICIT_DENY: DecisionName = "implicitDeny"


@dataclass(frozen=True, slots=True)
class ActionSet:
    """``Action`` or ``NotAction``: patterns compiled lower-case (actions ignore case)."""

    patterns: tuple[Glob, ...]
    negated: bool
    #: Lower-cased service prefixes this element can match, or None when it may match any
    #: (``*``, a wildcard in the prefix, or NotAction).
    services: frozenset[str] | None

    def matches(self, action_lower: str) -> bool:
        return any(p.matches(action_lower) for p in self.patterns) != self.negated


@dataclass(frozen=True, slots=True)
class ResourceSet:
    """``Resource`` or ``NotResource``: case-sensitive patterns, possibly with variables."""

    patterns: tuple[GlobTemplate, ...]
    negated: bool

    def matches(self, resource: str, context: RequestContext) -> bool:
        return any(p.matches(resource, context) for p in self.patterns) != self.negated


@dataclass(frozen=True, slots=True)
class Statement:
    index: int  # position in the document's Statement list
    sid: str | None
    effect: Effect
    actions: ActionSet
    resources: ResourceSet | None  # None: no Resource element (resource policies only)
    principals: PrincipalSet | None  # None: identity policy
    conditions: tuple[Condition, ...]

    def applies(
        self,
        action_lower: str,
        resource: str | None,
        context: RequestContext,
        caller: Caller | None = None,
    ) -> bool:
        """Whether the statement matches the request (its effect is the caller's business).

        ``resource=None`` means "this policy's own resource" (trust policies): the Resource
        element, if any, is not consulted. A statement with a Principal never matches without
        a caller.
        """
        if not self.actions.matches(action_lower):
            return False
        if self.principals is not None and (caller is None or not self.principals.matches(caller)):
            return False
        if (
            self.resources is not None
            and resource is not None
            and not self.resources.matches(resource, context)
        ):
            return False
        return all(c.holds(context) for c in self.conditions)


@dataclass(frozen=True, slots=True, eq=False)
class Policy:
    """A parsed policy document. ``name`` is what decisions report as the deciding policy."""

    name: str
    kind: PolicyKind
    version: str | None
    id: str | None
    statements: tuple[Statement, ...]
    document: Mapping[str, Any] = field(repr=False)
    _by_service: Mapping[str, tuple[Statement, ...]] = field(init=False, repr=False)
    _any_service: tuple[Statement, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        any_service = tuple(s for s in self.statements if s.actions.services is None)
        buckets: dict[str, list[Statement]] = {}
        for statement in self.statements:
            for service in statement.actions.services or ():
                buckets.setdefault(service, []).append(statement)
        by_service = {
            service: tuple(sorted((*found, *any_service), key=lambda s: s.index))
            for service, found in buckets.items()
        }
        object.__setattr__(self, "_by_service", by_service)
        object.__setattr__(self, "_any_service", any_service)

    @property
    def variables_enabled(self) -> bool:
        return self.version == "2012-10-17"

    def candidates(self, action_lower: str) -> tuple[Statement, ...]:
        """The statements that could match an action (by its service prefix), in order."""
        service = action_lower.partition(":")[0]
        return self._by_service.get(service, self._any_service)


@dataclass(frozen=True, slots=True)
class MatchedStatement:
    """A statement that decided a request: its policy's name, Sid, position and effect."""

    policy: str
    sid: str | None
    index: int
    effect: Effect

    def to_dict(self) -> dict[str, str | int | None]:
        return {"policy": self.policy, "sid": self.sid, "index": self.index, "effect": self.effect}


@dataclass(frozen=True, slots=True)
class Decision:
    """``allowed``, ``explicitDeny`` or ``implicitDeny`` (the AWS policy simulator's names),
    with the statements that decided it: every matching Deny for ``explicitDeny``, the matching
    Allows for ``allowed``, nothing for ``implicitDeny``."""

    decision: DecisionName
    matched_statements: tuple[MatchedStatement, ...] = ()

    @property
    def allowed(self) -> bool:
        return self.decision == ALLOWED

    def to_dict(self) -> dict[str, Any]:
        return {
            "decision": self.decision,
            "matched_statements": [m.to_dict() for m in self.matched_statements],
        }
