"""The original request behind a forward-auth call, and its URL normalised for policy (C2, C3).

Pure functions: header values in, an ``OriginalRequest`` (or ``UrlRejected`` with a reason) out.

Reading the original request, by proxy style (the web layer only calls these for trusted peers):

- nginx ``auth_request``: ``X-Original-Method`` + ``X-Original-URL`` (an absolute URL);
- Traefik ForwardAuth, Caddy ``forward_auth``: ``X-Forwarded-Method``, ``-Proto``, ``-Host``,
  ``-Uri`` (origin-form: path and query);
- Envoy HTTP ``ext_authz`` with ``path_prefix: /auth``: the original path appended under
  ``/auth``, the original ``Host``, ``X-Forwarded-Proto`` when set (else ``http``), and the
  check request's own method.

More than one style in one request is refused (``ambiguous_original_request``): a client could
otherwise add the headers of a style its proxy does not set (Traefik and Caddy pass client
headers on to the auth request) and have the broker decide on a URL of its choosing.

Normalisation (RFC 3986 §6.2.2), the resource being ``<scheme>://<host>[:<port>]<path>``:

- scheme and host lower-cased, one trailing dot of the host dropped, the scheme's default port
  dropped; user info, percent-encoded hosts and anything but a DNS name, IPv4 or ``[IPv6]`` are
  refused;
- the query (from the first ``?``) is not part of the resource;
- percent-encodings of unreserved characters (RFC 3986 §2.3: ``A-Z a-z 0-9 - . _ ~``) are
  decoded, every other escape is kept with upper-case hex;
- runs of slashes are merged (``//a///b`` is ``/a/b``, as nginx and Caddy match it);
- refused outright: an encoded ``/`` (``%2F``), ``\\`` (``%5C``), ``%`` escapes of control
  characters (``%00``-``%1F``, ``%7F``), a double-encoded escape (``%25`` followed by two hex
  digits, e.g. ``%252e``), escapes that are not valid UTF-8 (overlong forms such as ``%C0%AE``),
  escaped non-ASCII characters that Unicode compatibility normalisation (NFKC) turns into ``/``,
  ``\\``, ``.`` or a space (``%EF%BC%8F``), or that are spaces (``%C2%A0``), raw ``\\``,
  ``#``, whitespace, control or non-ASCII characters, a malformed escape, and a path that does not
  start with ``/``;
- refused too, because upstreams read them in different ways, so that whatever the broker
  resolved them to some upstream would serve another resource (the differential test,
  ``tests/forward_auth/test_path_differential.py``, shows each): dot segments (``.``, ``..``:
  ``/secret//../x`` is ``/x`` once slashes are merged but ``/secret/x`` to RFC 3986 §5.2.4, and
  a plain router serves ``/secret/../x`` as it is), dot segments with an escaped dot (``%2e``,
  ``.%2E``: a dot segment to WHATWG-URL parsers such as Node's, a name to RFC 3986 resolvers), a
  segment that ends in a dot or a space (IIS strips them: ``/admin./x`` and ``/admin%20/x`` are
  ``/admin/x`` there) and ``;`` path parameters (Tomcat, Jetty and Spring strip them:
  ``/admin/..;/x`` is ``/x`` there, a resource under ``/admin/`` elsewhere);
- the method is upper-cased and must be an RFC 9110 token of letters.

When in doubt the request is refused: no legitimate browser or client sends these forms, and a
refused request is a 403 that tells the operator exactly which rule fired.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from dataclasses import dataclass

DEFAULT_PORTS = {"http": 80, "https": 443}
MAX_URL_LENGTH = 8192
MAX_HOST_LENGTH = 253

_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_HEX = frozenset("0123456789abcdefABCDEF")
_DOUBLE = re.compile(r"%25[0-9A-Fa-f]{2}")
_METHOD = re.compile(r"[A-Za-z]{1,32}")
_DNS_NAME = re.compile(
    r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*"
)
# Printable ASCII except space, '\' and '#' (each refused with its own reason below).
_PLAIN_PATH = re.compile(r"[!-~]*")
# Characters NFKC may produce from an escaped non-ASCII character that change how a path splits
# (or, for the space, what a segment is: IIS strips trailing spaces).
_PATH_SYNTAX = ("/", "\\", ".", ";", "%", "?", "#", " ")


class UrlRejected(ValueError):
    """The original request cannot be read or normalised; ``reason`` says which rule fired."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class OriginalRequest:
    """The request a proxy asks about, normalised. ``url`` is what the person asked for (for
    the redirect after login); ``resource`` is what policies see."""

    method: str
    scheme: str
    host: str  # lower-case; an IPv6 address keeps its brackets
    port: int | None  # None: the scheme's default port
    path: str  # normalised
    url: str  # scheme://host[:port] + the path and query as sent

    @property
    def origin(self) -> str:
        return f"{self.scheme}://{self.host}" + (f":{self.port}" if self.port else "")

    @property
    def resource(self) -> str:
        return self.origin + self.path


