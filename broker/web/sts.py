"""The AWS Query protocol for STS at ``POST /`` (``Action=...&Version=2011-06-15``).

Responses are shaped exactly as AWS STS's: ``<{Action}Response xmlns="https://sts.amazonaws.com/
doc/2011-06-15/"><{Action}Result>...</{Action}Result><ResponseMetadata><RequestId>`` and, for
errors, ``<ErrorResponse><Error><Type/><Code/><Message/></Error><RequestId/></ErrorResponse>``
with AWS's codes and HTTP statuses. Every request gets a fresh UUID ``RequestId`` (also in the
``x-amzn-RequestId`` header). Errors never leave this surface as HTML or JSON: every
``BrokerError`` is rendered here, every refusal is audited with its reason.

Actions: ``AssumeRoleWithWebIdentity`` (unsigned), ``AssumeRole``, ``GetCallerIdentity`` and
``GetSessionToken`` (SigV4-signed with broker credentials or an IAM user's access key:
``Authorization`` header form).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

from aiohttp import web

from broker.domain import sts as rules
from broker.errors import (
    BrokerError,
    IamInvalidInput,
    Overloaded,
    RequestTooLarge,
    StsError,
    StsInternalFailure,
    StsInvalidAction,
    StsInvalidParameterValue,
    StsRequestEntityTooLarge,
    StsServiceUnavailable,
)
from broker.service.audit import RequestInfo
from broker.service.sts import AssumeParams, IssuedCredentials, StsService
from broker.service.verified import Credential
from broker.web import iam
from broker.web.bodies import read_body
from broker.web.keys import BROKER
from broker.web.query_protocol import error_xml, xml_response
from broker.web.request_info import request_info

log = logging.getLogger(__name__)

ACTIONS = ("AssumeRoleWithWebIdentity", "AssumeRole", "GetCallerIdentity", "GetSessionToken")
SIGNED = frozenset({"AssumeRole", "GetCallerIdentity", "GetSessionToken"})
MAX_PARAMS = 500
MAX_BODY = 256 * 1024  # a request at AWS's own parameter limits is under 100 KiB


def error_response(err: BrokerError, request_id: str) -> web.Response:
    if not isinstance(err, StsError):
        if err.status == 500:  # the generic failure: no deliberate "try again later"
            err = StsInternalFailure(err.reason)
        elif err.status > 500:
            err = StsServiceUnavailable(err.reason, retry_after=err.retry_after)
        else:
            err = StsInvalidParameterValue(err.reason, public_message=err.public_message)
    return error_xml(err, rules.NAMESPACE, request_id)


def overloaded(request: web.Request, err: Overloaded) -> web.Response:
    """Refused for overload before any work (``broker.web.admission``): AWS's
    ``ServiceUnavailable`` in the dialect of the API called, told apart without reading the
    body by the signature's credential scope (``.../iam/aws4_request``: every IAM call is
    signed)."""
    unavailable = StsServiceUnavailable(err.reason, retry_after=err.retry_after)
    iam_call = "/iam/aws4_request" in request.headers.get("Authorization", "")
    return error_xml(unavailable, iam.NAMESPACE if iam_call else rules.NAMESPACE, str(uuid.uuid4()))


def _result(action: str, inner: str, request_id: str) -> web.Response:
    body = (
        f'<{action}Response xmlns="{rules.NAMESPACE}"><{action}Result>{inner}</{action}Result>'
        f"<ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata>"
        f"</{action}Response>"
    )
    return xml_response(200, body, request_id)


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _el(name: str, value: str | int | None) -> str:
    if value is None or value == "":
        return ""
    return f"<{name}>{escape(str(value))}</{name}>"


def _bare_credentials_xml(c: IssuedCredentials) -> str:
    return (
        "<Credentials>"
        f"{_el('AccessKeyId', c.access_key_id)}{_el('SecretAccessKey', c.secret_access_key)}"
        f"{_el('SessionToken', c.session_token)}{_el('Expiration', _iso(c.expiration))}"
        "</Credentials>"
    )


def _credentials_xml(c: IssuedCredentials) -> str:
    return (
        _bare_credentials_xml(c) + "<AssumedRoleUser>"
        f"{_el('AssumedRoleId', c.assumed_role_id)}{_el('Arn', c.assumed_role_arn)}"
        "</AssumedRoleUser>"
        f"{_el('PackedPolicySize', c.packed_policy_size)}"
    )


def parse_params(query: Mapping[str, str], body: bytes) -> dict[str, str]:
    """The request's parameters: the query string and the form body together, each name once."""
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_PARAMS)
    except (UnicodeDecodeError, ValueError):
        raise StsInvalidParameterValue(
            "malformed_form", public_message="The request body is not a valid form."
        ) from None
    params: dict[str, str] = {}
    for k, v in [*query.items(), *pairs]:
        if k in params:
            raise StsInvalidParameterValue(
                f"repeated_parameter:{k[:64]}", public_message=f"Parameter {k[:64]} is repeated."
            )
        params[k] = v
    return params


