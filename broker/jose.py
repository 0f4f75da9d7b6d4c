"""JOSE for broker tokens: compact JWS (RFC 7515 §7.1) signed and verified with the ring's keys
(RFC 7519 claims), the JWS algorithms (RFC 7518 §3.3-3.4, RFC 8037), public JWKs and their
thumbprints (RFC 7517, RFC 7638), and the one strict base64url decoder every JOSE reader of the
broker uses (``b64url_decode``). Pure: no I/O, no clock (callers pass ``now``), no key storage
(that is ``broker.keyring``).

Compact JWS is handled here rather than by PyJWT: ``verify`` sits on forward-auth's path for
every never-seen token, where PyJWT's generic machinery (option merging, algorithm lookup, key
preparation, its own header parse) cost about as much as the signature check itself. The JOSE
header of a token that verified is remembered by its encoded form (all tokens of one key and
``typ`` share it), so the next token with that header skips its parse; the checks that depend on
the ring's keys, the clock or the caller's ``typ`` still run on every call.

JSON in a token (header and payload alike) may not repeat a member name: parsers that keep the
first and parsers that keep the last would read different claims (a parser differential), so
such a token is ``malformed``, as an ID token is (``broker.idp.id_token``).
"""

from __future__ import annotations

import base64
import binascii
import calendar
import functools
import hashlib
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

import broker.domain.json_input as json_input
from broker.errors import ExpiredToken, InvalidToken, UnknownKey

MAX_TOKEN_LENGTH = 16 * 1024
HEADER_CACHE_SIZE = 1024  # distinct verified JOSE headers remembered (keys x typs in practice)
_ES256_BYTES = 32  # RFC 7518 §3.4: an ES256 signature is r || s, each 32 bytes big-endian

# RFC 8725 §3.10 / RFC 7515 §4.1: headers that would let a token name its own key or make us
# process extensions we do not implement. Broker tokens carry exactly alg, kid and typ.
_FORBIDDEN_HEADERS = ("jku", "jwk", "x5u", "x5c", "x5t", "x5t#S256", "crit", "b64", "zip", "enc")
_ALLOWED_HEADERS = frozenset({"alg", "kid", "typ", "cty"})
_REQUIRED_CLAIMS = ("exp", "iat", "iss", "jti")  # checked in this order; null counts as absent

PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
PublicKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey | rsa.RSAPublicKey

# ``iat``/``nbf`` may lie this far in the future: another instance's clock may run ahead of
# this one's, and tokens carry ``iat`` to the millisecond (``tokens.issue_time``). ``exp`` gets
# no such allowance (a revocation or expiry must not be stretched).
CLOCK_SKEW = 5.0


# --- base64url -------------------------------------------------------------------------------

_TO_STANDARD = bytes.maketrans(b"-_", b"+/")
_PADDING = (b"", b"", b"==", b"=")  # by len % 4
# The canonical last character by len % 4: its unused low bits (4 or 2) must be zero.
_LAST_CHARACTER = (b"", b"", frozenset(b"AQgw"), frozenset(b"AEIMQUYcgkosw048"))


def b64url(data: bytes) -> str:
    """Unpadded base64url (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
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
    return b64url(n.to_bytes(size, "big"))


def key_members(public_key: PublicKey) -> dict[str, str]:
    """The RFC 7638 §3.2 required members of the public JWK (RFC 8037 for OKP, RFC 7518 §6)."""
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return {"crv": "Ed25519", "kty": "OKP", "x": b64url(raw)}
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        nums = public_key.public_numbers()
        return {"crv": "P-256", "kty": "EC", "x": _uint(nums.x, 32), "y": _uint(nums.y, 32)}
    nums_rsa = public_key.public_numbers()
    return {"e": _uint(nums_rsa.e), "kty": "RSA", "n": _uint(nums_rsa.n)}


def thumbprint(members: Mapping[str, str]) -> str:
    """RFC 7638 §3: SHA-256 over the required members, sorted, without whitespace."""
    canonical = json.dumps(dict(sorted(members.items())), separators=(",", ":"))
    return b64url(hashlib.sha256(canonical.encode("utf-8")).digest())


Signer = Callable[[bytes], bytes]  # signing input -> JWS signature bytes
Verifier = Callable[[bytes, bytes], bool]  # (JWS signature bytes, signing input) -> valid?

_SHA256 = hashes.SHA256()
_ECDSA_SHA256 = ec.ECDSA(_SHA256)
_PKCS1V15 = padding.PKCS1v15()


def signer(key: PrivateKey) -> Signer:
    """RFC 7518 §3.3 (RS256), §3.4 (ES256: raw r || s, not DER), RFC 8037 §3.1 (EdDSA)."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign
    if isinstance(key, ec.EllipticCurvePrivateKey):

        def sign_es256(data: bytes) -> bytes:
            r, s = decode_dss_signature(key.sign(data, _ECDSA_SHA256))
            return r.to_bytes(_ES256_BYTES, "big") + s.to_bytes(_ES256_BYTES, "big")

        return sign_es256
    return functools.partial(key.sign, padding=_PKCS1V15, algorithm=_SHA256)


