"""``parse_policy``: a JSON policy document in, a typed :class:`Policy` out, or one
:class:`PolicyError` listing every problem of the document with its path.

Grammar (IAM JSON policy reference, single account)::

    {"Version": "2012-10-17" | "2008-10-17", "Id": str,
     "Statement": statement | [statement, ...]}
    statement = {"Sid": str, "Effect": "Allow" | "Deny",
                 "Action" | "NotAction": str | [str],          exactly one
                 "Resource" | "NotResource": str | [str],      exactly one (identity policies),
                                                               at most one (resource policies)
                 "Principal" | "NotPrincipal": "*" | {type: str | [str]},
                                                               exactly one in resource policies,
                                                               never in identity policies
                 "Condition": {operator: {key: value | [value]}}}

Unknown keys are errors, as are duplicate keys in JSON text and duplicate Sids.
"""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

from broker.domain.json_input import JsonInputError, as_text, check_depth
from broker.domain.policy.conditions import OPERATORS, Condition, ValueMatcher, parse_operator
from broker.domain.policy.context import canonical_key
from broker.domain.policy.errors import PolicyError
from broker.domain.policy.model import (
    ActionSet,
    Effect,
    Policy,
    PolicyKind,
    ResourceSet,
    Statement,
)
from broker.domain.policy.principals import PRINCIPAL_TYPES, PrincipalSet
from broker.domain.policy.variables import GlobTemplate
from broker.domain.policy.wildcard import Glob

VERSIONS = ("2012-10-17", "2008-10-17")
VARIABLES_VERSION = "2012-10-17"
_TOP_KEYS = ("Version", "Id", "Statement")
_STATEMENT_KEYS = (
    "Sid",
    "Effect",
    "Action",
    "NotAction",
    "Resource",
    "NotResource",
    "Principal",
    "NotPrincipal",
    "Condition",
)
_EFFECTS: tuple[Effect, ...] = ("Allow", "Deny")
_KINDS: tuple[PolicyKind, ...] = ("identity", "resource")


_NEEDS_FIX = {
    "Action": 'Add "Action": "service:Action" (or a list of actions).',
    "Resource": 'Add "Resource": "*" or the ARNs/URLs the statement is about.',
    "Principal": 'Add "Principal", e.g. {"Federated": "google"}.',
}


def operator_fix(name: str) -> str:
    """A one-line fix for an unknown or misused condition operator."""
    if name != "Null" and (name.startswith("Null") or name.endswith(":Null")):
        return 'Write "Null" alone: it takes neither IfExists nor a set qualifier.'
    prefix, colon, base = name.rpartition(":")
    qualifiers = ("ForAnyValue", "ForAllValues")
    if colon and prefix not in qualifiers:
        close = difflib.get_close_matches(prefix, qualifiers, 1)
        return f"Did you mean {close[0] if close else 'ForAnyValue or ForAllValues'}:{base}?"
    names = [*OPERATORS, *(f"{o}IfExists" for o in OPERATORS if o != "Null")]
    close = difflib.get_close_matches(base, names, 1)
    if close and close[0] != base:
        return f"Did you mean {prefix}{colon}{close[0]}?"
    return (
        "Use an IAM operator such as StringEquals, StringLike, NumericLessThan, DateGreaterThan,"
        " Bool, IpAddress, ArnLike or Null (optionally with IfExists / ForAnyValue: /"
        " ForAllValues:)."
    )


def value_fix(base_operator: str) -> str:
    """A one-line fix for a condition value the operator cannot read."""
    if base_operator.startswith("Numeric"):
        return 'Write a number, e.g. "10" or "2.5".'
    if base_operator.startswith("Date"):
        return 'Write an ISO 8601 date ("2025-01-31T00:00:00Z") or epoch seconds.'
    if base_operator in ("Bool", "Null"):
        return 'Write "true" or "false".'
    if base_operator == "BinaryEquals":
        return "Write the bytes in base64."
    if base_operator.endswith("IpAddress"):
        return 'Write an IPv4 or IPv6 address or CIDR block, e.g. "10.0.0.0/8".'
    return "Close each ${ with }, e.g. ${aws:username}; write a literal $ as ${$}."


