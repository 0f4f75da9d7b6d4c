"""The CLI's authorization server pages and API (``docs/cli.md``): ``/oauth2/authorize`` (the
loopback flow's confirmation), ``/oauth2/device`` and ``/device`` (the device grant), and the
Bearer API ``GET /v1/roles`` and ``POST /v1/credentials``. The token endpoint's grants are in
``broker.web.oauth``; the use cases in ``broker.service.cli_sessions``.

``/oauth2/authorize`` never redirects anywhere but a checked loopback redirect URI: every
problem before that is an error page. Its confirmation is a CSRF-protected POST bound to the
signed-in session, so a page elsewhere cannot approve for the person.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from authlib.oauth2.rfc7636.challenge import CODE_CHALLENGE_PATTERN

from broker.domain import json_input
from broker.domain.cli_oauth import check_client, loopback_port, normalize_user_code
from broker.domain.redirects import MAX_REDIRECT_LENGTH
from broker.errors import (
    BrokerError,
    InvalidClient,
    InvalidRequest,
    RevocationStateStale,
    StoreError,
    StsAccessDenied,
    StsError,
    Unauthenticated,
)
from broker.service.cli_sessions import credential_process
from broker.service.verified import Credential
from broker.web.bodies import read_form, read_json_object
from broker.web.csrf import csrf_token
from broker.web.keys import BROKER, RENDERER
from broker.web.oauth import NO_STORE, as_oauth, bearer, oauth_error
from broker.web.pages import checked_form, current_session, info_of, redirect

AUTHORIZE_PARAMS = (
    "response_type",
    "client_id",
    "redirect_uri",
    "code_challenge",
    "code_challenge_method",
    "state",
)
MAX_STATE = 512
CARRIED = "cli_request"  # the authorize request, carried through /login?rd= (see _login_rd)
MAX_CARRIED_BYTES = MAX_REDIRECT_LENGTH
"""The carried request's JSON, at most: it travels base64url-encoded inside an ``rd=`` of at most
``MAX_REDIRECT_LENGTH`` characters, so one we wrote is always shorter."""


def _one(params: Any, name: str) -> str:
    """The one value of ``name`` in a query or form ("" if absent), not repeated."""
    values = params.getall(name, [])
    if len(values) > 1:
        raise InvalidRequest(f"repeated:{name}", public_message=f"{name} is repeated.")
    value = values[0] if values else ""
    if not isinstance(value, str):
        raise InvalidRequest(f"not_text:{name}")
    return value


def _authorize_params(params: Any) -> dict[str, str]:
    """The checked authorization request (RFC 6749 §4.1.1, RFC 7636 §4.3), redirect URI first:
    until it is known good, nothing may be sent to it."""
    p = {name: _one(params, name) for name in AUTHORIZE_PARAMS}
    check_client(p["client_id"])
    loopback_port(p["redirect_uri"])
    if p["response_type"] != "code":
        raise InvalidRequest("response_type", public_message="response_type must be code.")
    if p["code_challenge_method"] != "S256":
        raise InvalidRequest(
            f"code_challenge_method:{p['code_challenge_method'][:16]}",
            public_message="PKCE with code_challenge_method=S256 is required (plain is refused).",
        )
    if not CODE_CHALLENGE_PATTERN.match(p["code_challenge"]) or len(p["code_challenge"]) != 43:
        raise InvalidRequest(
            "code_challenge_malformed", public_message="code_challenge must be an S256 value."
        )
    if not p["state"] or len(p["state"]) > MAX_STATE or not p["state"].isprintable():
        raise InvalidRequest("state", public_message="state is required (at most 512 characters).")
    return p


def _login_rd(p: Mapping[str, str]) -> str:
    """``/login?rd=``'s value for this request. ``rd`` may not carry a ``redirect_uri`` (no
    nested redirects: ``safe_redirect``), so the request travels as one encoded parameter, and
    is checked again in full when it comes back."""
    packed = base64.urlsafe_b64encode(json.dumps(dict(p)).encode()).decode().rstrip("=")
    return "/oauth2/authorize?" + urlencode({CARRIED: packed})


class _Carried:
    """The carried request's parameters, with a ``getall`` like a query's. Anyone can send any
    bytes as ``cli_request``, so they are read as outside JSON (``json_input``: bounded size and
    depth, UTF-8, each member once), and every refusal is an ``InvalidRequest``."""

    def __init__(self, packed: str) -> None:
        try:
            raw = base64.urlsafe_b64decode(packed + "=" * (-len(packed) % 4))
        except (ValueError, binascii.Error) as e:
            raise InvalidRequest("cli_request_malformed:base64") from e
        try:
            self._data = json_input.loads_object(raw, max_bytes=MAX_CARRIED_BYTES)
        except json_input.JsonInputError as e:
            raise InvalidRequest(f"cli_request_malformed:{e.reason}") from None

    def getall(self, name: str, default: list[Any]) -> list[Any]:
        return [self._data[name]] if name in self._data else default


async def _refused(request: web.Request, action: str, e: BrokerError) -> None:
    await request.app[BROKER].auditor.record(
        action, "failure", req=info_of(request), reason=e.reason
    )


async def authorize_get(request: web.Request) -> web.StreamResponse:
    b = request.app[BROKER]
    try:
        carried = request.query.getall(CARRIED, [])
        if carried and len(request.query) > 1:  # the carried request comes alone, once
            raise InvalidRequest("cli_request_mixed")
        packed = carried[0] if carried else None
        p = _authorize_params(_Carried(packed) if packed is not None else request.query)
    except BrokerError as e:
        await _refused(request, "cli.authorize", e)
        raise
    ctx = await current_session(request)
    if ctx is None:
        return redirect("/login?" + urlencode({"rd": _login_rd(p)}))
    return request.app[RENDERER].page(
        "cli_authorize.html",
        who=ctx.email or ctx.subject,
        port=loopback_port(p["redirect_uri"]),
        params=sorted(p.items()),
        csrf=csrf_token(b.csrf_key, "cli-authorize", ctx.session_id),
    )


async def authorize_post(request: web.Request) -> web.StreamResponse:
    b = request.app[BROKER]
    ctx = await current_session(request)
    if ctx is None:
        e = Unauthenticated("no_session", public_message="You are not signed in.")
        await _refused(request, "cli.authorize", e)
        raise e
    form = await checked_form(
        request,
        purpose="cli-authorize",
        binding=ctx.session_id,
        action="cli.authorize",
        principal=f"{ctx.provider}/{ctx.subject}",
    )
    try:
        p = _authorize_params(form)
        decision = _one(form, "decision")
        if decision not in ("approve", "deny"):
            raise InvalidRequest("decision", public_message="Approve or deny.")
    except BrokerError as e:
        await _refused(request, "cli.authorize", e)
        raise
    redirect_uri, state = p["redirect_uri"], p["state"]
    if decision == "deny":
        await b.auditor.record(
            "cli.authorize",
            "failure",
            req=info_of(request),
            principal=f"{ctx.provider}/{ctx.subject}",
            reason="denied_by_user",
        )
        return redirect(f"{redirect_uri}?{urlencode({'error': 'access_denied', 'state': state})}")
    try:
        code = await b.cli.issue_code(ctx, redirect_uri, p["code_challenge"], info_of(request))
    except BrokerError as e:  # AuditUnavailable: no code, the 503 page
        await _refused(request, "cli.authorize", e)
        raise
    return redirect(f"{redirect_uri}?{urlencode({'code': code, 'state': state})}")


# --- the device grant ------------------------------------------------------------------------


async def device_authorization(request: web.Request) -> web.Response:
    """RFC 8628 §3.1-3.2."""
    b = request.app[BROKER]
    try:
        form = await read_form(request)
        client_id = _one(form, "client_id")
        try:
            check_client(client_id)
        except InvalidRequest as e:
            raise InvalidClient(e.reason, public_message=e.public_message) from e
    except BrokerError as e:
        await _refused(request, "cli.device", e)
        return oauth_error(e)
    try:
        started = await b.cli.start_device(info_of(request))
    except StoreError as e:  # AuditUnavailable: nothing started
        await _refused(request, "cli.device", e)
        return oauth_error(as_oauth(e))
    base = b.settings.server.public_url
    return web.json_response(
        {
            "device_code": started.device_code,
            "user_code": started.user_code,
            "verification_uri": f"{base}/device",
            "verification_uri_complete": f"{base}/device?"
            + urlencode({"user_code": started.user_code}),
            "expires_in": started.expires_in,
            "interval": started.interval,
        },
        headers=NO_STORE,
    )


def _when(at: float) -> dict[str, str]:
    t = datetime.fromtimestamp(at, UTC)
    return {"iso": t.isoformat(timespec="seconds"), "text": t.strftime("%d %b %Y, %H:%M:%S UTC")}


def _device_form(
    request: web.Request,
    ctx: Credential,
    *,
    user_code: str = "",
    error: str = "",
    status: int = 200,
) -> web.Response:
    b = request.app[BROKER]
    return request.app[RENDERER].page(
        "device.html",
        status=status,
        who=ctx.email or ctx.subject,
        done="",
        request=None,
        error=error,
        user_code=user_code,
        csrf=csrf_token(b.csrf_key, "device", ctx.session_id),
    )


def _device_binding(ctx: Credential, code: str) -> str:
    return f"{ctx.session_id}:{code}"


async def device_get(request: web.Request) -> web.StreamResponse:
    ctx = await current_session(request)
    code = request.query.get("user_code", "")[:32]
    if ctx is None:
        rd = "/device" + (("?" + urlencode({"user_code": code})) if code else "")
        return redirect("/login?" + urlencode({"rd": rd}))
    return _device_form(request, ctx, user_code=code)


async def device_post(request: web.Request) -> web.StreamResponse:
    """The user code entered: the request's origin, and the decision form."""
    b = request.app[BROKER]
    ctx = await current_session(request)
    if ctx is None:
        e = Unauthenticated("no_session", public_message="You are not signed in.")
        await _refused(request, "cli.device.lookup", e)
        raise e
    form = await checked_form(
        request,
        purpose="device",
        binding=ctx.session_id,
        action="cli.device.lookup",
        principal=f"{ctx.provider}/{ctx.subject}",
    )
    entered = str(form.get("user_code", ""))[:32]
    try:
        pending = await b.cli.device_request(ctx, entered, info_of(request))
    except InvalidRequest as e:
        return _device_form(request, ctx, user_code=entered, error=e.public_message, status=400)
    code = normalize_user_code(pending.user_code)
    return request.app[RENDERER].page(
        "device.html",
        who=ctx.email or ctx.subject,
        done="",
        request=pending,
        at=_when(pending.requested_at),
        csrf=csrf_token(b.csrf_key, "device-decide", _device_binding(ctx, code)),
    )


