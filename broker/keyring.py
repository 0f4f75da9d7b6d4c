"""The broker's signing keys: a key ring kept in the store, and the JWKS it publishes (C4, C3).

Owns: key generation (EdDSA/Ed25519, ES256/P-256, RS256/RSA-3072), rotation, signing broker
tokens and verifying them (the compact JWS itself is ``broker.jose``; the keys are sealed at rest
by ``broker.kek``), and the public JWK Set (RFC 7517 §5). Imports ``storage.base``, ``config``,
``errors``, ``clock``, ``jose`` and ``kek`` only.

The ``kid`` is the RFC 7638 JWK thumbprint (SHA-256, base64url) of the public key. The public JWK
is recomputed from the decrypted private key and must match the stored one.

Lifecycle (Dex-style publish-ahead). A key's ``created_at`` is the time it starts signing. The
*current* key at a time is a pure function of the stored keys and that time: the newest
(``created_at``, then ``kid``) key that has started, is not retired and has not expired; every
instance that has read the same keys signs with the same key at the same moment. ``rotate()`` is
one compare-and-swap in a store transaction (``Store.swap_signing_key``): it stores a new key
whose ``created_at`` is ``publish_ahead`` (default 330 s: the JWKS's cache lifetime plus more
than the instances' refresh interval) from now, and retires the previous key at that same time
with ``expires_at = created_at + max_token_lifetime + retire_leeway``. So the new key is in the
JWKS and in every instance's ring before any instance signs with it, and the previous key keeps
verifying until every token it signed has expired, then it is purged. Two rotations at once: one
swap wins, the other retries on top of it (``rotate``) or gives way (``maybe_rotate``). The
first key of an empty store is the same swap with nothing to replace (insert-if-absent), and
signs at once.

The hot path. ``sign()``, ``verify()`` and ``jwks()`` are synchronous and touch no database:
keys are decrypted and parsed once per ``kid`` and kept as ``cryptography`` objects. A token
signed by a key this instance has not seen yet fails with ``unknown_kid``: every verification
path first awaits ``learn(token)``, which re-reads the store when the token names an unknown
``kid``, at most once a second for all callers together (``refresh_for_kid``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from broker import jose
from broker.clock import Clock
from broker.config import ALGORITHMS, Algorithm
from broker.errors import InvalidToken, KeyRingError, RecordNotFound, StoreError
from broker.jose import PrivateKey, PublicKey, Signer, Verifier
from broker.kek import KEK_BYTES, seal, unseal
from broker.storage.base import SigningKey, Store

log = logging.getLogger(__name__)

RETIRE_LEEWAY = 300.0  # seconds a retired key outlives the longest token it may have signed
RSA_BITS = 3072
# How long verifiers may cache the JWKS (its Cache-Control max-age, seconds).
JWKS_MAX_AGE = 300
# A new key is stored this long before anyone signs with it, so that every instance has read it
# (they re-read the ring every 10 s) and every JWKS cache that obeys the max-age has it too.
PUBLISH_AHEAD = JWKS_MAX_AGE + 30.0
_CAS_TRIES = 4  # compare-and-swaps lost in a row (to other instances) before giving up
# A token naming a kid this ring does not know makes it re-read the store at most this often
# (seconds of the ring's clock), whatever the traffic: a flood of made-up kids is one read a second.
KID_REFRESH_INTERVAL = 1.0


def _generate(algorithm: Algorithm) -> PrivateKey:
    if algorithm == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    if algorithm == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)


def _algorithm_of(key: PrivateKey) -> Algorithm | None:
    """The one algorithm a key is used with, or None for a key the broker does not make."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "EdDSA"
    if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
        return "ES256"
    if isinstance(key, rsa.RSAPrivateKey) and key.key_size >= 2048:
        return "RS256"
    return None


