"""Start and stop the real OpenID Connect providers (``tests/oidc/server.js``) for e2e tests.

One node process serves several providers (``corp`` and ``partner`` by default), each on its own
``127.0.0.1`` port; the issuers are read back from the ``READY {...}`` line the server prints.

Typical use (a session-scoped fixture in the root conftest)::

    @pytest.fixture(scope="session")
    def oidc_server() -> Iterator[OidcServer]:
        config = default_config(
            {"corp": ["http://127.0.0.1:8080/callback/corp"],
             "partner": ["http://127.0.0.1:8080/callback/partner"]},
            loopback_any_port=True,   # accept any port on those loopback redirect URIs
        )
        with start_oidc_server(config) as server:
            yield server

``server.issuers["corp"]`` is the issuer URL (exactly as in discovery), ``server.client_id`` /
``server.client_secret`` the confidential client (same at every provider in the default config),
``server.accounts`` maps usernames to passwords.

Needs ``node`` and ``npm ci --prefix tests/oidc`` (``tests/oidc/node_modules``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

REPO_ROOT = Path(__file__).resolve().parents[2]
OIDC_DIR = REPO_ROOT / "tests" / "oidc"
SERVER_JS = OIDC_DIR / "server.js"

CLIENT_ID = "broker"
CLIENT_SECRET = "broker-test-client-secret-0123456789abcdef"

DEFAULT_ACCOUNTS: dict[str, dict[str, Any]] = {
    "alice": {
        "password": "alice-password",
        "claims": {
            "email": "alice@example.com",
            "email_verified": True,
            "groups": ["admins", "dev"],
            "hd": "example.com",
            "name": "Alice Example",
        },
    },
    "bob": {
        "password": "bob-password",
        "claims": {
            "email": "bob@example.com",
            "email_verified": True,
            "groups": ["dev"],
            "hd": "example.com",
            "name": "Bob Example",
        },
    },
    "carol": {
        "password": "carol-password",
        "claims": {
            "email": "carol@other.test",
            "email_verified": False,
            "groups": [],
            "hd": "other.test",
            "name": "Carol Other",
        },
    },
}

#: provider name -> ID token signing alg in the default config (covers RSA and EC).
DEFAULT_PROVIDERS: dict[str, str] = {"corp": "RS256", "partner": "ES256"}

READY_TIMEOUT = 30.0


class OidcServerError(RuntimeError):
    """The provider process could not be started (message carries node's stderr)."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (bind to port 0 and release it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def default_config(
    redirect_uris: Mapping[str, Sequence[str]],
    *,
    client_id: str = CLIENT_ID,
    client_secret: str = CLIENT_SECRET,
    accounts: Mapping[str, Mapping[str, Any]] | None = None,
    algs: Mapping[str, str] | None = None,
    consent: Mapping[str, str] | None = None,
    loopback_any_port: bool = False,
) -> dict[str, Any]:
    """Build the JSON config for ``server.js``.

    ``redirect_uris`` maps provider name -> the client's redirect URIs at that provider; one
    provider per key (names must be in ``algs``, default ``corp`` RS256 and ``partner`` ES256).
    ``consent`` maps provider name -> ``"auto"`` (default, no consent page) or ``"form"`` (a
    consent form that must be submitted). ``loopback_any_port`` registers the client as
    ``application_type: native`` so any port on a registered ``http://127.0.0.1/...`` redirect URI
    is accepted (RFC 8252 section 7.3): handy when the broker's port is chosen per test.
    """
    algs = dict(DEFAULT_PROVIDERS if algs is None else algs)
    consent = dict(consent or {})
    providers: list[dict[str, Any]] = []
    for name, uris in redirect_uris.items():
        if name not in algs:
            raise ValueError(f"no signing alg for provider {name!r}; pass algs={{...}}")
        client: dict[str, Any] = {
            "client_id": client_id,
            "client_secret": client_secret,
            "redirect_uris": list(uris),
            "grant_types": ["authorization_code"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "client_secret_basic",
            "id_token_signed_response_alg": algs[name],
        }
        if loopback_any_port:
            client["application_type"] = "native"
        providers.append(
            {
                "name": name,
                "port": 0,
                "id_token_signed_response_alg": algs[name],
                "consent": consent.get(name, "auto"),
                "clients": [client],
            }
        )
    return {
        "host": "127.0.0.1",
        "accounts": {k: dict(v) for k, v in (accounts or DEFAULT_ACCOUNTS).items()},
        "providers": providers,
    }


def _check_prerequisites() -> str:
    node = shutil.which("node")
    if node is None:
        raise OidcServerError("node is not on PATH; the OIDC e2e tests need Node.js >= 18")
    if not (OIDC_DIR / "node_modules" / "oidc-provider").is_dir():
        raise OidcServerError(
            f"{OIDC_DIR / 'node_modules'} is missing: run `npm ci --prefix tests/oidc` "
            "from the repository root first"
        )
    return node


@dataclass
class OidcServer:
    """A running ``server.js`` process. Use as a context manager or call :meth:`stop`."""

    config: dict[str, Any]
    issuers: dict[str, str] = field(default_factory=dict)
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _stderr: list[str] = field(default_factory=list, repr=False)
    _threads: list[threading.Thread] = field(default_factory=list, repr=False)

    @property
    def client_id(self) -> str:
        """client_id of the first client of the first provider (same everywhere by default)."""
        return str(self.clients(self.names[0])[0]["client_id"])

    @property
    def client_secret(self) -> str:
        return str(self.clients(self.names[0])[0]["client_secret"])

    @property
    def names(self) -> list[str]:
        return [p["name"] for p in self.config["providers"]]

    def clients(self, provider: str) -> list[dict[str, Any]]:
        for spec in self.config["providers"]:
            if spec["name"] == provider:
                return list(spec.get("clients", []))
        raise KeyError(provider)

    @property
    def accounts(self) -> dict[str, str]:
        """username -> password (the shared accounts of the config)."""
        return {name: str(acc["password"]) for name, acc in self.config["accounts"].items()}

    def claims(self, username: str) -> dict[str, Any]:
        return dict(self.config["accounts"][username].get("claims", {}))

    def discovery_url(self, provider: str) -> str:
        return self.issuers[provider] + "/.well-known/openid-configuration"

    @property
    def stderr(self) -> str:
        """What node has written to stderr so far (provider errors are logged there)."""
        return "".join(self._stderr)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = READY_TIMEOUT) -> Self:
        node = _check_prerequisites()
        env = dict(os.environ)
        env["OIDC_TEST_CONFIG"] = json.dumps(self.config)
        env["OIDC_EXIT_ON_STDIN_EOF"] = "1"
        env.setdefault("NODE_ENV", "test")
        proc = subprocess.Popen(
            [node, str(SERVER_JS)],
            cwd=OIDC_DIR,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self._proc = proc
        ready = threading.Event()
        lines: list[str] = []

        def read_stdout() -> None:
            assert proc.stdout is not None
            for raw in proc.stdout:
                line = raw.decode("utf-8", "replace")
                if not ready.is_set() and line.startswith("READY "):
                    lines.append(line)
                    ready.set()
            ready.set()  # EOF: wake the waiter, which then sees the process died

        def read_stderr() -> None:
            assert proc.stderr is not None
            for raw in proc.stderr:
                self._stderr.append(raw.decode("utf-8", "replace"))

        for target in (read_stdout, read_stderr):
            thread = threading.Thread(target=target, name=f"oidc-{target.__name__}", daemon=True)
            thread.start()
            self._threads.append(thread)

        if not ready.wait(timeout) or not lines:
            self.stop()
            why = "timed out" if not lines and proc.returncode is None else "exited"
            raise OidcServerError(
                f"OIDC provider did not become ready ({why}, rc={proc.returncode}); "
                f"stderr:\n{self.stderr}"
            )
        self.issuers = json.loads(lines[0][len("READY ") :])
        return self

    def stop(self, timeout: float = 5.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        # node has exited, so the readers see EOF; join them before closing their pipes.
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        self._threads.clear()

    def __enter__(self) -> Self:
        if not self.running:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def start_oidc_server(
    config: dict[str, Any] | None = None, *, timeout: float = READY_TIMEOUT
) -> OidcServer:
    """Spawn ``node tests/oidc/server.js`` and wait for READY. Returns a started server.

    ``config`` defaults to :func:`default_config` with redirect URIs
    ``http://127.0.0.1/callback/<name>`` registered as a native (any loopback port) client.
    Raise :class:`OidcServerError` (with node's stderr) if it does not come up within ``timeout``.
    """
    if config is None:
        config = default_config(
            {name: [f"http://127.0.0.1/callback/{name}"] for name in DEFAULT_PROVIDERS},
            loopback_any_port=True,
        )
    return OidcServer(config=config).start(timeout)
