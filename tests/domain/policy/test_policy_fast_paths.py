"""The evaluator's fast paths decide exactly as the plain semantics do.

Each speed-up has a general counterpart that defines its meaning: the resource index narrows a
full scan, :attr:`Condition.check` compiles :meth:`Condition.holds`, the shape-keyed context
reads what full normalisation would produce, and specialised glob tests replace the segment
loop. Here each is checked against its counterpart (the glob ones in ``test_policy_fuzz``).
"""

from __future__ import annotations

from collections.abc import Sequence
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.domain.policy.context import RequestContext
from broker.domain.policy.evaluate import _Statements
from broker.domain.policy.model import (
    ALLOWED,
    EXPLICIT_DENY,
    IMPLICIT_DENY,
    Decision,
    MatchedStatement,
    Policy,
)
from broker.domain.policy.wildcard import Glob
from broker.policy import PolicySet, evaluate, parse_policy
from tests.domain.policy.corpus import CASES, Case
from tests.domain.policy.test_policy_corpus import decide as decide_case


@pytest.fixture
def index_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    """Index every statement list, however short (normally only lists of a few or more)."""
    monkeypatch.setattr(_Statements, "INDEX_FROM", 1)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_corpus_with_every_list_indexed(case: Case, index_everything: None) -> None:
    d = decide_case(case)
    deciding = tuple(
        f"{m.policy}#{m.sid if m.sid is not None else m.index}" for m in d.matched_statements
    )
    assert (d.decision, deciding) == (case.decision, case.deciding)


# --- a reference evaluator: every statement, Statement.applies, Condition.holds ----------------


def reference(
    action: str,
    resource: str,
    context: dict[str, Any],
    identity: Sequence[Policy],
    boundary: Policy | None = None,
    session: Sequence[Policy] = (),
) -> Decision:
    # A read-only mapping takes RequestContext's general normalisation path.
    ctx = RequestContext(MappingProxyType(context))
    lowered = action.lower()

    def matching(policies: Sequence[Policy], effect: str) -> list[MatchedStatement]:
        return [
            MatchedStatement(p.name, s.sid, s.index, s.effect)
            for p in policies
            for s in p.statements
            if s.effect == effect and s.applies(lowered, resource, ctx)
        ]

    boundaries = [boundary] if boundary is not None else []
    denies = matching([*identity, *boundaries, *session], "Deny")
    if denies:
        return Decision(EXPLICIT_DENY, tuple(denies))
    allows = matching(identity, "Allow")
    for group in (boundaries, session):
        if group and allows:
            found = matching(group, "Allow")
            allows = allows + found if found else []
    return Decision(ALLOWED, tuple(allows)) if allows else Decision(IMPLICIT_DENY)


RESOURCE_PATTERNS = [
    "*",
    "arn:aws:s3:::b1/*",
    "arn:aws:s3:::b1/k",
    "arn:aws:s3:::b12/*",
    "arn:aws:s3:::b1*",
    "arn:aws:s3:::b?/k",
    "arn:aws:s3:::b1/*/logs/*",
    "arn:aws:s3:::*/k",
    "arn:aws:s3:::b2/${aws:username}",
    "arn:aws:s3:::b2/${aws:username}/*",
]
RESOURCES = [
    "arn:aws:s3:::b1/k",
    "arn:aws:s3:::b1/a/logs/z",
    "arn:aws:s3:::b12/k",
    "arn:aws:s3:::b2/alice",
    "arn:aws:s3:::b2/alice/x",
    "arn:aws:s3:::b3/k",
    "arn:aws:s3:::b1",
    "arn",
]
CONDITIONS: list[dict[str, Any]] = [
    {"StringEquals": {"k:env": ["prod", "dev"]}},
    {"StringNotEquals": {"k:env": "prod"}},
    {"StringEqualsIgnoreCase": {"k:env": "PROD"}},
    {"StringLike": {"k:team": "team-a*"}},
    {"NumericLessThan": {"k:level": "5"}},
    {"NumericGreaterThanEqualsIfExists": {"k:level": "3"}},
    {"IpAddress": {"aws:SourceIp": ["10.0.0.0/8", "2001:db8::/32"]}},
    {"NotIpAddress": {"aws:SourceIp": "192.168.0.0/16"}},
    {"Bool": {"aws:MultiFactorAuthPresent": "true"}},
    {"ForAnyValue:StringEquals": {"k:tags": ["a", "b"]}},
    {"Null": {"k:env": "false"}},
    {"StringEquals": {"k:env": "${aws:username}"}},
]
CONTEXT = st.fixed_dictionaries(
    {},
    optional={
        "k:env": st.sampled_from(["prod", "Prod", "dev", ""]),
        "K:Team": st.sampled_from(["team-a1", "team-b", "ops"]),
        "k:level": st.sampled_from(["0", "4", "5", "9", "05", "+3", "4.5", "x", "٣"])
        | st.integers(0, 9),
        "aws:SourceIp": st.sampled_from(
            [
                "10.1.2.3",
                "010.1.2.3",
                " 10.1.2.3",
                "192.168.1.1",
                "2001:db8::1",
                "::ffff:10.0.0.1",
                "x",
            ]
        ),
        "broker:SourceIp": st.just("192.168.9.9"),
        "aws:MultiFactorAuthPresent": st.sampled_from(["true", "TRUE", " true", "false"])
        | st.booleans(),
        "k:tags": st.lists(st.sampled_from(["a", "c"]), max_size=2),
        "aws:username": st.sampled_from(["alice", "bob"]),
    },
)


