"""Deciding requests (AWS IAM policy evaluation logic, single account).

Identity-based requests (:func:`evaluate`): an explicit Deny in any identity, boundary or
session policy wins (``explicitDeny``). Otherwise the request is ``allowed`` only if an identity
policy allows it, and the permissions boundary (when there is one) allows it, and — when session
policies are given — at least one of them allows it; else ``implicitDeny``.

Resource-based requests (:func:`evaluate_trust`, used for role assumption): the caller's
principal must match a statement's ``Principal`` (or not match its ``NotPrincipal``); an explicit
Deny wins, an Allow allows, nothing matching is ``implicitDeny``.

How identity requests are decided quickly (each step keeps the semantics above exactly):

* A policy set (the role's tuple, boundary and session tuple) is compiled once and, per action
  (memoised), reduced to the statements whose Action matches, by role: a :class:`_Plan`.
* Each statement is compiled once to an :class:`_Entry`: a specialised resource test, its
  conditions' compiled checks, and the MatchedStatement/Decision it reports, pre-built.
* A role's list of statements is indexed by the resource's literal prefix (:class:`_Statements`)
  so a request fully matches only the few statements its resource could match.
* The context is not copied in the common case, and its keys are looked up only when a
  condition reads one (:class:`RequestContext`).
* A plan is found by the action as given (no lower-casing per request), and a decision that
  several statements make together is built once for those statements (``_decided``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from broker.domain.policy.context import ContextInput, RequestContext
from broker.domain.policy.model import (
    ALLOWED,
    EXPLICIT_DENY,
    IMPLICIT_DENY,
    Decision,
    DecisionName,
    MatchedStatement,
    Policy,
    ResourceSet,
    Statement,
)
from broker.domain.policy.principals import Caller, CallerInput, normalise_caller
from broker.domain.policy.wildcard import Test

#: A statement's conditions, compiled: whether they hold for a request's context.
ContextTest = Callable[[RequestContext], bool]


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


def _resource_test(resources: ResourceSet | None) -> tuple[Test | None, ResourceSet | None]:
    """A statement's Resource element as (a test of the resource string, or None when any
    resource matches; the element itself when its patterns hold variables, to be matched with
    the request's context)."""
    if resources is None:
        return None, None
    globs = [p.fixed for p in resources.patterns]
    if any(g is None for g in globs):
        return None, resources
    fixed = [g for g in globs if g is not None]
    if not resources.negated and any(g.is_universal for g in fixed):
        return None, None
    literals = [g.literal for g in fixed]
    test: Test
    if len(fixed) == 1:
        test = fixed[0].test
    elif all(text is not None for text in literals):
        test = frozenset(literals).__contains__
    else:
        tests = tuple(g.test for g in fixed)
        test = lambda resource: any(t(resource) for t in tests)  # noqa: E731
    if resources.negated:
        positive = test
        test = lambda resource: not positive(resource)  # noqa: E731
    return test, None


def _all_of(checks: tuple[ContextTest, ...]) -> ContextTest | None:
    """One test that all ``checks`` pass (None when there are none): most statements have no
    condition or one, and one call is cheaper than a loop over a tuple."""
    if not checks:
        return None
    if len(checks) == 1:
        return checks[0]

    def check(context: RequestContext) -> bool:
        return all(one(context) for one in checks)

    return check


class _Entry:
    """One statement compiled for deciding: a resource test, condition checks, and the
    (immutable) results it reports, built once rather than per request."""

    __slots__ = ("check", "decision", "deny", "match", "resource", "resource_set", "resources")

    def __init__(self, policy: str, statement: Statement) -> None:
        self.resources = statement.resources  # as written, for the resource index
        self.resource, self.resource_set = _resource_test(statement.resources)
        self.check = _all_of(tuple(c.check for c in statement.conditions))
        self.match = MatchedStatement(policy, statement.sid, statement.index, statement.effect)
        #: The decision when this is the only statement that decides a request.
        self.deny = statement.effect == "Deny"
        name = EXPLICIT_DENY if self.deny else ALLOWED
        self.decision = Decision(name, (self.match,))


