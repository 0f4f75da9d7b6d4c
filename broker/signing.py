"""The broker's signing keys: a key ring kept in the store, and the JWKS it publishes (C4, C3).

Owns: key generation (EdDSA/Ed25519, ES256/P-256, RS256/RSA-3072), the encryption of private
keys at rest with the KEK, rotation, signing broker tokens (RFC 7515 compact JWS, RFC 7519 JWT)
and verifying them, and the public JWK Set (RFC 7517 §5). Imports ``storage.base``, ``config``,
``errors`` and ``clock`` only.

Keys at rest. A private key is PKCS#8 DER sealed with AES-256-GCM under the KEK: a random 96-bit
nonce, the ``kid`` as associated data (so a ciphertext cannot be moved to another record), stored
as ``b"v1:" + nonce + ciphertext``. The ``kid`` is the RFC 7638 JWK thumbprint (SHA-256,
base64url) of the public key. The public JWK is recomputed from the decrypted private key and
must match the stored one.

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

Compact JWS is handled here rather than by PyJWT: ``verify`` sits on forward-auth's path for
every never-seen token, where PyJWT's generic machinery (option merging, algorithm lookup, key
preparation, its own header parse) cost about as much as the signature check itself. The JOSE
header of a token that verified is remembered by its encoded form (all tokens of one key and
``typ`` share it), so the next token with that header skips its parse; the checks that depend on
the ring's keys, the clock or the caller's ``typ`` still run on every call.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import calendar
import contextlib
import dataclasses
import functools
import hashlib
import json
import logging
import math
import os
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from broker.clock import Clock
from broker.config import ALGORITHMS, Algorithm
from broker.errors import ExpiredToken, InvalidToken, KeyRingError, RecordNotFound, StoreError
from broker.storage.base import SigningKey, Store

log = logging.getLogger(__name__)

KEK_BYTES = 32
RETIRE_LEEWAY = 300.0  # seconds a retired key outlives the longest token it may have signed
MAX_TOKEN_LENGTH = 16 * 1024
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

_KEY_FORMAT = b"v1:"
_NONCE_BYTES = 12
_TAG_BYTES = 16
_HEADER_CACHE_SIZE = 1024  # distinct verified JOSE headers remembered (keys x typs in practice)
_ES256_BYTES = 32  # RFC 7518 §3.4: an ES256 signature is r || s, each 32 bytes big-endian

# RFC 8725 §3.10 / RFC 7515 §4.1: headers that would let a token name its own key or make us
# process extensions we do not implement. Broker tokens carry exactly alg, kid and typ.
_FORBIDDEN_HEADERS = ("jku", "jwk", "x5u", "x5c", "x5t", "x5t#S256", "crit", "b64", "zip", "enc")
_ALLOWED_HEADERS = frozenset({"alg", "kid", "typ", "cty"})

PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
PublicKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey | rsa.RSAPublicKey


# --- the KEK ---------------------------------------------------------------------------------


def generate_kek() -> bytes:
    """32 random bytes: a new key-encryption key."""
    return secrets.token_bytes(KEK_BYTES)


def decode_kek(b64: str) -> bytes:
    """The KEK from its base64 text (``[keys].kek``); raises ``KeyRingError`` unless 32 bytes."""
    try:
        raw = base64.b64decode(b64.strip(), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != KEK_BYTES:
        raise KeyRingError(
            "bad_kek: [keys].kek must be base64 of 32 random bytes (openssl rand -base64 32)"
        )
    return raw


def _read_kek_file(path: Path) -> bytes:
    text = path.read_text(encoding="ascii", errors="replace")
    try:
        kek = decode_kek(text)
    except KeyRingError:
        raise KeyRingError(
            f"bad_kek_file: {path} does not hold base64 of 32 bytes; restore it from a backup "
            "(without it the stored signing keys cannot be decrypted)"
        ) from None
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        log.warning("the KEK file %s is readable by others (mode %o); chmod 600 it", path, mode)
    return kek


def load_or_create_kek_file(path: Path) -> tuple[bytes, bool]:
    """The KEK kept in ``path`` (base64 text, mode 0600), created on first use: ``(kek, created)``.

    For the embedded SQLite default when ``[keys].kek`` is not configured. Creation is atomic:
    the file is written in full under a temporary name and then hard-linked into place, so two
    processes starting together end up with the same KEK and never read a half-written file.
    """
    path = Path(path)
    try:
        return _read_kek_file(path), False
    except FileNotFoundError:
        pass
    kek = generate_kek()
    data = base64.b64encode(kek) + b"\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    created = False
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o600)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
            created = True
        except FileExistsError:
            created = False
        except OSError:  # a file system without hard links: fall back to an exclusive create
            try:
                fd2 = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                created = False
            else:
                with os.fdopen(fd2, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                created = True
    finally:
        tmp.unlink(missing_ok=True)
    if not created:
        return _read_kek_file(path), False
    return kek, True


def _seal(kek: bytes, kid: str, plaintext: bytes) -> bytes:
    nonce = os.urandom(_NONCE_BYTES)
    return _KEY_FORMAT + nonce + AESGCM(kek).encrypt(nonce, plaintext, kid.encode("utf-8"))


def _open(kek: bytes, kid: str, blob: bytes) -> bytes:
    if not blob.startswith(_KEY_FORMAT) or len(blob) < len(_KEY_FORMAT) + _NONCE_BYTES + _TAG_BYTES:
        raise KeyRingError(f"corrupt_key: stored key {kid} is not in a known format")
    nonce = blob[len(_KEY_FORMAT) : len(_KEY_FORMAT) + _NONCE_BYTES]
    try:
        return AESGCM(kek).decrypt(
            nonce, blob[len(_KEY_FORMAT) + _NONCE_BYTES :], kid.encode("utf-8")
        )
    except InvalidTag:
        raise KeyRingError(
            f"kek_mismatch: the configured [keys].kek cannot decrypt key {kid}"
        ) from None


# --- keys and JWKs ---------------------------------------------------------------------------


_TO_STANDARD = bytes.maketrans(b"-_", b"+/")
_PADDING = (b"", b"", b"==", b"=")  # by len % 4
# The canonical last character by len % 4: its unused low bits (4 or 2) must be zero.
_LAST_CHARACTER = (b"", b"", frozenset(b"AQgw"), frozenset(b"AEIMQUYcgkosw048"))


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    """Strict base64url (RFC 7515 §2): ``text`` must be exactly the unpadded, canonical encoding
    of what it decodes to, else ``ValueError``.

    Rejected: ``=`` padding, ``+`` and ``/``, any other character outside the alphabet (the
    strict decoder refuses them), a length of 4n+1, and non-zero trailing bits (so one signature
    has one spelling). The same as decoding leniently, re-encoding and comparing, without the
    re-encoding (forward-auth decodes two segments of every token it has not seen).
    """
    # Searched in the str, not the bytes: CPython's bytes.__contains__ first tries its argument
    # as an int, and builds and discards a TypeError each time it is given bytes.
    if "=" in text or "+" in text or "/" in text:
        raise ValueError("not base64url")
    raw = text.encode("ascii")  # UnicodeEncodeError is a ValueError
    rest = len(raw) % 4
    if rest:
        if rest == 1 or raw[-1] not in _LAST_CHARACTER[rest]:
            raise ValueError("not canonical base64url")
        raw += _PADDING[rest]
    return binascii.a2b_base64(raw.translate(_TO_STANDARD), strict_mode=True)


def _uint(n: int, length: int | None = None) -> str:
    size = length if length is not None else max(1, (n.bit_length() + 7) // 8)
    return _b64url(n.to_bytes(size, "big"))


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


def _key_members(public_key: PublicKey) -> dict[str, str]:
    """The RFC 7638 §3.2 required members of the public JWK (RFC 8037 for OKP, RFC 7518 §6)."""
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return {"crv": "Ed25519", "kty": "OKP", "x": _b64url(raw)}
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        nums = public_key.public_numbers()
        return {"crv": "P-256", "kty": "EC", "x": _uint(nums.x, 32), "y": _uint(nums.y, 32)}
    nums_rsa = public_key.public_numbers()
    return {"e": _uint(nums_rsa.e), "kty": "RSA", "n": _uint(nums_rsa.n)}


def _thumbprint(members: Mapping[str, str]) -> str:
    """RFC 7638 §3: SHA-256 over the required members, sorted, without whitespace."""
    canonical = json.dumps(dict(sorted(members.items())), separators=(",", ":"))
    return _b64url(hashlib.sha256(canonical.encode("utf-8")).digest())


Signer = Callable[[bytes], bytes]  # signing input -> JWS signature bytes
Verifier = Callable[[bytes, bytes], bool]  # (JWS signature bytes, signing input) -> valid?

_SHA256 = hashes.SHA256()
_ECDSA_SHA256 = ec.ECDSA(_SHA256)
_PKCS1V15 = padding.PKCS1v15()


def _signer(key: PrivateKey) -> Signer:
    """RFC 7518 §3.3 (RS256), §3.4 (ES256: raw r || s, not DER), RFC 8037 §3.1 (EdDSA)."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign
    if isinstance(key, ec.EllipticCurvePrivateKey):

        def sign_es256(data: bytes) -> bytes:
            r, s = decode_dss_signature(key.sign(data, _ECDSA_SHA256))
            return r.to_bytes(_ES256_BYTES, "big") + s.to_bytes(_ES256_BYTES, "big")

        return sign_es256
    return functools.partial(key.sign, padding=_PKCS1V15, algorithm=_SHA256)


