"""Signed checkpoints of the audit chain and ``AuditChain.verify`` on SQLite and PostgreSQL,
with the real key ring; tampering is done with SQL on the database itself."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa

from broker.clock import FrozenClock
from broker.domain.audit_chain import GENESIS, link
from broker.errors import AuditUnavailable
from broker.kek import generate_kek
from broker.keyring import KeyRing
from broker.service.audit import Auditor
from broker.service.audit_chain import CHECKPOINT_TYP, AuditChain
from broker.storage import schema as t
from broker.storage.base import AuditCheckpoint, AuditEvent

if TYPE_CHECKING:
    from broker.storage import SqlStore

ISSUER = "https://broker.test"


async def chain_for(store: SqlStore, clock: FrozenClock) -> tuple[AuditChain, KeyRing]:
    ring = KeyRing(
        store,
        algorithm="EdDSA",
        kek=generate_kek(),
        rotate_every=86400.0,
        max_token_lifetime=3600.0,
        issuer=ISSUER,
        clock=clock,
    )
    await ring.load()
    return AuditChain(store, ring, clock, issuer=ISSUER), ring


async def fill(store: SqlStore, clock: FrozenClock, n: int) -> None:
    for i in range(n):
        await store.append_audit(AuditEvent(clock.now() + i, "login", "success", principal=f"u{i}"))


async def sql(store: SqlStore, stmt: sa.Executable) -> None:
    async with store._engine.begin() as conn:
        await conn.execute(stmt)


async def test_a_checkpoint_signs_the_head_once(store: SqlStore) -> None:
    clock = FrozenClock()
    chain, ring = await chain_for(store, clock)
    assert await chain.checkpoint() is None  # nothing to sign yet
    await fill(store, clock, 4)
    cp = await chain.checkpoint()
    assert cp is not None
    head = await store.audit_head()
    assert head is not None
    assert (cp.last_id, cp.hash) == (head.id, head.hash)
    claims = ring.verify(cp.token, typ=CHECKPOINT_TYP, audience="broker-audit")
    assert (claims["audit_last_id"], claims["audit_hash"]) == (head.id, head.hash)
    assert await chain.checkpoint() is None  # the head did not move
    report = await chain.verify()
    assert report.ok
    assert (report.rows, report.checkpoints) == (4, 1)


async def test_a_consistent_rewrite_is_caught_by_the_signed_checkpoint(store: SqlStore) -> None:
    clock = FrozenClock()
    chain, _ = await chain_for(store, clock)
    await fill(store, clock, 4)
    await chain.checkpoint()
    rows = await store.audit_chain()
    forged = [replace(r, principal="mallory") for r in rows]
    relinked = link(GENESIS, [r.__dict__ for r in forged])
    for r, (p, h) in zip(forged, relinked, strict=True):
        a = t.audit_events
        await sql(store, sa.update(a).where(a.c.id == r.id).values(
            principal=r.principal, prev_hash=p, hash=h))  # fmt: skip
    report = await chain.verify()
    assert report.broken is not None
    assert report.broken.kind == "checkpoint"
    assert report.broken.row_id == rows[-1].id
    # and the periodic checkpoint refuses to sign over it
    await fill(store, clock, 1)
    assert await chain.checkpoint() is None


async def test_a_forged_checkpoint_is_refused(store: SqlStore) -> None:
    clock = FrozenClock()
    chain, _ = await chain_for(store, clock)
    await fill(store, clock, 3)
    real = await chain.checkpoint()
    assert real is not None
    await fill(store, clock, 2)
    head = await store.audit_head()
    assert head is not None
    # a real checkpoint's signature over another head: what a database writer could make
    header, _, signature = real.token.split(".")
    payload = (
        base64.urlsafe_b64encode(
            json.dumps({"audit_last_id": head.id, "audit_hash": head.hash}).encode()
        )
        .rstrip(b"=")
        .decode()
    )
    forged = f"{header}.{payload}.{signature}"
    await store.add_audit_checkpoint(AuditCheckpoint(head.id, head.hash, clock.now(), forged))
    report = await chain.verify()
    assert report.broken is not None
    assert report.broken.kind == "checkpoint"
    assert "signature" in report.broken.detail
    assert await chain.checkpoint() is None  # nor is a new one signed on top of it


async def test_an_edited_row_is_named_on_every_backend(store: SqlStore) -> None:
    clock = FrozenClock()
    chain, _ = await chain_for(store, clock)
    await fill(store, clock, 5)
    await chain.checkpoint()
    rows = await store.audit_chain()
    a = t.audit_events
    await sql(store, sa.update(a).where(a.c.id == rows[1].id).values(outcome="failure"))
    report = await chain.verify()
    assert report.broken is not None
    assert (report.broken.row_id, report.broken.kind) == (rows[1].id, "changed")
    await sql(store, sa.update(a).where(a.c.id == rows[1].id).values(outcome="success"))
    await sql(store, sa.delete(a).where(a.c.id == rows[3].id))
    report = await chain.verify()
    assert report.broken is not None
    assert (report.broken.row_id, report.broken.kind) == (rows[4].id, "deleted")


async def audit_table_refuses(store: SqlStore) -> None:
    """A real fault: the database refuses every insert into audit_events (nothing else)."""
    if store.dialect == "postgresql":
        await sql(store, sa.text(
            "CREATE FUNCTION audit_down() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'audit store down'; END $$"))  # fmt: skip
        await sql(store, sa.text(
            "CREATE TRIGGER audit_down BEFORE INSERT ON audit_events "
            "FOR EACH ROW EXECUTE FUNCTION audit_down()"))  # fmt: skip
    else:
        await sql(store, sa.text(
            "CREATE TRIGGER audit_down BEFORE INSERT ON audit_events "
            "BEGIN SELECT RAISE(ABORT, 'audit store down'); END"))  # fmt: skip


async def test_record_or_fail_raises_and_writes_nothing(store: SqlStore) -> None:
    clock = FrozenClock()
    auditor = Auditor(store, clock)
    await auditor.record_or_fail("before", "success")
    await audit_table_refuses(store)
    with pytest.raises(AuditUnavailable) as e:
        await auditor.record_or_fail("user.password_change", "success", principal="corp/a")
    assert e.value.status == 503
    assert e.value.reason == "audit_unavailable:user.password_change"
    with pytest.raises(AuditUnavailable):
        await auditor.record_all_or_fail(
            auditor.event("role.choose", "success"), auditor.event("login", "success")
        )
    await auditor.record("refusal", "failure")  # a refusal still does not raise
    assert [e.action for e in await store.list_audit()] == ["before"]
