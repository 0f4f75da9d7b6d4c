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

from broker.domain import json_input
from broker.domain.policy.parse import MAX_DOCUMENT_BYTES


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


MAX_SHOWN_BYTES = 3 * MAX_DOCUMENT_BYTES
"""A policy document's text read for showing, at most: the largest the API stores, URL-encoded."""


def parse_document(text: str) -> Any | None:
    """A policy document's JSON as IAM answers it (as given, or URL-encoded as
    ``GetPolicyVersion``/``Get*Policy`` answer it); ``None`` if neither parses. Read within
    bounds (``json_input``): only what the API accepted is stored, but what is shown should
    not depend on that."""
    for candidate in (text, unquote(text)):
        try:
            return json_input.loads(candidate, max_bytes=MAX_SHOWN_BYTES, unique_members=False)
        except json_input.JsonInputError:
            continue
    return None


def _document(doc: str | Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(doc, Mapping):
        return doc
    parsed = parse_document(doc)
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
