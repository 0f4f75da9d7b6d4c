"""The shortcuts on forward-auth's hot path give exactly the answers of the plain code they
replace: strict base64url, the claims parse, the credential built straight from claims, the
lazily decoded claims, the remembered trusted-proxy and public-route answers, and the verdict
and assertion caches."""

from __future__ import annotations

import base64
import ipaddress
import itertools
import json
import random
import time
from typing import Any

import pytest

from broker import jose
from broker.clock import FrozenClock
from broker.config import Networks
from broker.domain import tokens
from broker.domain.urls import from_original_url
from broker.errors import InvalidToken, Unauthenticated
from broker.service.audit import RequestInfo
from broker.service.verified import Credential, TokenClaims, credential_from_claims
from broker.web.request_info import peer_is_trusted
from tests.conftest import RunningBroker
from tests.forward_auth.conftest import VIEWER, BrokerStarter, session_token

APP = "https://app.example.com"


# The reference: the plain conversion credential_from_claims shortcuts (no interning, no
# shortcut for empty tags), as the broker's separate session decoder did.
def reference_credential(c: dict[str, Any]) -> Credential:
    try:
        return Credential(
            kind="session",
            session_id=str(c[tokens.CLAIM_SID]),
            user_id=str(c["sub"]),
            provider=str(c[tokens.CLAIM_PROVIDER]),
            subject=str(c[tokens.CLAIM_SUBJECT]),
            role_arn=str(c[tokens.CLAIM_ROLE]),
            email=str(c.get(tokens.CLAIM_EMAIL, "")),
            groups=tuple(str(g) for g in c.get(tokens.CLAIM_GROUPS, [])),
            mfa=bool(c.get(tokens.CLAIM_MFA, False)),
            tags={str(k): str(v) for k, v in dict(c.get(tokens.CLAIM_TAGS, {})).items()},
            issued_at=float(c["iat"]),
            expires_at=float(c["exp"]),
            session_expires_at=float(c.get("session_exp", c["exp"])),
            claims=c,
            origin_session_id=str(c[tokens.CLAIM_SID]),  # a session is its own origin
        )
    except (KeyError, TypeError, ValueError) as e:
        raise Unauthenticated("invalid_token:missing_claim") from e


def outcome(f: Any, *args: Any) -> Any:
    """The result, or how it was refused (any ``ValueError`` alike: callers catch that)."""
    try:
        return f(*args)
    except (InvalidToken, Unauthenticated) as e:
        return type(e).__name__, e.reason
    except ValueError:
        return "ValueError"


# --- strict base64url ------------------------------------------------------------------------


def reference_b64url_decode(text: str) -> bytes:
    """Decode leniently, re-encode, compare: the definition the fast decoder must match."""
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if jose.b64url(data) != text:
        raise ValueError("not canonical base64url")
    return data


def test_b64url_decode_matches_the_reference_exhaustively() -> None:
    alphabet = "AQgwEB9-_+/= \n.é"  # canonical and non-canonical last characters, and junk
    for n in range(5):
        for chars in itertools.product(alphabet, repeat=n):
            text = "".join(chars)
            assert outcome(jose.b64url_decode, text) == outcome(reference_b64url_decode, text), text


def test_b64url_decode_matches_the_reference_on_mutated_encodings() -> None:
    rng = random.Random(7)
    junk = "-_+/= \n\t.!\x00é"
    for _ in range(20_000):
        text = jose.b64url(rng.randbytes(rng.randint(0, 70)))
        for _ in range(rng.choice((0, 1, 2))):
            i = rng.randrange(len(text) + 1)
            c = rng.choice(junk + "AQgw")
            text = text[:i] + c + text[i + rng.choice((0, 1)) :]
        assert outcome(jose.b64url_decode, text) == outcome(reference_b64url_decode, text), text


# --- splitting a compact JWS ------------------------------------------------------------------


def reference_split(token: str) -> tuple[str, str, str]:
    parts = token.split(".")
    if len(parts) != 3 or not parts[0] or not parts[1]:
        raise InvalidToken("malformed")
    return parts[0], parts[1], parts[2]