class _Statements:
    """The statements of one role (denies, identity allows, ...) for one action, in order.

    Lists of a few statements or more are indexed by resource, with one dictionary probe: a
    statement whose Resource patterns all start with at least ``length`` literal characters
    (``arn:aws:s3:::bucket/*``, an exact ARN) is filed under those first ``length`` characters;
    the others (``*``, NotResource, variables, a short literal prefix) are "unfiled" and go in
    every bucket. A request then scans only ``buckets[resource[:length]]`` (or, when that is no
    key, the unfiled statements), each bucket already in statement order. ``length`` is picked
    per list to scan the fewest statements. The index only narrows: every candidate is still
    fully matched, so decisions are exactly those of a full scan.
    """

    #: Below this many statements a plain scan is as cheap as probing an index.
    INDEX_FROM = 3
    #: An index holds at most this many statement references (buckets x unfiled statements).
    MAX_INDEX_SIZE = 50_000

    __slots__ = ("_buckets", "_length", "_unfiled", "entries")

    def __init__(self, entries: Sequence[_Entry]) -> None:
        self.entries = tuple(entries)
        self._length = 0  # 0: not indexed, scan every statement
        self._buckets: dict[str, tuple[_Entry, ...]] = {}
        self._unfiled: tuple[_Entry, ...] = self.entries
        if len(self.entries) >= self.INDEX_FROM:
            self._build_index()

    @classmethod
    def of(cls, entries: Sequence[_Entry]) -> _Statements | None:
        return cls(entries) if entries else None

    def _build_index(self) -> None:
        prefixes = [_literal_prefixes(entry.resources) for entry in self.entries]
        lengths = {len(p) for found in prefixes if found for p in found}
        # The probe (a slice and a dict lookup) costs about as much as testing one statement.
        best_cost = float(len(self.entries) - 1)
        best: tuple[int, dict[str, set[int]], list[int]] | None = None
        for length in sorted(lengths):
            buckets: dict[str, set[int]] = {}
            unfiled: list[int] = []
            for position, found in enumerate(prefixes):
                if not found or min(map(len, found)) < length:
                    unfiled.append(position)
                    continue
                for prefix in found:
                    buckets.setdefault(prefix[:length], set()).add(position)
            if not buckets:
                continue
            # Statements scanned per request: the unfiled ones, plus a bucket's on a hit.
            cost = len(unfiled) + sum(map(len, buckets.values())) / len(buckets)
            if cost < best_cost and len(buckets) * (len(unfiled) + 1) <= self.MAX_INDEX_SIZE:
                best_cost, best = cost, (length, buckets, unfiled)
        if best is None:
            return
        length, buckets, unfiled = best
        entries = self.entries
        self._length = length
        self._buckets = {
            key: tuple(entries[i] for i in sorted(filed.union(unfiled)))
            for key, filed in buckets.items()
        }
        self._unfiled = tuple(entries[i] for i in unfiled)

    def candidates(self, resource: str) -> tuple[_Entry, ...]:
        """The statements that may match ``resource``, in order (all of them if unindexed)."""
        if not self._length:
            return self.entries
        return self._buckets.get(resource[: self._length], self._unfiled)

    def matching(self, resource: str, context: RequestContext) -> list[_Entry]:
        """The statements that apply to the request, in order."""
        found: list[_Entry] = []
        length = self._length
        for entry in (
            self._buckets.get(resource[:length], self._unfiled) if length else self.entries
        ):
            # A statement applies when its resource test, then each condition, passes. Kept
            # inline (no call per statement): this loop is the evaluator's hot path.
            test = entry.resource
            if test is not None and not test(resource):
                continue
            if entry.resource_set is not None and not entry.resource_set.matches(resource, context):
                continue
            check = entry.check
            if check is None or check(context):
                found.append(entry)
        return found


def _literal_prefixes(resources: ResourceSet | None) -> list[str] | None:
    """The literal text that each Resource pattern's matches start with; None when some match
    need not start with any (no Resource, NotResource, variables, a leading wildcard)."""
    if resources is None or resources.negated:
        return None
    found: list[str] = []
    for pattern in resources.patterns:
        glob = pattern.fixed
        if glob is None or not glob.prefix:
            return None
        found.append(glob.prefix)
    return found


