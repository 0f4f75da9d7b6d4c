"""``POST /v1/authorize`` (C3): "may this credential do action A on resource R?".

The credential is the ``Authorization: Bearer`` token (a browser session token or an STS
SessionToken); the JSON body is ``{"action": ..., "resource": ..., "context": {...}}``; the answer
is ``{"decision", "matched_statements"}`` as in C6, decided by the role's identity policies, its
permissions boundary and the credential's session policies, in memory. Whoever holds a credential
may ask about it.

Context keys the broker derives from the credential itself (``PrincipalArn``, ``PrincipalTag/*``,
``userid``, ``username``, ``SourceIdentity``, ``TokenIssueTime``, ``MultiFactorAuth*``) or knows
better than any caller (``CurrentTime``, ``EpochTime``) cannot be supplied: that would let a
caller forge its own attributes or step outside a time window (400). Request attributes only the
app knows (``SourceIp`` of its end user, ``RequestTag/*``, resource attributes) may be.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from broker.domain.claims import ContextValue
from broker.errors import RevocationStateStale, Unauthenticated
from broker.service.verified import Credential
from broker.web.bodies import BodyError, read_json_object
from broker.web.keys import BROKER
from broker.web.oauth import NO_STORE, bearer
from broker.web.request_info import client_ip, request_info

MAX_BODY = 64 * 1024
AUDIT_ACTION = "authorize"
MAX_CONTEXT_KEYS = 100
_RESERVED = (
    "principalarn",
    "principaltag/",
    "userid",
    "username",
    "sourceidentity",
    "tokenissuetime",
    "multifactorauth",
    "currenttime",
    "epochtime",
)


def _error(status: int, code: str, description: str) -> web.Response:
    headers = dict(NO_STORE)
    if status == 401:
        headers["WWW-Authenticate"] = f'Bearer realm="broker", error="{code}"'
    return web.json_response(
        {"error": code, "error_description": description}, status=status, headers=headers
    )


def _context(raw: Any) -> dict[str, ContextValue] | str:
    """The caller's context, or the problem with it."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        return "context must be an object"
    if len(raw) > MAX_CONTEXT_KEYS:
        return f"context may hold at most {MAX_CONTEXT_KEYS} keys"
    out: dict[str, ContextValue] = {}
    for key, value in raw.items():
        if not isinstance(key, str) or not key or len(key) > 256 or ":" not in key:
            return "context keys are 'prefix:Name' strings"
        name = key.split(":", 1)[1].lower()
        if key.split(":", 1)[0].lower() in ("aws", "broker") and name.startswith(_RESERVED):
            return f"context key {key} is set by the broker from the credential"
        if isinstance(value, str):
            out[key] = value
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            out[key] = list(value)
        else:
            return f"context value of {key} must be a string or a list of strings"
    return out


def _question(doc: dict[str, Any]) -> tuple[str, str, dict[str, ContextValue]] | str:
    """(action, resource, the caller's context) of the body, or the problem with it."""
    action, resource = doc.get("action"), doc.get("resource")
    if not isinstance(action, str) or ":" not in action or len(action) > 256:
        return "action must be a 'service:Action' string."
    if not isinstance(resource, str) or not resource or len(resource) > 2048:
        return "resource must be a non-empty string."
    extra = _context(doc.get("context"))
    return extra if isinstance(extra, str) else (action, resource, extra)


async def authorize(request: web.Request) -> web.Response:
    b = request.app[BROKER]
    token = bearer(request)
    if token is None:
        return _error(401, "invalid_token", "Send the credential as Authorization: Bearer.")
    try:
        cred: Credential = await b.credentials.verify_fresh(token)
    except Unauthenticated:
        return _error(401, "invalid_token", "The credential is not valid.")
    except RevocationStateStale as e:
        return _error(503, e.code, e.public_message)
    if request.content_length is not None and request.content_length > MAX_BODY:
        await _refused(request, cred.role_arn, "body_too_large")
        return _error(413, "invalid_request", "The body is too large.")
    try:
        doc = await read_json_object(request, MAX_BODY)
    except BodyError as e:
        await _refused(request, cred.role_arn, e.reason)
        return _error(e.status, "invalid_request", e.public_message)
    parsed = _question(doc)
    if isinstance(parsed, str):
        await _refused(request, cred.role_arn, f"bad_request:{parsed[:80]}")
        return _error(400, "invalid_request", parsed)
    action, resource, extra = parsed
    principal = cred.principal
    await b.authorizer.prepare(principal)  # an IAM user's, compiled on first use
    context = b.authorizer.context_for(
        principal,
        source_ip=client_ip(request, b.settings.server.trusted_proxies),
        extra=extra,
    )
    d = b.authorizer.decide(
        principal,
        action=action,
        resource=resource,
        context=context,
        session_policies=cred.session_policies,
    )
    if d.allowed:
        b.activity.note(cred.role_arn, action, resource)
    return web.json_response(d.to_dict(), headers=NO_STORE)


async def _refused(request: web.Request, principal: str, reason: str) -> None:
    """A request refused before any decision, audited (batched: this is a hot path)."""
    b = request.app[BROKER]
    await b.auditor.record_batched(
        AUDIT_ACTION,
        "failure",
        req=request_info(request, b.settings.server.trusted_proxies),
        principal=principal,
        reason=reason,
    )
