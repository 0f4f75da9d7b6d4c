"""What every page and API handler gets: a request id on the response and on every log line,
security headers, one rendering of ``BrokerError`` per surface, metrics, an access-log line,
and admission control (``broker.web.admission``): a request the broker is too busy for is
refused before its handler runs, in the surface's own 503 (``overloaded=``).

It is a handler wrapper (``observed``) rather than an aiohttp middleware on purpose: an app with
any middleware runs every request, ``/auth`` included, through two more coroutine layers, and
forward-auth is the hot path. ``/auth`` counts itself (``count_forward_auth``) instead.
"""

from __future__ import annotations

import functools
import logging
import secrets
import time
from collections.abc import Callable

from aiohttp import web
from aiohttp.typedefs import Handler

from broker.errors import BrokerError, NotFound, Overloaded
from broker.logs import request_id_var
from broker.web.keys import ADMISSION, BROKER, METRICS, RENDERER
from broker.web.pages import apply_refreshed_cookie
from broker.web.render import SECURITY_HEADERS
from broker.web.request_info import request_info

log = logging.getLogger("broker.http")

_FA_METRICS = {
    s: f'broker_http_requests_total{{route="/auth",status="{s}"}}' for s in (200, 401, 403)
}


def forward_auth_metric(status: int) -> str:
    found = _FA_METRICS.get(status)
    return found or f'broker_http_requests_total{{route="/auth",status="{status}"}}'


def count_forward_auth(request: web.Request, status: int) -> None:
    request.app[METRICS][forward_auth_metric(status)] += 1


OverloadedRenderer = Callable[[web.Request, Overloaded], web.StreamResponse]


def overloaded_page(request: web.Request, err: Overloaded) -> web.StreamResponse:
    """The default refusal: an HTML 503 for people (JSON with ``Accept: application/json``)."""
    return request.app[RENDERER].error(request, err)


def observed(
    handler: Handler, *, overloaded: OverloadedRenderer = overloaded_page, admit: bool = True
) -> Handler:
    """``admit=False``: never refused for overload (the operators' endpoints)."""

    @functools.wraps(handler)
    async def wrapper(request: web.Request) -> web.StreamResponse:
        rid = secrets.token_hex(8)
        token = request_id_var.set(rid)
        start = time.perf_counter()
        status = 500
        shed = False
        try:
            if admit:
                resp, shed = await _admitted(request, handler, overloaded)
            else:
                resp = await _render_errors(request, handler)
            apply_refreshed_cookie(request, resp)
            status = resp.status
            resp.headers["X-Request-Id"] = rid
            for k, v in SECURITY_HEADERS.items():
                resp.headers.setdefault(k, v)
            return resp
        except web.HTTPException as e:  # redirects raised by handlers
            status = e.status
            e.headers["X-Request-Id"] = rid
            raise
        finally:
            route = request.match_info.route.resource
            name = route.canonical if route is not None else "unmatched"
            metric = f'broker_http_requests_total{{route="{name}",status="{status}"}}'
            request.app[METRICS][metric] += 1
            if not shed:  # refusals are counted, and logged at most once a second (admission)
                log.info(
                    "%s %s %s %.1fms",
                    request.method,
                    request.rel_url.path,
                    status,
                    (time.perf_counter() - start) * 1000,
                )
            request_id_var.reset(token)

    return wrapper


async def _admitted(
    request: web.Request, handler: Handler, overloaded: OverloadedRenderer
) -> tuple[web.StreamResponse, bool]:
    """The handler's answer within a request slot, or (and ``True``) the surface's 503."""
    admission = request.app[ADMISSION]
    try:
        admission.check_lag()
        await admission.acquire()
    except Overloaded as e:
        return overloaded(request, e), True
    try:
        return await _render_errors(request, handler), False
    finally:
        admission.release()


async def not_found(request: web.Request) -> web.StreamResponse:
    """The last route: 405 (with ``Allow``) when the path exists for other methods, else 404."""
    allowed: set[str] = set()
    for resource in request.app.router.resources():
        if resource.canonical == "/{tail}":
            continue
        _, methods = await resource.resolve(request)
        allowed |= methods
    if allowed:
        raise web.HTTPMethodNotAllowed(request.method, sorted(allowed))
    raise NotFound(f"no_route:{request.path[:200]}")


async def _render_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except BrokerError as e:
        level = logging.ERROR if e.status >= 500 else logging.INFO
        log.log(level, "refused: %s (%s)", e.code, e.reason)
        return request.app[RENDERER].error(request, e)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        if e.status == 413:  # aiohttp's client_max_size: an outside body the broker refused
            await _audit_too_large(request)
        err = BrokerError(f"http_{e.status}", public_message=e.reason)
        err.status = e.status
        err.code = "not_found" if e.status == 404 else "http_error"
        resp = request.app[RENDERER].error(request, err)
        if "Allow" in e.headers:
            resp.headers["Allow"] = e.headers["Allow"]
        return resp
    except Exception:
        log.exception("unhandled error")
        return request.app[RENDERER].error(request, BrokerError("unhandled"))


async def _audit_too_large(request: web.Request) -> None:
    b = request.app[BROKER]
    await b.auditor.record_batched(
        "http.request",
        "failure",
        req=request_info(request, b.settings.server.trusted_proxies),
        reason="body_too_large",
        details={"method": request.method, "path": request.rel_url.path[:200]},
    )