def test_split_matches_the_reference_exhaustively() -> None:
    for n in range(8):
        for chars in itertools.product("a.", repeat=n):
            token = "".join(chars)
            assert outcome(jose.split, token) == outcome(reference_split, token), token


# --- the claims parse ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        b'{"a": 1}',
        b' {"a": 1} ',
        b'{"a": 1}\n',
        b'{"a": 1} x',
        b'{"a": 1}{"b": 2}',
        b"\xef\xbb\xbf" + b'{"a": 1}',
        '{"a": "é"}'.encode("utf-16"),
        '{"a": "é"}'.encode("utf-32"),
        b'{"a": "\xff"}',
        b'{"a": "\xed\xa0\x80"}',  # an encoded surrogate
        b"[1, 2]",
        b"5",
        b"",
        b"{",
        b'{"a": NaN}',
        b'{"a": 1, "a": 2}',
        b'{"a": {"b": 1, "b": 1}}',
        b'{"a": [{"b": 1, "c": 2, "b": 3}]}',
    ],
)
def test_parse_payload_is_json_loads(payload: bytes) -> None:
    """``json.loads``, except that an object may not repeat a member (as in ID tokens)."""

    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        if len({k for k, _ in pairs}) != len(pairs):
            raise ValueError("duplicate member")
        return dict(pairs)

    def reference(p: bytes) -> Any:
        try:
            claims = json.loads(p, object_pairs_hook=unique)
        except ValueError:
            raise InvalidToken("malformed") from None
        if not isinstance(claims, dict):
            raise InvalidToken("malformed")
        return claims

    assert repr(outcome(jose.parse_payload, payload)) == repr(outcome(reference, payload))


# --- credentials straight from claims --------------------------------------------------------


def claims(**override: Any) -> dict[str, Any]:
    c: dict[str, Any] = {
        "iss": "https://broker.example.com",
        "sub": "u-1",
        "aud": "https://broker.example.com",
        "iat": 1_700_000_000,
        "nbf": 1_700_000_000,
        "exp": 1_700_000_900,
        "jti": "j-1",
        tokens.CLAIM_SID: "s-1",
        tokens.CLAIM_ROLE: "arn:broker:iam::000000000000:role/viewer",
        tokens.CLAIM_PROVIDER: "corp",
        tokens.CLAIM_SUBJECT: "bob",
        tokens.CLAIM_EMAIL: "bob@example.com",
        tokens.CLAIM_GROUPS: ["dev", "ops"],
        tokens.CLAIM_MFA: True,
        tokens.CLAIM_TAGS: {"team": "a"},
        "session_exp": 1_700_003_600,
    }
    c.update(override)
    return {k: v for k, v in c.items() if v is not _DROP}


_DROP = object()

CLAIM_VARIANTS: list[dict[str, Any]] = [
    {},
    {tokens.CLAIM_TAGS: {}},
    {tokens.CLAIM_TAGS: []},
    {tokens.CLAIM_TAGS: None},
    {tokens.CLAIM_TAGS: 0},
    {tokens.CLAIM_TAGS: ""},
    {tokens.CLAIM_TAGS: {"n": 1, "b": True}},
    {tokens.CLAIM_TAGS: [["k", "v"]]},
    {tokens.CLAIM_TAGS: _DROP},
    {tokens.CLAIM_GROUPS: []},
    {tokens.CLAIM_GROUPS: "dev"},
    {tokens.CLAIM_GROUPS: 5},
    {tokens.CLAIM_GROUPS: [1, None]},
    {tokens.CLAIM_GROUPS: _DROP},
    {tokens.CLAIM_EMAIL: _DROP},
    {tokens.CLAIM_EMAIL: None},
    {tokens.CLAIM_MFA: _DROP},
    {tokens.CLAIM_MFA: "yes"},
    {tokens.CLAIM_SID: _DROP},
    {tokens.CLAIM_SID: 12},
    {tokens.CLAIM_ROLE: _DROP},
    {tokens.CLAIM_PROVIDER: _DROP},
    {tokens.CLAIM_SUBJECT: _DROP},
    {"sub": _DROP},
    {"iat": "soon"},
    {"iat": 1.5},
    {"exp": _DROP},
    {"session_exp": _DROP},
    {"session_exp": "later"},
    {"session_exp": None},
]