class _Plan:
    """The statements of a policy set whose Action/NotAction matches one action, by role
    (None: no statement of that role matches the action).

    ``first`` holds what every request looks at, so that one index probe and one scan find
    it: every Deny (the identity policies', the boundary's, the session policies', in that
    order: the order they are reported in), then the identity policies' Allows. The boundary's
    and session policies' Allows matter only once identity allows.
    """

    __slots__ = ("boundary_allows", "first", "session_allows")

    def __init__(self, policies: _PolicySet, action_lower: str) -> None:
        denies: list[_Entry] = []
        identity_allows: list[_Entry] = []
        boundary_allows: list[_Entry] = []
        session_allows: list[_Entry] = []
        groups = (
            (policies.identity, identity_allows),
            (policies.boundaries, boundary_allows),
            (policies.session, session_allows),
        )
        for group, allows in groups:
            for policy in group:
                for statement in policy.candidates(action_lower):
                    if statement.actions.matches(action_lower):
                        entry = policies.entry(policy, statement)
                        (denies if entry.deny else allows).append(entry)
        self.first = _Statements.of(denies + identity_allows)
        self.boundary_allows = _Statements.of(boundary_allows)
        self.session_allows = _Statements.of(session_allows)


class _PolicySet:
    """Identity, boundary and session policies compiled together: per action (memoised, up to
    ``MAX_ACTIONS``), only the statements whose action matches are ever looked at again."""

    MAX_ACTIONS = 8192
    __slots__ = ("_entries", "_plans", "boundaries", "boundary", "identity", "plans", "session")

    def __init__(
        self, identity: Sequence[Policy], boundary: Policy | None, session: Sequence[Policy]
    ) -> None:
        self.identity = identity
        self.boundary = boundary
        self.boundaries: tuple[Policy, ...] = () if boundary is None else (boundary,)
        self.session = session
        self._plans: dict[str, _Plan] = {}  # by lower-cased action
        #: The same plans by action as given, so that a request needs no lower-casing.
        self.plans: dict[str, _Plan] = {}
        #: Each statement compiled once, whatever the number of actions it matches.
        self._entries: dict[tuple[int, int], _Entry] = {}

    def plan(self, action: str) -> _Plan:
        """The plan for ``action`` (any case); :attr:`plans` caches it under this spelling."""
        if not self._plans:  # the first plan of this set: check the policies' kinds, once
            _require_kind(self.identity, "identity", "an identity")
            _require_kind(self.boundaries, "identity", "a boundary")
            _require_kind(self.session, "identity", "a session")
        if len(self.plans) >= self.MAX_ACTIONS:
            self.plans.clear()
        lowered = action.lower()
        found = self._plans.get(lowered)
        if found is None:
            if len(self._plans) >= self.MAX_ACTIONS:
                self._plans.clear()
            found = self._plans[lowered] = _Plan(self, lowered)
        self.plans[action] = found
        return found

    def entry(self, policy: Policy, statement: Statement) -> _Entry:
        key = (id(policy), statement.index)  # the policies are held by this set: ids stay
        found = self._entries.get(key)
        if found is None:
            found = self._entries[key] = _Entry(policy.name, statement)
        return found


#: Compiled sets for policy tuples evaluated repeatedly (the Authorizer passes a role's tuple
#: and a credential's session tuple, the same objects every time). Keyed by the tuples' ids
#: and checked by identity, so a new tuple never sees another's plan. Bounded.
_SETS: dict[int | tuple[int, int, int], _PolicySet] = {}
_MAX_SETS = 4096

#: Compiled sets for policies passed in lists (the documented ``identity=[p1, p2],
#: session=[]``: a new list on every call). Policies are immutable and compare by identity
#: (``eq=False``), so a set is a function of which policy objects it holds: keyed by tuples
#: of them (hashing and comparing those is C work, no per-policy Python step). Bounded.
_SEQ_SETS: dict[
    tuple[Policy, ...] | tuple[tuple[Policy, ...], Policy | None, tuple[Policy, ...]], _PolicySet
] = {}


