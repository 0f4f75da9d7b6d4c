"""Typed configuration (contract C1): one TOML file, loaded once, every problem listed.

``load_settings(path)`` returns a frozen ``Settings`` or raises ``ConfigError`` whose ``problems``
name each bad key by its dotted path. ``${ENV_VAR}`` inside any string is replaced from the
environment, ``${ENV_VAR:-default}`` likewise but with ``default`` when the variable is unset or
empty (as in the shell); ``$${`` is a literal ``${``. Durations are strings such as ``"15m"``,
``"1h30m"``, ``"7d"``. Policy documents named by path are read here (relative to the config
file) but parsed by the policy engine in the service layer, which is where their own errors are
reported.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from broker.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("config/broker.toml")

Algorithm = Literal["EdDSA", "ES256", "RS256"]
ALGORITHMS: tuple[Algorithm, ...] = ("EdDSA", "ES256", "RS256")
ProviderType = Literal["oidc", "google", "local"]

_DURATION_PART = re.compile(r"(\d+)(ms|s|m|h|d|w)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
# ``$${`` | ``${NAME}`` | ``${NAME:-default}`` (the default runs to the first ``}``).
_ENV = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+=@-]{0,63}$")
_PROVIDER_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")

#: Provider names that would collide with a namespace the broker owns, and why. A provider's
#: claims become ``<provider>:<claim>`` condition keys (DESIGN C2): under one of these names
#: they would be, or would be confused with, keys and actions only the broker may set.
RESERVED_PROVIDER_NAMES: Mapping[str, str] = {
    "aws": "aws:* are global condition keys set only by the broker (aws:MultiFactorAuthPresent, "
    "aws:SourceIp, ...)",
    "broker": "broker:* are global condition keys set only by the broker "
    "(broker:MultiFactorAuthPresent, broker:SourceIp, ...)",
    "sts": "sts:* are the broker's STS actions and condition keys (sts:ExternalId, "
    "sts:RoleSessionName, ...)",
    "iam": "iam:* are the broker's admin actions",
    "http": "http:* are the actions of proxied HTTP requests",
}


def reserved_provider_reason(name: str) -> str | None:
    """Why ``name`` cannot name a provider, or None. Condition keys match case-insensitively
    (by ``str.lower``), so ``AWS`` is ``aws`` and ``bro\u212aer`` (a Kelvin sign, lower-cased
    to ``k``) is ``broker``; ``casefold`` too, to be strict. A colon ends the namespace."""
    namespace = name.split(":", 1)[0]
    for form in (namespace.lower(), namespace.casefold()):
        if form in RESERVED_PROVIDER_NAMES:
            return RESERVED_PROVIDER_NAMES[form]
    return None


class Secret:
    """A string that never shows itself in ``repr``/``str`` (logs, tracebacks, check-config)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def parse_duration(text: str) -> float:
    """``"90s"``, ``"15m"``, ``"1h30m"``, ``"7d"`` -> seconds. Raises ``ValueError``."""
    s = text.strip()
    if not s:
        raise ValueError("empty duration")
    pos, total = 0, 0.0
    for m in _DURATION_PART.finditer(s):
        if m.start() != pos:
            break
        total += int(m.group(1)) * _UNIT_SECONDS[m.group(2)]
        pos = m.end()
    if pos != len(s):
        raise ValueError(f"{text!r} is not a duration like '15m', '1h30m' or '7d'")
    return total


@dataclass(frozen=True)
class RedirectRule:
    """One ``allowed_redirect_domains`` entry: ``host`` or ``.domain`` (with subdomains), port."""

    host: str  # lower-case, without the leading dot
    subdomains: bool
    port: int | None  # None: only the scheme's default port
    any_port: bool


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Networks(tuple[Network, ...]):
    """``[server] trusted_proxies``: a tuple of networks whose hash is computed once.

    Every request asks whether its peer is one of them, and the answer is remembered keyed on
    (peer, networks): hashing the networks themselves (``ipaddress`` hashes in Python) cost more
    than the lookup it keys."""

    _hash: int

    def __new__(cls, networks: Iterable[Network] = ()) -> Networks:
        self = super().__new__(cls, networks)
        self._hash = tuple.__hash__(self)
        return self

    def __hash__(self) -> int:
        return self._hash