@pytest.mark.parametrize("override", CLAIM_VARIANTS)
def test_credential_from_claims_is_the_plain_conversion(override: dict[str, Any]) -> None:
    c = claims(**override)
    expected = outcome(reference_credential, c)
    assert outcome(credential_from_claims, c) == expected
    token = "h." + jose.b64url(json.dumps(c).encode()) + ".s"
    got = outcome(credential_from_claims, c, token)
    assert got == expected
    if isinstance(got, Credential):
        assert isinstance(got.claims, TokenClaims)


def test_access_token_claims_through_the_same_decoder() -> None:
    """An access token's claims: the session fields decoded alike, plus its own; any of those
    missing or malformed is the same refusal."""
    from broker.policy import parse_policy
    from broker.service.verified import ACCESS

    doc = '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}'
    extra = {
        tokens.CLAIM_AKID: "ASIA0000000000000000",
        tokens.CLAIM_SESSION_NAME: "bob",
        tokens.CLAIM_SOURCE_IDENTITY: "bob@corp",
        tokens.CLAIM_SESSION_POLICIES: [doc],
    }
    parse = lambda text: parse_policy(text, name="session-policy")  # noqa: E731
    c = claims(**extra)
    cred = credential_from_claims(c, kind=ACCESS, session_policy=parse)
    plain = reference_credential(c)
    assert cred.kind == "access"
    assert cred[1:12] == plain[1:12]  # the fields every broker token has, decoded alike
    assert (cred.session_name, cred.source_identity) == ("bob", "bob@corp")
    assert len(cred.session_policies) == 1
    assert cred.origin_session_id == ""  # derived from no session (web identity)
    derived = credential_from_claims(
        claims(**extra, **{tokens.CLAIM_ORIGIN_SID: "s-0"}), kind=ACCESS, session_policy=parse
    )
    assert (derived.session_id, derived.origin_session_id) == ("s-1", "s-0")
    for bad in (
        {tokens.CLAIM_AKID: _DROP},
        {tokens.CLAIM_SESSION_NAME: _DROP},
        {tokens.CLAIM_SESSION_POLICIES: doc},  # not a list
        {tokens.CLAIM_SESSION_POLICIES: ["{not a policy"]},
        {"iat": "soon"},
        {tokens.CLAIM_ORIGIN_SID: 7},  # not a string
    ):
        with pytest.raises(Unauthenticated) as info:
            credential_from_claims(claims(**{**extra, **bad}), kind=ACCESS, session_policy=parse)
        assert info.value.reason == "invalid_token:missing_claim", bad


def test_credential_fields_are_all_set() -> None:
    """The positional construction follows the field order."""
    cred = credential_from_claims(claims())
    assert cred.kind == "session"
    assert cred.session_id == "s-1"
    assert cred.user_id == "u-1"
    assert cred.provider == "corp"
    assert cred.subject == "bob"
    assert cred.role_arn.endswith("role/viewer")
    assert cred.email == "bob@example.com"
    assert cred.groups == ("dev", "ops")
    assert cred.mfa is True
    assert (cred.issued_at, cred.expires_at) == (1_700_000_000.0, 1_700_000_900.0)
    assert cred.tags == {"team": "a"}
    assert list(Credential._fields)[:12] == [
        "kind",
        "session_id",
        "user_id",
        "provider",
        "subject",
        "role_arn",
        "email",
        "groups",
        "mfa",
        "issued_at",
        "expires_at",
        "tags",
    ]


def test_credential_is_immutable() -> None:
    cred = credential_from_claims(claims())
    with pytest.raises(AttributeError):
        cred.role_arn = "arn:broker:iam::000000000000:role/admin"  # type: ignore[misc]
    assert credential_from_claims(claims(**{tokens.CLAIM_TAGS: {}})).tags == {}


