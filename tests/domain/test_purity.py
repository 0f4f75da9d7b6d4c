"""``broker/domain`` is pure: it imports only the standard library and the bottom layer."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

DOMAIN = Path(__file__).resolve().parents[2] / "broker" / "domain"
ALLOWED_BROKER = ("broker.domain", "broker.errors", "broker.clock", "broker.config")
FORBIDDEN_STDLIB = {"socket", "subprocess", "asyncio", "sqlite3", "urllib.request", "http.client"}


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


FILES = sorted(DOMAIN.rglob("*.py"))


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(DOMAIN)) for p in FILES])
def test_domain_module_imports_nothing_that_does_io(path: Path) -> None:
    for name in _imports(path):
        top = name.split(".")[0]
        if top == "broker":
            assert name.startswith(ALLOWED_BROKER), f"{path.name} imports {name}"
        elif top != "__future__":
            assert top in sys.stdlib_module_names, f"{path.name} imports third-party {name}"
            assert name not in FORBIDDEN_STDLIB, f"{path.name} imports {name} (I/O)"