async def device_decide(request: web.Request) -> web.StreamResponse:
    b = request.app[BROKER]
    ctx = await current_session(request)
    if ctx is None:
        e = Unauthenticated("no_session", public_message="You are not signed in.")
        await _refused(request, "cli.device.approve", e)
        raise e
    try:
        form = await read_form(request)  # the code first: the CSRF token is bound to it
    except InvalidRequest as e:
        await _refused(request, "cli.device.approve", e)
        raise
    code = normalize_user_code(str(form.get("user_code", "")))
    await checked_form(
        request,
        purpose="device-decide",
        binding=_device_binding(ctx, code) if code else "",
        action="cli.device.approve",
        principal=f"{ctx.provider}/{ctx.subject}",
    )
    decision = str(form.get("decision", ""))
    if decision not in ("approve", "deny"):
        bad = InvalidRequest("decision", public_message="Approve or deny.")
        await _refused(request, "cli.device.approve", bad)
        raise bad
    approve = decision == "approve"
    try:
        await b.cli.decide_device(ctx, code, approve=approve, req=info_of(request))
    except InvalidRequest as e:
        return _device_form(request, ctx, error=e.public_message, status=400)
    done = "Device signed in" if approve else "Request denied"
    return request.app[RENDERER].page(
        "device.html", who=ctx.email or ctx.subject, done=done, request=None
    )


