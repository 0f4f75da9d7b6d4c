"""The audit hash chain (pure): every kind of tampering is named at its first broken row."""

from __future__ import annotations

from dataclasses import replace

import pytest

from broker.domain.audit_chain import GENESIS, ChainRow, Checkpoint, hash_of, link, verify_chain

T0 = 1_700_000_000.0


def chain(n: int, *, start: int = 1) -> list[ChainRow]:
    events = [
        {
            "time": T0 + i,
            "action": f"a{i}",
            "outcome": "success",
            "request_id": f"r{i}",
            "principal": f"p{i}",
            "reason": "",
            "source_ip": "192.0.2.1",
            "details": {"n": i, "nested": {"x": [1, 2.5, None]}},
        }
        for i in range(n)
    ]
    links = link(GENESIS, events)
    return [
        ChainRow(id=start + i, prev_hash=p, hash=h, **e)  # type: ignore[arg-type]
        for i, (e, (p, h)) in enumerate(zip(events, links, strict=True))
    ]


def test_an_intact_chain_verifies() -> None:
    rows = chain(5)
    report = verify_chain(rows, [Checkpoint(1, 3, rows[2].hash, T0, signed=True)])
    assert report.ok
    assert (report.rows, report.checkpoints, report.head_id) == (5, 1, 5)
    assert report.head_hash == rows[-1].hash
    assert all(r.hash == hash_of(r) for r in rows)


def test_an_empty_chain_verifies() -> None:
    assert verify_chain([]).ok


@pytest.mark.parametrize(
    "change",
    [
        {"principal": "someone-else"},
        {"outcome": "failure"},
        {"time": T0 + 2.5},
        {"details": {"n": 2, "nested": {"x": [1, 2.5]}}},
        {"reason": "x"},
    ],
)
def test_an_edited_row_is_named(change: dict[str, object]) -> None:
    rows = chain(5)
    rows[2] = replace(rows[2], **change)  # type: ignore[arg-type]
    report = verify_chain(rows)
    assert report.broken is not None
    assert (report.broken.row_id, report.broken.kind) == (3, "changed")
    assert report.head_id == 2


def test_an_edited_row_with_its_hash_recomputed_breaks_the_next_link() -> None:
    rows = chain(5)
    edited = replace(rows[2], principal="mallory")
    rows[2] = replace(edited, hash=hash_of(edited))
    report = verify_chain(rows)
    assert report.broken is not None
    assert report.broken.row_id == 4
    assert report.broken.kind == "deleted"  # row 4 follows a row that is no longer there


def test_a_deleted_row_is_named_by_the_row_after_the_gap() -> None:
    rows = chain(5)
    del rows[2]
    report = verify_chain(rows)
    assert report.broken is not None
    assert (report.broken.row_id, report.broken.kind) == (4, "deleted")


def test_a_deleted_first_row_is_found() -> None:
    rows = chain(3)[1:]
    report = verify_chain(rows)
    assert report.broken is not None
    assert (report.broken.row_id, report.broken.kind) == (2, "deleted")


def test_an_inserted_row_is_named() -> None:
    rows = chain(5)
    forged = ChainRow(
        id=99,
        time=T0,
        action="login",
        outcome="success",
        request_id="",
        principal="mallory",
        reason="",
        source_ip="",
        details={},
        prev_hash=GENESIS,
    )
    forged = replace(forged, hash=hash_of(forged))
    rows = rows[:2] + [replace(forged, id=3)] + [replace(r, id=r.id + 1) for r in rows[2:]]
    report = verify_chain(rows)
    assert report.broken is not None
    assert (report.broken.row_id, report.broken.kind) == (3, "inserted")


def test_swapped_rows_are_named_as_reordered() -> None:
    rows = chain(5)
    a, b = rows[1], rows[2]
    rows[1], rows[2] = replace(b, id=2), replace(a, id=3)
    report = verify_chain(rows)
    assert report.broken is not None
    assert (report.broken.row_id, report.broken.kind) == (2, "reordered")


def test_a_row_without_a_hash_after_the_chain_started_is_a_break() -> None:
    rows = chain(4)
    rows[2] = replace(rows[2], hash="", prev_hash="")
    report = verify_chain(rows)
    assert report.broken is not None
    assert (report.broken.row_id, report.broken.kind) == (3, "unchained")


def test_rows_older_than_the_chain_are_counted_not_verified() -> None:
    legacy = [ChainRow(i, T0, "login", "success", "", "", "", "", {}) for i in (1, 2)]
    report = verify_chain(legacy + chain(3, start=3))
    assert report.ok
    assert (report.unchained, report.rows) == (2, 3)


def test_a_truncated_tail_is_found_by_a_checkpoint() -> None:
    rows = chain(5)
    report = verify_chain(rows[:3], [Checkpoint(1, 5, rows[4].hash, T0)])
    assert report.broken is not None
    assert (report.broken.row_id, report.broken.kind) == (5, "deleted")


def test_a_rewritten_chain_is_found_by_a_checkpoint() -> None:
    rows = chain(5)
    # rewritten from the start with consistent hashes: the chain alone cannot tell
    forged = [replace(r, principal="mallory") for r in rows]
    relinked = link(GENESIS, [r.__dict__ for r in forged])
    forged = [replace(r, prev_hash=p, hash=h) for r, (p, h) in zip(forged, relinked, strict=True)]
    assert verify_chain(forged).ok
    report = verify_chain(forged, [Checkpoint(7, 4, rows[3].hash, T0, signed=True)])
    assert report.broken is not None
    assert (report.broken.row_id, report.broken.kind) == (4, "checkpoint")


def test_a_checkpoint_naming_a_deleted_middle_row_is_a_break() -> None:
    rows = chain(5)
    cps = [Checkpoint(1, 3, rows[2].hash, T0)]
    report = verify_chain(rows[:2] + rows[3:], cps)
    assert report.broken is not None
    assert report.broken.kind == "deleted"
