"""Request bodies read within bounds, with the broker's own errors.

aiohttp refuses a body over the app's ``client_max_size`` (1 MiB) by raising its own
``HTTPRequestEntityTooLarge`` from ``request.read()``/``request.post()``; a handler that turns
every unexpected exception into a 5xx (STS) then answered 503, which SDKs retry. Here an
oversize body is ``RequestTooLarge`` (413, ``invalid_request``), which each surface renders in
its dialect and audits, and JSON bodies go through ``broker.domain.json_input``.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from multidict import MultiDictProxy

from broker.domain import json_input
from broker.errors import InvalidRequest, RequestTooLarge

BodyError = InvalidRequest
"""What the readers below raise (``RequestTooLarge`` is one)."""


async def read_body(request: web.Request, limit: int) -> bytes:
    """The whole body, or ``RequestTooLarge`` once it passes ``limit`` bytes (without reading
    further when ``Content-Length`` already says so)."""
    if request.content_length is not None and request.content_length > limit:
        raise RequestTooLarge("body_too_large")
    body = bytearray()
    try:
        async for chunk in request.content.iter_any():
            body += chunk
            if len(body) > limit:
                raise RequestTooLarge("body_too_large")
    except web.HTTPRequestEntityTooLarge:  # pragma: no cover - aiohttp's own limit, if lower
        raise RequestTooLarge("body_too_large") from None
    return bytes(body)


async def read_form(request: web.Request) -> MultiDictProxy[str | Any]:
    """``request.post()``, with aiohttp's 413 as ``RequestTooLarge`` and what it cannot parse
    (a URL-encoded body that is not UTF-8, multipart without a boundary) as
    ``InvalidRequest("malformed_form")``: both were 500s."""
    try:
        return await request.post()
    except web.HTTPRequestEntityTooLarge:
        raise RequestTooLarge("body_too_large") from None
    except ValueError:  # UnicodeDecodeError included
        raise InvalidRequest(
            "malformed_form", public_message="The request body is not a valid form."
        ) from None


async def read_json_object(request: web.Request, limit: int) -> dict[str, Any]:
    """A JSON object body: at most ``limit`` bytes (``RequestTooLarge``), bounded in depth, each
    member once (``InvalidRequest("json:<why>")`` with a message fit for the caller)."""
    raw = await read_body(request, limit)
    try:
        return json_input.loads_object(raw, max_bytes=limit)
    except json_input.JsonInputError as e:
        raise InvalidRequest(
            f"json:{e.reason}", public_message=f"the body must be a JSON object: {e.message}"
        ) from None
