"""OpenID Connect Discovery: exact issuer, caching, coalescing, faults, provider isolation."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from broker.clock import FrozenClock
from broker.errors import ProviderUnavailable
from broker.idp import OIDCClient
from broker.idp.metadata import discovery_url, parse_metadata
from tests.support.fake_idp import FakeIdP, Override

StartIdP = Callable[..., Any]
MakeClient = Callable[..., OIDCClient]


async def test_metadata_fields(idp: FakeIdP, client: OIDCClient) -> None:
    md = await client.metadata()
    assert md.issuer == idp.issuer
    assert md.authorization_endpoint == idp.url("/authorize")
    assert md.token_endpoint == idp.url("/token")
    assert md.jwks_uri == idp.url("/jwks")
    assert md.userinfo_endpoint == idp.url("/userinfo")
    assert md.end_session_endpoint is None
    assert md.id_token_signing_alg_values_supported == ("RS256",)
    assert md.token_endpoint_auth_methods_supported == (
        "client_secret_basic",
        "client_secret_post",
    )
    assert md.code_challenge_methods_supported == ("S256",)
    assert md.authorization_response_iss_parameter_supported is True


@pytest.mark.parametrize(
    "issuer",
    [
        "https://evil.example",
        None,  # missing
        "{real}/",
        "{real}/sub",
        "{real_prefix}",
        "{real_upper}",
    ],
    ids=["other", "missing", "trailing_slash", "longer", "prefix", "upper_case"],
)
async def test_issuer_mismatch(issuer: str | None, idp: FakeIdP, client: OIDCClient) -> None:
    if issuer is None:
        idp.metadata_overrides["issuer"] = 1  # not a string
    else:
        idp.metadata_overrides["issuer"] = issuer.format(
            real=idp.issuer, real_prefix=idp.issuer[:-1], real_upper=idp.issuer.upper()
        )
    with pytest.raises(ProviderUnavailable) as e:
        await client.metadata()
    assert e.value.reason == "issuer_mismatch"


async def test_discovery_is_cached_then_refreshed(
    idp: FakeIdP, client: OIDCClient, clock: FrozenClock
) -> None:
    first = await client.metadata()
    assert await client.metadata() is first
    clock.advance(3599)
    assert await client.metadata() is first
    assert idp.hits["discovery"] == 1
    clock.advance(2)
    idp.metadata_overrides["end_session_endpoint"] = idp.url("/logout")
    second = await client.metadata()
    assert second.end_session_endpoint == idp.url("/logout")
    assert idp.hits["discovery"] == 2


async def test_concurrent_first_use_makes_one_request(idp: FakeIdP, client: OIDCClient) -> None:
    idp.delays["discovery"] = 0.05
    results = await asyncio.gather(*(client.metadata() for _ in range(30)))
    assert all(r is results[0] for r in results)
    assert idp.hits["discovery"] == 1


async def test_stale_metadata_used_while_provider_is_down(
    idp: FakeIdP, client: OIDCClient, clock: FrozenClock
) -> None:
    first = await client.metadata()
    idp.overrides["discovery"] = Override(503, b"down", "text/plain")
    clock.advance(3601)
    assert await client.metadata() is first
    assert await client.metadata() is first
    assert idp.hits["discovery"] == 2  # the failed refresh waits for the cooldown
    del idp.overrides["discovery"]
    clock.advance(61)
    assert await client.metadata() is not first
    assert idp.hits["discovery"] == 3


async def test_first_fetch_failure_is_retried(idp: FakeIdP, client: OIDCClient) -> None:
    idp.overrides["discovery"] = Override(500, b"{}")
    with pytest.raises(ProviderUnavailable, match="discovery_status:500"):
        await client.metadata()
    del idp.overrides["discovery"]
    assert (await client.metadata()).issuer == idp.issuer


@pytest.mark.parametrize(
    ("override", "reason"),
    [
        (Override(200, b"<html>", "text/html"), "discovery_not_json"),
        (Override(200, b"[1]"), "discovery_not_object"),
        (Override(404, b"{}"), "discovery_status:404"),
        (Override(200, b"x" * ((1 << 20) + 1)), "discovery_too_large"),
    ],
    ids=["html", "array", "404", "too_large"],
)
async def test_discovery_faults(
    override: Override, reason: str, idp: FakeIdP, client: OIDCClient
) -> None:
    idp.overrides["discovery"] = override
    with pytest.raises(ProviderUnavailable) as e:
        await client.metadata()
    assert e.value.reason == reason


async def test_discovery_redirect_is_not_followed(idp: FakeIdP, client: OIDCClient) -> None:
    idp.overrides["discovery"] = Override(302, b"")
    with pytest.raises(ProviderUnavailable, match="discovery_status:302"):
        await client.metadata()


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        ("jwks_uri", None, "discovery_invalid:jwks_uri"),
        ("jwks_uri", "file:///etc/passwd", "discovery_invalid:jwks_uri"),
        ("jwks_uri", "/jwks", "discovery_invalid:jwks_uri"),
        ("token_endpoint", 5, "discovery_invalid:token_endpoint"),
        (
            "authorization_endpoint",
            "javascript:alert(1)",
            "discovery_invalid:authorization_endpoint",
        ),
        (
            "id_token_signing_alg_values_supported",
            "RS256",
            "discovery_invalid:id_token_signing_alg_values_supported",
        ),
        (
            "authorization_response_iss_parameter_supported",
            "yes",
            "discovery_invalid:authorization_response_iss_parameter_supported",
        ),
    ],
    ids=[
        "no_jwks_uri",
        "jwks_file_url",
        "jwks_relative",
        "token_endpoint_number",
        "auth_endpoint_javascript",
        "algs_not_list",
        "iss_param_not_bool",
    ],
)
async def test_invalid_metadata(
    key: str, value: Any, reason: str, idp: FakeIdP, client: OIDCClient
) -> None:
    idp.metadata_overrides[key] = value  # None removes the member
    with pytest.raises(ProviderUnavailable) as e:
        await client.metadata()
    assert e.value.reason == reason


def test_https_issuer_requires_https_endpoints() -> None:
    doc: dict[str, Any] = {
        "issuer": "https://idp.example",
        "jwks_uri": "http://idp.example/jwks",
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
    }
    with pytest.raises(ProviderUnavailable, match="discovery_invalid:jwks_uri"):
        parse_metadata(doc, expected_issuer="https://idp.example")
    doc["jwks_uri"] = "https://keys.example/jwks"  # another host is fine (Google does this)
    md = parse_metadata(doc, expected_issuer="https://idp.example")
    assert md.authorization_endpoint is None
    assert md.id_token_signing_alg_values_supported == ("RS256",)
    assert md.token_endpoint_auth_methods_supported == ("client_secret_basic",)


MINIMAL = {  # a token-only issuer's document (Kubernetes publishes exactly this much)
    "issuer": "https://idp.example",
    "jwks_uri": "https://idp.example/jwks",
    "response_types_supported": ["id_token"],
    "subject_types_supported": ["public"],
    "id_token_signing_alg_values_supported": ["ES256"],
}


def test_a_token_only_issuer_without_rs256_is_accepted() -> None:
    md = parse_metadata(MINIMAL, expected_issuer="https://idp.example")
    assert (md.authorization_endpoint, md.token_endpoint) == (None, None)
    assert md.id_token_signing_alg_values_supported == ("ES256",)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"response_types_supported": None}, "discovery_invalid:response_types_supported"),
        ({"subject_types_supported": None}, "discovery_invalid:subject_types_supported"),
        ({"subject_types_supported": ["everyone"]}, "discovery_invalid:subject_types_supported"),
        ({"scopes_supported": "openid"}, "discovery_invalid:scopes_supported"),
        ({"claims_supported": {"sub": 1}}, "discovery_invalid:claims_supported"),
        (
            {"issuer": "http://idp.example", "jwks_uri": "http://idp.example/jwks"},
            "discovery_invalid:issuer",
        ),
        (
            {"registration_endpoint": "http://idp.example/reg"},
            "discovery_invalid:registration_endpoint",
        ),
    ],
    ids=[
        "no_response_types",
        "no_subject_types",
        "bad_subject_type",
        "scopes_not_list",
        "claims_not_list",
        "plain_http_issuer",
        "plain_http_endpoint",
    ],
)
def test_spec_rules_of_the_metadata_are_enforced(change: dict[str, Any], reason: str) -> None:
    """OIDC Discovery §3 / RFC 8414 §2 rules, checked by authlib's validators."""
    doc = {k: v for k, v in {**MINIMAL, **change}.items() if v is not None}
    with pytest.raises(ProviderUnavailable) as e:
        parse_metadata(doc, expected_issuer=doc["issuer"])
    assert e.value.reason == reason


