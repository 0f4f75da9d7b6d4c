"""The provider's signing keys (RFC 7517 JWK Set), parsed once and looked up by ``kid``.

A ``JwksCache`` fetches the set from discovery's ``jwks_uri`` and turns every usable key into a
``VerificationKey`` holding a ready ``cryptography`` public key, so verifying a token never parses
a key. When a token names a ``kid`` the set does not hold (the provider rotated), the set is
fetched again, once: concurrent misses share one request, and after any fetch the next one waits
for ``jwks_refetch_cooldown``, so a flood of made-up ``kid``s costs one request per cooldown.

Keys are skipped (never raise) when: ``use`` is set and is not ``"sig"``; ``key_ops`` lacks
``"verify"``; ``kty`` is not RSA, EC or OKP (symmetric ``oct`` keys in particular); ``alg`` is set
and is not an allowed asymmetric algorithm; an RSA key is shorter than 2048 bits; or the key does
not parse.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm, get_default_algorithms

from broker.clock import Clock
from broker.errors import InvalidIdToken, ProviderUnavailable
from broker.idp.cache import Refreshing
from broker.idp.http import get_json_object

log = logging.getLogger(__name__)

ASYMMETRIC_ALGS: tuple[str, ...] = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
)
"""Every algorithm an ID token may be signed with; never ``none``, never HMAC."""

_ALG_KTY = {alg: "RSA" for alg in ASYMMETRIC_ALGS if alg[:2] in ("RS", "PS")} | {
    "ES256": "EC",
    "ES384": "EC",
    "ES512": "EC",
    "EdDSA": "OKP",
}
_EC_CURVE = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}
_OKP_CURVES = ("Ed25519", "Ed448")
_ALGORITHMS = {alg: impl for alg, impl in get_default_algorithms().items() if alg in _ALG_KTY}
_PARSERS = {"RSA": RSAAlgorithm.from_jwk, "EC": ECAlgorithm.from_jwk, "OKP": OKPAlgorithm.from_jwk}
MIN_RSA_BITS = 2048


@dataclass(frozen=True)
class VerificationKey:
    kid: str | None
    kty: str
    alg: str | None  # the JWK's own ``alg``, when it names one
    crv: str | None
    key: Any  # a cryptography public key object

    def fits(self, alg: str) -> bool:
        """May a token with header ``alg`` be verified with this key? (RFC 7517 §4.4, RFC 7518)."""
        if self.alg is not None and self.alg != alg:
            return False
        if _ALG_KTY.get(alg) != self.kty:
            return False
        if self.kty == "EC":
            return _EC_CURVE[alg] == self.crv
        if self.kty == "OKP":
            return self.crv in _OKP_CURVES
        return True

    def verify(self, alg: str, signing_input: bytes, signature: bytes) -> bool:
        if not self.fits(alg):
            return False
        try:
            return _ALGORITHMS[alg].verify(signing_input, self.key, signature)
        except (ValueError, TypeError):
            return False


@dataclass(frozen=True)
class KeyLookup:
    known: bool  # the kid is in the set (for a token without kid: some key fits the alg)
    fitting: tuple[VerificationKey, ...]


@dataclass(frozen=True)
class KeySet:
    keys: tuple[VerificationKey, ...]

    def lookup(self, kid: str | None, alg: str) -> KeyLookup:
        if kid is None:
            fitting = tuple(k for k in self.keys if k.fits(alg))
            return KeyLookup(bool(fitting), fitting)
        named = [k for k in self.keys if k.kid == kid]
        return KeyLookup(bool(named), tuple(k for k in named if k.fits(alg)))


def parse_jwk(jwk: Mapping[str, Any]) -> VerificationKey | None:
    """One JWK -> a ``VerificationKey``, or None when it is not usable for ID tokens."""
    kty, use, alg, kid, crv = (jwk.get(k) for k in ("kty", "use", "alg", "kid", "crv"))
    ops = jwk.get("key_ops")
    if use is not None and use != "sig":
        return None
    if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
        return None
    if not isinstance(kty, str) or kty not in _PARSERS:
        return None
    if alg is not None and (not isinstance(alg, str) or _ALG_KTY.get(alg) != kty):
        return None
    if kid is not None and not isinstance(kid, str):
        return None
    try:
        key = _PARSERS[kty](dict(jwk))
    except (jwt.InvalidKeyError, ValueError, TypeError, KeyError):
        log.debug("skipping a JWK that does not parse (kid=%r)", kid)
        return None
    if hasattr(key, "public_key"):  # a provider that published a private key: use its public half
        key = key.public_key()
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
        log.warning("skipping RSA key %r of %d bits", kid, key.key_size)
        return None
    return VerificationKey(
        kid=kid, kty=kty, alg=alg, crv=crv if isinstance(crv, str) else None, key=key
    )


def parse_jwks(doc: Mapping[str, Any]) -> KeySet:
    keys = doc.get("keys")
    if not isinstance(keys, list):
        raise ProviderUnavailable("jwks_invalid")
    parsed = (parse_jwk(k) for k in keys if isinstance(k, dict))
    return KeySet(tuple(k for k in parsed if k is not None))


class JwksCache:
    """The key set at one ``jwks_uri``, kept current as described in the module docstring."""

    def __init__(
        self,
        uri: str,
        http: aiohttp.ClientSession,
        *,
        clock: Clock,
        timeout: float,
        ttl: float,
        cooldown: float,
        name: str,
    ) -> None:
        self.uri = uri
        self._http = http
        self._timeout = timeout
        self._keys = Refreshing(
            self._fetch, clock=clock, ttl=ttl, cooldown=cooldown, name=f"{name} jwks"
        )

    async def _fetch(self) -> KeySet:
        doc = await get_json_object(self._http, self.uri, what="jwks", time_limit=self._timeout)
        keys = parse_jwks(doc)
        log.info("fetched %d signing keys from %s", len(keys.keys), self.uri)
        return keys

    async def keys_for(self, kid: str | None, alg: str) -> tuple[VerificationKey, ...]:
        """The keys that may verify a token with this header ``kid`` and ``alg``.

        Raises ``InvalidIdToken``: ``unknown_kid`` (not in the set, even after a refetch),
        ``key_alg_mismatch`` (the kid's key is of another type or pinned to another alg),
        ``ambiguous_key`` (no kid in the token and more than one key fits).
        """
        keyset = await self._keys.get()
        found = keyset.lookup(kid, alg)
        if not found.known:
            latest = self._keys.value  # another request may have refetched meanwhile
            if latest is not None and latest is not keyset:
                keyset, found = latest, latest.lookup(kid, alg)
        if not found.known and self._keys.may_attempt():
            keyset = await self._keys.refresh()
            found = keyset.lookup(kid, alg)
        if not found.known:
            raise InvalidIdToken("unknown_kid")
        if not found.fitting:
            raise InvalidIdToken("key_alg_mismatch")
        if kid is None and len(found.fitting) > 1:
            raise InvalidIdToken("ambiguous_key")
        return found.fitting
