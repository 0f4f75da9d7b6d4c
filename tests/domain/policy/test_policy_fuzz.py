"""Fuzzing the parser and the matchers: arbitrary input raises nothing but PolicyError, and
wildcard patterns stay linear-ish (the glob matcher never backtracks)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.domain.policy.wildcard import Glob
from broker.policy import PolicyError, evaluate, parse_policy, validate_policy

PATTERN = st.text(alphabet="ab*?", max_size=30)
SUBJECT = st.text(alphabet="ab", max_size=40)


def reference(pattern: str, subject: str) -> bool:
    """The obvious regex translation (exponential on some inputs; fine at these sizes)."""
    source = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(source, subject, re.DOTALL) is not None


@settings(max_examples=1000)
@given(pattern=PATTERN, subject=SUBJECT)
def test_glob_agrees_with_reference(pattern: str, subject: str) -> None:
    assert Glob.of(pattern).matches(subject) == reference(pattern, subject)


@settings(max_examples=200)
@given(
    stars=st.integers(1, 200),
    unit=st.sampled_from(["a", "ab", "a?", "?"]),
    length=st.integers(0, 20_000),
    tail=st.sampled_from(["", "b", "c"]),
)
def test_many_stars_stay_fast(stars: int, unit: str, length: int, tail: str) -> None:
    """``a*a*a*...*c`` against ``aaaa...`` is the classic catastrophic case for backtracking
    matchers; this one places each segment once (a backtracking one would not finish this test)."""
    pattern = "*".join([unit] * stars) + "*" + tail
    subject = "a" * length
    glob = Glob.of(pattern)
    glob.matches(subject)
    policy = parse_policy(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Action": f"s3:{pattern}", "Resource": pattern},
                {
                    "Effect": "Deny",
                    "Action": "*",
                    "Resource": "*",
                    "Condition": {"StringLike": {"k:a": pattern}},
                },
            ],
        }
    )
    evaluate(f"s3:{subject}", subject, {"k:a": subject}, identity=[policy])


JSONISH: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True)
    | st.text(max_size=20)
    | st.sampled_from(["Allow", "Deny", "*", "s3:*", "2012-10-17", "${aws:username}", "${"]),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(
        st.sampled_from(
            ["Version", "Statement", "Effect", "Action", "NotAction", "Resource", "NotResource",
             "Principal", "NotPrincipal", "Condition", "Sid", "StringLike", "ForAllValues:Null",
             "NumericLessThanIfExists", "Null", "AWS", "Federated", "k:a", "Id", "x"]
        ),
        children,
        max_size=6,
    ),
    max_leaves=40,
)  # fmt: skip


@settings(max_examples=1000)
@given(document=JSONISH, kind=st.sampled_from(["identity", "resource"]))
def test_policy_shaped_input_raises_only_policy_error(document: Any, kind: Any) -> None:
    for candidate in (document, json.dumps(document)):
        error: PolicyError | None = None
        try:
            parse_policy(candidate, kind=kind)
        except PolicyError as e:
            error = e
        if error is not None:
            assert error.errors
            assert all(isinstance(p, str) and m for p, m in error.errors)
            assert len(error.fixes) == len(error.errors)
        validate_policy(candidate, kind=kind)


@given(depth=st.integers(500, 5000))
def test_deeply_nested_json_is_a_policy_error(depth: int) -> None:
    text = "[" * depth + "]" * depth
    with pytest.raises(PolicyError):
        parse_policy('{"Statement": ' + text + "}")
