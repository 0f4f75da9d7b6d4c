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

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

from broker.domain.policy.conditions import Condition, ValueMatcher, parse_operator
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

Errors = list[tuple[str, str]]


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
            doc = json.loads(doc, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
        except _JsonProblem as exc:
            raise PolicyError("", str(exc)) from None
        except json.JSONDecodeError as exc:
            message = f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
            raise PolicyError("", message) from None
        except (ValueError, RecursionError):
            raise PolicyError("", "not valid JSON") from None
    if not isinstance(doc, Mapping):
        raise PolicyError("", f"a policy document must be a JSON object, not {_describe(doc)}")
    return doc


# --- elements ----------------------------------------------------------------------------------


def _string_list(value: object, path: str, errors: Errors) -> list[tuple[str, str]]:
    """``str | [str, ...]`` → [(path of the item, item)]; problems go to ``errors``."""
    if isinstance(value, str):
        items: list[tuple[str, object]] = [(path, value)]
    elif isinstance(value, list | tuple):
        if not value:
            errors.append((path, "must not be an empty list"))
            return []
        items = [(f"{path}[{i}]", item) for i, item in enumerate(value)]
    else:
        errors.append((path, f"must be a string or a list of strings, not {_describe(value)}"))
        return []
    found: list[tuple[str, str]] = []
    for item_path, item in items:
        if not isinstance(item, str):
            errors.append((item_path, f"must be a string, not {_describe(item)}"))
        elif not item:
            errors.append((item_path, "must not be empty"))
        else:
            found.append((item_path, item))
    return found


def _action_set(value: object, path: str, negated: bool, errors: Errors) -> ActionSet:
    patterns: list[Glob] = []
    services: set[str] | None = None if negated else set()
    for item_path, text in _string_list(value, path, errors):
        prefix, colon, name = text.partition(":")
        if text != "*" and (not colon or not prefix or not name or ":" in name):
            errors.append((item_path, f"an action is written service:Action or *, not {text!r}"))
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
            errors.append((item_path, str(exc)))
    return ResourceSet(tuple(patterns), negated)


def _principal_set(value: object, path: str, negated: bool, errors: Errors) -> PrincipalSet:
    if value == "*":
        return PrincipalSet(everyone=True, by_type=(), negated=negated)
    if not isinstance(value, Mapping):
        errors.append(
            (path, f'must be "*" or an object of principal types, not {_describe(value)}')
        )
        return PrincipalSet(everyone=False, by_type=(), negated=negated)
    if not value:
        errors.append((path, "must name at least one principal"))
    everyone = False
    by_type: list[tuple[str, tuple[Glob, ...]]] = []
    for kind, names in value.items():
        kind_path = f"{path}.{kind}"
        if kind not in PRINCIPAL_TYPES:
            known = ", ".join(PRINCIPAL_TYPES)
            errors.append((kind_path, f"unknown principal type {_describe(kind)} (use {known})"))
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
        errors.append((path, f"must be an object of condition operators, not {_describe(value)}"))
        return []
    conditions: list[Condition] = []
    for op_name, block in value.items():
        op_path = f"{path}.{op_name}"
        if not isinstance(op_name, str):
            errors.append((op_path, "a condition operator must be a string"))
            continue
        try:
            parsed = parse_operator(op_name)
        except ValueError as exc:
            errors.append((op_path, str(exc)))
            continue
        if not isinstance(block, Mapping) or not block:
            errors.append((op_path, f"must be an object of condition keys, not {_describe(block)}"))
            continue
        for key, raw in block.items():
            key_path = f"{op_path}.{key}"
            if not isinstance(key, str) or not key.strip():
                errors.append((key_path, "a condition key must be a non-empty string"))
                continue
            if isinstance(raw, list | tuple):
                if not raw:
                    errors.append((key_path, "must have at least one value"))
                    continue
                items = [(f"{key_path}[{i}]", v) for i, v in enumerate(raw)]
            else:
                items = [(key_path, raw)]
            matchers: list[ValueMatcher] = []
            for item_path, item in items:
                text = _condition_value_text(item)
                if text is None:
                    message = "a condition value must be a string, number or boolean"
                    errors.append((item_path, f"{message}, not {_describe(item)}"))
                    continue
                try:
                    matchers.append(parsed.spec.factory(text, variables))
                except ValueError as exc:
                    errors.append((item_path, str(exc)))
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
        errors.append((path, f"has both {names[0]} and {names[1]}; use one"))
        return None
    if not present:
        if required:
            errors.append((path, f"needs {names[0]} or {names[1]}"))
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
        errors.append((path, f"a statement must be an object, not {_describe(raw)}"))
        return None
    before = len(errors)
    for key in raw:
        if key not in _STATEMENT_KEYS:
            errors.append((f"{path}.{key}", "unknown key in a statement"))

    sid = raw.get("Sid")
    if "Sid" in raw:
        if not isinstance(sid, str):
            errors.append((f"{path}.Sid", f"must be a string, not {_describe(sid)}"))
        elif sid in sids:
            errors.append((f"{path}.Sid", f"duplicate Sid {sid!r} (also {sids[sid]})"))
        else:
            sids[sid] = path

    effect = raw.get("Effect")
    if "Effect" not in raw:
        errors.append((f"{path}.Effect", "is required"))
    elif effect not in _EFFECTS:
        errors.append((f"{path}.Effect", f'must be "Allow" or "Deny", not {_describe(effect)}'))

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
                errors.append((f"{path}.{name}", "is not allowed in an identity policy"))
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
    errors: Errors = []

    for key in document:
        if key not in _TOP_KEYS:
            errors.append((str(key), "unknown key in a policy document"))

    version = document.get("Version")
    if "Version" in document and version not in VERSIONS:
        allowed = " or ".join(f'"{v}"' for v in VERSIONS)
        errors.append(("Version", f"must be {allowed}, not {_describe(version)}"))
    policy_id = document.get("Id")
    if "Id" in document and not isinstance(policy_id, str):
        errors.append(("Id", f"must be a string, not {_describe(policy_id)}"))

    variables = version == VARIABLES_VERSION
    statements: list[Statement] = []
    raw_statements: Sequence[tuple[str, object]] = []
    body = document.get("Statement")
    if "Statement" not in document:
        errors.append(("Statement", "is required"))
    elif isinstance(body, Mapping):
        raw_statements = [("Statement", body)]
    elif isinstance(body, list | tuple):
        if not body:
            errors.append(("Statement", "must have at least one statement"))
        raw_statements = [(f"Statement[{i}]", s) for i, s in enumerate(body)]
    else:
        errors.append(("Statement", f"must be an object or a list, not {_describe(body)}"))

    sids: dict[str, str] = {}
    for index, (path, raw) in enumerate(raw_statements):
        statement = _statement(raw, index, path, kind, variables, sids, errors)
        if statement is not None:
            statements.append(statement)

    if errors:
        raise PolicyError.collected(errors)
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
