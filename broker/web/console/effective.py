"""A principal's effective permissions, for people: every statement of every policy that applies
to it (attached managed, inline, through its groups, the permissions boundary), each with where it
comes from, so a reader sees in one table what the principal may and may not do.

What the engine decides for a given request is the simulator's job (``/console/simulator``);
this is the inventory it decides from.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote


@dataclass(frozen=True)
class Source:
    """One policy that applies: ``kind`` is ``managed``, ``inline``, ``group managed``,
    ``group inline`` or ``boundary``; ``via`` names the group for group policies."""

    kind: str
    name: str
    document: str | Mapping[str, Any]
    via: str = ""
    link: str = ""  # where the console shows this policy ("" if nowhere)


@dataclass(frozen=True)
class Row:
    effect: str
    actions: tuple[str, ...]
    not_actions: bool
    resources: tuple[str, ...]
    not_resources: bool
    condition: str  # the Condition block as compact JSON ("" without one)
    sid: str
    source: Source


def _strings(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list | tuple):
        return tuple(str(v) for v in value)
    return ()


def _document(doc: str | Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(doc, Mapping):
        return doc
    try:
        parsed = json.loads(doc)
    except ValueError:
        try:  # IAM's GetPolicyVersion/Get*Policy answer URL-encoded documents
            parsed = json.loads(unquote(doc))
        except ValueError:
            return {}
    return parsed if isinstance(parsed, Mapping) else {}


def rows(sources: Iterable[Source]) -> list[Row]:
    """The statements of ``sources``, denies first (a deny wins whatever allows)."""
    out: list[Row] = []
    for source in sources:
        body = _document(source.document).get("Statement", [])
        statements: Sequence[Any] = [body] if isinstance(body, Mapping) else body
        if not isinstance(statements, list | tuple):
            continue
        for st in statements:
            if not isinstance(st, Mapping):
                continue
            condition = st.get("Condition")
            out.append(
                Row(
                    effect=str(st.get("Effect", "")),
                    actions=_strings(st.get("Action", st.get("NotAction"))),
                    not_actions="NotAction" in st,
                    resources=_strings(st.get("Resource", st.get("NotResource", "*"))),
                    not_resources="NotResource" in st,
                    condition=json.dumps(condition, separators=(",", ":")) if condition else "",
                    sid=str(st.get("Sid", "")),
                    source=source,
                )
            )
    out.sort(key=lambda r: r.effect != "Deny")
    return out