@dataclass(frozen=True)
class ServerConfig:
    listen_host: str = "127.0.0.1"
    listen_port: int = 8000
    public_url: str = "http://127.0.0.1:8000"
    allowed_redirect_domains: tuple[RedirectRule, ...] = ()
    trusted_proxies: Networks = field(default_factory=Networks)  # not a plain tuple: see Networks
    account_id: str = "000000000000"
    # Admission control (broker.web.admission): requests handled at once, and how long one may
    # wait for a turn (or have waited unseen in the event loop) before it is refused with 503.
    max_concurrency: int = 256
    queue_timeout: float = 2.0

    @property
    def secure(self) -> bool:
        return self.public_url.startswith("https://")


@dataclass(frozen=True)
class StoreConfig:
    url: str = "sqlite:///broker.db"

    def __repr__(self) -> str:
        return f"StoreConfig(url={redact_url(self.url)!r})"


def redact_url(url: str) -> str:
    """The URL with any password replaced, for logs and messages."""
    u = urlsplit(url)
    if u.password is None:
        return url
    netloc = u.netloc.replace(f":{u.password}@", ":****@", 1)
    return u._replace(netloc=netloc).geturl()


@dataclass(frozen=True)
class KeysConfig:
    algorithm: Algorithm = "EdDSA"
    rotate_every: float = 7 * 86400
    kek: Secret | None = None


@dataclass(frozen=True)
class SessionConfig:
    cookie_name: str = "broker_session"
    lifetime: float = 8 * 3600
    idle_timeout: float = 3600
    token_lifetime: float = 900  # the JWT in the cookie is short-lived and re-issued while in use
    cookie_domain: str = ""  # "" = host-only; ".example.com" lets apps on sibling hosts see it
    revocation_max_staleness: float = 10  # past it, credentials are refused (fail closed)


@dataclass(frozen=True)
class LoginConfig:
    state_ttl: float = 600
    max_failures_per_user: int = 5
    max_failures_per_address: int = 20
    failure_window: float = 900
    hash_workers: int = 2  # threads hashing passwords, off the event loop
    hash_queue: int = 32  # hashes that may wait for a thread; beyond that, 503


@dataclass(frozen=True)
class ProviderConfig:
    name: str
    type: ProviderType
    issuer: str = ""
    client_id: str = ""
    client_secret: Secret | None = None
    scopes: tuple[str, ...] = ("openid", "email", "profile")
    audiences: tuple[str, ...] = ()  # for tokens presented directly; default (client_id,)
    display_name: str = ""
    leeway: float = 60
    timeout: float = 10
    discovery_ttl: float = 3600
    jwks_refetch_cooldown: float = 60
    # OIDC Back-Channel Logout 1.0: the URI registered at the provider; "" = not accepted
    backchannel_logout_uri: str = ""


@dataclass(frozen=True)
class RoleConfig:
    name: str
    description: str = ""
    max_session_duration: float = 3600
    trust_policy: Mapping[str, Any] = field(default_factory=dict)
    policies: tuple[Mapping[str, Any], ...] = ()
    permissions_boundary: Mapping[str, Any] | None = None
    managed_policies: tuple[str, ...] = ()  # names of [policies.*] attached to the role


@dataclass(frozen=True)
class ManagedPolicyConfig:
    name: str
    document: Mapping[str, Any]


@dataclass(frozen=True)
class PublicRoute:
    url: str


@dataclass(frozen=True)
class ProxyConfig:
    """Forward-auth (``/auth``) options besides the public routes."""

    assertion_lifetime: float = 60  # X-Auth-Request-Assertion JWTs
    # How long a proxy may reuse an allow (Cache-Control: max-age on /auth 200s): 0 or 1 s,
    # so that with the revocation poll (1 s) a revocation still reaches every request in 2 s.
    auth_cache_max_age: int = 1


