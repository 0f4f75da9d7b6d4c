"""Pages for people: sign in (any provider or the local one), choose a role, see and end it."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from urllib.parse import urlencode

from aiohttp import web

from broker.errors import (
    CsrfError,
    InvalidCredentials,
    InvalidRequest,
    InvalidState,
    NotFound,
    Unauthenticated,
)
from broker.service.audit import RequestInfo
from broker.service.container import Broker
from broker.service.login import PENDING_LIFETIME, LoginOutcome
from broker.service.passwords import MIN_PASSWORD_LENGTH
from broker.service.verified import Credential
from broker.storage.base import User
from broker.web.bodies import read_form
from broker.web.cookies import Cookies
from broker.web.csrf import check_csrf, csrf_token
from broker.web.keys import BROKER, RENDERER
from broker.web.request_info import request_info

COOKIES = web.AppKey("cookies", Cookies)
BROWSER_COOKIE_LIFETIME = 3600  # outlives any single-use value bound to it (PENDING_LIFETIME)
NEW_SESSION_TOKEN = web.RequestKey("new_session_token", tuple[str, float])


def redirect(location: str, *, status: int = 303) -> web.Response:
    """A redirect we can still set cookies on (raising HTTPException would drop them)."""
    return web.Response(status=status, headers={"Location": location})


def _broker(request: web.Request) -> Broker:
    return request.app[BROKER]


def info_of(request: web.Request) -> RequestInfo:
    return request_info(request, _broker(request).settings.server.trusted_proxies)


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def browser_value(request: web.Request) -> str:
    """The browser-binding cookie's value ("" if none): what single-use values are bound to."""
    return request.cookies.get(request.app[COOKIES].browser, "")


def ensure_browser(request: web.Request, resp: web.StreamResponse) -> str:
    """This browser's binding value, set anew (or first) on ``resp`` so that it outlives the
    single-use value about to be bound to it."""
    c = request.app[COOKIES]
    raw = browser_value(request) or secrets.token_urlsafe(24)
    c.set(resp, c.browser, raw, max_age=BROWSER_COOKIE_LIFETIME)
    return raw


async def current_session(request: web.Request) -> Credential | None:
    """The verified session of this browser, refreshing its token when due; None if none."""
    token = request.cookies.get(request.app[COOKIES].session)
    if not token:
        return None
    try:
        ctx, new = await _broker(request).sessions.resume(token)
    except Unauthenticated:
        return None
    if new is not None:
        request[NEW_SESSION_TOKEN] = (new, ctx.session_expires_at)
    return ctx


def apply_refreshed_cookie(request: web.Request, resp: web.StreamResponse) -> None:
    """Set the session cookie again when ``current_session`` refreshed its token."""
    new = request.get(NEW_SESSION_TOKEN)
    if new is not None and resp.status < 400:
        token, expires_at = new
        now = _broker(request).clock.now()
        request.app[COOKIES].set(
            resp, request.app[COOKIES].session, token, max_age=expires_at - now
        )


async def checked_form(
    request: web.Request, *, purpose: str, binding: str, action: str, principal: str
) -> Mapping[str, object]:
    """The posted form, once its CSRF token (bound to ``binding``) checks out; else audited 403."""
    b = _broker(request)
    try:
        form = await read_form(request)
    except InvalidRequest as e:
        await b.auditor.record(
            action, "failure", req=info_of(request), principal=principal, reason=e.reason
        )
        raise
    try:
        check_csrf(
            request,
            str(form.get("csrf", "")),
            key=b.csrf_key,
            purpose=purpose,
            binding=binding,
            public_url=b.settings.server.public_url,
        )
    except CsrfError as e:
        await b.auditor.record(
            action, "failure", req=info_of(request), principal=principal, reason=e.reason
        )
        raise
    return form


def session_json(ctx: Credential) -> dict[str, object]:
    return {
        "role": ctx.role_arn,
        "role_name": ctx.role_name,
        "provider": ctx.provider,
        "subject": ctx.subject,
        "email": ctx.email,
        "groups": list(ctx.groups),
        "user_id": ctx.user_id,
        "session_id": ctx.session_id,
        "mfa": ctx.mfa,
        "mfa_authenticated_at": (
            datetime.fromtimestamp(ctx.mfa_authenticated_at, UTC).isoformat()
            if ctx.mfa_authenticated_at is not None
            else None
        ),
        "expires_at": datetime.fromtimestamp(ctx.session_expires_at, UTC).isoformat(),
    }