# --- pieces ----------------------------------------------------------------------------------


def normalise_method(method: str) -> str:
    if not _METHOD.fullmatch(method):
        raise UrlRejected("bad_method")
    return method.upper()


def normalise_scheme(scheme: str) -> str:
    s = scheme.strip().lower()
    if s not in DEFAULT_PORTS:
        raise UrlRejected("bad_scheme")
    return s


def normalise_authority(authority: str, scheme: str) -> tuple[str, int | None]:
    """``Host:port`` -> (lower-case host, port or None when it is the scheme's default)."""
    if not authority or "@" in authority or "%" in authority:
        raise UrlRejected("bad_host")
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            raise UrlRejected("bad_host")
        literal, rest = authority[1:end], authority[end + 1 :]
        try:
            ipaddress.IPv6Address(literal)
        except ValueError:
            raise UrlRejected("bad_host") from None
        host = "[" + literal.lower() + "]"
        if rest and not rest.startswith(":"):
            raise UrlRejected("bad_host")
        port_text = rest[1:] if rest else None
    else:
        host, sep, port_text_ = authority.rpartition(":")
        if not sep:
            host, port_text_ = authority, ""
        port_text = port_text_ if sep else None
        host = host.lower()
        if host.endswith("."):
            host = host[:-1]
        if not host or len(host) > MAX_HOST_LENGTH or not _DNS_NAME.fullmatch(host):
            raise UrlRejected("bad_host")
    port: int | None = None
    if port_text is not None:
        if not port_text.isascii() or not port_text.isdigit() or len(port_text) > 5:
            raise UrlRejected("bad_port")
        port = int(port_text)
        if not 0 < port < 65536:
            raise UrlRejected("bad_port")
        if port == DEFAULT_PORTS[scheme]:
            port = None
    return host, port


def _decode_segment(seg: str) -> str:
    """Decode unreserved escapes, upper-case the others, refuse the dangerous ones."""
    if "%" not in seg:
        return seg
    out: list[str] = []
    raw = bytearray()  # the bytes of a run of non-unreserved escapes, to check UTF-8
    i, n = 0, len(seg)
    while i < n:
        c = seg[i]
        if c != "%":
            if raw:
                _check_escaped_bytes(bytes(raw))
                raw.clear()
            out.append(c)
            i += 1
            continue
        hx = seg[i + 1 : i + 3]
        if len(hx) != 2 or hx[0] not in _HEX or hx[1] not in _HEX:
            raise UrlRejected("bad_escape")
        b = int(hx, 16)
        ch = chr(b)
        if ch in _UNRESERVED:
            if raw:
                _check_escaped_bytes(bytes(raw))
                raw.clear()
            out.append(ch)
        elif b == 0x2F:
            raise UrlRejected("encoded_slash")
        elif b == 0x5C:
            raise UrlRejected("encoded_backslash")
        elif b < 0x20 or b == 0x7F:
            raise UrlRejected("encoded_control_character")
        elif b == 0x25 and i + 5 <= n and seg[i + 3] in _HEX and seg[i + 4] in _HEX:
            raise UrlRejected("double_encoding")
        else:
            if b >= 0x80:
                raw.append(b)
            elif raw:
                _check_escaped_bytes(bytes(raw))
                raw.clear()
            out.append("%" + hx.upper())
        i += 3
    if raw:
        _check_escaped_bytes(bytes(raw))
    decoded = "".join(out)
    if "%25" in decoded and _DOUBLE.search(decoded):  # "%25%32%65" decodes to "%252e"
        raise UrlRejected("double_encoding")
    return decoded


def _check_escaped_bytes(raw: bytes) -> None:
    try:
        text = raw.decode("utf-8")  # strict: overlong forms and surrogates fail
    except UnicodeDecodeError:
        raise UrlRejected("invalid_utf8_escape") from None
    folded = unicodedata.normalize("NFKC", text)
    if any(c in folded for c in _PATH_SYNTAX) or any(
        unicodedata.category(c) in ("Cc", "Cf", "Zs", "Zl", "Zp") for c in text
    ):
        raise UrlRejected("confusable_escape")