@pytest.mark.parametrize(
    ("issuer", "url"),
    [
        ("https://idp.example", "https://idp.example/.well-known/openid-configuration"),
        ("https://idp.example/", "https://idp.example/.well-known/openid-configuration"),
        (
            "https://kc.example/realms/corp",
            "https://kc.example/realms/corp/.well-known/openid-configuration",
        ),
    ],
    ids=["host", "trailing_slash", "path"],
)
def test_discovery_url(issuer: str, url: str) -> None:
    assert discovery_url(issuer) == url


async def test_token_only_issuer(idp: FakeIdP, client: OIDCClient) -> None:
    """GitHub Actions and Kubernetes issuers publish no authorization or token endpoint."""
    idp.metadata_overrides.update(authorization_endpoint=None, token_endpoint=None)
    md = await client.metadata()
    assert md.authorization_endpoint is None
    assert md.token_endpoint is None
    assert (await client.verify_id_token(idp.mint(), nonce=None)).subject == "user-1"
    with pytest.raises(ProviderUnavailable, match="no_authorization_endpoint"):
        await client.authorization_url(
            redirect_uri="http://b/cb", state="s", nonce="n", code_challenge="c"
        )
    with pytest.raises(ProviderUnavailable, match="no_token_endpoint"):
        await client.exchange_code(code="c", code_verifier="v", redirect_uri="http://b/cb")