def assume_params(params: Mapping[str, str], *, signed: bool) -> AssumeParams:
    role_arn = rules.require(params, "RoleArn")
    session_name = rules.require(params, "RoleSessionName")
    tags: tuple[tuple[str, str], ...] = ()
    transitive: tuple[str, ...] = ()
    if signed:
        tags = tuple(rules.tag_pairs(params))
        transitive = tuple(rules.member_list(params, "TransitiveTagKeys"))
    return AssumeParams(
        role_arn=role_arn,
        session_name=session_name,
        duration=params.get("DurationSeconds"),
        policy=params.get("Policy"),
        policy_arns=tuple(rules.member_list(params, "PolicyArns", ".arn")),
        tags=tags,
        transitive_tag_keys=transitive,
        external_id=params.get("ExternalId") if signed else None,
        source_identity=params.get("SourceIdentity") if signed else None,
        # MFA for AssumeRole (signed); checked by StsService.check_mfa
        serial_number=params.get("SerialNumber") if signed else None,
        token_code=params.get("TokenCode") if signed else None,
    )


def _headers(request: web.Request) -> dict[str, Sequence[str]]:
    out: dict[str, list[str]] = {}
    for name, value in request.headers.items():
        out.setdefault(name.lower(), []).append(value)
    return dict(out)


async def query(request: web.Request) -> web.Response:
    """``POST /``: one STS action, or (``Version=2010-05-08``) one IAM action."""
    request_id = str(uuid.uuid4())
    render = error_response
    params: Mapping[str, str] = {}
    try:
        b = request.app[BROKER]
        req = request_info(request, b.settings.server.trusted_proxies)
        try:
            body = await read_body(request, MAX_BODY)
            params = parse_params(request.query, body)
        except BrokerError as e:
            if isinstance(e, RequestTooLarge):
                e = StsRequestEntityTooLarge(e.reason)
            elif iam.is_iam_request(body, request.query_string):
                render = iam.error_response  # an IAM client's broken form: IAM's dialect
                e = IamInvalidInput(e.reason, public_message=e.public_message)
            await b.auditor.record_batched(
                "iam.Unknown" if render is iam.error_response else "sts.Unknown",
                "failure",
                req=req,
                reason=e.reason,
                details={"request_id": request_id},
            )
            raise e from None
        if params.get("Version") == iam.VERSION:
            render = iam.error_response

            async def authenticate() -> Credential:
                return await _authenticate(request, body, service="iam")

            return await iam.handle(
                request, params, authenticate=authenticate, req=req, request_id=request_id
            )
        return await _handle(request, request_id, req, body, params)
    except BrokerError as e:
        return render(e, request_id)
    except Exception as e:
        iam_call = render is iam.error_response
        log.exception("AWS Query request %s failed", request_id)
        await _audit_internal_failure(request, request_id, params, e, iam_call=iam_call)
        namespace = iam.NAMESPACE if iam_call else rules.NAMESPACE
        return error_xml(
            StsInternalFailure(f"internal_failure:{type(e).__name__}"), namespace, request_id
        )


