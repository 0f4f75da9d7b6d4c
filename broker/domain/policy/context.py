"""The request context: condition keys and their values, normalised once per evaluation.

Keys match case-insensitively, and a global key is the same key under ``aws:`` and ``broker:``
(DESIGN C2), so both spell one canonical key. Values are strings or lists of strings; booleans
and numbers are accepted and turned into the strings IAM compares (``"true"``, ``"3"``). An empty
list is treated like an absent key.
"""

from __future__ import annotations

from collections.abc import Mapping

_AWS = "aws:"
_BROKER = "broker:"


def canonical_key(key: str) -> str:
    """The lookup form of a condition key: lower case, ``aws:`` spelled ``broker:``."""
    lowered = key.lower()
    if lowered.startswith(_AWS):
        return _BROKER + lowered[len(_AWS) :]
    return lowered


def context_value_text(value: object) -> str:
    """One context value as the string IAM compares."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    raise TypeError(f"context values must be strings, numbers or booleans, not {type(value)!r}")


ContextInput = Mapping[str, object]


class RequestContext:
    """Canonical-key → tuple of string values. Absent keys and empty lists both read as None."""

    __slots__ = ("_values",)

    def __init__(self, context: ContextInput | None = None) -> None:
        values: dict[str, tuple[str, ...]] = {}
        for key, raw in (context or {}).items():
            if isinstance(raw, list | tuple | set | frozenset):
                texts = tuple(context_value_text(v) for v in raw)
            else:
                texts = (context_value_text(raw),)
            canonical = canonical_key(key)
            previous = values.get(canonical)
            if previous:  # the same key under aws: and broker: — keep every value once
                texts = previous + tuple(t for t in texts if t not in previous)
            if texts:
                values[canonical] = texts
        self._values = values

    def values(self, canonical: str) -> tuple[str, ...] | None:
        """Every value of a key (never empty), or None when the key is absent or empty."""
        return self._values.get(canonical)

    def single(self, canonical: str) -> str | None:
        """The value of a single-valued key (used by policy variables), else None."""
        found = self._values.get(canonical)
        if found is None or len(found) != 1:
            return None
        return found[0]