@st.composite
def statement(draw: st.DrawFn) -> dict[str, Any]:
    found: dict[str, Any] = {
        "Effect": draw(st.sampled_from(["Allow", "Allow", "Deny"])),
        "Action": draw(st.sampled_from(["s3:GetObject", "s3:Get*", "s3:*", "*"])),
        draw(st.sampled_from(["Resource", "Resource", "Resource", "NotResource"])): draw(
            st.lists(st.sampled_from(RESOURCE_PATTERNS), min_size=1, max_size=3)
        ),
    }
    conditions = draw(st.lists(st.sampled_from(CONDITIONS), max_size=2))
    if conditions:
        found["Condition"] = {k: v for c in conditions for k, v in c.items()}
    return found


def policies(prefix: str, max_size: int) -> st.SearchStrategy[tuple[Policy, ...]]:
    documents = st.lists(
        st.lists(statement(), min_size=1, max_size=8), min_size=1, max_size=max_size
    )
    return documents.map(
        lambda docs: tuple(
            parse_policy({"Version": "2012-10-17", "Statement": d}, name=f"{prefix}{i}")
            for i, d in enumerate(docs)
        )
    )


@settings(max_examples=300)
@given(
    identity=policies("p", 4),
    boundary=st.none() | policies("b", 1).map(lambda found: found[0]),
    session=st.just(()) | policies("s", 2),
    resource=st.sampled_from(RESOURCES),
    context=CONTEXT,
    index_from=st.sampled_from([1, 4, 10**9]),
)
def test_evaluate_agrees_with_the_reference(
    identity: tuple[Policy, ...],
    boundary: Policy | None,
    session: tuple[Policy, ...],
    resource: str,
    context: dict[str, Any],
    index_from: int,
) -> None:
    expected = reference("s3:GetObject", resource, context, identity, boundary, session)
    saved = _Statements.INDEX_FROM
    _Statements.INDEX_FROM = index_from
    try:
        got = evaluate("s3:GetObject", resource, context, identity, boundary, session)
        again = evaluate("s3:GetObject", resource, context, identity, boundary, session)
    finally:
        _Statements.INDEX_FROM = saved
    assert got == expected
    assert again == expected  # the second time from the memoised plan


def test_a_long_list_is_indexed_and_scans_few_statements() -> None:
    statements = [
        {"Effect": "Allow", "Action": "s3:*", "Resource": f"arn:aws:s3:::bucket-{i}/*"}
        for i in range(200)
    ] + [{"Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:s3:::bucket-7*"}]
    policy = parse_policy({"Version": "2012-10-17", "Statement": statements}, name="p")
    identity = (policy,)
    d = evaluate("s3:GetObject", "arn:aws:s3:::bucket-7/k", {}, identity)
    assert [m.index for m in d.matched_statements] == [7, 200]
    d = evaluate("s3:GetObject", "arn:aws:s3:::bucket-77/k", {}, identity)
    assert [m.index for m in d.matched_statements] == [77, 200]
    assert not evaluate("s3:GetObject", "arn:aws:s3:::other/k", {}, identity).allowed

    from broker.domain.policy.evaluate import _policy_set

    plan = _policy_set(identity, None, ()).plan("s3:getobject")
    assert plan.first is not None
    assert len(plan.first.candidates("arn:aws:s3:::bucket-7/k")) <= 3


