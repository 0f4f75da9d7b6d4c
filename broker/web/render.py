"""HTML pages for people (Jinja2, autoescaped) and the error renderings per surface."""

from __future__ import annotations

from typing import Any

import jinja2
from aiohttp import web

from broker.config import UiConfig
from broker.errors import BrokerError
from broker.logs import request_id_var

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # same-site form POSTs must carry a real Origin
    "Cache-Control": "no-store",
}


class Renderer:
    def __init__(self, ui: UiConfig | None = None) -> None:
        self.ui = ui or UiConfig()
        self._env = jinja2.Environment(
            loader=jinja2.PackageLoader("broker.web", "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )

    def page(self, template: str, *, status: int = 200, **context: Any) -> web.Response:
        body = self._env.get_template(template).render(
            request_id=request_id_var.get(), ui=self.ui, **context
        )
        return web.Response(text=body, status=status, content_type="text/html", charset="utf-8")

    def error(self, request: web.Request, err: BrokerError) -> web.Response:
        """People get the public message and the request id; the reason stays in logs/audit."""
        resp: web.Response
        if wants_json(request):
            resp = web.json_response(
                {
                    "error": err.code,
                    "error_description": err.public_message,
                    "request_id": request_id_var.get(),
                },
                status=err.status,
            )
        else:
            resp = self.page(
                "error.html",
                status=err.status,
                title=_TITLES.get(err.status, "Something went wrong"),
                message=err.public_message,
            )
        if err.retry_after is not None:
            resp.headers["Retry-After"] = str(max(1, err.retry_after))
        return resp


_TITLES = {
    400: "That did not work",
    401: "Sign-in failed",
    403: "Not allowed",
    404: "Not found",
    429: "Slow down",
    502: "Provider unavailable",
    503: "Unavailable",
}


def wants_json(request: web.Request) -> bool:
    accept = request.headers.get("Accept", "")
    return "application/json" in accept and "text/html" not in accept
