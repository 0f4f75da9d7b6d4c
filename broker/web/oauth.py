"""OAuth 2.0 endpoints for broker tokens: RFC 8693 token exchange (``POST /oauth2/token``), RFC 7662
introspection (``POST /oauth2/introspect``) and RFC 7009 revocation (``POST /oauth2/revoke``).

Errors are OAuth JSON (RFC 6749 §5.2): ``{"error", "error_description"}``, ``Cache-Control:
no-store``, rendered by authlib's ``OAuth2Error``. Who may call what:

- token exchange needs no client authentication: the subject token is the proof, as for
  ``AssumeRoleWithWebIdentity``; the role's trust policy decides.
- introspection needs a broker credential in ``Authorization: Bearer`` (else 401
  ``invalid_client``). A token is reported active only to its own holder, or to a caller whose
  permissions allow ``sts:IntrospectToken`` on the token's role ARN; to anyone else it is
  ``{"active": false}`` (RFC 7662 §2.2 permits this, and it stops token scanning).
- revocation needs only the token: whoever holds a token may revoke it (RFC 7009 §2.1 allows
  this for tokens not bound to a confidential client, and a holder could use it anyway).
  Invalid or unknown tokens get 200 (§2.2); an IdP's token gets ``unsupported_token_type``.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.base import invalid_error_characters
from authlib.oauth2.rfc8628 import DEVICE_CODE_GRANT_TYPE
from multidict import MultiDictProxy

from broker.domain import sts as rules
from broker.domain.cli_oauth import check_client
from broker.errors import (
    BrokerError,
    InvalidClient,
    InvalidGrant,
    InvalidRequest,
    InvalidScope,
    InvalidTarget,
    OAuthError,
    Overloaded,
    StsAccessDenied,
    StsError,
    StsIDPCommunicationError,
    StsServiceUnavailable,
    TemporarilyUnavailable,
    Unauthenticated,
    UnsupportedGrantType,
    UnsupportedTokenType,
)
from broker.service.credentials import peek_typ
from broker.service.sts import BROKER_TYPS
from broker.service.verified import Credential
from broker.web.bodies import read_form
from broker.web.keys import BROKER
from broker.web.request_info import request_info

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
TT_ID_TOKEN = "urn:ietf:params:oauth:token-type:id_token"
TT_JWT = "urn:ietf:params:oauth:token-type:jwt"
TT_ACCESS_TOKEN = "urn:ietf:params:oauth:token-type:access_token"
SUBJECT_TYPES = {TT_ID_TOKEN: "id_token", TT_JWT: "jwt", TT_ACCESS_TOKEN: "access_token"}
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
CLI_GRANTS = {
    "authorization_code": "authorization_code",
    "refresh_token": "refresh_token",
    DEVICE_CODE_GRANT_TYPE: "device_code",
}
CLI_PARAMS = {
    "authorization_code": ("client_id", "code", "redirect_uri", "code_verifier"),
    "refresh_token": ("client_id", "refresh_token"),
    DEVICE_CODE_GRANT_TYPE: ("client_id", "device_code"),
}
_OAUTH_PARAMS = (
    "grant_type",
    "subject_token",
    "subject_token_type",
    "requested_token_type",
    "actor_token",
    "actor_token_type",
    "scope",
)


def oauth_error(err: BrokerError) -> web.Response:
    """RFC 6749 §5.2's error response, as authlib's ``OAuth2Error`` makes it (body, status and
    its no-store headers). The description keeps only the characters §5.2 allows."""
    description = "".join(c for c in err.public_message if not invalid_error_characters(c))
    status, body, pairs = OAuth2Error(
        error=err.code, description=description, status_code=err.status
    )()
    headers = {k: v for k, v in pairs if k.lower() != "content-type"}  # json_response sets it
    if isinstance(err, InvalidClient):
        headers["WWW-Authenticate"] = 'Bearer realm="broker"'
    if err.retry_after is not None:
        headers["Retry-After"] = str(max(1, err.retry_after))
    return web.json_response(body, status=status, headers=headers)


def overloaded(request: web.Request, err: Overloaded) -> web.Response:
    """Refused for overload before any work (``broker.web.admission``): RFC 6749 §4.1.2.1's
    ``temporarily_unavailable``, 503 with ``Retry-After``; also the JSON APIs' refusal."""
    return oauth_error(TemporarilyUnavailable(err.reason, retry_after=err.retry_after))