# --- conditions: check against holds, on awkward values -----------------------------------------

AWKWARD = [
    "10.1.2.3", "10.1.2.300", "010.1.2.3", "10.1.2", " 10.1.2.3 ", "10.1.2.3/32", "::ffff:a01:203",
    "2001:db8::1", "", "0", "05", "5", "-5", "+5", "5.0", "1e1", " 7 ", "٣", "1" * 101,
    "true", "TRUE", " true", "false", "yes", "prod", "PROD", "Prod",
]  # fmt: skip
OPERATORS: list[tuple[str, list[str]]] = [
    ("IpAddress", ["10.0.0.0/8"]),
    ("NotIpAddress", ["10.0.0.0/8", "2001:db8::/32"]),
    ("IpAddress", ["2001:db8::/32"]),
    ("NumericLessThan", ["5"]),
    ("NumericEquals", ["5", "1e1"]),
    ("NumericNotEquals", ["5"]),
    ("NumericGreaterThanIfExists", ["-1.5"]),
    ("Bool", ["true"]),
    ("Bool", ["false"]),
    ("StringEquals", ["prod", "PROD"]),
    ("StringNotEqualsIgnoreCase", ["prod"]),
    ("StringLike", ["p*d", "?"]),
    ("DateLessThan", ["2030-01-01"]),
]


@settings(max_examples=400)
@given(
    operator=st.sampled_from(OPERATORS),
    values=st.none() | st.lists(st.sampled_from(AWKWARD) | st.text(max_size=6), max_size=3),
)
def test_compiled_conditions_agree_with_holds(
    operator: tuple[str, list[str]], values: list[str] | None
) -> None:
    name, policy_values = operator
    doc = {
        "Version": "2012-10-17",
        "Statement": {
            "Effect": "Allow",
            "Action": "*",
            "Resource": "*",
            "Condition": {name: {"k:x": policy_values}},
        },
    }
    (condition,) = parse_policy(doc).statements[0].conditions
    assert condition.check is not condition.holds  # compiled
    context = RequestContext({} if values is None else {"k:x": values})
    assert condition.check(context) == condition.holds(context)
    if values is not None and len(values) == 1:
        single = RequestContext({"K:X": values[0]})  # the shape-keyed fast path
        assert condition.check(single) == condition.holds(single)


# --- the context: the fast path reads what full normalisation produces ---------------------------


@settings(max_examples=300)
@given(
    context=st.dictionaries(
        st.sampled_from(["k:a", "K:A", "aws:x", "broker:X", "AWS:y", "k:b"]),
        st.sampled_from(["v", "", "w"])
        | st.booleans()
        | st.integers(-3, 3)
        | st.floats(allow_nan=False, width=16)
        | st.lists(st.sampled_from(["v", "w"]), max_size=2),
        max_size=4,
    )
)
def test_context_fast_path_reads_as_normalised(context: dict[str, Any]) -> None:
    fast = RequestContext(context)
    general = RequestContext(MappingProxyType(context))
    for key in ("k:a", "broker:x", "broker:y", "k:b", "k:c"):
        assert fast.values(key) == general.values(key)
        assert fast.single(key) == general.single(key)
        assert fast.any_value(key, "v".__eq__) == general.any_value(key, "v".__eq__)


def test_context_values_are_checked_even_when_no_condition_reads_them() -> None:
    with pytest.raises(TypeError):
        RequestContext({"k:a": "x", "k:b": {"nested": 1}})
    with pytest.raises(TypeError):
        RequestContext({"k:a": ["x", None]})