# --- the Bearer API: roles and role credentials ------------------------------------------------


def _api_error(code: str, description: str, status: int) -> web.Response:
    headers = dict(NO_STORE)
    if status == 401:
        headers["WWW-Authenticate"] = f'Bearer realm="broker", error="{code}"'
    return web.json_response(
        {"error": code, "error_description": description}, status=status, headers=headers
    )


async def _session_bearer(request: web.Request, action: str) -> Credential | web.Response:
    """The caller's broker *session* (the CLI's access token), or the 401/503 to answer."""
    b = request.app[BROKER]
    value = bearer(request)
    try:
        if value is None:
            raise Unauthenticated("no_bearer")
        await b.sessions.keyring.learn(value)
        cred = b.sessions.verify(value)
    except Unauthenticated as e:
        await b.auditor.record_batched(action, "failure", req=info_of(request), reason=e.reason)
        return _api_error("invalid_token", "A live broker session token is required.", 401)
    except RevocationStateStale as e:
        await b.auditor.record_batched(action, "failure", req=info_of(request), reason=e.reason)
        return _api_error("temporarily_unavailable", e.public_message, 503)
    return cred


async def roles_api(request: web.Request) -> web.Response:
    b = request.app[BROKER]
    ctx = await _session_bearer(request, "cli.roles")
    if isinstance(ctx, web.Response):
        return ctx
    found = await b.cli.roles(ctx, info_of(request))
    return web.json_response(
        {
            "roles": [
                {"name": c.role.name, "arn": c.arn, "description": c.role.description}
                for c in found
            ]
        },
        headers=NO_STORE,
    )


