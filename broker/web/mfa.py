"""Pages for MFA: the second step of a local login (``/mfa/verify``) and enrolling or removing
a virtual device from the session page (``/mfa``, ``/mfa/remove``). See docs/mfa.md.

The login step follows the role chooser's and the password change's pattern: a single-use
value in a cookie, bound to this browser, read while the page is shown and consumed by the one
request that succeeds; a wrong code leaves it (the attempts are rate-limited per user). Every
form is CSRF-protected; the pages run under the same strict CSP (the QR code is inline SVG).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from urllib.parse import urlencode

from aiohttp import web
from markupsafe import Markup

from broker.errors import InvalidMfaCode, InvalidRequest, Unauthenticated
from broker.service.mfa_enrol import ENROL_LIFETIME, MfaEnrolment
from broker.service.verified import Credential
from broker.storage.base import User
from broker.web.csrf import csrf_token
from broker.web.keys import BROKER, RENDERER
from broker.web.pages import (
    BROWSER_COOKIE_LIFETIME,
    COOKIES,
    after_password,
    browser_value,
    checked_form,
    current_session,
    digest,
    info_of,
    redirect,
)

CODE_LENGTH = 16  # form fields are cut to this before any check (codes are 6 digits)


def _code(form: Mapping[str, object], name: str) -> str:
    return str(form.get(name, "")).strip()[:CODE_LENGTH]


# --- the second step of a local login ------------------------------------------------------


def _verify_page(
    request: web.Request, ticket: str, *, error: str = "", status: int = 200
) -> web.Response:
    b = request.app[BROKER]
    return request.app[RENDERER].page(
        "mfa_verify.html",
        status=status,
        error=error,
        csrf=csrf_token(b.csrf_key, "mfa-verify", digest(ticket)),
    )


async def verify_get(request: web.Request) -> web.StreamResponse:
    b = request.app[BROKER]
    ticket = request.cookies.get(request.app[COOKIES].mfa, "")
    # audited InvalidState unless this browser holds a pending MFA step
    await b.login.pending_mfa(ticket, browser=browser_value(request), req=info_of(request))
    return _verify_page(request, ticket)


async def verify_post(request: web.Request) -> web.StreamResponse:
    b = request.app[BROKER]
    c = request.app[COOKIES]
    info = info_of(request)
    ticket = request.cookies.get(c.mfa, "")
    browser = browser_value(request)
    pending = await b.login.pending_mfa(ticket, browser=browser, req=info)
    form = await checked_form(
        request,
        purpose="mfa-verify",
        binding=digest(ticket),
        action="login.mfa",
        principal=pending.user_id,
    )
    try:
        user, pending, at = await b.login.complete_mfa(
            ticket, _code(form, "code"), browser=browser, req=info
        )
    except InvalidMfaCode as e:
        return _verify_page(request, ticket, error=e.public_message, status=401)
    resp = await after_password(
        request, user, rd=pending.redirect_after, role=pending.role, mfa_authenticated_at=at
    )
    c.clear(resp, c.mfa)
    return resp


# --- enrolling and removing a device from the session page ---------------------------------


def _enrolment(request: web.Request) -> MfaEnrolment:
    b = request.app[BROKER]
    return MfaEnrolment(b.store, b.mfa, b.auditor, b.clock)


async def _local_user(request: web.Request) -> tuple[Credential, User] | None:
    """The session's local user, or None without a session; ``InvalidRequest`` for others."""
    b = request.app[BROKER]
    ctx = await current_session(request)
    if ctx is None:
        return None
    if ctx.provider != b.login.local_provider():
        raise InvalidRequest(
            "mfa_enrolment_not_local",
            public_message=f"You sign in with {ctx.provider}: set up MFA there. Devices for "
            "other users are managed through the IAM API.",
        )
    return ctx, await b.store.get_user(ctx.user_id)


def _to_login() -> web.HTTPSeeOther:
    return web.HTTPSeeOther("/login?" + urlencode({"rd": "/mfa"}))


