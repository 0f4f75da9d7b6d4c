"""``/auth`` against the broker directly: each proxy's exact header set, identity headers, the
assertion JWT, and the table of bypass attempts (every one denied, with its reason audited)."""

from __future__ import annotations

import base64
import inspect
import json
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import aiohttp
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from yarl import URL

from broker.clock import FrozenClock
from broker.domain import tokens
from broker.service.forward_auth import IDENTITY_HEADERS, ForwardAuth
from tests.conftest import RunningBroker
from tests.forward_auth.conftest import VIEWER, BrokerStarter, session_token

APP = "https://app.example.com"
Headers = Mapping[str, str] | list[tuple[str, str]]


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(time.time())


@pytest.fixture
async def b(start_broker: BrokerStarter, clock: FrozenClock) -> RunningBroker:
    return await start_broker(
        access={"viewer": VIEWER},
        public=("https://app.example.com/healthz", "https://app.example.com/public/*"),
        clock=clock,
    )


@pytest.fixture
async def token(b: RunningBroker) -> str:
    return await session_token(b, "viewer")


async def ask(
    b: RunningBroker, headers: Headers, *, path: str = "/auth", method: str = "GET"
) -> tuple[int, dict[str, str], str]:
    async with (
        aiohttp.ClientSession() as s,
        s.request(
            method,
            URL(b.url + path, encoded=True),  # as given: Envoy's path is the original, unresolved
            headers=headers if isinstance(headers, list) else dict(headers),
            allow_redirects=False,
        ) as r,
    ):
        return r.status, dict(r.headers), await r.text()


def nginx(url: str, method: str = "GET", **extra: str) -> dict[str, str]:
    """What tests/proxies/nginx-site.conf sends on the auth subrequest."""
    return {"X-Original-Method": method, "X-Original-URL": url, **extra}


def cookie(token: str) -> dict[str, str]:
    return {"Cookie": f"broker_session={token}"}


async def audit_reasons(b: RunningBroker) -> list[str]:
    await b.broker.forward_auth.flush()
    events = await b.broker.store.list_audit(limit=500, action="forward_auth")
    return [e.reason for e in events if e.outcome == "failure"]


# --- each proxy's header set ---------------------------------------------------------------


def traefik(method: str, proto: str, host: str, uri: str) -> dict[str, str]:
    """Traefik ForwardAuth (authRequestHeaders: Cookie, Authorization) adds exactly these."""
    return {
        "X-Forwarded-Method": method,
        "X-Forwarded-Proto": proto,
        "X-Forwarded-Host": host,
        "X-Forwarded-Uri": uri,
        "X-Forwarded-For": "203.0.113.7",
        "Accept": "text/html",
        "User-Agent": "Mozilla/5.0",
    }


def caddy(method: str, proto: str, host: str, uri: str) -> dict[str, str]:
    """Caddy forward_auth: its reverse_proxy's X-Forwarded-* plus -Method and -Uri."""
    return {
        "X-Forwarded-Method": method,
        "X-Forwarded-Uri": uri,
        "X-Forwarded-For": "203.0.113.7",
        "X-Forwarded-Proto": proto,
        "X-Forwarded-Host": host,
        "Accept-Encoding": "gzip",
    }


async def envoy(
    b: RunningBroker, method: str, host: str, target: str, headers: Mapping[str, str]
) -> tuple[int, dict[str, str], str]:
    """Envoy ext_authz (HTTP service, path_prefix /auth): the method and path of the original
    request, its Host, and the allowed headers (cookie, authorization, x-forwarded-proto)."""
    h = {"Host": host, "x-forwarded-proto": "https", "x-envoy-expected-rq-timeout-ms": "200"}
    return await ask(b, {**h, **headers}, path="/auth" + target, method=method)


