"""The authorization-code flow against the fake provider: request, response, code exchange."""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
import pytest
from yarl import URL

from broker.errors import InvalidIdToken, LoginError, ProviderError, ProviderUnavailable
from broker.idp import OIDCClient, new_pkce, random_token
from tests.support.fake_idp import FakeIdP, Override

StartIdP = Callable[..., Any]
MakeClient = Callable[..., OIDCClient]
REDIRECT = "http://127.0.0.1:8000/callback/fake"


async def _authorize(
    client: OIDCClient, http: aiohttp.ClientSession, *, nonce: str, challenge: str
) -> dict[str, str]:
    """Send the browser to the provider; return the query it is redirected back with."""
    url = await client.authorization_url(
        redirect_uri=REDIRECT, state="st-1", nonce=nonce, code_challenge=challenge
    )
    async with http.get(url, allow_redirects=False) as resp:
        assert resp.status == 302, await resp.text()
        location = URL(resp.headers["Location"])
    assert str(location.with_query(None)) == REDIRECT
    return dict(location.query)


async def test_authorization_url_has_all_parameters(idp: FakeIdP, client: OIDCClient) -> None:
    url = URL(
        await client.authorization_url(
            redirect_uri=REDIRECT,
            state="st-1",
            nonce="n-1",
            code_challenge="ch-1",
            extra={"prompt": "login", "login_hint": "a b@example.com"},
        )
    )
    assert str(url.with_query(None)) == idp.url("/authorize")
    assert dict(url.query) == {
        "response_type": "code",
        "client_id": idp.client_id,
        "redirect_uri": REDIRECT,
        "scope": "openid email profile",
        "state": "st-1",
        "nonce": "n-1",
        "code_challenge": "ch-1",
        "code_challenge_method": "S256",
        "prompt": "login",
        "login_hint": "a b@example.com",
    }


async def test_authorization_endpoint_query_is_kept(idp: FakeIdP, client: OIDCClient) -> None:
    idp.metadata_overrides["authorization_endpoint"] = idp.url("/authorize?tenant=t1")
    url = URL(
        await client.authorization_url(
            redirect_uri=REDIRECT, state="s", nonce="n", code_challenge="c"
        )
    )
    assert url.query["tenant"] == "t1"
    assert url.query["state"] == "s"


@pytest.mark.parametrize("name", ["state", "redirect_uri", "code_challenge_method", "scope"])
async def test_extra_may_not_override_protocol_parameters(name: str, client: OIDCClient) -> None:
    with pytest.raises(ValueError, match=name):
        await client.authorization_url(
            redirect_uri=REDIRECT, state="s", nonce="n", code_challenge="c", extra={name: "x"}
        )


# --- the authorization response (RFC 6749 §4.1.2, RFC 9207) ---------------------------------

RESPONSES: list[tuple[str, bool, Mapping[str, str], type[Exception] | None, str]] = [
    # (id, provider advertises iss param, params ({iss} = the issuer), error, reason or code)
    ("code_with_iss", True, {"code": "c1", "state": "s", "iss": "{iss}"}, None, "c1"),
    ("code_without_iss_not_required", False, {"code": "c1"}, None, "c1"),
    ("code_with_iss_not_required", False, {"code": "c1", "iss": "{iss}"}, None, "c1"),
    ("iss_missing_when_required", True, {"code": "c1"}, LoginError, "iss_param_missing"),
    (
        "iss_mismatch",
        True,
        {"code": "c1", "iss": "https://evil.example"},
        LoginError,
        "iss_param_mismatch",
    ),
    (
        "iss_mismatch_not_required",
        False,
        {"code": "c1", "iss": "{iss}/"},
        LoginError,
        "iss_param_mismatch",
    ),
    (
        "iss_mismatch_on_error",
        True,
        {"error": "access_denied", "iss": "https://evil.example"},
        LoginError,
        "iss_param_mismatch",
    ),
    (
        "access_denied",
        True,
        {"error": "access_denied", "error_description": "User said no", "iss": "{iss}"},
        ProviderError,
        "provider_error:access_denied",
    ),
    (
        "error_code_garbage",
        False,
        {"error": "<script>", "code": "c1"},
        ProviderError,
        "provider_error:invalid",
    ),
    ("missing_code", True, {"state": "s", "iss": "{iss}"}, LoginError, "missing_code"),
    ("empty_code", False, {"code": ""}, LoginError, "missing_code"),
]