def as_oauth(err: BrokerError) -> BrokerError:
    """An STS refusal in OAuth terms (RFC 8693 §2.2.2); OAuth errors pass through."""
    if isinstance(err, OAuthError | InvalidRequest):
        return err
    if isinstance(err, StsAccessDenied):
        return InvalidTarget(err.reason)
    if isinstance(err, StsIDPCommunicationError | StsServiceUnavailable) or err.status >= 500:
        return TemporarilyUnavailable(err.reason, retry_after=err.retry_after)
    if isinstance(err, StsError) and err.code in (
        "ValidationError",
        "MissingParameter",
        "InvalidParameterValue",
        "MalformedPolicyDocument",
        "PackedPolicyTooLarge",
    ):
        return InvalidRequest(err.reason, public_message=err.public_message)
    return InvalidGrant(err.reason)


def _single(form: MultiDictProxy[str | Any], name: str) -> str | None:
    values = form.getall(name, [])
    if len(values) > 1:
        raise InvalidRequest(f"repeated:{name}", public_message=f"{name} is repeated.")
    if not values:
        return None
    value = values[0]
    if not isinstance(value, str):
        raise InvalidRequest(f"not_text:{name}")
    return value


def _invalid_request(reason: str, message: str) -> InvalidRequest:
    return InvalidRequest(reason, public_message=message)


def _target_role(form: MultiDictProxy[str | Any], account_id: str, public_url: str) -> str:
    """The one role ARN named by ``resource`` (RFC 8707) and/or ``scope=role:<name>``."""
    roles: set[str] = set()
    for value in form.getall("resource", []):
        if not isinstance(value, str):
            raise _invalid_request("resource_not_text", "resource must be text.")
        try:
            name = rules.parse_role_arn(value, account_id)
        except StsError as e:
            raise InvalidTarget(f"resource:{e.reason}") from e
        roles.add(rules.role_arn(account_id, name))
    scope = _single(form, "scope")
    for item in (scope or "").split():
        if not item.startswith("role:") or len(item) > 69:
            raise InvalidScope(f"scope:{item[:64]}")
        roles.add(rules.role_arn(account_id, item[len("role:") :]))
    for value in form.getall("audience", []):
        if value != public_url:
            raise InvalidTarget("audience_not_broker")
    if not roles:
        raise _invalid_request(
            "no_target", "Name the role with resource=<role ARN> or scope=role:<name>."
        )
    if len(roles) > 1:
        raise InvalidTarget("several_roles")
    return roles.pop()


async def token(request: web.Request) -> web.Response:
    """RFC 8693 §2.1 token exchange."""
    b = request.app[BROKER]
    req = request_info(request, b.settings.server.trusted_proxies)
    try:
        try:
            form = await read_form(request)
            grant_type = _single(form, "grant_type")
            if grant_type is None:
                raise _invalid_request("missing:grant_type", "grant_type is required.")
            if grant_type in CLI_GRANTS:
                return await _cli_grant(request, grant_type, form)
            if grant_type != TOKEN_EXCHANGE:
                raise UnsupportedGrantType(f"grant_type:{grant_type[:80]}")
            for name in _OAUTH_PARAMS:
                _single(form, name)
            subject_token = _single(form, "subject_token")
            subject_type = _single(form, "subject_token_type")
            if not subject_token or not subject_type:
                raise _invalid_request(
                    "missing:subject_token", "subject_token and subject_token_type are required."
                )
            kind = SUBJECT_TYPES.get(subject_type)
            if kind is None:
                raise _invalid_request(
                    f"subject_token_type:{subject_type[:80]}",
                    "subject_token_type must be the id_token, jwt or access_token type.",
                )
            if form.get("actor_token") is not None:
                raise _invalid_request("actor_token", "Delegation (actor_token) is not supported.")
            requested = _single(form, "requested_token_type")
            if requested not in (None, TT_ACCESS_TOKEN, TT_JWT):
                raise _invalid_request(
                    "requested_token_type", "Only access tokens (JWTs) can be issued."
                )
            role_arn = _target_role(
                form, b.settings.server.account_id, b.settings.server.public_url
            )
        except BrokerError as e:
            await b.auditor.record_batched(
                "oauth2.token_exchange", "failure", req=req, reason=e.reason
            )
            raise
        issued = await b.sts.exchange(subject_token, kind, role_arn, req)
    except BrokerError as e:
        return oauth_error(as_oauth(e))
    return web.json_response(
        {
            "access_token": issued.session_token,
            "issued_token_type": requested or TT_ACCESS_TOKEN,
            "token_type": "Bearer",
            # whole seconds from the second it was issued in (``exp`` is whole seconds, ``iat``
            # to the millisecond): the requested duration, as before ``iat`` had milliseconds
            "expires_in": int(issued.expiration - int(issued.issued_at)),
            "scope": f"role:{issued.role_arn.rsplit('/', 1)[-1]}",
        },
        headers=NO_STORE,
    )