@pytest.mark.parametrize(
    ("style", "uri", "status"),
    [
        ("traefik", "/dashboards?orgId=1", 200),
        ("traefik", "/admin/users", 403),
        ("caddy", "/dashboards?orgId=1", 200),
        ("caddy", "/admin/users", 403),
        ("envoy", "/dashboards?orgId=1", 200),
        ("envoy", "/admin/users", 403),
        ("nginx", "/dashboards?orgId=1", 200),
        ("nginx", "/admin/users", 403),
    ],
    ids=lambda v: str(v),
)
async def test_each_proxy_style(
    b: RunningBroker, token: str, style: str, uri: str, status: int
) -> None:
    if style == "traefik":
        got = await ask(b, {**traefik("GET", "https", "app.example.com", uri), **cookie(token)})
    elif style == "caddy":
        got = await ask(b, {**caddy("GET", "https", "app.example.com", uri), **cookie(token)})
    elif style == "envoy":
        got = await envoy(b, "GET", "app.example.com", uri, cookie(token))
    else:
        got = await ask(b, {**nginx(APP + uri), **cookie(token)})
    code, headers, _ = got
    assert code == status
    if status == 200:
        assert headers["X-Auth-Request-User"] == "corp/bob"
        assert headers["X-Auth-Request-Email"] == "bob@example.com"
        assert headers["X-Auth-Request-Groups"] == "dev"
        assert headers["X-Auth-Request-Role"] == "arn:broker:iam::000000000000:role/viewer"
        assert headers["X-Auth-Request-Session"]
    else:
        assert not set(IDENTITY_HEADERS) & set(headers)


async def test_envoy_method_is_the_check_requests_own(b: RunningBroker, token: str) -> None:
    """api.example.com:8443 allows only GET: Envoy sends the original method on the check."""
    assert (await envoy(b, "GET", "api.example.com:8443", "/v1/x", cookie(token)))[0] == 200
    assert (await envoy(b, "DELETE", "api.example.com:8443", "/v1/x", cookie(token)))[0] == 403


async def test_bearer_token_for_scripts(b: RunningBroker, token: str) -> None:
    code, headers, _ = await ask(b, {**nginx(APP + "/x"), "Authorization": f"Bearer {token}"})
    assert code == 200
    assert headers["X-Auth-Request-User"] == "corp/bob"


async def test_assertion_verifies_with_the_jwks(b: RunningBroker, token: str) -> None:
    _, headers, _ = await ask(b, {**nginx(APP + "/x"), **cookie(token)})
    assertion = headers["X-Auth-Request-Assertion"]
    async with aiohttp.ClientSession() as s, s.get(b.url + "/.well-known/jwks.json") as r:
        jwks = jwt.PyJWKSet.from_dict(await r.json())
    header = jwt.get_unverified_header(assertion)
    assert header["typ"] == tokens.ASSERTION_TYP
    key = next(k for k in jwks.keys if k.key_id == header["kid"])
    claims = jwt.decode(
        assertion, key.key, algorithms=["EdDSA"], audience=APP, issuer=b.url, leeway=5
    )
    assert claims["user"] == "corp/bob"
    assert claims["email"] == "bob@example.com"
    assert claims["groups"] == ["dev"]
    assert claims["role"].endswith(":role/viewer")
    assert claims["sid"] == headers["X-Auth-Request-Session"]
    assert 55 <= claims["exp"] - claims["iat"] <= 60
    with pytest.raises(jwt.InvalidAudienceError):
        jwt.decode(assertion, key.key, algorithms=["EdDSA"], audience="https://api.example.com")
    # Reused within its half-life for the same origin; another origin gets its own.
    _, again, _ = await ask(b, {**nginx(APP + "/y"), **cookie(token)})
    assert again["X-Auth-Request-Assertion"] == assertion
    _, api, _ = await ask(b, {**nginx("https://api.example.com:8443/v1"), **cookie(token)})
    api_claims = jwt.decode(api["X-Auth-Request-Assertion"], options={"verify_signature": False})
    assert api_claims["aud"] == "https://api.example.com:8443"


async def test_unauthenticated_gets_the_login_url(b: RunningBroker) -> None:
    url = "https://app.example.com/dash/a b?x=1&y=%2F"
    code, headers, body = await ask(b, nginx("https://APP.example.com:443/dash/a%20b?x=1&y=%2F"))
    assert code == 401
    login = f"{b.url}/login?rd=" + quote(url.replace(" ", "%20"), safe="")
    assert headers["X-Auth-Request-Redirect"] == login
    assert headers["Location"] == login
    assert 'http-equiv="refresh"' in body
    assert not set(IDENTITY_HEADERS) & set(headers)


