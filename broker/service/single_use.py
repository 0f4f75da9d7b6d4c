"""Single-use values of login flows: a pending role choice, a password-change ticket, a
pending MFA step, an MFA enrolment in progress.

Each value is a random string handed to one browser in a cookie. The store keeps only its hash,
namespaced by kind, bound to the hash of that browser's binding cookie, with what it stands for.
A value is read (``peek``) while its page is shown and consumed (``consume``, atomically in the
store) by the one request that acts on it; a copy of the cookie replayed from another browser,
after use, after expiry or after logout (``forget_browser``) finds nothing.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from typing import Any

from broker.clock import Clock
from broker.storage.base import SingleUse, Store

PENDING_ROLE = "pending-role"  # a verified identity waiting for its role choice
PASSWORD_CHANGE = "password-change"  # a local user who must choose a new password first
PENDING_MFA = "pending-mfa"  # a local user whose password was right, waiting to give a code
MFA_ENROL = "mfa-enrol"  # a device being enrolled from the session page, not yet confirmed

MAX_VALUE_LENGTH = 256  # ours are 43 characters; anything far longer is not ours


def binding_hash(raw: str) -> str:
    """What the store keeps of a browser-held value (never the value itself)."""
    return hashlib.sha256(raw.encode()).hexdigest()


def _usable(raw: str) -> bool:
    return 0 < len(raw) <= MAX_VALUE_LENGTH


class SingleUseValues:
    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    async def issue(
        self, kind: str, payload: Mapping[str, Any], *, browser: str, lifetime: float
    ) -> str:
        """A new value of ``kind`` for the browser whose binding cookie is ``browser``."""
        if not _usable(browser):
            raise ValueError("a single-use value needs the browser's binding")
        raw = secrets.token_urlsafe(32)
        now = self._clock.now()
        await self._store.put_single_use(
            SingleUse(
                kind=kind,
                key=binding_hash(raw),
                binding=binding_hash(browser),
                payload=dict(payload),
                created_at=now,
                expires_at=now + lifetime,
            )
        )
        return raw

    async def peek(self, kind: str, raw: str, *, browser: str) -> Mapping[str, Any] | None:
        """The value's payload if this browser holds it, unused and unexpired; uses nothing."""
        if not (_usable(raw) and _usable(browser)):
            return None
        found = await self._store.peek_single_use(
            kind, binding_hash(raw), binding=binding_hash(browser), now=self._clock.now()
        )
        return found.payload if found is not None else None

    async def consume(self, kind: str, raw: str, *, browser: str) -> Mapping[str, Any] | None:
        """The payload, once: of concurrent or repeated calls only one gets it."""
        found = await self.take(kind, raw, browser=browser)
        return found.payload if found is not None else None

    async def take(self, kind: str, raw: str, *, browser: str) -> SingleUse | None:
        """``consume``, returning the stored value itself (for ``put_back``)."""
        if not (_usable(raw) and _usable(browser)):
            return None
        return await self._store.consume_single_use(
            kind, binding_hash(raw), binding=binding_hash(browser), now=self._clock.now()
        )

    async def put_back(self, taken: SingleUse) -> None:
        """Make a value taken by a request that then failed usable again, as it was: a failed
        request uses up nothing (a concurrent request meanwhile found it taken)."""
        if taken.expires_at > self._clock.now():
            await self._store.put_single_use(taken)

    async def forget_browser(self, *browser_values: str) -> int:
        """End every value and login state bound to these browser-held values (logout)."""
        n = 0
        for raw in browser_values:
            if _usable(raw):
                n += await self._store.forget_binding(binding_hash(raw))
        return n