@pytest.mark.parametrize(
    ("pattern", "kind"),
    [
        ("abc", "literal"),
        ("abc*", "prefix"),
        ("*abc", "suffix"),
        ("ab*ba", "both ends"),
        ("a*b*c", "segments"),
        ("*", "universal"),
        ("a?c*", "general"),
    ],
)
def test_glob_shapes(pattern: str, kind: str) -> None:
    glob = Glob.of(pattern)
    subjects = ["", "abc", "abcd", "xabc", "aba", "abba", "abxba", "axbxc", "abcc", "a?c"]
    for subject in subjects:
        assert glob.matches(subject) == glob._matches_folded(subject), (kind, subject)


# --- condition value tests: whole-octet networks, whole-number bounds -----------------------------

MORE_OPERATORS: list[tuple[str, list[str]]] = [
    ("IpAddress", ["10.0.0.0/8"]),
    ("IpAddress", ["192.168.0.0/16"]),
    ("NotIpAddress", ["10.1.2.0/24"]),
    ("IpAddress", ["0.0.0.0/0"]),
    ("IpAddress", ["10.1.2.3/32"]),
    ("IpAddress", ["172.16.0.0/12"]),  # not whole octets: the arithmetic path
    ("IpAddress", ["10.1.2.3"]),
    ("NumericLessThan", ["1e1"]),
    ("NumericGreaterThanEquals", ["-0"]),
    ("NumericLessThanEquals", ["5.5"]),
    ("NumericEquals", ["1E+2", "100.0"]),
    ("NumericLessThan", ["1e200"]),
    ("NumericGreaterThan", ["1e999999"]),
    ("Bool", ["true"]),
    ("Bool", ["false"]),
]
ADDRESSES_AND_NUMBERS = [
    "10.1.2.3", "10.1.2.4", "100.1.2.3", "1.10.2.3", "192.168.9.9", "192.169.9.9", "192.16.8.1",
    "172.16.5.4", "172.32.0.1", "0.0.0.0", "255.255.255.255", "010.1.2.3", "10.1.2.03",
    "::ffff:10.1.2.3", "::ffff:c0a8:909", "10.1.2.3 ", "1", "5", "10", "99", "100", "0", "-0",
    "1" * 100, "5.5", "true", "false", "True", "FALSE", " false", "tru",
]  # fmt: skip


@settings(max_examples=400)
@given(
    operator=st.sampled_from(MORE_OPERATORS),
    values=st.none() | st.lists(st.sampled_from(ADDRESSES_AND_NUMBERS), max_size=3),
)
def test_compiled_value_tests_agree_with_holds(
    operator: tuple[str, list[str]], values: list[str] | None
) -> None:
    name, policy_values = operator
    doc = {
        "Version": "2012-10-17",
        "Statement": {
            "Effect": "Allow",
            "Action": "*",
            "Resource": "*",
            "Condition": {name: {"k:x": policy_values}},
        },
    }
    (condition,) = parse_policy(doc).statements[0].conditions
    assert condition.check is not condition.holds  # compiled
    # The general path, value by value, against the matchers' own ``matches``:
    context = RequestContext(MappingProxyType({} if values is None else {"k:x": values}))
    assert condition.check(context) == condition.holds(context)
    if values is not None and len(values) == 1:
        single = RequestContext({"k:x": values[0]})
        assert condition.check(single) == condition.holds(single)


# --- plans and decisions --------------------------------------------------------------------------


def test_an_action_decides_alike_however_it_is_spelled() -> None:
    doc = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "s3:Get*", "Resource": "*"},
            {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*"},
        ],
    }
    identity = (parse_policy(doc, name="p"),)
    decisions = {
        spelled: evaluate(spelled, "arn:aws:s3:::b/k", {}, identity)
        for spelled in ("s3:GetObject", "S3:GETOBJECT", "s3:getobject", "s3:GetObject")
    }
    assert len(set(decisions.values())) == 1
    (decision,) = set(decisions.values())
    assert decision == Decision(
        ALLOWED, (MatchedStatement("p", None, 0, "Allow"), MatchedStatement("p", None, 1, "Allow"))
    )