# --- pages ---------------------------------------------------------------------------------


async def index(request: web.Request) -> web.StreamResponse:
    if await current_session(request) is not None:
        raise web.HTTPSeeOther("/session")
    raise web.HTTPSeeOther("/login")


async def login_page(request: web.Request) -> web.StreamResponse:
    """The provider list; a browser that still has a live session goes straight on to ``rd``
    (this is where forward-auth's 401 sends people, and where an expired token is renewed).
    With one provider there is nothing to choose: the local form, or the provider's start."""
    b = _broker(request)
    wants_rd = "rd" in request.query and "role" not in request.query
    if wants_rd and await current_session(request) is not None:
        return redirect(b.login.safe_rd(request.query["rd"]))
    params = {k: v for k in ("rd", "role") if (v := request.query.get(k))}
    query = ("?" + urlencode(params)) if params else ""
    providers = list(b.settings.providers.values())
    if len(providers) == 1:  # one way in: no extra click
        if providers[0].type == "local":
            return _local_form(request, providers[0].name)
        # Straight to its login start, the broker's own path: ``rd`` and ``role`` go along and
        # are checked there as after a click (an ``rd`` off the allowed domains is dropped, a
        # bad ``role`` is a 400). Provider names are [a-z0-9_-]: nothing to escape.
        return redirect(f"/login/{providers[0].name}{query}", status=302)
    return request.app[RENDERER].page("login.html", providers=providers, query=query)


async def login_start(request: web.Request) -> web.StreamResponse:
    b = _broker(request)
    provider = request.match_info["provider"]
    pconf = b.settings.providers.get(provider)
    if pconf is None:
        raise NotFound(f"unknown_provider:{provider}", public_message="Unknown provider.")
    if pconf.type == "local":
        return _local_form(request, provider)
    url, binding = await b.login.start(
        provider,
        rd=request.query.get("rd"),
        role=request.query.get("role"),
        req=info_of(request),
    )
    resp = redirect(url, status=302)
    c = request.app[COOKIES]
    c.set(resp, c.login, binding, max_age=b.settings.login.state_ttl)
    return resp


def _local_form(
    request: web.Request,
    provider: str,
    *,
    error: str = "",
    username: str = "",
    rd: str | None = None,
    role: str | None = None,
    status: int = 200,
) -> web.StreamResponse:
    c = request.app[COOKIES]
    b = _broker(request)
    binding = request.cookies.get(c.browser) or ""
    new_binding = None
    if not binding:
        new_binding = binding = secrets.token_urlsafe(24)
    resp = request.app[RENDERER].page(
        "local_login.html",
        status=status,
        provider=provider,
        error=error,
        username=username,
        rd=rd if rd is not None else request.query.get("rd", ""),
        role=role if role is not None else request.query.get("role", ""),
        csrf=csrf_token(b.csrf_key, "local-login", binding),
    )
    if new_binding:
        c.set(resp, c.browser, new_binding, max_age=3600)
    return resp


async def local_login_post(request: web.Request) -> web.StreamResponse:
    b = _broker(request)
    provider = request.match_info["provider"]
    pconf = b.settings.providers.get(provider)
    if pconf is None or pconf.type != "local":
        raise web.HTTPMethodNotAllowed("POST", ["GET"])
    c = request.app[COOKIES]
    info = info_of(request)
    form = await checked_form(
        request,
        purpose="local-login",
        binding=request.cookies.get(c.browser, ""),
        action="login",
        principal=provider,
    )
    username = str(form.get("username", ""))[:128]
    rd, role = str(form.get("rd", "")), str(form.get("role", ""))
    try:
        user, safe_rd, role_name = await b.login.local_login(
            username, str(form.get("password", ""))[:1024], rd=rd, role=role or None, req=info
        )
    except InvalidCredentials as e:
        return _local_form(
            request,
            provider,
            error=e.public_message,
            username=username,
            rd=rd,
            role=role,
            status=401,
        )
    if await b.login.mfa_required(user):
        # The password was right; the second step (a code) finishes the login (broker.web.mfa).
        resp = redirect("/mfa/verify")
        ticket = await b.login.offer_mfa(
            user, rd=safe_rd, role=role_name, browser=ensure_browser(request, resp)
        )
        c.set(resp, c.mfa, ticket, max_age=PENDING_LIFETIME)
        return resp
    return await after_password(request, user, rd=safe_rd, role=role_name)


