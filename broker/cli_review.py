"""``broker report unused --days N`` and ``broker policy generate --role NAME --days N``
(contract C5): reviewing what is unused, and least-privilege policies from observed activity.

Both open the broker (the store, migrated) without serving, flush nothing of their own and
stream: the unused report prints each finding as it is found (a table, or one JSON document
written piece by piece with ``--json``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from broker.cli_admin import common_args


def _when(t: float | None) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds") if t is not None else ""


def _days(text: str) -> int:
    try:
        days = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number of days: {text!r}") from None
    if not 1 <= days <= 3650:
        raise argparse.ArgumentTypeError("--days must be between 1 and 3650")
    return days


async def write_unused(broker: Any, days: int, as_json: bool, stream: TextIO) -> int:
    """Print the findings as they come; returns how many there were."""
    from broker.service.unused import UnusedAccess

    review = UnusedAccess(broker.settings, broker.store, broker.clock)
    n = 0
    if as_json:
        head = {"days": days, "since": _when(review.cutoff(days))}
        stream.write(json.dumps(head, sort_keys=True)[:-1] + ', "findings": [')
    else:
        stream.write(f"{'KIND':<11} {'NAME':<32} {'LAST USED':<26} REASON\n")
    async for f in review.findings(days):
        if as_json:
            d = f.to_dict()
            d["created_at"], d["last_used"] = _when(f.created_at), _when(f.last_used) or None
            stream.write(("," if n else "") + "\n  " + json.dumps(d, sort_keys=True))
        else:
            last = _when(f.last_used) or "never"
            stream.write(f"{f.kind:<11} {f.name:<32} {last:<26} {f.reason}\n")
        n += 1
    if as_json:
        stream.write("\n]}\n")
    elif not n:
        stream.write(f"nothing unused in the last {days} days\n")
    return n


def cmd_report_unused(args: argparse.Namespace) -> int:
    from broker.cli import _settings, with_broker

    async def run(broker: Any) -> int:
        return await write_unused(broker, args.days, args.json, sys.stdout)

    asyncio.run(with_broker(_settings(args), run))
    return 0


def cmd_policy_generate(args: argparse.Namespace) -> int:
    from broker.cli import _settings, with_broker
    from broker.service.policy_generation import PolicyGenerator

    async def run(broker: Any) -> Any:
        gen = PolicyGenerator(broker.settings, broker.store, broker.clock)
        return await gen.generate(args.role, args.days)

    result = asyncio.run(with_broker(_settings(args), run))
    text = json.dumps(result.document, indent=2) + "\n"
    if args.output:
        Path(args.output).write_text(text)
    summary = (
        f"{result.actions} action(s) observed for role {result.role} in the last "
        f"{result.days} days"
        + (f"; left out (not service:Name): {', '.join(result.skipped)}" if result.skipped else "")
    )
    if args.json:
        print(
            json.dumps(
                {
                    "role": result.role,
                    "days": result.days,
                    "policy": result.document,
                    "skipped": list(result.skipped),
                    "warnings": list(result.warnings),
                    "output": args.output,
                },
                indent=2,
                sort_keys=True,
            )
        )
    else:
        if not args.output:
            sys.stdout.write(text)
        print(summary + (f"; written to {args.output}" if args.output else ""), file=sys.stderr)
        for w in result.warnings:
            print(f"validator warning: {w}", file=sys.stderr)
    return 0


def add_report_unused(report: Any) -> None:
    """``unused`` under the ``report`` noun."""
    p = report.add_parser(
        "unused",
        help="users, roles, access keys, MFA-less users and policies unused within N days",
        description="Lists, from the store and the recorded access activity, what was not "
        "used in the last N days (see docs/reports.md).",
    )
    common_args(p)
    p.add_argument("--days", type=_days, required=True, help="the window, in days (1-3650)")
    p.set_defaults(fn=cmd_report_unused)


def add_policy_commands(sub: Any) -> None:
    """The ``policy`` noun: ``policy generate``."""
    policy = sub.add_parser("policy", help="policies from observed activity").add_subparsers(
        dest="policy_command", required=True, metavar="VERB"
    )
    p = policy.add_parser(
        "generate",
        help="a least-privilege policy from what a role's sessions were allowed in N days",
        description="Writes an identity policy that allows exactly the actions and resources "
        "the role's sessions were allowed within the window (IAM Access Analyzer's policy "
        "generation); the policy validator accepts it without errors.",
    )
    common_args(p)
    p.add_argument("--role", required=True, help="the role's name")
    p.add_argument("--days", type=_days, required=True, help="the window, in days (1-3650)")
    p.add_argument("--output", metavar="FILE", help="write the policy there (default: stdout)")
    p.set_defaults(fn=cmd_policy_generate)