@pytest.mark.parametrize(
    ("advertised", "params", "error", "expected"),
    [r[1:] for r in RESPONSES],
    ids=[r[0] for r in RESPONSES],
)
async def test_check_authorization_response(
    advertised: bool,
    params: Mapping[str, str],
    error: type[Exception] | None,
    expected: str,
    idp: FakeIdP,
    client: OIDCClient,
) -> None:
    idp.iss_parameter = advertised
    filled = {k: v.format(iss=idp.issuer) for k, v in params.items()}
    if error is None:
        assert await client.check_authorization_response(filled) == expected
    else:
        with pytest.raises(error) as e:
            await client.check_authorization_response(filled)
        assert getattr(e.value, "reason", None) == expected


async def test_provider_error_message_is_sanitized(client: OIDCClient, idp: FakeIdP) -> None:
    params = {
        "error": "access_denied",
        "error_description": 'You <b>cancelled</b>\n"really" ' + "x" * 300,
        "iss": idp.issuer,
    }
    with pytest.raises(ProviderError) as e:
        await client.check_authorization_response(params)
    msg = e.value.public_message
    assert "access_denied" in msg
    assert "You bcancelled/b" in msg
    assert not any(c in msg for c in '<>"\n')
    assert len(msg) < 300


# --- the whole flow and the token endpoint --------------------------------------------------


async def test_full_flow(idp: FakeIdP, client: OIDCClient, http: aiohttp.ClientSession) -> None:
    verifier, challenge = new_pkce()
    nonce = random_token()
    params = await _authorize(client, http, nonce=nonce, challenge=challenge)
    assert params["state"] == "st-1"
    code = await client.check_authorization_response(params)
    tokens = await client.exchange_code(code=code, code_verifier=verifier, redirect_uri=REDIRECT)
    assert tokens.token_type == "Bearer"
    assert tokens.access_token
    assert tokens.expires_in == 3600
    assert tokens.scope == ("openid", "email", "profile")
    assert tokens.id_token not in repr(tokens)
    assert tokens.access_token not in repr(tokens)
    id_token = await client.verify_id_token(tokens.id_token, nonce=nonce)
    assert id_token.subject == "user-1"

    sent = idp.token_requests[-1]
    assert sent.authorization is not None
    assert sent.authorization.startswith("Basic ")
    assert "client_secret" not in sent.form
    assert sent.form == {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "code_verifier": verifier,
    }
    with pytest.raises(InvalidIdToken, match="nonce_mismatch"):
        await client.verify_id_token(tokens.id_token, nonce=random_token())


async def test_client_secret_basic_is_form_encoded(
    start_idp: StartIdP, make_client: MakeClient, http: aiohttp.ClientSession
) -> None:
    """RFC 6749 §2.3.1: id and secret are form-urlencoded before Basic encoding."""
    idp: FakeIdP = await start_idp(client_id="app:1", client_secret="p%ss:w rd")
    client = make_client(idp)
    verifier, challenge = new_pkce()
    params = await _authorize(client, http, nonce="n", challenge=challenge)
    code = await client.check_authorization_response(params)
    await client.exchange_code(code=code, code_verifier=verifier, redirect_uri=REDIRECT)
    auth = idp.token_requests[-1].authorization
    assert auth is not None
    assert base64.b64decode(auth[6:]).decode() == "app%3A1:p%25ss%3Aw%20rd"


async def test_client_secret_post_when_only_post_is_supported(
    start_idp: StartIdP, make_client: MakeClient, http: aiohttp.ClientSession
) -> None:
    idp: FakeIdP = await start_idp(token_auth_methods=("client_secret_post",))
    client = make_client(idp)
    verifier, challenge = new_pkce()
    params = await _authorize(client, http, nonce="n", challenge=challenge)
    code = await client.check_authorization_response(params)
    await client.exchange_code(code=code, code_verifier=verifier, redirect_uri=REDIRECT)
    sent = idp.token_requests[-1]
    assert sent.authorization is None
    assert sent.form["client_id"] == idp.client_id
    assert sent.form["client_secret"] == idp.client_secret


