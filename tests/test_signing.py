"""The key ring: signing, verification with a specific reason per failed check, rotation, JWKS,
keys at rest under the KEK. A tiny in-memory store stands in for the SQL backend (tested by the
storage conformance suite)."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import hmac
import json
import math
import stat
import warnings
from collections.abc import Callable, Collection
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
import jwt.exceptions as jwt_errors
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from joserfc import jwt as jose_jwt
from joserfc.errors import BadSignatureError, SecurityWarning
from joserfc.jwk import KeySet

from broker import jose
from broker.clock import FrozenClock
from broker.config import Algorithm
from broker.errors import (
    ExpiredToken,
    InvalidToken,
    KeyRingError,
    RecordNotFound,
    StoreError,
    UnknownKey,
)
from broker.kek import decode_kek, generate_kek, load_or_create_kek_file
from broker.keyring import PUBLISH_AHEAD, RETIRE_LEEWAY, KeyRing
from broker.storage.base import SigningKey

ALGS: list[Algorithm] = ["EdDSA", "ES256", "RS256"]
ISSUER = "https://broker.example.com"
TYP = "broker-session+jwt"
AUD = "https://broker.example.com"
LIFETIME = 900.0
ROTATE = 7 * 86400.0
T0 = 1_700_000_000.0
KEK = bytes(range(32))

PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


class FakeStore:
    """Just the signing-key methods of ``Store``, in memory. ``calls`` counts store access."""

    def __init__(self, keys: dict[str, SigningKey] | None = None) -> None:
        self.keys: dict[str, SigningKey] = dict(keys or {})
        self.calls = 0
        self.down = False

    def _touch(self) -> None:
        self.calls += 1
        if self.down:
            raise AssertionError("the store was used on the hot path")

    async def add_signing_key(self, key: SigningKey) -> None:
        self._touch()
        assert key.kid not in self.keys
        self.keys[key.kid] = key

    async def list_signing_keys(self) -> list[SigningKey]:
        self._touch()
        return list(self.keys.values())

    async def update_signing_key(
        self, kid: str, *, retired_at: float | None, expires_at: float | None
    ) -> None:
        self._touch()
        if kid not in self.keys:
            raise RecordNotFound(kid)
        self.keys[kid] = dataclasses.replace(
            self.keys[kid], retired_at=retired_at, expires_at=expires_at
        )

    async def delete_signing_key(self, kid: str) -> None:
        self._touch()
        if kid not in self.keys:
            raise RecordNotFound(kid)
        del self.keys[kid]

    async def swap_signing_key(
        self, new: SigningKey, *, replaces: Collection[str], replaced_expire_at: float
    ) -> bool:
        self._touch()
        open_kids = {k.kid for k in self.keys.values() if k.retired_at is None}
        if open_kids != set(replaces):
            return False
        for kid in open_kids:
            self.keys[kid] = dataclasses.replace(
                self.keys[kid], retired_at=new.created_at, expires_at=replaced_expire_at
            )
        assert new.kid not in self.keys
        self.keys[new.kid] = new
        return True


def make_ring(
    store: FakeStore,
    clock: FrozenClock,
    alg: Algorithm = "EdDSA",
    *,
    kek: bytes = KEK,
) -> KeyRing:
    return KeyRing(
        store,  # type: ignore[arg-type]  # only the signing-key part of Store
        algorithm=alg,
        kek=kek,
        rotate_every=ROTATE,
        max_token_lifetime=LIFETIME,
        issuer=ISSUER,
        clock=clock,
    )


@pytest.fixture(scope="module")
def seeded() -> dict[str, dict[str, SigningKey]]:
    """One stored key per algorithm, made once (RSA-3072 generation is slow)."""

    async def seed(alg: Algorithm) -> dict[str, SigningKey]:
        store = FakeStore()
        await make_ring(store, FrozenClock(T0), alg).load()
        return store.keys

    return {alg: asyncio.run(seed(alg)) for alg in ALGS}


@dataclasses.dataclass
class Env:
    alg: Algorithm
    store: FakeStore
    clock: FrozenClock
    ring: KeyRing

    @property
    def key(self) -> PrivateKey:
        return private_key_of(self.store.keys[self.ring.current_kid])

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(self.clock.now())
        c: dict[str, Any] = {
            "iss": ISSUER,
            "sub": "user-1",
            "aud": AUD,
            "iat": now,
            "nbf": now,
            "exp": now + int(LIFETIME),
            "jti": "jti-1",
            "sid": "session-1",
        }
        c.update(overrides)
        return {k: v for k, v in c.items() if v is not None}


@pytest.fixture(params=ALGS)
async def env(request: pytest.FixtureRequest, seeded: dict[str, dict[str, SigningKey]]) -> Env:
    alg: Algorithm = request.param
    store = FakeStore(seeded[alg])
    clock = FrozenClock(T0 + 60)
    ring = make_ring(store, clock, alg)
    await ring.load()
    return Env(alg, store, clock, ring)


@pytest.fixture
async def ed_env(seeded: dict[str, dict[str, SigningKey]]) -> Env:
    store = FakeStore(seeded["EdDSA"])
    clock = FrozenClock(T0 + 60)
    ring = make_ring(store, clock, "EdDSA")
    await ring.load()
    return Env("EdDSA", store, clock, ring)


def private_key_of(record: SigningKey, kek: bytes = KEK) -> PrivateKey:
    """Open a stored key by the documented format: b"v1:" + 12-byte nonce + AES-GCM(kid as AAD)."""
    blob = record.private_key
    assert blob.startswith(b"v1:")
    der = AESGCM(kek).decrypt(blob[3:15], blob[15:], record.kid.encode())
    key = serialization.load_der_private_key(der, password=None)
    assert isinstance(
        key, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    )
    return key


def b64(data: bytes | dict[str, Any]) -> str:
    raw = json.dumps(data).encode() if isinstance(data, dict) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def compact(
    header: dict[str, Any],
    claims: dict[str, Any],
    key: PrivateKey | None,
    sign_alg: str | None = None,
) -> str:
    """A compact JWS with exactly this header, signed with ``key`` by ``sign_alg`` (default:
    the header's ``alg``)."""
    signing_input = f"{b64(header)}.{b64(claims)}"
    if key is None:
        return signing_input + "."
    alg = jwt.get_algorithm_by_name(sign_alg or header["alg"])
    return signing_input + "." + b64(alg.sign(signing_input.encode(), key))


def header_of(token: str) -> dict[str, Any]:
    return jwt.get_unverified_header(token)


# --- sign / verify ---------------------------------------------------------------------------


async def test_sign_verify_roundtrip(env: Env) -> None:
    claims = env.claims(groups=["dev", "ops"], tags={"team": "a"})
    token = env.ring.sign(claims, typ=TYP)
    assert header_of(token) == {"alg": env.alg, "kid": env.ring.current_kid, "typ": TYP}
    assert env.ring.verify(token, typ=TYP, audience=AUD) == claims


async def test_sign_adds_no_claims(ed_env: Env) -> None:
    token = ed_env.ring.sign({"a": 1}, typ=TYP)
    assert jwt.decode(token, options={"verify_signature": False}) == {"a": 1}


async def test_independent_library_verifies_against_jwks(env: Env) -> None:
    """joserfc, given only the published JWKS, accepts the token and agrees on the kid."""
    claims = env.claims()
    token = env.ring.sign(claims, typ=TYP)
    jwks = env.ring.jwks()
    with warnings.catch_warnings():
        # joserfc flags "EdDSA" as deprecated by RFC 9864 (in favour of "Ed25519")
        warnings.simplefilter("ignore", SecurityWarning)
        key_set = KeySet.import_key_set(jwks)  # type: ignore[arg-type]
        decoded = jose_jwt.decode(token, key_set, algorithms=[env.alg])
        assert decoded.claims == claims
        assert decoded.header["kid"] == env.ring.current_kid
        # the kid is the RFC 7638 thumbprint
        assert key_set.keys[0].thumbprint() == env.ring.current_kid
        other = KeySet.generate_key_set(
            {"EdDSA": "OKP", "ES256": "EC", "RS256": "RSA"}[env.alg],
            {"EdDSA": "Ed25519", "ES256": "P-256", "RS256": 2048}[env.alg],  # type: ignore[arg-type]
            count=1,
            private=False,
        )
        for k in other.keys:
            k.ensure_kid()
            k.dict_value["kid"] = env.ring.current_kid
        with pytest.raises(BadSignatureError):
            jose_jwt.decode(token, other, algorithms=[env.alg])


async def test_jwks_members(env: Env) -> None:
    [jwk] = env.ring.jwks()["keys"]
    expected = {
        "EdDSA": {"kty", "crv", "x"},
        "ES256": {"kty", "crv", "x", "y"},
        "RS256": {"kty", "n", "e"},
    }[env.alg]
    assert set(jwk) == expected | {"kid", "alg", "use"}
    assert jwk["alg"] == env.alg
    assert jwk["use"] == "sig"
    assert jwk["kid"] == env.ring.current_kid
    if env.alg == "RS256":
        n = int.from_bytes(base64.urlsafe_b64decode(jwk["n"] + "=="), "big")
        assert n.bit_length() == 3072


@pytest.mark.parametrize(
    ("audience", "token_aud"),
    [
        (AUD, AUD),
        (["https://other", AUD], AUD),
        (AUD, ["https://other", AUD]),
        (None, AUD),
        (None, None),
    ],
    ids=["str", "list-expected", "list-in-token", "unchecked", "unchecked-absent"],
)
async def test_audience_accepted(
    ed_env: Env, audience: str | list[str] | None, token_aud: str | list[str] | None
) -> None:
    token = ed_env.ring.sign(ed_env.claims(aud=token_aud), typ=TYP)
    ed_env.ring.verify(token, typ=TYP, audience=audience)


async def test_leeway(ed_env: Env) -> None:
    token = ed_env.ring.sign(ed_env.claims(), typ=TYP)
    ed_env.clock.advance(LIFETIME + 10)
    with pytest.raises(ExpiredToken):
        ed_env.ring.verify(token, typ=TYP, audience=AUD)
    assert ed_env.ring.verify(token, typ=TYP, audience=AUD, leeway=30)["jti"] == "jti-1"


async def test_typ_compared_as_a_media_type(ed_env: Env) -> None:
    token = ed_env.ring.sign(ed_env.claims(), typ="application/" + TYP.upper())
    ed_env.ring.verify(token, typ=TYP, audience=AUD)


# --- rejections ------------------------------------------------------------------------------

Forge = Callable[[Env], str]


def _signed(header: dict[str, Any] | None = None, **claims: Any) -> Forge:
    """A token signed by the ring's current key with the default header plus ``header``."""

    def forge(e: Env) -> str:
        h = {"alg": e.alg, "kid": e.ring.current_kid, "typ": TYP, **(header or {})}
        header_ = {k: v for k, v in h.items() if v is not None}
        return compact(header_, e.claims(**claims), e.key, e.alg)

    return forge


def _payload_list(e: Env) -> str:
    header = {"alg": e.alg, "kid": e.ring.current_kid, "typ": TYP}
    signing_input = f"{b64(header)}.{b64(b'[1, 2]')}"
    sig = jwt.get_algorithm_by_name(e.alg).sign(signing_input.encode(), e.key)
    return signing_input + "." + b64(sig)


def _alg_none(e: Env) -> str:
    return compact({"alg": "none", "kid": e.ring.current_kid, "typ": TYP}, e.claims(), None)


def _hs256_with_public_key(e: Env) -> str:
    """The classic confusion: HMAC keyed with the (public) verification key's PEM or JWK."""
    pem = e.key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "kid": e.ring.current_kid, "typ": TYP}
    signing_input = f"{b64(header)}.{b64(e.claims())}"
    mac = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64(mac)


