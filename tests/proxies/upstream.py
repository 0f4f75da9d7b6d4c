"""A tiny upstream app for the proxy tests: answers every request with what it received."""

from __future__ import annotations

import sys

from aiohttp import web


async def echo(request: web.Request) -> web.Response:
    return web.json_response(
        {
            "method": request.method,
            "path": request.raw_path,
            # what aiohttp's router matches on: decoded (but %2F, %25), dot segments as sent
            "routed": request.rel_url.path_safe,
            "headers": [[k, v] for k, v in request.headers.items()],
        }
    )


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


if __name__ == "__main__":  # pragma: no cover - for trying a proxy config by hand
    web.run_app(make_app(), host="127.0.0.1", port=int(sys.argv[1]))