@pytest.mark.parametrize(
    "url",
    [
        "https://app.example.com/healthz",
        "https://app.example.com/public/",
        "https://app.example.com/public/logo.png",
        "https://APP.example.com:443/public/%61/logo.png",
    ],
)
async def test_public_routes_pass_without_a_session(b: RunningBroker, url: str) -> None:
    code, headers, _ = await ask(b, {**nginx(url), "X-Auth-Request-User": "admin"})
    assert code == 200
    # present and empty, so that proxies overwrite what a client sent under these names
    assert {h: headers[h] for h in IDENTITY_HEADERS} == dict.fromkeys(IDENTITY_HEADERS, "")


@pytest.mark.parametrize(
    "url",
    [
        "https://app.example.com/healthz/../admin/x",
        "https://app.example.com/healthzz",
        "https://app.example.com/public",
        "https://app.example.com/public/../admin/",
        "https://app.example.com/public/%2e%2e/admin/",
        "https://app.example.com/public%2F../admin/",
        "http://app.example.com/healthz/x",
        "https://app.example.com.evil.test/public/",
    ],
)
async def test_public_routes_are_not_a_way_around(b: RunningBroker, url: str) -> None:
    assert (await ask(b, nginx(url)))[0] in (401, 403)


# --- the bypass table ------------------------------------------------------------------------

# With a valid `viewer` session (Deny on https://app.example.com/admin/*): each must be denied.
URL_BYPASSES: list[tuple[str, str, str]] = [
    ("plain", "https://app.example.com/admin/x", "explicitDeny:NoAdmin"),
    ("upper-case path", "https://app.example.com/ADMIN/x", "explicitDeny:NoAdmin"),
    ("mixed-case path", "https://app.example.com/aDmIn/x", "explicitDeny:NoAdmin"),
    ("upper-case host", "https://APP.EXAMPLE.COM/admin/x", "explicitDeny:NoAdmin"),
    ("default port", "https://app.example.com:443/admin/x", "explicitDeny:NoAdmin"),
    ("trailing dot", "https://app.example.com./admin/x", "explicitDeny:NoAdmin"),
    ("dot-dot", "https://app.example.com/x/../admin/x", "dot_segment"),
    ("dot", "https://app.example.com/./admin/./x", "dot_segment"),
    ("double slash", "https://app.example.com//admin//x", "explicitDeny:NoAdmin"),
    ("encoded dots", "https://app.example.com/x/%2e%2e/admin/x", "encoded_dot_segment"),
    ("encoded dots upper", "https://app.example.com/x/%2E%2E/admin/x", "encoded_dot_segment"),
    ("half-encoded dots", "https://app.example.com/x/.%2e/admin/x", "encoded_dot_segment"),
    ("encoded letter", "https://app.example.com/%61dmin/x", "explicitDeny:NoAdmin"),
    ("encoded letter lower", "https://app.example.com/ad%6din/x", "explicitDeny:NoAdmin"),
    ("path parameter", "https://app.example.com/admin;jsessionid=1/x", "path_parameter"),
    ("dot-dot parameter", "https://app.example.com/x/..;/admin/x", "path_parameter"),
    ("empty parameter", "https://app.example.com/admin/;/x", "path_parameter"),
    ("query", "https://app.example.com/admin/x?/public/", "explicitDeny:NoAdmin"),
    ("encoded slash", "https://app.example.com/admin%2Fx", "encoded_slash"),
    ("encoded slash dots", "https://app.example.com/x%2F..%2Fadmin/x", "encoded_slash"),
    ("double-encoded dots", "https://app.example.com/x/%252e%252e/admin/x", "double_encoding"),
    ("double-encoded slash", "https://app.example.com/admin%252Fx", "double_encoding"),
    ("overlong dot", "https://app.example.com/x/%c0%ae%c0%ae/admin/x", "invalid_utf8_escape"),
    ("overlong slash", "https://app.example.com/x%c0%af..%c0%afadmin/x", "invalid_utf8_escape"),
    ("fullwidth slash", "https://app.example.com/x%EF%BC%8F..%EF%BC%8Fadmin", "confusable_escape"),
    ("backslash", "https://app.example.com/x\\..\\admin/x", "backslash"),
    ("encoded backslash", "https://app.example.com/x/%5c../admin/x", "encoded_backslash"),
    ("NUL", "https://app.example.com/admin%00/x", "encoded_control_character"),
    ("encoded newline", "https://app.example.com/admin%0d%0a/x", "encoded_control_character"),
    ("fragment", "https://app.example.com/public/#/../admin/x", "fragment"),
    ("above the root", "https://app.example.com/../admin/x", "dot_segment"),
    ("above the root, encoded", "https://app.example.com/%2e%2e/admin/x", "encoded_dot_segment"),
    ("user info", "https://public@app.example.com/admin/x", "bad_host"),
    ("encoded host", "https://app.example.com%2Fadmin/x", "bad_host"),
    ("bad port", "https://app.example.com:+443/admin/x", "bad_port"),
    ("bad scheme", "ftp://app.example.com/admin/x", "bad_scheme"),
    ("relative", "/admin/x", "url_not_absolute"),
    ("bad escape", "https://app.example.com/admin%zz/x", "bad_escape"),
    ("raw non-ASCII", "https://app.example.com/admın/x", "raw_non_ascii"),
    ("another scheme", "http://app.example.com/x", "implicitDeny"),
    ("another port", "https://api.example.com/v1", "implicitDeny"),
]


