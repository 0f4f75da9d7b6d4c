"""``create_app(settings)``: the aiohttp application, its routes and its resources."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
from aiohttp import web

from broker.clock import Clock
from broker.config import LOGO_TYPES, Settings, UiConfig
from broker.service.container import Broker
from broker.web import (
    authorize_api,
    backchannel,
    cli_auth,
    console,
    forward_auth,
    mfa,
    oauth,
    ops,
    pages,
    portal,
    sts,
    wellknown,
)
from broker.web.admission import Admission
from broker.web.cookies import Cookies
from broker.web.keys import ADMISSION, BROKER, METRICS, RENDERER, SETTINGS
from broker.web.middleware import not_found, observed
from broker.web.render import Renderer
from broker.web.simulate import simulate as simulate_api

log = logging.getLogger(__name__)
json_api = oauth.overloaded  # the JSON APIs refuse for overload as OAuth does
STATIC = Path(__file__).parent / "static"
PROVIDER_KEEPALIVE_SECONDS = 2.0


def create_app(
    settings: Settings, *, clock: Clock | None = None, bootstrap: bool = True
) -> web.Application:
    """``bootstrap=False``: the first start was done already (``broker serve --workers N``)."""
    app = web.Application()  # no middlewares: see broker.web.middleware
    app[SETTINGS] = settings
    app[RENDERER] = Renderer(settings.ui)
    app[METRICS] = Counter()
    app[pages.COOKIES] = Cookies(settings)
    app[ADMISSION] = admission = Admission(
        settings.server.max_concurrency, settings.server.queue_timeout
    )

    async def broker_ctx(app: web.Application) -> AsyncIterator[None]:
        timeout = aiohttp.ClientTimeout(total=30)
        # Idle connections to providers are dropped before the 5 s after which many servers
        # (Node's default) close them: reusing one they are closing fails the token request.
        connector = aiohttp.TCPConnector(keepalive_timeout=PROVIDER_KEEPALIVE_SECONDS)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:
            broker = await Broker.open(
                settings,
                http=http,
                clock=clock,
                bootstrap=bootstrap,
                freeze_headers=forward_auth.frozen_headers,
            )
            app[BROKER] = broker
            if broker.bootstrap_password:
                announce_bootstrap(broker.bootstrap_password, settings)
            stop = asyncio.Event()
            task = asyncio.create_task(broker.run_periodic(stop))
            try:
                yield
            finally:
                stop.set()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                await broker.close()

    app.cleanup_ctx.append(broker_ctx)
    app.cleanup_ctx.append(lambda _: admission.running())

    r = app.router
    r.add_get("/", observed(pages.index))
    r.add_post("/", observed(sts.query, overloaded=sts.overloaded))  # AWS Query: STS and IAM
    r.add_get("/.well-known/openid-configuration", observed(wellknown.openid_configuration))
    r.add_get("/.well-known/jwks.json", observed(wellknown.jwks))
    r.add_get("/login", observed(pages.login_page))
    r.add_get("/login/{provider}", observed(pages.login_start))
    r.add_post("/login/{provider}", observed(pages.local_login_post))
    r.add_get("/callback/{provider}", observed(pages.callback))
    r.add_get("/password", observed(pages.password_get))
    r.add_post("/password", observed(pages.password_post))
    r.add_get("/mfa/verify", observed(mfa.verify_get))
    r.add_post("/mfa/verify", observed(mfa.verify_post))
    r.add_get("/mfa", observed(mfa.enrol_get))
    r.add_post("/mfa", observed(mfa.enrol_post))
    r.add_post("/mfa/remove", observed(mfa.remove_post))
    r.add_get("/roles", observed(pages.roles_get))
    r.add_post("/roles", observed(pages.roles_post))
    r.add_get("/session", observed(portal.session_get))
    r.add_post("/session/role", observed(portal.switch_post))
    r.add_post("/session/credentials", observed(portal.credentials_post))
    r.add_get("/logout", observed(pages.logout_get))
    r.add_post("/logout", observed(pages.logout_post))
    # The hot path, unwrapped: it renders its own 200/401/403/503 and counts itself.
    r.add_route("*", "/auth", forward_auth.auth)
    r.add_route("*", "/auth/{tail:.*}", forward_auth.auth)  # Envoy ext_authz path_prefix
    r.add_post("/v1/simulate", observed(simulate_api, overloaded=json_api))
    r.add_post("/v1/authorize", observed(authorize_api.authorize, overloaded=json_api))
    r.add_post("/oauth2/token", observed(oauth.token, overloaded=json_api))
    r.add_get("/oauth2/authorize", observed(cli_auth.authorize_get))
    r.add_post("/oauth2/authorize", observed(cli_auth.authorize_post))
    r.add_post("/oauth2/device", observed(cli_auth.device_authorization, overloaded=json_api))
    r.add_get("/device", observed(cli_auth.device_get))
    r.add_post("/device", observed(cli_auth.device_post))
    r.add_post("/device/decide", observed(cli_auth.device_decide))
    r.add_get("/v1/roles", observed(cli_auth.roles_api, overloaded=json_api))
    r.add_post("/v1/credentials", observed(cli_auth.credentials_api, overloaded=json_api))
    r.add_post("/oauth2/introspect", observed(oauth.introspect, overloaded=json_api))
    r.add_post("/oauth2/revoke", observed(oauth.revoke, overloaded=json_api))
    r.add_post(
        "/backchannel-logout/{provider}",
        observed(backchannel.backchannel_logout, overloaded=json_api),
    )
    console.add_routes(r)
    r.add_get("/healthz", observed(ops.healthz, admit=False))  # see broker.web.ops
    r.add_get("/readyz", observed(ops.readyz, admit=False))
    r.add_get("/metrics", observed(ops.metrics, admit=False))
    r.add_get("/ui/theme.css", _theme(settings.ui))
    if settings.ui.logo is not None:
        r.add_get("/ui/logo", _logo(settings.ui.logo))
    r.add_static("/static", STATIC, append_version=False)
    r.add_route("*", "/{tail:.*}", observed(not_found))  # last: our 404/405 pages
    return app


def _theme(ui: UiConfig) -> Callable[[web.Request], Awaitable[web.Response]]:
    """``[ui] accent`` as CSS: a stylesheet, since the CSP allows no inline styles."""
    css = f":root {{ --accent: {ui.accent}; }}\n"

    async def theme(_: web.Request) -> web.Response:
        return web.Response(
            text=css, content_type="text/css", headers={"Cache-Control": "public, max-age=300"}
        )

    return theme


def _logo(path: Path) -> Callable[[web.Request], Awaitable[web.Response]]:
    """``[ui] logo``, read once at start-up (checked by the config: type and size). An SVG is
    sandboxed by its own CSP, so that scripts in it never run in the broker's origin."""
    body = path.read_bytes()
    headers = {"Cache-Control": "public, max-age=300", "X-Content-Type-Options": "nosniff"}
    if path.suffix.lower() == ".svg":
        headers["Content-Security-Policy"] = (
            "default-src 'none'; style-src 'unsafe-inline'; sandbox"
        )

    async def logo(_: web.Request) -> web.Response:
        return web.Response(
            body=body, content_type=LOGO_TYPES[path.suffix.lower()], headers=headers
        )

    return logo


def announce_bootstrap(password: str, settings: Settings) -> None:
    """Printed once, to the console only (never to the log stream or the audit log)."""
    import sys

    local = next(n for n, p in settings.providers.items() if p.type == "local")
    print(
        "\n"
        "  First start: created the user 'admin' with a one-time password:\n\n"
        f"      {password}\n\n"
        f"  Sign in at {settings.server.public_url}/login/{local} and choose a new password.\n"
        "  This password is not shown again.\n",
        file=sys.stdout,
        flush=True,
    )
