"""Every command and program in README.md and docs/ is run by a test, as written (issue 15).

A test declares the blocks it runs with ``@runs(...)`` (tests/support/doc_snippets.py); the
declarations are made when its module is imported, so this test imports every test module that
has one and then checks each ``sh``/``bash``/``console``/``python`` block of every page: it must be
declared by a test, or be in ``NOT_RUN`` with the reason it cannot run here. A new or changed
block that is neither fails here; a changed block that a test runs fails that test. A block
with no language, or one that is neither a command's nor in ``NOT_COMMANDS``, is refused too:
output and pseudo-code are ``text``, commands are ``sh``.

To bring a new page's snippets in: run each in a test decorated with ``@runs(page, lang,
section=... | between=... | containing=...)``, or add ``(page, first line): reason`` to
``NOT_RUN`` when it cannot run here. Pages are found by ``PAGES`` (README.md, docs/*.md).
"""

from __future__ import annotations

import hashlib
import importlib
import re
from pathlib import Path

from tests.support.doc_snippets import (
    _FENCE,
    NOT_COMMANDS,
    NOT_RUN,
    PAGES,
    ROOT,
    RUN_BY,
    RUNNABLE,
)

TESTS = ROOT / "tests"


def pages() -> list[str]:
    found = [p for pattern in PAGES for p in sorted(ROOT.glob(pattern))]
    return [str(p.relative_to(ROOT)) for p in found]


def import_declaring_tests() -> None:
    """Import every test module that declares run snippets (``@runs(``), filling RUN_BY."""
    for path in sorted(TESTS.rglob("test_*.py")):
        if re.search(r"^\s*@runs\(", path.read_text("utf-8"), re.M):
            importlib.import_module(".".join(path.relative_to(ROOT).with_suffix("").parts))


def test_every_runnable_block_is_run_by_a_test_or_says_why_not() -> None:
    import_declaring_tests()
    missing, unlabelled, allowed = [], [], set()
    for page in pages():
        for i, (lang, body) in enumerate(_FENCE.findall((ROOT / page).read_text("utf-8"))):
            where = f"{page} block {i} ({lang or 'no language'}): {body.splitlines()[0]!r}"
            if lang not in RUNNABLE + NOT_COMMANDS:
                unlabelled.append(where)
            elif lang in RUNNABLE and (page, body) not in RUN_BY:
                key = (page, body.splitlines()[0])
                if key in NOT_RUN:
                    allowed.add(key)
                else:
                    digest = hashlib.sha256(body.encode()).hexdigest()[:12]
                    missing.append(f"{where} [sha256 {digest}]")
    assert not unlabelled, (
        f"blocks need a language, one of {RUNNABLE + NOT_COMMANDS} (text for output):\n"
        + "\n".join(unlabelled)
    )
    assert not missing, (
        "blocks no test runs: run them in a test decorated with @runs(...) from "
        "tests/support/doc_snippets.py, or add them to NOT_RUN with the reason:\n"
        + "\n".join(missing)
    )
    # an entry for a block that is gone (or now run) is dead weight that could hide a new block
    assert set(NOT_RUN) == allowed, f"stale NOT_RUN entries: {set(NOT_RUN) - allowed}"


def test_the_declarations_name_real_tests() -> None:
    import_declaring_tests()
    for test in set(RUN_BY.values()):
        module, _, name = test.partition("::")
        owner = importlib.import_module(module)
        for part in name.split("."):
            owner = getattr(owner, part)
        assert callable(owner), test
        assert Path(owner.__code__.co_filename).name.startswith("test_"), test
