"""``/auth`` (contract C3): the endpoint reverse proxies call before forwarding a request.

Any method, at ``/auth`` (nginx ``auth_request``, Traefik ForwardAuth, Caddy ``forward_auth``)
and under ``/auth/`` (Envoy HTTP ``ext_authz`` with ``path_prefix: /auth``, which appends the
original path). It answers only 200, 401, 403 or, when overloaded, 503:

- 200 with ``X-Auth-Request-User``, ``-Email``, ``-Groups``, ``-Role``, ``-Session`` and
  ``-Assertion`` (on a public route they are present and empty: no identity), and how long a
  proxy may reuse the answer (``Cache-Control: max-age``, ``[proxy] auth_cache_max_age``, and
  nginx's ``X-Accel-Expires: @<second>`` so the reuse never outlasts it; or
  ``no-store`` when the credential ends sooner); a denial is always ``no-store``;
- 401 when no valid credential came with the request, with ``X-Auth-Request-Redirect`` and
  ``Location`` = ``<public_url>/login?rd=<original URL>``, and a tiny HTML page that refreshes to
  the same URL (Traefik, Caddy and Envoy hand a denial's body to the browser as it is);
- 403 when signed in but not allowed, and when the original request is missing, ambiguous,
  malformed or comes from a peer not in ``[server] trusted_proxies`` (a 401 there would send the
  browser round a login loop). An internal error is a 403 too;
- 503 with ``Retry-After`` when the broker is overloaded (``broker.web.admission``: the event
  loop lags more than ``[server] queue_timeout``): refused before any verification, and every
  proxy denies on it (nginx's ``auth_request`` turns it into a 500). A repeat the verdict cache
  answers is still answered: that costs no more than the refusal would.

The original request is read only from trusted peers (``broker.domain.urls``); the credential is
the session cookie, then ``Authorization: Bearer``. The decision never looks at the User-Agent
or at any ``X-Auth-Request-*`` header the client sent. Every denial is audited (batched).
"""

from __future__ import annotations

import functools
import html
import logging
import secrets
from collections.abc import Mapping

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from broker.config import Network
from broker.domain.urls import (
    OriginalRequest,
    UrlRejected,
    from_envoy,
    from_forwarded,
    from_original_url,
)
from broker.errors import Overloaded
from broker.logs import request_id_var
from broker.service.audit import RequestInfo
from broker.service.forward_auth import H_ACCEL_EXPIRES, H_REDIRECT, NO_STORE, ForwardAuth, Verdict
from broker.web.keys import ADMISSION, BROKER, METRICS
from broker.web.middleware import count_forward_auth, forward_auth_metric
from broker.web.pages import COOKIES
from broker.web.request_info import client_ip, peer_is_trusted

log = logging.getLogger(__name__)

PREFIX = "/auth"
_ENVOY_PREFIX = PREFIX + "/"
_FORBIDDEN_BODY = "Forbidden\n"
_UNAVAILABLE_BODY = "Service Unavailable\n"
_NGINX = ("X-Original-URL", "X-Original-Method")
_FORWARDED = ("X-Forwarded-Uri", "X-Forwarded-Method")


def frozen_headers(headers: dict[str, str]) -> Mapping[str, str]:
    """Forward-auth's cached identity headers as aiohttp copies them fastest: a read-only
    multidict (``web.Response`` copies its ``headers`` argument on every answer)."""
    return CIMultiDictProxy(CIMultiDict(headers))


def _one(headers: CIMultiDictProxy[str], name: str) -> str:
    values = headers.getall(name, ())
    if not values:
        raise UrlRejected(f"missing_header:{name.lower()}")
    if len(values) > 1:
        raise UrlRejected(f"duplicate_header:{name.lower()}")
    return values[0]


# Normalisation is a pure function of the header values: proxies repeat the same URLs, so the
# parsed result is remembered (failures are not: they raise and are audited every time).
_from_original_url = functools.lru_cache(maxsize=4096)(from_original_url)
_from_forwarded = functools.lru_cache(maxsize=4096)(from_forwarded)
_from_envoy = functools.lru_cache(maxsize=4096)(from_envoy)


