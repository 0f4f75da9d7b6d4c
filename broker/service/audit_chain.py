"""Signed checkpoints of the audit chain, and its verification (``broker audit verify``).

A checkpoint is a compact JWS (``typ`` ``broker-audit-checkpoint+jwt``) signed with the broker's
current signing key over the chain's head: ``{"audit_last_id": N, "audit_hash": H}``. Because
each row's hash covers the one before it, a verified checkpoint vouches for every row up to N:
whoever can write to the database but does not hold the key (the KEK) cannot rewrite the chain
up to a checkpoint without ``verify`` noticing. Rows after the newest checkpoint are vouched for
only by the chain itself (a tail could be cut or rewritten there), which is why checkpoints are
written every ``CHECKPOINT_SECONDS`` by the periodic tick.

A checkpoint whose key has left the key ring can no longer be verified; its hash is still
compared against the rows. A checkpoint whose signature fails is a break.
"""

from __future__ import annotations

import logging
import secrets
import uuid
from typing import Final

from broker.clock import Clock
from broker.domain import audit_chain
from broker.domain.audit_chain import Break, ChainRow, Checkpoint, Report
from broker.errors import InvalidToken, UnknownKey
from broker.keyring import KeyRing
from broker.storage.base import AuditCheckpoint, Store

log = logging.getLogger("broker.audit")

CHECKPOINT_TYP: Final = "broker-audit-checkpoint+jwt"
CHECKPOINT_AUDIENCE: Final = "broker-audit"
CHECKPOINT_SECONDS: Final = 60.0
# The JWS profile requires ``exp``; a checkpoint's worth does not expire (its key does).
CHECKPOINT_EXP_SECONDS: Final = 100 * 365 * 86400.0
CLAIM_LAST_ID: Final = "audit_last_id"
CLAIM_HASH: Final = "audit_hash"
PAGE: Final = 2000
CLOCK_LEEWAY: Final = 300.0  # another instance's clock may run ahead of this one's


class AuditChain:
    def __init__(self, store: Store, keyring: KeyRing, clock: Clock, *, issuer: str) -> None:
        self._store = store
        self._keys = keyring
        self._clock = clock
        self._issuer = issuer

    async def checkpoint(self) -> AuditCheckpoint | None:
        """Sign the chain's head unless the newest checkpoint already names it (or the chain
        is empty). Raises ``StoreError`` if the store fails."""
        head = await self._store.audit_head()
        if head is None or not head.hash:
            return None
        last = await self._store.latest_audit_checkpoint()
        if last is not None and last.last_id == head.id:
            return None
        # never sign a tampered head: the rows since the last checkpoint must hold first
        broken = await self._segment_break(last)
        if broken is not None:
            log.error(
                "audit chain broken at row %d (%s: %s): no checkpoint signed; "
                "run `broker audit verify`",
                broken.row_id,
                broken.kind,
                broken.detail,
            )
            return None
        now = self._clock.now()
        token = self._keys.sign(
            {
                "iss": self._issuer,
                "sub": "audit",
                "aud": CHECKPOINT_AUDIENCE,
                "iat": int(now),
                "exp": int(now + CHECKPOINT_EXP_SECONDS),
                "jti": f"{uuid.uuid4()}-{secrets.token_hex(4)}",
                CLAIM_LAST_ID: head.id,
                CLAIM_HASH: head.hash,
            },
            typ=CHECKPOINT_TYP,
        )
        return await self._store.add_audit_checkpoint(
            AuditCheckpoint(last_id=head.id, hash=head.hash, created_at=now, token=token)
        )

    async def verify(self) -> Report:
        """Check every row and every checkpoint. Raises ``StoreError`` if the store fails."""
        stored = await self._store.list_audit_checkpoints()
        checkpoints: list[Checkpoint] = []
        unverifiable = 0
        for cp in stored:
            signed, problem = self._check_signature(cp)
            if problem:
                return Report(
                    rows=0,
                    unchained=0,
                    checkpoints=0,
                    head_id=None,
                    head_hash="",
                    broken=Break(cp.last_id, "checkpoint", f"checkpoint {cp.id}: {problem}"),
                )
            unverifiable += not signed
            checkpoints.append(
                Checkpoint(
                    id=cp.id or 0,
                    last_id=cp.last_id,
                    hash=cp.hash,
                    created_at=cp.created_at,
                    signed=signed,
                )
            )
        rows = await self._all_rows()
        report = audit_chain.verify_chain(rows, checkpoints)
        notes = list(report.notes)
        if unverifiable:
            notes.append(
                f"{unverifiable} checkpoint(s) signed by keys no longer in the key ring: "
                "compared by hash only"
            )
        if report.unchained:
            notes.append(f"{report.unchained} row(s) from before the chain existed")
        signed_ids = [c.last_id for c in checkpoints if c.signed]
        if report.ok and report.head_id is not None:
            newest = max(signed_ids, default=None)
            if newest is None:
                notes.append("no verifiable signed checkpoint yet: the rows are chained only")
            elif newest < report.head_id:
                notes.append(
                    f"rows after {newest} are not covered by a signed checkpoint yet "
                    f"(one is written every {int(CHECKPOINT_SECONDS)} s)"
                )
        return Report(
            rows=report.rows,
            unchained=report.unchained,
            checkpoints=report.checkpoints,
            head_id=report.head_id,
            head_hash=report.head_hash,
            broken=report.broken,
            notes=tuple(notes),
        )

    async def _segment_break(self, last: AuditCheckpoint | None) -> Break | None:
        """The first break in the rows after the checkpoint ``last`` (all rows if None)."""
        if last is None:
            return audit_chain.verify_chain(await self._all_rows()).broken
        _, problem = self._check_signature(last)
        if problem:
            return Break(last.last_id, "checkpoint", f"checkpoint {last.id}: {problem}")
        rows = await self._all_rows(after=last.last_id - 1)
        if not rows or rows[0].id != last.last_id:
            return Break(last.last_id, "deleted", "the row of the last checkpoint is missing")
        first = rows[0]
        if first.hash != last.hash or audit_chain.hash_of(first) != first.hash:
            return Break(first.id, "changed", "the row of the last checkpoint was changed")
        return audit_chain.verify_chain(rows[1:], start=first.hash).broken

    async def _all_rows(self, *, after: int = 0) -> list[ChainRow]:
        """Every audit row with id > after in id order, read a page at a time."""
        rows: list[ChainRow] = []
        while True:
            page = await self._store.audit_chain(after_id=after, limit=PAGE)
            rows += page
            if len(page) < PAGE:
                return rows
            after = page[-1].id

    def _check_signature(self, cp: AuditCheckpoint) -> tuple[bool, str]:
        """(signed, problem): a verified signature whose claims match the row; or a key that is
        gone (not signed, no problem); anything else is a problem."""
        try:
            claims = self._keys.verify(
                cp.token, typ=CHECKPOINT_TYP, audience=CHECKPOINT_AUDIENCE, leeway=CLOCK_LEEWAY
            )
        except UnknownKey:
            return False, ""
        except InvalidToken as e:
            return False, f"signature does not verify ({e.reason})"
        if claims.get(CLAIM_LAST_ID) != cp.last_id or claims.get(CLAIM_HASH) != cp.hash:
            return False, "the signed head differs from the stored one"
        return True, ""