@dataclass(frozen=True)
class UiConfig:
    """``[ui]``: the branding of the pages people see."""

    title: str = "broker"
    logo: Path | None = None  # an SVG, PNG, JPEG or WebP file, served at /ui/logo
    accent: str = "#2457c5"  # buttons and links; white text on it must reach WCAG AA (4.5:1)


LOGO_TYPES = {
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
}
MAX_LOGO_BYTES = 256 * 1024


def contrast_with_white(colour: str) -> float:
    """WCAG 2 contrast ratio of white text on ``#rrggbb``."""

    def channel(hex2: str) -> float:
        c = int(hex2, 16) / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(colour[i : i + 2]) for i in (1, 3, 5))
    luminance = 0.2126 * r + 0.7152 * g + 0.0722 * b
    return 1.05 / (luminance + 0.05)


@dataclass(frozen=True)
class Settings:
    server: ServerConfig = field(default_factory=ServerConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    keys: KeysConfig = field(default_factory=KeysConfig)
    session: SessionConfig = field(default_factory=SessionConfig)
    login: LoginConfig = field(default_factory=LoginConfig)
    providers: Mapping[str, ProviderConfig] = field(default_factory=dict)
    roles: Mapping[str, RoleConfig] = field(default_factory=dict)
    policies: Mapping[str, ManagedPolicyConfig] = field(default_factory=dict)
    public_routes: tuple[PublicRoute, ...] = ()
    proxy: ProxyConfig = field(default_factory=ProxyConfig)
    ui: UiConfig = field(default_factory=UiConfig)
    config_path: Path | None = None
    log_level: str = "INFO"

    def arn(self, kind: str, name: str) -> str:
        return f"arn:broker:iam::{self.server.account_id}:{kind}/{name}"

    @property
    def sqlite_path(self) -> Path | None:
        """The SQLite file of the embedded default, or None for another store."""
        if not self.store.url.startswith("sqlite"):
            return None
        path = self.store.url.split(":///", 1)[1] if ":///" in self.store.url else ""
        if not path or path == ":memory:":
            return None
        return Path(path)


# --- loading -------------------------------------------------------------------------------


class _Problems:
    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, where: str, message: str) -> None:
        self.items.append(f"{where}: {message}")