async def _cli_grant(
    request: web.Request, grant_type: str, form: MultiDictProxy[str | Any]
) -> web.Response:
    """The ``broker-cli`` public client's grants (``broker.service.cli_sessions``). Refusals
    are audited by the service (parameter problems here)."""
    b = request.app[BROKER]
    req = request_info(request, b.settings.server.trusted_proxies)
    action = f"cli.token.{CLI_GRANTS[grant_type]}"
    try:
        try:
            params = {name: _single(form, name) or "" for name in CLI_PARAMS[grant_type]}
            try:
                check_client(params["client_id"])
            except InvalidRequest as e:
                raise InvalidClient(e.reason, public_message=e.public_message) from e
            missing = [k for k, v in params.items() if not v]
            if missing:
                raise _invalid_request(f"missing:{missing[0]}", f"{missing[0]} is required.")
        except BrokerError as e:
            await b.auditor.record_batched(action, "failure", req=req, reason=e.reason)
            raise
        if grant_type == "authorization_code":
            issued = await b.cli.redeem_code(
                params["code"], params["redirect_uri"], params["code_verifier"], req
            )
        elif grant_type == "refresh_token":
            issued = await b.cli.refresh(params["refresh_token"], req)
        else:
            issued = await b.cli.poll_device(params["device_code"], req)
    except BrokerError as e:
        return oauth_error(as_oauth(e))
    return web.json_response(issued.as_json(), headers=NO_STORE)


def bearer(request: web.Request) -> str | None:
    auth = request.headers.get("Authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


async def _caller(request: web.Request) -> Credential:
    value = bearer(request)
    if value is None:
        raise InvalidClient("no_bearer")
    try:
        cred: Credential = await request.app[BROKER].credentials.verify_fresh(value)
    except Unauthenticated as e:
        raise InvalidClient(f"bearer:{e.reason}") from e
    return cred


async def introspect(request: web.Request) -> web.Response:
    """RFC 7662 §2."""
    b = request.app[BROKER]
    try:
        caller = await _caller(request)
        form = await read_form(request)
        value = _single(form, "token")
        if not value:
            raise _invalid_request("missing:token", "token is required.")
    except BrokerError as e:
        req = request_info(request, b.settings.server.trusted_proxies)
        await b.auditor.record_batched("oauth2.introspect", "failure", req=req, reason=e.reason)
        return oauth_error(as_oauth(e))
    await b.credentials.learn_keys((value,))
    return web.json_response(b.sts.introspect(caller, value), headers=NO_STORE)


async def revoke(request: web.Request) -> web.Response:
    """RFC 7009 §2."""
    b = request.app[BROKER]
    req = request_info(request, b.settings.server.trusted_proxies)
    try:
        try:
            form = await read_form(request)
            value = _single(form, "token")
            if not value:
                raise _invalid_request("missing:token", "token is required.")
            typ = peek_typ(value)
            if typ and typ not in BROKER_TYPS:
                raise UnsupportedTokenType(f"typ:{typ[:40]}")
        except BrokerError as e:
            await b.auditor.record("oauth2.revoke", "failure", req=req, reason=e.reason)
            raise
        if not typ:  # opaque: a CLI refresh token, or nothing of ours (200 either way)
            if not await b.cli.revoke_refresh(value, req):
                await b.auditor.record("oauth2.revoke", "failure", req=req, reason="unknown")
            return web.Response(status=200, headers=NO_STORE)
        if await b.cli.revoke_cli_access_token(value, req):
            return web.Response(status=200, headers=NO_STORE)
        await b.sts.revoke(value, req)
    except BrokerError as e:
        return oauth_error(as_oauth(e))
    return web.Response(status=200, headers=NO_STORE)