def read_original(request: web.Request, trusted: tuple[Network, ...]) -> OriginalRequest:
    """The proxied request, from the headers of the one proxy style present (trusted peers)."""
    if not peer_is_trusted(request.remote, trusted):
        raise UrlRejected("untrusted_peer")
    h = request.headers
    raw = request.raw_path
    envoy = raw.startswith(_ENVOY_PREFIX)
    nginx = _NGINX[0] in h or _NGINX[1] in h
    forwarded = _FORWARDED[0] in h or _FORWARDED[1] in h
    if envoy + nginx + forwarded > 1:
        raise UrlRejected("ambiguous_original_request")
    if nginx:
        return _from_original_url(_one(h, "X-Original-Method"), _one(h, "X-Original-URL"))
    if forwarded:
        return _from_forwarded(
            _one(h, "X-Forwarded-Method"),
            _one(h, "X-Forwarded-Proto"),
            _one(h, "X-Forwarded-Host"),
            _one(h, "X-Forwarded-Uri"),
        )
    if envoy:
        proto = _one(h, "X-Forwarded-Proto") if "X-Forwarded-Proto" in h else None
        return _from_envoy(request.method, proto, _one(h, "Host"), raw[len(PREFIX) :])
    raise UrlRejected("missing_original_request")


def presented_tokens(request: web.Request, cookie_name: str) -> list[str]:
    """The session cookie, then a Bearer token: the first that verifies is used."""
    found: list[str] = []
    if "Cookie" in request.headers:
        cookie = request.cookies.get(cookie_name)
        if cookie:
            found.append(cookie)
    auth = request.headers.get("Authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        found.append(value.strip())
    return found


def allowed(verdict: Verdict, fa: ForwardAuth) -> web.Response:
    response = web.Response(status=200, headers=verdict.headers)
    if verdict.reusable:
        response.headers[H_ACCEL_EXPIRES] = fa.accel_expires()
    return response


def respond(verdict: Verdict, fa: ForwardAuth) -> web.Response:
    if verdict.status == 200:
        return allowed(verdict, fa)
    if verdict.status == 401:
        login = verdict.headers.get(H_REDIRECT)
        if login is None:  # cannot happen: a 401 always knows the original URL
            return web.Response(status=401, headers=NO_STORE, text="Unauthorized\n")
        target = html.escape(login, quote=True)
        body = (
            '<!doctype html><meta charset="utf-8">'
            f'<meta http-equiv="refresh" content="0;url={target}">'
            f'<title>Sign in</title><a href="{target}">Sign in</a>\n'
        )
        return web.Response(
            status=401,
            headers={**NO_STORE, H_REDIRECT: login, "Location": login},
            text=body,
            content_type="text/html",
        )
    return web.Response(status=403, headers=NO_STORE, text=_FORBIDDEN_BODY)


async def auth(request: web.Request) -> web.StreamResponse:
    app = request.app
    broker = app[BROKER]
    fa = broker.forward_auth
    peer = request.remote
    # The request exactly as received: a byte-identical repeat within the same second gets
    # the same (re-checked) verdict without parsing anything again.
    raw = (peer, request.method, request.raw_path, request.raw_headers)
    hit = fa.cached(raw)
    if hit is not None:  # counted by ``fa.cached_allows`` (see /metrics)
        return allowed(hit, fa)
    try:
        app[ADMISSION].check_lag()  # no slot: this handler does not wait on anything
    except Overloaded as e:
        count_forward_auth(request, 503)
        return web.Response(
            status=503,
            headers={**NO_STORE, "Retry-After": str(e.retry_after)},
            text=_UNAVAILABLE_BODY,
        )
    trusted = broker.settings.server.trusted_proxies
    source_ip = peer or ""
    try:
        source_ip = client_ip(request, trusted)
        # A request id is made only when something is recorded (a denial, an error).
        info = RequestInfo(source_ip=source_ip)
        try:
            original: OriginalRequest | UrlRejected = read_original(request, trusted)
        except UrlRejected as e:
            original = e
        tokens = presented_tokens(request, app[COOKIES].session)
        await broker.credentials.learn_keys(tokens)  # a new key of another instance
        verdict = fa.decide(original, tokens, info, raw=raw)
        if verdict.prepare is not None:  # an IAM user's credential, first seen here
            await broker.authorizer.prepare(verdict.prepare)
            verdict = fa.decide(original, tokens, info, raw=raw, prepared=True)
        app[METRICS][forward_auth_metric(verdict.status)] += 1  # count_forward_auth, inlined
        return respond(verdict, fa)
    except Exception:
        # Deny when unsure: never a 500 to the proxy, whatever broke.
        info = RequestInfo(request_id=secrets.token_hex(8), source_ip=source_ip)
        request_id_var.set(info.request_id)  # this task's own context: the log line carries it
        log.exception("forward-auth failed; denying")
        fa.record_denial(403, "internal_error", info)
        count_forward_auth(request, 403)
        return web.Response(status=403, headers=NO_STORE, text=_FORBIDDEN_BODY)
