"""Policy variables (``${aws:username}``, ``${google:sub}``, ``${key, 'default'}``) and the
templates that hold them.

Variables are substituted only in documents with ``"Version": "2012-10-17"``; otherwise the text
is literal. ``${*}``, ``${?}`` and ``${$}`` stand for a literal ``*``, ``?`` and ``$``. The value
a variable brings in is always literal: a user named ``a*`` does not become a wildcard. A variable
whose key is absent (or multi-valued) and has no default makes the template resolve to ``None``:
that policy value then matches nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from broker.domain.policy.context import RequestContext, canonical_key
from broker.domain.policy.wildcard import Glob, Part

_ESCAPES = {"*": "*", "?": "?", "$": "$"}


@dataclass(frozen=True, slots=True)
class Text:
    """Policy text as written: where the operator uses wildcards, ``*``/``?`` are wildcards."""

    value: str


@dataclass(frozen=True, slots=True)
class Escaped:
    """A literal character written as ``${*}``, ``${?}`` or ``${$}``."""

    value: str


@dataclass(frozen=True, slots=True)
class Variable:
    name: str  # as written, e.g. "aws:username"
    key: str  # canonical lookup key
    default: str | None


Token = Text | Escaped | Variable
Lookup = Callable[[str], str | None]


def _parse_variable(body: str) -> Token:
    """The inside of ``${...}``; raises ValueError with a message for the policy author."""
    if body in _ESCAPES:
        return Escaped(_ESCAPES[body])
    name, comma, rest = body.partition(",")
    name = name.strip()
    if not name or any(c.isspace() for c in name):
        raise ValueError(f"bad policy variable ${{{body}}}: expected ${{key}}")
    default: str | None = None
    if comma:
        rest = rest.strip()
        if len(rest) < 2 or rest[0] != "'" or rest[-1] != "'":
            raise ValueError(
                f"bad policy variable ${{{body}}}: a default is written ${{key, 'default'}}"
            )
        default = rest[1:-1]
    return Variable(name, canonical_key(name), default)


def parse_tokens(text: str, *, variables: bool) -> tuple[Token, ...]:
    """Split text into literal text and variables. Raises ValueError on a malformed ``${``."""
    if not variables or "${" not in text:
        return (Text(text),) if text else ()
    tokens: list[Token] = []
    pos = 0
    while True:
        start = text.find("${", pos)
        if start < 0:
            break
        end = text.find("}", start + 2)
        if end < 0:
            raise ValueError("a policy variable ${ is not closed with }")
        if start > pos:
            tokens.append(Text(text[pos:start]))
        tokens.append(_parse_variable(text[start + 2 : end]))
        pos = end + 1
    if pos < len(text):
        tokens.append(Text(text[pos:]))
    return tuple(tokens)


def resolve_parts(tokens: tuple[Token, ...], lookup: Lookup) -> list[Part] | None:
    """Tokens with variables replaced by their (literal) values, or None if one is missing."""
    parts: list[Part] = []
    for token in tokens:
        if isinstance(token, Text):
            parts.append((token.value, True))
        elif isinstance(token, Escaped):
            parts.append((token.value, False))
        else:
            value = lookup(token.key)
            if value is None:
                value = token.default
            if value is None:
                return None
            parts.append((value, False))
    return parts


def _has_variables(tokens: tuple[Token, ...]) -> bool:
    return any(isinstance(t, Variable) for t in tokens)


class TextTemplate:
    """A value compared exactly (``*`` and ``?`` are literal), possibly with variables."""

    __slots__ = ("_fixed", "_tokens", "source")

    def __init__(self, source: str, *, variables: bool) -> None:
        self.source = source
        self._tokens = parse_tokens(source, variables=variables)
        self._fixed: str | None = None
        if not _has_variables(self._tokens):
            self._fixed = "".join(t.value for t in self._tokens if not isinstance(t, Variable))

    @property
    def fixed_text(self) -> str | None:
        """The value when there are no variables (the same for every request), else None."""
        return self._fixed

    def resolve(self, context: RequestContext) -> str | None:
        if self._fixed is not None:
            return self._fixed
        parts = resolve_parts(self._tokens, context.single)
        return None if parts is None else "".join(text for text, _ in parts)


class GlobTemplate:
    """A wildcard pattern, possibly with variables; compiled once when it has none."""

    __slots__ = ("_glob", "_ignore_case", "_tokens", "source")

    def __init__(self, source: str, *, variables: bool, ignore_case: bool = False) -> None:
        self.source = source
        self._ignore_case = ignore_case
        self._tokens = parse_tokens(source, variables=variables)
        self._glob: Glob | None = None
        if not _has_variables(self._tokens):
            self._glob = self._compile(self._tokens)

    @classmethod
    def from_tokens(cls, tokens: tuple[Token, ...], source: str) -> GlobTemplate:
        self = cls.__new__(cls)
        self.source = source
        self._ignore_case = False
        self._tokens = tokens
        self._glob = None if _has_variables(tokens) else self._compile(tokens)
        return self

    def _compile(self, tokens: tuple[Token, ...]) -> Glob:
        parts = resolve_parts(tokens, lambda _key: None)
        assert parts is not None  # no variables
        return Glob(parts, ignore_case=self._ignore_case)

    @property
    def tokens(self) -> tuple[Token, ...]:
        return self._tokens

    @property
    def fixed(self) -> Glob | None:
        """The compiled pattern when there are no variables (the same for every request)."""
        return self._glob

    def matches(self, subject: str, context: RequestContext) -> bool:
        if self._glob is not None:
            return self._glob.matches(subject)
        parts = resolve_parts(self._tokens, context.single)
        if parts is None:
            return False
        return Glob(parts, ignore_case=self._ignore_case).matches(subject)