def normalise_path(raw: str) -> str:
    """The policy form of an origin-form path (the query, if any, already removed).

    A path that upstreams read in different ways is refused, never resolved: whatever the
    broker resolved it to, some upstream serves another resource (see the module docstring).
    """
    if not raw.startswith("/"):
        raise UrlRejected("path_not_absolute")
    if not _PLAIN_PATH.fullmatch(raw):
        if not raw.isascii():
            raise UrlRejected("raw_non_ascii")
        raise UrlRejected("control_or_space")
    if "\\" in raw:
        raise UrlRejected("backslash")
    if "#" in raw:
        raise UrlRejected("fragment")
    if ";" in raw:  # Tomcat, Jetty and Spring strip ";..." from a segment; others keep it
        raise UrlRejected("path_parameter")
    segs: list[str] = []
    for seg in raw.split("/"):
        if not seg:  # empty segments merge (nginx, Caddy): "/a//b" is "/a/b"
            continue
        decoded = _decode_segment(seg)
        if decoded[-1] == ".":  # ".", "..", their escapes, and "admin." (IIS strips the dot)
            raise UrlRejected(_dot_reason(decoded, seg))
        if decoded.endswith("%20"):  # IIS strips trailing spaces too
            raise UrlRejected("trailing_space")
        segs.append(decoded)
    if not segs:
        return "/"
    return "/" + "/".join(segs) + ("/" if raw[-1] == "/" else "")


def _dot_reason(decoded: str, raw: str) -> str:
    if decoded not in (".", ".."):
        return "trailing_dot"
    # As sent, or with an escaped dot (%2e): WHATWG-URL parsers resolve that as a dot segment,
    # RFC 3986 resolvers and plain routers do not.
    return "dot_segment" if raw == decoded else "encoded_dot_segment"


def _split_query(target: str) -> tuple[str, str]:
    q = target.find("?")
    return (target, "") if q < 0 else (target[:q], target[q:])


def _build(method: str, scheme: str, authority: str, target: str) -> OriginalRequest:
    if len(target) + len(authority) > MAX_URL_LENGTH:
        raise UrlRejected("url_too_long")
    m = normalise_method(method)
    s = normalise_scheme(scheme)
    host, port = normalise_authority(authority, s)
    raw_path, query = _split_query(target)
    path = normalise_path(raw_path)
    if query and not _PLAIN_PATH.fullmatch(query):
        raise UrlRejected("control_or_space")
    origin = f"{s}://{host}" + (f":{port}" if port else "")
    return OriginalRequest(
        method=m, scheme=s, host=host, port=port, path=path, url=origin + raw_path + query
    )


# --- proxy styles ----------------------------------------------------------------------------


def from_original_url(method: str, url: str) -> OriginalRequest:
    """nginx: ``X-Original-Method`` and ``X-Original-URL`` (``scheme://host[:port]/path?q``)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise UrlRejected("url_not_absolute")
    slash = rest.find("/")
    qmark = rest.find("?")
    if slash < 0 or (0 <= qmark < slash):
        authority, target = (rest, "/") if qmark < 0 else (rest[:qmark], "/" + rest[qmark:])
    else:
        authority, target = rest[:slash], rest[slash:]
    if "#" in authority:
        raise UrlRejected("bad_host")
    return _build(method, scheme, authority, target)


def from_forwarded(method: str, proto: str, host: str, uri: str) -> OriginalRequest:
    """Traefik and Caddy: ``X-Forwarded-Method``, ``-Proto``, ``-Host``, ``-Uri``."""
    if not uri.startswith("/"):
        raise UrlRejected("path_not_absolute")
    return _build(method, proto, host, uri)


def from_envoy(method: str, proto: str | None, host: str, target: str) -> OriginalRequest:
    """Envoy ``ext_authz`` (HTTP service, ``path_prefix``): the path after the prefix."""
    return _build(method, proto or "http", host, target)


# --- public routes ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PublicPattern:
    """A ``[[proxy.public]]`` URL in the normalised form: exact, or a prefix when it ends in
    ``*``."""

    resource: str
    prefix: bool

    def matches(self, resource: str) -> bool:
        return resource.startswith(self.resource) if self.prefix else resource == self.resource


def public_pattern(url: str) -> PublicPattern:
    """Normalise a configured public route the way requests are normalised."""
    prefix = url.endswith("*")
    body = url[:-1] if prefix else url
    if "*" in body or "?" in body:
        raise UrlRejected("public_route_wildcard_only_at_the_end")
    req = from_original_url("GET", body)
    resource = req.resource
    if prefix and body.endswith("/") and not resource.endswith("/"):
        resource += "/"
    return PublicPattern(resource=resource, prefix=prefix)
