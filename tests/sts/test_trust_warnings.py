"""A trust policy for a federated principal without a ``sub`` condition earns a warning (logged
at start-up, printed by ``broker check-config``), not an error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from broker.config import load_settings
from broker.service.roles import trust_policy_warnings
from tests.conftest import trust, write_config
from tests.sts.conftest import chain_trust


def test_warns_only_for_unconditioned_federated_trust(tmp_path: Path) -> None:
    roles = {
        # a condition on how, not who, leaves the role open to every identity of corp
        "open": trust("corp", {"Bool": {"corp:email_verified": "true"}}),
        # exact values of an identity claim other than sub narrow it: no warning
        "by-email": trust("corp", {"StringEquals": {"corp:email": "a@example.com"}}),
        "by-sub": trust("corp", {"StringEquals": {"corp:sub": "repo:org/app:ref:main"}}),
        "by-aud": trust("corp", {"StringLike": {"corp:aud": "sts.example"}}),
        "chained": chain_trust("by-sub"),
    }
    path = write_config(tmp_path, port=8000, oidc=None, roles=roles)
    warnings = trust_policy_warnings(load_settings(path))
    assert len(warnings) == 2, warnings
    assert warnings[0].startswith("roles.open.trust_policy: Statement[0]")
    assert "corp:sub or corp:aud" in warnings[0]
    # aud names the client the token was issued for, not who it is for: sub is still wanted
    assert warnings[1].startswith("roles.by-aud.trust_policy: Statement[0].Condition: ")
    assert "[FEDERATED_TRUST_WITHOUT_SUB]" in warnings[1]

    result = subprocess.run(
        [sys.executable, "-m", "broker.cli", "check-config", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "roles.open.trust_policy" in result.stdout + result.stderr
