"""The layering of ``shared/DESIGN.md`` §2, checked on the source (``tests/domain/test_purity.py``
checks that ``broker/domain`` does no I/O):

- only ``broker/web/`` and the command line (``broker/cli*.py``) import ``aiohttp.web``;
- ``broker/service/`` builds no HTTP types: it imports neither aiohttp nor its multidict/yarl;
- only ``broker/idp/`` (the OIDC relying party) and the web layer's app factory use aiohttp's
  client; ``broker/storage/`` imports nothing above itself.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

BROKER = Path(__file__).resolve().parents[1] / "broker"
FILES = sorted(BROKER.rglob("*.py"))
HTTP_TYPES = ("aiohttp", "multidict", "yarl")


def imports(path: Path) -> list[str]:
    """Every module the file imports, at any depth (also inside functions and TYPE_CHECKING)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
            if node.module == "aiohttp":
                names += [f"aiohttp.{a.name}" for a in node.names]
    return names


def rel(path: Path) -> str:
    return path.relative_to(BROKER).as_posix()


def is_web_or_cli(path: Path) -> bool:
    r = rel(path)
    return r.startswith("web/") or (r.startswith("cli") and r.endswith(".py") and "/" not in r)


@pytest.mark.parametrize("path", FILES, ids=[rel(p) for p in FILES])
def test_only_the_web_layer_and_the_cli_import_aiohttp_web(path: Path) -> None:
    if is_web_or_cli(path):
        return
    bad = [n for n in imports(path) if n == "aiohttp.web" or n.startswith("aiohttp.web.")]
    assert not bad, f"{rel(path)} imports {bad}: only broker/web/ and the CLI may"


SERVICE = sorted((BROKER / "service").rglob("*.py"))


@pytest.mark.parametrize("path", SERVICE, ids=[rel(p) for p in SERVICE])
def test_the_service_layer_builds_no_http_types(path: Path) -> None:
    bad = [n for n in imports(path) if n.split(".")[0] in HTTP_TYPES]
    assert not bad, f"{rel(path)} imports {bad}: use cases know nothing of HTTP"


STORAGE = sorted((BROKER / "storage").rglob("*.py"))
# domain/audit_chain is pure (no I/O): the store links each audit row into the hash chain
STORAGE_MAY_IMPORT = (
    "broker.storage",
    "broker.errors",
    "broker.clock",
    "broker.domain.audit_chain",
)


@pytest.mark.parametrize("path", STORAGE, ids=[rel(p) for p in STORAGE])
def test_storage_imports_nothing_above_itself(path: Path) -> None:
    bad = [
        n
        for n in imports(path)
        if n.split(".")[0] in HTTP_TYPES
        or (n.startswith("broker") and not n.startswith(STORAGE_MAY_IMPORT))
    ]
    assert not bad, f"{rel(path)} imports {bad}"


def test_the_rules_see_a_violation(tmp_path: Path) -> None:
    """The checks above would catch an offender (they are not vacuous)."""
    f = tmp_path / "offender.py"
    f.write_text(
        "from __future__ import annotations\n"
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from aiohttp import web\n"
        "def f() -> None:\n"
        "    import multidict\n"
    )
    assert {"aiohttp.web", "multidict"} <= set(imports(f))
    assert len(FILES) > 50
    assert len(SERVICE) > 10