async def test_discovery_timeout(idp: FakeIdP, make_client: MakeClient) -> None:
    idp.delays["discovery"] = 0.5
    client = make_client(idp, timeout=0.05)
    with pytest.raises(ProviderUnavailable, match="discovery_timeout"):
        await client.metadata()


async def test_unreachable_provider(
    http: aiohttp.ClientSession, clock: FrozenClock, idp: FakeIdP
) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = idp.provider_config(issuer=f"http://127.0.0.1:{port}")
    client = OIDCClient(config, http, clock=clock)
    with pytest.raises(ProviderUnavailable) as e:
        await client.metadata()
    assert e.value.reason.startswith("discovery_unreachable:")


async def test_slow_provider_does_not_block_another(
    start_idp: StartIdP, make_client: MakeClient
) -> None:
    slow_idp: FakeIdP = await start_idp()
    fast_idp: FakeIdP = await start_idp()
    slow_idp.gates["discovery"] = gate = asyncio.Event()  # answers only when released
    slow, fast = make_client(slow_idp, name="slow"), make_client(fast_idp, name="fast")
    done: list[str] = []

    async def login_check(client: OIDCClient, idp: FakeIdP) -> None:
        await client.verify_id_token(idp.mint(), nonce=None)
        done.append(client.name)

    slow_task = asyncio.create_task(login_check(slow, slow_idp))
    await asyncio.wait_for(slow_idp.entered["discovery"].wait(), timeout=5)  # now in flight
    await asyncio.wait_for(login_check(fast, fast_idp), timeout=5)
    assert done == ["fast"]
    gate.set()
    await asyncio.wait_for(slow_task, timeout=5)
    assert done == ["fast", "slow"]
