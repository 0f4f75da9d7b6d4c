"""The request context: condition keys and their values, normalised once per evaluation.

Keys match case-insensitively, and a global key is the same key under ``aws:`` and ``broker:``
(DESIGN C2), so both spell one canonical key. Values are strings or lists of strings; booleans
and numbers are accepted and turned into the strings IAM compares (``"true"``, ``"3"``). An empty
list is treated like an absent key.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

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

#: Values that need no per-element check: one value each, converted when a condition reads it.
_SCALARS = frozenset({str, bool, int, float})

Value = tuple[str, ...] | str | bool | int | float  # a normalised tuple, or one value as given

#: For each shape of context (its keys, in order, as given): canonical key -> key as given, or
#: ``_MERGE`` when two keys are one key (their values must be merged). A deployment builds contexts
#: of a handful of shapes (the same claims every time), so this saves lower-casing every key of
#: every request. It holds key names only, never values. Bounded: cleared when full.
_SHAPES: dict[tuple[str, ...], dict[str, str]] = {}
_MAX_SHAPES = 1024
_MERGE: dict[str, str] = {}  # the shape's map when two of its keys are one key
_EMPTY: Mapping[str, str] = {}  # an empty context's values and keys


def _learn_shape(keys: tuple[str, ...]) -> dict[str, str]:
    canonical = {canonical_key(k): k for k in keys}
    found = canonical if len(canonical) == len(keys) else _MERGE
    if len(_SHAPES) >= _MAX_SHAPES:
        _SHAPES.clear()
    _SHAPES[keys] = found
    return found


def _normalised(context: ContextInput) -> dict[str, Value]:
    """Every key canonical, every value a non-empty tuple of strings (empty lists dropped)."""
    values: dict[str, Value] = {}
    for key, raw in context.items():
        if isinstance(raw, list | tuple | set | frozenset):
            texts = tuple(context_value_text(v) for v in raw)
        else:
            texts = (context_value_text(raw),)
        canonical = canonical_key(key)
        previous = values.get(canonical)
        if previous:  # the same key under aws: and broker: — keep every value once
            assert isinstance(previous, tuple)
            texts = previous + tuple(t for t in texts if t not in previous)
        if texts:
            values[canonical] = texts
    return values


class RequestContext:
    """Canonical-key → tuple of string values. Absent keys and empty lists both read as None.

    Every value is checked when the context is built (a bad one raises TypeError at once). In
    the common case — a dict, each key given once, every value a single string, number or
    boolean — nothing is copied: values are read from the caller's dict (which must not change
    during the evaluation) through the shape's canonical-key map, and turned into strings only
    when a condition reads them; most statements read one or two of a request's keys.

    The canonical-key map is looked up on the first read (:meth:`keys`), not when the context
    is built: many requests are decided by statements without conditions, which never read it.
    Compiled conditions read ``given`` and ``keys()`` directly (see ``Condition._compile``).
    """

    __slots__ = ("_keys", "given")

    def __init__(self, context: ContextInput | None = None) -> None:
        #: The values, under the keys in ``_keys``' values.
        self.given: Mapping[str, Value]
        #: Canonical key -> key in ``given``; None until :meth:`keys` looks it up.
        self._keys: Mapping[str, str] | None
        if not context:
            self.given = self._keys = _EMPTY
            return
        if type(context) is dict:
            # Whether every value is a string, number or boolean (one value each, no list to
            # check). A loop, strings first, is cheaper than testing a set of their types.
            for value in context.values():
                if type(value) is not str and type(value) not in _SCALARS:
                    break
            else:
                self.given = context
                self._keys = None
                return
        self._normalise(context)

    def _normalise(self, context: ContextInput) -> None:
        normalised = _normalised(context)
        self.given = normalised
        self._keys = {k: k for k in normalised}

    def keys(self) -> Mapping[str, str]:
        """Canonical key -> the key it is given under in ``given``."""
        keys = self._keys
        if keys is not None:
            return keys
        # Only a dict of scalar values, each key as given, gets here (see __init__).
        shape = tuple(self.given)
        keys = _SHAPES.get(shape)
        if keys is None:
            keys = _learn_shape(shape)
        if keys is _MERGE:  # two of its keys are one key: merge their values, once
            self._normalise(self.given)
            return self.keys()
        self._keys = keys
        return keys

    def values(self, canonical: str) -> tuple[str, ...] | None:
        """Every value of a key (never empty), or None when the key is absent or empty."""
        key = self.keys().get(canonical)
        if key is None:
            return None
        found = self.given[key]
        if type(found) is tuple:
            return found
        if type(found) is str:
            return (found,)
        return (context_value_text(found),)

    def any_value(self, canonical: str, test: Callable[[str], bool]) -> bool | None:
        """Whether any value of a key passes ``test``; None when the key is absent or empty.
        (``values`` and a loop, without building a tuple for a single value.)"""
        key = self.keys().get(canonical)
        if key is None:
            return None
        found = self.given[key]
        if type(found) is str:
            return test(found)
        if type(found) is tuple:
            return any(map(test, found))
        return test(context_value_text(found))

    def single(self, canonical: str) -> str | None:
        """The value of a single-valued key (used by policy variables), else None."""
        key = self.keys().get(canonical)
        if key is None:
            return None
        found = self.given[key]
        if type(found) is str:
            return found
        if type(found) is tuple:
            return found[0] if len(found) == 1 else None
        return context_value_text(found)
