"""Tricky request paths, and the ways upstreams read them, for the path differential test.

``corpus()`` is a deterministic, bounded set of paths built from the segments that servers
disagree about (dot segments, escaped dots, empty segments, trailing dots and spaces, ``;``
parameters, escaped and raw slashes and backslashes, double and overlong escapes).

``readings(path)`` is what each kind of upstream routes a raw path to, decoded once, with runs
of slashes merged (the broker merges them too: ``/a//b`` is ``/a/b`` to its policies):

- ``rfc3986``: dot segments removed as RFC 3986 §5.2.4 says (literal dots only), then decoded;
- ``whatwg``: the WHATWG URL parser (Node's ``new URL``, browsers): ``\\`` is ``/``, ``%2e`` is a
  dot in a dot segment, each ``..`` removes one segment, empty or not;
- ``decode_first``: decoded, then dot segments removed (routers that work on the decoded path);
- ``merge_first``: decoded, slashes merged, then dot segments removed (nginx's ``$uri``);
- ``raw``: no resolution at all (Node ``http``, Go and most plain routers);
- ``iis``: as ``decode_first``, with trailing dots and spaces stripped from each segment;
- ``tomcat``: ``;`` parameters stripped from each segment, then as ``rfc3986``.

A path is ambiguous when the readings differ: whatever the broker decided, some upstream would
serve another resource, so the broker must refuse it.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from urllib.parse import unquote_to_bytes

# The attacks and their neighbours, then generated combinations.
FIXED = [
    "/x/y",
    "/x/y/",
    "/public/logo.png",
    "/admin/users",
    "/admin%20/users",
    "/admin./users",
    "/admin%2e/users",
    "/admin../users",
    "/admin%20./users",
    "/secret//../x",
    "/admin//../x",
    "/admin/x//../y",
    "/a/%2e%2e/b",
    "/admin/%2e%2e/x",
    "/admin/%2E%2e/x",
    "/admin/.%2e/x",
    "/admin/%2e/x",
    "/admin/../x",
    "/admin/./x",
    "/admin/..;/x",
    "/admin;x/users",
    "/public/..;/admin/users",
    "/public/%2e%2e/admin/users",
    "/public%2F..%2Fadmin/users",
    "/public%5C..%5Cadmin/users",
    "/public\\..\\admin/users",
    "/%61dmin/users",
    "/ADMIN/users",
    "//admin/users",
    "/x//y",
    "/x/%252e%252e/admin",
    "/x/%c0%ae%c0%ae/admin",
    "/x/%ef%bc%8e%ef%bc%8e/admin",
    "/x/a%20b",
    "/x/%7euser",
    "/x/a%3bb",
    "/x/file.",
    "/x/...",
    "/.well-known/x",
]

_NAMES = ["admin", "public", "x", "y"]
_TRICKS = [
    "",
    ".",
    "..",
    "%2e",
    "%2E%2e",
    ".%2e",
    "%2e.",
    "...",
    "admin.",
    "admin%20",
    "admin%2e",
    "admin%09",
    "admin;",
    "admin;x=1",
    "..;",
    ";",
    "%3b",
    "%2f",
    "..%2f",
    "%5c",
    "..\\",
    "%61dmin",
    "%252e%252e",
    "%20",
    "a%20b",
    "%7e",
    "admin%c2%a0",
]


def corpus(size: int = 160, seed: int = 11) -> list[str]:
    """``FIXED`` and up to ``size`` generated paths of two to four segments, deduplicated."""
    rng = random.Random(seed)
    out = dict.fromkeys(FIXED)
    pool = _NAMES + _TRICKS
    while len(out) < len(FIXED) + size:
        segs = [rng.choice(pool) for _ in range(rng.randint(2, 4))]
        # a name somewhere, so that most paths mean something to the policies
        segs[rng.randrange(len(segs))] = rng.choice(_NAMES)
        out["/" + "/".join(segs)] = None
    return list(out)


# --- readings ------------------------------------------------------------------------------

_PLAIN_DOT = frozenset({"."})
_PLAIN_DOTDOT = frozenset({".."})
_DOT = frozenset({".", "%2e"})
_DOTDOT = frozenset({"..", ".%2e", "%2e.", "%2e%2e"})


def _remove_dots(segments: list[str], *, dot: frozenset[str], dotdot: frozenset[str]) -> list[str]:
    """RFC 3986 §5.2.4 over a split path (``segments[0]`` is the empty one before the first
    ``/``): a dot segment at the end leaves the path ending in ``/``."""
    out: list[str] = []
    last = len(segments) - 1
    for i, seg in enumerate(segments[1:], start=1):
        key = seg.lower()
        if key in dot or key in dotdot:
            if key in dotdot and out:
                out.pop()
            if i == last:
                out.append("")
            continue
        out.append(seg)
    return ["", *out]


def _resolve(
    path: str, *, dot: frozenset[str] = _PLAIN_DOT, dotdot: frozenset[str] = _PLAIN_DOTDOT
) -> str:
    return "/".join(_remove_dots(path.split("/"), dot=dot, dotdot=dotdot))


def _merge(b: bytes) -> bytes:
    return re.sub(rb"/+", b"/", b)


def _decode(path: str) -> bytes:
    return unquote_to_bytes(path)


def _latin(b: bytes) -> str:
    """Bytes as a str, one character per byte, so decoded paths can be split and resolved."""
    return b.decode("latin-1")


def rfc3986(path: str) -> bytes:
    return _decode(_resolve(path))


def whatwg(path: str) -> bytes:
    return _decode(_resolve(path.replace("\\", "/"), dot=_DOT, dotdot=_DOTDOT))


def decode_first(path: str) -> bytes:
    return _resolve(_latin(_decode(path))).encode("latin-1")


def merge_first(path: str) -> bytes:
    return _resolve(_latin(_merge(_decode(path)))).encode("latin-1")


def raw(path: str) -> bytes:
    return _decode(path)


def iis(path: str) -> bytes:
    resolved = _resolve(_latin(_decode(path)).replace("\\", "/"))
    return "/".join(s.rstrip(". ") for s in resolved.split("/")).encode("latin-1")


def tomcat(path: str) -> bytes:
    return rfc3986("/".join(s.split(";", 1)[0] for s in path.split("/")))


READINGS: dict[str, Callable[[str], bytes]] = {
    "rfc3986": rfc3986,
    "whatwg": whatwg,
    "decode_first": decode_first,
    "merge_first": merge_first,
    "raw": raw,
    "iis": iis,
    "tomcat": tomcat,
}


def canonical(decoded: bytes) -> bytes:
    """Runs of slashes merged: the form in which two readings are compared."""
    return _merge(decoded)


def readings(path: str) -> dict[str, bytes]:
    """Each reading of a raw path (without its query), in canonical form."""
    return {name: canonical(read(path)) for name, read in READINGS.items()}


def ambiguous(path: str) -> bool:
    return len(set(readings(path).values())) > 1