def _enrolled_page(
    request: web.Request, ctx: Credential, serial: str, *, error: str = "", status: int = 200
) -> web.Response:
    b = request.app[BROKER]
    return request.app[RENDERER].page(
        "mfa.html",
        status=status,
        enabled=True,
        serial=serial,
        error=error,
        qr=None,
        seed="",
        csrf=csrf_token(b.csrf_key, "mfa-remove", ctx.session_id),
    )


async def enrol_get(request: web.Request) -> web.StreamResponse:
    b = request.app[BROKER]
    c = request.app[COOKIES]
    found = await _local_user(request)
    if found is None:
        raise _to_login()
    ctx, user = found
    device = await b.mfa.enabled_device(user.id)
    if device is not None:
        return _enrolled_page(request, ctx, device.serial_number)
    browser = browser_value(request) or secrets.token_urlsafe(24)
    enrolment = await _enrolment(request).begin(
        user,
        session_id=ctx.session_id,
        browser=browser,
        previous=request.cookies.get(c.mfa_enrol, ""),
        req=info_of(request),
    )
    page = request.app[RENDERER].page(
        "mfa.html",
        enabled=False,
        serial=enrolment.serial_number,
        error="",
        qr=Markup(enrolment.qr_svg),  # noqa: S704 - our own SVG from segno, no input in it
        seed=enrolment.seed,
        csrf=csrf_token(b.csrf_key, "mfa-enrol", digest(enrolment.ticket)),
    )
    # the binding cookie, set anew so that it outlives the enrolment bound to it
    c.set(page, c.browser, browser, max_age=BROWSER_COOKIE_LIFETIME)
    c.set(page, c.mfa_enrol, enrolment.ticket, max_age=ENROL_LIFETIME)
    return page


async def enrol_post(request: web.Request) -> web.StreamResponse:
    b = request.app[BROKER]
    c = request.app[COOKIES]
    info = info_of(request)
    found = await _local_user(request)
    if found is None:
        raise Unauthenticated("no_session", public_message="You are not signed in.")
    ctx, user = found
    ticket = request.cookies.get(c.mfa_enrol, "")
    browser = browser_value(request)
    enrolment = _enrolment(request)
    serial = await enrolment.pending(
        ticket, user_id=user.id, session_id=ctx.session_id, browser=browser, req=info
    )
    form = await checked_form(
        request,
        purpose="mfa-enrol",
        binding=digest(ticket),
        action="mfa.enable",
        principal=f"{ctx.provider}/{ctx.subject}",
    )
    try:
        await enrolment.confirm(
            ticket,
            _code(form, "code1"),
            _code(form, "code2"),
            user=user,
            session_id=ctx.session_id,
            browser=browser,
            req=info,
        )
    except InvalidMfaCode:
        # The secret is not shown again: the person still has it in the authenticator.
        return request.app[RENDERER].page(
            "mfa.html",
            status=400,
            enabled=False,
            serial=serial,
            error="Those codes are not valid. Enter the next two codes your authenticator shows.",
            qr=None,
            seed="",
            csrf=csrf_token(b.csrf_key, "mfa-enrol", digest(ticket)),
        )
    resp = redirect("/mfa")
    c.clear(resp, c.mfa_enrol)
    return resp


async def remove_post(request: web.Request) -> web.StreamResponse:
    b = request.app[BROKER]
    found = await _local_user(request)
    if found is None:
        raise Unauthenticated("no_session", public_message="You are not signed in.")
    ctx, user = found
    form = await checked_form(
        request,
        purpose="mfa-remove",
        binding=ctx.session_id,
        action="mfa.deactivate",
        principal=f"{ctx.provider}/{ctx.subject}",
    )
    device = await b.mfa.enabled_device(user.id)
    try:
        await _enrolment(request).remove(user, _code(form, "code"), req=info_of(request))
    except InvalidMfaCode as e:
        return _enrolled_page(
            request,
            ctx,
            device.serial_number if device else "",
            error=e.public_message,
            status=400,
        )
    return redirect("/mfa")


__all__ = ["enrol_get", "enrol_post", "remove_post", "verify_get", "verify_post"]