def test_token_claims_decode_the_token_as_verified() -> None:
    c = claims(**{tokens.CLAIM_EMAIL: "é@example.com", "n": [1, {"x": None}]})
    token = "h." + jose.b64url(json.dumps(c).encode()) + ".s"
    lazy = TokenClaims(token)
    assert lazy == c
    assert dict(lazy) == c
    assert len(lazy) == len(c)
    assert lazy.get("jti") == "j-1"
    assert lazy.get("missing", 7) == 7
    assert "sub" in lazy
    assert repr(lazy) == repr(c)
    with pytest.raises(KeyError):
        lazy["missing"]


# --- trusted proxies -------------------------------------------------------------------------


def test_trusted_peer_answers_follow_the_list_given() -> None:
    a = (ipaddress.ip_network("10.0.0.0/8"),)
    b = (ipaddress.ip_network("192.168.0.0/16"), ipaddress.ip_network("::1/128"))
    for _ in range(2):  # the second round is answered from the memo
        assert peer_is_trusted("10.1.2.3", a)
        assert not peer_is_trusted("10.1.2.3", b)
        assert peer_is_trusted("::1", b)
        assert not peer_is_trusted("::1", a)
        assert not peer_is_trusted("not-an-ip", a)
        assert not peer_is_trusted(None, a)
        assert not peer_is_trusted("10.1.2.3", ())
    mutable = [ipaddress.ip_network("10.0.0.0/8")]
    assert peer_is_trusted("10.1.2.3", mutable)
    mutable[0] = ipaddress.ip_network("172.16.0.0/12")  # a list is never remembered
    assert not peer_is_trusted("10.1.2.3", mutable)
    for i in range(200):  # many short-lived tuples: a reused id never answers for another
        t = (ipaddress.ip_network(f"10.{i}.0.0/16"),)
        assert peer_is_trusted(f"10.{i}.0.1", t)
        assert not peer_is_trusted(f"10.{i + 1}.0.1", t)


def test_configured_networks_answer_as_a_plain_tuple() -> None:
    """``config.Networks`` only caches its hash: equal to, and answered like, a plain tuple."""
    nets = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1/128")]
    cached, plain = Networks(nets), tuple(nets)
    assert cached == plain
    assert hash(cached) == hash(plain)
    for peer in ("10.1.2.3", "::1", "11.0.0.1", "::2", "not-an-ip"):
        assert peer_is_trusted(peer, cached) is peer_is_trusted(peer, plain)
    other = Networks([ipaddress.ip_network("11.0.0.0/8")])  # same peer, other networks
    assert peer_is_trusted("11.0.0.1", other)
    assert not peer_is_trusted("11.0.0.1", cached)


# --- the service -----------------------------------------------------------------------------


@pytest.fixture
async def b(start_broker: BrokerStarter) -> RunningBroker:
    return await start_broker(
        access={"viewer": VIEWER},
        public=(APP + "/healthz",),
        clock=FrozenClock(time.time()),
    )


INFO = RequestInfo(source_ip="127.0.0.1")


async def test_public_routes_follow_the_configured_patterns(b: RunningBroker) -> None:
    fa = b.broker.forward_auth
    assert fa.is_public(APP + "/healthz")
    assert fa.is_public(APP + "/healthz")
    assert not fa.is_public(APP + "/other")
    fa.public = ()
    assert not fa.is_public(APP + "/healthz")


async def test_a_new_tokens_verdict_is_remembered_from_its_second_request(
    b: RunningBroker,
) -> None:
    fa = b.broker.forward_auth
    token = await session_token(b, "viewer")
    original = from_original_url("GET", APP + "/x")
    raw = ("127.0.0.1", "GET", "/auth", ((b"Cookie", token.encode()),))
    assert fa.decide(original, [token], INFO, raw=raw).status == 200
    assert fa.cached(raw) is None  # first sight: verified, not remembered
    assert fa.decide(original, [token], INFO, raw=raw).status == 200
    hit = fa.cached(raw)
    assert hit is not None
    assert hit.status == 200
    # revocation still takes effect on the next request, remembered or not
    broker = b.broker
    await broker.sessions.end(broker.sessions.verify(token), reason="logout")
    assert fa.cached(raw) is None
    assert fa.decide(original, [token], INFO, raw=raw).status == 401


