"""The reports benchmark runs and measures what it says (a smoke test, no timing asserted).

``bench/reports.py`` is run by hand with 100,000 users; this runs it with a few hundred."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench" / "reports.py"


def test_the_benchmark_runs() -> None:
    out = subprocess.run(
        [sys.executable, str(BENCH), "--users", "200", "--only", "credential_report", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        check=True,
    ).stdout
    results = json.loads(out.strip().splitlines()[-1])
    assert results["seed"]["users"] == 200
    assert results["seed"]["access_keys"] > 0
    assert results["seed"]["mfa_devices"] > 0
    r = results["credential_report"]
    assert r["rows"] == 201  # the root's and every user's
    assert r["stored_gzip_kb"] > 0
    for step in ("scan", "report", "api_generate", "list_users"):
        assert r[step]["seconds"] > 0
        assert r[step]["peak_mb"] >= r[step]["rss_before_mb"] > 0
    assert r["report_vs_scan_time"] > 0
