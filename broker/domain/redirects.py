"""Where ``?rd=`` may send a person after login: relative paths, or hosts the operator allowed.

Anything else falls back to a safe default. Browsers are lenient (they treat ``\\`` as ``/``, drop
tabs and newlines, accept ``//host``), so we refuse every input that a lenient parser could read
differently from a strict one, instead of trying to clean it up.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import parse_qsl, urlsplit

from broker.config import RedirectRule

DEFAULT_PORTS = {"http": 80, "https": 443}
MAX_REDIRECT_LENGTH = 2048


def _host_allowed(host: str, port: int, scheme: str, rules: Sequence[RedirectRule]) -> bool:
    for r in rules:
        if r.subdomains:
            if host != r.host and not host.endswith("." + r.host):
                continue
        elif host != r.host:
            continue
        if r.any_port:
            return True
        if r.port is None:
            if port == DEFAULT_PORTS[scheme]:
                return True
        elif port == r.port:
            return True
    return False


def safe_redirect(
    rd: str | None,
    *,
    own_origin: str,
    rules: Sequence[RedirectRule],
    fallback: str = "/session",
) -> str:
    """Return ``rd`` if it is safe to redirect a person to, else ``fallback``.

    ``own_origin`` is the broker's public origin (``scheme://host[:port]``), always allowed.
    """
    if not rd or len(rd) > MAX_REDIRECT_LENGTH:
        return fallback
    # Control characters, whitespace and backslashes are read differently by browsers.
    if any(c in rd for c in "\\ ") or any(ord(c) < 0x21 or ord(c) == 0x7F for c in rd):
        return fallback
    try:
        u = urlsplit(rd)
        port = u.port
    except ValueError:
        return fallback
    if u.fragment and "#" in u.fragment:
        return fallback
    # A redirect must not carry another redirect ("nested rd"): it would be followed blindly.
    if any(
        k.lower() in ("rd", "redirect", "redirect_uri", "return_to", "next")
        for k, _ in parse_qsl(u.query, keep_blank_values=True)
    ):
        return fallback
    if not u.scheme and not u.netloc:
        if not rd.startswith("/") or rd.startswith("//"):
            return fallback
        # Dot-segments could climb out of the path; a relative target needs none.
        if any(seg in (".", "..") for seg in u.path.split("/")):
            return fallback
        return rd
    if u.scheme not in DEFAULT_PORTS or not u.netloc or not u.hostname:
        return fallback
    if u.username is not None or u.password is not None or "@" in u.netloc:
        return fallback
    host = u.hostname.lower().rstrip(".")
    effective_port = port if port is not None else DEFAULT_PORTS[u.scheme]
    own = urlsplit(own_origin)
    own_port = own.port if own.port is not None else DEFAULT_PORTS.get(own.scheme, 0)
    if u.scheme == own.scheme and host == (own.hostname or "") and effective_port == own_port:
        return rd
    if _host_allowed(host, effective_port, u.scheme, rules):
        return rd
    return fallback
