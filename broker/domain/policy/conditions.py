"""Condition operators: a registry that knows every IAM operator and rejects the rest at parse
time, and the compiled conditions that statements carry.

Semantics (AWS IAM, "Condition operators" and "Multivalued context keys"):

* Several keys under one operator, and several operators in one block: all must hold (AND).
  Several values for one key: any may match (OR).
* Without a set qualifier a multivalued context key holds for a positive operator when any
  request value matches any policy value; for a negated operator (``StringNotEquals``,
  ``NotIpAddress``, ...) only when no request value matches any policy value.
* ``ForAnyValue:``: at least one request value passes; false when the key is absent or empty.
  ``ForAllValues:``: every request value passes; true when the key is absent or empty.
* An absent key makes a positive operator false and a negated operator true. ``...IfExists``
  makes the condition true when the key is absent. ``Null`` tests presence (no ``IfExists``).
* A request value that cannot be read as the operator's type (a number, a date, an address)
  matches no policy value.

Speed: a condition without a set qualifier whose values hold no policy variables (nearly all of
them) is compiled to :attr:`Condition.check`, a closure over context-free value tests with fast
paths for the common inputs (a plain decimal integer, a dotted-quad IPv4 address); anything
else falls back to the general :meth:`Condition.holds`, so the semantics are those of ``holds``.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import Any, Literal, Protocol

from broker.domain.policy.context import RequestContext
from broker.domain.policy.variables import (
    Escaped,
    GlobTemplate,
    Text,
    TextTemplate,
    Token,
    parse_tokens,
)

Qualifier = Literal["ForAnyValue", "ForAllValues"] | None

#: Passed to matchers that need no context (they never read it).
_NO_CONTEXT = RequestContext()
_QUALIFIERS: tuple[Literal["ForAnyValue", "ForAllValues"], ...] = ("ForAnyValue", "ForAllValues")
_IF_EXISTS = "IfExists"


class ValueMatcher(Protocol):
    """One compiled policy value of a condition."""

    def matches(self, value: str, context: RequestContext) -> bool:
        """Whether one request value matches this policy value."""
        ...

    def fixed_test(self) -> ValueTest | None:
        """The same test without a context when it needs none (no variables), else None."""
        ...


#: Whether one request value matches one policy value, independent of the request.
ValueTest = Callable[[str], bool]


#: Builds a matcher from one policy value (already a string) and whether variables are on.
#: Raises ValueError with a message for the policy author.
Factory = Callable[[str, bool], ValueMatcher]


# --- value types -------------------------------------------------------------------------------

_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
#: A dotted-quad IPv4 address exactly as ``ipaddress`` accepts it (ASCII digits, no leading
#: zeros, each octet at most 255); anything else takes the ``ipaddress`` path.
_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = re.compile(r"\.".join([_OCTET] * 4))
_EPOCH = re.compile(r"[+-]?\d+(?:\.\d+)?")


def parse_number(text: str) -> Decimal | None:
    if len(text) > 100 or not _NUMBER.fullmatch(text.strip()):
        return None
    try:
        return Decimal(text.strip())
    except InvalidOperation:  # pragma: no cover - the regex admits only valid numbers
        return None


def parse_date(text: str) -> datetime | None:
    """ISO 8601 (a date, or a date and time; no zone means UTC) or epoch seconds."""
    text = text.strip()
    if len(text) > 64:
        return None
    try:
        if _EPOCH.fullmatch(text):
            return datetime.fromtimestamp(float(text), UTC)
        parsed = datetime.fromisoformat(text)
    except (ValueError, OverflowError, OSError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def parse_bool(text: str) -> bool | None:
    lowered = text.strip().lower()
    if lowered == "true":
        return True
    if lowered == "false":
        return False
    return None


def parse_binary(text: str) -> bytes | None:
    # IAM's Binary condition values are standard base64 (AWS's spelling), not JOSE base64url.
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


# --- matchers ----------------------------------------------------------------------------------


class _StringEquals:
    __slots__ = ("_fold", "_template")

    def __init__(self, source: str, variables: bool, *, fold: bool) -> None:
        self._template = TextTemplate(source, variables=variables)
        self._fold = fold

    def matches(self, value: str, context: RequestContext) -> bool:
        expected = self._template.resolve(context)
        if expected is None:
            return False
        if self._fold:
            return value.casefold() == expected.casefold()
        return value == expected

    def fixed_test(self) -> ValueTest | None:
        expected = self._template.fixed_text
        if expected is None:
            return None
        if not self._fold:
            return expected.__eq__
        folded = expected.casefold()
        return lambda value: value.casefold() == folded

    @property
    def exact(self) -> str | None:
        """The value compared case-sensitively without variables, else None."""
        return None if self._fold else self._template.fixed_text


class _StringLike:
    __slots__ = ("_template",)

    def __init__(self, source: str, variables: bool) -> None:
        self._template = GlobTemplate(source, variables=variables)

    def matches(self, value: str, context: RequestContext) -> bool:
        return self._template.matches(value, context)

    def fixed_test(self) -> ValueTest | None:
        glob = self._template.fixed
        if glob is None:
            return None
        return glob.matches if glob.ignore_case else glob.test


#: operator.eq/lt/le/gt/ge, applied to two numbers or two dates.
Compare = Callable[[Any, Any], bool]


class _Numeric:
    __slots__ = ("_compare", "_expected")

    def __init__(self, source: str, compare: Compare) -> None:
        number = parse_number(source)
        if number is None:
            raise ValueError(f"{source!r} is not a number")
        self._expected = number
        self._compare = compare

    def matches(self, value: str, context: RequestContext) -> bool:
        return self.test(value)

    def test(self, value: str) -> bool:
        if value.isdigit() and value.isascii() and len(value) <= 100:
            # A plain decimal integer (the usual case): int and Decimal compare exactly, and
            # parse_number would read the same number, only slower.
            return self._compare(int(value), self._expected)
        number = parse_number(value)
        return number is not None and self._compare(number, self._expected)

    def fixed_test(self) -> ValueTest | None:
        compare, expected = self._compare, self._expected
        # A whole-number bound (the usual case), as an int: an int compares with an int exactly
        # as with the Decimal, only faster. (Bounded: ``1e999999`` stays a Decimal.)
        whole = expected == expected.to_integral_value() and expected.adjusted() < 100
        bound: int | Decimal = int(expected) if whole else expected

        def test(value: str) -> bool:
            if value.isdigit() and value.isascii() and len(value) <= 100:
                return compare(int(value), bound)  # as in ``test``
            number = parse_number(value)
            return number is not None and compare(number, expected)

        return test


class _Date:
    __slots__ = ("_compare", "_expected")

    def __init__(self, source: str, compare: Compare) -> None:
        moment = parse_date(source)
        if moment is None:
            raise ValueError(f"{source!r} is not a date (ISO 8601 or epoch seconds)")
        self._expected = moment
        self._compare = compare

    def matches(self, value: str, context: RequestContext) -> bool:
        moment = parse_date(value)
        return moment is not None and self._compare(moment, self._expected)

    def fixed_test(self) -> ValueTest | None:
        return lambda value: self.matches(value, _NO_CONTEXT)


class _Bool:
    __slots__ = ("_expected",)

    def __init__(self, source: str) -> None:
        expected = parse_bool(source)
        if expected is None:
            raise ValueError(f'{source!r} is not "true" or "false"')
        self._expected = expected

    def matches(self, value: str, context: RequestContext) -> bool:
        return parse_bool(value) is self._expected

    def fixed_test(self) -> ValueTest | None:
        expected = self._expected
        spelled, opposite = ("true", "false") if expected else ("false", "true")

        def test(value: str) -> bool:
            # The exact spellings first: parse_bool would strip and lower-case to get there.
            if value == spelled:
                return True
            return value != opposite and parse_bool(value) is expected

        return test


class _Binary:
    __slots__ = ("_expected",)

    def __init__(self, source: str) -> None:
        expected = parse_binary(source)
        if expected is None:
            raise ValueError(f"{source!r} is not base64")
        self._expected = expected

    def matches(self, value: str, context: RequestContext) -> bool:
        return parse_binary(value) == self._expected

    def fixed_test(self) -> ValueTest | None:
        return lambda value: parse_binary(value) == self._expected


class _Ip:
    __slots__ = ("_bits", "_mask", "_network", "_text")

    def __init__(self, source: str) -> None:
        try:
            self._network: IpNetwork = ipaddress.ip_network(source.strip(), strict=False)
        except ValueError:
            raise ValueError(f"{source!r} is not an IP address or CIDR block") from None
        # For the dotted-quad fast path: an IPv4 address is in an IPv4 network when its masked
        # bits are the network's; it is never in an IPv6 network (mask None).
        ipv4 = self._network.version == 4
        self._mask = int(self._network.netmask) if ipv4 else None
        self._bits = int(self._network.network_address)
        # An IPv4 network of whole octets (/8, /16, /24, the usual blocks) short of /32: the
        # text its addresses start with ("10."). The fast path admits only canonical octets
        # (no leading zeros), so an address is in the network exactly when it starts so.
        self._text: str | None = None
        prefix = self._network.prefixlen
        if ipv4 and prefix % 8 == 0 and prefix < 32:
            octets = self._network.network_address.packed[: prefix // 8]
            self._text = "".join(f"{octet}." for octet in octets)

    def matches(self, value: str, context: RequestContext) -> bool:
        return self.test(value)

    def fixed_test(self) -> ValueTest | None:
        return self.test

    def test(self, value: str) -> bool:
        quad = _IPV4.fullmatch(value)
        if quad is not None:
            if self._mask is None:
                return False
            if self._text is not None:
                return value.startswith(self._text)
            a, b, c, d = quad.groups()
            address = (int(a) << 24) | (int(b) << 16) | (int(c) << 8) | int(d)
            return address & self._mask == self._bits
        return self._matches_parsed(value)

    def _matches_parsed(self, value: str) -> bool:
        address = parse_ip(value)
        if address is None:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return address.version == self._network.version and address in self._network


def _split_arn(tokens: tuple[Token, ...]) -> list[tuple[Token, ...]]:
    """Split template tokens at literal ``:`` into at most six ARN components."""
    components: list[list[Token]] = [[]]
    for token in tokens:
        if not isinstance(token, Text):
            components[-1].append(token)
            continue
        pieces = token.value.split(":")
        for i, piece in enumerate(pieces):
            if i > 0:
                if len(components) < 6:
                    components.append([])
                else:
                    components[-1].append(Escaped(":"))
            if piece:
                components[-1].append(Text(piece))
    return [tuple(c) for c in components]


class _Arn:
    """ArnEquals/ArnLike: the ARN's ``:``-separated components (six at most; the last one,
    the resource, may hold more colons) are matched one by one, with wildcards that do not
    cross a ``:``. The request value is split into as many components as the policy value has,
    so ``*`` alone matches everything. (In IAM ArnEquals and ArnLike behave the same.)"""

    __slots__ = ("_components",)

    def __init__(self, source: str, variables: bool) -> None:
        tokens = parse_tokens(source, variables=variables)
        self._components = tuple(GlobTemplate.from_tokens(c, source) for c in _split_arn(tokens))

    def matches(self, value: str, context: RequestContext) -> bool:
        parts = value.split(":", len(self._components) - 1)
        if len(parts) != len(self._components):
            return False
        return all(p.matches(v, context) for p, v in zip(self._components, parts, strict=True))

    def fixed_test(self) -> ValueTest | None:
        if any(p.fixed is None for p in self._components):
            return None
        return lambda value: self.matches(value, _NO_CONTEXT)


# --- the registry ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OperatorSpec:
    """A base operator (without qualifier or IfExists)."""

    name: str
    factory: Factory
    negated: bool = False
    is_null: bool = False


def _string(*, fold: bool) -> Factory:
    return lambda source, variables: _StringEquals(source, variables, fold=fold)


def _numeric(compare: Compare) -> Factory:
    return lambda source, _variables: _Numeric(source, compare)


def _date(compare: Compare) -> Factory:
    return lambda source, _variables: _Date(source, compare)


def _null(source: str, _variables: bool) -> ValueMatcher:
    return _Bool(source)


def _build_registry() -> Mapping[str, OperatorSpec]:
    specs: list[OperatorSpec] = [
        OperatorSpec("StringEquals", _string(fold=False)),
        OperatorSpec("StringNotEquals", _string(fold=False), negated=True),
        OperatorSpec("StringEqualsIgnoreCase", _string(fold=True)),
        OperatorSpec("StringNotEqualsIgnoreCase", _string(fold=True), negated=True),
        OperatorSpec("StringLike", _StringLike),
        OperatorSpec("StringNotLike", _StringLike, negated=True),
        OperatorSpec("Bool", lambda source, _v: _Bool(source)),
        OperatorSpec("BinaryEquals", lambda source, _v: _Binary(source)),
        OperatorSpec("IpAddress", lambda source, _v: _Ip(source)),
        OperatorSpec("NotIpAddress", lambda source, _v: _Ip(source), negated=True),
        OperatorSpec("ArnEquals", _Arn),
        OperatorSpec("ArnLike", _Arn),
        OperatorSpec("ArnNotEquals", _Arn, negated=True),
        OperatorSpec("ArnNotLike", _Arn, negated=True),
        OperatorSpec("Null", _null, is_null=True),
    ]
    comparisons: list[tuple[str, Compare, bool]] = [
        ("Equals", operator.eq, False),
        ("NotEquals", operator.eq, True),
        ("LessThan", operator.lt, False),
        ("LessThanEquals", operator.le, False),
        ("GreaterThan", operator.gt, False),
        ("GreaterThanEquals", operator.ge, False),
    ]
    for suffix, compare, negated in comparisons:
        specs.append(OperatorSpec("Numeric" + suffix, _numeric(compare), negated=negated))
        specs.append(OperatorSpec("Date" + suffix, _date(compare), negated=negated))
    return MappingProxyType({spec.name: spec for spec in specs})


#: Every base operator by name.
OPERATORS: Mapping[str, OperatorSpec] = _build_registry()


@dataclass(frozen=True, slots=True)
class ParsedOperator:
    spec: OperatorSpec
    qualifier: Qualifier
    if_exists: bool


def parse_operator(name: str) -> ParsedOperator:
    """``[ForAnyValue:|ForAllValues:]<Operator>[IfExists]``; ValueError if unknown or invalid."""
    qualifier: Qualifier = None
    base = name
    for candidate in _QUALIFIERS:
        if name.startswith(candidate + ":"):
            qualifier = candidate
            base = name[len(candidate) + 1 :]
            break
    if_exists = False
    spec = OPERATORS.get(base)
    if spec is None and base.endswith(_IF_EXISTS):
        spec = OPERATORS.get(base[: -len(_IF_EXISTS)])
        if_exists = spec is not None
    if spec is None:
        raise ValueError(f"unknown condition operator {name!r}")
    if spec.is_null and if_exists:
        raise ValueError("Null cannot take IfExists")
    if spec.is_null and qualifier is not None:
        raise ValueError(f"Null cannot take {qualifier}:")
    return ParsedOperator(spec, qualifier, if_exists)


@dataclass(frozen=True, slots=True)
class Condition:
    """One ``operator: {key: values}`` entry: must hold for its statement to apply."""

    operator: str  # as written
    key: str  # as written
    canonical_key: str
    parsed: ParsedOperator
    matchers: tuple[ValueMatcher, ...]
    #: Whether the condition holds for a request: ``holds`` itself, or the same decision
    #: compiled to context-free value tests when the condition allows it (module docstring).
    check: Callable[[RequestContext], bool] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "check", self._compile())

    def _compile(self) -> Callable[[RequestContext], bool]:
        parsed = self.parsed
        if parsed.spec.is_null or parsed.qualifier is not None:
            return self.holds
        tests = [m.fixed_test() for m in self.matchers]
        if not tests or any(t is None for t in tests):
            return self.holds
        exact = [m.exact for m in self.matchers if isinstance(m, _StringEquals)]
        test: ValueTest
        if len(tests) == 1:
            test = tests[0]  # type: ignore[assignment]  # not None: checked above
        elif len(exact) == len(tests) and all(e is not None for e in exact):
            test = frozenset(exact).__contains__
        else:
            alternatives = tuple(t for t in tests if t is not None)
            test = lambda value: any(t(value) for t in alternatives)  # noqa: E731
        key = self.canonical_key
        negated = parsed.spec.negated
        absent = True if parsed.if_exists else negated

        def check(context: RequestContext) -> bool:
            # RequestContext.any_value, inline: this runs for most requests.
            keys = context._keys  # context.keys(), without a call once known
            given = (context.keys() if keys is None else keys).get(key)
            if given is None:
                return absent
            value = context.given[given]
            if type(value) is str:
                return test(value) != negated
            found = context.any_value(key, test)  # several values, or a number or boolean
            return absent if found is None else found != negated

        return check

    def holds(self, context: RequestContext) -> bool:
        values = context.values(self.canonical_key)
        parsed = self.parsed
        if parsed.spec.is_null:
            absent = values is None
            return any(m.matches("true" if absent else "false", context) for m in self.matchers)
        if values is None:
            if parsed.if_exists:
                return True
            if parsed.qualifier == "ForAllValues":
                return True
            if parsed.qualifier == "ForAnyValue":
                return False
            return parsed.spec.negated

        def hit(value: str) -> bool:
            return any(m.matches(value, context) for m in self.matchers)

        negated = parsed.spec.negated
        if parsed.qualifier == "ForAllValues":
            return all(hit(v) != negated for v in values)
        if parsed.qualifier == "ForAnyValue":
            return any(hit(v) != negated for v in values)
        found = any(hit(v) for v in values)
        return found != negated
