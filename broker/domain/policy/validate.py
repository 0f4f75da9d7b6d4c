"""Policy validation in the manner of IAM Access Analyzer: every error and warning of a policy
document, each with its JSON path and a one-line fix.

Errors are what :func:`~broker.domain.policy.parse.parse_policy` rejects (malformed JSON,
unknown keys or operators, wrong value types, a missing ``Effect`` ...) plus ARNs that are not
ARNs (``arn:`` with fewer than six ``:``-separated parts). Warnings are valid policies that
probably do not mean what their author thinks:

==================================  ===========================================================
code                                meaning
==================================  ===========================================================
FEDERATED_TRUST_WITHOUT_SUB_OR_AUD  a trust policy lets every identity of a provider take the
                                    role (no condition on ``<provider>:sub`` or ``:aud``)
FEDERATED_TRUST_WITHOUT_SUB         the same with only ``:aud`` restricted: ``aud`` names the
                                    client, not who the token is for
FEDERATED_TRUST_SUB_MATCHES_ANY     ``StringLike "<provider>:sub": "*"`` (only ``*``/``?``):
                                    every subject, e.g. every GitHub workflow on GitHub
EMAIL_PATTERN_ADMITS_OTHER_DOMAINS  ``StringLike "*@example.com"``, which
                                    ``a@evil.test@example.com`` also matches
STAR_ACTION_ON_STAR_RESOURCE        ``Allow`` of ``*`` on ``*``
ALLOW_WITH_NOT_ACTION               ``Allow`` with ``NotAction`` (allows every future action)
ALLOW_WITH_NOT_RESOURCE             ``Allow`` with ``NotResource``
ALLOW_WITH_NOT_PRINCIPAL            ``Allow`` with ``NotPrincipal``
FORALLVALUES_TRUE_WHEN_ABSENT       ``ForAllValues:`` in an ``Allow`` without ``Null: false``
                                    for its key: true when the request has no such key
QUALIFIER_ON_SINGLE_VALUED_KEY      ``ForAnyValue:``/``ForAllValues:`` on a single-valued key
UNKNOWN_GLOBAL_KEY                  an ``aws:``/``broker:`` key the broker never sets
REDUNDANT_STATEMENT                 another statement of the same effect already covers it
SHADOWED_STATEMENT                  an ``Allow`` that a ``Deny`` of the policy always overrides
DENY_NEVER_MATCHES                  a ``Deny`` whose elements or conditions can never all hold
ALLOW_NEVER_MATCHES                 the same for an ``Allow``
VARIABLES_NOT_SUBSTITUTED           ``${...}`` without ``"Version": "2012-10-17"``
RESOURCE_NOT_ARN_OR_URL             a resource that is neither ``*``, an ARN nor a URL
==================================  ===========================================================

The coverage checks (redundant, shadowed) are sound, not complete: a warning means the
statement really is covered; a covered statement that the checks cannot prove is not reported.

Pure: takes a document, returns findings; never raises for a bad document.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from broker.domain.policy.conditions import parse_number, parse_operator
from broker.domain.policy.context import canonical_key
from broker.domain.policy.errors import PolicyError
from broker.domain.policy.model import Policy, PolicyKind, Statement
from broker.domain.policy.parse import parse_policy
from broker.domain.policy.wildcard import Glob

Severity = Literal["error", "warning"]

#: Global condition keys the broker sets (canonical spelling, DESIGN C2); ``/`` ends a prefix.
GLOBAL_KEYS = frozenset(
    {
        "broker:currenttime",
        "broker:epochtime",
        "broker:sourceip",
        "broker:securetransport",
        "broker:multifactorauthpresent",
        "broker:multifactorauthage",
        "broker:tokenissuetime",
        "broker:principalarn",
        "broker:tagkeys",
        "broker:username",
        "broker:userid",
        "broker:sourceidentity",
    }
)
GLOBAL_KEY_PREFIXES = ("broker:principaltag/", "broker:requesttag/")
MULTI_VALUED_GLOBAL_KEYS = frozenset({"broker:tagkeys"})

_OIDC_PROVIDER = ":oidc-provider/"


@dataclass(frozen=True, slots=True)
class Finding:
    severity: Severity
    code: str
    path: str  # e.g. "Statement[1].Condition.StringEquals"; "" is the whole document
    message: str
    fix: str

    def to_dict(self) -> dict[str, str]:
        return {
            "severity": self.severity,
            "code": self.code,
            "path": self.path,
            "message": self.message,
            "fix": self.fix,
        }

    def __str__(self) -> str:
        where = self.path or "(document)"
        return f"{self.severity}: {where}: {self.message} (fix: {self.fix})"


@dataclass(frozen=True, slots=True)
class ValidationReport:
    """Every finding, errors first then warnings, each in document order. ``policy`` is the
    parsed policy when the document parses."""

    findings: tuple[Finding, ...]
    policy: Policy | None

    @property
    def errors(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == "error")

    @property
    def warnings(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == "warning")

    @property
    def ok(self) -> bool:
        """No errors (warnings allowed)."""
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "errors": [f.to_dict() for f in self.errors],
            "warnings": [f.to_dict() for f in self.warnings],
        }


def validate_policy(
    doc: Mapping[str, Any] | str | bytes,
    *,
    kind: PolicyKind = "identity",
    name: str | None = None,
) -> ValidationReport:
    """Check a policy document (a mapping or JSON text) and report every error and warning.

    ``kind`` is as for :func:`parse_policy`: ``"resource"`` for trust policies. Never raises for
    a bad document (a bad ``kind`` is a programming error: ValueError).
    """
    try:
        policy = parse_policy(doc, name, kind=kind)
    except PolicyError as e:
        findings = [
            Finding("error", "MALFORMED_POLICY", path, message, fix or _generic_fix(path))
            for (path, message), fix in zip(e.errors, e.fixes, strict=True)
        ]
        return ValidationReport(tuple(findings), None)
    checker = _Checker(policy)
    checker.run()
    ordered = sorted(checker.findings, key=lambda f: f.severity != "error")
    return ValidationReport(tuple(ordered), policy)


def _generic_fix(path: str) -> str:
    return "See the IAM JSON policy grammar for this element." if path else "Fix the document."


# --- helpers over the parsed policy ------------------------------------------------------------


def _raw_statements(policy: Policy) -> list[tuple[str, Mapping[str, Any]]]:
    body = policy.document.get("Statement")
    if isinstance(body, Mapping):
        return [("Statement", body)]
    assert isinstance(body, list | tuple)
    return [(f"Statement[{i}]", s) for i, s in enumerate(body)]


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple):
        return [v for v in value if isinstance(v, str)]
    return []


def _glob_covers(wide: str, narrow: str) -> bool:
    """Whether every string ``narrow`` matches is matched by ``wide`` (sound approximation).

    ``wide`` matching the text of ``narrow`` (its wildcards read as characters) proves it,
    because each ``*``/``?`` of ``narrow`` then lies inside a ``*`` of ``wide`` — unless ``wide``
    has a ``?`` that could have consumed a ``*`` of ``narrow``.
    """
    if wide == narrow:
        return True
    glob = Glob.of(wide)
    if glob.is_universal:
        return True
    if "?" in wide and "*" in narrow:
        return False
    return glob.matches(narrow)


def _patterns_cover(wide: Sequence[str], narrow: Sequence[str]) -> bool:
    return all(any(_glob_covers(w, n) for w in wide) for n in narrow)


@dataclass(frozen=True, slots=True)
class _Shape:
    """What one statement matches, in comparable form."""

    statement: Statement
    path: str
    actions: tuple[str, ...]
    actions_negated: bool
    resources: tuple[str, ...] | None  # None: no Resource element (every resource)
    resources_negated: bool
    resources_literal: bool  # has variables: compare by equality only
    principal: str | None  # JSON of Principal/NotPrincipal, or None
    conditions: frozenset[tuple[str, str, str]]  # (operator, canonical key, values JSON)


def _element_covers(
    wide: tuple[str, ...], wide_neg: bool, narrow: tuple[str, ...], narrow_neg: bool
) -> bool:
    if not wide_neg and any(Glob.of(w).is_universal for w in wide):
        return True
    if wide_neg != narrow_neg:
        return False
    if not wide_neg:
        return _patterns_cover(wide, narrow)
    return _patterns_cover(narrow, wide)  # NotX: excluding less allows more


def _covers(wide: _Shape, narrow: _Shape) -> bool:
    if not wide.conditions <= narrow.conditions:
        return False
    if wide.principal != narrow.principal and wide.principal != json.dumps("*"):
        return False
    if not _element_covers(
        wide.actions, wide.actions_negated, narrow.actions, narrow.actions_negated
    ):
        return False
    if wide.resources is None:
        return True
    if narrow.resources is None:
        return False
    if wide.resources_literal or narrow.resources_literal:
        return (wide.resources, wide.resources_negated) == (
            narrow.resources,
            narrow.resources_negated,
        )
    return _element_covers(
        wide.resources, wide.resources_negated, narrow.resources, narrow.resources_negated
    )


class _Checker:
    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.findings: list[Finding] = []
        raw = _raw_statements(policy)
        self.raw: list[tuple[str, Mapping[str, Any]]] = raw
        self.shapes = [self._shape(s, *raw[s.index]) for s in policy.statements]

    def add(self, severity: Severity, code: str, path: str, message: str, fix: str) -> None:
        self.findings.append(Finding(severity, code, path, message, fix))

    def _shape(self, statement: Statement, path: str, raw: Mapping[str, Any]) -> _Shape:
        actions_key = "Action" if "Action" in raw else "NotAction"
        resources_key = (
            "Resource" if "Resource" in raw else "NotResource" if "NotResource" in raw else None
        )
        resources = tuple(_strings(raw[resources_key])) if resources_key else None
        principal_key = (
            "Principal" if "Principal" in raw else "NotPrincipal" if "NotPrincipal" in raw else None
        )
        principal = (
            json.dumps([principal_key, raw[principal_key]], sort_keys=True)
            if principal_key == "NotPrincipal"
            else json.dumps(raw[principal_key], sort_keys=True)
            if principal_key
            else None
        )
        conditions: set[tuple[str, str, str]] = set()
        block = raw.get("Condition")
        if isinstance(block, Mapping):
            for op, keys in block.items():
                for key, values in keys.items():
                    listed = values if isinstance(values, list | tuple) else [values]
                    text = json.dumps(sorted(str(v) for v in listed))
                    conditions.add((op, canonical_key(key), text))
        return _Shape(
            statement=statement,
            path=path,
            actions=tuple(a.lower() for a in _strings(raw[actions_key])),
            actions_negated=actions_key == "NotAction",
            resources=resources,
            resources_negated=resources_key == "NotResource",
            resources_literal=self.policy.variables_enabled
            and any("${" in r for r in resources or ()),
            principal=principal,
            conditions=frozenset(conditions),
        )

    def run(self) -> None:
        self._version()
        for shape in self.shapes:
            raw = self.raw[shape.statement.index][1]
            self._arns(shape, raw)
            self._grants(shape)
            self._conditions(shape, raw)
            self._never_matches(shape, raw)
            self._email_patterns(shape, raw)
            if self.policy.kind == "resource":
                self._federated_trust(shape, raw)
        self._coverage()

    # --- checks --------------------------------------------------------------------------------

    def _version(self) -> None:
        if self.policy.variables_enabled:
            return
        text = json.dumps(self.policy.document.get("Statement"))
        if "${" in text:
            found = "is missing" if self.policy.version is None else f"is {self.policy.version}"
            self.add(
                "warning",
                "VARIABLES_NOT_SUBSTITUTED",
                "Version",
                f"Version {found}, so ${{...}} policy variables are matched as literal text",
                'Add "Version": "2012-10-17" to the document.',
            )

    def _arns(self, shape: _Shape, raw: Mapping[str, Any]) -> None:
        key = "Resource" if "Resource" in raw else "NotResource" if "NotResource" in raw else None
        if key is not None:
            value = raw[key]
            items = [(f"{shape.path}.{key}", value)] if isinstance(value, str) else []
            if isinstance(value, list | tuple):
                items = [(f"{shape.path}.{key}[{i}]", v) for i, v in enumerate(value)]
            for path, text in items:
                if text.startswith("arn:") and len(text.split(":", 5)) < 6:
                    self._bad_arn(path, text)
                elif not (text.startswith("arn:") or "://" in text or "*" in text):
                    self.add(
                        "warning",
                        "RESOURCE_NOT_ARN_OR_URL",
                        path,
                        f"{text!r} is neither an ARN, a URL nor a wildcard, so it only matches "
                        "a resource spelled exactly that way",
                        "Write an ARN (arn:partition:service:region:account:resource) or a URL "
                        "(https://host/path).",
                    )
        pkey = "Principal" if "Principal" in raw else "NotPrincipal"
        principal = raw.get(pkey)
        if isinstance(principal, Mapping):
            for kind, names in principal.items():
                values = [names] if isinstance(names, str) else list(names)
                for i, text in enumerate(values):
                    path = f"{shape.path}.{pkey}.{kind}"
                    path = path if isinstance(names, str) else f"{path}[{i}]"
                    short = text.startswith("arn:") and len(text.split(":", 5)) < 6
                    aws_ok = text.startswith("arn:") or text == "*" or _is_account(text)
                    if short or (kind == "AWS" and not aws_ok):
                        self._bad_arn(path, text)
        block = raw.get("Condition")
        if isinstance(block, Mapping):
            for op, keys in block.items():
                if "Arn" not in op:
                    continue
                for key, values in keys.items():
                    listed = values if isinstance(values, list | tuple) else [values]
                    for i, text in enumerate(listed):
                        path = f"{shape.path}.Condition.{op}.{key}"
                        path = path if len(listed) == 1 and values is text else f"{path}[{i}]"
                        if (
                            isinstance(text, str)
                            and text.startswith("arn:")
                            and len(text.split(":", 5)) < 6
                        ):
                            self._bad_arn(path, text)

    def _bad_arn(self, path: str, text: str) -> None:
        self.add(
            "error",
            "INVALID_ARN",
            path,
            f"{text!r} is not an ARN: an ARN has six parts, "
            "arn:partition:service:region:account:resource",
            "Write the full ARN, e.g. arn:broker:iam::000000000000:role/dev (empty parts stay "
            "as ::).",
        )

    def _grants(self, shape: _Shape) -> None:
        if shape.statement.effect != "Allow":
            return
        if shape.actions_negated:
            self.add(
                "warning",
                "ALLOW_WITH_NOT_ACTION",
                f"{shape.path}.NotAction",
                "Allow with NotAction allows every action not listed, including actions added "
                "later",
                "List the allowed actions in Action instead, or use a Deny with Action.",
            )
        if shape.resources is not None and shape.resources_negated:
            self.add(
                "warning",
                "ALLOW_WITH_NOT_RESOURCE",
                f"{shape.path}.NotResource",
                "Allow with NotResource allows every resource not listed, including new ones",
                "List the allowed resources in Resource instead, or use a Deny with Resource.",
            )
        if shape.principal is not None and shape.principal.startswith('["NotPrincipal"'):
            self.add(
                "warning",
                "ALLOW_WITH_NOT_PRINCIPAL",
                f"{shape.path}.NotPrincipal",
                "Allow with NotPrincipal trusts every principal not listed",
                "Name the trusted principals in Principal instead.",
            )
        star_action = not shape.actions_negated and any(
            Glob.of(a).is_universal or a == "*:*" for a in shape.actions
        )
        star_resource = (
            shape.resources is not None
            and not shape.resources_negated
            and any(Glob.of(r).is_universal for r in shape.resources)
        )
        if star_action and star_resource:
            self.add(
                "warning",
                "STAR_ACTION_ON_STAR_RESOURCE",
                f"{shape.path}.Action",
                'allows every action on every resource ("*" on "*")',
                "Allow only the actions and resources this role needs (least privilege).",
            )

    def _conditions(self, shape: _Shape, raw: Mapping[str, Any]) -> None:
        block = raw.get("Condition")
        if not isinstance(block, Mapping):
            return
        required = {
            canonical_key(k)
            for k, v in _block(block, "Null")
            if _strings(v) == ["false"] or v is False
        }
        for op, key, _values in _entries(block):
            path = f"{shape.path}.Condition.{op}.{key}"
            parsed = parse_operator(op)
            canonical = canonical_key(key)
            if (
                parsed.qualifier == "ForAllValues"
                and shape.statement.effect == "Allow"
                and canonical not in required
            ):
                self.add(
                    "warning",
                    "FORALLVALUES_TRUE_WHEN_ABSENT",
                    path,
                    f"{op} is true when the request has no {key} (or an empty list), so this "
                    "Allow also applies to requests without it",
                    f'Also require the key: add "Null": {{"{key}": "false"}} to the Condition.',
                )
            if parsed.qualifier is not None and self._single_valued(canonical):
                self.add(
                    "warning",
                    "QUALIFIER_ON_SINGLE_VALUED_KEY",
                    path,
                    f"{key} is single-valued; {parsed.qualifier}: is for multivalued keys",
                    f"Drop the {parsed.qualifier}: prefix.",
                )
            positive = (
                not parsed.spec.negated
                and not parsed.spec.is_null
                and not parsed.if_exists
                and parsed.qualifier != "ForAllValues"
            )
            if self._unknown_global(canonical) and not positive:  # positive: *_NEVER_MATCHES
                self.add(
                    "warning",
                    "UNKNOWN_GLOBAL_KEY",
                    path,
                    f"the broker never sets {key}, so the condition always sees it absent",
                    "Use a key the broker sets (aws:SourceIp, aws:PrincipalTag/<k>, aws:username, "
                    "...) or a provider claim <provider>:<claim>.",
                )

    @staticmethod
    def _single_valued(canonical: str) -> bool:
        if canonical in MULTI_VALUED_GLOBAL_KEYS:
            return False
        return canonical in GLOBAL_KEYS or canonical.startswith(GLOBAL_KEY_PREFIXES)

    @staticmethod
    def _unknown_global(canonical: str) -> bool:
        return (
            canonical.startswith("broker:")
            and canonical not in GLOBAL_KEYS
            and not canonical.startswith(GLOBAL_KEY_PREFIXES)
        )

    def _never_matches(self, shape: _Shape, raw: Mapping[str, Any]) -> None:
        reason = self._impossible(shape, raw)
        if reason is None:
            return
        effect = shape.statement.effect
        self.add(
            "warning",
            "DENY_NEVER_MATCHES" if effect == "Deny" else "ALLOW_NEVER_MATCHES",
            reason[0],
            f"this {effect} can never match: {reason[1]}",
            reason[2],
        )

    def _impossible(self, shape: _Shape, raw: Mapping[str, Any]) -> tuple[str, str, str] | None:
        if shape.actions_negated and any(Glob.of(a).is_universal for a in shape.actions):
            return (
                f"{shape.path}.NotAction",
                'NotAction "*" excludes every action',
                "Use Action with the actions you mean.",
            )
        if (
            shape.resources is not None
            and shape.resources_negated
            and any(Glob.of(r).is_universal for r in shape.resources)
        ):
            return (
                f"{shape.path}.NotResource",
                'NotResource "*" excludes every resource',
                "Use Resource with the resources you mean.",
            )
        block = raw.get("Condition")
        if not isinstance(block, Mapping):
            return None
        nulls: dict[str, set[str]] = {}
        for k, v in _block(block, "Null"):
            nulls.setdefault(canonical_key(k), set()).update(
                t.lower() for t in _strings(v) or [str(v).lower()]
            )
        lower: dict[str, tuple[Decimal, bool, str]] = {}  # key -> (bound, inclusive, path)
        upper: dict[str, tuple[Decimal, bool, str]] = {}
        for op, key, values in _entries(block):
            path = f"{shape.path}.Condition.{op}.{key}"
            parsed = parse_operator(op)
            canonical = canonical_key(key)
            positive = (
                not parsed.spec.negated
                and not parsed.spec.is_null
                and not parsed.if_exists
                and parsed.qualifier != "ForAllValues"
            )
            if positive and nulls.get(canonical) == {"true"}:
                return (
                    path,
                    f"Null requires {key} to be absent, but {op} needs it present",
                    f"Remove one of the two conditions on {key}.",
                )
            if positive and self._unknown_global(canonical):
                return (
                    path,
                    f"{op} needs {key}, which the broker never sets",
                    f"Use a key the broker sets, or {op}IfExists if absence should match.",
                )
            if positive and parsed.qualifier is None and len(values) == 1:
                first = values[0]
                number = (
                    parse_number(str(first))
                    if isinstance(first, str | int | float) and not isinstance(first, bool)
                    else None
                )
                name = parsed.spec.name
                if number is not None and name in _LOWER_BOUNDS:
                    lower.setdefault(canonical, (number, _LOWER_BOUNDS[name], path))
                if number is not None and name in _UPPER_BOUNDS:
                    upper.setdefault(canonical, (number, _UPPER_BOUNDS[name], path))
        for flags in nulls.values():
            if flags == {"true", "false"}:
                return (
                    f"{shape.path}.Condition.Null",
                    "Null asks for a key to be both absent and present",
                    'Keep one of "true" and "false".',
                )
        for canonical, (low, low_inclusive, path) in lower.items():
            if canonical in upper:
                high, high_inclusive, _ = upper[canonical]
                if low > high or (low == high and not (low_inclusive and high_inclusive)):
                    return (
                        path,
                        f"no number is both above {low} and below {high}",
                        "Fix the bounds so the range is not empty.",
                    )
        return None

    def _federated_trust(self, shape: _Shape, raw: Mapping[str, Any]) -> None:
        """The federation mistakes: a web-identity trust whose ``sub`` condition is missing
        or admits every subject (with ``aud`` missing or ``"*"``, or not)."""
        if shape.statement.effect != "Allow" or "Principal" not in raw:
            return
        if not shape.statement.actions.matches("sts:assumerolewithwebidentity"):
            return
        principal = raw["Principal"]
        providers: list[str] = []
        if principal == "*":
            providers = ["*"]
        elif isinstance(principal, Mapping):
            for text in _strings(principal.get("Federated")):
                # a registered provider's name is a host/path (``oidc-provider/<host>/<path>``)
                if text.startswith("arn:") and _OIDC_PROVIDER in text:
                    text = text.split(_OIDC_PROVIDER, 1)[1]
                providers.append(text)
        block = raw.get("Condition")
        entries = list(_entries(block)) if isinstance(block, Mapping) else []
        for provider in providers:
            sub = _claim_restriction(entries, provider, "sub")
            if sub.restricted or _names_whom(entries, provider):
                continue
            aud = _claim_restriction(entries, provider, "aud")
            who = "any identity provider" if provider == "*" else provider
            example = "<provider>" if provider == "*" else provider
            sub_fix = (
                f'Match the subjects you mean: "StringEquals": {{"{example}:sub": '
                '"<subject>"}, or an anchored pattern such as "StringLike": '
                f'{{"{example}:sub": "repo:<org>/<repo>:ref:refs/heads/main"}}.'
            )
            if aud.restricted:
                aud_note = ""
            elif aud.wildcard is not None:
                aud_note = f'; {example}:aud "{aud.wildcard[1]}" admits every audience'
            else:
                aud_note = f"; no condition on {example}:aud either"
            if sub.wildcard is not None:
                where, pattern = sub.wildcard
                path = f"{shape.path}.{where}"
                self.add(
                    "warning",
                    "FEDERATED_TRUST_SUB_MATCHES_ANY",
                    path,
                    f'"{pattern}" matches every subject, so every identity of {who} may take '
                    f"this role (for GitHub Actions, every workflow of every repository; for "
                    f"Kubernetes, every service account){aud_note}",
                    sub_fix,
                )
            elif aud.restricted:
                self.add(
                    "warning",
                    "FEDERATED_TRUST_WITHOUT_SUB",
                    f"{shape.path}.Condition",
                    f"no condition on {example}:sub: {example}:aud only names the client the "
                    f"token was issued for, so every identity of {who} that gets such a token "
                    "may take this role",
                    sub_fix,
                )
            else:
                wildcard_aud = aud_note if aud.wildcard is not None else ""
                self.add(
                    "warning",
                    "FEDERATED_TRUST_WITHOUT_SUB_OR_AUD",
                    f"{shape.path}.Condition" if "Condition" in raw else shape.path,
                    f"every identity of {who} may take this role: no condition on "
                    f"{example}:sub or {example}:aud{wildcard_aud}",
                    f'Add e.g. "StringEquals": {{"{example}:sub": "<subject>"}} (and :aud) so '
                    "only the identities you mean can take the role.",
                )

    def _email_patterns(self, shape: _Shape, raw: Mapping[str, Any]) -> None:
        """``StringLike "*@example.com"``: ``*`` crosses ``@``, so it also matches
        ``a@evil.test@example.com``, an address at another domain."""
        block = raw.get("Condition")
        if not isinstance(block, Mapping):
            return
        anchored = {
            canonical_key(key)
            for op, key, values in _entries(block)
            if parse_operator(op).spec.name == "StringNotLike" and "*@*@*" in values
        }
        for op, key, values in _entries(block):
            # StringNotLike too: a Deny "StringNotLike *@example.com" lets the same address out.
            name = parse_operator(op).spec.name
            if name not in ("StringLike", "StringNotLike") or canonical_key(key) in anchored:
                continue
            raw_values = block[op][key]
            for i, value in enumerate(values):
                if not isinstance(value, str) or not _email_suffix_pattern(value):
                    continue
                domain = value.rsplit("@", 1)[1]
                path = f"{shape.path}.Condition.{op}.{key}"
                path = path if isinstance(raw_values, str) else f"{path}[{i}]"
                provider = key.split(":", 1)[0] if ":" in key else "<provider>"
                self.add(
                    "warning",
                    "EMAIL_PATTERN_ADMITS_OTHER_DOMAINS",
                    path,
                    f'"{value}" also matches "a@evil.test@{domain}": "*" matches any '
                    f'characters, "@" too, so an address that is not at {domain} can satisfy it',
                    f'Match the domain exactly: "StringEquals": {{"{provider}:hd": "{domain}"}} '
                    f"(the domain claim your provider vouches for) or list the addresses with "
                    f'"StringEquals" on {key}; or anchor the pattern by adding '
                    f'"StringNotLike": {{"{key}": "*@*@*"}} to the same Condition.',
                )

    def _coverage(self) -> None:
        for shape in self.shapes:
            if self._impossible(shape, self.raw[shape.statement.index][1]) is not None:
                continue
            # A Deny that overrides an Allow says more than a redundant Allow: look at it first.
            others = sorted(self.shapes, key=lambda o: o.statement.effect != "Deny")
            for other in others:
                if other is shape or not _covers(other, shape):
                    continue
                mutual = _covers(shape, other)
                if other.statement.effect == shape.statement.effect:
                    if mutual and other.statement.index > shape.statement.index:
                        continue  # report the later of two equal statements only
                    self.add(
                        "warning",
                        "REDUNDANT_STATEMENT",
                        shape.path,
                        f"{_label(shape)} is redundant: {_label(other)} already "
                        f"{other.statement.effect.lower()}s everything it does",
                        f"Remove {_label(shape)}, or narrow {_label(other)}.",
                    )
                    break
                if shape.statement.effect == "Allow":
                    self.add(
                        "warning",
                        "SHADOWED_STATEMENT",
                        shape.path,
                        f"{_label(shape)} never allows anything: {_label(other)} denies "
                        "everything it allows",
                        f"Remove {_label(shape)}, or narrow the Deny {_label(other)}.",
                    )
                    break


_LOWER_BOUNDS = {"NumericGreaterThan": False, "NumericGreaterThanEquals": True}
_UPPER_BOUNDS = {"NumericLessThan": False, "NumericLessThanEquals": True}


@dataclass(frozen=True, slots=True)
class _Restriction:
    """What a statement's conditions say about one claim of a provider."""

    restricted: bool  # some condition admits only some values
    wildcard: tuple[str, str] | None  # (path, pattern) of a condition that admits every value


