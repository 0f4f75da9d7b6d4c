"""``broker report credentials``: the credentials report (AWS's CSV, contract C5), read from
the config's store as the account root and written as it is read (bounded memory).

``--output FILE`` writes ``FILE.partial`` and renames it when complete: a failure never leaves
a truncated report under the name asked for. ``--json`` prints a JSON array of objects keyed
by the CSV's columns instead. The run is audited as ``report.credentials``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING, Any

from broker.cli_admin import _actor, common_args
from broker.config import load_settings
from broker.errors import InvalidRequest

if TYPE_CHECKING:
    from broker.service.container import Broker


@contextlib.contextmanager
def _sink(path: str | None) -> Iterator[IO[bytes]]:
    if path is None:
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    partial = f"{path}.partial"
    try:
        f = open(partial, "wb")  # noqa: SIM115 (renamed below, only when complete)
    except OSError as e:
        raise InvalidRequest(
            "unwritable_file", public_message=f"cannot write {path}: {e.strerror or e}"
        ) from None
    try:
        with f:
            yield f
        os.replace(partial, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial)


async def _json(broker: Broker, sink: IO[bytes]) -> None:
    from broker.service.credential_report import HEADER, report_rows

    sink.write(b"[")
    first = True
    async for chunk in report_rows(broker.settings, broker.store):
        for row in chunk:
            item = json.dumps(dict(zip(HEADER, row, strict=True)))
            sink.write((b"\n" if first else b",\n") + item.encode())
            first = False
    sink.write(b"\n]\n")


def cmd_report_credentials(args: argparse.Namespace) -> int:
    from broker.cli import with_broker
    from broker.service.credential_report import write_report

    actor = _actor()

    async def run(broker: Broker) -> Any:
        with _sink(args.output) as sink:
            await broker.auditor.record_or_fail("report.credentials", "success", principal=actor)
            if args.json:
                await _json(broker, sink)
            else:
                await write_report(broker.settings, broker.store, sink)

    asyncio.run(with_broker(load_settings(args.config), run))
    return 0


def add_report_commands(sub: Any) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    """Register ``broker report credentials``; returns the ``report`` verbs (for more
    reports)."""
    report = sub.add_parser(
        "report", help="reports on credentials and access (as the account root)"
    ).add_subparsers(dest="report_verb", required=True, metavar="VERB")
    p = report.add_parser(
        "credentials",
        help="the credentials report: AWS's CSV, one row per user and the root",
        description="Print the credentials report (AWS IAM's CSV columns and conventions; "
        "see docs/reports.md), read from the config's store as the account root.",
    )
    common_args(p)
    p.add_argument("--output", metavar="FILE", help="write the CSV to FILE instead of stdout")
    p.set_defaults(fn=cmd_report_credentials)
    reporting: argparse._SubParsersAction[argparse.ArgumentParser] = report
    return reporting
