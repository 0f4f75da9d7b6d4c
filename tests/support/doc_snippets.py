"""The fenced code blocks of a Markdown page, by language and section, for tests that run the
documentation's snippets as written."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def blocks(
    page: str,
    lang: str,
    *,
    section: str | None = None,
    between: tuple[str, str] | None = None,
) -> list[str]:
    """The ``lang`` blocks of ``page`` (relative to the repository), only those under the
    heading ``section`` (up to the next heading of the same or a higher level) when given, or
    between the first occurrences of two marker texts (``between``)."""
    text = (ROOT / page).read_text("utf-8")
    if between is not None:
        text = text[text.index(between[0]) : text.index(between[1])]
    if section is not None:
        m = re.search(rf"^(#+) {re.escape(section)}\s*$", text, re.M)
        assert m, f"{page} has no section {section!r}"
        level = len(m.group(1))
        rest = text[m.end() :]
        end = re.search(rf"^#{{1,{level}}} ", rest, re.M)
        text = rest[: end.start()] if end else rest
    return [body for kind, body in _FENCE.findall(text) if kind == lang]
