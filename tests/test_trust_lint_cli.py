"""The trust-policy lint (issue 11, 0d) as people meet it: ``broker check-config`` (and the
start-up log) and ``broker admin policies validate`` show the warnings, and exit 0."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from broker.cli import main
from broker.config import load_settings
from broker.service.container import startup_problems
from broker.service.roles import trust_policy_warnings
from tests.conftest import trust, write_config

ROLES: dict[str, dict[str, Any]] = {
    "gha-any": trust("corp", {"StringLike": {"corp:sub": "*", "corp:aud": "*"}}),
    "gha-aud-only": trust("corp", {"StringEquals": {"corp:aud": "sts.example"}}),
    "by-mail": trust(
        "corp",
        {"StringEquals": {"corp:sub": "alice"}, "StringLike": {"corp:email": "*@example.com"}},
    ),
    "fine": trust("corp", {"StringLike": {"corp:sub": "repo:org/app:*"}}),
}

EXPECTED = [
    ("roles.by-mail.trust_policy: Statement[0].Condition.StringLike.corp:email",
     "EMAIL_PATTERN_ADMITS_OTHER_DOMAINS"),
    ("roles.gha-any.trust_policy: Statement[0].Condition.StringLike.corp:sub",
     "FEDERATED_TRUST_SUB_MATCHES_ANY"),
    ("roles.gha-aud-only.trust_policy: Statement[0].Condition",
     "FEDERATED_TRUST_WITHOUT_SUB"),
]  # fmt: skip


def _lint_warnings(warnings: list[str]) -> list[tuple[str, str]]:
    """(config path, code) of the warnings about trust policies (the test roles' access
    policies, "*" on "*", earn warnings of their own)."""
    found = []
    for w in warnings:
        if ".trust_policy: " in w:
            where, rest = w.split(": ", 1)
            path = f"{where}: {rest.split(': ', 1)[0]}"
            found.append((path, w.rsplit("[", 1)[1].split("]", 1)[0]))
    return sorted(found)


def test_check_config_shows_the_lint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, port=8000, oidc=None, roles=ROLES)
    assert main(["check-config", "--config", str(config), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is True
    assert _lint_warnings(data["warnings"]) == EXPECTED
    assert not any("roles.fine.trust_policy" in w for w in data["warnings"])
    assert main(["check-config", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if "roles.gha-any.trust_policy" in x)
    assert line.startswith("  warning: ")
    assert '"*" matches every subject' in line
    assert 'corp:aud "*" admits every audience' in line
    assert '"StringEquals": {"corp:sub": "<subject>"}' in line
    mail = next(x for x in out.splitlines() if "roles.by-mail.trust_policy" in x)
    assert "a@evil.test@example.com" in mail


def test_start_up_logs_the_federated_trust_findings(tmp_path: Path) -> None:
    """``trust_policy_warnings`` is what ``Broker.open`` logs at start-up: the federated-trust
    findings (the e-mail pattern is a check-config warning like the other lint)."""
    settings = load_settings(write_config(tmp_path, port=8000, oidc=None, roles=ROLES))
    assert startup_problems(settings) == []
    found = [(w.split(": ", 1)[0], w.rsplit("[", 1)[1].split("]", 1)[0])
             for w in trust_policy_warnings(settings)]  # fmt: skip
    assert found == [
        ("roles.gha-any.trust_policy", "FEDERATED_TRUST_SUB_MATCHES_ANY"),
        ("roles.gha-aud-only.trust_policy", "FEDERATED_TRUST_WITHOUT_SUB"),
    ]


CLI_CASES = [
    ("sub-star", {"StringLike": {"github:sub": "*"}}, ["FEDERATED_TRUST_SUB_MATCHES_ANY"]),
    ("sub-and-aud-star", {"StringLike": {"github:sub": "**", "github:aud": "*"}},
     ["FEDERATED_TRUST_SUB_MATCHES_ANY"]),
    ("aud-only", {"StringEquals": {"github:aud": "sts.amazonaws.com"}},
     ["FEDERATED_TRUST_WITHOUT_SUB"]),
    ("email-suffix", {"StringEquals": {"github:sub": "x"},
                      "StringLike": {"github:email": "*@example.com"}},
     ["EMAIL_PATTERN_ADMITS_OTHER_DOMAINS"]),
    ("repo-pattern-is-fine", {"StringLike": {"github:sub": "repo:o/r:*"}}, []),
]  # fmt: skip


@pytest.mark.parametrize(
    ("condition", "codes"), [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES]
)
def test_policies_validate_shows_the_lint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], condition: Any, codes: list[str]
) -> None:
    path = tmp_path / "trust.json"
    path.write_text(json.dumps(trust("github", condition)))
    assert main(["admin", "policies", "validate", str(path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["kind"], data["ok"], data["errors"]) == ("trust", True, [])
    assert [w["code"] for w in data["warnings"]] == codes
    assert main(["admin", "policies", "validate", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == f"{path}: 0 error(s), {len(codes)} warning(s) (trust policy)"
    for line in out[: len(codes)]:
        assert line.startswith(f"{path}: warning: Statement[0]"), line
        assert "(fix: " in line, line