def verifier(key: PublicKey) -> Verifier:
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


# --- compact JWS -----------------------------------------------------------------------------


class VerificationKey(Protocol):
    """What ``verify`` needs of a key of the ring."""

    @property
    def algorithm(self) -> str: ...

    @property
    def verify(self) -> Verifier: ...

    def live_at(self, now: float) -> bool: ...


@dataclass(frozen=True, slots=True)
class Header:
    """A JOSE header that passed the checks depending on it alone (see ``check_header``)."""

    kid: str
    alg: object  # as the token says; compared with the key's algorithm on every use
    typ: str | None  # normalized by ``_norm_typ``; None if absent or not a string


def encode(claims: Mapping[str, Any], *, alg: str, kid: str, typ: str, sign: Signer) -> str:
    """A compact JWS of ``claims`` with header ``{alg, kid, typ}``; no claim is added.

    Byte for byte what ``jwt.encode`` made (sorted header, compact JSON), without its
    per-call algorithm lookup and key preparation; the header segment is made once per
    (key, typ).
    """
    payload = dict(claims)
    for name in ("exp", "iat", "nbf"):  # as PyJWT did: datetimes become NumericDates
        if isinstance(payload.get(name), datetime):
            payload[name] = calendar.timegm(payload[name].utctimetuple())
    if "iss" in payload and not isinstance(payload["iss"], str):
        raise TypeError("Issuer (iss) must be a string.")
    signing_input = (
        _header_segment(alg, kid, typ)
        + "."
        + b64url(json.dumps(payload, separators=(",", ":")).encode("utf-8"))
    )
    return signing_input + "." + b64url(sign(signing_input.encode("ascii")))


def verify(
    token: str,
    *,
    keys: Mapping[str, VerificationKey],
    headers: dict[str, Header],
    typ: str,
    issuer: str,
    audience: str | Sequence[str] | None,
    now: float,
    leeway: float = 0,
) -> dict[str, Any]:
    """The claims of a broker token, after every check; raises ``InvalidToken(reason)``.

    ``keys``: the ring's keys by ``kid``; ``headers``: the caller's cache of verified headers
    (encoded segment -> parse), which this fills (see ``remember``).

    Checks, in order: the form (three segments, at most ``MAX_TOKEN_LENGTH``), the header
    (parsable, no duplicate members, no key-naming or critical headers, only alg/kid/typ/cty),
    the ``kid`` (a key of ``keys``, not expired), the ``alg`` (exactly the key's own), the
    ``typ``, the payload and signature encodings, the signature, the payload (a JSON object
    without duplicate members), ``exp``, ``iat``, ``iss``, ``jti`` present, ``iss`` =
    ``issuer``, ``aud`` (one of ``audience``; ``None`` means the audience is not checked),
    ``sub`` and ``jti`` strings, then the times against ``now`` with ``leeway``: ``exp``
    (``ExpiredToken``, reason ``expired``), ``nbf`` and ``iat`` (``not_yet_valid``, allowing
    ``CLOCK_SKEW`` between instances).
    """
    header_segment, payload_segment, signature_segment = split(token)
    header = headers.get(header_segment)
    seen = header is not None
    if header is None:
        header = check_header(header_segment)
    # never cached: the ring's keys change on refresh and expire with the clock
    key = keys.get(header.kid)
    if key is None or not key.live_at(now):
        raise UnknownKey("unknown_kid")
    if header.alg != key.algorithm:
        raise InvalidToken("alg_mismatch")
    if header.typ is None or header.typ != _expected_typ(typ):
        raise InvalidToken("typ_mismatch")

    try:
        payload = b64url_decode(payload_segment)
        signature = b64url_decode(signature_segment)
    except ValueError:
        raise InvalidToken("malformed") from None
    signing_input = token[: len(header_segment) + 1 + len(payload_segment)]
    if not key.verify(signature, signing_input.encode("ascii")):
        raise InvalidToken("bad_signature")
    if not seen:
        remember(headers, header_segment, header)

    claims = parse_payload(payload)
    _check_claims(claims, issuer, audience)
    exp = _time_claim(claims, "exp")
    iat = _time_claim(claims, "iat")
    nbf = _time_claim(claims, "nbf") if "nbf" in claims else None
    if exp <= now - leeway:
        raise ExpiredToken("expired")
    ahead = now + leeway + CLOCK_SKEW
    if (nbf is not None and nbf > ahead) or iat > ahead:
        raise InvalidToken("not_yet_valid")
    return claims


