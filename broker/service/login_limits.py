"""Failed-login limits for the local provider, kept in the store.

Every broker instance (and every worker of one) counts against the same rows, so the limits
hold however many there are. Each user name and each client address has its own row: spraying
other names only adds rows, it never resets or evicts the count of the name under attack.

An attempt is counted *before* its password is checked (and forgiven if it succeeds), so that
concurrent attempts cannot all pass the check while none has been counted yet: of N attempts
at once, at most ``limit`` reach the password check. Keys are hashes: a person who types the
password into the user-name field does not leave it in the database.
"""

from __future__ import annotations

import hashlib
import math

from broker.clock import Clock
from broker.config import LoginConfig
from broker.errors import RateLimited
from broker.storage.base import Store


def _key(scope: str, value: str) -> str:
    return f"{scope}:" + hashlib.sha256(value.encode()).hexdigest()


class LoginAttempt:
    """One counted attempt; ``succeeded`` or ``void`` (not checked after all) forgives it."""

    def __init__(self, store: Store, user_key: str, address_key: str) -> None:
        self._store = store
        self._user = user_key
        self._address = address_key

    async def succeeded(self) -> None:
        """A success ends the user name's count, and does not count against the address."""
        await self._store.forgive_login_failures(clear=[self._user], once=[self._address])

    async def void(self) -> None:
        """The password was never checked (the broker was too busy): take the attempt back."""
        await self._store.forgive_login_failures(once=[self._user, self._address])


class LoginLimits:
    def __init__(self, store: Store, config: LoginConfig, clock: Clock) -> None:
        self._store = store
        self._config = config
        self._clock = clock

    async def attempt(self, provider: str, username: str, address: str) -> LoginAttempt:
        """Count an attempt against the user name and the address, or raise ``RateLimited``
        (with the seconds until the exceeded window ends) if either is over its limit."""
        user_key = _key("user", f"{provider}\0{username.lower()}")
        address_key = _key("address", address)
        now = self._clock.now()
        user, addr = await self._store.add_login_failures(
            [user_key, address_key], now=now, window=self._config.failure_window
        )
        over = [
            c.window_end
            for c, limit in (
                (user, self._config.max_failures_per_user),
                (addr, self._config.max_failures_per_address),
            )
            if c.count > limit
        ]
        if over:
            raise RateLimited("too_many_failures", retry_after=math.ceil(max(over) - now))
        return LoginAttempt(self._store, user_key, address_key)