def _policy_set(
    identity: Sequence[Policy], boundary: Policy | None, session: Sequence[Policy]
) -> _PolicySet:
    # Most requests have neither a boundary nor session policies: key those by one int.
    key = (
        id(identity)
        if boundary is None and not session
        else (id(identity), id(boundary), id(session))
    )
    found = _SETS.get(key)
    if (
        found is not None
        and found.identity is identity
        and found.session is session
        and found.boundary is boundary
    ):
        return found
    if not isinstance(identity, tuple) or not isinstance(session, tuple):
        # A list, made anew by the caller each time: key by the policies it holds (the set
        # keeps a tuple copy, so that the caller changing its list later changes nothing).
        held = tuple(identity)
        seq_key = (held, boundary, tuple(session)) if boundary is not None or session else held
        found = _SEQ_SETS.get(seq_key)
        if found is None:
            if len(_SEQ_SETS) >= _MAX_SETS:
                _SEQ_SETS.clear()
            found = _SEQ_SETS[seq_key] = _PolicySet(held, boundary, tuple(session))
        return found
    if len(_SETS) >= _MAX_SETS:
        _SETS.clear()
    found = _SETS[key] = _PolicySet(identity, boundary, session)
    return found


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
    # _policy_set, inline for the common case: no boundary, no session policies.
    policies = _SETS.get(id(identity))
    if policies is None or policies.identity is not identity or boundary is not None or session:
        policies = _policy_set(identity, boundary, session)
    return _decide(policies, action, resource, context)


def _decide(
    policies: _PolicySet, action: str, resource: str, context: ContextInput | None
) -> Decision:
    plan = policies.plans.get(action) or policies.plan(action)
    ctx = RequestContext(context)  # checks every value, even if no condition reads it

    if plan.first is None:
        return _IMPLICIT_DENY
    allows = plan.first.matching(resource, ctx)
    if not allows:
        return _IMPLICIT_DENY
    limited = policies.boundary is not None or policies.session
    if len(allows) == 1 and not limited:
        return allows[0].decision  # one statement decides (the usual case): see _decided
    if allows[0].deny:  # Denies come first: any that applies is at the front
        return _decided(EXPLICIT_DENY, [e for e in allows if e.deny])
    if limited:
        # A boundary, or session policies: one of their Allows is needed too.
        for limit, given in (
            (plan.boundary_allows, policies.boundaries),
            (plan.session_allows, policies.session),
        ):
            if given:
                also = limit.matching(resource, ctx) if limit is not None else None
                if not also:
                    return _IMPLICIT_DENY
                allows += also
    return _decided(ALLOWED, allows)


class PolicySet:
    """Policies compiled once, for many decisions: the fastest way to decide requests with
    the same policies (``evaluate()`` finds the compiled set per call; this holds it).

        rules = PolicySet(identity=[p1, p2], boundary=None, session=[])
        rules.evaluate("s3:GetObject", "arn:aws:s3:::bucket/key", {"aws:SourceIp": "10.0.0.1"})

    Decides exactly as ``evaluate(action, resource, context, identity, boundary, session)``.
    Raises ValueError at once for a policy of the wrong kind (a trust policy as identity).
    """

    __slots__ = ("_set",)

    def __init__(
        self,
        identity: Sequence[Policy] = (),
        boundary: Policy | None = None,
        session: Sequence[Policy] = (),
    ) -> None:
        self._set = _PolicySet(tuple(identity), boundary, tuple(session))
        _require_kind(self._set.identity, "identity", "an identity")
        _require_kind(self._set.boundaries, "identity", "a boundary")
        _require_kind(self._set.session, "identity", "a session")

    def evaluate(self, action: str, resource: str, context: ContextInput | None = None) -> Decision:
        return _decide(self._set, action, resource, context)


#: Decisions are immutable values, so the ones that need no per-request data are shared.
_IMPLICIT_DENY = Decision(IMPLICIT_DENY)

#: The decision reported when several statements decide a request, by those statements (a
#: Decision is a function of them alone, and building one costs as much as a short scan).
#: Consulted only after every statement has been matched against the request. Bounded.
_COMBINED: dict[tuple[_Entry, ...], Decision] = {}
_MAX_COMBINED = 4096


def _decided(name: DecisionName, entries: list[_Entry]) -> Decision:
    if len(entries) == 1:
        return entries[0].decision  # built with the statement: its effect names the decision
    key = tuple(entries)
    found = _COMBINED.get(key)
    if found is None:
        if len(_COMBINED) >= _MAX_COMBINED:
            _COMBINED.clear()
        found = _COMBINED[key] = Decision(name, tuple(e.match for e in entries))
    return found


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
