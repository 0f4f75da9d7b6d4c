"""The login-burst benchmark runs and measures what it says (a smoke test, no timing asserted).

``bench/login_burst.py`` is run by hand; this runs it briefly in both modes and checks that its
probes were allowed ``/auth`` requests and its burst really was wrong-password logins.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench" / "login_burst.py"


def test_the_benchmark_runs_in_both_modes() -> None:
    args = ["--rounds", "1", "--seconds", "0.3", "--logins", "2", "--probes", "1", "--json"]
    out = subprocess.run(
        [sys.executable, str(BENCH), *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        check=True,
    ).stdout
    results = json.loads(out.strip().splitlines()[-1])
    assert set(results) == {"pool", "on-loop"}
    for mode, r in results.items():
        assert set(r["auth_statuses"]) == {"200"}, mode
        assert r["login_statuses"].get("401", 0) > 0, mode
        [round_] = r["rounds"]
        assert round_["idle"]["n"] > 0
        assert round_["burst"]["n"] > 0
        assert round_["ratio"] > 0
    assert set(results["pool"]["login_statuses"]) == {"401"}