def test_a_resource_policy_is_rejected_on_every_evaluation() -> None:
    trust = parse_policy(
        {"Statement": {"Effect": "Allow", "Principal": "*", "Action": "*"}}, kind="resource"
    )
    identity = (trust,)  # a tuple: its compiled set is kept between evaluations
    for action in ("s3:GetObject", "s3:GetObject", "S3:GetObject"):
        with pytest.raises(ValueError, match="resource policy"):
            evaluate(action, "r", identity=identity)


def test_no_session_policies_decide_alike_as_a_tuple_or_a_list() -> None:
    doc = {
        "Version": "2012-10-17",
        "Statement": {"Effect": "Allow", "Action": "*", "Resource": "*"},
    }
    identity = (parse_policy(doc, name="p"),)
    as_tuple = evaluate("s3:GetObject", "r", {}, identity, session=())
    as_list = evaluate("s3:GetObject", "r", {}, identity, session=[])
    assert as_tuple == as_list == Decision(ALLOWED, (MatchedStatement("p", None, 0, "Allow"),))


def test_context_keys_given_twice_are_merged_when_first_read() -> None:
    context = RequestContext({"aws:SourceIp": "10.0.0.1", "broker:sourceip": "10.0.0.2"})
    assert context.values("broker:sourceip") == ("10.0.0.1", "10.0.0.2")
    assert context.single("broker:sourceip") is None


@pytest.mark.parametrize(
    "network",
    ["10.0.0.0/8", "192.168.0.0/16", "10.1.2.0/24", "0.0.0.0/0", "10.1.2.3/32", "172.16.0.0/12"],
)
def test_ip_fast_path_agrees_with_ipaddress(network: str) -> None:
    from broker.domain.policy.conditions import _Ip

    matcher = _Ip(network)
    for address in ADDRESSES_AND_NUMBERS:
        assert matcher.test(address) == matcher._matches_parsed(address), address


def test_policies_in_new_lists_reuse_one_compiled_set() -> None:
    """The documented call, ``identity=[p1, p2], session=[]``, makes new lists every time:
    the compiled set is found by the policies the lists hold, and a list changed afterwards
    by its caller changes nothing that was cached."""
    from broker.domain.policy.evaluate import _policy_set

    allow = parse_policy(
        {"Statement": {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}}, name="allow"
    )
    deny = parse_policy(
        {"Statement": {"Effect": "Deny", "Action": "s3:Delete*", "Resource": "*"}}, name="deny"
    )
    first = _policy_set([allow, deny], None, [])
    assert _policy_set([allow, deny], None, []) is first
    assert _policy_set([deny, allow], None, []) is not first  # another order: another set
    assert _policy_set([allow], None, []) is not first
    assert _policy_set([allow, deny], None, [allow]) is not first

    given = [allow]
    assert evaluate("s3:DeleteObject", "r", identity=given, session=[]).decision == ALLOWED
    given.append(deny)  # the caller's list changes: the next call sees both policies
    decision = evaluate("s3:DeleteObject", "r", identity=given, session=[])
    assert decision.decision == "explicitDeny"
    assert evaluate("s3:DeleteObject", "r", identity=[allow], session=[]).decision == ALLOWED


@pytest.mark.parametrize("case", [c for c in CASES if c.caller is None], ids=lambda c: c.id)
def test_a_policy_set_decides_the_corpus_as_evaluate_does(case: Case) -> None:
    """``PolicySet`` (compiled once) against the corpus's expected decisions, twice (the second
    time from the plans the first compiled)."""
    rules = PolicySet(
        identity=[parse_policy(d, name=n) for n, d in case.identity.items()],
        boundary=parse_policy(case.boundary, name="boundary") if case.boundary else None,
        session=[parse_policy(d, name=n) for n, d in case.session.items()],
    )
    for _ in range(2):
        d = rules.evaluate(case.action, case.resource, case.context)
        deciding = tuple(
            f"{m.policy}#{m.sid if m.sid is not None else m.index}" for m in d.matched_statements
        )
        assert (d.decision, deciding) == (case.decision, case.deciding)


def test_a_policy_set_refuses_a_trust_policy_at_once() -> None:
    trust = parse_policy(
        {"Statement": {"Effect": "Allow", "Principal": "*", "Action": "*"}}, kind="resource"
    )
    with pytest.raises(ValueError, match="resource policy"):
        PolicySet(identity=[trust])