class Errors(list[tuple[str, str]]):
    """``(path, message)`` problems in document order, each with a one-line fix (maybe "")."""

    def __init__(self) -> None:
        super().__init__()
        self.fixes: list[str] = []

    def add(self, path: str, message: str, fix: str = "") -> None:
        self.append((path, message))
        self.fixes.append(fix)

    def fix_list(self) -> list[str]:
        return self.fixes + [""] * (len(self) - len(self.fixes))


def _describe(value: object) -> str:
    """A short rendering of a bad value for an error message."""
    if value is None:
        return "null"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "a list"
    try:
        text = json.dumps(value) if isinstance(value, str | bool | int | float) else repr(value)
    except ValueError:  # an int too long to print
        return "a very long number"
    return text if len(text) <= 60 else text[:57] + "..."


# --- JSON text ---------------------------------------------------------------------------------


_JSON_FIX = "Fix the JSON syntax at that line and column (a JSON linter shows it)."
_BOUNDS_FIX = "Write a smaller, flatter policy (IAM allows 6,144 characters)."
MAX_DOCUMENT_BYTES = 256 * 1024
"""A policy text longer than this is refused before it is parsed (outside input: request
bodies, STS ``Policy``); IAM's own limits are far lower and checked after parsing."""


class _JsonProblem(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _JsonProblem(f"duplicate key {_describe(key)} in a JSON object")
        result[key] = value
    return result


def _no_constants(name: str) -> NoReturn:
    raise _JsonProblem(f"{name} is not allowed in a policy document")


def _load(doc: object) -> Mapping[Any, Any]:
    if isinstance(doc, str | bytes | bytearray):
        try:
            check_depth(as_text(doc, max_bytes=MAX_DOCUMENT_BYTES))
        except JsonInputError as exc:
            raise PolicyError("", exc.message, fixes=[_BOUNDS_FIX]) from None
        try:
            doc = json.loads(doc, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
        except _JsonProblem as exc:
            raise PolicyError("", str(exc), fixes=["Give each key once."]) from None
        except json.JSONDecodeError as exc:
            message = f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
            raise PolicyError("", message, fixes=[_JSON_FIX]) from None
        except (ValueError, RecursionError):
            raise PolicyError("", "not valid JSON", fixes=[_JSON_FIX]) from None
    if not isinstance(doc, Mapping):
        raise PolicyError(
            "",
            f"a policy document must be a JSON object, not {_describe(doc)}",
            fixes=['Write {"Version": "2012-10-17", "Statement": [...]}.'],
        )
    return doc


# --- elements ----------------------------------------------------------------------------------


def _string_list(value: object, path: str, errors: Errors) -> list[tuple[str, str]]:
    """``str | [str, ...]`` → [(path of the item, item)]; problems go to ``errors``."""
    if isinstance(value, str):
        items: list[tuple[str, object]] = [(path, value)]
    elif isinstance(value, list | tuple):
        if not value:
            errors.add(path, "must not be an empty list", "Give at least one value, or remove it.")
            return []
        items = [(f"{path}[{i}]", item) for i, item in enumerate(value)]
    else:
        errors.add(
            path,
            f"must be a string or a list of strings, not {_describe(value)}",
            'Write one string, or a list of strings such as ["a", "b"].',
        )
        return []
    found: list[tuple[str, str]] = []
    for item_path, item in items:
        if not isinstance(item, str):
            errors.add(item_path, f"must be a string, not {_describe(item)}", "Quote the value.")
        elif not item:
            errors.add(item_path, "must not be empty", "Remove the empty string.")
        else:
            found.append((item_path, item))
    return found


def _action_set(value: object, path: str, negated: bool, errors: Errors) -> ActionSet:
    patterns: list[Glob] = []
    services: set[str] | None = None if negated else set()
    for item_path, text in _string_list(value, path, errors):
        prefix, colon, name = text.partition(":")
        if text != "*" and (not colon or not prefix or not name or ":" in name):
            errors.add(
                item_path,
                f"an action is written service:Action or *, not {text!r}",
                'Write the action as service:Action, e.g. "s3:GetObject" or "http:GET".',
            )
            continue
        lowered = text.lower()
        patterns.append(Glob.of(lowered))
        prefix = prefix.lower()
        if services is not None:
            if text == "*" or "*" in prefix or "?" in prefix:
                services = None
            else:
                services.add(prefix)
    return ActionSet(tuple(patterns), negated, None if services is None else frozenset(services))


def _resource_set(
    value: object, path: str, negated: bool, variables: bool, errors: Errors
) -> ResourceSet:
    patterns: list[GlobTemplate] = []
    for item_path, text in _string_list(value, path, errors):
        try:
            patterns.append(GlobTemplate(text, variables=variables))
        except ValueError as exc:
            errors.add(
                item_path, str(exc), "Close each ${ with }, e.g. ${aws:username}, or use ${$}."
            )
    return ResourceSet(tuple(patterns), negated)


def _principal_set(value: object, path: str, negated: bool, errors: Errors) -> PrincipalSet:
    if value == "*":
        return PrincipalSet(everyone=True, by_type=(), negated=negated)
    if not isinstance(value, Mapping):
        errors.add(
            path,
            f'must be "*" or an object of principal types, not {_describe(value)}',
            'Write e.g. {"Federated": "google"} or {"AWS": "arn:broker:iam::<account>:role/x"}.',
        )
        return PrincipalSet(everyone=False, by_type=(), negated=negated)
    if not value:
        errors.add(path, "must name at least one principal", 'Add e.g. "Federated": "google".')
    everyone = False
    by_type: list[tuple[str, tuple[Glob, ...]]] = []
    for kind, names in value.items():
        kind_path = f"{path}.{kind}"
        if kind not in PRINCIPAL_TYPES:
            known = ", ".join(PRINCIPAL_TYPES)
            errors.add(
                kind_path,
                f"unknown principal type {_describe(kind)} (use {known})",
                f"Use one of {known} (spelled exactly).",
            )
            continue
        texts = [text for _, text in _string_list(names, kind_path, errors)]
        if kind == "AWS" and "*" in texts:
            everyone = True
        by_type.append((kind.lower(), tuple(Glob.of(t) for t in texts)))
    return PrincipalSet(everyone=everyone, by_type=tuple(by_type), negated=negated)


def _condition_value_text(value: object) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        try:
            return str(value)
        except ValueError:  # too many digits to print
            return None
    if isinstance(value, float) and math.isfinite(value):
        return repr(value)
    return None


def _conditions(value: object, path: str, variables: bool, errors: Errors) -> list[Condition]:
    if not isinstance(value, Mapping):
        errors.add(
            path,
            f"must be an object of condition operators, not {_describe(value)}",
            'Write {"Operator": {"key": "value"}}, e.g. {"StringEquals": {"aws:username": "a"}}.',
        )
        return []
    conditions: list[Condition] = []
    for op_name, block in value.items():
        op_path = f"{path}.{op_name}"
        if not isinstance(op_name, str):
            errors.add(op_path, "a condition operator must be a string", "Name an operator.")
            continue
        try:
            parsed = parse_operator(op_name)
        except ValueError as exc:
            errors.add(op_path, str(exc), operator_fix(op_name))
            continue
        if not isinstance(block, Mapping) or not block:
            errors.add(
                op_path,
                f"must be an object of condition keys, not {_describe(block)}",
                f'Write {{"{op_name}": {{"<condition key>": "<value>"}}}}.',
            )
            continue
        for key, raw in block.items():
            key_path = f"{op_path}.{key}"
            if not isinstance(key, str) or not key.strip():
                errors.add(
                    key_path,
                    "a condition key must be a non-empty string",
                    "Name a condition key, e.g. aws:SourceIp or google:email.",
                )
                continue
            if isinstance(raw, list | tuple):
                if not raw:
                    errors.add(
                        key_path,
                        "must have at least one value",
                        "Give at least one value, or remove the key.",
                    )
                    continue
                items = [(f"{key_path}[{i}]", v) for i, v in enumerate(raw)]
            else:
                items = [(key_path, raw)]
            matchers: list[ValueMatcher] = []
            for item_path, item in items:
                text = _condition_value_text(item)
                if text is None:
                    message = "a condition value must be a string, number or boolean"
                    errors.add(
                        item_path,
                        f"{message}, not {_describe(item)}",
                        "Write the value as a string.",
                    )
                    continue
                try:
                    matchers.append(parsed.spec.factory(text, variables))
                except ValueError as exc:
                    errors.add(item_path, str(exc), value_fix(parsed.spec.name))
            if len(matchers) == len(items):
                conditions.append(
                    Condition(op_name, key, canonical_key(key), parsed, tuple(matchers))
                )
    return conditions


def _exactly_one(
    statement: Mapping[Any, Any],
    names: tuple[str, str],
    path: str,
    errors: Errors,
    *,
    required: bool,
) -> tuple[str, object] | None:
    present = [n for n in names if n in statement]
    if len(present) == 2:
        errors.add(
            path,
            f"has both {names[0]} and {names[1]}; use one",
            f"Remove {names[0]} or {names[1]}.",
        )
        return None
    if not present:
        if required:
            errors.add(path, f"needs {names[0]} or {names[1]}", _NEEDS_FIX[names[0]])
        return None
    return present[0], statement[present[0]]


def _statement(
    raw: object,
    index: int,
    path: str,
    kind: PolicyKind,
    variables: bool,
    sids: dict[str, str],
    errors: Errors,
) -> Statement | None:
    if not isinstance(raw, Mapping):
        errors.add(
            path,
            f"a statement must be an object, not {_describe(raw)}",
            'Write the statement as {"Effect": ..., "Action": ..., "Resource": ...}.',
        )
        return None
    before = len(errors)
    for key in raw:
        if key not in _STATEMENT_KEYS:
            errors.add(
                f"{path}.{key}",
                "unknown key in a statement",
                "Remove it, or fix its spelling: " + ", ".join(_STATEMENT_KEYS) + ".",
            )

    sid = raw.get("Sid")
    if "Sid" in raw:
        if not isinstance(sid, str):
            errors.add(f"{path}.Sid", f"must be a string, not {_describe(sid)}", "Quote the Sid.")
        elif sid in sids:
            errors.add(
                f"{path}.Sid",
                f"duplicate Sid {sid!r} (also {sids[sid]})",
                "Give every statement its own Sid.",
            )
        else:
            sids[sid] = path

    effect = raw.get("Effect")
    if "Effect" not in raw:
        errors.add(f"{path}.Effect", "is required", 'Add "Effect": "Allow" or "Effect": "Deny".')
    elif effect not in _EFFECTS:
        errors.add(
            f"{path}.Effect",
            f'must be "Allow" or "Deny", not {_describe(effect)}',
            'Write "Allow" or "Deny" (capitalised).',
        )

    actions: ActionSet | None = None
    found = _exactly_one(raw, ("Action", "NotAction"), path, errors, required=True)
    if found is not None:
        name, value = found
        actions = _action_set(value, f"{path}.{name}", name == "NotAction", errors)

    resources: ResourceSet | None = None
    found = _exactly_one(
        raw, ("Resource", "NotResource"), path, errors, required=kind == "identity"
    )
    if found is not None:
        name, value = found
        negated = name == "NotResource"
        resources = _resource_set(value, f"{path}.{name}", negated, variables, errors)

    principals: PrincipalSet | None = None
    if kind == "identity":
        for name in ("Principal", "NotPrincipal"):
            if name in raw:
                errors.add(
                    f"{path}.{name}",
                    "is not allowed in an identity policy",
                    f"Remove {name}: an identity policy applies to whoever it is attached to.",
                )
    else:
        found = _exactly_one(raw, ("Principal", "NotPrincipal"), path, errors, required=True)
        if found is not None:
            name, value = found
            principals = _principal_set(value, f"{path}.{name}", name == "NotPrincipal", errors)

    conditions: list[Condition] = []
    if "Condition" in raw:
        conditions = _conditions(raw["Condition"], f"{path}.Condition", variables, errors)

    if len(errors) > before or actions is None or effect not in _EFFECTS:
        return None
    return Statement(
        index=index,
        sid=sid if isinstance(sid, str) else None,
        effect="Allow" if effect == "Allow" else "Deny",
        actions=actions,
        resources=resources,
        principals=principals,
        conditions=tuple(conditions),
    )


def parse_policy(
    doc: Mapping[str, Any] | str | bytes,
    name: str | None = None,
    *,
    kind: PolicyKind = "identity",
) -> Policy:
    """Parse and check a policy document (a mapping, or JSON text).

    ``name`` is what decisions report as the deciding policy (default: the document's ``Id``,
    else ``"inline"``). ``kind="identity"`` (permission, boundary and session policies) forbids
    ``Principal``; ``kind="resource"`` (trust policies) requires ``Principal`` or
    ``NotPrincipal`` in every statement and makes ``Resource`` optional.

    Raises :class:`PolicyError` listing every problem found.
    """
    if kind not in _KINDS:
        raise ValueError(f"kind must be 'identity' or 'resource', not {kind!r}")
    document = _load(doc)
    errors = Errors()

    for key in document:
        if key not in _TOP_KEYS:
            errors.add(
                str(key),
                "unknown key in a policy document",
                "Remove it; a policy document has only Version, Id and Statement.",
            )

    version = document.get("Version")
    if "Version" in document and version not in VERSIONS:
        allowed = " or ".join(f'"{v}"' for v in VERSIONS)
        errors.add(
            "Version",
            f"must be {allowed}, not {_describe(version)}",
            'Set "Version": "2012-10-17".',
        )
    policy_id = document.get("Id")
    if "Id" in document and not isinstance(policy_id, str):
        errors.add("Id", f"must be a string, not {_describe(policy_id)}", "Quote the Id.")

    variables = version == VARIABLES_VERSION
    statements: list[Statement] = []
    raw_statements: Sequence[tuple[str, object]] = []
    body = document.get("Statement")
    if "Statement" not in document:
        errors.add("Statement", "is required", 'Add "Statement": [{"Effect": ..., ...}].')
    elif isinstance(body, Mapping):
        raw_statements = [("Statement", body)]
    elif isinstance(body, list | tuple):
        if not body:
            errors.add("Statement", "must have at least one statement", "Add a statement.")
        raw_statements = [(f"Statement[{i}]", s) for i, s in enumerate(body)]
    else:
        errors.add(
            "Statement",
            f"must be an object or a list, not {_describe(body)}",
            "Give one statement object or a list of them.",
        )

    sids: dict[str, str] = {}
    for index, (path, raw) in enumerate(raw_statements):
        statement = _statement(raw, index, path, kind, variables, sids, errors)
        if statement is not None:
            statements.append(statement)

    if errors:
        raise PolicyError.collected(errors, errors.fix_list())
    if name is None:
        name = policy_id if isinstance(policy_id, str) and policy_id else "inline"
    return Policy(
        name=name,
        kind=kind,
        version=version if isinstance(version, str) else None,
        id=policy_id if isinstance(policy_id, str) else None,
        statements=tuple(statements),
        document=document,
    )
