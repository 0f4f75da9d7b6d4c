"""Outbound HTTP to identity providers: bounded in time and size, never following redirects.

Every call has ``aiohttp.ClientTimeout(total=config.timeout)`` of its own, so a slow provider
only ever delays the requests that went to it. Faults become ``ProviderUnavailable`` whose
``reason`` names the endpoint and what went wrong (``"jwks_timeout"``,
``"discovery_status:500"``, ...).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from broker.domain import json_input
from broker.errors import ProviderUnavailable

MAX_RESPONSE_BYTES = 1024 * 1024
"""Discovery documents, key sets and token responses larger than this are refused."""


@dataclass(frozen=True)
class HttpResponse:
    status: int
    content_type: str
    body: bytes

    def json(self, what: str) -> Any:
        """The body as JSON (UTF-8, bounded in depth, no NaN/Infinity); else
        ``ProviderUnavailable("<what>_not_json")`` (or ``_too_deep``, ``_not_utf8``). Duplicate
        members are let through (last wins), as before: providers are not held to more."""
        try:
            return json_input.loads(self.body, max_bytes=MAX_RESPONSE_BYTES, unique_members=False)
        except (json_input.JsonTooDeep, json_input.JsonNotUtf8) as e:
            raise ProviderUnavailable(f"{what}_{e.reason}") from None
        except json_input.JsonInputError:
            raise ProviderUnavailable(f"{what}_not_json") from None


def is_http_url(url: str, *, require_https: bool = False) -> bool:
    """An absolute http(s) URL with a host and no fragment (``https`` only when required)."""
    try:
        u = urlsplit(url)
    except ValueError:
        return False
    schemes = ("https",) if require_https else ("http", "https")
    return u.scheme in schemes and bool(u.hostname) and not u.fragment


async def request(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    what: str,
    time_limit: float,
    data: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
) -> HttpResponse:
    """One request, its whole body read (at most ``MAX_RESPONSE_BYTES``) within ``time_limit``."""
    try:
        async with http.request(
            method,
            url,
            data=dict(data) if data is not None else None,
            headers={"Accept": "application/json", **(headers or {})},
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=time_limit),
        ) as resp:
            if resp.content_length is not None and resp.content_length > MAX_RESPONSE_BYTES:
                raise ProviderUnavailable(f"{what}_too_large")
            body = bytearray()
            async for chunk in resp.content.iter_chunked(64 * 1024):
                body += chunk
                if len(body) > MAX_RESPONSE_BYTES:
                    raise ProviderUnavailable(f"{what}_too_large")
            return HttpResponse(resp.status, resp.content_type, bytes(body))
    except TimeoutError:
        raise ProviderUnavailable(f"{what}_timeout") from None
    except (aiohttp.ClientError, ValueError, OSError) as e:
        raise ProviderUnavailable(f"{what}_unreachable:{type(e).__name__}") from None


async def get_json_object(
    http: aiohttp.ClientSession, url: str, *, what: str, time_limit: float
) -> dict[str, Any]:
    """GET a JSON object; anything but a 200 with a JSON object is ``ProviderUnavailable``."""
    resp = await request(http, "GET", url, what=what, time_limit=time_limit)
    if resp.status != 200:
        raise ProviderUnavailable(f"{what}_status:{resp.status}")
    doc = resp.json(what)
    if not isinstance(doc, dict):
        raise ProviderUnavailable(f"{what}_not_object")
    return doc
