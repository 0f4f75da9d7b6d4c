"""Benchmark of the account reports (not a test): time and peak memory of the unused-access
review next to a baseline measured in the same run.

Run (through ``bench/reports.py``, which runs every report benchmark)::

    .venv/bin/python bench/reports.py --only unused [--users 100000] [--activity 1000000]

``bench_unused`` seeds a SQLite store with ``--users`` users (a tenth of them with an access
key, a third signed in recently), 200 roles, 50 managed policies (half attached to a role) and
``--activity`` ``access_activity`` rows (a tenth of them by roles; bulk inserts, one
transaction), then measures, in this order:

1. the baseline: a plain scan of the whole activity table (a cursor read in batches: what
   any report reading the activity must at least do);
2. ``UnusedAccess.findings`` over a 90-day window, every finding consumed and counted.

It prints each one's wall time and the growth of the process's peak RSS (``ru_maxrss``) over
the peak before it (the seeding runs in a child process, so it does not count), and the
review's time and peak growth next to the baseline's. Bounded memory shows as a peak growth
that does not follow the table sizes (compare a run with ten times fewer rows).
"""

from __future__ import annotations

import multiprocessing
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from broker.clock import SystemClock  # noqa: E402
from broker.config import load_settings  # noqa: E402
from broker.service.unused import UnusedAccess  # noqa: E402
from broker.storage import migrate, open_store  # noqa: E402

DAY = 86400.0
ROLES = 200
POLICIES = 50
ACCOUNT = "000000000000"
CONFIG = """
[server]
listen = "127.0.0.1:8000"
public_url = "http://127.0.0.1:8000"
account_id = "{account}"
[store]
url = "{url}"
[keys]
kek = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY="
[providers.local]
type = "local"
"""


def rss_mb() -> float:
    """The peak resident set size so far (Linux: KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def seed(db: Path, users: int, activity: int, now: float) -> None:
    """Bulk inserts with the standard library's sqlite3 (one transaction per table)."""
    import sqlite3

    conn = sqlite3.connect(db)
    conn.execute("PRAGMA synchronous = OFF")
    with conn:
        conn.executemany(
            "INSERT INTO users (id, provider, subject, name, email, groups, created_at, "
            "last_login_at, must_change_password, disabled) VALUES (?,?,?,?,?,?,?,?,0,0)",
            (
                (
                    f"u{i:07d}",
                    "local",
                    f"user{i}",
                    f"user{i}",
                    "",
                    "[]",
                    now - 400 * DAY,
                    now - (10 if i % 3 == 0 else 200) * DAY,
                )
                for i in range(users)
            ),
        )
        conn.executemany(
            "INSERT INTO access_keys (access_key_id, user_id, secret_sealed, seal_kid, status, "
            "created_at, last_used_at) VALUES (?,?,x'00','k','Active',?,?)",
            (
                (f"AKIA{i:016d}", f"u{i:07d}", now - 300 * DAY, now - (i % 200) * DAY)
                for i in range(0, users, 10)
            ),
        )
        conn.executemany(
            "INSERT INTO roles (name, description, trust_policy, policies, permissions_boundary, "
            "max_session_duration, source, created_at, updated_at) "
            "VALUES (?, '', '{}', '[]', NULL, 3600, 'api', ?, ?)",
            ((f"role{i}", now - 400 * DAY, now - 400 * DAY) for i in range(ROLES)),
        )
        doc = (
            '{"Version": "2012-10-17", '
            '"Statement": [{"Effect": "Allow", "Action": "%s", "Resource": "*"}]}'
        )
        conn.executemany(
            "INSERT INTO managed_policies (name, description, document, source, created_at, "
            "updated_at) VALUES (?, '', ?, 'api', ?, ?)",
            (
                (f"policy{i}", doc % ("http:*" if i % 2 else "s3:*"), now - 400 * DAY, now)
                for i in range(POLICIES)
            ),
        )
        conn.executemany(
            "INSERT INTO policy_attachments (principal_type, principal, policy_name) "
            "VALUES ('role', ?, ?)",
            ((f"role{i}", f"policy{i}") for i in range(0, POLICIES, 2)),
        )
        per_user = max(1, activity // max(1, users))
        conn.executemany(
            "INSERT INTO access_activity (principal_arn, action, resource, first_at, last_at, "
            "count) VALUES (?,?,?,?,?,?)",
            (
                (
                    f"arn:broker:iam::{ACCOUNT}:role/role{n % ROLES}"
                    if n % 10 == 0
                    else f"arn:broker:iam::{ACCOUNT}:user/user{(n // per_user) % users}",
                    ("http:GET", "http:POST", "iam:ListUsers", "sts:AssumeRole")[n % 4],
                    f"https://app.example.com/p/{n}",
                    now - 300 * DAY,
                    now - (n % 180) * DAY,
                    1 + n % 7,
                )
                for n in range(activity)
            ),
        )
    conn.close()


async def scan_activity(db: Path) -> int:
    """The baseline: every activity row, read in batches of 1,000 by a plain cursor."""
    import sqlite3

    conn = sqlite3.connect(db)
    try:
        cursor = conn.execute("SELECT * FROM access_activity")
        rows = 0
        while batch := cursor.fetchmany(1000):
            rows += len(batch)
        return rows
    finally:
        conn.close()


async def measure(label: str, work: Any) -> tuple[float, float, Any]:
    before = rss_mb()
    start = time.perf_counter()
    result = await work
    elapsed = time.perf_counter() - start
    grown = rss_mb() - before
    print(f"{label:<34} {elapsed:8.2f} s   peak RSS +{grown:7.1f} MB   ({result})")
    return elapsed, grown, result


async def bench_unused(users: int = 100_000, activity: int = 1_000_000) -> dict[str, float]:
    """Seed, then the baseline scan and the unused review; returns the numbers (and prints)."""
    now = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "broker.db"
        url = f"sqlite:///{db}"
        config = Path(tmp) / "broker.toml"
        config.write_text(CONFIG.format(account=ACCOUNT, url=url))
        settings = load_settings(config)
        await migrate(url)
        t0 = time.perf_counter()
        # in a child process: its memory does not raise this process's peak RSS
        child = multiprocessing.get_context("fork").Process(
            target=seed, args=(db, users, activity, now)
        )
        child.start()
        child.join()
        if child.exitcode != 0:
            raise SystemExit(f"seeding failed (exit code {child.exitcode})")
        print(f"seeded {users} users, {activity} activity rows in {time.perf_counter() - t0:.1f} s")
        print(f"RSS before: {rss_mb():.1f} MB")
        store = open_store(url)
        try:
            base_t, base_m, _ = await measure(
                "baseline: scan of access_activity", scan_activity(db)
            )
            review = UnusedAccess(settings, store, SystemClock())

            async def run() -> int:
                return sum([1 async for _ in review.findings(90)])

            t, m, _ = await measure("unused review (90 days)", run())
        finally:
            await store.close()
    print(f"ratio time review / scan:      {t / base_t:.2f}x")
    print(f"ratio peak RSS growth:         {m:.1f} MB vs {base_m:.1f} MB")
    return {"scan_s": base_t, "scan_mb": base_m, "review_s": t, "review_mb": m}
