"""Every STS error code, with the request that provokes it; forged web identity tokens; SigV4
tampering. Raw HTTP against a running broker whose provider ``fake`` is the in-process fake IdP
(it can mint any token), on a frozen clock shared by both.

Each refusal: the right AWS code and status in an ``ErrorResponse``, nothing issued (no success
audit event), a failure audit event with a specific reason.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from tests.sts.conftest import (
    CALLER,
    NS,
    Env,
    Reply,
    arn,
    issue,
    last_failure,
    post,
    post_raw,
    sign,
    successes,
    web_identity,
)
from tests.support.fake_idp import FakeKey, tamper_signature

# --- the table: every error code and a request that provokes it -----------------------------------

RequestMaker = Callable[[Env], Any]


async def _invalid_identity_token(env: Env) -> Reply:
    return await post(env, web_identity(tamper_signature(env.idp.mint({"sub": "user-1"}))))


async def _expired(env: Env) -> Reply:
    now = int(env.clock.now())
    token = env.idp.mint({"sub": "user-1", "iat": now - 7200, "exp": now - 3600})
    return await post(env, web_identity(token))


async def _idp_down(env: Env) -> Reply:
    token = env.idp.mint({"sub": "user-1", "iss": env.down_issuer})
    return await post(env, web_identity(token))


async def _rejected_claim(env: Env) -> Reply:
    token = env.idp.mint({"sub": "user-1", "https://aws.amazon.com/tags": "not-an-object"})
    return await post(env, web_identity(token))


async def _access_denied(env: Env) -> Reply:
    return await post(env, web_identity(env.idp.mint({"sub": "user-1"}), "nobody"))


async def _malformed_policy(env: Env) -> Reply:
    return await post(env, web_identity(env.idp.mint({"sub": "user-1"}), Policy='{"Statement": 7}'))


async def _packed_too_large(env: Env) -> Reply:
    alphabet = string.ascii_letters + string.digits
    tags = {f"k{i}": ["".join(secrets.choice(alphabet) for _ in range(250))] for i in range(50)}
    token = env.idp.mint({"sub": "user-1", "https://aws.amazon.com/tags": {"principal_tags": tags}})
    return await post(env, web_identity(token))


async def _validation(env: Env) -> Reply:
    return await post(env, web_identity(env.idp.mint({"sub": "user-1"}), RoleSessionName="x"))


async def _missing(env: Env) -> Reply:
    params = web_identity("")
    del params["WebIdentityToken"]
    return await post(env, params)


async def _invalid_value(env: Env) -> Reply:
    return await post(env, web_identity(env.idp.mint({"sub": "user-1"}), DurationSeconds="an hour"))


async def _invalid_client_token(env: Env) -> Reply:
    _akid, secret, token = await issue(env)
    body, headers = sign(env, CALLER, ("ASIA" + "A" * 16, secret, token))
    return await post_raw(env, body, headers)


async def _signature_mismatch(env: Env) -> Reply:
    akid, _, token = await issue(env)
    body, headers = sign(env, CALLER, (akid, "0" * 40, token))
    return await post_raw(env, body, headers)


async def _expired_token(env: Env) -> Reply:
    creds = await issue(env)
    env.clock.advance(3601)
    body, headers = sign(env, CALLER, creds)
    return await post_raw(env, body, headers)


async def _invalid_action(env: Env) -> Reply:
    return await post(env, {"Action": "DecodeAuthorizationMessage", "Version": "2011-06-15"})


async def _missing_authentication(env: Env) -> Reply:
    return await post(env, CALLER)


async def _incomplete_signature(env: Env) -> Reply:
    return await post(
        env, CALLER, {"Authorization": "AWS4-HMAC-SHA256 SignedHeaders=host", "X-Amz-Date": "x"}
    )


TABLE: list[tuple[str, int, RequestMaker, str]] = [
    ("InvalidIdentityToken", 400, _invalid_identity_token, "bad_signature"),
    ("ExpiredTokenException", 400, _expired, "expired"),
    ("IDPCommunicationError", 400, _idp_down, "provider:down"),
    ("IDPRejectedClaim", 403, _rejected_claim, "tags_claim_not_object"),
    ("AccessDenied", 403, _access_denied, "trust_policy:sts:AssumeRoleWithWebIdentity"),
    ("MalformedPolicyDocument", 400, _malformed_policy, "session_policy"),
    ("PackedPolicyTooLarge", 400, _packed_too_large, "packed_size"),
    ("ValidationError", 400, _validation, "constraint:roleSessionName"),
    ("MissingParameter", 400, _missing, "missing:WebIdentityToken"),
    ("InvalidParameterValue", 400, _invalid_value, "bad_duration"),
    ("InvalidClientTokenId", 403, _invalid_client_token, "access_key_id_does_not_match_token"),
    ("SignatureDoesNotMatch", 403, _signature_mismatch, "bad_signature"),
    ("ExpiredToken", 400, _expired_token, "security_token:token_expired"),
    ("InvalidAction", 400, _invalid_action, "invalid_action"),
    ("MissingAuthenticationToken", 403, _missing_authentication, "missing_authorization"),
    ("IncompleteSignature", 400, _incomplete_signature, "missing_credential"),
]


@pytest.mark.parametrize(("code", "status", "make", "reason"), TABLE, ids=[t[0] for t in TABLE])
async def test_error_table(
    env: Env, code: str, status: int, make: RequestMaker, reason: str
) -> None:
    before = await successes(env)
    reply = await make(env)
    assert (reply.status, reply.code) == (status, code), reply.message
    assert reply.type == "Sender"
    assert reply.message
    assert len(reply.request_id) == 36
    assert reply.root.find(f".//{NS}Credentials") is None
    # nothing issued beyond what the case itself needed first
    assert await successes(env) - before <= 1
    assert reason in await last_failure(env)


# --- forged web identity tokens ------------------------------------------------------------------


def _alg_none(env: Env) -> str:
    return env.idp.mint({"sub": "user-1"}, alg="none")


def _hmac_confusion(env: Env) -> str:
    return env.idp.mint(
        {"sub": "user-1"}, alg="HS256", hmac_secret=env.idp.signing_key.public_pem()
    )


def _bad_signature(env: Env) -> str:
    return tamper_signature(env.idp.mint({"sub": "user-1"}))


def _wrong_aud(env: Env) -> str:
    return env.idp.mint({"sub": "user-1", "aud": "someone-else"})


def _other_providers_key(env: Env) -> str:
    # signed by the other provider's key, claiming to come from ours
    return env.idp.mint({"sub": "user-1"}, key=env.other.signing_key)


def _unknown_key(env: Env) -> str:
    return env.idp.mint({"sub": "user-1"}, key=FakeKey.generate("RS256"))


def _expired_token_forged(env: Env) -> str:
    now = int(env.clock.now())
    return env.idp.mint({"sub": "user-1", "iat": now - 4000, "exp": now - 600})


def _unknown_issuer(env: Env) -> str:
    return env.idp.mint({"sub": "user-1", "iss": "https://evil.example"})


def _jku(env: Env) -> str:
    return env.idp.mint({"sub": "user-1"}, header={"jku": "https://evil.example/jwks"})


def _broker_token(env: Env) -> str:
    b = env.broker.broker
    return str(
        b.keyring.sign(
            {
                "iss": env.idp.issuer,
                "sub": "user-1",
                "aud": env.idp.client_id,
                "iat": int(env.clock.now()),
                "exp": int(env.clock.now()) + 300,
            },
            typ="broker-access+jwt",
        )
    )


FORGED: list[tuple[str, Callable[[Env], str], str, str]] = [
    ("alg_none", _alg_none, "InvalidIdentityToken", "alg_not_allowed"),
    ("hmac_confusion", _hmac_confusion, "InvalidIdentityToken", "alg_not_allowed"),
    ("bad_signature", _bad_signature, "InvalidIdentityToken", "bad_signature"),
    ("wrong_aud", _wrong_aud, "InvalidIdentityToken", "aud_mismatch"),
    ("another_providers_key", _other_providers_key, "InvalidIdentityToken", "fake:"),
    ("unknown_key", _unknown_key, "InvalidIdentityToken", "fake:"),
    ("expired", _expired_token_forged, "ExpiredTokenException", "expired"),
    ("unknown_issuer", _unknown_issuer, "InvalidIdentityToken", "unknown_issuer"),
    ("jku_header", _jku, "InvalidIdentityToken", "forbidden_header:jku"),
    ("broker_token", _broker_token, "InvalidIdentityToken", "broker_token_as_web_identity"),
]


@pytest.mark.parametrize(
    ("forge", "code", "reason"), [f[1:] for f in FORGED], ids=[f[0] for f in FORGED]
)
async def test_forged_web_identity_tokens_are_refused(
    env: Env, forge: Callable[[Env], str], code: str, reason: str
) -> None:
    reply = await post(env, web_identity(forge(env)))
    assert reply.code == code
    assert reply.root.find(f".//{NS}Credentials") is None
    assert await successes(env) == 0
    assert reason in await last_failure(env)


async def test_another_providers_genuine_token_is_not_trusted(env: Env) -> None:
    token = env.other.mint({"sub": "user-1"})
    reply = await post(env, web_identity(token))
    assert (reply.status, reply.code) == (403, "AccessDenied")
    assert "trust_policy" in await last_failure(env)


async def test_id_token_is_not_a_bearer_credential(env: Env) -> None:
    token = env.idp.mint({"sub": "user-1"})
    async with (
        aiohttp.ClientSession() as s,
        s.post(
            env.url + "/v1/authorize",
            json={"action": "s3:GetObject", "resource": "*"},
            headers={"Authorization": f"Bearer {token}"},
        ) as r,
    ):
        assert r.status == 401


# --- SigV4 tampering -----------------------------------------------------------------------------


async def test_a_correctly_signed_request_passes(env: Env) -> None:
    creds = await issue(env)
    body, headers = sign(env, CALLER, creds, region="eu-west-3")  # any region
    reply = await post_raw(env, body, headers)
    assert reply.status == 200
    assert reply.root.findtext(f".//{NS}Arn", "").endswith(":assumed-role/ci/build-42")


def _changed_body(env: Env, creds: tuple[str, str, str]) -> tuple[bytes, dict[str, str]]:
    body, headers = sign(env, CALLER, creds)
    return body + b"&Extra=1", headers


def _old_date(env: Env, creds: tuple[str, str, str]) -> tuple[bytes, dict[str, str]]:
    return sign(env, CALLER, creds, when=env.clock.now() - 301)


def _future_date(env: Env, creds: tuple[str, str, str]) -> tuple[bytes, dict[str, str]]:
    return sign(env, CALLER, creds, when=env.clock.now() + 301)


def _unsigned_host(env: Env, creds: tuple[str, str, str]) -> tuple[bytes, dict[str, str]]:
    body, headers = sign(env, CALLER, creds)
    auth = headers["Authorization"].replace(
        "SignedHeaders=content-type;host;", "SignedHeaders=content-type;"
    )
    assert auth != headers["Authorization"]
    return body, {**headers, "Authorization": auth}


def _wrong_secret(env: Env, creds: tuple[str, str, str]) -> tuple[bytes, dict[str, str]]:
    return sign(env, CALLER, (creds[0], creds[1][::-1], creds[2]))


def _wrong_service(env: Env, creds: tuple[str, str, str]) -> tuple[bytes, dict[str, str]]:
    return sign(env, CALLER, creds, service="iam")


def _scope_date(env: Env, creds: tuple[str, str, str]) -> tuple[bytes, dict[str, str]]:
    body, headers = sign(env, CALLER, creds)
    date = headers["X-Amz-Date"][:8]
    return body, {
        **headers,
        "Authorization": headers["Authorization"].replace(f"/{date}/", "/20200101/"),
    }


def _other_token(env: Env, creds: tuple[str, str, str]) -> tuple[bytes, dict[str, str]]:
    # someone else's SessionToken with this key pair
    return sign(env, CALLER, creds)


TAMPERING: list[
    tuple[str, Callable[[Env, tuple[str, str, str]], tuple[bytes, dict[str, str]]], str, str]
] = [
    ("changed_body", _changed_body, "SignatureDoesNotMatch", "bad_signature"),
    ("old_date", _old_date, "SignatureDoesNotMatch", "signature_expired"),
    ("future_date", _future_date, "SignatureDoesNotMatch", "signature_expired"),
    ("unsigned_host", _unsigned_host, "SignatureDoesNotMatch", "unsigned_header:host"),
    ("wrong_secret", _wrong_secret, "SignatureDoesNotMatch", "bad_signature"),
    ("wrong_service", _wrong_service, "SignatureDoesNotMatch", "wrong_service"),
    ("scope_date", _scope_date, "SignatureDoesNotMatch", "scope_date_mismatch"),
]


@pytest.mark.parametrize(
    ("tamper", "code", "reason"), [t[1:] for t in TAMPERING], ids=[t[0] for t in TAMPERING]
)
async def test_sigv4_tampering(env: Env, tamper: Any, code: str, reason: str) -> None:
    creds = await issue(env)
    body, headers = tamper(env, creds)
    reply = await post_raw(env, body, headers)
    assert (reply.status, reply.code) == (403, code), reply.message
    assert reason in await last_failure(env)


async def test_old_date_message_is_awss(env: Env) -> None:
    body, headers = _old_date(env, await issue(env))
    reply = await post_raw(env, body, headers)
    assert reply.message.startswith("Signature expired: ")


async def test_replay_after_expiry_and_after_revocation(env: Env) -> None:
    creds = await issue(env)
    body, headers = sign(env, CALLER, creds)
    assert (await post_raw(env, body, headers)).status == 200
    assert (await post_raw(env, body, headers)).status == 200  # within 5 minutes, as AWS
    env.clock.advance(3601)
    reply = await post_raw(env, body, headers)
    assert (reply.status, reply.code) == (400, "ExpiredToken")

    # revocation (RFC 7009) ends a credential at once
    env.clock.advance(-3601)
    creds = await issue(env)
    body, headers = sign(env, CALLER, creds)
    assert (await post_raw(env, body, headers)).status == 200
    async with (
        aiohttp.ClientSession() as s,
        s.post(env.url + "/oauth2/revoke", data={"token": creds[2]}) as r,
    ):
        assert r.status == 200
    reply = await post_raw(env, body, headers)
    assert (reply.status, reply.code) == (403, "InvalidClientTokenId")
    assert "session_revoked" in await last_failure(env)


async def test_session_token_of_another_credential_is_refused(env: Env) -> None:
    a = await issue(env)
    b = await issue(env)
    body, headers = sign(env, CALLER, (a[0], a[1], b[2]))
    reply = await post_raw(env, body, headers)
    assert (reply.status, reply.code) == (403, "InvalidClientTokenId")


async def test_external_id(env: Env) -> None:
    creds = await issue(env)
    params = {
        "Action": "AssumeRole",
        "Version": "2011-06-15",
        "RoleArn": arn("guarded"),
        "RoleSessionName": "guarded",
    }
    reply = await post_raw(env, *sign(env, params, creds))
    assert (reply.status, reply.code) == (403, "AccessDenied")
    reply = await post_raw(env, *sign(env, {**params, "ExternalId": "ext-123"}, creds))
    assert reply.status == 200, reply.message


async def test_web_identity_tags_and_source_identity(env: Env) -> None:
    token = env.idp.mint(
        {
            "sub": "user-1",
            "https://aws.amazon.com/tags": {
                "principal_tags": {"team": ["ci"], "env": ["prod"]},
                "transitive_tag_keys": ["team"],
            },
            "https://aws.amazon.com/source_identity": "user-1",
        }
    )
    reply = await post(env, web_identity(token))
    assert reply.status == 200, reply.message
    assert reply.root.findtext(f".//{NS}SourceIdentity") == "user-1"
    assert int(reply.root.findtext(f".//{NS}PackedPolicySize") or "0") >= 1
