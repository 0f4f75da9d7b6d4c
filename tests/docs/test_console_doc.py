"""docs/console.md says what the console is: its example policies are the two principals the
browser tests sign in with, it names every ``broker:`` action the console authorizes and every
section of its navigation, and every screenshot it shows exists (the browser tests write them)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from broker.web.console.base import SECTIONS
from tests.e2e.console.conftest import ADMIN_POLICY, READ_ONLY_POLICY

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "console.md").read_text(encoding="utf-8")
CODE = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "broker/web/console").glob("*.py"))


def test_the_example_policies_are_the_tested_principals() -> None:
    blocks = [json.loads(b) for b in re.findall(r"```json\n(.*?)```", DOC, flags=re.S)]
    assert blocks == [ADMIN_POLICY, READ_ONLY_POLICY]


def test_every_console_action_and_section_is_documented() -> None:
    actions = set(re.findall(r'"(broker:[A-Z][A-Za-z]+)"', CODE))
    assert actions, "the console authorizes broker: actions"
    assert sorted(a for a in actions if f"`{a}`" not in DOC) == []
    for s in SECTIONS:
        assert f"`{s.path}" in DOC, s.path
        assert f"`{s.action}`" in DOC, s.action


def test_every_screenshot_shown_exists() -> None:
    shown = re.findall(r"\]\((console/[^)]+\.png)\)", DOC)
    assert len(shown) >= 10
    missing = [p for p in shown if not (ROOT / "docs" / p).exists()]
    assert missing == []