def _only_wildcards(value: object) -> bool:
    return isinstance(value, str) and bool(value) and not value.strip("*?")


# Claims that say nothing about *who* holds the token: a condition on them alone still admits
# every identity of the provider (``aud`` is chosen by the requester on GitHub Actions).
_NOT_WHO = frozenset(
    {"aud", "azp", "iss", "iat", "exp", "nbf", "auth_time", "amr", "acr", "jti", "nonce"}
    | {"at_hash", "c_hash", "email_verified"}
)


def _names_whom(entries: Sequence[tuple[str, str, list[object]]], provider: str) -> bool:
    """A condition other than on ``sub`` that narrows whose tokens qualify: exact values of
    an identity claim, e.g. ``google:hd``, ``corp:groups``, ``github:repository``. Patterns
    do not count (``*@example.com`` has its own warning)."""
    if provider == "*":
        return False
    prefix = f"{provider.lower()}:"
    for op, key, values in entries:
        canonical = canonical_key(key)
        if not canonical.startswith(prefix) or canonical[len(prefix) :] in _NOT_WHO | {"sub"}:
            continue
        spec = parse_operator(op).spec
        if (
            spec.negated
            or spec.is_null
            or spec.name not in ("StringEquals", "StringEqualsIgnoreCase")
        ):
            continue
        if values and all(isinstance(v, str) and v for v in values):
            return True
    return False


