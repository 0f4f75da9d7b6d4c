"""Middlewares: a request id on every request and log line, security headers, error rendering."""

from __future__ import annotations

import logging
import secrets
import time

from aiohttp import web
from aiohttp.typedefs import Handler

from broker.errors import BrokerError
from broker.logs import request_id_var
from broker.web.keys import METRICS, RENDERER
from broker.web.pages import apply_refreshed_cookie
from broker.web.render import SECURITY_HEADERS

log = logging.getLogger("broker.http")


FORWARD_AUTH = "/auth"
_FA_METRIC = 'broker_http_requests_total{{route="/auth",status="{}"}}'


@web.middleware
async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    path = request.path
    if path.startswith(FORWARD_AUTH) and (len(path) == 5 or path[5] == "/"):
        # The hot path: proxies read only the status and X-Auth-Request-* headers, and the
        # handler never raises (it denies). It makes a request id only when it denies (denials
        # are audited with it); allowed requests are counted, not logged line by line.
        resp = await handler(request)
        request.app[METRICS][_FA_METRIC.format(resp.status)] += 1
        return resp
    rid = secrets.token_hex(8)
    token = request_id_var.set(rid)
    start = time.perf_counter()
    status = 500
    try:
        resp = await _render_errors(request, handler)
        apply_refreshed_cookie(request, resp)
        status = resp.status
        resp.headers["X-Request-Id"] = rid
        for k, v in SECURITY_HEADERS.items():
            resp.headers.setdefault(k, v)
        return resp
    finally:
        route = request.match_info.route.resource
        name = route.canonical if route is not None else "unmatched"
        request.app[METRICS][f'broker_http_requests_total{{route="{name}",status="{status}"}}'] += 1
        log.info(
            "%s %s %s %.1fms",
            request.method,
            request.rel_url.path,
            status,
            (time.perf_counter() - start) * 1000,
        )
        request_id_var.reset(token)


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
        # Routing errors (404, 405) get the same rendering as ours.
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
