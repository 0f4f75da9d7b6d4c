"""Benchmark (not a test): the reports over a large store — time and peak memory.

Run::

    .venv/bin/python bench/reports.py [--users 100000] [--dsn postgresql://...] [--only NAME]

It seeds a temporary store (a SQLite file; with ``--dsn``, a fresh schema of that PostgreSQL
database, dropped afterwards) with ``--users`` users by bulk inserts — every other one with a
password, one in three with an access key (one in six with two, one of them Inactive and one
used), one in five with an enabled MFA device — then runs each benchmark. Results are ratios
against baselines measured in the same run, on the same store (the machine's speed drifts):

- ``credential_report``: the credentials report (``broker report credentials``' streaming
  writer, to a file) and the IAM API's generation (``GenerateCredentialReport``'s background
  job: gzip into ``report_jobs``), each against a plain ``SELECT`` scan of the users table;
  the peak RSS while each runs against the process's RSS just before it (Linux ``VmHWM``,
  reset before each step), next to loading every user at once (``Store.list_users``) for
  comparison. Goal: the report's peak stays flat as ``--users`` grows.

- ``unused``: the unused-access review (``broker report unused``) over ``--users`` users and
  ``--activity`` access-activity rows, against a plain scan of the activity table; it seeds its
  own store (``bench/unused_review.py``).

``--json`` prints the results as one JSON object on the last line. Another benchmark of the
reports adds a ``bench_<name>(store, settings, args)`` function and an entry in ``BENCHES``
(or, seeding its own store, in ``STANDALONE``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import secrets
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from broker.clock import SystemClock  # noqa: E402
from broker.config import Settings, load_settings  # noqa: E402
from broker.service.audit import Auditor  # noqa: E402
from broker.service.credential_report import KIND, CredentialReports, write_report  # noqa: E402
from broker.storage import SqlStore, migrate, open_store  # noqa: E402
from broker.storage import schema as t  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from unused_review import bench_unused  # noqa: E402

CHUNK = 5000
T0 = 1_700_000_000.0


# --- memory -----------------------------------------------------------------------------------


def _status_kb(field: str) -> int:
    text = Path("/proc/self/status").read_text()
    found = re.search(rf"^{field}:\s+(\d+) kB", text, re.M)
    return int(found.group(1)) if found else 0


def rss_mb() -> float:
    return _status_kb("VmRSS") / 1024


def reset_peak() -> None:
    """Start the peak (``VmHWM``) again from the current RSS (Linux ≥ 4.0)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def peak_mb() -> float:
    return _status_kb("VmHWM") / 1024


async def measured(work: Callable[[], Awaitable[Any]]) -> dict[str, float]:
    """Seconds, RSS before and peak RSS during ``work`` (MB)."""
    before = rss_mb()
    reset_peak()
    start = time.perf_counter()
    await work()
    seconds = time.perf_counter() - start
    peak = max(peak_mb(), before)
    return {
        "seconds": seconds,
        "rss_before_mb": before,
        "peak_mb": peak,
        "growth_mb": peak - before,
    }


# --- the store --------------------------------------------------------------------------------


def settings_for(directory: Path, url: str) -> Settings:
    path = directory / "broker.toml"
    path.write_text(
        f'[server]\npublic_url = "http://127.0.0.1"\naccount_id = "123456789012"\n'
        f'[store]\nurl = "{url}"\n[providers.local]\ntype = "local"\n'
    )
    return load_settings(path)


@contextlib.asynccontextmanager
async def temporary_store(directory: Path, dsn: str | None) -> AsyncIterator[SqlStore]:
    if dsn is None:
        url, schema = f"sqlite:///{directory / 'bench.db'}", None
    else:
        url, schema = dsn, f"bench_{secrets.token_hex(4)}"
    await migrate(url, schema=schema)
    store = open_store(url, schema=schema)
    try:
        yield store
    finally:
        if schema is not None:
            async with store._engine.begin() as conn:
                await conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        await store.close()


async def seed(store: SqlStore, users: int) -> dict[str, int]:
    """Bulk inserts, ``CHUNK`` rows a statement batch."""
    counts = {"users": 0, "access_keys": 0, "mfa_devices": 0}
    for start in range(0, users, CHUNK):
        rows, keys, devices = [], [], []
        for i in range(start, min(start + CHUNK, users)):
            uid, at = f"u{i:07d}", T0 + i
            password = i % 2 == 0
            rows.append(
                {
                    "id": uid,
                    "provider": "local",
                    "subject": f"user{i:07d}",
                    "name": f"user{i:07d}",
                    "email": "",
                    "groups": [],
                    "created_at": at,
                    "first_login_at": at + 60 if i % 4 == 0 else None,
                    "last_login_at": at + 120 if i % 4 == 0 else None,
                    "password_hash": "$argon2id$bench" if password else None,
                    "must_change_password": False,
                    "disabled": False,
                    "password_changed_at": at + 1 if password else None,
                }
            )
            for n in range(2 if i % 6 == 0 else 1 if i % 3 == 0 else 0):
                keys.append(
                    {
                        "access_key_id": f"AKIA{i:012d}{n:04d}",
                        "user_id": uid,
                        "secret_sealed": b"sealed-secret",
                        "seal_kid": "bench",
                        "status": "Inactive" if n == 1 else "Active",
                        "created_at": at + 10 + n,
                        "last_used_at": at + 30 if n == 0 else None,
                        "last_used_region": "us-east-1" if n == 0 else None,
                        "last_used_service": "sts" if n == 0 else None,
                    }
                )
            if i % 5 == 0:
                devices.append(
                    {
                        "serial_number": f"arn:broker:iam::123456789012:mfa/user{i:07d}",
                        "name": f"user{i:07d}",
                        "path": "/",
                        "user_id": uid,
                        "seed_sealed": b"sealed-seed",
                        "seal_kid": "bench",
                        "created_at": at,
                        "enabled_at": at + 5,
                        "last_step": 0,
                    }
                )
        async with store._engine.begin() as conn:
            await conn.execute(sa.insert(t.users), rows)
            if keys:
                await conn.execute(sa.insert(t.access_keys), keys)
            if devices:
                await conn.execute(sa.insert(t.mfa_devices), devices)
        counts["users"] += len(rows)
        counts["access_keys"] += len(keys)
        counts["mfa_devices"] += len(devices)
    return counts


