"""The fenced code blocks of a Markdown page, by language and section, for tests that run the
documentation's snippets as written."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parents[2]
# a fence may be indented (inside a list item) and carry more than its language after the backticks
_FENCE_RE = re.compile(r"^( *)```([\w+-]*)[^\n]*\n(.*?)^ *```", re.S | re.M)


class _Fences:
    """``findall``/``finditer`` of the fenced blocks: (language, body without the indent)."""

    def finditer(self, text: str) -> Iterator[re.Match[str]]:
        return _FENCE_RE.finditer(text)

    def findall(self, text: str) -> list[tuple[str, str]]:
        found = []
        for m in _FENCE_RE.finditer(text):
            indent, lang, body = m.groups()
            if indent:
                body = re.sub(rf"^{indent}", "", body, flags=re.M)
            found.append((lang, body))
        return found


_FENCE = _Fences()


def _heading(text: str, pattern: str) -> re.Match[str] | None:
    """The first line matching ``pattern`` outside fenced blocks (a shell comment is no heading)."""
    fences = [f.span() for f in _FENCE.finditer(text)]
    for m in re.finditer(rf"^{pattern}", text, re.M):
        if not any(a <= m.start() < b for a, b in fences):
            return m
    return None


def blocks(
    page: str,
    lang: str,
    *,
    section: str | None = None,
    between: tuple[str, str] | None = None,
    containing: str | None = None,
) -> list[str]:
    """The ``lang`` blocks of ``page`` (relative to the repository), only those under the
    heading ``section`` (up to the next heading of the same or a higher level) when given, or
    between the first occurrences of two marker texts (``between``), or that contain the text
    ``containing``."""
    text = (ROOT / page).read_text("utf-8")
    if between is not None:
        text = text[text.index(between[0]) : text.index(between[1])]
    if section is not None:
        m = _heading(text, rf"(#+) {re.escape(section)}\s*$")
        assert m, f"{page} has no section {section!r}"
        level = len(m.group(1))
        rest = text[m.end() :]
        stop = _heading(rest, rf"#{{1,{level}}} ")
        text = rest[: stop.start()] if stop else rest
    found = [body for kind, body in _FENCE.findall(text) if kind == lang]
    return [b for b in found if containing is None or containing in b]


# --- which snippets are run, and which cannot be ------------------------------------------------

# The languages of blocks that are commands or programs: each one of README.md and docs/*.md is
# run by a test (``@runs``) or named in NOT_RUN (tests/docs/test_snippet_coverage.py).
RUNNABLE = ("sh", "bash", "shell", "zsh", "console", "python", "py", "pycon")
# The languages of everything else: configuration (tested as files by their own tests, e.g.
# tests/forward_auth/test_docs.py, tests/test_examples.py), documents, and output. A block in
# any other language fails the coverage test, so that a command cannot hide behind a new name.
NOT_COMMANDS = ("text", "toml", "json", "yaml", "nginx", "caddyfile", "ini", "hcl")
PAGES = ("README.md", "docs/*.md")

# (page, block text) -> the test that runs it, filled in when the test modules are imported
RUN_BY: dict[tuple[str, str], str] = {}

T = TypeVar("T", bound=Callable[..., Any])


def runs(
    page: str,
    lang: str,
    *,
    section: str | None = None,
    between: tuple[str, str] | None = None,
    containing: str | None = None,
) -> Callable[[T], T]:
    """Declare that the decorated test runs, as written, the blocks ``blocks(page, lang,
    section=..., between=...)`` selects (only those containing ``containing`` when given). Done
    at import, so the coverage test knows every run block without running the tests."""
    found = blocks(page, lang, section=section, between=between, containing=containing)
    assert found, f"no {lang} block of {page} is selected by {section or between or containing}"

    def mark(test: T) -> T:
        for body in found:
            RUN_BY.setdefault((page, body), f"{test.__module__}::{test.__qualname__}")
        return test

    return mark


DOCKER = "needs a Docker daemon and the built image (none in the test environment)"

# Blocks that no test can run here, by (page, the block's first line): one line why. Keep it
# small; a block that changes keeps its entry only while its first line stays the same.
NOT_RUN: dict[tuple[str, str], str] = {
    (
        "README.md",
        "python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/broker serve",
    ): "installs the package and its dependencies from PyPI into a new venv (scripts/test does "
    "the same); the tests run `broker serve` on config/broker.toml (tests/test_serve.py)",
    ("README.md", "bash scripts/test"): "runs the whole test suite, which this test is part of",
    ("README.md", "docker build -t broker ."): DOCKER,
    ("docs/configuration.md", "docker run -p 9000:9000 -v broker-data:/var/lib/broker \\"): DOCKER,
    (
        "docs/configuration.md",
        'export BROKER_KEK="$(openssl rand -base64 32)"   '
        "# once; keep it: it decrypts the signing keys",
    ): DOCKER,
    ("docs/postgresql.md", "printf 'BROKER_KEK=%s\\nPOSTGRES_PASSWORD=%s\\n' \\"): DOCKER
    + "; its .env lines run in tests/test_container.py, compose.yaml is checked there",
}
