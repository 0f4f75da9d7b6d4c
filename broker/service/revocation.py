"""In-memory revocation state for the hot path, kept current from the store.

Verification never touches the database: it asks this object. Revocations made on this instance
apply at once (``apply``); those made elsewhere arrive through ``poll`` within its interval.
"""

from __future__ import annotations

import logging

from broker.storage.base import Revocation, Store

log = logging.getLogger(__name__)


class RevocationState:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._last_id = 0
        self._sessions: dict[str, float] = {}  # session id -> when it was revoked
        self._users: dict[str, float] = {}
        self._roles: dict[str, float] = {}
        self.healthy = False  # False until the first successful poll

    def apply(self, r: Revocation) -> None:
        if r.kind == "session":
            self._sessions[r.target] = max(self._sessions.get(r.target, 0.0), r.before)
        elif r.kind == "user":
            self._users[r.target] = max(self._users.get(r.target, 0.0), r.before)
        elif r.kind == "role":
            self._roles[r.target] = max(self._roles.get(r.target, 0.0), r.before)
        if r.id is not None and r.id > self._last_id:
            self._last_id = r.id

    async def poll(self) -> int:
        """Fetch revocations added since the last poll; returns how many."""
        new = await self._store.revocations_since(self._last_id)
        for r in new:
            self.apply(r)
        self.healthy = True
        return len(new)

    def forget(self, before: float) -> int:
        """Drop revocations older than ``before`` (every credential they void has expired), so
        that memory stays bounded; returns how many."""
        dropped = 0
        for table in (self._sessions, self._users, self._roles):
            old = [k for k, t in table.items() if t < before]
            for k in old:
                del table[k]
            dropped += len(old)
        return dropped

    def is_revoked(self, *, session_id: str, user_id: str, role_arn: str, issued_at: float) -> bool:
        if session_id in self._sessions:
            return True
        u = self._users.get(user_id)
        if u is not None and issued_at <= u:
            return True
        r = self._roles.get(role_arn)
        return r is not None and issued_at <= r