@pytest.mark.parametrize(
    ("url", "reason"), [(u, r) for _, u, r in URL_BYPASSES], ids=[i for i, _, _ in URL_BYPASSES]
)
async def test_url_bypass_attempts_are_denied(
    b: RunningBroker, token: str, url: str, reason: str
) -> None:
    code, headers, _ = await ask(b, [*nginx(url).items(), *cookie(token).items()])
    assert code == 403
    assert not set(IDENTITY_HEADERS) & set(headers)
    assert reason in await audit_reasons(b)


# Paths that name a denied route to some upstream and an allowed one to the broker as it was:
# each was answered 200 before dot segments, trailing dots and spaces and path parameters were
# refused rather than resolved (issue 11, 0c and 5).
AMBIGUOUS_PATHS: list[tuple[str, str, str]] = [
    ("trailing space (IIS)", "/admin%20/x", "trailing_space"),
    ("trailing dot (IIS)", "/admin./x", "trailing_dot"),
    ("encoded trailing dot", "/admin%2e/x", "trailing_dot"),
    ("empty segment then dot-dot", "/admin/x//../y", "dot_segment"),
    ("dot-dot out of a denied route", "/admin/../x", "dot_segment"),
    ("encoded dot-dot", "/admin/x/%2e%2e/y", "encoded_dot_segment"),
    ("mixed-case encoded dot-dot", "/admin/x/%2E%2e/y", "encoded_dot_segment"),
    ("encoded dot", "/admin/%2e/y", "encoded_dot_segment"),
    ("dot-dot with a parameter", "/admin/..;/x", "path_parameter"),
    ("encoded slash", "/admin/x%2F..%2F..%2Fy", "encoded_slash"),
    ("encoded backslash", "/admin/x%5C..%5Cy", "encoded_backslash"),
]


