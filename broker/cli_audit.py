"""``broker audit verify`` and the chain check behind ``broker audit list`` (docs/audit.md)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from broker.domain.audit_chain import Report


def describe(report: Report) -> str:
    """One paragraph for people: the verdict, then the first broken row if any, then notes."""
    if report.broken is not None:
        b = report.broken
        lines = [
            f"BROKEN: the audit chain breaks at row {b.row_id} ({b.kind}): {b.detail}",
            f"  rows verified before it: {report.rows}; head verified: "
            f"{report.head_id if report.head_id is not None else '-'}",
        ]
    else:
        lines = [
            f"OK: {report.rows} chained rows, {report.checkpoints} checkpoints match; "
            f"head row {report.head_id if report.head_id is not None else '-'} "
            f"{report.head_hash[:16]}"
        ]
    lines += [f"  note: {n}" for n in report.notes]
    return "\n".join(lines)


async def verify(broker: Any) -> Report:
    await broker.auditor.flush()  # nothing batched in this process is left out
    report: Report = await broker.audit_chain.verify()
    return report


def warn_if_broken(report: Report) -> None:
    """The warning ``broker audit list`` prints (on stderr, so ``--json`` output stays data)."""
    if report.broken is not None:
        b = report.broken
        print(
            f"WARNING: the audit trail was tampered with: the chain breaks at row {b.row_id} "
            f"({b.kind}: {b.detail}); run `broker audit verify`",
            file=sys.stderr,
        )


def cmd_audit_verify(args: argparse.Namespace) -> int:
    import asyncio

    from broker.cli import _settings, out, with_broker

    report: Report = asyncio.run(with_broker(_settings(args), verify))
    out(args, report.as_dict(), describe(report))
    return 0 if report.ok else 1
