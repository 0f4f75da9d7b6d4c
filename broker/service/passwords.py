"""Local-provider passwords: argon2id hashes, a minimal strength rule, and login rate limits."""

from __future__ import annotations

import secrets
import string
from collections import deque

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from broker.clock import Clock

MIN_PASSWORD_LENGTH = 12
_hasher = PasswordHasher()
# Compared against when the user does not exist, so both paths cost one argon2 verification.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def password_problem(password: str, *, username: str) -> str | None:
    """Why a new password is refused, or None."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"Use at least {MIN_PASSWORD_LENGTH} characters."
    if len(password) > 1024:
        return "Use at most 1024 characters."
    if password.lower() == username.lower():
        return "The password must not be the user name."
    return None


def one_time_password() -> str:
    alphabet = string.ascii_letters + string.digits
    return "-".join("".join(secrets.choice(alphabet) for _ in range(6)) for _ in range(4))


class RateLimiter:
    """Failures per key in a sliding window; in memory, per broker instance."""

    def __init__(self, clock: Clock, *, limit: int, window: float, max_keys: int = 100_000) -> None:
        self._clock = clock
        self.limit = limit
        self.window = window
        self._max_keys = max_keys
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, key: str) -> deque[float]:
        q = self._failures.get(key)
        if q is None:
            return deque()
        cutoff = self._clock.now() - self.window
        while q and q[0] <= cutoff:
            q.popleft()
        if not q:
            del self._failures[key]
        return q

    def blocked(self, key: str) -> bool:
        return len(self._recent(key)) >= self.limit

    def fail(self, key: str) -> None:
        if key not in self._failures and len(self._failures) >= self._max_keys:
            # Bounded memory under a flood of distinct keys: forget the oldest key.
            self._failures.pop(next(iter(self._failures)))
        self._failures.setdefault(key, deque()).append(self._clock.now())

    def reset(self, key: str) -> None:
        self._failures.pop(key, None)
