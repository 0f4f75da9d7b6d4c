"""Properties of the policy engine, checked with hypothesis over small policy vocabularies."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from broker.policy import Decision, Policy, PolicyError, evaluate, parse_policy

ACTION_PATTERNS = [
    "s3:GetObject",
    "s3:*",
    "s3:Get*",
    "S3:getobject",
    "ec2:*",
    "*",
    "s?:*",
    "iam:Create*",
]
RESOURCE_PATTERNS = [
    "*",
    "arn:b/*",
    "arn:b/k",
    "arn:b/secret/*",
    "arn:?/k",
    "arn:b/${aws:username}",
]
CONDITIONS: list[dict[str, Any]] = [
    {"StringEquals": {"k:a": "x"}},
    {"StringNotEquals": {"k:a": "x"}},
    {"ForAllValues:StringEquals": {"k:t": ["a", "b"]}},
    {"ForAnyValue:StringLike": {"k:t": "a*"}},
    {"Bool": {"aws:MultiFactorAuthPresent": "true"}},
    {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}},
    {"Null": {"k:a": "true"}},
    {"NumericLessThanIfExists": {"k:n": "5"}},
]

ACTIONS = ["s3:GetObject", "s3:PutObject", "ec2:RunInstances", "iam:CreateUser"]
RESOURCES = ["arn:b/k", "arn:b/secret/x", "arn:c/k", "arn:b/alice"]
CONTEXTS = st.fixed_dictionaries(
    {},
    optional={
        "k:a": st.sampled_from(["x", "y"]),
        "k:t": st.lists(st.sampled_from(["a", "b", "c"]), max_size=3),
        "aws:MultiFactorAuthPresent": st.sampled_from(["true", "false"]),
        "broker:SourceIp": st.sampled_from(["10.1.1.1", "192.0.2.1"]),
        "k:n": st.sampled_from(["1", "9"]),
        "aws:username": st.just("alice"),
    },
)


@st.composite
def statements(draw: st.DrawFn, effect: str | None = None) -> dict[str, Any]:
    statement: dict[str, Any] = {
        "Effect": effect or draw(st.sampled_from(["Allow", "Deny"])),
        draw(st.sampled_from(["Action", "NotAction"])): draw(
            st.lists(st.sampled_from(ACTION_PATTERNS), min_size=1, max_size=2)
        ),
        draw(st.sampled_from(["Resource", "Resource", "NotResource"])): draw(
            st.lists(st.sampled_from(RESOURCE_PATTERNS), min_size=1, max_size=2)
        ),
    }
    condition = draw(st.none() | st.sampled_from(CONDITIONS))
    if condition is not None:
        statement["Condition"] = condition
    return statement


def documents(min_size: int = 1) -> st.SearchStrategy[list[dict[str, Any]]]:
    return st.lists(statements(), min_size=min_size, max_size=4)


def parse(stmts: list[dict[str, Any]], name: str) -> Policy:
    return parse_policy({"Version": "2012-10-17", "Statement": stmts}, name=name)


def parse_all(docs: list[list[dict[str, Any]]], prefix: str) -> list[Policy]:
    return [parse(d, f"{prefix}{i}") for i, d in enumerate(docs)]


REQUESTS = st.tuples(st.sampled_from(ACTIONS), st.sampled_from(RESOURCES), CONTEXTS)


def decide(
    request: tuple[str, str, dict[str, Any]],
    identity: list[Policy],
    boundary: Policy | None = None,
    session: tuple[Policy, ...] = (),
) -> Decision:
    action, resource, context = request
    return evaluate(action, resource, context, identity, boundary, list(session))


@given(
    identity=st.lists(documents(), min_size=1, max_size=3),
    extra_deny=statements(effect="Deny"),
    where=st.integers(min_value=0, max_value=3),
    request=REQUESTS,
)
def test_adding_a_deny_never_allows_more(
    identity: list[list[dict[str, Any]]],
    extra_deny: dict[str, Any],
    where: int,
    request: tuple[str, str, dict[str, Any]],
) -> None:
    before = decide(request, parse_all(identity, "p"))
    widened = [list(d) for d in identity]
    if where < len(widened):
        widened[where].append(extra_deny)
    else:
        widened.append([extra_deny])
    after = decide(request, parse_all(widened, "p"))
    if after.allowed:
        assert before.allowed
    if before.decision == "explicitDeny":
        assert after.decision == "explicitDeny"


@given(
    identity=st.lists(documents(), min_size=1, max_size=2),
    boundary=documents(),
    session=st.lists(documents(), min_size=1, max_size=2),
    request=REQUESTS,
)
def test_boundary_and_session_never_widen(
    identity: list[list[dict[str, Any]]],
    boundary: list[dict[str, Any]],
    session: list[list[dict[str, Any]]],
    request: tuple[str, str, dict[str, Any]],
) -> None:
    policies = parse_all(identity, "p")
    bound = parse(boundary, "boundary")
    sessions = tuple(parse_all(session, "s"))
    plain = decide(request, policies)
    for limited in (
        decide(request, policies, bound),
        decide(request, policies, None, sessions),
        decide(request, policies, bound, sessions),
    ):
        if limited.allowed:
            assert plain.allowed
        if plain.decision == "explicitDeny":
            assert limited.decision == "explicitDeny"


@given(data=st.data(), identity=st.lists(documents(), min_size=1, max_size=3), request=REQUESTS)
def test_order_does_not_change_the_decision(
    data: st.DataObject,
    identity: list[list[dict[str, Any]]],
    request: tuple[str, str, dict[str, Any]],
) -> None:
    named = [[{**s, "Sid": f"S{i}"} for i, s in enumerate(statements_)] for statements_ in identity]
    shuffled = [data.draw(st.permutations(d)) for d in named]
    order = data.draw(st.permutations(range(len(named))))
    first = decide(request, [parse(named[i], f"p{i}") for i in range(len(named))])
    second = decide(request, [parse(shuffled[i], f"p{i}") for i in order])
    assert first.decision == second.decision

    def who(d: Decision) -> set[tuple[str, str | None]]:
        return {(m.policy, m.sid) for m in d.matched_statements}

    assert who(first) == who(second)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
KEYS = st.sampled_from(
    [
        "Version",
        "Statement",
        "Id",
        "Sid",
        "Effect",
        "Action",
        "NotAction",
        "Resource",
        "NotResource",
        "Principal",
        "NotPrincipal",
        "Condition",
        "StringEquals",
        "ForAllValues:IpAddressIfExists",
        "Null",
        "DateLessThan",
        "ArnLike",
        "Federated",
        "AWS",
    ]
)
VALUES = st.recursive(
    JSON
    | st.sampled_from(["Allow", "Deny", "2012-10-17", "*", "s3:*", "10.0.0.0/8", "${a:b}", "${"]),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(KEYS, children, max_size=4),
    max_leaves=30,
)


def errors_of(call: Any) -> list[tuple[str, str]] | None:
    """The errors of a PolicyError raised by ``call()``, or None when it succeeds."""
    try:
        call()
    except PolicyError as exc:
        return exc.errors
    return None


@given(document=JSON | VALUES, kind=st.sampled_from(["identity", "resource"]))
def test_parse_raises_only_policy_error(document: Any, kind: str) -> None:
    errors = errors_of(
        lambda: parse_policy(document, kind="resource" if kind == "resource" else "identity")
    )
    if errors is not None:
        assert errors
        assert all(isinstance(p, str) and isinstance(m, str) for p, m in errors)


@given(text=st.text(max_size=40) | VALUES.map(json.dumps))
def test_parse_text_raises_only_policy_error(text: str) -> None:
    errors = errors_of(lambda: parse_policy(text))
    assert errors is None or errors
