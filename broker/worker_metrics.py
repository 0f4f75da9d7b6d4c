"""Request counters shared by the workers of one ``broker serve --workers N``.

Each worker keeps its counters in memory (``broker.web.keys.METRICS``) and writes them, every
:data:`WRITE_SECONDS` and once more when it stops, to its own file in the run directory the
supervisor made (``metrics-<pid>.json``, replaced atomically). ``/metrics`` on any worker adds
its live counters to every other file there. The file of a worker that has exited stays until
the supervisor stops, so the sums never go down when a worker is replaced (a worker killed
outright loses at most its last interval). Imports nothing of the broker.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

WRITE_SECONDS = 1.0
PREFIX = "metrics-"
SUFFIX = ".json"


def sum_counts(counts: Iterable[Mapping[str, int]]) -> Counter[str]:
    total: Counter[str] = Counter()
    for c in counts:
        total.update(c)
    return total


def read_counts(path: Path) -> Counter[str]:
    """One worker's file; empty if it is gone or not what a worker writes (logged)."""
    try:
        data = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        return Counter()
    except (OSError, ValueError) as e:
        log.warning("cannot read the worker counters in %s: %s", path, e)
        return Counter()
    if not isinstance(data, dict):
        log.warning("cannot read the worker counters in %s: not an object", path)
        return Counter()
    return Counter(
        {k: v for k, v in data.items() if isinstance(k, str) and type(v) is int and v > 0}
    )


@dataclass(frozen=True)
class SharedCounters:
    """This worker's view of the run directory."""

    directory: Path
    pid: int

    @property
    def path(self) -> Path:
        return self.directory / f"{PREFIX}{self.pid}{SUFFIX}"

    def write(self, counts: Mapping[str, int]) -> None:
        """Replace this worker's file at once (readers see the old or the new one, whole)."""
        tmp = self.directory / f".{PREFIX}{self.pid}.tmp"
        tmp.write_text(json.dumps(dict(counts), sort_keys=True), "utf-8")
        os.replace(tmp, self.path)

    def others(self) -> Counter[str]:
        """The sum of every other worker's file, those of workers that have exited included."""
        paths = sorted(self.directory.glob(f"{PREFIX}*{SUFFIX}"))
        return sum_counts(read_counts(p) for p in paths if p != self.path)

    def total(self, own: Mapping[str, int]) -> Counter[str]:
        """Every worker's counters: ``own`` (live) plus the others' files."""
        total = self.others()
        total.update(own)
        return total