def _other_alg_header(e: Env) -> str:
    """The header names another asymmetric algorithm (for RSA: PS256, the same key's family)."""
    other = {"EdDSA": "ES256", "ES256": "ES384", "RS256": "PS256"}[e.alg]
    header = {"alg": other, "kid": e.ring.current_kid, "typ": TYP}
    return compact(header, e.claims(), e.key, "PS256" if e.alg == "RS256" else e.alg)


def _tampered_payload(e: Env) -> str:
    token = e.ring.sign(e.claims(), typ=TYP)
    h, _, s = token.split(".")
    return f"{h}.{b64(e.claims(sub='admin'))}.{s}"


def _tampered_signature(e: Env) -> str:
    token = e.ring.sign(e.claims(), typ=TYP)
    h, p, s = token.split(".")
    sig = bytearray(base64.urlsafe_b64decode(s + "=="))
    sig[len(sig) // 2] ^= 1
    return f"{h}.{p}.{b64(bytes(sig))}"


def _foreign_key_same_kid(e: Env) -> str:
    key: PrivateKey
    if e.alg == "EdDSA":
        key = ed25519.Ed25519PrivateKey.generate()
    elif e.alg == "ES256":
        key = ec.generate_private_key(ec.SECP256R1())
    else:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return compact({"alg": e.alg, "kid": e.ring.current_kid, "typ": TYP}, e.claims(), key)


REJECTIONS: list[tuple[str, Forge, str, type[InvalidToken]]] = [
    ("garbage", lambda e: "not-a-token", "malformed", InvalidToken),
    ("two-parts", lambda e: "eyJhbGciOiJFZERTQSJ9.e30", "malformed", InvalidToken),
    ("header-not-json", lambda e: f"{b64(b'xx')}.{b64({})}.sig", "malformed", InvalidToken),
    ("header-a-list", lambda e: f"{b64(b'[1]')}.{b64({})}.sig", "malformed", InvalidToken),
    ("too-long", lambda e: "a" * 20000 + ".b.c", "malformed", InvalidToken),
    ("payload-not-object", _payload_list, "malformed", InvalidToken),
    ("wrong-typ", lambda e: e.ring.sign(e.claims(), typ="broker-access+jwt"), "typ_mismatch",
     InvalidToken),
    ("no-typ", _signed({"typ": None}), "typ_mismatch", InvalidToken),
    ("wrong-aud", _signed(aud="https://evil.example.com"), "aud_mismatch", InvalidToken),
    ("no-aud", _signed(aud=None), "missing_claim:aud", InvalidToken),
    ("wrong-iss", _signed(iss="https://evil.example.com"), "iss_mismatch", InvalidToken),
    ("no-iss", _signed(iss=None), "missing_claim:iss", InvalidToken),
    ("no-exp", _signed(exp=None), "missing_claim:exp", InvalidToken),
    ("no-iat", _signed(iat=None), "missing_claim:iat", InvalidToken),
    ("no-jti", _signed(jti=None), "missing_claim:jti", InvalidToken),
    ("jti-not-string", _signed(jti=5), "invalid_claim:jti", InvalidToken),
    ("exp-not-number", _signed(exp="tomorrow"), "invalid_claim:exp", InvalidToken),
    ("exp-bool", _signed(exp=True), "invalid_claim:exp", InvalidToken),
    ("expired", _signed(exp=int(T0)), "expired", ExpiredToken),
    ("expired-exactly-now", _signed(exp=int(T0) + 60), "expired", ExpiredToken),
    ("nbf-future", _signed(nbf=int(T0) + 3600), "not_yet_valid", InvalidToken),
    ("iat-future", _signed(iat=int(T0) + 3600), "not_yet_valid", InvalidToken),
    ("iat-past-the-skew", lambda e: _signed(iat=e.clock.now() + jose.CLOCK_SKEW + 0.5)(e),
     "not_yet_valid", InvalidToken),
    ("alg-none", _alg_none, "alg_mismatch", InvalidToken),
    ("hs256-public-key", _hs256_with_public_key, "alg_mismatch", InvalidToken),
    ("other-asymmetric-alg", _other_alg_header, "alg_mismatch", InvalidToken),
    ("no-alg", _signed({"alg": None}), "alg_mismatch", InvalidToken),
    ("tampered-payload", _tampered_payload, "bad_signature", InvalidToken),
    ("tampered-signature", _tampered_signature, "bad_signature", InvalidToken),
    ("foreign-key-same-kid", _foreign_key_same_kid, "bad_signature", InvalidToken),
    ("unknown-kid", _signed({"kid": "no-such-key"}), "unknown_kid", UnknownKey),
    ("no-kid", _signed({"kid": None}), "missing_kid", InvalidToken),
    ("kid-not-string", _signed({"kid": 7}), "missing_kid", InvalidToken),
    ("jku", _signed({"jku": "https://evil.example.com/jwks"}), "forbidden_header:jku",
     InvalidToken),
    ("x5u", _signed({"x5u": "https://evil.example.com/cert"}), "forbidden_header:x5u",
     InvalidToken),
    ("jwk", _signed({"jwk": {"kty": "OKP", "crv": "Ed25519", "x": "AA"}}),
     "forbidden_header:jwk", InvalidToken),
    ("x5c", _signed({"x5c": ["MIIB"]}), "forbidden_header:x5c", InvalidToken),
    ("crit", _signed({"crit": ["exp"], "exp": 1}), "forbidden_header:crit", InvalidToken),
    ("crit-b64", _signed({"crit": ["b64"], "b64": False}), "forbidden_header:crit",
     InvalidToken),
    ("unexpected-header", _signed({"zzz": 1}), "unexpected_header", InvalidToken),
]  # fmt: skip


@pytest.mark.parametrize(
    ("forge", "reason", "error"),
    [pytest.param(f, r, err, id=i) for i, f, r, err in REJECTIONS],
)
async def test_rejected_with_reason(
    env: Env, forge: Forge, reason: str, error: type[InvalidToken]
) -> None:
    token = forge(env)
    with pytest.raises(error) as info:
        env.ring.verify(token, typ=TYP, audience=AUD)
    assert type(info.value) is error
    assert info.value.reason == reason


async def test_forge_helper_makes_valid_tokens(ed_env: Env) -> None:
    """The good-path helper really produces valid tokens (the table above is meaningful)."""
    assert ed_env.ring.verify(_signed()(ed_env), typ=TYP, audience=AUD)["sub"] == "user-1"


def test_a_token_from_an_instance_whose_clock_runs_a_little_ahead_verifies(ed_env: Env) -> None:
    """``iat``/``nbf`` are to the millisecond: another instance's clock a few seconds ahead must
    not make its fresh tokens "not yet valid" here (``CLOCK_SKEW``); ``exp`` gets no allowance."""
    ahead = ed_env.clock.now() + jose.CLOCK_SKEW - 0.5
    token = _signed(iat=ahead, nbf=ahead)(ed_env)
    assert ed_env.ring.verify(token, typ=TYP, audience=AUD)["iat"] == ahead


# --- rotation and the JWKS -------------------------------------------------------------------


async def test_rotation_keeps_old_tokens_verifiable(env: Env) -> None:
    old_kid = env.ring.current_kid
    old_token = env.ring.sign(env.claims(), typ=TYP)
    env.clock.advance(100)
    rotated_at = env.clock.now()
    new = await env.ring.rotate()
    assert new.kid != old_kid
    assert new.algorithm == env.alg
    assert new.created_at == rotated_at + PUBLISH_AHEAD  # published ahead of signing
    # published at once, but the old key signs until the new one activates
    assert env.ring.current_kid == old_kid
    assert [k["kid"] for k in env.ring.jwks()["keys"]] == [old_kid, new.kid]
    env.clock.advance(PUBLISH_AHEAD - 1)
    assert env.ring.current_kid == old_kid
    env.clock.advance(1)
    assert env.ring.current_kid == new.kid
    new_token = env.ring.sign(env.claims(), typ=TYP)
    assert header_of(new_token)["kid"] == new.kid
    for token in (old_token, new_token):
        env.ring.verify(token, typ=TYP, audience=AUD)
    assert [k["kid"] for k in env.ring.jwks()["keys"]] == [new.kid, old_kid]
    retired = env.store.keys[old_kid]
    assert retired.retired_at == new.created_at
    assert retired.expires_at == new.created_at + LIFETIME + RETIRE_LEEWAY
    assert env.store.keys[new.kid].retired_at is None


async def test_expired_retired_key_leaves_jwks_and_store(ed_env: Env) -> None:
    e = ed_env
    old_kid = e.ring.current_kid
    old_token = e.ring.sign(e.claims(), typ=TYP)
    await e.ring.rotate()
    e.clock.advance(PUBLISH_AHEAD + LIFETIME + RETIRE_LEEWAY - 1)
    assert old_kid in {k["kid"] for k in e.ring.jwks()["keys"]}
    e.ring.verify(old_token, typ=TYP, audience=AUD, leeway=RETIRE_LEEWAY + PUBLISH_AHEAD)
    e.clock.advance(1)
    assert [k["kid"] for k in e.ring.jwks()["keys"]] == [e.ring.current_kid]
    with pytest.raises(InvalidToken) as info:
        e.ring.verify(old_token, typ=TYP, audience=AUD, leeway=10 * LIFETIME)
    assert info.value.reason == "unknown_kid"
    assert old_kid in e.store.keys  # purged at the next rotation
    await e.ring.rotate()
    assert old_kid not in e.store.keys
    assert len(e.store.keys) == 2


async def test_jwks_never_empty() -> None:
    store, clock = FakeStore(), FrozenClock(T0)
    ring = make_ring(store, clock)
    assert ring.jwks() == {"keys": []}  # nothing published before load
    with pytest.raises(KeyRingError) as info:
        ring.sign({}, typ=TYP)
    assert info.value.reason.startswith("not_loaded")
    await ring.load()  # empty store: a key is made, signing at once (nothing to publish ahead of)
    assert len(ring.jwks()["keys"]) == 1
    first = ring.current_kid

    store.keys.clear()  # the store lost every key: refresh makes one rather than go empty
    await ring.refresh()
    assert ring.current_kid != first
    assert len(ring.jwks()["keys"]) == 1

    # every key retired and expired (nobody rotated for a long time): load makes a new one
    kid = ring.current_kid
    await store.update_signing_key(kid, retired_at=clock.now(), expires_at=clock.now() + 1)
    clock.advance(10)
    ring2 = make_ring(store, clock)
    await ring2.load()
    assert ring2.current_kid != kid
    assert [k["kid"] for k in ring2.jwks()["keys"]] == [ring2.current_kid]


async def test_retired_only_store_gets_a_current_key(ed_env: Env) -> None:
    kid = ed_env.ring.current_kid
    now = ed_env.clock.now()
    await ed_env.store.update_signing_key(kid, retired_at=now, expires_at=now + 100)
    await ed_env.ring.refresh()
    assert ed_env.ring.current_kid != kid
    assert {k["kid"] for k in ed_env.ring.jwks()["keys"]} == {kid, ed_env.ring.current_kid}


async def test_maybe_rotate(ed_env: Env) -> None:
    e = ed_env
    first = e.ring.current_kid
    e.clock.advance(ROTATE - 120)
    assert await e.ring.maybe_rotate() is None
    assert e.ring.current_kid == first
    e.clock.advance(120)
    new = await e.ring.maybe_rotate()
    assert new is not None
    assert e.ring.current_kid == first  # published, not yet signing
    assert await e.ring.maybe_rotate() is None  # a rotation is already under way
    e.clock.advance(PUBLISH_AHEAD)
    assert e.ring.current_kid == new.kid
    assert await e.ring.maybe_rotate() is None


async def test_two_instances_converge(ed_env: Env) -> None:
    e = ed_env
    other = make_ring(e.store, e.clock)
    await other.load()
    assert other.current_kid == e.ring.current_kid

    e.clock.advance(10)
    new = await other.rotate()
    await e.ring.refresh()  # the periodic refresh, before the new key activates
    assert e.ring.jwks() == other.jwks()
    e.clock.advance(PUBLISH_AHEAD)
    # both switch at the same moment, with no store access: a pure function of keys and time
    e.store.down = True
    assert e.ring.current_kid == other.current_kid == new.kid
    token = other.sign(e.claims(), typ=TYP)
    e.ring.verify(token, typ=TYP, audience=AUD)
    assert e.ring.jwks() == other.jwks()


async def test_unknown_kid_learned_with_one_shared_rate_limited_read(ed_env: Env) -> None:
    """A key another instance made (here: a first key that signs at once, after the store lost
    every key) is learned on first sight of a token, by one store read shared by every caller,
    and a flood of unknown kids costs at most one read a second."""
    e = ed_env
    other = make_ring(e.store, e.clock)
    await other.load()
    e.store.keys.clear()
    await other.refresh()  # makes a key that signs at once
    token = other.sign(e.claims(), typ=TYP)
    with pytest.raises(InvalidToken) as info:  # verify itself never reads the store
        e.ring.verify(token, typ=TYP, audience=AUD)
    assert info.value.reason == "unknown_kid"
    assert e.ring.unknown_kid(token) == other.current_kid

    calls = e.store.calls
    await asyncio.gather(*(e.ring.learn(token) for _ in range(20)))
    assert e.store.calls == calls + 1  # coalesced
    assert e.ring.unknown_kid(token) is None
    e.ring.verify(token, typ=TYP, audience=AUD)

    forged = compact({"alg": "EdDSA", "kid": "made-up", "typ": TYP}, e.claims(), None) + "AA"
    calls = e.store.calls
    for _ in range(5):
        await e.ring.learn(forged)
    assert e.store.calls == calls  # within the second of the last read: none
    e.clock.advance(1)
    await asyncio.gather(*(e.ring.learn(forged) for _ in range(5)))
    assert e.store.calls == calls + 1
    assert await e.ring.refresh_for_kid("made-up") is False
    assert e.ring.unknown_kid("not a token") is None  # unparsable: verify refuses, no read


async def test_unknown_kid_refresh_fails_closed(
    ed_env: Env, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A store that cannot be read leaves the kid unknown (the token is refused), logged."""
    e = ed_env

    async def unreachable() -> list[SigningKey]:
        raise StoreError("store_unavailable: list signing keys: connection refused")

    monkeypatch.setattr(e.store, "list_signing_keys", unreachable)
    e.clock.advance(5)
    assert await e.ring.refresh_for_kid("someone-elses-kid") is False
    assert "could not re-read the signing keys" in caplog.text
    assert e.ring.current_kid  # the ring keeps what it had


async def test_concurrent_rotations_settle_on_one_current_key(ed_env: Env) -> None:
    e = ed_env
    other = make_ring(e.store, e.clock)
    await other.load()
    e.clock.advance(ROTATE)
    rotated = await asyncio.gather(e.ring.maybe_rotate(), other.maybe_rotate())
    assert sum(r is not None for r in rotated) == 1  # one compare-and-swap wins
    unretired = [k for k in e.store.keys.values() if k.retired_at is None]
    assert len(unretired) == 1
    await e.ring.refresh()
    await other.refresh()
    e.clock.advance(PUBLISH_AHEAD)
    assert e.ring.current_kid == other.current_kid == unretired[0].kid
    assert all(k.expires_at is not None for k in e.store.keys.values() if k.retired_at)


async def test_concurrent_explicit_rotations_both_happen_one_key_signs(ed_env: Env) -> None:
    e = ed_env
    other = make_ring(e.store, e.clock)
    await other.load()
    a, b = await asyncio.gather(e.ring.rotate(), other.rotate())
    assert a.kid != b.kid
    assert sum(k.retired_at is None for k in e.store.keys.values()) == 1


async def test_legacy_store_with_two_unretired_keys_is_tidied(ed_env: Env) -> None:
    """Two keys that both sign (left by a race of an earlier version): the next periodic check
    rotates, retiring both."""
    e = ed_env
    first = next(iter(e.store.keys.values()))
    other = make_ring(FakeStore(), e.clock)
    await other.load()
    second = next(iter(other._store.keys.values()))  # type: ignore[attr-defined]
    e.store.keys[second.kid] = dataclasses.replace(second, created_at=first.created_at + 1)
    assert await e.ring.maybe_rotate() is not None
    unretired = [k for k in e.store.keys.values() if k.retired_at is None]
    assert len(unretired) == 1
    assert unretired[0].kid not in {first.kid, second.kid}


async def test_rotate_same_instant_new_key_wins() -> None:
    store, clock = FakeStore(), FrozenClock(T0)
    ring = make_ring(store, clock)
    await ring.load()
    for _ in range(5):
        new = await ring.rotate()
    clock.advance(PUBLISH_AHEAD + 1)  # each later key ranks just after the one before
    assert ring.current_kid == new.kid
    assert sum(k.retired_at is None for k in store.keys.values()) == 1


@pytest.mark.parametrize(
    ("before", "after"),
    [("EdDSA", "ES256"), ("ES256", "RS256"), ("RS256", "EdDSA")],
    ids=["EdDSA-to-ES256", "ES256-to-RS256", "RS256-to-EdDSA"],
)
async def test_algorithm_change_in_config(
    seeded: dict[str, dict[str, SigningKey]], before: Algorithm, after: Algorithm
) -> None:
    store, clock = FakeStore(seeded[before]), FrozenClock(T0 + 60)
    old_ring = make_ring(store, clock, before)
    await old_ring.load()
    old_kid = old_ring.current_kid
    old_token = old_ring.sign(Env(before, store, clock, old_ring).claims(), typ=TYP)

    clock.advance(60)
    ring = make_ring(store, clock, after)  # restarted with the new [keys].algorithm
    await ring.load()
    assert ring.current_kid == old_kid  # the new key is published ahead
    clock.advance(PUBLISH_AHEAD)
    assert ring.current_kid != old_kid
    assert header_of(ring.sign({}, typ=TYP))["alg"] == after
    assert ring.verify(old_token, typ=TYP, audience=AUD)["jti"] == "jti-1"
    assert [(k["kid"], k["alg"]) for k in ring.jwks()["keys"]] == [
        (ring.current_kid, after),
        (old_kid, before),
    ]
    clock.advance(LIFETIME + RETIRE_LEEWAY)
    assert [k["alg"] for k in ring.jwks()["keys"]] == [after]

    # a restart with the same setting does not rotate again
    again = make_ring(store, clock, after)
    await again.load()
    assert again.current_kid == ring.current_kid


async def test_keys_parsed_once_and_hot_path_uses_no_store(
    ed_env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    e = ed_env
    parsed: list[str] = []
    original = KeyRing._parse

    def counting(self: KeyRing, record: SigningKey) -> Any:
        parsed.append(record.kid)
        return original(self, record)

    monkeypatch.setattr(KeyRing, "_parse", counting)
    other = make_ring(e.store, e.clock)
    await other.load()
    await other.rotate()
    await e.ring.refresh()
    await e.ring.refresh()
    await e.ring.refresh()
    e.clock.advance(PUBLISH_AHEAD)
    first_kid = next(k for k in e.store.keys if k != e.ring.current_kid)
    # other parsed the stored key (its own new key needs no parsing); e parsed the new key once
    assert parsed == [first_kid, e.ring.current_kid]

    e.store.down = True
    token = e.ring.sign(e.claims(), typ=TYP)
    for _ in range(3):
        e.ring.verify(token, typ=TYP, audience=AUD)
    e.ring.jwks()
    assert e.ring.current_kid


# --- keys at rest ----------------------------------------------------------------------------


async def test_wrong_kek(ed_env: Env) -> None:
    ring = make_ring(ed_env.store, ed_env.clock, kek=generate_kek())
    with pytest.raises(KeyRingError) as info:
        await ring.load()
    kid = next(iter(ed_env.store.keys))
    assert str(info.value) == f"kek_mismatch: the configured [keys].kek cannot decrypt key {kid}"
    with pytest.raises(KeyRingError, match="kek_mismatch"):
        await ring.rotate()
    assert list(ed_env.store.keys) == [kid]  # nothing was created over the unreadable key


async def test_stored_key_bound_to_its_kid(ed_env: Env) -> None:
    """The kid is the AEAD associated data: a ciphertext moved to another record fails."""
    e = ed_env
    await e.ring.rotate()
    a, b = e.store.keys.values()
    e.store.keys[b.kid] = dataclasses.replace(b, private_key=a.private_key)
    with pytest.raises(KeyRingError, match="kek_mismatch"):
        await make_ring(e.store, e.clock).load()


async def test_stored_public_jwk_must_match(ed_env: Env) -> None:
    e = ed_env
    kid, record = next(iter(e.store.keys.items()))
    forged = ed25519.Ed25519PrivateKey.generate().public_key()
    x = b64(forged.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))
    e.store.keys[kid] = dataclasses.replace(record, public_jwk={**record.public_jwk, "x": x})
    with pytest.raises(KeyRingError, match="corrupt_key"):
        await make_ring(e.store, e.clock).load()


async def test_private_key_never_stored_in_plain(env: Env) -> None:
    record = env.store.keys[env.ring.current_kid]
    key = private_key_of(record)
    forms = [
        key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    ]
    if isinstance(key, ed25519.Ed25519PrivateKey):
        forms.append(
            key.private_bytes(
                serialization.Encoding.Raw,
                serialization.PrivateFormat.Raw,
                serialization.NoEncryption(),
            )
        )
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        forms.append(key.private_numbers().private_value.to_bytes(32, "big"))
    else:
        nums = key.private_numbers()
        forms += [nums.d.to_bytes(384, "big"), nums.p.to_bytes(192, "big")]
    stored = record.private_key + json.dumps(record.public_jwk).encode() + repr(record).encode()
    for form in forms:
        assert form not in stored
        assert form[8:40] not in stored  # not even a window of it
        assert b64(form).encode()[4:40] not in stored
    assert b"PRIVATE KEY" not in stored
    assert "d" not in record.public_jwk
    assert "p" not in record.public_jwk
    assert not any("d" in k for k in env.ring.jwks()["keys"])


# --- the KEK ---------------------------------------------------------------------------------


def test_kek_file_created_0600_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "data" / "broker.kek"
    kek, created = load_or_create_kek_file(path)
    assert created is True
    assert len(kek) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert base64.b64decode(path.read_text().strip()) == kek
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind
    again, created_again = load_or_create_kek_file(path)
    assert (again, created_again) == (kek, False)


def test_kek_file_bad_content(tmp_path: Path) -> None:
    path = tmp_path / "broker.kek"
    path.write_text("not base64 of 32 bytes\n")
    with pytest.raises(KeyRingError, match="bad_kek_file"):
        load_or_create_kek_file(path)
    assert path.read_text() == "not base64 of 32 bytes\n"  # never overwritten


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        (base64.b64encode(KEK).decode(), True),
        (" " + base64.b64encode(KEK).decode() + "\n", True),
        (base64.b64encode(KEK[:16]).decode(), False),
        ("!!!not-base64!!!", False),
        ("", False),
    ],
    ids=["good", "whitespace", "short", "not-base64", "empty"],
)
def test_decode_kek(text: str, ok: bool) -> None:
    if ok:
        assert decode_kek(text) == KEK
    else:
        with pytest.raises(KeyRingError, match="bad_kek"):
            decode_kek(text)


def test_generate_kek() -> None:
    a, b = generate_kek(), generate_kek()
    assert len(a) == 32
    assert a != b


@pytest.mark.parametrize(
    "kwargs",
    [{"kek": b"short"}, {"algorithm": "HS256"}, {"issuer": ""}, {"rotate_every": 0}],
    ids=["short-kek", "hmac-alg", "no-issuer", "no-rotation"],
)
def test_bad_construction(kwargs: dict[str, Any]) -> None:
    args: dict[str, Any] = {
        "algorithm": "EdDSA",
        "kek": KEK,
        "rotate_every": ROTATE,
        "max_token_lifetime": LIFETIME,
        "issuer": ISSUER,
        "clock": FrozenClock(),
        **kwargs,
    }
    with pytest.raises(KeyRingError):
        KeyRing(FakeStore(), **args)  # type: ignore[arg-type]


# --- the lean JWS code against PyJWT -----------------------------------------------------------
# ``sign`` and ``verify`` no longer go through PyJWT; these tests hold them to what it did.

_REFERENCE_OPTIONS: Any = {
    "verify_exp": False,
    "verify_nbf": False,
    "verify_iat": False,
    "require": ["exp", "iat", "iss", "jti"],
}


def _outcome(verify: Callable[..., dict[str, Any]], *args: Any, **kwargs: Any) -> Any:
    """The claims, or the exception's type and reason."""
    try:
        return verify(*args, **kwargs)
    except InvalidToken as e:
        return (type(e).__name__, e.reason)


def _reference_verify(e: Env, token: str, audience: Any, leeway: float = 0) -> dict[str, Any]:
    """The previous implementation past its header checks: ``jwt.decode`` with the options the
    key ring passed, the same mapping of PyJWT's errors to reasons, then the clock checks."""
    public_key = jwt.PyJWK(e.ring.jwks()["keys"][0]).key
    aud = audience if audience is None or isinstance(audience, str) else list(audience)
    options: Any = {**_REFERENCE_OPTIONS, "verify_aud": audience is not None}
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            public_key,
            algorithms=[e.alg],
            options=options,
            audience=aud,
            issuer=ISSUER,
        )
    except jwt_errors.InvalidSignatureError as err:
        raise InvalidToken("bad_signature") from err
    except jwt_errors.MissingRequiredClaimError as err:
        raise InvalidToken(f"missing_claim:{err.claim}") from err
    except jwt_errors.InvalidIssuerError as err:
        raise InvalidToken("iss_mismatch") from err
    except jwt_errors.InvalidAudienceError as err:
        raise InvalidToken("aud_mismatch") from err
    except jwt_errors.InvalidSubjectError as err:
        raise InvalidToken("invalid_claim:sub") from err
    except jwt_errors.InvalidJTIError as err:
        raise InvalidToken("invalid_claim:jti") from err
    except jwt_errors.PyJWTError as err:
        raise InvalidToken("malformed") from err
    for name in ("exp", "iat", *(["nbf"] if "nbf" in claims else [])):
        value = claims[name]
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise InvalidToken(f"invalid_claim:{name}")
    now = e.clock.now()
    if claims["exp"] <= now - leeway:
        raise ExpiredToken("expired")
    ahead = now + leeway + jose.CLOCK_SKEW  # the allowance for other instances' clocks
    if claims.get("nbf", -math.inf) > ahead or claims["iat"] > ahead:
        raise InvalidToken("not_yet_valid")
    return claims


B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_DROP = object()
CLAIM_VARIANTS: list[dict[str, Any]] = [
    {},
    {"iss": 5}, {"iss": _DROP}, {"iss": None}, {"iss": ""}, {"iss": [ISSUER]},
    {"aud": ""}, {"aud": []}, {"aud": [AUD, 5]}, {"aud": {"a": AUD}}, {"aud": 0}, {"aud": True},
    {"aud": [AUD]}, {"aud": ["https://x", AUD]}, {"aud": ["https://x"]}, {"aud": None},
    {"sub": 5}, {"sub": None}, {"sub": ""}, {"sub": _DROP},
    {"jti": ""}, {"jti": 0}, {"jti": None}, {"jti": ["x"]},
    {"exp": float(T0 + 61)}, {"exp": int(T0) + 60}, {"exp": "x"}, {"exp": None},
    {"exp": float("nan")}, {"exp": float("inf")}, {"exp": 1e300},
    {"nbf": None}, {"nbf": "x"}, {"nbf": int(T0) + 61}, {"nbf": _DROP}, {"nbf": float("-inf")},
    {"iat": None}, {"iat": int(T0) + 61}, {"iat": True}, {"iat": 1.5},
    {"exp": None, "iss": None}, {"jti": 5, "sub": 5, "aud": "https://x"},
]  # fmt: skip


def _variant_claims(e: Env, overrides: dict[str, Any]) -> dict[str, Any]:
    c = e.claims()
    for k, v in overrides.items():
        if v is _DROP:
            del c[k]
        else:
            c[k] = v
    return c


@pytest.mark.parametrize("audience", [AUD, None, ["https://x", AUD], ("https://x",)])
async def test_claim_checks_agree_with_pyjwt(env: Env, audience: Any) -> None:
    """Every claim variant gets the same verdict (claims, or exception type and reason)."""
    header = {"alg": env.alg, "kid": env.ring.current_kid, "typ": TYP}
    for overrides in CLAIM_VARIANTS:
        claims = _variant_claims(env, overrides)
        token = compact(header, claims, env.key)
        for leeway in (0, 5):
            new = _outcome(env.ring.verify, token, typ=TYP, audience=audience, leeway=leeway)
            old = _outcome(_reference_verify, env, token, audience, leeway)
            assert new == old, (overrides, leeway)


def _signature_variants(token: str) -> dict[str, str]:
    """The token with other spellings of, or damage to, its signature segment."""
    h, p, s = token.split(".")
    last = B64URL.index(s[-1])
    same_bytes = B64URL[last | 1]
    raw = base64.urlsafe_b64decode(s + "==")
    return {
        "padded": f"{h}.{p}.{s}{'=' * (-len(s) % 4)}",
        "non-canonical": f"{h}.{p}.{s[:-1]}{same_bytes}",  # decodes to the same bytes
        "standard-alphabet": f"{h}.{p}.{base64.b64encode(raw).decode().rstrip('=')}",
        "junk-inside": f"{h}.{p}.{s[:10]}!{s[10:]}",
        "one-char-more": f"{h}.{p}.{s}A",
        "truncated": f"{h}.{p}.{s[:-4]}",
        "empty": f"{h}.{p}.",
        "prefixed": f"{h}.{p}.{b64(b'0D' + raw)}",  # as if DER-wrapped
        "one-byte-more": f"{h}.{p}.{b64(raw + b'x')}",
        "one-byte-less": f"{h}.{p}.{b64(raw[:-1])}",
        "non-ascii": f"{h}.{p}.{s[:-1]}é",
        "fourth-segment": f"{h}.{p}.{s}.{s}",
    }


async def test_signature_encodings_agree_with_pyjwt(env: Env) -> None:
    token = env.ring.sign(env.claims(), typ=TYP)
    variants = _signature_variants(token)
    for name, forged in variants.items():
        new = _outcome(env.ring.verify, forged, typ=TYP, audience=AUD)
        old = _outcome(_reference_verify, env, forged, AUD)
        if forged == token:
            continue  # e.g. the signature needed no padding
        if name == "padded":  # PyJWT tolerates '=' padding; RFC 7515 §2 has none: stricter now
            assert new == ("InvalidToken", "malformed")
            continue
        assert new == old, name
        assert isinstance(new, tuple), name  # each one is rejected


def _resigned(e: Env, payload_segment: str) -> str:
    h = b64({"alg": e.alg, "kid": e.ring.current_kid, "typ": TYP})
    signing_input = f"{h}.{payload_segment}"
    sig = jwt.get_algorithm_by_name(e.alg).sign(signing_input.encode(), e.key)
    return f"{signing_input}.{b64(sig)}"


async def test_payload_encodings_agree_with_pyjwt(env: Env) -> None:
    """Payload segments that are validly signed but oddly encoded."""
    claims_json = json.dumps(env.claims())
    p = b64(claims_json.encode())
    last = B64URL.index(p[-1])
    variants = {
        "junk-inside": p[:5] + "*" + p[5:],
        "plus": p[:5] + "+" + p[6:],
        "non-canonical": p[:-1] + B64URL[last | 1],
        "not-utf8": b64(b"\xff\xfe{}"),
        "utf16": b64(claims_json.encode("utf-16")),
        "not-json": b64(b"{'a': 1}"),
        "deep": b64(b"[" * 100_000 + b"]" * 100_000),
        "number": b64(b"5"),
        "duplicate-jti": b64(claims_json[:-1].encode() + b', "jti": "other"}'),
        "duplicate-nested": b64(claims_json[:-1].encode() + b', "t": {"a": 1, "a": 2}}'),
        "bom": b64(b"\xef\xbb\xbf" + claims_json.encode()),
    }  # fmt: skip
    for name, segment in variants.items():
        token = _resigned(env, segment)
        if len(token) > 16 * 1024:
            token = token[: 16 * 1024]  # the size limit; both reject
        new = _outcome(env.ring.verify, token, typ=TYP, audience=AUD)
        old = _outcome(_reference_verify, env, token, AUD)
        # refused where PyJWT parses (duplicate members: as ID tokens, a parser differential)
        if name in ("deep", "duplicate-jti", "duplicate-nested"):
            assert new == ("InvalidToken", "malformed"), name
            continue
        assert new == old, name


async def test_duplicate_members_refused_in_header_and_payload(env: Env) -> None:
    """A member named twice is refused wherever it is (one reader keeps the first, another the
    last): a parser differential. ID tokens are refused alike (``tests/idp``)."""
    e = env
    kid = e.ring.current_kid
    claims = json.dumps(e.claims())
    header = f'{{"alg":"{e.alg}","kid":"{kid}","typ":"{TYP}"'
    for h, p in [
        (header + ',"typ":"other+jwt"}', claims),
        (header + f',"kid":"{kid}"}}', claims),
        (header + "}", claims[:-1] + ', "sub": "someone-else"}'),
        (header + "}", claims[:-1] + ', "x": [{"y": 1, "y": 1}]}'),
    ]:
        signing_input = f"{b64(h.encode())}.{b64(p.encode())}"
        sig = jwt.get_algorithm_by_name(e.alg).sign(signing_input.encode(), e.key)
        with pytest.raises(InvalidToken) as info:
            e.ring.verify(f"{signing_input}.{b64(sig)}", typ=TYP, audience=AUD)
        assert info.value.reason == "malformed", (h, p)


async def test_huge_integer_time_rejected(ed_env: Env) -> None:
    """An integer beyond any float used to escape as OverflowError (only from a key holder)."""
    token = ed_env.ring.sign(ed_env.claims(exp=10**400), typ=TYP)
    with pytest.raises(InvalidToken) as info:
        ed_env.ring.verify(token, typ=TYP, audience=AUD)
    assert type(info.value) is InvalidToken
    assert info.value.reason == "invalid_claim:exp"


async def test_padded_payload_rejected(ed_env: Env) -> None:
    """Stricter than PyJWT (which accepts '=' padding, as AWS ALB sends): RFC 7515 §2 has none,
    and this broker only verifies tokens it made."""
    segment = base64.urlsafe_b64encode(json.dumps(ed_env.claims()).encode()).decode()
    assert segment.endswith("=")
    token = _resigned(ed_env, segment)
    assert jwt.decode(token, options={"verify_signature": False})["jti"] == "jti-1"
    with pytest.raises(InvalidToken) as info:
        ed_env.ring.verify(token, typ=TYP, audience=AUD)
    assert info.value.reason == "malformed"


@pytest.mark.parametrize("typ", [TYP, "application/Broker-Access+JWT", ""])
async def test_sign_as_pyjwt_did(env: Env, typ: str) -> None:
    """Same header and payload segments as ``jwt.encode``; the same token where the signature is
    deterministic (EdDSA, RS256); PyJWT and joserfc (above) verify it."""
    claims = env.claims(groups=["dev", "é"], tags={"team": "a"}, n=1.5)
    token = env.ring.sign(claims, typ=typ)
    headers = {"kid": env.ring.current_kid, "typ": typ}
    expected = jwt.encode(claims, env.key, algorithm=env.alg, headers=headers)
    if env.alg == "ES256":
        assert token.split(".")[:2] == expected.split(".")[:2]
    else:
        assert token == expected
    public_key = jwt.PyJWK(env.ring.jwks()["keys"][0]).key
    times: Any = {"verify_exp": False, "verify_iat": False, "verify_nbf": False}  # system clock
    assert jwt.decode(token, public_key, [env.alg], options=times, audience=AUD) == claims


async def test_sign_checks_as_pyjwt_did(ed_env: Env) -> None:
    with pytest.raises(TypeError):
        ed_env.ring.sign({"iss": 5}, typ=TYP)
    when = datetime.fromtimestamp(T0 + 900, tz=UTC)
    token = ed_env.ring.sign({"exp": when}, typ=TYP)
    assert jwt.decode(token, options={"verify_signature": False}) == {"exp": int(T0) + 900}


# --- the header cache --------------------------------------------------------------------------


async def test_header_cached_only_after_a_valid_signature(env: Env) -> None:
    cache = env.ring._headers
    header = {"alg": env.alg, "kid": env.ring.current_kid, "typ": TYP}
    for i in range(5):  # forged: a fresh header each time, never a valid signature
        forged = compact({**header, "cty": f"x{i}"}, env.claims(), None) + "AAAA"
        with pytest.raises(InvalidToken):
            env.ring.verify(forged, typ=TYP, audience=AUD)
    with pytest.raises(InvalidToken):
        env.ring.verify(_foreign_key_same_kid(env), typ=TYP, audience=AUD)
    assert cache == {}
    token = env.ring.sign(env.claims(), typ=TYP)
    env.ring.verify(token, typ=TYP, audience=AUD)
    assert list(cache) == [token.split(".")[0]]
    for _ in range(3):
        env.ring.verify(env.ring.sign(env.claims(), typ=TYP), typ=TYP, audience=AUD)
    assert len(cache) == 1


async def test_cached_header_still_checked_per_call(ed_env: Env) -> None:
    """What depends on the caller, the clock or the ring is never taken from the cache."""
    e = ed_env
    token = e.ring.sign(e.claims(), typ=TYP)
    e.ring.verify(token, typ=TYP, audience=AUD)
    assert e.ring._headers
    with pytest.raises(InvalidToken) as info:
        e.ring.verify(token, typ="broker-access+jwt", audience=AUD)
    assert info.value.reason == "typ_mismatch"
    for forge, reason in [
        (_tampered_signature, "bad_signature"),
        (_tampered_payload, "bad_signature"),
    ]:
        with pytest.raises(InvalidToken) as info:
            e.ring.verify(forge(e), typ=TYP, audience=AUD)
        assert info.value.reason == reason
    await e.ring.rotate()
    e.clock.advance(PUBLISH_AHEAD + LIFETIME + RETIRE_LEEWAY)
    with pytest.raises(InvalidToken) as info:
        e.ring.verify(token, typ=TYP, audience=AUD, leeway=10 * LIFETIME)
    assert info.value.reason == "unknown_kid"


async def test_header_cache_bounded(ed_env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jose, "HEADER_CACHE_SIZE", 8)
    e = ed_env
    header = {"alg": e.alg, "kid": e.ring.current_kid, "typ": TYP}
    tokens = [compact({**header, "cty": f"c{i}"}, e.claims(), e.key) for i in range(20)]
    for token in tokens:
        e.ring.verify(token, typ=TYP, audience=AUD)
    assert list(e.ring._headers) == [t.split(".")[0] for t in tokens[-8:]]  # oldest evicted
    for token in tokens:  # evicted or not, every token still verifies
        assert e.ring.verify(token, typ=TYP, audience=AUD)["jti"] == "jti-1"
