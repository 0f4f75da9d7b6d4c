"""Bearer credentials on the hot path: broker tokens verified once, then served from a bounded
cache that still honours expiry and revocation on every hit.

A cache hit is a dict lookup plus the in-memory revocation check: no signature verification,
no key parsing, no database. Forward-auth and ``/v1/authorize`` use this. A session token's entry
is kept small (its claims decoded again only if read, the strings a session's tokens share held
once).

A token is cached the second time it is verified, not the first: tokens presented once (a
script that takes new STS credentials for every call, a burst of one-off tokens) would otherwise
each take an entry and push out the entries of sessions in use, which then pay a signature check
again. The price is one more verification of each token that does repeat. The first sighting is
remembered as the token's hash only, in a bounded set.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from broker import jose
from broker.clock import Clock
from broker.domain import json_input, tokens
from broker.errors import TokenExpired, Unauthenticated
from broker.service.revocation import RevocationState
from broker.service.sessions import SessionService
from broker.service.verified import Credential

DEFAULT_CACHE_ENTRIES = 50_000


_TYP_BY_HEADER: dict[str, str] = {}  # tokens of one key and type share one header segment


def peek_typ(token: str) -> str:
    """The ``typ`` of a compact JWS header, unverified (only to pick the verifier)."""
    dot = token.find(".")  # not split: that would copy the rest of the token too
    head = token if dot < 0 else token[:dot]
    hit = _TYP_BY_HEADER.get(head)
    if hit is not None:
        return hit
    if not head or len(head) > 1024:
        return ""
    try:
        header = json_input.loads_object(jose.b64url_decode(head), max_bytes=1024)
    except ValueError:  # bad base64url, JsonInputError
        return ""
    typ = header.get("typ")
    found = typ.lower() if isinstance(typ, str) else ""
    if len(_TYP_BY_HEADER) >= 1024:  # made-up headers cannot grow it without bound
        _TYP_BY_HEADER.clear()
    _TYP_BY_HEADER[head] = found
    return found


class CredentialVerifier:
    def __init__(
        self,
        sessions: SessionService,
        revocations: RevocationState,
        clock: Clock,
        *,
        max_entries: int = DEFAULT_CACHE_ENTRIES,
    ) -> None:
        self._sessions = sessions
        self._ring = sessions.keyring
        self._revocations = revocations
        self._clock = clock
        self._max = max_entries
        self._cache: OrderedDict[str, Credential] = OrderedDict()
        self._seen_once: set[int] = set()  # hashes of tokens verified once (see the module doc)
        # Other token types (STS access tokens) register their verifier here.
        self.verifiers: dict[str, Any] = {tokens.SESSION_TYP: self._verify_session}

    def _verify_session(self, token: str) -> Credential:
        return self._sessions.verify(token)

    def still_valid(self, cred: Credential, now: float) -> bool:
        """Not expired and not revoked: what a cache hit must re-check every time."""
        return now < cred.expires_at and not self._revocations.is_revoked(
            session_id=cred.session_id,
            user_id=cred.user_id,
            role_arn=cred.role_arn,
            issued_at=cred.issued_at,
            origin_session_id=cred.origin_session_id,
        )

    def note_seen(self, cred: Credential, now: float) -> None:
        self._sessions.note_seen(cred.session_id, now)

    async def learn_keys(self, tokens_: Iterable[str]) -> None:
        """Before ``verify`` of tokens another instance may have signed with a key this one has
        not read yet: one shared, rate-limited key-ring refresh (cached tokens need none)."""
        ring = self._ring
        for token in tokens_:
            if token not in self._cache:
                kid = ring.unknown_kid(token)  # no I/O; the usual answer is None
                if kid is not None:
                    await ring.refresh_for_kid(kid)

    async def verify_fresh(self, token: str) -> Credential:
        """``verify`` after ``learn_keys``: what every asynchronous caller uses."""
        await self.learn_keys((token,))
        return self.verify(token)

    def verify(self, token: str) -> Credential:
        """Raises ``Unauthenticated`` with the failed check as its reason. Knows only the keys
        the ring has read: call ``learn_keys`` first (or use ``verify_fresh``)."""
        now = self._clock.now()
        hit = self._cache.get(token)
        if hit is not None:
            if now >= hit.expires_at:
                del self._cache[token]
                raise TokenExpired("token_expired")
            if self._revocations.is_revoked(
                session_id=hit.session_id,
                user_id=hit.user_id,
                role_arn=hit.role_arn,
                issued_at=hit.issued_at,
                origin_session_id=hit.origin_session_id,
            ):
                del self._cache[token]
                raise Unauthenticated("session_revoked")
            self._cache.move_to_end(token)
            self._sessions.note_seen(hit.session_id, now)
            return hit
        verify = self.verifiers.get(peek_typ(token))
        if verify is None:
            raise Unauthenticated("invalid_token:typ_mismatch")
        cred: Credential = verify(token)
        key = hash(token)  # already computed by the lookup above: str caches its hash
        if key in self._seen_once:
            self._seen_once.discard(key)
            self._cache[token] = cred
            if len(self._cache) > self._max:
                self._cache.popitem(last=False)
        else:
            if len(self._seen_once) >= self._max:
                self._seen_once.clear()
            self._seen_once.add(key)
        return cred

    def __len__(self) -> int:
        return len(self._cache)

    def __contains__(self, token: object) -> bool:
        """Whether ``token`` verified before (cached, or seen once); ``verify`` still re-checks
        it."""
        return token in self._cache or (isinstance(token, str) and hash(token) in self._seen_once)
