"""The JWKS cache: parsed once, refetched once on an unknown kid, coalesced, with a cooldown."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import pytest

from broker.clock import FrozenClock
from broker.errors import InvalidIdToken, ProviderUnavailable
from broker.idp import OIDCClient
from broker.idp.jwks import KeySet, parse_jwk, parse_jwks
from tests.support.fake_idp import FakeIdP, FakeKey, Override, b64url


async def _warm(client: OIDCClient, idp: FakeIdP) -> None:
    await client.verify_id_token(idp.mint(), nonce=None)
    assert idp.hits["jwks"] == 1


async def test_keys_fetched_once_for_many_tokens(idp: FakeIdP, client: OIDCClient) -> None:
    for _ in range(5):
        await client.verify_id_token(idp.mint(), nonce=None)
    assert idp.hits["jwks"] == 1
    assert idp.hits["discovery"] == 1


async def test_rotation_refetches_once_and_succeeds(
    idp: FakeIdP, client: OIDCClient, clock: FrozenClock
) -> None:
    await _warm(client, idp)
    idp.rotate()
    clock.advance(61)  # past jwks_refetch_cooldown
    t = await client.verify_id_token(idp.mint(), nonce=None)
    assert t.header["kid"] == idp.signing_key.kid
    assert idp.hits["jwks"] == 2
    await client.verify_id_token(idp.mint(), nonce=None)
    assert idp.hits["jwks"] == 2


async def test_unknown_kid_within_cooldown_is_not_refetched(
    idp: FakeIdP, client: OIDCClient, clock: FrozenClock
) -> None:
    await _warm(client, idp)
    idp.rotate()
    clock.advance(30)
    with pytest.raises(InvalidIdToken, match="unknown_kid"):
        await client.verify_id_token(idp.mint(), nonce=None)
    assert idp.hits["jwks"] == 1
    clock.advance(31)
    await client.verify_id_token(idp.mint(), nonce=None)
    assert idp.hits["jwks"] == 2


async def test_unknown_kid_flood_causes_one_fetch(
    idp: FakeIdP, client: OIDCClient, clock: FrozenClock
) -> None:
    await _warm(client, idp)
    clock.advance(61)
    idp.hits.clear()
    idp.delays["jwks"] = 0.05  # keep the refetch in flight while the flood arrives

    async def attempt() -> str:
        token = idp.mint(header={"kid": secrets.token_hex(8)})
        try:
            await client.verify_id_token(token, nonce=None)
        except InvalidIdToken as e:
            return e.reason
        return "accepted"

    reasons = await asyncio.gather(*(attempt() for _ in range(100)))
    assert set(reasons) == {"unknown_kid"}
    assert idp.hits["jwks"] == 1
    # A second wave within the cooldown costs nothing; a valid token still passes meanwhile.
    reasons = await asyncio.gather(*(attempt() for _ in range(100)))
    assert set(reasons) == {"unknown_kid"}
    assert idp.hits["jwks"] == 1
    await client.verify_id_token(idp.mint(), nonce=None)
    assert idp.hits["jwks"] == 1


async def test_cold_cache_concurrent_verifications_share_fetches(
    idp: FakeIdP, client: OIDCClient
) -> None:
    idp.delays["discovery"] = 0.05
    idp.delays["jwks"] = 0.05
    results = await asyncio.gather(
        *(client.verify_id_token(idp.mint(), nonce=None) for _ in range(50))
    )
    assert len(results) == 50
    assert idp.hits["discovery"] == 1
    assert idp.hits["jwks"] == 1


async def test_keys_refreshed_after_ttl(
    idp: FakeIdP, client: OIDCClient, clock: FrozenClock
) -> None:
    await _warm(client, idp)
    old = idp.signing_key
    idp.rotate()  # the old key is withdrawn by the provider
    clock.advance(3601)
    with pytest.raises(InvalidIdToken, match="unknown_kid"):
        await client.verify_id_token(idp.mint(key=old), nonce=None)
    assert idp.hits["jwks"] == 2


async def test_jwks_down_on_first_use(idp: FakeIdP, client: OIDCClient) -> None:
    idp.overrides["jwks"] = Override(503, b"down", "text/plain")
    with pytest.raises(ProviderUnavailable, match="jwks_status:503"):
        await client.verify_id_token(idp.mint(), nonce=None)
    del idp.overrides["jwks"]
    await client.verify_id_token(idp.mint(), nonce=None)  # retried: no cooldown without keys


async def test_jwks_down_later_keeps_cached_keys(
    idp: FakeIdP, client: OIDCClient, clock: FrozenClock
) -> None:
    await _warm(client, idp)
    idp.overrides["jwks"] = Override(500, b"{}")
    clock.advance(3601)
    await client.verify_id_token(idp.mint(), nonce=None)
    assert idp.hits["jwks"] == 2
    await client.verify_id_token(idp.mint(), nonce=None)
    assert idp.hits["jwks"] == 2  # the failed refresh waits for the cooldown


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"[]", "jwks_not_object"),
        (b"{}", "jwks_invalid"),
        (b'{"keys": {}}', "jwks_invalid"),
        (b"<html>", "jwks_not_json"),
        (b'{"keys": [], "x": NaN}', "jwks_not_json"),
    ],
    ids=["array", "no_keys", "keys_not_list", "html", "nan"],
)
async def test_bad_jwks_document(
    body: bytes, reason: str, idp: FakeIdP, client: OIDCClient
) -> None:
    idp.overrides["jwks"] = Override(200, body)
    with pytest.raises(ProviderUnavailable) as e:
        await client.verify_id_token(idp.mint(), nonce=None)
    assert e.value.reason == reason


async def test_jwks_too_large(idp: FakeIdP, client: OIDCClient) -> None:
    idp.overrides["jwks"] = Override(200, b'{"keys": [], "pad": "' + b"x" * (1 << 20) + b'"}')
    with pytest.raises(ProviderUnavailable, match="jwks_too_large"):
        await client.verify_id_token(idp.mint(), nonce=None)


async def test_encryption_key_with_the_kid_is_ignored(idp: FakeIdP, client: OIDCClient) -> None:
    idp.signing_key.use = "enc"
    with pytest.raises(InvalidIdToken, match="unknown_kid"):
        await client.verify_id_token(idp.mint(), nonce=None)


# --- parsing, without the network ------------------------------------------------------------


def _rsa_jwk(**extra: Any) -> dict[str, Any]:
    return {**FakeKey.generate("RS256", kid="k").public_jwk(), **extra}


@pytest.mark.parametrize(
    ("jwk", "usable"),
    [
        (_rsa_jwk(), True),
        (_rsa_jwk(use="enc"), False),
        (_rsa_jwk(key_ops=["encrypt"]), False),
        (_rsa_jwk(key_ops=["verify"]), True),
        (_rsa_jwk(alg="HS256"), False),
        (_rsa_jwk(alg="RSA-OAEP"), False),
        (_rsa_jwk(alg="ES256"), False),
        (_rsa_jwk(kid=5), False),
        (_rsa_jwk(n="!!!"), False),
        ({"kty": "oct", "k": b64url(b"secret"), "kid": "k"}, False),
        ({"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA", "kid": "k"}, False),
        (FakeKey.generate("ES256").public_jwk(), True),
        (FakeKey.generate("EdDSA").public_jwk(), True),
    ],
    ids=[
        "rsa",
        "use_enc",
        "key_ops_encrypt",
        "key_ops_verify",
        "alg_hs256",
        "alg_rsa_oaep",
        "alg_of_other_kty",
        "kid_not_string",
        "rsa_garbage",
        "oct",
        "ec_not_on_curve",
        "ec",
        "okp",
    ],
)
def test_parse_jwk(jwk: dict[str, Any], usable: bool) -> None:
    assert (parse_jwk(jwk) is not None) == usable


def test_small_rsa_key_is_skipped() -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa
    from jwt.algorithms import RSAAlgorithm

    small = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()
    jwk = dict(RSAAlgorithm.to_jwk(small, as_dict=True))
    assert parse_jwk(jwk) is None


def test_private_jwk_is_reduced_to_public() -> None:
    from jwt.algorithms import RSAAlgorithm

    k = FakeKey.generate("RS256")
    jwk = dict(RSAAlgorithm.to_jwk(k.private_key, as_dict=True))
    jwk.pop("key_ops")  # ["sign"] would exclude it
    parsed = parse_jwk(jwk)
    assert parsed is not None
    assert not hasattr(parsed.key, "private_numbers")


def test_lookup_by_kid_and_alg() -> None:
    rsa_key, ec_key = FakeKey.generate("RS256", kid="a"), FakeKey.generate("ES256", kid="b")
    ks: KeySet = parse_jwks({"keys": [rsa_key.public_jwk(), ec_key.public_jwk(), "junk"]})
    assert [k.kid for k in ks.keys] == ["a", "b"]
    assert ks.lookup("a", "RS256").fitting[0].kid == "a"
    assert ks.lookup("a", "ES256").known
    assert not ks.lookup("a", "ES256").fitting
    assert not ks.lookup("c", "RS256").known
    assert [k.kid for k in ks.lookup(None, "ES256").fitting] == ["b"]
    assert not ks.lookup(None, "ES384").known  # P-256 key does not fit ES384
