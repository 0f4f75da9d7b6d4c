"""CSRF tokens bound to what the form acts on (a session, a pending login, a browser cookie).

token = HMAC-SHA256(key, purpose ":" binding); checked in constant time, plus the Origin header
when the browser sends one.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlsplit

from aiohttp import web

from broker.errors import CsrfError


def csrf_token(key: bytes, purpose: str, binding: str) -> str:
    return hmac.new(key, f"{purpose}:{binding}".encode(), hashlib.sha256).hexdigest()


def check_csrf(
    request: web.Request,
    form_value: str,
    *,
    key: bytes,
    purpose: str,
    binding: str,
    public_url: str,
) -> None:
    origin = request.headers.get("Origin")
    if origin is not None:
        own = urlsplit(public_url)
        # Browsers send "null" under strict referrer policies; trust it only when the browser
        # itself says the request is same-origin (sandboxed frames send "null" too).
        same_origin_null = (
            origin == "null" and request.headers.get("Sec-Fetch-Site") == "same-origin"
        )
        if origin != f"{own.scheme}://{own.netloc}" and not same_origin_null:
            raise CsrfError("origin_mismatch")
    if not binding or not form_value:
        raise CsrfError("csrf_missing")
    # as bytes: compare_digest refuses (TypeError, a 500) a str that is not ASCII
    expected = csrf_token(key, purpose, binding).encode()
    if not hmac.compare_digest(expected, form_value.encode("utf-8", "surrogatepass")):
        raise CsrfError("csrf_mismatch")
