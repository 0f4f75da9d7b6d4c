"""Wildcard patterns as IAM uses them: ``*`` is any run of characters (possibly empty, crossing
``/`` and ``:``) and ``?`` is exactly one character; every other character is literal.

A pattern is split at its stars into fixed-length segments. The first segment is anchored at the
start of the subject, the last at its end, and the middle ones are placed greedily, each at the
leftmost position after the previous one. That is the classic two-pointer glob algorithm: greedy
leftmost placement is always optimal because the star before a segment can absorb any gap, so no
backtracking is ever needed and ``a*a*a*...*b`` against a long string takes O(n·m) at worst.
Segments without ``?`` are found with ``str.find``; a segment with ``?`` becomes a fixed-length
regular expression of escaped literals and ``.`` (never a ``.*``).

Most real patterns have a simple shape, so each compiled pattern also picks a specialised test
(:attr:`Glob.test`): no wildcards is string equality, ``prefix*`` is ``startswith``, ``*suffix``
is ``endswith``, ``prefix*suffix`` is both plus a length check, ``*`` is always true. Only the
rest run the segment loop. The evaluator calls these tests directly on its hot path.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from operator import methodcaller

#: One piece of pattern text and whether ``*``/``?`` in it are wildcards (False: all literal).
Part = tuple[str, bool]

#: A compiled test of a (case-folded, when the pattern ignores case) subject.
Test = Callable[[str], bool]


def _always(_subject: str) -> bool:
    return True


def _prefix_and_suffix(prefix: str, suffix: str) -> Test:
    # The length check keeps the two ends from overlapping ("ab*ba" must not match "aba").
    shortest = len(prefix) + len(suffix)

    def test(subject: str) -> bool:
        return len(subject) >= shortest and subject.startswith(prefix) and subject.endswith(suffix)

    return test


def _literal_segments(prefix: str, middle: tuple[str, ...], suffix: str) -> Test:
    # The general algorithm below, for patterns without ``?`` (``arn:...:bucket/*/logs/*``):
    # plain str methods on locals instead of a call per segment.
    shortest = len(prefix) + sum(map(len, middle)) + len(suffix)

    def test(subject: str) -> bool:
        if (
            len(subject) < shortest
            or not subject.startswith(prefix)
            or not subject.endswith(suffix)
        ):
            return False
        pos = len(prefix)
        end = len(subject) - len(suffix)
        for text in middle:
            found = subject.find(text, pos, end)
            if found < 0:
                return False
            pos = found + len(text)
        return True

    return test


class _Segment:
    __slots__ = ("length", "regex", "text")

    def __init__(self, chars: Sequence[str | None]) -> None:
        self.length = len(chars)
        if any(c is None for c in chars):
            self.text = "".join("?" if c is None else c for c in chars)
            source = "".join("." if c is None else re.escape(c) for c in chars)
            self.regex: re.Pattern[str] | None = re.compile(source, re.DOTALL)
        else:
            self.text = "".join(c for c in chars if c is not None)
            self.regex = None

    def match_at(self, subject: str, pos: int) -> bool:
        if self.regex is None:
            return subject.startswith(self.text, pos)
        return self.regex.match(subject, pos) is not None

    def find(self, subject: str, start: int, end: int) -> int:
        """Leftmost position >= start where the segment fits entirely before ``end``, or -1."""
        if self.regex is None:
            return subject.find(self.text, start, end)
        found = self.regex.search(subject, start, end)
        return -1 if found is None else found.start()


class Glob:
    """A compiled wildcard pattern. ``ignore_case`` lower-cases pattern and subject."""

    __slots__ = (
        "_first",
        "_last",
        "_middle",
        "_min_length",
        "_starred",
        "ignore_case",
        "literal",
        "prefix",
        "source",
        "test",
    )

    def __init__(self, parts: Iterable[Part], *, ignore_case: bool = False) -> None:
        segments: list[list[str | None]] = [[]]
        source: list[str] = []
        for text, wild in parts:
            if ignore_case:
                text = text.lower()
            source.append(text)
            for ch in text:
                if wild and ch == "*":
                    segments.append([])
                elif wild and ch == "?":
                    segments[-1].append(None)
                else:
                    segments[-1].append(ch)
        compiled = [_Segment(s) for s in segments]
        self.source = "".join(source)
        self.ignore_case = ignore_case
        self._starred = len(compiled) > 1
        self._first = compiled[0]
        self._last = compiled[-1]
        self._middle = tuple(compiled[1:-1])
        self._min_length = sum(s.length for s in compiled)
        #: The literal text every match starts with (up to the first wildcard), and the whole
        #: pattern when it has no wildcards at all (else None). Used to index resources.
        self.prefix = self._first.text if self._first.regex is None else ""
        self.literal: str | None = None
        if not self._starred and self._first.regex is None:
            self.literal = self._first.text
        #: Whether an already case-folded subject matches (see the module docstring).
        self.test: Test = self._specialise()

    def _specialise(self) -> Test:
        first, last = self._first, self._last
        if self.literal is not None:
            return self.literal.__eq__
        if not self._starred or any(s.regex is not None for s in (first, last, *self._middle)):
            return self._matches_folded
        if self._middle:
            return _literal_segments(first.text, tuple(s.text for s in self._middle), last.text)
        if not first.text and not last.text:
            return _always
        if not last.text:
            return methodcaller("startswith", first.text)
        if not first.text:
            return methodcaller("endswith", last.text)
        return _prefix_and_suffix(first.text, last.text)

    @classmethod
    def of(cls, pattern: str, *, ignore_case: bool = False) -> Glob:
        """Compile a plain pattern string (every ``*`` and ``?`` is a wildcard)."""
        return cls(((pattern, True),), ignore_case=ignore_case)

    def __repr__(self) -> str:
        return f"Glob({self.source!r})"

    @property
    def is_universal(self) -> bool:
        """True when the pattern matches every string (it is only stars)."""
        return self._starred and self._min_length == 0

    def matches(self, subject: str) -> bool:
        if self.ignore_case:
            subject = subject.lower()
        return self.test(subject)

    def _matches_folded(self, subject: str) -> bool:
        """The general algorithm (the module docstring); ``subject`` is already folded."""
        if not self._starred:
            return len(subject) == self._first.length and self._first.match_at(subject, 0)
        if len(subject) < self._min_length:
            return False
        end = len(subject) - self._last.length
        if not self._first.match_at(subject, 0) or not self._last.match_at(subject, end):
            return False
        pos = self._first.length
        for segment in self._middle:
            found = segment.find(subject, pos, end)
            if found < 0:
                return False
            pos = found + segment.length
        return True