@dataclass(frozen=True, slots=True)
class _Key:
    """A usable key: the stored record's dates plus the parsed key material."""

    kid: str
    algorithm: Algorithm
    private_key: PrivateKey = dataclasses.field(repr=False)
    public_key: PublicKey
    public_jwk: Mapping[str, Any]  # with kid, alg, use
    created_at: float
    retired_at: float | None
    expires_at: float | None
    sign: Signer = dataclasses.field(repr=False, compare=False)
    verify: Verifier = dataclasses.field(repr=False, compare=False)

    def signs_at(self, now: float) -> bool:
        return self.retired_at is None or self.retired_at > now

    def live_at(self, now: float) -> bool:
        return self.expires_at is None or self.expires_at > now


def _material(private_key: PrivateKey, algorithm: Algorithm, kid: str) -> _Key:
    public_key: PublicKey = private_key.public_key()
    jwk = {**jose.key_members(public_key), "kid": kid, "alg": algorithm, "use": "sig"}
    return _Key(
        kid,
        algorithm,
        private_key,
        public_key,
        jwk,
        0.0,
        None,
        None,
        sign=jose.signer(private_key),
        verify=jose.verifier(public_key),
    )


def _rank(key: _Key) -> tuple[float, str]:
    return (key.created_at, key.kid)


@dataclass(frozen=True, slots=True)
class _State:
    keys: Mapping[str, _Key]  # every key not yet expired, by kid

    def signing_key(self, now: float) -> _Key | None:
        """The key to sign with at ``now``: a pure function of the keys and the time, so every
        instance that has read the same keys picks the same one at the same moment.

        The newest (activation, kid) key that is active: activated, not retired, not expired.
        If none is active yet but one will be (this clock is behind the one of the instance
        that stored the first key), the one activating first: better than not signing."""
        active: _Key | None = None
        pending: _Key | None = None
        for k in self.keys.values():
            if not (k.signs_at(now) and k.live_at(now)):
                continue
            if k.created_at <= now:
                if active is None or _rank(k) > _rank(active):
                    active = k
            elif pending is None or _rank(k) < _rank(pending):
                pending = k
        return active or pending

    @property
    def newest(self) -> _Key | None:
        """The key activated last or to be activated next: what a rotation is measured from."""
        return max(self.keys.values(), key=_rank, default=None)


_EMPTY = _State(keys={})