@pytest.mark.parametrize(
    ("path", "reason"),
    [(p, r) for _, p, r in AMBIGUOUS_PATHS],
    ids=[i for i, _, _ in AMBIGUOUS_PATHS],
)
@pytest.mark.parametrize("style", ["nginx", "forwarded", "envoy"])
async def test_ambiguous_paths_are_refused_on_every_request(
    b: RunningBroker, token: str, path: str, reason: str, style: str
) -> None:
    """Refused (403, audited) by every proxy style, and again on a byte-identical repeat: only
    allows are remembered per raw request."""
    if style == "nginx":
        headers, at = nginx(APP + path), "/auth"
    elif style == "forwarded":
        headers = {
            "X-Forwarded-Method": "GET",
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": "app.example.com",
            "X-Forwarded-Uri": path,
        }
        at = "/auth"
    else:
        headers, at = {"Host": "app.example.com", "X-Forwarded-Proto": "https"}, "/auth" + path
    before = len(await audit_reasons(b))
    for _ in range(3):
        code, answer, _ = await ask(b, {**headers, **cookie(token)}, path=at)
        assert code == 403
        assert not set(IDENTITY_HEADERS) & set(answer)
    reasons = await audit_reasons(b)
    assert reasons[: len(reasons) - before] == [reason] * 3


@pytest.mark.parametrize(
    ("method", "reason"),
    [("POST", "implicitDeny"), ("post", "implicitDeny"), ("G3T", "bad_method"), ("", "bad_method")],
)
async def test_method_is_normalised(b: RunningBroker, token: str, method: str, reason: str) -> None:
    """api.example.com:8443 allows http:GET only."""
    url = "https://api.example.com:8443/v1/x"
    assert (await ask(b, {**nginx(url, "GET"), **cookie(token)}))[0] == 200
    assert (await ask(b, {**nginx(url, method), **cookie(token)}))[0] == 403
    assert reason in await audit_reasons(b)


HEADER_BYPASSES: list[tuple[str, list[tuple[str, str]], str]] = [
    ("no original request", [], "missing_original_request"),
    (
        "nginx and forwarded headers together",
        [
            ("X-Original-Method", "GET"),
            ("X-Original-URL", "https://app.example.com/healthz"),
            ("X-Forwarded-Method", "GET"),
            ("X-Forwarded-Uri", "/admin/x"),
        ],
        "ambiguous_original_request",
    ),
    (
        "two original URLs",
        [
            ("X-Original-Method", "GET"),
            ("X-Original-URL", "https://app.example.com/admin/x"),
            ("X-Original-URL", "https://app.example.com/healthz"),
        ],
        "duplicate_header:x-original-url",
    ),
    (
        "forwarded without a host",
        [("X-Forwarded-Method", "GET"), ("X-Forwarded-Proto", "https"), ("X-Forwarded-Uri", "/")],
        "missing_header:x-forwarded-host",
    ),
    (
        "forwarded absolute URI",
        [
            ("X-Forwarded-Method", "GET"),
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Host", "app.example.com"),
            ("X-Forwarded-Uri", "https://app.example.com/healthz"),
        ],
        "path_not_absolute",
    ),
    (
        "forwarded list of protos",
        [
            ("X-Forwarded-Method", "GET"),
            ("X-Forwarded-Proto", "https,http"),
            ("X-Forwarded-Host", "app.example.com"),
            ("X-Forwarded-Uri", "/x"),
        ],
        "bad_scheme",
    ),
    (
        "forwarded host with a path",
        [
            ("X-Forwarded-Method", "GET"),
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Host", "app.example.com/healthz"),
            ("X-Forwarded-Uri", "/admin/x"),
        ],
        "bad_host",
    ),
]


@pytest.mark.parametrize(
    ("headers", "reason"),
    [(h, r) for _, h, r in HEADER_BYPASSES],
    ids=[i for i, _, _ in HEADER_BYPASSES],
)
async def test_header_bypass_attempts_are_denied(
    b: RunningBroker, token: str, headers: list[tuple[str, str]], reason: str
) -> None:
    code, _, _ = await ask(b, [*headers, *cookie(token).items()])
    assert code == 403
    assert reason in await audit_reasons(b)


async def test_envoy_style_cannot_be_mixed_with_headers(b: RunningBroker, token: str) -> None:
    code, _, _ = await envoy(
        b, "GET", "app.example.com", "/admin/x", {**cookie(token), **nginx(APP + "/healthz")}
    )
    assert code == 403
    assert "ambiguous_original_request" in await audit_reasons(b)