# --- benchmarks -------------------------------------------------------------------------------


async def _scan(store: SqlStore) -> None:
    """The baseline: every column of every user, streamed (no ORDER BY, no other table)."""
    async with store._engine.connect() as conn:
        result = await conn.stream(sa.select(t.users))
        async for _ in result:
            pass


async def bench_credential_report(
    store: SqlStore, settings: Settings, args: argparse.Namespace
) -> dict[str, Any]:
    out_file = Path(args.directory) / "report.csv"
    rows = 0

    async def report() -> None:
        nonlocal rows
        with out_file.open("wb") as sink:
            rows = await write_report(settings, store, sink)

    reports = CredentialReports(settings, store, Auditor(store, SystemClock()), SystemClock())

    async def api() -> None:
        assert await reports.generate(actor="bench") == "STARTED"
        await reports.wait()

    async def load_all() -> None:
        users = await store.list_users()
        assert len(users) >= args.users

    scan = await measured(lambda: _scan(store))
    streamed = await measured(report)
    generated = await measured(api)
    job = await store.latest_report_job(KIND, settings.server.account_id)
    assert job is not None
    assert job.content is not None
    loaded = await measured(load_all)  # last: what it allocates may stay with the process
    assert rows == args.users + 1
    return {
        "rows": rows,
        "csv_mb": out_file.stat().st_size / 2**20,
        "stored_gzip_kb": len(job.content) / 1024,
        "scan": scan,
        "report": streamed,
        "api_generate": generated,
        "list_users": loaded,
        "report_vs_scan_time": streamed["seconds"] / scan["seconds"],
        "api_vs_scan_time": generated["seconds"] / scan["seconds"],
        "report_peak_vs_before": streamed["peak_mb"] / streamed["rss_before_mb"],
        "api_peak_vs_before": generated["peak_mb"] / generated["rss_before_mb"],
        "list_users_peak_vs_before": loaded["peak_mb"] / loaded["rss_before_mb"],
    }


BENCHES: dict[
    str, Callable[[SqlStore, Settings, argparse.Namespace], Awaitable[dict[str, Any]]]
] = {
    "credential_report": bench_credential_report,
}


async def _unused(args: argparse.Namespace) -> dict[str, Any]:
    return await bench_unused(args.users, args.activity)


STANDALONE: dict[str, Callable[[argparse.Namespace], Awaitable[dict[str, Any]]]] = {
    "unused": _unused,
}


# --- main -------------------------------------------------------------------------------------


def show(name: str, r: dict[str, Any]) -> None:
    print(
        f"{name}: {r['rows']} rows, CSV {r['csv_mb']:.1f} MB, "
        f"stored {r['stored_gzip_kb']:.0f} kB gzip"
    )
    for step in ("scan", "report", "api_generate", "list_users"):
        m = r[step]
        print(
            f"  {step:<13} {m['seconds']:7.2f} s   RSS before {m['rss_before_mb']:6.1f} MB"
            f"   peak {m['peak_mb']:6.1f} MB (+{m['growth_mb']:.1f})"
        )
    print(f"  report time / scan time:        {r['report_vs_scan_time']:.2f}x")
    print(f"  API generation time / scan time: {r['api_vs_scan_time']:.2f}x")
    print(f"  report peak RSS / RSS before:    {r['report_peak_vs_before']:.2f}x")
    print(f"  API peak RSS / RSS before:       {r['api_peak_vs_before']:.2f}x")
    print(
        f"  list_users peak / RSS before:    {r['list_users_peak_vs_before']:.2f}x (all in memory)"
    )


async def run(args: argparse.Namespace) -> dict[str, Any]:
    wanted = args.only or [*BENCHES, *STANDALONE]
    results: dict[str, Any] = {}
    if any(name in BENCHES for name in wanted):
        results = await run_on_seeded_store(args, [n for n in wanted if n in BENCHES])
    for name in wanted:
        if name in STANDALONE:
            results[name] = await STANDALONE[name](args)
    return results


async def run_on_seeded_store(args: argparse.Namespace, names: list[str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as directory:
        args.directory = directory
        async with temporary_store(Path(directory), args.dsn) as store:
            settings = settings_for(Path(directory), "sqlite:///unused.db")
            start = time.perf_counter()
            counts = await seed(store, args.users)
            seeded = time.perf_counter() - start
            if not args.json:
                print(f"{store.dialect}: seeded {counts} in {seeded:.1f} s")
            results: dict[str, Any] = {"backend": store.dialect, "seed": counts}
            for name in names:
                results[name] = await BENCHES[name](store, settings, args)
                if not args.json:
                    show(name, results[name])
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--dsn", help="a PostgreSQL DSN (a temporary schema is used)")
    parser.add_argument(
        "--activity", type=int, default=1_000_000, help="access-activity rows (unused)"
    )
    parser.add_argument(
        "--only", action="append", choices=sorted([*BENCHES, *STANDALONE]), help="(repeatable)"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = asyncio.run(run(args))
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
