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
    boundaries = () if boundary is None else (boundary,)
    _require_kind(identity, "identity", "an identity")
    _require_kind(boundaries, "identity", "a boundary")
    _require_kind(session, "identity", "a session")
    action_lower = action.lower()
    ctx = RequestContext(context)
    every = (*identity, *boundaries, *session)

    denies = _matching(every, "Deny", action_lower, resource, ctx)
    if denies:
        return Decision(EXPLICIT_DENY, tuple(denies))

    allows = _matching(identity, "Allow", action_lower, resource, ctx)
    if not allows:
        return Decision(IMPLICIT_DENY)
    if boundary is not None:
        boundary_allows = _matching(boundaries, "Allow", action_lower, resource, ctx)
        if not boundary_allows:
            return Decision(IMPLICIT_DENY)
        allows += boundary_allows
    if session:
        session_allows = _matching(session, "Allow", action_lower, resource, ctx)
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
