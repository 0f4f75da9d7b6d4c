"""The CLI's local cache of tokens and role credentials (issue 14).

One JSON file per broker URL under ``$XDG_CONFIG_HOME/broker/`` (default ``~/.config/broker/``):
the directory is 0700 and every file 0600, and a cache readable by anyone else is refused rather
than used (its refresh token is as good as a login). Writes are atomic (a temporary file renamed
over the old one), and a lock file (``fcntl.flock``) lets parallel ``credential_process`` calls
refresh once: the second waits, then finds what the first stored."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

CLIENT_ID = "broker-cli"
# Role credentials are used until this long before their Expiration, then fetched again (the
# AWS SDKs refresh at 5-15 minutes before expiry too: a call never starts with a dying key).
ROLE_MARGIN = 300
# An access token is refreshed this long before it expires (clock skew, the request in flight).
ACCESS_MARGIN = 60
DEFAULT_FILE = "default-url"


class ClientError(Exception):
    """A failure of the CLI as a client: one line for the user, exit 1."""


class NotSignedIn(ClientError):
    def __init__(self, url: str) -> None:
        super().__init__(f"not signed in to {url}: run `broker login --url {url}`")


def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or ""
    # XDG: a relative path is invalid and must be ignored
    root = Path(base) if base and os.path.isabs(base) else Path.home() / ".config"
    return root / "broker"


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def normalize_url(url: str) -> str:
    url = url.strip().rstrip("/")
    m = re.fullmatch(r"(https?)://([^\s/?#@]+)(/[^\s?#]*)?", url)
    if not m:
        raise ClientError(f"{url!r} is not a broker URL (e.g. https://broker.example)")
    try:
        parts = urlsplit(url)
        host, _ = parts.hostname or "", parts.port
    except ValueError:  # a bad port or bracket
        raise ClientError(f"{url!r} is not a broker URL (e.g. https://broker.example)") from None
    if m.group(1) == "http" and host not in LOOPBACK_HOSTS:
        # refresh tokens and role credentials in clear text over the network: never
        raise ClientError(f"{url}: use https:// (plain http only for 127.0.0.1 or localhost)")
    return url


def _check_private(path: Path, kind: str) -> None:
    st = path.lstat()
    if stat.S_ISLNK(st.st_mode):
        raise ClientError(f"{path}: the cache {kind} is a symbolic link; remove it")
    if st.st_uid != os.getuid():
        raise ClientError(f"{path}: the cache {kind} belongs to another user; remove it")
    if st.st_mode & 0o077:
        mode = stat.S_IMODE(st.st_mode)
        want = "700" if kind == "directory" else "600"
        raise ClientError(
            f"{path}: the cache {kind} is accessible by group or others (mode {mode:o}); "
            f"run `chmod {want} {path}` or remove it"
        )


def _ensure_dir() -> Path:
    d = config_dir()
    if not d.exists():
        d.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            d.mkdir(mode=0o700)
    _check_private(d, "directory")
    return d


def _write_private(path: Path, text: str) -> None:
    """Atomically: a reader sees the old file or the new one, never half of one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def default_url() -> str | None:
    """``$BROKER_URL``, else the URL of the last ``broker login``."""
    env = os.environ.get("BROKER_URL")
    if env:
        return normalize_url(env)
    path = config_dir() / DEFAULT_FILE
    if not path.exists():
        return None
    _check_private(config_dir(), "directory")
    _check_private(path, "file")
    text = path.read_text("utf-8").strip()
    return normalize_url(text) if text else None


def resolve_url(given: str | None) -> str:
    url = normalize_url(given) if given else default_url()
    if url is None:
        raise ClientError("no broker URL: give --url URL (or set BROKER_URL, or `broker login`)")
    return url


class Cache:
    """The cache of one broker URL. Use ``with cache.locked():`` around read-refresh-write."""

    def __init__(self, url: str) -> None:
        self.url = url
        host = re.sub(r"[^A-Za-z0-9.-]+", "_", url.split("://", 1)[1])[:60]
        digest = hashlib.sha256(url.encode()).hexdigest()[:12]
        self.name = f"{host}-{digest}"

    @property
    def path(self) -> Path:
        return config_dir() / f"{self.name}.json"

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        d = _ensure_dir()
        lock = d / f"{self.name}.lock"
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            _check_private(lock, "file")
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def load(self) -> dict[str, Any] | None:
        d = config_dir()
        if not self.path.exists():
            return None
        _check_private(d, "directory")
        _check_private(self.path, "file")
        try:
            data = json.loads(self.path.read_text("utf-8"))
        except ValueError:
            raise ClientError(f"{self.path}: the cache file is not valid JSON; remove it") from None
        if not isinstance(data, dict) or data.get("url") != self.url:
            raise ClientError(f"{self.path}: the cache file is not this broker's; remove it")
        return data

    def save(self, data: dict[str, Any]) -> None:
        _ensure_dir()
        _write_private(self.path, json.dumps({**data, "url": self.url}, indent=2, sort_keys=True))

    def remember(self) -> None:
        """Make this URL the default of the commands run without --url."""
        _write_private(_ensure_dir() / DEFAULT_FILE, self.url + "\n")

    def delete(self) -> bool:
        _ensure_dir()
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        return True