def substitute_env(value: Any, where: str, problems: _Problems, env: Mapping[str, str]) -> Any:
    """Replace ``${VAR}`` and ``${VAR:-default}`` in every string of a TOML value tree."""
    if isinstance(value, str):

        def repl(m: re.Match[str]) -> str:
            if m.group(0) == "$${":
                return "${"
            name, default = m.group(1), m.group(2)
            if default is not None:
                # The default is taken as written: neither it nor the value is scanned again.
                return env.get(name) or default
            if name not in env:
                problems.add(where, f"environment variable {name} is not set")
                return ""
            return env[name]

        return _ENV.sub(repl, value)
    if isinstance(value, dict):
        return {
            k: substitute_env(v, f"{where}.{k}" if where else k, problems, env)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [substitute_env(v, f"{where}[{i}]", problems, env) for i, v in enumerate(value)]
    return value


class _Table:
    """Reads typed values out of one TOML table, recording problems instead of raising."""

    def __init__(self, data: Any, where: str, problems: _Problems) -> None:
        self.where = where
        self.problems = problems
        if data is None:
            data = {}
        if not isinstance(data, dict):
            problems.add(where, "must be a table")
            data = {}
        self.data: dict[str, Any] = data
        self.seen: set[str] = set()

    def _get(self, key: str) -> Any:
        self.seen.add(key)
        return self.data.get(key)

    def path(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def string(self, key: str, default: str, *, required: bool = False) -> str:
        v = self._get(key)
        if v is None:
            if required:
                self.problems.add(self.path(key), "is required")
            return default
        if not isinstance(v, str):
            self.problems.add(self.path(key), f"must be a string, not {type(v).__name__}")
            return default
        return v

    def num(self, key: str, default: float, *, minimum: float = 0, integer: bool = False) -> float:
        v = self._get(key)
        if v is None:
            return default
        if isinstance(v, bool) or not isinstance(v, int | float):
            self.problems.add(self.path(key), "must be a number")
            return default
        if integer and not isinstance(v, int):
            self.problems.add(self.path(key), "must be a whole number")
            return default
        if v < minimum:
            self.problems.add(self.path(key), f"must be at least {minimum}")
            return default
        return float(v)

    def duration(self, key: str, default: float, *, allow_zero: bool = False) -> float:
        v = self._get(key)
        if v is None:
            return default
        if not isinstance(v, str):
            self.problems.add(self.path(key), "must be a duration string such as '15m' or '1h'")
            return default
        try:
            seconds = parse_duration(v)
        except ValueError as e:
            self.problems.add(self.path(key), str(e))
            return default
        if seconds < 0 or (seconds == 0 and not allow_zero):
            self.problems.add(self.path(key), "must be longer than zero")
            return default
        return seconds

    def str_list(self, key: str, default: tuple[str, ...]) -> tuple[str, ...]:
        v = self._get(key)
        if v is None:
            return default
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            self.problems.add(self.path(key), "must be a list of strings")
            return default
        return tuple(v)

    def table(self, key: str) -> _Table:
        return _Table(self._get(key), self.path(key), self.problems)

    def check_unknown(self) -> None:
        for key in self.data:
            if key not in self.seen:
                self.problems.add(self.path(key), "unknown key")


def _parse_redirect_rule(text: str, where: str, problems: _Problems) -> RedirectRule | None:
    t = text.strip().lower()
    if not t or "/" in t or "@" in t:
        problems.add(where, f"{text!r} must be 'host', '.domain', 'host:port' or 'host:*'")
        return None
    host, port, any_port = t, None, False
    if ":" in t:
        host, _, p = t.rpartition(":")
        if p == "*":
            any_port = True
        elif p.isdigit() and 0 < int(p) < 65536:
            port = int(p)
        else:
            problems.add(where, f"{text!r}: the port must be a number or '*'")
            return None
    subdomains = host.startswith(".")
    host = host[1:] if subdomains else host
    if not re.fullmatch(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?", host) or ".." in host:
        problems.add(where, f"{text!r} is not a host name")
        return None
    return RedirectRule(host=host, subdomains=subdomains, port=port, any_port=any_port)


def _load_document(
    value: Any, base: Path, where: str, problems: _Problems
) -> Mapping[str, Any] | None:
    """A policy given as a path (relative to the config file) or as an inline table."""
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        p = (base / value) if not Path(value).is_absolute() else Path(value)
        try:
            doc = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            problems.add(where, f"policy file {value!r} not found (looked in {p})")
            return None
        except (OSError, ValueError) as e:
            problems.add(where, f"policy file {value!r} is not valid JSON: {e}")
            return None
        if not isinstance(doc, dict):
            problems.add(where, f"policy file {value!r} must hold a JSON object")
            return None
        return doc
    problems.add(where, "must be a path to a JSON file or an inline table")
    return None


def _server(t: _Table) -> ServerConfig:
    listen = t.string("listen", "127.0.0.1:8000")
    host, _, port_s = listen.rpartition(":")
    port = 8000
    if not host or not port_s.isdigit() or not 0 <= int(port_s) < 65536:
        t.problems.add(t.path("listen"), f"{listen!r} must be 'host:port'")
    else:
        port = int(port_s)
        host = host.strip("[]")
    public_url = t.string("public_url", f"http://{listen}").rstrip("/")
    u = urlsplit(public_url)
    if u.scheme not in ("http", "https") or not u.hostname or u.query or u.fragment:
        t.problems.add(t.path("public_url"), f"{public_url!r} must be an http(s) URL")
    rules = []
    for i, r in enumerate(t.str_list("allowed_redirect_domains", ())):
        rule = _parse_redirect_rule(r, f"{t.path('allowed_redirect_domains')}[{i}]", t.problems)
        if rule:
            rules.append(rule)
    proxies: list[Network] = []
    for i, cidr in enumerate(t.str_list("trusted_proxies", ())):
        try:
            proxies.append(ipaddress.ip_network(cidr, strict=False))
        except ValueError:
            t.problems.add(f"{t.path('trusted_proxies')}[{i}]", f"{cidr!r} is not an IP network")
    account = t.string("account_id", "000000000000")
    if not re.fullmatch(r"\d{12}", account):
        t.problems.add(t.path("account_id"), "must be 12 digits")
    max_concurrency = int(t.num("max_concurrency", 256, minimum=1, integer=True))
    queue_timeout = t.duration("queue_timeout", 2.0)
    t.check_unknown()
    return ServerConfig(
        listen_host=host or "127.0.0.1",
        listen_port=port,
        public_url=public_url,
        allowed_redirect_domains=tuple(rules),
        trusted_proxies=Networks(proxies),
        account_id=account,
        max_concurrency=max_concurrency,
        queue_timeout=queue_timeout,
    )


def _store(t: _Table, base: Path) -> StoreConfig:
    url = t.string("url", "sqlite:///broker.db")
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///") :]
        if not path or path == ":memory:":
            t.problems.add(t.path("url"), "an in-memory or empty SQLite path cannot hold the store")
        elif not Path(path).is_absolute():
            url = "sqlite:///" + str((base / path).resolve())
    elif not url.startswith(("postgresql://", "postgres://")):
        t.problems.add(t.path("url"), "must start with sqlite:/// or postgresql://")
    t.check_unknown()
    return StoreConfig(url=url)


def _keys(t: _Table) -> KeysConfig:
    alg = t.string("algorithm", "EdDSA")
    if alg not in ALGORITHMS:
        t.problems.add(t.path("algorithm"), f"{alg!r} must be one of {', '.join(ALGORITHMS)}")
        alg = "EdDSA"
    rotate = t.duration("rotate_every", 7 * 86400)
    kek_s = t.string("kek", "")
    kek = None
    if kek_s:
        import base64
        import binascii

        try:
            raw = base64.b64decode(kek_s, validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) != 32:
            t.problems.add(
                t.path("kek"), "must be base64 of 32 random bytes (openssl rand -base64 32)"
            )
        else:
            kek = Secret(kek_s)
    t.check_unknown()
    return KeysConfig(algorithm=alg, rotate_every=rotate, kek=kek)  # type: ignore[arg-type]


def _session(t: _Table) -> SessionConfig:
    name = t.string("cookie_name", "broker_session")
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name):
        t.problems.add(t.path("cookie_name"), "must be 1-64 letters, digits, '_' or '-'")
    s = SessionConfig(
        cookie_name=name,
        lifetime=t.duration("lifetime", 8 * 3600),
        idle_timeout=t.duration("idle_timeout", 3600),
        token_lifetime=t.duration("token_lifetime", 900),
        cookie_domain=_cookie_domain(t),
        revocation_max_staleness=t.duration("revocation_max_staleness", 10),
    )
    if not 2 <= s.revocation_max_staleness <= 300:
        # Revocations are polled every second: a shorter window would refuse at random.
        t.problems.add(t.path("revocation_max_staleness"), "must be between 2s and 5m")
    t.check_unknown()
    return s


def _cookie_domain(t: _Table) -> str:
    domain = t.string("cookie_domain", "").strip().lower()
    if domain and (
        not re.fullmatch(r"\.?[a-z0-9]([a-z0-9.-]*[a-z0-9])?", domain)
        or ".." in domain
        or "." not in domain.lstrip(".")
    ):
        t.problems.add(t.path("cookie_domain"), f"{domain!r} must be a domain like '.example.com'")
        return ""
    return domain


def _ui(t: _Table, base: Path) -> UiConfig:
    title = t.string("title", "broker").strip()
    if not 1 <= len(title) <= 64 or any(ord(ch) < 32 for ch in title):
        t.problems.add(t.path("title"), "must be 1-64 printable characters")
        title = "broker"
    accent = t.string("accent", "#2457c5").strip().lower()
    if re.fullmatch(r"#[0-9a-f]{3}", accent):
        accent = "#" + "".join(ch * 2 for ch in accent[1:])
    if not re.fullmatch(r"#[0-9a-f]{6}", accent):
        t.problems.add(t.path("accent"), f"{accent!r} must be a colour like '#2457c5'")
        accent = "#2457c5"
    elif (ratio := contrast_with_white(accent)) < 4.5:
        t.problems.add(
            t.path("accent"),
            f"white text on {accent} has a contrast of {ratio:.1f}:1; choose a darker colour "
            "(at least 4.5:1, WCAG AA), so that buttons stay readable",
        )
    logo: Path | None = None
    raw = t.string("logo", "")
    if raw:
        path = Path(raw) if Path(raw).is_absolute() else (base / raw).resolve()
        if path.suffix.lower() not in LOGO_TYPES:
            t.problems.add(t.path("logo"), "must be an .svg, .png, .jpg or .webp file")
        elif not path.is_file():
            t.problems.add(t.path("logo"), f"{path}: no such file")
        elif path.stat().st_size > MAX_LOGO_BYTES:
            t.problems.add(t.path("logo"), f"{path} is larger than 256 KiB")
        else:
            logo = path
    t.check_unknown()
    return UiConfig(title=title, logo=logo, accent=accent)


def _login(t: _Table) -> LoginConfig:
    c = LoginConfig(
        state_ttl=t.duration("state_ttl", 600),
        max_failures_per_user=int(t.num("max_failures_per_user", 5, minimum=1, integer=True)),
        max_failures_per_address=int(
            t.num("max_failures_per_address", 20, minimum=1, integer=True)
        ),
        failure_window=t.duration("failure_window", 900),
        hash_workers=int(t.num("hash_workers", 2, minimum=1, integer=True)),
        hash_queue=int(t.num("hash_queue", 32, minimum=0, integer=True)),
    )
    t.check_unknown()
    return c


def _provider(name: str, t: _Table) -> ProviderConfig | None:
    reserved = reserved_provider_reason(name)
    if reserved is not None:
        t.problems.add(
            t.where,
            f"the provider name {name!r} is reserved: {reserved}, and a provider's claims "
            f"become <provider>:<claim> condition keys; choose another name, e.g. "
            f"'{name.lower()}-idp'",
        )
    elif not _PROVIDER_NAME.fullmatch(name):
        t.problems.add(t.where, "provider names are 1-32 of a-z, 0-9, '_', '-'")
    ptype = t.string("type", "oidc")
    if ptype not in ("oidc", "google", "local"):
        t.problems.add(t.path("type"), f"{ptype!r} must be 'oidc', 'google' or 'local'")
        ptype = "oidc"
    display = t.string("display_name", "")
    if ptype == "local":
        t.check_unknown()
        return ProviderConfig(
            name=name, type="local", display_name=display or "User name and password"
        )
    default_issuer = "https://accounts.google.com" if ptype == "google" else ""
    issuer = t.string("issuer", default_issuer, required=not default_issuer)
    u = urlsplit(issuer)
    if issuer and (u.scheme not in ("http", "https") or not u.hostname or u.query or u.fragment):
        t.problems.add(t.path("issuer"), f"{issuer!r} must be an http(s) URL")
    client_id = t.string("client_id", "", required=True)
    secret = t.string("client_secret", "")
    scopes = t.str_list("scopes", ("openid", "email", "profile"))
    if "openid" not in scopes:
        t.problems.add(t.path("scopes"), "must include 'openid'")
    audiences = t.str_list("audiences", (client_id,) if client_id else ())
    p = ProviderConfig(
        name=name,
        type=ptype,  # type: ignore[arg-type]
        issuer=issuer,
        client_id=client_id,
        client_secret=Secret(secret) if secret else None,
        scopes=scopes,
        audiences=audiences,
        display_name=display or ("Google" if ptype == "google" else name),
        leeway=t.num("leeway", 60),
        timeout=t.num("timeout", 10, minimum=0.1),
        discovery_ttl=t.duration("discovery_ttl", 3600),
        jwks_refetch_cooldown=t.duration("jwks_refetch_cooldown", 60),
        backchannel_logout_uri=t.string("backchannel_logout_uri", ""),
    )
    t.check_unknown()
    return p


def backchannel_logout_uri(public_url: str, provider: str) -> str:
    """Where a provider sends logout tokens (DESIGN C3 ``POST /backchannel-logout/{provider}``)."""
    return f"{public_url}/backchannel-logout/{provider}"


def managed_policy_name(ref: str) -> str:
    """A managed policy named by name or by ARN (``arn:broker:iam::<account>:policy/Name``,
    any path) -> its name."""
    if ref.startswith("arn:") and ":policy/" in ref:
        return ref.rsplit("/", 1)[-1]
    return ref


def _role(name: str, t: _Table, base: Path) -> RoleConfig:
    if not _NAME.fullmatch(name):
        t.problems.add(t.where, "role names are 1-64 of letters, digits and _.+=@-")
    trust_raw = t._get("trust_policy")
    trust: Mapping[str, Any] = {}
    if trust_raw is None:
        t.problems.add(t.path("trust_policy"), "is required")
    else:
        trust = _load_document(trust_raw, base, t.path("trust_policy"), t.problems) or {}
    policies = []
    raw_policies = t._get("policies") or []
    if not isinstance(raw_policies, list):
        t.problems.add(t.path("policies"), "must be a list of paths or inline tables")
        raw_policies = []
    for i, raw in enumerate(raw_policies):
        doc = _load_document(raw, base, f"{t.path('policies')}[{i}]", t.problems)
        if doc is not None:
            policies.append(doc)
    managed = t.str_list("managed_policies", ())
    boundary_raw = t._get("permissions_boundary")
    boundary = (
        _load_document(boundary_raw, base, t.path("permissions_boundary"), t.problems)
        if boundary_raw is not None
        else None
    )
    r = RoleConfig(
        name=name,
        description=t.string("description", ""),
        max_session_duration=t.duration("max_session_duration", 3600),
        trust_policy=trust,
        policies=tuple(policies),
        permissions_boundary=boundary,
        managed_policies=tuple(dict.fromkeys(managed_policy_name(m) for m in managed)),
    )
    if not 900 <= r.max_session_duration <= 43200:
        t.problems.add(t.path("max_session_duration"), "must be between 15m and 12h")
    t.check_unknown()
    return r


def parse_settings(
    data: Mapping[str, Any], *, base: Path, env: Mapping[str, str] | None = None
) -> Settings:
    """Validate a TOML document (already read) into ``Settings``; ``base`` resolves paths."""
    problems = _Problems()
    data = substitute_env(dict(data), "", problems, os.environ if env is None else env)
    root = _Table(data, "", problems)
    server = _server(root.table("server"))
    store = _store(root.table("store"), base)
    keys = _keys(root.table("keys"))
    session = _session(root.table("session"))
    login = _login(root.table("login"))
    ui = _ui(root.table("ui"), base)
    log_level = root.string("log_level", "INFO").upper()
    if log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        problems.add("log_level", "must be DEBUG, INFO, WARNING or ERROR")

    providers: dict[str, ProviderConfig] = {}
    ptable = root.table("providers")
    for name in ptable.data:
        ptable.seen.add(name)
        p = _provider(name, ptable.table(name))
        if p:
            providers[name] = p
    if not providers:
        problems.add(
            "providers", "at least one provider is required (for example [providers.local])"
        )
    for name, p in providers.items():
        expected = backchannel_logout_uri(server.public_url, name)
        if p.backchannel_logout_uri and p.backchannel_logout_uri != expected:
            # Back-Channel Logout 1.0 §2.2: same scheme, host and port as the redirect URI.
            problems.add(
                f"providers.{name}.backchannel_logout_uri",
                f"must be {expected!r} (the broker's endpoint for this provider; register "
                "the same URI at the provider)",
            )

    roles: dict[str, RoleConfig] = {}
    rtable = root.table("roles")
    for name in rtable.data:
        rtable.seen.add(name)
        roles[name] = _role(name, rtable.table(name), base)

    policies: dict[str, ManagedPolicyConfig] = {}
    mtable = root.table("policies")
    for name in mtable.data:
        mtable.seen.add(name)
        t = mtable.table(name)
        if not _NAME.fullmatch(name):
            problems.add(t.where, "policy names are 1-64 of letters, digits and _.+=@-")
        raw = t._get("document")
        if raw is None:
            problems.add(t.path("document"), "is required")
            doc = None
        else:
            doc = _load_document(raw, base, t.path("document"), problems)
        t.check_unknown()
        if doc is not None:
            policies[name] = ManagedPolicyConfig(name=name, document=doc)

    for name, r in roles.items():
        for i, m in enumerate(r.managed_policies):
            if m not in policies:
                problems.add(
                    f"roles.{name}.managed_policies[{i}]",
                    f"no policy named {m!r}: declare it as [policies.{m}]",
                )

    public: list[PublicRoute] = []
    proxy = root.table("proxy")
    raw_public = proxy._get("public") or []
    if not isinstance(raw_public, list):
        problems.add("proxy.public", "must be an array of tables ([[proxy.public]])")
        raw_public = []
    for i, item in enumerate(raw_public):
        t = _Table(item, f"proxy.public[{i}]", problems)
        url = t.string("url", "", required=True)
        u = urlsplit(url)
        if url and (u.scheme not in ("http", "https") or not u.hostname):
            problems.add(t.path("url"), f"{url!r} must be an absolute http(s) URL")
        t.check_unknown()
        public.append(PublicRoute(url=url))
    cache_age = proxy.duration("auth_cache_max_age", 1, allow_zero=True)
    proxy_config = ProxyConfig(
        assertion_lifetime=proxy.duration("assertion_lifetime", 60),
        auth_cache_max_age=int(cache_age),
    )
    if proxy_config.assertion_lifetime > 3600:
        problems.add("proxy.assertion_lifetime", "must be at most 1h")
    if cache_age not in (0, 1):
        problems.add(
            "proxy.auth_cache_max_age",
            '"0s" (proxies never reuse an answer) or "1s" (the most that keeps revocation '
            "within 2 seconds)",
        )
    proxy.check_unknown()
    root.check_unknown()

    if session.cookie_domain:
        public_host = (urlsplit(server.public_url).hostname or "").lower()
        if not ("." + public_host).endswith("." + session.cookie_domain.lstrip(".")):
            problems.add(
                "session.cookie_domain",
                f"must be the host of public_url ({public_host}) or a parent domain of it",
            )
    if session.idle_timeout > session.lifetime:
        problems.add("session.idle_timeout", "must not be longer than session.lifetime")
    if problems.items:
        raise ConfigError(problems.items)
    return Settings(
        server=server,
        store=store,
        keys=keys,
        session=session,
        login=login,
        providers=providers,
        roles=roles,
        policies=policies,
        public_routes=tuple(public),
        proxy=proxy_config,
        ui=ui,
        log_level=log_level,
    )


def load_settings(path: Path | str = DEFAULT_CONFIG_PATH) -> Settings:
    """Read and validate the TOML file at ``path``."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise ConfigError([f"{p}: cannot read the config file ({e.strerror})"]) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError([f"{p}: not valid TOML: {e}"]) from None
    settings = parse_settings(data, base=p.resolve().parent)
    return Settings(**{**settings.__dict__, "config_path": p.resolve()})