async def _audit_internal_failure(
    request: web.Request,
    request_id: str,
    params: Mapping[str, str],
    exc: Exception,
    *,
    iam_call: bool,
) -> None:
    """The audit row of a request that failed unexpectedly: under its action when it is one
    of ours, with the exception's type only (its text may quote anything). Never raises: the
    caller's answer is the 500 whatever happens here."""
    try:
        b = request.app[BROKER]
        action = params.get("Action", "")
        if iam_call:
            name = f"iam.{action if action in b.iam_api.actions else 'Unknown'}"
        else:
            name = f"sts.{action if action in ACTIONS else 'Unknown'}"
        await b.auditor.record(
            name,
            "failure",
            req=request_info(request, b.settings.server.trusted_proxies),
            reason=f"internal_failure:{type(exc).__name__}",
            details={"request_id": request_id, "code": StsInternalFailure.code},
        )
    except Exception:
        log.exception("could not audit the failure of AWS Query request %s", request_id)


async def _authenticate(request: web.Request, body: bytes, *, service: str) -> Credential:
    b = request.app[BROKER]
    path, _, raw_query = request.raw_path.partition("?")
    await b.credentials.learn_keys(request.headers.getall("X-Amz-Security-Token", ()))
    return await b.sts.authenticate(
        method=request.method,
        raw_path=path,
        raw_query=raw_query,
        headers=_headers(request),
        body=body,
        service=service,
    )


async def _handle(
    request: web.Request,
    request_id: str,
    req: RequestInfo,
    body: bytes,
    params: Mapping[str, str],
) -> web.Response:
    b = request.app[BROKER]
    service: StsService = b.sts
    action = "?"
    try:
        action = params.get("Action", "")
        version = params.get("Version", "")
        if action not in ACTIONS or version != rules.API_VERSION:
            raise StsInvalidAction(
                f"invalid_action:{action[:64]}:{version[:16]}",
                public_message=f"Could not find operation {action[:64]} for version {version[:16]}",
            )
        cred = None
        if action in SIGNED:
            cred = await _authenticate(request, body, service="sts")
        p = assume_params(params, signed=True) if action == "AssumeRole" else None
        token = ""
        if action == "AssumeRoleWithWebIdentity":
            p = assume_params(params, signed=False)
            token = rules.require(params, "WebIdentityToken")
    except BrokerError as e:
        await b.auditor.record_batched(
            f"sts.{action if action in ACTIONS else 'Unknown'}",
            "failure",
            req=req,
            reason=e.reason,
            details={"request_id": request_id},
        )
        raise

    if action == "GetCallerIdentity":
        assert cred is not None
        ident = service.caller_identity(cred)
        inner = (
            f"{_el('Arn', ident.arn)}{_el('UserId', ident.user_id)}{_el('Account', ident.account)}"
        )
        return _result(action, inner, request_id)
    if action == "GetSessionToken":
        assert cred is not None
        issued = await service.get_session_token(
            cred,
            req,
            duration=params.get("DurationSeconds"),
            serial_number=params.get("SerialNumber"),
            token_code=params.get("TokenCode"),
        )
        return _result(action, _bare_credentials_xml(issued), request_id)
    assert p is not None
    if action == "AssumeRole":
        assert cred is not None
        issued = await service.assume_role(cred, p, req)
        inner = _credentials_xml(issued) + _el("SourceIdentity", issued.source_identity)
        return _result(action, inner, request_id)
    issued = await service.assume_role_with_web_identity(token, p, req)
    inner = (
        _credentials_xml(issued)
        + _el("SubjectFromWebIdentityToken", issued.subject)
        + _el("Provider", issued.provider)
        + _el("Audience", issued.audience)
        + _el("SourceIdentity", issued.source_identity)
    )
    return _result(action, inner, request_id)
