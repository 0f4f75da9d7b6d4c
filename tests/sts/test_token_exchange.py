"""RFC 8693 token exchange, RFC 7662 introspection and RFC 7009 revocation of broker tokens."""

from __future__ import annotations

from typing import Any

import aiohttp
import jwt
import pytest

from tests.sts.conftest import Env, arn, issue

GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
ID_TOKEN = "urn:ietf:params:oauth:token-type:id_token"
ACCESS = "urn:ietf:params:oauth:token-type:access_token"
JWT = "urn:ietf:params:oauth:token-type:jwt"


async def call(
    env: Env, path: str, form: dict[str, str] | list[tuple[str, str]], bearer: str | None = None
) -> tuple[int, dict[str, Any], dict[str, str]]:
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    async with (
        aiohttp.ClientSession() as s,
        s.post(env.url + path, data=form, headers=headers) as r,
    ):
        body = await r.json() if r.content_type == "application/json" else {}
        return r.status, body, dict(r.headers)


def exchange(token: str, **extra: str) -> dict[str, str]:
    return {
        "grant_type": GRANT,
        "subject_token": token,
        "subject_token_type": ID_TOKEN,
        "scope": "role:ci",
        **extra,
    }


async def test_exchange_an_id_token_for_a_role_token(env: Env) -> None:
    status, body, headers = await call(
        env, "/oauth2/token", exchange(env.idp.mint({"sub": "user-1"}))
    )
    assert status == 200, body
    assert headers["Cache-Control"] == "no-store"
    assert body["issued_token_type"] == ACCESS
    assert body["token_type"] == "Bearer"
    assert body["scope"] == "role:ci"
    assert body["expires_in"] == 3600
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["role"] == arn("ci")
    assert jwt.get_unverified_header(body["access_token"])["typ"] == "broker-access+jwt"

    # it verifies offline with the JWKS ...
    async with aiohttp.ClientSession() as s, s.get(env.url + "/.well-known/jwks.json") as r:
        jwks = jwt.PyJWKSet.from_dict(await r.json())
    key = next(
        k for k in jwks.keys if k.key_id == jwt.get_unverified_header(body["access_token"])["kid"]
    )
    jwt.decode(body["access_token"], key, algorithms=["EdDSA"], audience=env.url, issuer=env.url)

    # ... and by introspection (RFC 7662): active, with the role as scope
    status, info, _ = await call(
        env, "/oauth2/introspect", {"token": body["access_token"]}, bearer=body["access_token"]
    )
    assert status == 200
    assert info["active"] is True
    assert info["scope"] == "role:ci"
    assert info["username"] == "user-1"
    assert info["exp"] == claims["exp"]

    # resource= names the role as well
    status, body2, _ = await call(
        env,
        "/oauth2/token",
        {
            "grant_type": GRANT,
            "subject_token": env.idp.mint({"sub": "user-1"}),
            "subject_token_type": JWT,
            "resource": arn("reader"),
        },
    )
    assert status == 200, body2
    assert body2["scope"] == "role:reader"


async def test_exchange_a_broker_token_is_chaining(env: Env) -> None:
    _, _, token = await issue(env)
    status, body, _ = await call(
        env,
        "/oauth2/token",
        {
            "grant_type": GRANT,
            "subject_token": token,
            "subject_token_type": ACCESS,
            "resource": arn("deploy"),
        },
    )
    assert status == 200, body
    assert body["expires_in"] <= 3600
    # an ID token presented as an access token is not a broker token
    status, body, _ = await call(
        env,
        "/oauth2/token",
        {
            "grant_type": GRANT,
            "subject_token": env.idp.mint({"sub": "user-1"}),
            "subject_token_type": ACCESS,
            "resource": arn("deploy"),
        },
    )
    assert (status, body["error"]) == (400, "invalid_grant")


ERRORS = [
    ("role the subject may not take", {"scope": "role:nobody"}, 400, "invalid_target"),
    ("unknown role", {"scope": "role:ghost"}, 400, "invalid_target"),
    (
        "role of another account",
        {"scope": "", "resource": "arn:broker:iam::111111111111:role/ci"},
        400,
        "invalid_target",
    ),
    (
        "resource not a role",
        {"scope": "", "resource": "https://api.example.com"},
        400,
        "invalid_target",
    ),
    ("two roles", {"scope": "role:ci role:reader"}, 400, "invalid_target"),
    ("audience not the broker", {"audience": "https://elsewhere"}, 400, "invalid_target"),
    ("unknown scope", {"scope": "admin"}, 400, "invalid_scope"),
    ("no role named", {"scope": ""}, 400, "invalid_request"),
    ("wrong grant", {"grant_type": "password"}, 400, "unsupported_grant_type"),
    ("no grant", {"grant_type": ""}, 400, "invalid_request"),
    ("bad token type", {"subject_token_type": "urn:x"}, 400, "invalid_request"),
    ("no subject token", {"subject_token": ""}, 400, "invalid_request"),
    ("actor token", {"actor_token": "x", "actor_token_type": ID_TOKEN}, 400, "invalid_request"),
    (
        "requested saml",
        {"requested_token_type": "urn:ietf:params:oauth:token-type:saml2"},
        400,
        "invalid_request",
    ),
    ("forged subject", {"subject_token": "e30.e30.sig"}, 400, "invalid_grant"),
]


