"""Deciding requests (AWS IAM policy evaluation logic, single account).

Identity-based requests (:func:`evaluate`): an explicit Deny in any identity, boundary or
session policy wins (``explicitDeny``). Otherwise the request is ``allowed`` only if an identity
policy allows it, and the permissions boundary (when there is one) allows it, and — when session
policies are given — at least one of them allows it; else ``implicitDeny``.

Resource-based requests (:func:`evaluate_trust`, used for role assumption): the caller's
principal must match a statement's ``Principal`` (or not match its ``NotPrincipal``); an explicit
Deny wins, an Allow allows, nothing matching is ``implicitDeny``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from broker.domain.policy.context import ContextInput, RequestContext
from broker.domain.policy.model import (
    ALLOWED,
    EXPLICIT_DENY,
    IMPLICIT_DENY,
    Decision,
    MatchedStatement,
    Policy,
    Statement,
)
from broker.domain.policy.principals import Caller, CallerInput, normalise_caller


def _matching(
    policies: Iterable[Policy],
    effect: str,
    action_lower: str,
    resource: str | None,
    context: RequestContext,
    caller: Caller | None = None,
) -> list[MatchedStatement]:
    found: list[MatchedStatement] = []
    for policy in policies:
        for statement in policy.candidates(action_lower):
            if statement.effect == effect and statement.applies(
                action_lower, resource, context, caller
            ):
                found.append(
                    MatchedStatement(policy.name, statement.sid, statement.index, statement.effect)
                )
    return found


def _require_kind(policies: Iterable[Policy], kind: str, role: str) -> None:
    for policy in policies:
        if policy.kind != kind:
            raise ValueError(f"{role} policy {policy.name!r} is a {policy.kind} policy")


Found = tuple[tuple[str, Statement], ...]  # (policy name, statement) that may match an action


class _Plan:
    """The statements of a policy set whose Action/NotAction matches one action, by role."""

    __slots__ = ("boundary_allows", "denies", "identity_allows", "session_allows")

    def __init__(self, policies: _PolicySet, action_lower: str) -> None:
        def pick(group: Iterable[Policy], effect: str) -> Found:
            return tuple(
                (policy.name, statement)
                for policy in group
                for statement in policy.candidates(action_lower)
                if statement.effect == effect and statement.actions.matches(action_lower)
            )

        every = (*policies.identity, *policies.boundaries, *policies.session)
        self.denies = pick(every, "Deny")
        self.identity_allows = pick(policies.identity, "Allow")
        self.boundary_allows = pick(policies.boundaries, "Allow")
        self.session_allows = pick(policies.session, "Allow")


class _PolicySet:
    """Identity, boundary and session policies compiled together: per action (memoised, up to
    ``MAX_ACTIONS``), only the statements whose action matches are ever looked at again."""

    MAX_ACTIONS = 8192
    __slots__ = ("_plans", "boundaries", "identity", "session")

    def __init__(
        self, identity: Sequence[Policy], boundary: Policy | None, session: Sequence[Policy]
    ) -> None:
        self.identity = identity
        self.boundaries: tuple[Policy, ...] = () if boundary is None else (boundary,)
        self.session = session
        self._plans: dict[str, _Plan] = {}

    def plan(self, action_lower: str) -> _Plan:
        found = self._plans.get(action_lower)
        if found is None:
            if len(self._plans) >= self.MAX_ACTIONS:
                self._plans.clear()
            found = self._plans[action_lower] = _Plan(self, action_lower)
        return found


#: Compiled sets for policy tuples evaluated repeatedly (the Authorizer passes a role's tuple
#: and a credential's session tuple, the same objects every time). Keyed by the tuples' ids
#: and checked by identity, so a new tuple never sees another's plan. Bounded.
_SETS: dict[tuple[int, int, int], _PolicySet] = {}
_MAX_SETS = 4096


def _policy_set(
    identity: Sequence[Policy], boundary: Policy | None, session: Sequence[Policy]
) -> _PolicySet:
    if not isinstance(identity, tuple) or not isinstance(session, tuple):
        return _PolicySet(identity, boundary, session)  # a mutable list: compile afresh
    key = (id(identity), id(boundary), id(session))
    found = _SETS.get(key)
    if (
        found is None
        or found.identity is not identity
        or found.session is not session
        or (found.boundaries[0] if found.boundaries else None) is not boundary
    ):
        if len(_SETS) >= _MAX_SETS:
            _SETS.clear()
        found = _SETS[key] = _PolicySet(identity, boundary, session)
    return found


def _applying(found: Found, resource: str, context: RequestContext) -> list[MatchedStatement]:
    out: list[MatchedStatement] = []
    for name, statement in found:
        resources = statement.resources
        if resources is not None and not resources.matches(resource, context):
            continue
        if statement.conditions and not all(c.holds(context) for c in statement.conditions):
            continue
        out.append(MatchedStatement(name, statement.sid, statement.index, statement.effect))
    return out


def evaluate(
    action: str,
    resource: str,
    context: ContextInput | None = None,
    identity: Sequence[Policy] = (),
    boundary: Policy | None = None,
    session: Sequence[Policy] = (),
) -> Decision:
    """Decide whether identity policies (limited by a permissions boundary and session
    policies) allow ``action`` on ``resource`` in ``context``.

    ``context`` maps condition keys to strings or lists of strings (keys are case-insensitive;
    ``aws:X`` and ``broker:X`` are one key).
    """
    policies = _policy_set(identity, boundary, session)
    if not policies._plans:  # checked once per compiled set
        _require_kind(identity, "identity", "an identity")
        _require_kind(policies.boundaries, "identity", "a boundary")
        _require_kind(session, "identity", "a session")
    plan = policies.plan(action.lower())
    ctx = RequestContext(context)

    denies = _applying(plan.denies, resource, ctx)
    if denies:
        return Decision(EXPLICIT_DENY, tuple(denies))

    allows = _applying(plan.identity_allows, resource, ctx)
    if not allows:
        return Decision(IMPLICIT_DENY)
    if boundary is not None:
        boundary_allows = _applying(plan.boundary_allows, resource, ctx)
        if not boundary_allows:
            return Decision(IMPLICIT_DENY)
        allows += boundary_allows
    if session:
        session_allows = _applying(plan.session_allows, resource, ctx)
        if not session_allows:
            return Decision(IMPLICIT_DENY)
        allows += session_allows
    return Decision(ALLOWED, tuple(allows))


def evaluate_trust(
    policy: Policy,
    *,
    principal: CallerInput,
    action: str,
    context: ContextInput | None = None,
    resource: str | None = None,
) -> Decision:
    """Decide whether a resource-based (trust) policy lets ``principal`` do ``action``.

    ``principal`` maps principal types (``AWS``, ``Federated``, ``Service``) to the value or
    values that identify the caller, every spelling of it (provider name and provider ARN).
    ``resource=None`` means the policy's own resource: Resource elements are not consulted.
    """
    _require_kind((policy,), "resource", "a trust")
    caller = normalise_caller(principal)
    action_lower = action.lower()
    ctx = RequestContext(context)
    denies = _matching((policy,), "Deny", action_lower, resource, ctx, caller)
    if denies:
        return Decision(EXPLICIT_DENY, tuple(denies))
    allows = _matching((policy,), "Allow", action_lower, resource, ctx, caller)
    if allows:
        return Decision(ALLOWED, tuple(allows))
    return Decision(IMPLICIT_DENY)