async def after_password(
    request: web.Request,
    user: User,
    *,
    rd: str,
    role: str | None,
    mfa_authenticated_at: float | None = None,
) -> web.StreamResponse:
    """A local user who proved the password (and the MFA code, if any): a new password first if
    one must be set, else the roles."""
    b = _broker(request)
    c = request.app[COOKIES]
    if user.must_change_password:
        resp = redirect("/password")
        ticket = await b.login.offer_password_change(
            user,
            rd=rd,
            role=role,
            browser=ensure_browser(request, resp),
            mfa_authenticated_at=mfa_authenticated_at,
        )
        c.set(resp, c.password, ticket, max_age=PENDING_LIFETIME)
        return resp
    outcome = await b.login.local_outcome(
        user, rd=rd, role=role, req=info_of(request), mfa_authenticated_at=mfa_authenticated_at
    )
    return await after_outcome(request, outcome)


async def password_get(request: web.Request) -> web.StreamResponse:
    b = _broker(request)
    ticket = request.cookies.get(request.app[COOKIES].password, "")
    # audited InvalidState unless this browser holds a pending password change
    await b.login.password_change(ticket, browser=browser_value(request), req=info_of(request))
    return request.app[RENDERER].page(
        "password.html",
        error="",
        min_length=MIN_PASSWORD_LENGTH,
        csrf=csrf_token(b.csrf_key, "password", digest(ticket)),
    )


async def password_post(request: web.Request) -> web.StreamResponse:
    b = _broker(request)
    c = request.app[COOKIES]
    info = info_of(request)
    ticket = request.cookies.get(c.password, "")
    browser = browser_value(request)
    change = await b.login.password_change(ticket, browser=browser, req=info)
    form = await checked_form(
        request,
        purpose="password",
        binding=digest(ticket),
        action="user.password_change",
        principal=change.user_id,
    )
    try:
        user, change = await b.login.change_password(
            ticket,
            str(form.get("new_password", ""))[:2048],
            str(form.get("confirm", ""))[:2048],
            browser=browser,
            req=info,
        )
    except InvalidRequest as e:
        return request.app[RENDERER].page(
            "password.html",
            status=400,
            error=e.public_message,
            min_length=MIN_PASSWORD_LENGTH,
            csrf=csrf_token(b.csrf_key, "password", digest(ticket)),
        )
    outcome = await b.login.local_outcome(
        user,
        rd=change.redirect_after,
        role=change.role,
        req=info,
        mfa_authenticated_at=change.mfa_authenticated_at,
    )
    resp = await after_outcome(request, outcome)
    c.clear(resp, c.password)
    return resp


async def callback(request: web.Request) -> web.StreamResponse:
    b = _broker(request)
    provider = request.match_info["provider"]
    c = request.app[COOKIES]
    outcome = await b.login.finish(
        provider,
        dict(request.query),
        binding_raw=request.cookies.get(c.login),
        req=info_of(request),
    )
    resp = await after_outcome(request, outcome)
    c.clear(resp, c.login)
    return resp


async def after_outcome(request: web.Request, outcome: LoginOutcome) -> web.StreamResponse:
    """One role (or the one asked for): issue the session. Several: the chooser."""
    b = _broker(request)
    c = request.app[COOKIES]
    names = [x.role.name for x in outcome.candidates]
    chosen = outcome.requested_role or (names[0] if len(names) == 1 else None)
    if chosen is None:
        resp = redirect("/roles")
        ticket = await b.login.offer_roles(outcome, browser=ensure_browser(request, resp))
        c.set(resp, c.pending, ticket, max_age=PENDING_LIFETIME)
        return resp
    done = await b.login.complete(
        outcome.identity, chosen, names, rd=outcome.redirect_after, req=info_of(request)
    )
    resp = redirect(done.redirect_after)
    c.set(resp, c.session, done.token, max_age=done.session.expires_at - b.clock.now())
    return resp


