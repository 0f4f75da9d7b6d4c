"""In-memory revocation state for the hot path, kept current from the store.

Verification never touches the database: it asks this object. Revocations made on this instance
apply at once (``apply``); those made elsewhere arrive through ``poll`` within its interval.

It fails closed: once the last successful poll is older than ``max_staleness``, a lookup raises
``RevocationStateStale`` instead of answering from data that may miss a logout made on another
instance. The next successful poll ends that by itself.

Kinds (``Revocation.kind``): ``session`` voids the tokens of that one session (a logout, an RFC
7009 revocation); ``origin`` voids that broker session's tokens *and* every credential derived
from it (STS credentials, token-exchange results, chains of them: their ``origin_sid`` claim,
``Credential.origin_session_id``), as back-channel logout records it; ``user`` and ``role`` void
what that user or role was issued up to their time.
"""

from __future__ import annotations

import logging

from broker.clock import Clock, SystemClock
from broker.errors import RevocationStateStale
from broker.storage.base import Revocation, Store

log = logging.getLogger(__name__)


class RevocationState:
    def __init__(
        self, store: Store, clock: Clock | None = None, *, max_staleness: float = 10.0
    ) -> None:
        self._store = store
        self._clock = clock or SystemClock()
        self.max_staleness = max_staleness
        self.polled_at: float | None = None  # when a poll last succeeded
        self._last_id = 0
        self._sessions: dict[str, float] = {}  # session id -> when it was revoked
        self._origins: dict[str, float] = {}  # session id -> when it and its derived ended
        self._users: dict[str, float] = {}
        self._roles: dict[str, float] = {}
        # Counts user revocations seen: what caches user records (``StsService``) re-read after,
        # since disabling a user always records one.
        self.user_generation = 0

    def apply(self, r: Revocation) -> None:
        if r.kind == "session":
            self._sessions[r.target] = max(self._sessions.get(r.target, 0.0), r.before)
        elif r.kind == "origin":
            if r.target:  # "" is "derived from no session": never a match
                self._origins[r.target] = max(self._origins.get(r.target, 0.0), r.before)
        elif r.kind == "user":
            self._users[r.target] = max(self._users.get(r.target, 0.0), r.before)
            self.user_generation += 1
        elif r.kind == "role":
            self._roles[r.target] = max(self._roles.get(r.target, 0.0), r.before)
        if r.id is not None and r.id > self._last_id:
            self._last_id = r.id

    async def poll(self) -> int:
        """Fetch revocations added since the last poll; returns how many. Raises
        ``StoreError`` (the state then ages towards stale)."""
        started = self._clock.now()  # what is known is as old as the moment the read began
        new = await self._store.revocations_since(self._last_id)
        for r in new:
            self.apply(r)
        self.polled_at = started
        return len(new)

    @property
    def healthy(self) -> bool:
        """Polled successfully within ``max_staleness``."""
        return self.polled_at is not None and (
            self._clock.now() - self.polled_at <= self.max_staleness
        )

    def forget(self, before: float) -> int:
        """Drop revocations older than ``before`` (every credential they void has expired), so
        that memory stays bounded; returns how many."""
        dropped = 0
        for table in (self._sessions, self._origins, self._users, self._roles):
            old = [k for k, t in table.items() if t < before]
            for k in old:
                del table[k]
            dropped += len(old)
        return dropped

    def is_revoked(
        self,
        *,
        session_id: str,
        user_id: str,
        role_arn: str,
        issued_at: float,
        origin_session_id: str = "",
    ) -> bool:
        """Whether a credential issued at ``issued_at`` (its token's ``iat``) is revoked: its
        session (or the broker session it was derived from, ``origin_session_id``:
        ``Credential.origin_session_id``, "" for none) is, or its user or role was revoked at
        or after ``issued_at`` (fail closed at the very instant). Tokens the broker issues carry
        ``iat`` to the millisecond, rounded down (``tokens.issue_time``), so what is issued
        after a revocation lives unless it falls within the same millisecond; older tokens
        carry whole seconds. Raises ``RevocationStateStale`` when the state is too old to say
        "not revoked"."""
        polled = self.polled_at
        if polled is None or self._clock.now() - polled > self.max_staleness:
            raise RevocationStateStale()
        if session_id in self._sessions or origin_session_id in self._origins:
            return True
        u = self._users.get(user_id)
        if u is not None and issued_at <= u:
            return True
        r = self._roles.get(role_arn)
        return r is not None and issued_at <= r
