"""ID token validation (OIDC Core §3.1.3.7) against a fake provider over real HTTP.

The table lists forged and broken tokens, each with the exact ``InvalidIdToken`` reason.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from broker.config import ProviderConfig
from broker.errors import ExpiredIdToken, InvalidIdToken
from broker.idp import OIDCClient
from broker.idp.client import accepted_issuers
from broker.idp.id_token import ClaimRules, check_claims, parse_jws
from tests.support.fake_idp import FakeIdP, FakeKey, b64url, encode_jws, tamper_signature

NOW = 1_700_000_000  # FrozenClock's start
WEEK = 7 * 86400

StartIdP = Callable[..., Any]
MakeClient = Callable[..., OIDCClient]


@dataclass(frozen=True)
class Bad:
    id: str
    make: Callable[[FakeIdP], str]
    reason: str
    verify: Mapping[str, Any] = field(default_factory=dict)  # verify_id_token keyword arguments


def _advertise(idp: FakeIdP, *algs: str) -> None:
    idp.metadata_overrides["id_token_signing_alg_values_supported"] = list(algs)


def _kid_of_rsa_signed_by_ec(idp: FakeIdP) -> str:
    _advertise(idp, "RS256", "ES256")
    ec = FakeKey.generate("ES256")
    return idp.mint(header={"kid": idp.signing_key.kid}, key=ec)


def _hs256_advertised(idp: FakeIdP) -> str:
    _advertise(idp, "RS256", "HS256")
    return idp.mint(alg="HS256", hmac_secret=idp.signing_key.public_pem())


def _ps256_with_rs256_pinned_jwk(idp: FakeIdP) -> str:
    _advertise(idp, "RS256", "PS256")
    return idp.mint(alg="PS256")


def _no_kid_two_keys(idp: FakeIdP) -> str:
    idp.rotate(keep_old=True)
    return idp.mint(omit=["kid"])


def _non_canonical_signature(idp: FakeIdP) -> str:
    """The same signature bytes, spelt with non-zero unused bits in its last character (a
    lenient decoder reads it as the valid signature; RFC 7515 §2 base64url has one spelling)."""
    token = idp.mint()
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    assert len(token.rsplit(".", 1)[1]) % 4 in (2, 3)  # RS256-3072/2048: unused bits exist
    return token[:-1] + alphabet[alphabet.index(token[-1]) | 1]


def _raw(header: bytes, payload: bytes) -> Callable[[FakeIdP], str]:
    return lambda idp: encode_jws(header, payload, alg="RS256", key=idp.signing_key)


BAD: list[Bad] = [
    # --- algorithms and signatures
    Bad("alg_none", lambda i: i.mint(alg="none"), "alg_not_allowed"),
    Bad("alg_none_no_kid", lambda i: i.mint(alg="none", omit=["kid"]), "alg_not_allowed"),
    Bad(
        "hs256_with_public_key_pem",
        lambda i: i.mint(alg="HS256", hmac_secret=i.signing_key.public_pem()),
        "alg_not_allowed",
    ),
    Bad("hs256_advertised_still_refused", _hs256_advertised, "alg_not_allowed"),
    Bad("alg_not_advertised", lambda i: i.mint(alg="PS256"), "alg_not_allowed"),
    Bad("alg_missing", lambda i: i.mint(omit=["alg"]), "alg_not_allowed"),
    Bad("bad_signature", lambda i: tamper_signature(i.mint()), "bad_signature"),
    Bad(
        "other_key_same_kid",
        lambda i: i.mint(key=FakeKey.generate("RS256", kid=i.signing_key.kid)),
        "bad_signature",
    ),
    Bad("empty_signature", lambda i: i.mint().rsplit(".", 1)[0] + ".", "bad_signature"),
    Bad("kid_key_of_other_type", _kid_of_rsa_signed_by_ec, "key_alg_mismatch"),
    Bad("jwk_alg_pinned_to_other_alg", _ps256_with_rs256_pinned_jwk, "key_alg_mismatch"),
    Bad("unknown_kid", lambda i: i.mint(header={"kid": "no-such-key"}), "unknown_kid"),
    Bad("no_kid_two_keys", _no_kid_two_keys, "ambiguous_key"),
    # --- headers
    Bad("jku", lambda i: i.mint(header={"jku": i.url("/jwks")}), "forbidden_header:jku"),
    Bad("x5u", lambda i: i.mint(header={"x5u": i.url("/x5u")}), "forbidden_header:x5u"),
    Bad(
        "jwk",
        lambda i: i.mint(header={"jwk": i.signing_key.public_jwk()}),
        "forbidden_header:jwk",
    ),
    Bad("x5c", lambda i: i.mint(header={"x5c": ["MIIB"]}), "forbidden_header:x5c"),
    Bad(
        "crit_unknown",
        lambda i: i.mint(header={"crit": ["urn:example:ext"], "urn:example:ext": 1}),
        "unknown_crit",
    ),
    Bad("crit_b64", lambda i: i.mint(header={"crit": ["b64"], "b64": False}), "unknown_crit"),
    Bad("typ_at_jwt", lambda i: i.mint(header={"typ": "at+jwt"}), "typ_mismatch"),
    Bad(
        "typ_broker_session",
        lambda i: i.mint(header={"typ": "broker-session+jwt"}),
        "typ_mismatch",
    ),
    Bad("typ_not_string", lambda i: i.mint(header={"typ": 1}), "typ_mismatch"),
    Bad("kid_not_string", lambda i: i.mint(header={"kid": 7}), "malformed"),
    # --- malformed
    Bad("not_a_jwt", lambda i: "not-a-jwt", "malformed"),
    Bad("two_parts", lambda i: ".".join(i.mint().split(".")[:2]), "malformed"),
    Bad("four_parts", lambda i: i.mint() + ".AAAA", "malformed"),
    Bad("padding", lambda i: i.mint().replace(".", "=.", 1), "malformed"),
    Bad("bad_base64", lambda i: "*" + i.mint(), "malformed"),
    Bad("non_canonical_base64", _non_canonical_signature, "malformed"),
    Bad("header_not_json", _raw(b"{alg", b"{}"), "malformed"),
    Bad("payload_array", _raw(b'{"alg":"RS256"}', b"[1]"), "malformed"),
    Bad("payload_not_utf8", _raw(b'{"alg":"RS256"}', b"\xff\xfe"), "malformed"),
    # nesting past json_input.MAX_DEPTH is refused before the (recursive) decoder sees it
    Bad(
        "header_nested",
        _raw(b'{"alg":"RS256","x":' + b"[" * 4000 + b"]" * 4000 + b"}", b"{}"),
        "too_deep",
    ),
    Bad("payload_nested", lambda i: i.mint({"x": json.loads("[" * 40 + "]" * 40)}), "too_deep"),
    Bad("payload_brackets_unbalanced", _raw(b'{"alg":"RS256"}', b"[" * 50_000), "malformed"),
    Bad(
        "duplicate_claim",
        lambda i: encode_jws(
            {"alg": "RS256", "kid": i.signing_key.kid},
            f'{{"iss":"{i.issuer}","sub":"a","sub":"b"}}'.encode(),
            alg="RS256",
            key=i.signing_key,
        ),
        "malformed",
    ),
    Bad("exp_string", lambda i: i.mint({"exp": str(NOW + 300)}), "malformed"),
    Bad("exp_bool", lambda i: i.mint({"exp": True}), "malformed"),
    Bad("too_long", lambda i: i.mint({"pad": "x" * 70_000}), "malformed"),
    # --- iss
    Bad("wrong_iss", lambda i: i.mint({"iss": "https://evil.example"}), "iss_mismatch"),
    Bad("missing_iss", lambda i: i.mint(omit=["iss"]), "iss_mismatch"),
    Bad("iss_prefix", lambda i: i.mint({"iss": i.issuer[:-1]}), "iss_mismatch"),
    Bad("iss_trailing_slash", lambda i: i.mint({"iss": i.issuer + "/"}), "iss_mismatch"),
    Bad("iss_other_case", lambda i: i.mint({"iss": i.issuer.upper()}), "iss_mismatch"),
    Bad("iss_list", lambda i: i.mint({"iss": [i.issuer]}), "iss_mismatch"),
    Bad(
        "google_alias_not_for_oidc_type",
        lambda i: i.mint({"iss": i.issuer.split("://", 1)[1]}),
        "iss_mismatch",
    ),
    # --- sub
    Bad("missing_sub", lambda i: i.mint(omit=["sub"]), "missing_sub"),
    Bad("empty_sub", lambda i: i.mint({"sub": ""}), "missing_sub"),
    Bad("sub_number", lambda i: i.mint({"sub": 42}), "missing_sub"),
    # --- aud / azp
    Bad("wrong_aud", lambda i: i.mint({"aud": "someone-else"}), "aud_mismatch"),
    Bad("missing_aud", lambda i: i.mint(omit=["aud"]), "aud_mismatch"),
    Bad("aud_list_without_us", lambda i: i.mint({"aud": ["a", "b"]}), "aud_mismatch"),
    Bad("aud_number", lambda i: i.mint({"aud": 5}), "aud_mismatch"),
    Bad(
        "multiple_aud_without_azp",
        lambda i: i.mint({"aud": [i.client_id, "other"]}),
        "azp_mismatch",
    ),
    Bad(
        "multiple_aud_other_azp",
        lambda i: i.mint({"aud": [i.client_id, "other"], "azp": "other"}),
        "azp_mismatch",
    ),
    Bad("single_aud_other_azp", lambda i: i.mint({"azp": "other"}), "azp_mismatch"),
    Bad(
        "direct_wrong_audience",
        lambda i: i.mint({"aud": i.client_id}),
        "aud_mismatch",
        {"audiences": ["sts.example"]},
    ),
    # --- time
    Bad("expired", lambda i: i.mint({"exp": NOW - 3600, "iat": NOW - 7200}), "expired"),
    Bad("expired_beyond_leeway", lambda i: i.mint({"exp": NOW - 61}), "expired"),
    Bad("missing_exp", lambda i: i.mint(omit=["exp"]), "missing_exp"),
    Bad("nbf_future", lambda i: i.mint({"nbf": NOW + 3600}), "not_yet_valid"),
    Bad("missing_iat", lambda i: i.mint(omit=["iat"]), "missing_iat"),
    Bad("iat_future", lambda i: i.mint({"iat": NOW + 3600}), "iat_in_future"),
    Bad(
        "iat_week_old",
        lambda i: i.mint({"iat": NOW - WEEK}),
        "iat_too_old",
        {"max_age": 3600},
    ),
    # --- nonce
    Bad("missing_nonce", lambda i: i.mint(), "nonce_missing", {"nonce": "n-123"}),
    Bad("wrong_nonce", lambda i: i.mint({"nonce": "n-999"}), "nonce_mismatch", {"nonce": "n-123"}),
    Bad("nonce_number", lambda i: i.mint({"nonce": 123}), "nonce_mismatch", {"nonce": "123"}),
]


@pytest.mark.parametrize("case", BAD, ids=[c.id for c in BAD])
async def test_bad_id_token_is_refused(case: Bad, idp: FakeIdP, client: OIDCClient) -> None:
    token = case.make(idp)
    kwargs: dict[str, Any] = {"nonce": None, **case.verify}
    with pytest.raises(InvalidIdToken) as e:
        await client.verify_id_token(token, **kwargs)
    assert e.value.reason == case.reason
    assert isinstance(e.value, ExpiredIdToken) == (case.reason == "expired")  # typed, for callers


@pytest.mark.parametrize("alg", ["RS256", "RS512", "PS256", "ES256", "ES384", "ES512", "EdDSA"])
async def test_valid_token_passes(alg: str, start_idp: StartIdP, make_client: MakeClient) -> None:
    idp: FakeIdP = await start_idp(alg=alg)
    client = make_client(idp)
    token = idp.mint({"nonce": "n-1", "email": "a@example.com"})
    t = await client.verify_id_token(token, nonce="n-1", max_age=300)
    assert t.subject == "user-1"
    assert t.issuer == idp.issuer
    assert t.audience == (idp.client_id,)
    assert t.claims["email"] == "a@example.com"
    assert t.nonce == "n-1"
    assert t.header["alg"] == alg
    assert t.expires_at == NOW + 300
    assert t.raw == token
    assert token not in repr(t)


GOOD: list[tuple[str, Callable[[FakeIdP], str], Mapping[str, Any]]] = [
    ("no_typ", lambda i: i.mint(omit=["typ"]), {}),
    ("typ_upper", lambda i: i.mint(header={"typ": "JWT"}), {}),
    ("typ_application_jwt", lambda i: i.mint(header={"typ": "application/jwt"}), {}),
    ("no_kid_one_key", lambda i: i.mint(omit=["kid"]), {}),
    ("x5t_is_fine", lambda i: i.mint(header={"x5t": "abc"}), {}),
    ("expired_within_leeway", lambda i: i.mint({"exp": NOW - 30}), {}),
    ("nbf_within_leeway", lambda i: i.mint({"nbf": NOW + 30}), {}),
    ("iat_within_leeway", lambda i: i.mint({"iat": NOW + 30}), {}),
    ("aud_list", lambda i: i.mint({"aud": [i.client_id]}), {}),
    (
        "multiple_aud_with_azp",
        lambda i: i.mint({"aud": [i.client_id, "other"], "azp": i.client_id}),
        {},
    ),
    ("single_aud_azp_us", lambda i: i.mint({"azp": i.client_id}), {}),
    ("direct_audience", lambda i: i.mint({"aud": "sts.example"}), {"audiences": ["sts.example"]}),
    (
        "direct_multiple_aud_no_azp",
        lambda i: i.mint({"aud": ["sts.example", "x"]}),
        {"audiences": ["sts.example"]},
    ),
    ("nonce_not_checked_when_none", lambda i: i.mint({"nonce": "whatever"}), {}),
    ("float_times", lambda i: i.mint({"iat": NOW - 0.5, "exp": NOW + 10.5}), {}),
]


@pytest.mark.parametrize(("make", "kwargs"), [g[1:] for g in GOOD], ids=[g[0] for g in GOOD])
async def test_acceptable_variants_pass(
    make: Callable[[FakeIdP], str],
    kwargs: Mapping[str, Any],
    idp: FakeIdP,
    client: OIDCClient,
) -> None:
    t = await client.verify_id_token(make(idp), **{"nonce": None, **kwargs})
    assert t.subject == "user-1"


async def test_jwk_without_alg_or_use(idp: FakeIdP, client: OIDCClient) -> None:
    idp.signing_key.publish_alg = False
    idp.signing_key.use = None
    assert (await client.verify_id_token(idp.mint(), nonce=None)).subject == "user-1"


async def test_malformed_token_needs_no_discovery(idp: FakeIdP, client: OIDCClient) -> None:
    with pytest.raises(InvalidIdToken, match="malformed"):
        await client.verify_id_token("a.b", nonce=None)
    assert idp.hits["discovery"] == 0


# --- Google's scheme-less issuer alias, checked without the network ------------------------


def _google(type_: str) -> ProviderConfig:
    return ProviderConfig(
        name="google",
        type=type_,  # type: ignore[arg-type]
        issuer="https://accounts.google.com",
        client_id="cid",
    )


def _claims_token(claims: Mapping[str, Any]) -> str:
    # check_claims runs after the signature check; the signature is irrelevant here.
    header = b64url(json.dumps({"alg": "RS256"}).encode())
    return f"{header}.{b64url(json.dumps(claims).encode())}.c2ln"


@pytest.mark.parametrize(
    ("type_", "iss", "ok"),
    [
        ("google", "https://accounts.google.com", True),
        ("google", "accounts.google.com", True),
        ("google", "http://accounts.google.com", False),
        ("oidc", "accounts.google.com", False),
        ("oidc", "https://accounts.google.com", True),
    ],
    ids=["google_https", "google_alias", "google_http", "oidc_no_alias", "oidc_exact"],
)
def test_google_issuer_alias(type_: str, iss: str, ok: bool) -> None:
    raw = _claims_token({"iss": iss, "sub": "1", "aud": "cid", "iat": NOW, "exp": NOW + 60})
    rules = ClaimRules(
        issuers=accepted_issuers(_google(type_)),
        client_id="cid",
        audiences=None,
        nonce=None,
        max_age=None,
        leeway=0,
        now=NOW,
    )
    if ok:
        assert check_claims(parse_jws(raw), raw, rules).issuer == "https://accounts.google.com"
    else:
        with pytest.raises(InvalidIdToken, match="iss_mismatch"):
            check_claims(parse_jws(raw), raw, rules)


def _half_hash(value: str) -> str:
    """OIDC Core §3.1.3.6: base64url of the left half of SHA-256 (the RS256 hash)."""
    return b64url(hashlib.sha256(value.encode()).digest()[:16])


LOGIN_RULES = ClaimRules(
    issuers=("https://idp.example",),
    client_id="cid",
    audiences=None,
    nonce="n-1",
    max_age=None,
    leeway=0,
    now=NOW,
)
BASE = {
    "iss": "https://idp.example",
    "sub": "1",
    "aud": "cid",
    "iat": NOW,
    "exp": NOW + 60,
    "nonce": "n-1",
}


@pytest.mark.parametrize(
    ("extra", "access_token", "code", "reason"),
    [
        ({"at_hash": _half_hash("at-1")}, "at-1", None, None),
        ({"at_hash": _half_hash("at-1")}, "another", None, "at_hash_mismatch"),
        ({"at_hash": "not-a-hash"}, "at-1", None, "at_hash_mismatch"),
        ({}, "at-1", None, None),  # optional in the code flow (§3.1.3.6)
        ({"c_hash": _half_hash("code-1")}, None, "code-1", None),
        ({"c_hash": _half_hash("code-1")}, None, "code-2", "c_hash_mismatch"),
        ({"azp": "someone-else"}, None, None, "azp_mismatch"),
        ({"aud": ["cid", "other"]}, None, None, "azp_mismatch"),  # several audiences need azp
        ({"aud": ["cid", "other"], "azp": "cid"}, None, None, None),
        ({"nonce": "n-2"}, None, None, "nonce_mismatch"),
        ({"sub": ""}, None, None, "missing_sub"),
        ({"nbf": NOW + 60}, None, None, "not_yet_valid"),
        ({"iat": NOW + 60}, None, None, "iat_in_future"),
        ({"exp": NOW}, None, None, "expired"),
        ({"exp": "soon"}, None, None, "malformed"),
        ({"amr": "pwd"}, None, None, "malformed"),
    ],
    ids=[
        "at_hash_ok",
        "at_hash_other_token",
        "at_hash_garbage",
        "at_hash_absent",
        "c_hash_ok",
        "c_hash_other_code",
        "azp_other",
        "two_audiences_no_azp",
        "two_audiences_azp_us",
        "nonce_other",
        "sub_empty",
        "nbf_future",
        "iat_future",
        "expired",
        "exp_string",
        "amr_not_list",
    ],
)
def test_claims_rules_of_oidc_core(
    extra: dict[str, Any], access_token: str | None, code: str | None, reason: str | None
) -> None:
    """§3.1.3.7 and §3.1.3.6/§3.3.2.11 (at_hash, c_hash) as authlib's CodeIDToken checks them,
    with our reasons."""
    raw = _claims_token({**BASE, **extra})
    if reason is None:
        token = check_claims(parse_jws(raw), raw, LOGIN_RULES, access_token=access_token, code=code)
        assert token.subject == "1"
    else:
        with pytest.raises(InvalidIdToken) as e:
            check_claims(parse_jws(raw), raw, LOGIN_RULES, access_token=access_token, code=code)
        assert e.value.reason == reason