def remember(headers: dict[str, Header], segment: str, header: Header) -> None:
    """Cache a header, evicting the oldest entry when full.

    Only called once a token with this header has a valid signature, so what is cached was
    made by a holder of one of our keys: unauthenticated traffic can neither grow the cache
    nor push the real headers out of it.
    """
    if len(headers) >= HEADER_CACHE_SIZE:
        del headers[next(iter(headers))]
    headers[segment] = header


@functools.lru_cache(maxsize=256)
def _header_segment(alg: str, kid: str, typ: str) -> str:
    """The encoded JOSE header ``sign`` uses: sorted keys, no whitespace, as ``jwt.encode``."""
    header = {"alg": alg, "kid": kid, "typ": typ} if typ else {"alg": alg, "kid": kid}
    return b64url(json.dumps(header, separators=(",", ":"), sort_keys=True).encode("utf-8"))


def split(token: str, max_length: int = MAX_TOKEN_LENGTH) -> tuple[str, str, str]:
    """The three segments of a compact JWS (RFC 7515 §7.1), or ``InvalidToken("malformed")``:
    header and payload not empty, at most ``max_length`` characters in all."""
    if not isinstance(token, str) or len(token) > max_length:
        raise InvalidToken("malformed")
    # ``find`` rather than ``split``: it skips to each dot at memchr speed, and forward-auth
    # splits every token it has not seen.
    first = token.find(".")
    second = token.find(".", first + 1)
    if first <= 0 or second <= first + 1 or token.find(".", second + 1) != -1:
        raise InvalidToken("malformed")
    return token[:first], token[first + 1 : second], token[second + 1 :]


def check_header(segment: str) -> Header:
    """Parse a JOSE header and check what depends on it alone: it is a JSON object, it names no
    key and no extension (RFC 8725 §3.10), it has only the members broker tokens use, and a
    ``kid``. The rest (kid known, alg, typ) depends on the ring and the caller: see ``verify``.
    """
    try:
        header = json_input.loads_object(b64url_decode(segment), max_bytes=MAX_TOKEN_LENGTH)
    except ValueError:  # JsonInputError, and a bad base64url segment
        raise InvalidToken("malformed") from None
    for name in _FORBIDDEN_HEADERS:
        if name in header:
            raise InvalidToken(f"forbidden_header:{name}")
    if not _ALLOWED_HEADERS.issuperset(header):
        raise InvalidToken("unexpected_header")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise InvalidToken("missing_kid")
    typ = header.get("typ")
    return Header(
        kid=kid, alg=header.get("alg"), typ=_norm_typ(typ) if isinstance(typ, str) else None
    )


def _norm_typ(typ: str) -> str:
    """RFC 7515 §4.1.9: ``typ`` compares case-insensitively and ``application/`` may be left out."""
    typ = typ.lower()
    return typ[len("application/") :] if typ.startswith("application/") else typ


_expected_typ = functools.lru_cache(maxsize=64)(_norm_typ)  # callers pass a few constants


_JSON = json.JSONDecoder(object_pairs_hook=json_input.unique_object)


def parse_payload(payload: bytes) -> dict[str, Any]:
    """The JWT claims set: a JSON object (RFC 7519 §7.2 step 10) naming no member twice, in
    no object, else ``malformed``.

    Parsed as ``json.loads(payload)`` (as PyJWT does), except for repeated members: what that
    accepts and refuses is otherwise unchanged. The common case, UTF-8 holding exactly one JSON
    value, skips its encoding detection and whitespace scans; anything else (a BOM, UTF-16,
    surrounding blanks, bad JSON) takes ``json.loads`` itself."""
    try:
        try:
            text = payload.decode("utf-8")
            claims, end = _JSON.raw_decode(text)
            if end != len(text):
                raise ValueError("trailing data")
        except json_input.JsonInputError:
            raise
        except ValueError:
            claims = json.loads(payload, object_pairs_hook=json_input.unique_object)
    except (ValueError, RecursionError):  # JsonInputError (a repeated member) is a ValueError
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
