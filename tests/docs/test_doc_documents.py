"""The documents README.md and docs/ show parse, and their policies are accepted as they stand:
every ``toml`` block is TOML, every ``json`` block is JSON, and every JSON policy (a trust policy
when it names a ``Principal``) validates with no error and no warning, so that a reader who copies
one gets no complaint from ``broker check-config``. (The configs and commands are run by the tests
that tests/docs/test_snippet_coverage.py names.)"""

from __future__ import annotations

import json
import tomllib

import pytest

from broker.domain.policy.validate import validate_policy
from tests.support.doc_snippets import _FENCE, PAGES, ROOT

DOCUMENTS = [
    pytest.param(lang, body, id=f"{page.relative_to(ROOT)}-{i}")
    for pattern in PAGES
    for page in sorted(ROOT.glob(pattern))
    for i, (lang, body) in enumerate(_FENCE.findall(page.read_text("utf-8")))
    if lang in ("toml", "json")
]


@pytest.mark.parametrize(("lang", "body"), DOCUMENTS)
def test_the_document_parses_and_a_policy_is_accepted_without_warnings(
    lang: str, body: str
) -> None:
    if lang == "toml":
        tomllib.loads(body)
        return
    doc = json.loads(body)
    if "Statement" not in doc:
        return  # output (e.g. check-config --json), not a policy
    statements = doc["Statement"] if isinstance(doc["Statement"], list) else [doc["Statement"]]
    trust = any("Principal" in s or "NotPrincipal" in s for s in statements)
    report = validate_policy(doc, kind="resource" if trust else "identity")
    assert [(f.severity, f.path, f.message) for f in report.findings] == []