def _credentials_request(body: Mapping[str, Any]) -> tuple[str, int | None]:
    unknown = set(body) - {"role", "duration_seconds"}
    if unknown:
        raise InvalidRequest(
            "unknown_member", public_message=f"Unknown member: {sorted(unknown)[0][:40]}."
        )
    role = body.get("role")
    if not isinstance(role, str) or not role:
        raise InvalidRequest("role_missing", public_message="role (a role name) is required.")
    duration = body.get("duration_seconds")
    if duration is not None and (isinstance(duration, bool) or not isinstance(duration, int)):
        raise InvalidRequest(
            "duration_not_integer", public_message="duration_seconds must be an integer."
        )
    return role, duration


async def credentials_api(request: web.Request) -> web.Response:
    b = request.app[BROKER]
    action = "cli.credentials"
    ctx = await _session_bearer(request, action)
    if isinstance(ctx, web.Response):
        return ctx
    try:
        try:
            body = await read_json_object(request, 4096)
            role, duration = _credentials_request(body)
        except BrokerError as e:
            await b.auditor.record_batched(action, "failure", req=info_of(request), reason=e.reason)
            raise
        issued = await b.cli.credentials(ctx, role, duration, info_of(request))
    except StsAccessDenied as e:
        return _api_error("access_denied", e.public_message, 403)
    except StsError as e:
        if e.status >= 500:
            return _api_error("temporarily_unavailable", e.public_message, 503)
        if e.code in ("InvalidClientTokenId", "ExpiredToken"):
            return _api_error("invalid_token", e.public_message, 401)
        return _api_error("invalid_request", e.public_message, 400)
    except RevocationStateStale as e:
        return _api_error("temporarily_unavailable", e.public_message, 503)
    except InvalidRequest as e:
        return _api_error("invalid_request", e.public_message, e.status)
    return web.json_response(credential_process(issued), headers=NO_STORE)