def _claim_restriction(
    entries: Sequence[tuple[str, str, list[object]]], provider: str, claim: str
) -> _Restriction:
    """Whether conditions (ANDed) on ``<provider>:<claim>`` restrict it; ``provider`` ``*``
    is any provider. Negated and ``Null`` operators admit every value they do not name."""
    suffix = f":{claim}"
    wanted = f"{provider.lower()}{suffix}"
    restricted = False
    wildcard: tuple[str, str] | None = None
    for op, key, values in entries:
        canonical = canonical_key(key)
        if not (canonical == wanted or (provider == "*" and canonical.endswith(suffix))):
            continue
        parsed = parse_operator(op)
        if parsed.spec.negated or parsed.spec.is_null:
            continue
        star = next((v for v in values if _only_wildcards(v)), None)
        if parsed.spec.name == "StringLike" and isinstance(star, str):
            wildcard = wildcard or (f"Condition.{op}.{key}", star)
        else:
            restricted = True
    return _Restriction(restricted, wildcard)


def _email_suffix_pattern(value: str) -> bool:
    """``*@example.com`` and the like: a ``*`` before the last ``@``, a domain after it."""
    if "@" not in value:
        return False
    local, domain = value.rsplit("@", 1)
    return "*" in local and bool(domain) and "*" not in domain and "?" not in domain


def _is_account(text: str) -> bool:
    return len(text) == 12 and text.isascii() and text.isdigit()


def _label(shape: _Shape) -> str:
    sid = shape.statement.sid
    return f"{shape.path} ({sid})" if sid else shape.path


def _block(block: Mapping[str, Any], operator: str) -> Iterable[tuple[str, Any]]:
    keys = block.get(operator)
    return keys.items() if isinstance(keys, Mapping) else ()


def _entries(block: Mapping[str, Any]) -> Iterable[tuple[str, str, list[object]]]:
    for op, keys in block.items():
        for key, values in keys.items():
            yield op, key, list(values) if isinstance(values, list | tuple) else [values]
