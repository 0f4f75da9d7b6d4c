"""``OIDCClient.verify_logout_token`` (Back-Channel Logout 1.0 §2.6) against the fake provider:
what a valid token yields, the variants providers send, and that a logout token is never an ID
token nor an ID token a logout token. The refusal table runs through the broker in
``tests/web/test_backchannel_logout.py``."""

from __future__ import annotations

from typing import Any

import pytest

from broker.clock import FrozenClock
from broker.errors import InvalidIdToken
from broker.idp import OIDCClient
from broker.idp.logout_token import BACKCHANNEL_LOGOUT_EVENT, MAX_AGE
from tests.idp.conftest import MakeClient, StartIdP
from tests.support.fake_idp import FakeIdP

EVENTS: dict[str, dict[str, Any]] = {BACKCHANNEL_LOGOUT_EVENT: {}}


def logout_claims(**overrides: Any) -> dict[str, Any]:
    c: dict[str, Any] = {"sid": "op-1", "jti": "j-1", "events": EVENTS}
    c.update(overrides)
    return c


async def test_a_valid_token_yields_its_session_and_subject(
    idp: FakeIdP, client: OIDCClient, clock: FrozenClock
) -> None:
    t = await client.verify_logout_token(
        idp.mint(logout_claims(), header={"typ": "logout+jwt"}, omit=("email",))
    )
    assert (t.issuer, t.subject, t.sid, t.jti) == (idp.issuer, "user-1", "op-1", "j-1")
    assert t.issued_at == int(clock.now())
    assert t.expires_at == int(clock.now()) + 300


@pytest.mark.parametrize(
    ("header", "claims", "omit"),
    [
        ({"typ": "JWT"}, {}, ()),
        ({}, {}, ("typ",)),
        ({"typ": "application/logout+jwt"}, {}, ()),
        ({}, {"aud": ["other", "broker-test"]}, ()),
        ({}, {}, ("exp",)),
        ({}, {"sid": None}, ("sid",)),
        ({}, {"events": {BACKCHANNEL_LOGOUT_EVENT: {}, "urn:other": {"x": 1}}}, ()),
    ],
    ids=[
        "typ-jwt",
        "no-typ",
        "typ-media-type",
        "several-audiences",
        "no-exp",
        "sub-only",
        "more-events",
    ],
)
async def test_variants_providers_send(
    idp: FakeIdP,
    client: OIDCClient,
    header: dict[str, Any],
    claims: dict[str, Any],
    omit: tuple[str, ...],
) -> None:
    c = {k: v for k, v in logout_claims(**claims).items() if v is not None}
    t = await client.verify_logout_token(idp.mint(c, header=header, omit=omit))
    assert t.jti == "j-1"


async def test_a_logout_token_is_not_an_id_token(idp: FakeIdP, client: OIDCClient) -> None:
    with pytest.raises(InvalidIdToken) as e:
        await client.verify_id_token(
            idp.mint(logout_claims(), header={"typ": "logout+jwt"}), nonce=None, audiences=None
        )
    assert e.value.reason == "typ_mismatch"


async def test_age_is_bounded_even_without_exp(
    idp: FakeIdP, client: OIDCClient, clock: FrozenClock
) -> None:
    token = idp.mint(logout_claims(), omit=("exp",))
    clock.advance(MAX_AGE + 60 + 1)
    with pytest.raises(InvalidIdToken) as e:
        await client.verify_logout_token(token)
    assert e.value.reason == "iat_too_old"


async def test_algorithms_come_from_discovery(start_idp: StartIdP, make_client: MakeClient) -> None:
    """A key type the provider does not advertise for ID tokens signs no logout token."""
    idp = await start_idp(
        alg="ES256", metadata_overrides={"id_token_signing_alg_values_supported": ["RS256"]}
    )
    with pytest.raises(InvalidIdToken) as e:
        await make_client(idp).verify_logout_token(idp.mint(logout_claims()))
    assert e.value.reason == "alg_not_allowed"


async def test_an_untyped_logout_token_is_not_an_id_token_either(
    idp: FakeIdP, client: OIDCClient
) -> None:
    """RFC 8417 §4.1: a JWT with ``events`` is a security event token, refused as an ID token
    (for example as a WebIdentityToken, where no nonce is checked)."""
    with pytest.raises(InvalidIdToken) as e:
        await client.verify_id_token(
            idp.mint(logout_claims()), nonce=None, audiences=["broker-test"]
        )
    assert e.value.reason == "events_present"
