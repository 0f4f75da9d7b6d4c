"""``/session`` as a portal (issue 14): who you are, the roles you may take (switch without
signing out), and each role's command line access: credentials minted on a CSRF-checked POST
through the same service method as ``POST /v1/credentials``, with this browser's session as
their origin (signing out ends them), and the ``credential_process`` profile for the CLI."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from urllib.parse import urlencode

from aiohttp import web

from broker.errors import InvalidRequest, StsError, Unauthenticated
from broker.service.roles import Candidate
from broker.service.sts import IssuedCredentials
from broker.service.verified import Credential
from broker.web.csrf import csrf_token
from broker.web.keys import BROKER, RENDERER
from broker.web.pages import (
    COOKIES,
    checked_form,
    current_session,
    info_of,
    redirect,
    session_json,
    when,
)
from broker.web.render import wants_json

REGION = "us-east-1"  # the broker answers in any region; SDKs need one set


def _principal(ctx: Credential) -> str:
    return f"{ctx.provider}/{ctx.subject}"


async def _signed_in(request: web.Request, action: str) -> Credential:
    ctx = await current_session(request)
    if ctx is None:
        e = Unauthenticated("no_session", public_message="You are not signed in.")
        await request.app[BROKER].auditor.record(
            action, "failure", req=info_of(request), reason=e.reason
        )
        raise e
    return ctx


def _role_form(form: Mapping[str, object]) -> str:
    role = form.get("role")
    if not isinstance(role, str) or not role or len(role) > 128:
        raise InvalidRequest("role_missing", public_message="Choose a role.")
    return role


def _profile(role: str, url: str) -> str:
    return f"[profile {role}]\ncredential_process = broker credentials --role {role} --url {url}"


def _exports(issued: IssuedCredentials) -> str:
    return "\n".join(
        (
            f"export AWS_ACCESS_KEY_ID={issued.access_key_id}",
            f"export AWS_SECRET_ACCESS_KEY={issued.secret_access_key}",
            f"export AWS_SESSION_TOKEN={issued.session_token}",
            f"export AWS_DEFAULT_REGION={REGION}",
        )
    )


async def _page(
    request: web.Request,
    ctx: Credential,
    *,
    issued: IssuedCredentials | None = None,
    for_role: str = "",
    error: str = "",
    status: int = 200,
) -> web.Response:
    b = request.app[BROKER]
    found: Sequence[Candidate] = await b.cli.roles(ctx, info_of(request))
    url = b.settings.server.public_url
    now = b.clock.now()
    roles = [
        {
            "name": c.role.name,
            "arn": c.arn,
            "description": c.role.description,
            "current": c.arn == ctx.role_arn,
            "profile": _profile(c.role.name, url),
            "open": c.role.name == for_role,
        }
        for c in found
    ]
    return request.app[RENDERER].page(
        "session.html",
        status=status,
        s=session_json(ctx),
        local=ctx.provider == b.login.local_provider(),
        expires=when(ctx.session_expires_at, now),
        csrf=csrf_token(b.csrf_key, "logout", ctx.session_id),
        portal_csrf=csrf_token(b.csrf_key, "portal", ctx.session_id),
        roles=roles,
        url=url,
        for_role=for_role,
        error=error,
        exports=_exports(issued) if issued else "",
        issued_expires=when(issued.expiration, now) if issued else None,
    )


async def session_get(request: web.Request) -> web.StreamResponse:
    ctx = await current_session(request)
    if ctx is None:
        if wants_json(request):
            raise Unauthenticated("no_session")
        raise web.HTTPSeeOther("/login?" + urlencode({"rd": "/session"}))
    if wants_json(request):
        data = session_json(ctx)
        found = await request.app[BROKER].cli.roles(ctx, info_of(request))
        data["roles"] = [{"name": c.role.name, "arn": c.arn} for c in found]
        return web.json_response(data, headers={"Cache-Control": "no-store"})
    return await _page(request, ctx)


async def switch_post(request: web.Request) -> web.StreamResponse:
    """ "Switch": a new session for the chosen role (audited as ``role.choose``)."""
    b = request.app[BROKER]
    c = request.app[COOKIES]
    ctx = await _signed_in(request, "role.choose")
    form = await checked_form(
        request,
        purpose="portal",
        binding=ctx.session_id,
        action="role.choose",
        principal=_principal(ctx),
    )
    try:
        role = _role_form(form)
    except InvalidRequest as e:
        await b.auditor.record(
            "role.choose",
            "failure",
            req=info_of(request),
            principal=_principal(ctx),
            reason=e.reason,
        )
        raise
    done = await b.login.switch_role(ctx, role, req=info_of(request))
    resp = redirect("/session")
    c.set(resp, c.session, done.token, max_age=done.session.expires_at - b.clock.now())
    return resp


async def credentials_post(request: web.Request) -> web.StreamResponse:
    """ "Get credentials": minted only here (a POST), audited by the STS service as
    ``POST /v1/credentials`` is, and shown once on the page (``no-store``)."""
    b = request.app[BROKER]
    ctx = await _signed_in(request, "cli.credentials")
    form = await checked_form(
        request,
        purpose="portal",
        binding=ctx.session_id,
        action="cli.credentials",
        principal=_principal(ctx),
    )
    try:
        role = _role_form(form)
    except InvalidRequest as e:
        await b.auditor.record(
            "cli.credentials",
            "failure",
            req=info_of(request),
            principal=_principal(ctx),
            reason=e.reason,
        )
        raise
    await b.sessions.mark_portal(ctx)  # first: no credential may outlive a logout unmarked
    try:
        issued = await b.cli.credentials(ctx, role, None, info_of(request))
    except StsError as e:
        status = 503 if e.status >= 500 else 403
        return await _page(request, ctx, for_role=role, error=e.public_message, status=status)
    return await _page(request, ctx, issued=issued, for_role=role)