@pytest.mark.parametrize(
    ("extra", "status", "error"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS]
)
async def test_token_exchange_errors(
    env: Env, extra: dict[str, str], status: int, error: str
) -> None:
    form = exchange(env.idp.mint({"sub": "user-1"}), **extra)
    form = {k: v for k, v in form.items() if v != "" or k == "grant_type"}
    if form.get("grant_type") == "":
        del form["grant_type"]
    got, body, headers = await call(env, "/oauth2/token", form)
    assert (got, body["error"]) == (status, error), body
    assert "access_token" not in body
    assert headers["Cache-Control"] == "no-store"
    await env.broker.broker.auditor.flush()  # token exchange events are batched
    events = await env.broker.broker.store.list_audit(action="oauth2.token_exchange")
    assert events
    assert events[0].outcome == "failure"
    assert all(e.outcome == "failure" for e in events)


async def test_expired_subject_token_is_invalid_grant(env: Env) -> None:
    now = int(env.clock.now())
    token = env.idp.mint({"sub": "user-1", "iat": now - 4000, "exp": now - 600})
    status, body, _ = await call(env, "/oauth2/token", exchange(token))
    assert (status, body["error"]) == (400, "invalid_grant")


async def test_introspection_needs_a_caller_and_hides_others_tokens(env: Env) -> None:
    _, _, mine = await issue(env)
    _, _, theirs = await issue(env, "reader")
    # no caller credential: 401 invalid_client
    status, body, headers = await call(env, "/oauth2/introspect", {"token": mine})
    assert (status, body["error"]) == (401, "invalid_client")
    assert headers["WWW-Authenticate"].startswith("Bearer")
    # "reader" may not introspect (its policies do not allow sts:IntrospectToken): inactive
    status, body, _ = await call(env, "/oauth2/introspect", {"token": mine}, bearer=theirs)
    assert body == {"active": False}
    # "ci" allows everything, sts:IntrospectToken included
    status, body, _ = await call(env, "/oauth2/introspect", {"token": theirs}, bearer=mine)
    assert body["active"] is True
    assert body["role"] == arn("reader")
    # junk is inactive, a missing token is invalid_request
    status, body, _ = await call(env, "/oauth2/introspect", {"token": "junk"}, bearer=mine)
    assert (status, body) == (200, {"active": False})
    status, body, _ = await call(env, "/oauth2/introspect", {}, bearer=mine)
    assert (status, body["error"]) == (400, "invalid_request")


async def test_revocation(env: Env) -> None:
    _, _, token = await issue(env)
    _, _, watcher = await issue(env)
    status, _, _ = await call(env, "/oauth2/revoke", {"token": token})
    assert status == 200
    status, body, _ = await call(env, "/oauth2/introspect", {"token": token}, bearer=watcher)
    assert body == {"active": False}
    async with (
        aiohttp.ClientSession() as s,
        s.post(
            env.url + "/v1/authorize",
            json={"action": "s3:GetObject", "resource": "*"},
            headers={"Authorization": f"Bearer {token}"},
        ) as r,
    ):
        assert r.status == 401
    # revoking again, or junk: still 200 (RFC 7009 §2.2)
    assert (await call(env, "/oauth2/revoke", {"token": token}))[0] == 200
    assert (await call(env, "/oauth2/revoke", {"token": "junk"}))[0] == 200
    # an IdP token cannot be revoked here
    status, body, _ = await call(env, "/oauth2/revoke", {"token": env.idp.mint({"sub": "u"})})
    assert (status, body["error"]) == (400, "unsupported_token_type")
    events = await env.broker.broker.store.list_audit(action="oauth2.revoke")
    assert any(e.outcome == "success" for e in events)


async def test_authorize_api_validates_its_input(env: Env) -> None:
    _, _, token = await issue(env)

    async def ask(body: Any) -> tuple[int, dict[str, Any]]:
        async with (
            aiohttp.ClientSession() as s,
            s.post(
                env.url + "/v1/authorize",
                json=body,
                headers={"Authorization": f"Bearer {token}"},
            ) as r,
        ):
            return r.status, await r.json()

    status, d = await ask({"action": "s3:GetObject", "resource": "arn:aws:s3:::b/k"})
    assert status == 200
    assert d["decision"] == "allowed"
    assert d["matched_statements"][0]["policy"] == "ci/policy[0]"
    bad: Any
    for bad in (
        [],
        {"action": "nocolon", "resource": "*"},
        {"action": "s3:Get", "resource": ""},
        {"action": "s3:Get", "resource": "*", "context": {"aws:PrincipalArn": "x"}},
        {"action": "s3:Get", "resource": "*", "context": {"aws:PrincipalTag/team": "x"}},
        {"action": "s3:Get", "resource": "*", "context": {"aws:CurrentTime": "2020-01-01"}},
        {"action": "s3:Get", "resource": "*", "context": {"broker:EpochTime": "0"}},
        {"action": "s3:Get", "resource": "*", "context": {"aws:SourceIp": 7}},
    ):
        status, d = await ask(bad)
        assert (status, d["error"]) == (400, "invalid_request"), bad