async def test_spoofed_forwarded_headers_from_an_untrusted_peer(
    start_broker: BrokerStarter,
) -> None:
    b = await start_broker(
        access={"viewer": VIEWER}, trusted=("10.0.0.0/8",), public=(APP + "/healthz",)
    )
    t = await session_token(b, "viewer")
    for headers in (
        nginx(APP + "/healthz"),
        traefik("GET", "https", "app.example.com", "/healthz"),
        {**nginx(APP + "/x"), **cookie(t)},
    ):
        assert (await ask(b, headers))[0] == 403
    assert (await envoy(b, "GET", "app.example.com", "/healthz", cookie(t)))[0] == 403
    assert set(await audit_reasons(b)) == {"untrusted_peer"}


async def test_client_identity_headers_and_user_agent_change_nothing(
    b: RunningBroker, token: str
) -> None:
    spoof = {h: "admin" for h in IDENTITY_HEADERS}
    assert (await ask(b, {**nginx(APP + "/x"), **spoof}))[0] == 401
    for ua in ("curl/8", "Googlebot/2.1", "", "x" * 4000):
        code, headers, _ = await ask(
            b, {**nginx(APP + "/admin/x"), **cookie(token), **spoof, "User-Agent": ua}
        )
        assert code == 403
        code, headers, _ = await ask(
            b, {**nginx(APP + "/x"), **cookie(token), **spoof, "User-Agent": ua}
        )
        assert code == 200
        assert headers["X-Auth-Request-User"] == "corp/bob"


# --- credentials -----------------------------------------------------------------------------


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def session_claims(b: RunningBroker, **override: Any) -> dict[str, Any]:
    now = int(b.broker.clock.now())
    claims = {
        "iss": b.url,
        "sub": "u-1",
        "aud": b.url,
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "jti": "j",
        "sid": "s-1",
        "role": "arn:broker:iam::000000000000:role/viewer",
        "idp": "corp",
        "idp_sub": "mallory",
    }
    claims.update(override)
    return claims


async def test_forged_and_foreign_tokens_are_refused(b: RunningBroker, token: str) -> None:
    keys = b.broker.keyring
    kid = keys.current_kid
    other_key = ed25519.Ed25519PrivateKey.generate()
    _, allowed, _ = await ask(b, {**nginx(APP + "/x"), **cookie(token)})
    assertion = allowed["X-Auth-Request-Assertion"]
    cases = {
        "another audience": (
            keys.sign(session_claims(b, aud="https://app.example.com"), typ=tokens.SESSION_TYP),
            "invalid_token:aud_mismatch",
        ),
        "an assertion as a session": (assertion, "invalid_token:typ_mismatch"),
        "another typ": (
            keys.sign(session_claims(b), typ=tokens.ACCESS_TYP),
            "invalid_token:typ_mismatch",
        ),
        "another key": (
            jwt.encode(
                session_claims(b),
                other_key,
                algorithm="EdDSA",
                headers={"kid": kid, "typ": tokens.SESSION_TYP},
            ),
            "invalid_token:bad_signature",
        ),
        "alg none": (
            _b64({"alg": "none", "kid": kid, "typ": tokens.SESSION_TYP})
            + "."
            + _b64(session_claims(b))
            + ".",
            "invalid_token:alg_mismatch",
        ),
        "garbage": ("not-a-token", "invalid_token:typ_mismatch"),
        "another issuer": (
            keys.sign(session_claims(b, iss="https://evil.test"), typ=tokens.SESSION_TYP),
            "invalid_token:iss_mismatch",
        ),
    }
    for name, (bad, reason) in cases.items():
        for how in (cookie(bad), {"Authorization": f"Bearer {bad}"}):
            code, headers, _ = await ask(b, {**nginx(APP + "/x"), **how})
            assert code == 401, name
            assert "X-Auth-Request-Redirect" in headers
        reasons = await audit_reasons(b)
        assert reason in reasons, (name, reasons)


async def test_expired_token_is_refused_even_when_cached(
    b: RunningBroker, token: str, clock: FrozenClock
) -> None:
    assert (await ask(b, {**nginx(APP + "/x"), **cookie(token)}))[0] == 200
    clock.advance(901)  # token_lifetime is 15m
    assert (await ask(b, {**nginx(APP + "/x"), **cookie(token)}))[0] == 401
    assert "token_expired" in await audit_reasons(b)