async def test_public_client_sends_only_client_id(idp: FakeIdP, make_client: MakeClient) -> None:
    client = make_client(idp, client_secret=None)
    with pytest.raises(ProviderError) as e:  # the fake wants a secret
        await client.exchange_code(code="c", code_verifier="v", redirect_uri=REDIRECT)
    assert e.value.reason == "token_endpoint:invalid_client"
    sent = idp.token_requests[-1]
    assert sent.authorization is None
    assert sent.form["client_id"] == idp.client_id
    assert "client_secret" not in sent.form


async def test_wrong_code_verifier(
    idp: FakeIdP, client: OIDCClient, http: aiohttp.ClientSession
) -> None:
    _, challenge = new_pkce()
    params = await _authorize(client, http, nonce="n", challenge=challenge)
    code = await client.check_authorization_response(params)
    with pytest.raises(ProviderError) as e:
        await client.exchange_code(code=code, code_verifier=new_pkce()[0], redirect_uri=REDIRECT)
    assert e.value.reason == "token_endpoint:invalid_grant"


TOKEN_FAULTS: list[tuple[str, Override, type[Exception], str]] = [
    (
        "error_json",
        Override.json(400, {"error": "invalid_grant", "error_description": "used"}),
        ProviderError,
        "token_endpoint:invalid_grant",
    ),
    (
        "error_json_200",
        Override.json(200, {"error": "server_said_no"}),
        ProviderError,
        "token_endpoint:server_said_no",
    ),
    ("error_without_code", Override.json(401, {}), ProviderError, "token_endpoint:invalid"),
    (
        "status_500",
        Override(500, b'{"error": "x"}'),
        ProviderUnavailable,
        "token_endpoint_status:500",
    ),
    (
        "status_503_html",
        Override(503, b"<h1>down</h1>", "text/html"),
        ProviderUnavailable,
        "token_endpoint_status:503",
    ),
    (
        "redirect",
        Override(302, b""),
        ProviderUnavailable,
        "token_endpoint_status:302",
    ),
    (
        "not_json",
        Override(200, b"access_token=x", "application/x-www-form-urlencoded"),
        ProviderUnavailable,
        "token_endpoint_not_json",
    ),
    (
        "not_object",
        Override(200, b'"id_token"'),
        ProviderUnavailable,
        "token_endpoint_not_object",
    ),
    (
        "no_id_token",
        Override.json(200, {"access_token": "a", "token_type": "Bearer"}),
        ProviderUnavailable,
        "token_endpoint_missing_id_token",
    ),
    (
        "too_large",
        Override(200, b'{"pad": "' + b"x" * (1 << 20) + b'"}'),
        ProviderUnavailable,
        "token_endpoint_too_large",
    ),
]


@pytest.mark.parametrize(
    ("override", "error", "reason"),
    [f[1:] for f in TOKEN_FAULTS],
    ids=[f[0] for f in TOKEN_FAULTS],
)
async def test_token_endpoint_faults(
    override: Override,
    error: type[Exception],
    reason: str,
    idp: FakeIdP,
    client: OIDCClient,
) -> None:
    idp.overrides["token"] = override
    with pytest.raises(error) as e:
        await client.exchange_code(code="c", code_verifier="v", redirect_uri=REDIRECT)
    assert getattr(e.value, "reason", None) == reason


async def test_token_endpoint_timeout(idp: FakeIdP, make_client: MakeClient) -> None:
    client = make_client(idp, timeout=0.2)
    await client.metadata()
    idp.delays["token"] = 0.6
    with pytest.raises(ProviderUnavailable) as e:
        await client.exchange_code(code="c", code_verifier="v", redirect_uri=REDIRECT)
    assert e.value.reason == "token_endpoint_timeout"
