"""Who is asking: the client address, honouring forwarding headers only from trusted proxies."""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Sequence

from aiohttp import web

from broker.config import Network
from broker.logs import request_id_var
from broker.service.audit import RequestInfo


def peer_is_trusted(peer: str | None, trusted: Sequence[Network]) -> bool:
    if not peer or not trusted:
        return False
    # ``config.Networks`` as it is: its hash is cached (``tuple()`` would copy it into a plain one)
    return _trusted(peer, trusted if isinstance(trusted, tuple) else tuple(trusted))


@functools.lru_cache(maxsize=4096)
def _trusted(peer: str, trusted: tuple[Network, ...]) -> bool:
    """Remembered per address: proxies are few, and forward-auth asks on every request."""
    try:
        addr = ipaddress.ip_address(peer)
    except ValueError:
        return False
    return any(addr in net for net in trusted)


def client_ip(request: web.Request, trusted: Sequence[Network]) -> str:
    """The peer address; with a trusted peer, the right-most untrusted X-Forwarded-For entry."""
    peer = request.remote or ""
    if not peer_is_trusted(peer, trusted) or "X-Forwarded-For" not in request.headers:
        return peer
    hops = [h.strip() for h in ",".join(request.headers.getall("X-Forwarded-For", [])).split(",")]
    for hop in reversed([h for h in hops if h]):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return peer  # a garbled chain: trust only what we saw ourselves
        if not peer_is_trusted(hop, trusted):
            return hop
    return peer


def request_info(request: web.Request, trusted: Sequence[Network]) -> RequestInfo:
    return RequestInfo(
        request_id=request_id_var.get(),
        source_ip=client_ip(request, trusted),
        user_agent=request.headers.get("User-Agent", "")[:200],
    )