async def test_logout_and_revocation_take_effect_on_the_next_request(
    b: RunningBroker, token: str
) -> None:
    other = await session_token(b, "viewer", subject="carol", email="carol@example.com")
    assert (await ask(b, {**nginx(APP + "/x"), **cookie(token)}))[0] == 200
    assert (await ask(b, {**nginx(APP + "/x"), **cookie(other)}))[0] == 200
    broker = b.broker
    # this instance: logout applies locally at once
    await broker.sessions.end(broker.sessions.verify(token), reason="logout")
    assert (await ask(b, {**nginx(APP + "/x"), **cookie(token)}))[0] == 401
    # another instance revoked it: the store, then the next poll (the periodic tick's job)
    sid = broker.sessions.verify(other).session_id
    await broker.store.revoke_session(sid, now=broker.clock.now(), reason="admin")
    await broker.revocations.poll()
    assert (await ask(b, {**nginx(APP + "/x"), **cookie(other)}))[0] == 401
    assert (await audit_reasons(b)).count("session_revoked") == 2


async def test_header_values_never_carry_control_characters(b: RunningBroker) -> None:
    t = await session_token(
        b,
        "viewer",
        subject="eve\r\nX-Injected: 1",
        email="eve@example.com\r\nSet-Cookie: a=b\x00",
        groups=("dev", "a,b", "ops\nX-Evil: 1"),
    )
    code, headers, _ = await ask(b, {**nginx(APP + "/x"), **cookie(t)})
    assert code == 200
    assert headers["X-Auth-Request-User"] == "corp/eveX-Injected: 1"
    assert headers["X-Auth-Request-Email"] == "eve@example.comSet-Cookie: a=b"
    assert headers["X-Auth-Request-Groups"] == "dev,opsX-Evil: 1"
    assert "X-Injected" not in headers
    assert "X-Evil" not in headers


async def test_an_internal_error_denies(
    b: RunningBroker, token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(b.broker.authorizer, "decide", broken)
    code, headers, _ = await ask(b, {**nginx(APP + "/x"), **cookie(token)})
    assert code == 403
    assert not set(IDENTITY_HEADERS) & set(headers)
    assert "internal_error" in await audit_reasons(b)


@pytest.mark.parametrize("method", ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
async def test_only_200_401_403_for_any_method(b: RunningBroker, token: str, method: str) -> None:
    assert (await ask(b, nginx(APP + "/x"), method=method))[0] == 401
    assert (await ask(b, {**nginx(APP + "/x"), **cookie(token)}, method=method))[0] == 200
    assert (await ask(b, {}, method=method))[0] == 403


async def test_allows_are_batched_and_denials_always_audited(b: RunningBroker, token: str) -> None:
    for _ in range(5):
        await ask(b, {**nginx(APP + "/x"), **cookie(token)})
    for _ in range(3):
        await ask(b, {**nginx(APP + "/admin/x"), **cookie(token)})
    await b.broker.forward_auth.flush()
    events = await b.broker.store.list_audit(limit=100, action="forward_auth")
    allows = [e for e in events if e.outcome == "success"]
    denials = [e for e in events if e.outcome == "failure"]
    assert sum(int(e.details["count"]) for e in allows) == 5
    assert len(allows) == 1
    assert allows[0].details["origin"] == APP
    assert len(denials) == 3
    assert {e.reason for e in denials} == {"explicitDeny:NoAdmin"}
    assert denials[0].principal == "corp/bob"
    assert denials[0].details["resource"] == APP + "/admin/x"


def test_the_decision_is_synchronous() -> None:
    """No awaits on the hot path, so no database: the decision cannot do I/O."""
    assert not inspect.iscoroutinefunction(ForwardAuth.decide)
    assert not inspect.iscoroutinefunction(ForwardAuth.cached)
    assert not inspect.iscoroutinefunction(ForwardAuth._allowed)