async def test_assertions_are_signed_once_per_session_never_shared(
    b: RunningBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker = b.broker
    fa = broker.forward_auth
    signed: list[str] = []
    sign = broker.keyring.sign

    def counting(claims: Any, *, typ: str) -> str:
        signed.append(typ)
        return str(sign(claims, typ=typ))

    monkeypatch.setattr(broker.keyring, "sign", counting)
    first = await session_token(b, "viewer")
    other = await session_token(b, "viewer", subject="carol", email="carol@example.com")
    base = broker.sessions.verify(first).claims
    # tokens never seen before, all of the first session
    fresh = [sign({**base, "jti": f"j-{i}"}, typ=tokens.SESSION_TYP) for i in range(3)]
    original = from_original_url("GET", APP + "/x")
    verdicts = [fa.decide(original, [t], INFO) for t in (first, *fresh)]
    assert {v.status for v in verdicts} == {200}
    assertions = {v.headers["X-Auth-Request-Assertion"] for v in verdicts}
    assert len(assertions) == 1
    assert signed.count(tokens.ASSERTION_TYP) == 1
    theirs = fa.decide(original, [other], INFO).headers["X-Auth-Request-Assertion"]
    assert theirs not in assertions
    assert signed.count(tokens.ASSERTION_TYP) == 2
    c = broker.keyring.verify(theirs, typ=tokens.ASSERTION_TYP, audience=APP)
    assert c["sid"] == broker.sessions.verify(other).session_id
    assert 0 < c["exp"] - c["iat"] <= fa.assertion_lifetime


async def test_a_token_is_cached_from_its_second_verification(
    b: RunningBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A token seen once leaves only its hash behind; the second sighting caches it; what fails
    verification leaves nothing; the seen-once set stays bounded."""
    broker = b.broker
    credentials = broker.credentials
    base = broker.sessions.verify(await session_token(b, "viewer")).claims
    sign = broker.keyring.sign
    one, two = (sign({**base, "jti": f"j-{i}"}, typ=tokens.SESSION_TYP) for i in range(2))
    before = len(credentials)
    checked: list[str] = []
    verify_session = credentials.verifiers[tokens.SESSION_TYP]

    def counting(token: str) -> Any:
        checked.append(token)
        return verify_session(token)

    monkeypatch.setitem(credentials.verifiers, tokens.SESSION_TYP, counting)
    assert one not in credentials
    credentials.verify(one)
    assert len(credentials) == before  # not cached on first sight...
    assert one in credentials  # ...but known to have verified
    credentials.verify(one)
    assert len(credentials) == before + 1
    credentials.verify(one)
    assert checked == [one, one]  # the third is a cache hit
    with pytest.raises(Unauthenticated):
        credentials.verify(two[:-4] + "AAAA")
    assert two[:-4] + "AAAA" not in credentials
    for _ in range(3):
        with pytest.raises(Unauthenticated):
            credentials.verify(two[:-4] + "AAAA")
    assert len(credentials) == before + 1
    # revoked after being cached: refused at once
    await broker.sessions.end(broker.sessions.verify(one), reason="logout")
    with pytest.raises(Unauthenticated, match="session_revoked"):
        credentials.verify(one)
    # bounded: at max_entries first sightings the set starts again (the earliest forgotten)
    monkeypatch.setattr(credentials, "_max", 2)
    other = broker.sessions.verify(await session_token(b, "viewer", subject="carol")).claims
    fresh = [sign({**other, "jti": f"k-{i}"}, typ=tokens.SESSION_TYP) for i in range(3)]
    for token in fresh:
        credentials.verify(token)
        assert len(credentials._seen_once) <= 2
    assert fresh[0] not in credentials
    assert fresh[2] in credentials