def _verifier(key: PublicKey) -> Verifier:
    """The signature check for this key's one algorithm (made once per key, not per token)."""
    if isinstance(key, ed25519.Ed25519PublicKey):

        def verify_eddsa(signature: bytes, data: bytes) -> bool:
            try:
                key.verify(signature, data)
            except InvalidSignature:
                return False
            return True

        return verify_eddsa
    if isinstance(key, ec.EllipticCurvePublicKey):

        def verify_es256(signature: bytes, data: bytes) -> bool:
            if len(signature) != 2 * _ES256_BYTES:  # not r || s: no DER re-encoding guesswork
                return False
            r = int.from_bytes(signature[:_ES256_BYTES], "big")
            s = int.from_bytes(signature[_ES256_BYTES:], "big")
            try:
                key.verify(encode_dss_signature(r, s), data, _ECDSA_SHA256)
            except InvalidSignature:
                return False
            return True

        return verify_es256

    def verify_rs256(signature: bytes, data: bytes) -> bool:
        try:  # a signature of the wrong length is an InvalidSignature too
            key.verify(signature, data, _PKCS1V15, _SHA256)
        except InvalidSignature:
            return False
        return True

    return verify_rs256


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
    jwk = {**_key_members(public_key), "kid": kid, "alg": algorithm, "use": "sig"}
    return _Key(
        kid,
        algorithm,
        private_key,
        public_key,
        jwk,
        0.0,
        None,
        None,
        sign=_signer(private_key),
        verify=_verifier(public_key),
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

_REQUIRED_CLAIMS = ("exp", "iat", "iss", "jti")  # checked in this order; null counts as absent


@dataclass(frozen=True, slots=True)
class _Header:
    """A JOSE header that passed the checks depending on it alone (see ``_check_header``)."""

    kid: str
    alg: object  # as the token says; compared with the key's algorithm on every use
    typ: str | None  # normalized by ``_norm_typ``; None if absent or not a string


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
        self._headers: dict[str, _Header] = {}
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
        der = _open(self._aead_kek, record.kid, record.private_key)
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
        members = _key_members(key.public_key)
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
        members = _key_members(private_key.public_key())
        kid = _thumbprint(members)
        key = _material(private_key, self._algorithm, kid)
        der = private_key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        record = SigningKey(
            kid=kid,
            algorithm=self._algorithm,
            private_key=_seal(self._aead_kek, kid, der),
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

    async def maybe_rotate(self) -> SigningKey | None:
        """Rotate if the newest key activated ``rotate_every`` ago (the periodic job); the new
        key if this instance rotated. Of several instances running it at once, one rotates."""
        async with self._lock:
            records = await self._store.list_signing_keys()
            state = self._state_from(records)
            now = self._clock.now()
            newest = state.newest
            untidy = sum(r.retired_at is None for r in records) > 1  # left by an old race
            if newest is None or untidy or now - newest.created_at >= self._rotate_every:
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
        if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH:
            return None
        segment = token.partition(".")[0]
        header = self._headers.get(segment)
        if header is None:
            try:
                header = _check_header(segment)
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
        """A compact JWS of ``claims`` with header ``{alg, kid, typ}``; no claim is added.

        Byte for byte what ``jwt.encode`` made (sorted header, compact JSON), without its
        per-call algorithm lookup and key preparation; the header segment is made once per
        (key, typ).
        """
        key = self._current()
        payload = dict(claims)
        for name in ("exp", "iat", "nbf"):  # as PyJWT did: datetimes become NumericDates
            if isinstance(payload.get(name), datetime):
                payload[name] = calendar.timegm(payload[name].utctimetuple())
        if "iss" in payload and not isinstance(payload["iss"], str):
            raise TypeError("Issuer (iss) must be a string.")
        signing_input = (
            _header_segment(key.algorithm, key.kid, typ)
            + "."
            + _b64url(json.dumps(payload, separators=(",", ":")).encode("utf-8"))
        )
        return signing_input + "." + _b64url(key.sign(signing_input.encode("ascii")))

    def verify(
        self,
        token: str,
        *,
        typ: str,
        audience: str | Sequence[str] | None,
        leeway: float = 0,
    ) -> dict[str, Any]:
        """The claims of a broker token, after every check; raises ``InvalidToken(reason)``.

        Checks, in order: the form (three segments, at most ``MAX_TOKEN_LENGTH``), the header
        (parsable, no key-naming or critical headers, only alg/kid/typ/cty), the ``kid`` (a key
        of this ring, not expired), the ``alg`` (exactly the key's own), the ``typ``, the
        payload and signature encodings, the signature, the payload (a JSON object), ``exp``,
        ``iat``, ``iss``, ``jti`` present, ``iss`` = the issuer, ``aud`` (one of ``audience``;
        ``None`` means the audience is not checked), ``sub`` and ``jti`` strings, then the times
        against the clock with ``leeway``: ``exp`` (``ExpiredToken``, reason ``expired``),
        ``nbf`` and ``iat`` (``not_yet_valid``).
        """
        header_segment, payload_segment, signature_segment = _split(token)
        header = self._headers.get(header_segment)
        seen = header is not None
        if header is None:
            header = _check_header(header_segment)
        # never cached: the ring's keys change on refresh and expire with the clock
        now = self._clock.now()
        key = self._state.keys.get(header.kid)
        if key is None or not key.live_at(now):
            raise InvalidToken("unknown_kid")
        if header.alg != key.algorithm:
            raise InvalidToken("alg_mismatch")
        if header.typ is None or header.typ != _expected_typ(typ):
            raise InvalidToken("typ_mismatch")

        try:
            payload = _b64url_decode(payload_segment)
            signature = _b64url_decode(signature_segment)
        except ValueError:
            raise InvalidToken("malformed") from None
        signing_input = token[: len(header_segment) + 1 + len(payload_segment)]
        if not key.verify(signature, signing_input.encode("ascii")):
            raise InvalidToken("bad_signature")
        if not seen:
            self._remember(header_segment, header)

        claims = _parse_payload(payload)
        _check_claims(claims, self._issuer, audience)
        exp = _time_claim(claims, "exp")
        iat = _time_claim(claims, "iat")
        nbf = _time_claim(claims, "nbf") if "nbf" in claims else None
        if exp <= now - leeway:
            raise ExpiredToken("expired")
        if (nbf is not None and nbf > now + leeway) or iat > now + leeway:
            raise InvalidToken("not_yet_valid")
        return claims

    def _remember(self, header_segment: str, header: _Header) -> None:
        """Cache a header, evicting the oldest entry when full.

        Only called once a token with this header has a valid signature, so what is cached was
        made by a holder of one of our keys: unauthenticated traffic can neither grow the cache
        nor push the real headers out of it.
        """
        if len(self._headers) >= _HEADER_CACHE_SIZE:
            del self._headers[next(iter(self._headers))]
        self._headers[header_segment] = header

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


@functools.lru_cache(maxsize=256)
def _header_segment(alg: str, kid: str, typ: str) -> str:
    """The encoded JOSE header ``sign`` uses: sorted keys, no whitespace, as ``jwt.encode``."""
    header = {"alg": alg, "kid": kid, "typ": typ} if typ else {"alg": alg, "kid": kid}
    return _b64url(json.dumps(header, separators=(",", ":"), sort_keys=True).encode("utf-8"))


def _split(token: str) -> tuple[str, str, str]:
    """The three segments of a compact JWS (RFC 7515 §7.1), or ``InvalidToken("malformed")``."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH:
        raise InvalidToken("malformed")
    # ``find`` rather than ``split``: it skips to each dot at memchr speed, and forward-auth
    # splits every token it has not seen.
    first = token.find(".")
    second = token.find(".", first + 1)
    if first <= 0 or second <= first + 1 or token.find(".", second + 1) != -1:
        raise InvalidToken("malformed")
    return token[:first], token[first + 1 : second], token[second + 1 :]


def _check_header(segment: str) -> _Header:
    """Parse a JOSE header and check what depends on it alone: it is a JSON object, it names no
    key and no extension (RFC 8725 §3.10), it has only the members broker tokens use, and a
    ``kid``. The rest (kid known, alg, typ) depends on the ring and the caller: see ``verify``.
    """
    try:
        header = json.loads(_b64url_decode(segment))
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise InvalidToken("malformed") from None
    if not isinstance(header, dict):
        raise InvalidToken("malformed")
    for name in _FORBIDDEN_HEADERS:
        if name in header:
            raise InvalidToken(f"forbidden_header:{name}")
    if not _ALLOWED_HEADERS.issuperset(header):
        raise InvalidToken("unexpected_header")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise InvalidToken("missing_kid")
    typ = header.get("typ")
    return _Header(
        kid=kid, alg=header.get("alg"), typ=_norm_typ(typ) if isinstance(typ, str) else None
    )


def _norm_typ(typ: str) -> str:
    """RFC 7515 §4.1.9: ``typ`` compares case-insensitively and ``application/`` may be left out."""
    typ = typ.lower()
    return typ[len("application/") :] if typ.startswith("application/") else typ


_expected_typ = functools.lru_cache(maxsize=64)(_norm_typ)  # callers pass a few constants


_JSON = json.JSONDecoder()


def _parse_payload(payload: bytes) -> dict[str, Any]:
    """The JWT claims set: a JSON object (RFC 7519 §7.2 step 10), else ``malformed``.

    Parsed as ``json.loads(payload)`` (as PyJWT does): what that accepts and refuses is unchanged.
    The common case, UTF-8 holding exactly one JSON value, skips its encoding detection and
    whitespace scans; anything else (a BOM, UTF-16, surrounding blanks, bad JSON) takes
    ``json.loads`` itself."""
    try:
        try:
            text = payload.decode("utf-8")
            claims, end = _JSON.raw_decode(text)
            if end != len(text):
                raise ValueError("trailing data")
        except ValueError:
            claims = json.loads(payload)
    except (ValueError, RecursionError):
        raise InvalidToken("malformed") from None
    if not isinstance(claims, dict):
        raise InvalidToken("malformed")
    return claims


def _check_claims(
    claims: Mapping[str, Any], issuer: str, audience: str | Sequence[str] | None
) -> None:
    """The registered claims other than the times, with the reasons (and order) PyJWT's
    validation gave: required claims, ``iss``, ``aud``, then ``sub`` and ``jti`` types."""
    for name in _REQUIRED_CLAIMS:
        if claims.get(name) is None:
            raise InvalidToken(f"missing_claim:{name}")
    iss = claims["iss"]
    if not isinstance(iss, str) or iss != issuer:
        raise InvalidToken("iss_mismatch")
    if audience is not None:
        _check_audience(claims.get("aud"), audience)
    if "sub" in claims and not isinstance(claims["sub"], str):
        raise InvalidToken("invalid_claim:sub")
    if not isinstance(claims["jti"], str):
        raise InvalidToken("invalid_claim:jti")


def _check_audience(aud: object, audience: str | Sequence[str]) -> None:
    """RFC 7519 §4.1.3: ``aud`` (a string or a list of strings) names one of ``audience``."""
    if not aud:  # absent, null, "" or []
        raise InvalidToken("missing_claim:aud")
    if type(aud) is str and type(audience) is str:  # the usual case, decided alike below
        if aud != audience:
            raise InvalidToken("aud_mismatch")
        return
    named = [aud] if isinstance(aud, str) else aud
    if not isinstance(named, list) or not all(isinstance(a, str) for a in named):
        raise InvalidToken("aud_mismatch")
    expected = (audience,) if isinstance(audience, str) else audience
    if not any(a in named for a in expected):
        raise InvalidToken("aud_mismatch")


def _time_claim(claims: Mapping[str, Any], name: str) -> float:
    value = claims[name]
    kind = type(value)  # exactly int or float (not bool) is the usual case: no isinstance
    if (
        kind is not int
        and kind is not float
        and (isinstance(value, bool) or not isinstance(value, int | float))
    ):
        raise InvalidToken(f"invalid_claim:{name}")
    try:
        if not math.isfinite(value):
            raise InvalidToken(f"invalid_claim:{name}")
    except OverflowError:  # an integer no float can hold (JSON allows 10**400)
        raise InvalidToken(f"invalid_claim:{name}") from None
    return float(value)
