"""JSON from outside the broker, parsed within bounds: size, nesting depth, and (where the
caller asks) no duplicate object members and no ``NaN``/``Infinity``.

Every parser of JSON that an untrusted party wrote (token headers and payloads, request bodies,
policy documents, provider metadata and key sets) goes through here. Why: the standard
library's decoder recurses once per nesting level, so ``[[[[...`` a few thousand levels deep
raises ``RecursionError`` (which handlers do not expect: it became a 500 or 503) and a document
that parses just below the interpreter's limit still crashes the next recursive consumer
(``json.dumps``, a policy walk, a log line). The depth is therefore measured *before* decoding,
by a linear scan that never recurses: strings are cut out (a bracket inside a string is not
nesting), then matched bracket pairs are removed one level per pass, at most ``max_depth``
passes, each a C-speed byte replace.

RFC 8259 §8.1: JSON exchanged between systems is UTF-8; other encodings are refused.
"""

from __future__ import annotations

import json
import re
from typing import Any, NoReturn

MAX_DEPTH = 32
"""Nesting levels allowed by default. The deepest legitimate documents seen here are policies
(``Statement`` → statement → ``Condition`` → operator → key → values: 5 levels) and provider
claims such as Keycloak's ``resource_access`` (4)."""

# A JSON string, or an unterminated one up to the end of the text: it always matches at a quote
# on the first try (no backtracking), so cutting strings out stays linear on any input.
_STRING = re.compile(r'"[^"\\]*(?:\\(?:.|\Z)[^"\\]*)*(?:"|\Z)', re.DOTALL)
# Openers become "(", closers ")", everything else (already ASCII outside strings) is dropped.
_BRACKETS = bytes.maketrans(b"[{]}", b"(())")
_NOT_BRACKETS = bytes(c for c in range(256) if c not in b"[]{}")


class JsonInputError(ValueError):
    """The input is not acceptable JSON; one subclass per way (callers that treat some ways
    apart catch those subclasses). ``reason`` names the way for the audit log (``too_large``,
    ``too_deep``, ``not_utf8``, ``not_json``, ``duplicate_member``, ``constant``,
    ``not_object``); ``message`` says what is wrong in words (it may quote a member name of
    the input, nothing else)."""

    reason = "not_json"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class JsonTooLarge(JsonInputError):
    """Longer than the caller's ``max_bytes``."""

    reason = "too_large"


class JsonTooDeep(JsonInputError):
    """Arrays/objects nested deeper than ``max_depth``."""

    reason = "too_deep"


class JsonNotUtf8(JsonInputError):
    """Bytes that are not UTF-8 (RFC 8259 §8.1)."""

    reason = "not_utf8"


class JsonNotJson(JsonInputError):
    """Not JSON text at all (syntax, unbalanced brackets, a number too long to read)."""

    reason = "not_json"


class JsonDuplicateMember(JsonInputError):
    """An object names a member twice."""

    reason = "duplicate_member"


class JsonConstant(JsonInputError):
    """``NaN``, ``Infinity`` or ``-Infinity`` where they are not allowed."""

    reason = "constant"


class JsonNotObject(JsonInputError):
    """Valid JSON whose value is not the object the caller needs."""

    reason = "not_object"


def check_depth(text: str, max_depth: int = MAX_DEPTH) -> None:
    """Raise ``JsonTooDeep`` if ``text`` nests arrays/objects deeper than ``max_depth``, or
    ``JsonNotJson`` if (outside strings) its brackets do not
    balance: no JSON value is like that, and ``[[[[...`` must not reach the recursive decoder
    either. Linear in ``len(text)``; a text with at most ``max_depth`` openers is not scanned."""
    if text.count("[") + text.count("{") <= max_depth:
        return
    skeleton = (
        _STRING.sub("", text).encode("utf-8", "surrogatepass").translate(_BRACKETS, _NOT_BRACKETS)
    )
    for _ in range(max_depth):
        if not skeleton:
            return
        shorter = skeleton.replace(b"()", b"")
        if len(shorter) == len(skeleton):
            raise JsonNotJson("not valid JSON: brackets do not balance")
        skeleton = shorter
    if skeleton:
        raise JsonTooDeep(f"JSON nested deeper than {max_depth} levels")


def unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An ``object_pairs_hook`` refusing an object that names a member twice (parsers that
    keep the first and parsers that keep the last would read different values)."""
    out = dict(pairs)  # in C; the names are looked at one by one only to say which repeats
    if len(out) == len(pairs):
        return out
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            shown = json.dumps(key)
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            raise JsonDuplicateMember(f"duplicate key {shown} in a JSON object")
        seen.add(key)
    raise AssertionError("unreachable")  # pragma: no cover


def _no_constant(name: str) -> NoReturn:
    raise JsonConstant(f"{name} is not JSON")


def as_text(data: str | bytes | bytearray, *, max_bytes: int) -> str:
    """``data`` as text, at most ``max_bytes`` long (bytes, or characters of a ``str``)."""
    if len(data) > max_bytes:
        raise JsonTooLarge(f"JSON text longer than {max_bytes} bytes")
    if isinstance(data, str):
        return data
    try:
        return bytes(data).decode("utf-8")
    except UnicodeDecodeError:
        raise JsonNotUtf8("JSON text is not UTF-8") from None


def loads(
    data: str | bytes | bytearray,
    *,
    max_bytes: int,
    max_depth: int = MAX_DEPTH,
    unique_members: bool = True,
    constants: bool = False,
) -> Any:
    """Parse JSON from outside: at most ``max_bytes``, ``max_depth`` levels, each object
    member named once (unless ``unique_members=False``), no ``NaN``/``Infinity`` (unless
    ``constants=True``). Every refusal is a ``JsonInputError``; nothing else escapes."""
    text = as_text(data, max_bytes=max_bytes)
    check_depth(text, max_depth)
    try:
        return json.loads(
            text,
            object_pairs_hook=unique_object if unique_members else None,
            parse_constant=None if constants else _no_constant,
        )
    except JsonInputError:
        raise
    except json.JSONDecodeError as e:
        raise JsonNotJson(f"not valid JSON: {e.msg} (line {e.lineno}, column {e.colno})") from None
    except (ValueError, RecursionError):  # a number over int_max_str_digits; the depth is bounded
        raise JsonNotJson("not valid JSON") from None


def loads_object(
    data: str | bytes | bytearray,
    *,
    max_bytes: int,
    max_depth: int = MAX_DEPTH,
    unique_members: bool = True,
    constants: bool = False,
) -> dict[str, Any]:
    """``loads``, and the value must be a JSON object (``JsonNotObject`` otherwise)."""
    doc = loads(
        data,
        max_bytes=max_bytes,
        max_depth=max_depth,
        unique_members=unique_members,
        constants=constants,
    )
    if not isinstance(doc, dict):
        raise JsonNotObject("the JSON value must be an object")
    return doc