async def roles_get(request: web.Request) -> web.StreamResponse:
    b = _broker(request)
    ticket = request.cookies.get(request.app[COOKIES].pending, "")
    if not ticket:
        ctx = await current_session(request)
        if ctx is None:
            raise web.HTTPSeeOther("/login")
        raise InvalidState(
            "no_pending_choice",
            public_message=(
                f"You hold the role {ctx.role_name}. To take another role, sign in again "
                "and choose it."
            ),
        )
    choice = await b.login.pending_choice(
        ticket, browser=browser_value(request), req=info_of(request)
    )
    roles = {r.name: r for r in await b.store.list_roles()}
    return request.app[RENDERER].page(
        "roles.html",
        name=choice.identity.name,
        provider=choice.identity.provider,
        roles=[roles[n] for n in choice.roles if n in roles],
        csrf=csrf_token(b.csrf_key, "roles", digest(ticket)),
    )


async def roles_post(request: web.Request) -> web.StreamResponse:
    b = _broker(request)
    c = request.app[COOKIES]
    info = info_of(request)
    ticket = request.cookies.get(c.pending, "")
    browser = browser_value(request)
    choice = await b.login.pending_choice(ticket, browser=browser, req=info)
    form = await checked_form(
        request,
        purpose="roles",
        binding=digest(ticket),
        action="role.choose",
        principal=f"{choice.identity.provider}/{choice.identity.subject}",
    )
    done = await b.login.choose_role(ticket, str(form.get("role", "")), browser=browser, req=info)
    resp = redirect(done.redirect_after)
    c.set(resp, c.session, done.token, max_age=done.session.expires_at - b.clock.now())
    c.clear(resp, c.pending)
    return resp


def when(at: float, now: float) -> dict[str, str]:
    """A time for people: ISO for ``<time datetime>`` (the page's script shows it in the
    reader's time zone), UTC text for readers without scripts, and how far away it is."""
    t = datetime.fromtimestamp(at, UTC)
    left = max(0, int(at - now) // 60)
    hours, minutes = divmod(left, 60)
    return {
        "iso": t.isoformat(timespec="seconds"),
        "text": t.strftime("%d %b %Y, %H:%M UTC"),
        "in": f"in {hours} h {minutes} min" if hours else f"in {minutes} min",
    }


async def logout_get(request: web.Request) -> web.StreamResponse:
    ctx = await current_session(request)
    b = _broker(request)
    csrf = csrf_token(b.csrf_key, "logout", ctx.session_id) if ctx else ""
    return request.app[RENDERER].page("logout.html", signed_out=False, csrf=csrf)


async def logout_post(request: web.Request) -> web.StreamResponse:
    b = _broker(request)
    c = request.app[COOKIES]
    info = info_of(request)
    ctx = await current_session(request)
    if ctx is None:
        raise Unauthenticated("no_session", public_message="You are not signed in.")
    await checked_form(
        request,
        purpose="logout",
        binding=ctx.session_id,
        action="logout",
        principal=f"{ctx.provider}/{ctx.subject}",
    )
    # Fail-closed (``AuditUnavailable``, 503): the session ends only once this is written.
    await b.auditor.record_or_fail(
        "logout",
        "success",
        req=info,
        principal=f"{ctx.provider}/{ctx.subject}",
        details={"session": ctx.session_id, "role": ctx.role_arn},
    )
    await b.sessions.end(ctx, reason="logout")
    # Whatever flow this browser still has pending dies with its session.
    await b.login.forget_browser(browser_value(request), request.cookies.get(c.login, ""))
    request.pop(NEW_SESSION_TOKEN, None)
    resp = request.app[RENDERER].page("logout.html", signed_out=True, csrf="")
    for name in (c.session, c.pending, c.password, c.mfa, c.mfa_enrol, c.login, c.browser):
        c.clear(resp, name)
    return resp
