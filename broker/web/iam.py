"""The IAM Query API at ``POST /`` with ``Version=2010-05-08`` (SigV4, scope service ``iam``).

``broker/web/sts.py`` reads and parses the request once and hands IAM's here. Parameters are
checked against botocore's model of IAM (``query_protocol``); the caller is the broker
credential that signed the request; ``IamApi`` authorizes and runs the action. Answers and
errors are IAM's XML with a fresh ``RequestId``; every refusal is audited.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence

from aiohttp import web
from botocore.model import OperationModel, OperationNotFoundError

from broker.errors import (
    BrokerError,
    IamError,
    IamServiceFailure,
    StsError,
    StsInvalidAction,
    StsServiceUnavailable,
)
from broker.service.audit import RequestInfo
from broker.service.iam_api import Caller
from broker.service.iam_api.api import as_iam_error
from broker.service.verified import Credential
from broker.web.keys import BROKER
from broker.web.query_protocol import (
    decode_request,
    encode_response,
    error_xml,
    service_model,
    xml_response,
)

log = logging.getLogger(__name__)

VERSION = "2010-05-08"
NAMESPACE = "https://iam.amazonaws.com/doc/2010-05-08/"


def is_iam_request(body: bytes, query_string: str) -> bool:
    """An IAM call, told even from a form that does not parse (to answer in IAM's dialect)."""
    return b"Version=2010-05-08" in body or "Version=2010-05-08" in query_string


def error_response(err: BrokerError, request_id: str) -> web.Response:
    if not isinstance(err, StsError):
        err = as_iam_error(err)
    if not isinstance(err, StsError):
        if err.status > 500:  # a deliberate "try again later" (audit unavailable, stale state)
            err = StsServiceUnavailable(err.reason, retry_after=err.retry_after)
        else:
            err = IamServiceFailure(err.reason)
    return error_xml(err, NAMESPACE, request_id)


def _operation(action: str, known: Mapping[str, object]) -> OperationModel:
    if action in known:
        try:
            return service_model("iam").operation_model(action)
        except OperationNotFoundError:
            pass
    raise StsInvalidAction(
        f"invalid_action:{action[:64]}",
        public_message=f"Could not find operation {action[:64]} for version {VERSION}",
    )


async def handle(
    request: web.Request,
    params: Mapping[str, str],
    *,
    authenticate: Callable[[], Awaitable[Credential]],
    req: RequestInfo,
    request_id: str,
) -> web.Response:
    """One IAM action; ``authenticate`` returns the credential that signed the request (or
    raises the signing error AWS would give)."""
    b = request.app[BROKER]
    api = b.iam_api
    action = params.get("Action", "")
    caller_arn = ""
    try:
        operation = _operation(action, api.actions)
        cred = await authenticate()
        caller_arn = b.sts.caller_identity(cred).arn
        caller = Caller(arn=caller_arn, actor=caller_arn, credential=cred)
        flat = {k: v for k, v in params.items() if k not in ("Action", "Version")}
        typed = decode_request(operation, flat)
    except BrokerError as e:
        await b.auditor.record(
            f"iam.{action if action in api.actions else 'Unknown'}",
            "failure",
            req=req,
            principal=caller_arn,
            reason=e.reason,
            details={"request_id": request_id, "code": getattr(e, "code", "")},
        )
        raise
    result = await api.call(caller, action, typed, req)
    return xml_response(200, encode_response(operation, result, request_id), request_id)


def headers_of(request: web.Request) -> dict[str, Sequence[str]]:
    out: dict[str, list[str]] = {}
    for name, value in request.headers.items():
        out.setdefault(name.lower(), []).append(value)
    return dict(out)


__all__ = ["VERSION", "IamError", "error_response", "handle", "headers_of"]
