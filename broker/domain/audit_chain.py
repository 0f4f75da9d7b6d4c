"""The audit trail's hash chain: canonical encoding of a row, its hash, and verification.

Each audit row carries ``prev_hash`` (the hash of the row before it, by id; ``GENESIS`` for the
first chained row) and ``hash`` = SHA-256 of the row's canonical encoding, which includes
``prev_hash``. Changing, deleting, inserting or reordering a row therefore breaks the links from
that point on, and ``verify_chain`` names the first row where that shows. The hash is not keyed:
anyone holding the rows can check them; what stops someone with write access from rewriting the
whole chain is the signed checkpoints (the chain head's hash signed with the broker's key), which
``verify_chain`` compares against the rows.

Rows written before the chain existed (``hash`` empty) may precede the first chained row; they
are counted, not verified. A row without a hash *after* the chain started is a break.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

GENESIS: Final = "0" * 64
VERSION: Final = 1
_WINDOW: Final = 1024  # recent hashes kept to tell a reordered row from a deleted one

BreakKind = Literal["changed", "deleted", "inserted", "reordered", "unchained", "checkpoint"]


@dataclass(frozen=True)
class ChainRow:
    """One audit row as stored, with its chain columns (``""`` when it has none)."""

    id: int
    time: float
    action: str
    outcome: str
    request_id: str
    principal: str
    reason: str
    source_ip: str
    details: Mapping[str, Any]
    prev_hash: str = ""
    hash: str = ""


@dataclass(frozen=True)
class Checkpoint:
    """A claim that row ``last_id`` had hash ``hash``; ``signed`` says whether a broker key's
    signature over it was verified (False: no longer verifiable, or not checked)."""

    id: int
    last_id: int
    hash: str
    created_at: float
    signed: bool = False


@dataclass(frozen=True)
class Break:
    """The first place the chain does not hold."""

    row_id: int  # the first broken row (for a checkpoint: the row it names)
    kind: BreakKind
    detail: str


@dataclass(frozen=True)
class Report:
    rows: int  # chained rows checked
    unchained: int  # rows from before the chain started
    checkpoints: int  # checkpoints matched against the rows
    head_id: int | None
    head_hash: str
    broken: Break | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return self.broken is None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "ok": self.ok,
            "rows": self.rows,
            "unchained": self.unchained,
            "checkpoints": self.checkpoints,
            "head_id": self.head_id,
            "head_hash": self.head_hash,
            "notes": list(self.notes),
        }
        if self.broken is not None:
            b = self.broken
            out["broken"] = {"row_id": b.row_id, "kind": b.kind, "detail": b.detail}
        return out


def canonical(
    *,
    prev_hash: str,
    time: float,
    action: str,
    outcome: str,
    request_id: str,
    principal: str,
    reason: str,
    source_ip: str,
    details: Mapping[str, Any],
) -> bytes:
    """The bytes a row's hash covers: sorted-key compact JSON, ASCII only, floats as ``repr``
    (which round-trips through both databases' double columns). The id is not included: the
    order is what ``prev_hash`` links, so ids may be assigned by the database."""
    doc = {
        "v": VERSION,
        "prev": prev_hash,
        "time": float(time),
        "action": action,
        "outcome": outcome,
        "request_id": request_id,
        "principal": principal,
        "reason": reason,
        "source_ip": source_ip,
        "details": details,
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), allow_nan=False).encode("ascii")


def row_hash(prev_hash: str, **fields: Any) -> str:
    """SHA-256 (hex) of the row's canonical encoding; ``fields`` are ``canonical``'s others."""
    return hashlib.sha256(canonical(prev_hash=prev_hash, **fields)).hexdigest()


def hash_of(row: ChainRow) -> str:
    """What ``row.hash`` should be, given its content and its ``prev_hash``."""
    return row_hash(
        row.prev_hash,
        time=row.time,
        action=row.action,
        outcome=row.outcome,
        request_id=row.request_id,
        principal=row.principal,
        reason=row.reason,
        source_ip=row.source_ip,
        details=row.details,
    )


def link(prev_hash: str, events: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """(prev_hash, hash) for each event appended, in order, after a row hashed ``prev_hash``.
    Each event maps ``canonical``'s field names (other than ``prev_hash``) to values."""
    out: list[tuple[str, str]] = []
    for e in events:
        h = row_hash(
            prev_hash,
            time=e["time"],
            action=e["action"],
            outcome=e["outcome"],
            request_id=e["request_id"],
            principal=e["principal"],
            reason=e["reason"],
            source_ip=e["source_ip"],
            details=e["details"],
        )
        out.append((prev_hash, h))
        prev_hash = h
    return out


def verify_chain(
    rows: Iterable[ChainRow], checkpoints: Sequence[Checkpoint] = (), *, start: str = GENESIS
) -> Report:
    """Check the rows (in id order, all of them) and the checkpoints against them. ``start``:
    the hash the first row must follow (to check the rows after a known-good row).

    Stops at the first break, classified as: ``changed`` (the row's content or hash does not
    match its hash), ``inserted`` (the row does not follow its predecessor, but the next row
    does), ``reordered`` (it follows a row that is elsewhere), ``deleted`` (it follows a row that
    is missing; for the tail, a checkpoint names a row that is gone), ``unchained`` (a row without
    a hash after the chain started), ``checkpoint`` (a checkpoint's hash differs from its row's).
    """
    cps = sorted(checkpoints, key=lambda c: (c.last_id, c.id))
    at = 0  # the next checkpoint to match
    matched = 0
    count = unchained = 0
    prev: ChainRow | None = None  # the last chained row accepted
    recent: dict[str, int] = {}  # hash -> row id, for the last _WINDOW rows
    it = iter(rows)
    pending: ChainRow | None = next(it, None)
    notes: list[str] = []

    def report(broken: Break | None) -> Report:
        return Report(
            rows=count,
            unchained=unchained,
            checkpoints=matched,
            head_id=prev.id if prev else None,
            head_hash=prev.hash if prev else "",
            broken=broken,
            notes=tuple(notes),
        )

    while pending is not None:
        row, pending = pending, next(it, None)
        if at < len(cps) and cps[at].last_id < row.id:
            gone = cps[at].last_id
            return report(Break(gone, "deleted", f"checkpoint names row {gone}, which is missing"))
        if not row.hash:
            legacy = prev is None and start == GENESIS
            if legacy and not (at < len(cps) and cps[at].last_id == row.id):
                unchained += 1
                continue
            return report(
                Break(row.id, "unchained", "the row has no hash, but the chain covers it")
            )
        if hash_of(row) != row.hash:
            return report(
                Break(row.id, "changed", "the row's content does not match its hash (edited)")
            )
        expected = prev.hash if prev is not None else start
        if row.prev_hash != expected:
            return report(_misplaced(row, prev, expected, pending, recent))
        while at < len(cps) and cps[at].last_id == row.id:
            cp = cps[at]
            at += 1
            if cp.hash != row.hash:
                return report(
                    Break(
                        row.id,
                        "checkpoint",
                        f"checkpoint {cp.id} signed another hash for this row "
                        "(the chain was rewritten up to here)",
                    )
                )
            matched += 1
        count += 1
        prev = row
        recent[row.hash] = row.id
        if len(recent) > _WINDOW:
            del recent[next(iter(recent))]
    if at < len(cps):
        gone = cps[at].last_id
        head = prev.id if prev else 0
        return report(
            Break(
                gone,
                "deleted",
                f"checkpoint names row {gone}, but the chain ends at row {head} "
                "(rows were removed from the end)",
            )
        )
    return report(None)


def _misplaced(
    row: ChainRow,
    prev: ChainRow | None,
    expected: str,
    following: ChainRow | None,
    recent: Mapping[str, int],
) -> Break:
    after = f"row {prev.id}" if prev is not None else "the start of the chain"
    if row.prev_hash in recent or (following is not None and row.prev_hash == following.hash):
        where = recent.get(row.prev_hash, following.id if following is not None else 0)
        return Break(row.id, "reordered", f"the row belongs after row {where}, not after {after}")
    if following is not None and following.prev_hash == expected:
        return Break(row.id, "inserted", f"the row does not belong after {after}")
    return Break(row.id, "deleted", f"the row before it is missing (expected after {after})")