class KeyRing:
    """The broker's signing keys, kept in the store and cached in memory."""

    def __init__(
        self,
        store: Store,
        *,
        algorithm: Algorithm,
        kek: bytes,
        rotate_every: float,
        max_token_lifetime: float,
        issuer: str,
        clock: Clock,
        retire_leeway: float = RETIRE_LEEWAY,
        publish_ahead: float = PUBLISH_AHEAD,
    ) -> None:
        if algorithm not in ALGORITHMS:
            raise KeyRingError(f"bad_algorithm: {algorithm!r} is not one of {ALGORITHMS}")
        if len(kek) != KEK_BYTES:
            raise KeyRingError("bad_kek: the KEK must be 32 bytes")
        if rotate_every <= 0 or max_token_lifetime <= 0 or retire_leeway < 0 or publish_ahead < 0:
            raise KeyRingError("bad_key_config: rotate_every and max_token_lifetime must be > 0")
        if not issuer:
            raise KeyRingError("bad_key_config: the issuer must not be empty")
        self._store = store
        self._algorithm: Algorithm = algorithm
        self._aead_kek = kek
        self._rotate_every = rotate_every
        self._max_token_lifetime = max_token_lifetime
        self._retire_leeway = retire_leeway
        self._publish_ahead = publish_ahead
        self._issuer = issuer
        self._clock = clock
        self._state = _EMPTY
        self._parsed: dict[str, _Key] = {}  # key material by kid, parsed once
        self._lock = asyncio.Lock()
        # encoded header segment -> its parse; only headers of tokens whose signature verified
        self._headers: dict[str, jose.Header] = {}
        # the refresh on an unknown kid: when it last ran, and the one in flight (shared)
        self._kid_refreshed_at = float("-inf")
        self._kid_refresh: asyncio.Future[None] | None = None

    def __repr__(self) -> str:
        current = self._state.signing_key(self._clock.now())
        return (
            f"KeyRing(algorithm={self._algorithm!r}, current={current.kid if current else None!r})"
        )

    # --- reading and writing the store -------------------------------------------------------

    def _parse(self, record: SigningKey) -> _Key:
        """Decrypt and parse one stored key (once per kid), checking it is what it claims."""
        der = unseal(self._aead_kek, record.kid, record.private_key)
        try:
            private_key = serialization.load_der_private_key(der, password=None)
        except (ValueError, TypeError):
            raise KeyRingError(f"corrupt_key: stored key {record.kid} does not parse") from None
        if not isinstance(
            private_key, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
        ):
            raise KeyRingError(f"corrupt_key: stored key {record.kid} is of an unsupported type")
        algorithm = _algorithm_of(private_key)
        if algorithm is None or algorithm != record.algorithm:
            raise KeyRingError(
                f"corrupt_key: stored key {record.kid} is not a {record.algorithm} key"
            )
        key = _material(private_key, algorithm, record.kid)
        members = jose.key_members(key.public_key)
        if any(record.public_jwk.get(name) != value for name, value in members.items()):
            raise KeyRingError(
                f"corrupt_key: the stored public JWK of {record.kid} does not match its private key"
            )
        return key

    async def _read(self) -> _State:
        """Read the store into a new state (not yet in use)."""
        return self._state_from(await self._store.list_signing_keys())

    def _state_from(self, records: Sequence[SigningKey]) -> _State:
        """The state for these records; parses only kids not seen before (raises on a bad key)."""
        now = self._clock.now()
        keys: dict[str, _Key] = {}
        for record in records:
            if record.expires_at is not None and record.expires_at <= now:
                continue
            cached = self._parsed.get(record.kid)
            if cached is None or cached.algorithm != record.algorithm:
                cached = self._parse(record)
                self._parsed[record.kid] = cached
            keys[record.kid] = dataclasses.replace(
                cached,
                created_at=record.created_at,
                retired_at=record.retired_at,
                expires_at=record.expires_at,
            )
        for kid in set(self._parsed) - set(keys):
            del self._parsed[kid]
        return _State(keys=keys)

    def _retirement(self, now: float) -> float:
        return now + self._max_token_lifetime + self._retire_leeway

    async def _swap(
        self, records: Sequence[SigningKey], *, activates_at: float
    ) -> SigningKey | None:
        """One compare-and-swap: a new key, signing from ``activates_at``, replaces the keys of
        ``records`` that have no ``retired_at`` (they sign until then). None if the store's
        keys are no longer ``records``' (another instance rotated first): nothing was written."""
        self._state_from(records)  # every stored key opens with this KEK: check before writing
        # created_at orders keys; never let the new key rank below one already stored
        created_at = max([activates_at, *(r.created_at + 0.001 for r in records)])
        private_key = await asyncio.to_thread(_generate, self._algorithm)
        members = jose.key_members(private_key.public_key())
        kid = jose.thumbprint(members)
        key = _material(private_key, self._algorithm, kid)
        der = private_key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        record = SigningKey(
            kid=kid,
            algorithm=self._algorithm,
            private_key=seal(self._aead_kek, kid, der),
            public_jwk=dict(key.public_jwk),
            created_at=created_at,
        )
        won = await self._store.swap_signing_key(
            record,
            replaces=[r.kid for r in records if r.retired_at is None],
            replaced_expire_at=self._retirement(created_at),
        )
        if not won:
            return None
        self._parsed[kid] = key
        return record

    def _activation(self, state: _State, now: float) -> float:
        """When a new key may start signing: at once if nothing can sign now (there is nothing
        to stay compatible with), else once every instance has had time to read it."""
        return now if state.signing_key(now) is None else now + self._publish_ahead

    async def _purge(self, records: Sequence[SigningKey], now: float) -> None:
        """Delete keys past their expiry; give a retired key without an end one."""
        for r in records:
            if r.expires_at is not None and r.expires_at <= now:
                with contextlib.suppress(RecordNotFound):  # another instance purged it first
                    await self._store.delete_signing_key(r.kid)
                log.info("signing key %s expired and was removed", r.kid)
            elif r.retired_at is not None and r.expires_at is None:
                with contextlib.suppress(RecordNotFound):
                    await self._store.update_signing_key(
                        r.kid, retired_at=r.retired_at, expires_at=self._retirement(r.retired_at)
                    )

    async def _ensure_signing_key(self) -> Sequence[SigningKey]:
        """Read the store into the ring; if no stored key can sign, add one that signs at once
        (insert-if-absent: of several instances starting on an empty store, one key wins).
        Returns the keys read."""
        for _ in range(_CAS_TRIES):
            records = await self._store.list_signing_keys()
            state = self._state_from(records)
            now = self._clock.now()
            if state.signing_key(now) is not None:
                self._state = state
                return records
            if await self._swap(records, activates_at=now) is not None:
                log.info("no signing key could sign: made one (%s)", self._algorithm)
        raise KeyRingError("store_error: no signing key could be stored")

    async def _rotate_locked(
        self, *, tries: int, seen: Sequence[SigningKey] | None = None
    ) -> SigningKey | None:
        """Publish a new key (see ``rotate``); None if another instance rotated ``tries`` times
        in a row between our read and our swap. ``seen``: the keys the decision to rotate was
        made on, the first swap's expected state (a fresh read could see another instance's
        rotation and rotate again on top of it)."""
        for _ in range(tries):
            records = seen if seen is not None else await self._store.list_signing_keys()
            seen = None
            now = self._clock.now()
            record = await self._swap(
                records, activates_at=self._activation(self._state_from(records), now)
            )
            if record is not None:
                await self._purge(records, now)
                self._state = await self._read()
                log.info(
                    "signing key rotated: new kid %s (%s), signing from %s",
                    record.kid,
                    self._algorithm,
                    record.created_at,
                )
                return record
        self._state = await self._read()
        return None

    # --- lifecycle ---------------------------------------------------------------------------

    async def load(self) -> None:
        """Read the keys from the store; make a key if none can sign; rotate if the algorithm
        changed.

        Raises ``KeyRingError`` (``kek_mismatch: ...``) if the KEK cannot decrypt a stored key.
        """
        async with self._lock:
            records = await self._ensure_signing_key()
            newest = self._state.newest
            if newest is not None and newest.algorithm != self._algorithm:
                log.warning(
                    "[keys].algorithm is %s but the newest key %s is %s: rotating",
                    self._algorithm,
                    newest.kid,
                    newest.algorithm,
                )
                # lost: another instance rotated (with the same new setting, in a rolling restart)
                await self._rotate_locked(tries=1, seen=records)

    async def refresh(self) -> None:
        """Re-read the store (another instance may have rotated); parsed keys stay cached.
        Never leaves the ring without a key that can sign (see ``load``)."""
        async with self._lock:
            await self._ensure_signing_key()

    async def rotate(self) -> SigningKey:
        """Publish a new key: stored now, in the JWKS now and in every instance's ring at its
        next refresh, it signs from its ``created_at`` (``publish_ahead`` from now; at once if
        no key could sign) on every instance alike. Until then the current key signs; it then
        retires and stays in the JWKS until every token it signed has expired. Expired keys
        are purged.

        One compare-and-swap in the store: two rotations at once never leave two keys that
        sign; the one that loses retries on top of the winner's key."""
        async with self._lock:
            record = await self._rotate_locked(tries=_CAS_TRIES)
        if record is None:
            raise KeyRingError("rotation_conflict: other instances kept rotating; try again")
        return record

    async def maybe_rotate(
        self, *, before_rotating: Callable[[], Awaitable[None]] | None = None
    ) -> SigningKey | None:
        """Rotate if the newest key activated ``rotate_every`` ago (the periodic job); the new
        key if this instance rotated. Of several instances running it at once, one rotates.
        ``before_rotating`` runs once a rotation is due, before the key is made; if it raises,
        nothing is rotated (the caller's fail-closed audit row)."""
        async with self._lock:
            records = await self._store.list_signing_keys()
            state = self._state_from(records)
            now = self._clock.now()
            newest = state.newest
            untidy = sum(r.retired_at is None for r in records) > 1  # left by an old race
            if newest is None or untidy or now - newest.created_at >= self._rotate_every:
                if before_rotating is not None:
                    await before_rotating()
                return await self._rotate_locked(tries=1, seen=records)
            self._state = state
            if any(r.expires_at is not None and r.expires_at <= now for r in records):
                await self._purge(records, now)
            return None

    # --- learning keys made by other instances --------------------------------------------------

    def unknown_kid(self, token: str) -> str | None:
        """The ``kid`` a token names if this ring has no such key, else None. No I/O.

        None too for a token whose header does not parse: ``verify`` refuses it, and no store
        read could change that."""
        if not isinstance(token, str) or len(token) > jose.MAX_TOKEN_LENGTH:
            return None
        segment = token.partition(".")[0]
        header = self._headers.get(segment)
        if header is None:
            try:
                header = jose.check_header(segment)
            except InvalidToken:
                return None
        return None if header.kid in self._state.keys else header.kid

    async def learn(self, token: str) -> None:
        """Before a synchronous ``verify``: if ``token`` names a key this ring does not know
        (another instance made it), re-read the store once (see ``refresh_for_kid``)."""
        kid = self.unknown_kid(token)
        if kid is not None:
            await self.refresh_for_kid(kid)

    async def refresh_for_kid(self, kid: str) -> bool:
        """Re-read the store to learn ``kid``; whether the ring knows it now.

        Rate-limited to one read per ``KID_REFRESH_INTERVAL`` for every caller together, and
        concurrent callers share the read in flight: a burst of tokens with unknown (or made
        up) kids costs one store read. A store that fails is logged and the kid stays unknown
        (the token is refused, never let through)."""
        if kid in self._state.keys:
            return True
        pending = self._kid_refresh
        if pending is None:
            now = self._clock.now()
            if now - self._kid_refreshed_at < KID_REFRESH_INTERVAL:
                return False
            self._kid_refreshed_at = now
            pending = self._kid_refresh = asyncio.ensure_future(self._refresh_logged())
            pending.add_done_callback(self._kid_refresh_done)
        await asyncio.shield(pending)
        return kid in self._state.keys

    def _kid_refresh_done(self, _: asyncio.Future[None]) -> None:
        self._kid_refresh = None

    async def _refresh_logged(self) -> None:
        try:
            await self.refresh()
        except (StoreError, KeyRingError) as e:
            log.warning("could not re-read the signing keys for an unknown kid: %s", e)

    # --- the hot path ------------------------------------------------------------------------

    @property
    def current_kid(self) -> str:
        return self._current().kid

    @property
    def algorithm(self) -> Algorithm:
        """The configured algorithm (new keys use it)."""
        return self._algorithm

    def _current(self) -> _Key:
        current = self._state.signing_key(self._clock.now())
        if current is None:
            raise KeyRingError("not_loaded: the key ring has no signing key; call load() first")
        return current

    def sign(self, claims: Mapping[str, Any], *, typ: str) -> str:
        """A compact JWS of ``claims`` signed by the current key (see ``jose.encode``)."""
        key = self._current()
        return jose.encode(claims, alg=key.algorithm, kid=key.kid, typ=typ, sign=key.sign)

    def verify(
        self,
        token: str,
        *,
        typ: str,
        audience: str | Sequence[str] | None,
        leeway: float = 0,
    ) -> dict[str, Any]:
        """The claims of a broker token signed by a key of this ring, after every check of
        ``jose.verify``; raises ``InvalidToken(reason)`` (``ExpiredToken`` when expired)."""
        return jose.verify(
            token,
            keys=self._state.keys,
            headers=self._headers,
            typ=typ,
            issuer=self._issuer,
            audience=audience,
            now=self._clock.now(),
            leeway=leeway,
        )

    def jwks(self) -> dict[str, Any]:
        """RFC 7517 §5 JWK Set: the current key first, then the others not yet expired, newest
        first: a published key that signs from a later time, and retired keys."""
        now = self._clock.now()
        state = self._state
        current = state.signing_key(now)
        keys = sorted(
            (k for k in state.keys.values() if k.live_at(now)),
            key=lambda k: (k is not current, -k.created_at, k.kid),
        )
        return {"keys": [dict(k.public_jwk) for k in keys]}
