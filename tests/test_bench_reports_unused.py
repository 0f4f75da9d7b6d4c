"""The unused-access benchmark runs on small numbers and measures what it says (a smoke test,
no timing asserted): the baseline scanned every seeded activity row and the review ran."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench" / "reports.py"


def test_bench_unused_runs_small() -> None:
    out = subprocess.run(
        [sys.executable, str(BENCH), "--only", "unused", "--users", "50", "--activity", "400"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        check=True,
    ).stdout
    assert "seeded 50 users, 400 activity rows" in out
    assert "(400)" in out  # the baseline read every row
    review = next(line for line in out.splitlines() if line.startswith("unused review"))
    found = int(review.rsplit("(", 1)[1].rstrip(")"))
    assert found > 50  # every user lacks MFA, and some are unused
    assert "ratio time review / scan" in out
