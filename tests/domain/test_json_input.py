"""``broker.domain.json_input``: JSON from outside, bounded in size and depth before decoding."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.domain import json_input
from broker.domain.json_input import MAX_DEPTH, JsonInputError, check_depth, loads, loads_object

BIG = 10 * 1024 * 1024


def nest(depth: int, inner: str = "1") -> str:
    return "[" * depth + inner + "]" * depth


def depth_of(value: Any) -> int:
    """The reference depth, recursively (test inputs are shallow enough)."""
    if isinstance(value, list):
        return 1 + max((depth_of(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth_of(v) for v in value.values()), default=0)
    return 0


ACCEPTED: list[tuple[str, str | bytes, Any]] = [
    ("object", '{"a": [1, {"b": null}]}', {"a": [1, {"b": None}]}),
    ("at_the_limit", nest(MAX_DEPTH), json.loads(nest(MAX_DEPTH))),
    ("objects_at_the_limit", '{"a":' * MAX_DEPTH + "1" + "}" * MAX_DEPTH, None),
    ("brackets_in_strings", '["' + "[" * 100 + '", "]]]"]', ["[" * 100, "]]]"]),
    ("escaped_quotes", '["\\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\\\\"]', None),
    ("many_shallow", "[" + ",".join(["[1]"] * 5000) + "]", None),
    ("scalar", "7", 7),
    ("utf8_bytes", '{"é": "ü"}'.encode(), {"é": "ü"}),
]


@pytest.mark.parametrize(
    ("text", "expected"), [a[1:] for a in ACCEPTED], ids=[a[0] for a in ACCEPTED]
)
def test_accepted(text: str | bytes, expected: Any) -> None:
    got = loads(text, max_bytes=BIG)
    assert got == (json.loads(text) if expected is None else expected)


REFUSED: list[tuple[str, str | bytes, str]] = [
    ("one_too_deep", nest(MAX_DEPTH + 1), "too_deep"),
    ("deep_objects", '{"a":' * 4000 + "1" + "}" * 4000, "too_deep"),
    ("deep_4000", nest(4000), "too_deep"),
    ("open_brackets", "[" * 50_000, "not_json"),
    ("closing_first", "]" * 40 + "[" * 40, "not_json"),
    # brackets hidden in strings do not hide real depth
    ("disguised_by_strings", '["]",' * 40 + "1" + "]" * 40, "too_deep"),
    ("duplicate_member", '{"a": 1, "a": 2}', "duplicate_member"),
    ("nan", "[NaN]", "constant"),
    ("infinity", '{"x": -Infinity}', "constant"),
    ("not_utf8", b"\xff\xfe{}", "not_utf8"),
    ("syntax", "{not json", "not_json"),
    ("unterminated_string", '["' + "[" * 100, "not_json"),
    ("huge_number", "1" * 5000, "not_json"),
    ("too_large", "[" + "1," * 600 + "1]", "too_large"),
]


@pytest.mark.parametrize(("text", "reason"), [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED])
def test_refused(text: str | bytes, reason: str) -> None:
    with pytest.raises(JsonInputError) as info:
        loads(text, max_bytes=1024 if reason == "too_large" else BIG)
    assert info.value.reason == reason
    assert info.value.message
    # callers tell the ways apart by type; the reason is the audit log's
    assert type(info.value) is SUBCLASS[reason]


SUBCLASS: dict[str, type[JsonInputError]] = {
    "too_large": json_input.JsonTooLarge,
    "too_deep": json_input.JsonTooDeep,
    "not_utf8": json_input.JsonNotUtf8,
    "not_json": json_input.JsonNotJson,
    "duplicate_member": json_input.JsonDuplicateMember,
    "constant": json_input.JsonConstant,
    "not_object": json_input.JsonNotObject,
}


def test_options() -> None:
    assert loads('{"a": 1, "a": 2}', max_bytes=100, unique_members=False) == {"a": 2}
    assert loads("[NaN]", max_bytes=100, constants=True)[0] != 0
    assert loads(nest(40), max_bytes=100, max_depth=40) == json.loads(nest(40))
    with pytest.raises(json_input.JsonNotObject, match="object") as info:
        loads_object("[1]", max_bytes=100)
    assert info.value.reason == "not_object"


def test_a_pathological_string_is_scanned_in_linear_time() -> None:
    # Every quote starts a string that never closes: a naive string pattern would rescan the
    # rest of the text from each one. This finishes (no timing asserted: it is not quadratic).
    with pytest.raises(JsonInputError):
        loads('"\\' * 200_000 + "[" * 40, max_bytes=BIG)


# --- properties ------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\ab,:'),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.text(alphabet='[]{}"\\ab', max_size=4), children, max_size=3)
    ),
    max_leaves=60,
)


@settings(max_examples=300)
@given(json_values, st.integers(min_value=1, max_value=12))
def test_depth_is_judged_exactly(value: Any, limit: int) -> None:
    text = json.dumps(value)
    if depth_of(value) <= limit:
        check_depth(text, limit)
        assert loads(text, max_bytes=BIG, max_depth=limit) == value
    else:
        with pytest.raises(JsonInputError) as info:
            check_depth(text, limit)
        assert info.value.reason == "too_deep"


@settings(max_examples=300)
@given(st.one_of(st.text(alphabet='[]{}"\\:,1 ae'), st.text(), st.binary()))
def test_anything_is_parsed_or_refused_with_a_reason(data: str | bytes) -> None:
    """Never another exception (RecursionError, UnicodeDecodeError, ...); what is accepted is
    what ``json.loads`` makes of it."""
    try:
        got = loads(data, max_bytes=BIG, max_depth=8)
    except JsonInputError as e:
        reason = e.reason
    else:
        assert got == json.loads(data)
        return
    assert reason in {"too_deep", "not_utf8", "not_json", "duplicate_member", "constant"}
