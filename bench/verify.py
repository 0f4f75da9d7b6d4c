"""Micro-benchmark of ``KeyRing.verify`` and ``KeyRing.sign`` (not a test), per algorithm.

Run::

    .venv/bin/python bench/verify.py [--n 2000] [--rounds 5]

For each of EdDSA, ES256 and RS256 (RSA-3072, as the broker makes) a key ring is loaded from an
in-memory store and ``--n`` distinct tokens are signed (each with its own ``jti``: every one is
"never seen", as a new bearer token is on forward-auth's path). Each is then verified by:

* ``raw``: one ``cryptography`` signature check, with only the work any verifier must do
  (split, base64url-decode the signature, for ES256 r || s to DER): the floor;
* ``pyjwt``: ``jwt.decode`` with the same public key and the options the key ring used to pass
  (the previous implementation's cost, less its own header checks);
* ``keyring``: ``KeyRing.verify``, every check included.

Signing is compared the same way: ``raw`` (the private key's ``sign``), ``pyjwt``
(``jwt.encode`` with the same kind of key) and ``keyring`` (``KeyRing.sign``). Each figure is
the best of ``--rounds`` rounds of the mean over the ``--n`` tokens, in µs per operation; the
ratios are raw/x, i.e. the fraction of the floor's throughput reached (1.0 = no overhead).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import jwt  # noqa: E402
from cryptography.hazmat.primitives import hashes  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature  # noqa: E402

from broker.clock import FrozenClock  # noqa: E402
from broker.config import Algorithm  # noqa: E402
from broker.kek import generate_kek  # noqa: E402
from broker.keyring import KeyRing  # noqa: E402
from broker.storage.base import SigningKey  # noqa: E402

ISSUER = "https://broker.example.com"
TYP = "broker-session+jwt"
NOW = 1_700_000_000.0


class MemoryStore:
    """Just the signing-key part of the store, in memory."""

    def __init__(self) -> None:
        self.keys: dict[str, SigningKey] = {}

    async def add_signing_key(self, key: SigningKey) -> None:
        self.keys[key.kid] = key

    async def list_signing_keys(self) -> list[SigningKey]:
        return list(self.keys.values())

    async def update_signing_key(
        self, kid: str, *, retired_at: float | None, expires_at: float | None
    ) -> None:
        raise AssertionError("not used: one key")

    async def delete_signing_key(self, kid: str) -> None:
        raise AssertionError("not used: one key")


def claims(i: int) -> dict[str, Any]:
    return {
        "iss": ISSUER,
        "sub": f"user-{i % 97}",
        "aud": ISSUER,
        "iat": int(NOW),
        "nbf": int(NOW),
        "exp": int(NOW) + 900,
        "jti": f"jti-{i}-{time.perf_counter_ns()}",
        "sid": f"session-{i}",
        "groups": ["dev", "ops"],
    }


def raw_verifier(alg: Algorithm, public_key: Any) -> Callable[[str], None]:
    """The floor: split, decode the signature, check it; nothing else."""

    def b64(s: str) -> bytes:
        return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))

    if alg == "EdDSA":

        def check(token: str) -> None:
            signing_input, _, sig = token.rpartition(".")
            public_key.verify(b64(sig), signing_input.encode())

    elif alg == "ES256":
        ecdsa = ec.ECDSA(hashes.SHA256())

        def check(token: str) -> None:
            signing_input, _, sig = token.rpartition(".")
            raw = b64(sig)
            der = encode_dss_signature(
                int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
            )
            public_key.verify(der, signing_input.encode(), ecdsa)

    else:
        pkcs1, sha256 = padding.PKCS1v15(), hashes.SHA256()

        def check(token: str) -> None:
            signing_input, _, sig = token.rpartition(".")
            public_key.verify(b64(sig), signing_input.encode(), pkcs1, sha256)

    return check


def private_key_like(alg: Algorithm) -> Any:
    if alg == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=3072)


def raw_signer(alg: Algorithm, key: Any) -> Callable[[bytes], Any]:
    if alg == "EdDSA":
        return lambda data: key.sign(data)
    if alg == "ES256":
        ecdsa = ec.ECDSA(hashes.SHA256())
        return lambda data: key.sign(data, ecdsa)
    pkcs1, sha256 = padding.PKCS1v15(), hashes.SHA256()
    return lambda data: key.sign(data, pkcs1, sha256)


def best_mean_us(fn: Callable[[Any], object], items: Sequence[Any], rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter_ns()
        for item in items:
            fn(item)
        best = min(best, (time.perf_counter_ns() - start) / len(items) / 1000)
    return best


async def make_ring(alg: Algorithm) -> KeyRing:
    ring = KeyRing(
        MemoryStore(),  # type: ignore[arg-type]
        algorithm=alg,
        kek=generate_kek(),
        rotate_every=86400.0,
        max_token_lifetime=900.0,
        issuer=ISSUER,
        clock=FrozenClock(NOW + 1),
    )
    await ring.load()
    return ring


def report(title: str, times: dict[str, float]) -> str:
    raw = times["raw"]
    parts = [f"{name} {us:8.1f} µs ({raw / us:4.2f}x)" for name, us in times.items()]
    return f"  {title:<7}" + "   ".join(parts)


def bench(alg: Algorithm, n: int, rounds: int) -> None:
    ring = asyncio.run(make_ring(alg))
    public_key = jwt.PyJWK(ring.jwks()["keys"][0]).key
    payloads = [claims(i) for i in range(n)]
    ring.verify(ring.sign(payloads[0], typ=TYP), typ=TYP, audience=ISSUER)  # the header is known
    tokens = [ring.sign(c, typ=TYP) for c in payloads]  # each never verified before
    options: Any = {  # what KeyRing passed to PyJWT (times were checked against its own clock)
        "verify_exp": False,
        "verify_nbf": False,
        "verify_iat": False,
        "require": ["exp", "iat", "iss", "jti"],
    }

    def pyjwt_verify(token: str) -> object:
        return jwt.decode(
            token, public_key, algorithms=[alg], options=options, audience=ISSUER, issuer=ISSUER
        )

    verify = {
        "raw": best_mean_us(raw_verifier(alg, public_key), tokens, rounds),
        "pyjwt": best_mean_us(pyjwt_verify, tokens, rounds),
        "keyring": best_mean_us(lambda t: ring.verify(t, typ=TYP, audience=ISSUER), tokens, rounds),
    }

    key = private_key_like(alg)  # PyJWT signs with a key of the same kind
    headers = {"kid": ring.current_kid, "typ": TYP}
    signing_inputs = [t.rpartition(".")[0].encode() for t in tokens]
    sign = {
        "raw": best_mean_us(raw_signer(alg, key), signing_inputs, rounds),
        "pyjwt": best_mean_us(
            lambda c: jwt.encode(c, key, algorithm=alg, headers=headers), payloads, rounds
        ),
        "keyring": best_mean_us(lambda c: ring.sign(c, typ=TYP), payloads, rounds),
    }
    print(f"{alg}:")
    print(report("verify", verify))
    print(report("sign", sign))
    print(
        f"  keyring vs pyjwt: verify {verify['pyjwt'] / verify['keyring']:.2f}x as fast,"
        f" sign {sign['pyjwt'] / sign['keyring']:.2f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="tokens per algorithm")
    parser.add_argument("--rounds", type=int, default=5, help="best of this many rounds")
    parser.add_argument("--alg", action="append", choices=["EdDSA", "ES256", "RS256"])
    args = parser.parse_args()
    print(f"n={args.n}, best of {args.rounds} rounds; (raw/x) = share of the raw check's speed")
    for alg in args.alg or ["EdDSA", "ES256", "RS256"]:
        bench(alg, args.n, args.rounds)


if __name__ == "__main__":
    main()
