"""Key encryption: the KEK (``[keys].kek``, or a file made on first use) and the private signing
keys sealed under it at rest.

A private key is PKCS#8 DER sealed with AES-256-GCM under the KEK: a random 96-bit nonce, the
``kid`` as associated data (so a ciphertext cannot be moved to another record), stored as
``b"v1:" + nonce + ciphertext``. Imports ``errors`` only.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from broker.errors import KeyRingError

log = logging.getLogger(__name__)

KEK_BYTES = 32
_KEY_FORMAT = b"v1:"
_NONCE_BYTES = 12
_TAG_BYTES = 16


def generate_kek() -> bytes:
    """32 random bytes: a new key-encryption key."""
    return secrets.token_bytes(KEK_BYTES)


def decode_kek(b64: str) -> bytes:
    """The KEK from its base64 text (``[keys].kek``); raises ``KeyRingError`` unless 32 bytes."""
    # Standard padded base64, not JOSE's base64url: the text ``openssl rand -base64 32``
    # prints, as configured by a person (config.py checks it alike).
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


def seal(kek: bytes, kid: str, plaintext: bytes) -> bytes:
    """``plaintext`` (a private key's DER) encrypted under ``kek``, bound to ``kid``."""
    nonce = os.urandom(_NONCE_BYTES)
    return _KEY_FORMAT + nonce + AESGCM(kek).encrypt(nonce, plaintext, kid.encode("utf-8"))


def unseal(kek: bytes, kid: str, blob: bytes) -> bytes:
    """What ``seal`` sealed; ``KeyRingError`` if ``blob`` is not that (another KEK or kid)."""
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
