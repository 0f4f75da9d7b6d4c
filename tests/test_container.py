"""The container image and its compose example, tested without Docker (issue 15 item 9):

- the Dockerfile is plain syntax the classic builder takes (no heredoc, ``--mount`` or
  ``# syntax=`` frontend), ships config/container.toml and health-checks without a fixed port;
- ``python -m broker.healthcheck``, the image's health check, follows the configured listen
  address: run against real ``broker serve`` processes on the image's config, on SQLite and on
  PostgreSQL;
- compose.yaml, read with PyYAML and interpolated as ``docker compose`` does it, gives the broker
  what the image's config needs, pointing at its PostgreSQL service; Compose's own validator
  (``docker-compose config``, no daemon needed) accepts it and resolves it the same way.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import takewhile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from broker.config import load_settings
from broker.healthcheck import healthz_url
from broker.service.container import startup_problems
from tests.support.broker_process import broker_processes
from tests.support.doc_snippets import blocks
from tests.support.oidc_server import free_port
from tests.support.postgres import fresh_schema

ROOT = Path(__file__).resolve().parent.parent
KEK = base64.b64encode(bytes(range(32))).decode()


# --- the Dockerfile ----------------------------------------------------------------------------


DOCKERFILE = (ROOT / "Dockerfile").read_text("utf-8")
# The flags the classic builder knows; --mount, --network, --link, --chmod, --parents... are
# BuildKit's.
CLASSIC_FLAGS = {
    "COPY": {"--from", "--chown"},
    "HEALTHCHECK": {"--interval", "--timeout", "--start-period", "--retries"},
}
CLASSIC = {"FROM", "ENV", "RUN", "WORKDIR", "COPY", "USER", "VOLUME", "EXPOSE", "CMD", "ENTRYPOINT"}


def instructions(text: str = DOCKERFILE) -> list[tuple[str, str]]:
    """A Dockerfile's instructions as ``(KEYWORD, arguments)``, continuation lines joined."""
    out: list[tuple[str, str]] = []
    current = ""
    for line in text.splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        keyword, _, args = current.strip().partition(" ")
        out.append((keyword.upper(), " ".join(args.split())))
        current = ""
    assert not current, "the Dockerfile ends inside a continued line"
    return out


def buildkit_only(text: str) -> list[str]:
    """What in a Dockerfile the classic (non-BuildKit) builder does not take."""
    found = []
    # Parser directives (`# syntax=`) sit at the very top, before any other comment or line.
    if re.match(r"(\s*#\s*\w+\s*=.*\n)*\s*#\s*syntax\s*=", text, re.I):
        found.append("a # syntax= frontend")
    if "<<" in text:
        found.append("a heredoc")
    for keyword, args in instructions(text):
        if keyword not in CLASSIC | set(CLASSIC_FLAGS):
            found.append(keyword)
        # An instruction's flags lead its arguments (later --options are the command's own).
        for t in takewhile(lambda t: t.startswith("--"), args.split()):
            if t.split("=")[0] not in CLASSIC_FLAGS.get(keyword, set()):
                found.append(f"{keyword} {t.split('=')[0]}")
    return found


def test_dockerfile_needs_no_buildkit_frontend() -> None:
    assert buildkit_only(DOCKERFILE) == []


def test_buildkit_only_syntax_is_seen() -> None:
    offender = (
        "# syntax=docker/dockerfile:1.7\n"
        "FROM python:3.11-slim\n"
        "RUN --mount=type=cache,target=/root/.cache pip install --no-cache-dir x\n"
        "COPY --link --chmod=0644 a /a\n"
        "COPY <<'EOF' /etc/x\nhello\nEOF\n"
    )
    assert buildkit_only(offender) == [
        "a # syntax= frontend",
        "a heredoc",
        "RUN --mount",
        "COPY --link",
        "COPY --chmod",
        "HELLO",  # the heredoc's body, read as instructions
        "EOF",
    ]


def test_dockerfile_copies_what_exists_and_the_context_keeps() -> None:
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    sources = [
        args.split()[:-1]
        for keyword, args in instructions()
        if keyword == "COPY" and not args.startswith("--from")
    ]
    assert sources
    for paths in sources:
        for src in paths:
            assert (ROOT / src).exists(), src
            assert src.rstrip("/").split("/")[0] not in ignored, f"{src} is in .dockerignore"


def test_the_image_config_is_the_container_toml_and_the_health_check_has_no_port() -> None:
    inst = instructions()
    assert ("COPY", "config/container.toml /etc/broker/broker.toml") in inst
    runtime_env = [a for k, a in inst if k == "ENV"][-1]
    assert "BROKER_CONFIG=/etc/broker/broker.toml" in runtime_env
    [health] = [a for k, a in inst if k == "HEALTHCHECK"]
    assert health.endswith('CMD ["python", "-m", "broker.healthcheck"]')
    assert "8000" not in health
    # serve reads $BROKER_CONFIG, as the health check does: both follow a mounted config.
    assert ("CMD", '["serve"]') in inst


# --- the health check --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "port", "url"),
    [
        ("0.0.0.0", 8000, "http://127.0.0.1:8000/healthz"),
        ("", 8000, "http://127.0.0.1:8000/healthz"),
        ("::", 9000, "http://[::1]:9000/healthz"),
        ("127.0.0.1", 9000, "http://127.0.0.1:9000/healthz"),
        ("10.1.2.3", 80, "http://10.1.2.3:80/healthz"),
        ("fd00::1", 80, "http://[fd00::1]:80/healthz"),
    ],
)
def test_health_check_url(host: str, port: int, url: str) -> None:
    assert healthz_url(host, port) == url


@pytest.fixture
def image_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """config/container.toml laid out as in the image, its SQLite store under tmp_path, and
    ``BROKER_CONFIG`` naming it (as the image's ENV does)."""
    etc = tmp_path / "etc" / "broker"
    shutil.copytree(ROOT / "config" / "policies", etc / "policies")
    shutil.copy(ROOT / "config" / "container.toml", etc / "broker.toml")
    for name in ("BROKER_KEK", "BROKER_PUBLIC_URL", "BROKER_ACCOUNT_ID", "BROKER_LOG_LEVEL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BROKER_STORE_URL", f"sqlite:///{tmp_path}/data/broker.db")
    monkeypatch.setenv("BROKER_CONFIG", str(etc / "broker.toml"))
    for proxy in ("HTTP_PROXY", "http_proxy"):  # which the health check must ignore
        monkeypatch.setenv(proxy, "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    return etc / "broker.toml"


def healthcheck() -> subprocess.CompletedProcess[str]:
    """The image's HEALTHCHECK command, in this environment (as Docker runs it)."""
    return subprocess.run(
        [sys.executable, "-m", "broker.healthcheck"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
    )


async def test_health_check_follows_broker_listen_to_a_real_broker(
    image_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    # 0.0.0.0 as in the container: the check reaches it over loopback.
    monkeypatch.setenv("BROKER_LISTEN", f"0.0.0.0:{port}")
    monkeypatch.setenv("BROKER_PUBLIC_URL", f"http://127.0.0.1:{port}")
    with broker_processes(tmp_path / "procs") as procs:
        broker = procs.start(image_config, "image", port)
        await broker.wait_ready()
        ok = await asyncio.to_thread(healthcheck)
        assert (ok.returncode, ok.stdout.strip()) == (
            0,
            f"healthy: http://127.0.0.1:{port}/healthz",
        ), ok.stderr
        assert "one-time password" in broker.stdout()  # the image's first start, as documented

        # Another port in the environment: the check goes there, finds nothing, and says so.
        other = free_port()
        monkeypatch.setenv("BROKER_LISTEN", f"0.0.0.0:{other}")
        bad = await asyncio.to_thread(healthcheck)
        assert bad.returncode == 1
        assert bad.stdout == ""
        assert bad.stderr.startswith(f"unhealthy: http://127.0.0.1:{other}/healthz: ")
        assert len(bad.stderr.splitlines()) == 1

        monkeypatch.setenv("BROKER_LISTEN", f"0.0.0.0:{port}")
        assert broker.stop() == 0
    gone = await asyncio.to_thread(healthcheck)
    assert gone.returncode == 1
    assert gone.stderr.startswith(f"unhealthy: http://127.0.0.1:{port}/healthz: ")


class _Answer(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def answering(request: pytest.FixtureRequest) -> Iterator[int]:
    """An HTTP server on 127.0.0.1 whose /healthz answers ``request.param``; yields its port."""
    handler = type("Handler", (_Answer,), {"status": request.param})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(("answering", "status"), [(503, 503), (404, 404)], indirect=["answering"])
def test_health_check_fails_on_any_answer_but_200(
    image_config: Path, answering: int, status: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BROKER_LISTEN", f"127.0.0.1:{answering}")
    r = healthcheck()
    assert r.returncode == 1
    assert r.stderr == f"unhealthy: http://127.0.0.1:{answering}/healthz answered {status}\n"


@pytest.mark.parametrize("answering", [200], indirect=True)
def test_health_check_reads_a_mounted_config_named_by_broker_config(
    tmp_path: Path, answering: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copytree(ROOT / "config" / "policies", tmp_path / "mnt" / "policies")
    mounted = tmp_path / "mnt" / "mine.toml"
    text = (ROOT / "config" / "broker.toml").read_text()
    mounted.write_text(text.replace("127.0.0.1:8000", f"127.0.0.1:{answering}"))
    monkeypatch.setenv("BROKER_CONFIG", str(mounted))
    monkeypatch.delenv("BROKER_LISTEN", raising=False)
    r = healthcheck()
    assert (r.returncode, r.stdout) == (0, f"healthy: http://127.0.0.1:{answering}/healthz\n")


def test_health_check_with_a_config_that_does_not_load(
    image_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BROKER_LISTEN", "no-port")
    r = healthcheck()
    assert r.returncode == 1
    assert r.stderr == (
        "unhealthy: the config does not load: server.listen: 'no-port' must be 'host:port'\n"
    )


# --- compose.yaml ------------------------------------------------------------------------------

_COMPOSE_VAR = re.compile(r"\$\$|\$\{(\w+)(?:(:-|:\?)([^}]*))?\}")


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """Compose's variable interpolation, for the forms compose.yaml uses: ``${VAR}``,
    ``${VAR:-default}``, ``${VAR:?error}`` (refused when unset or empty) and ``$$``."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def repl(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name, op, arg = m.groups()
        if env.get(name):
            return env[name]
        if op == ":?":
            raise ValueError(f"required variable {name} is missing a value: {arg}")
        return arg if op == ":-" else env.get(name, "")

    return _COMPOSE_VAR.sub(repl, value)


def compose(env: Mapping[str, str]) -> dict[str, Any]:
    doc = yaml.safe_load((ROOT / "compose.yaml").read_text("utf-8"))
    assert isinstance(doc, dict)
    result: dict[str, Any] = interpolate(doc, env)
    return result


# What the comment at the top of compose.yaml writes to .env.
DOT_ENV = {"BROKER_KEK": KEK, "POSTGRES_PASSWORD": "0123456789abcdef0123456789abcdef"}


@pytest.mark.parametrize("missing", sorted(DOT_ENV))
def test_compose_refuses_to_start_without_its_secrets(missing: str) -> None:
    with pytest.raises(ValueError, match=f"required variable {missing} "):
        compose({k: v for k, v in DOT_ENV.items() if k != missing})


@pytest.mark.parametrize("missing", ["", *sorted(DOT_ENV)])
def test_docker_compose_config_validates_compose_yaml(missing: str, tmp_path: Path) -> None:
    """Compose's own validator (``docker-compose config``, which needs no Docker daemon) takes
    compose.yaml with the .env the page describes, and refuses it without either secret; its
    resolved file is what the interpolation above makes of it."""
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose is not installed (scripts/test installs it)")
    env = {k: v for k, v in DOT_ENV.items() if k != missing}
    proc = subprocess.run(
        [binary, "--project-directory", str(ROOT), "-f", str(ROOT / "compose.yaml"), "config"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), **env},
    )
    if missing:
        assert proc.returncode != 0
        assert missing in proc.stderr
        return
    assert proc.returncode == 0, proc.stderr
    resolved = yaml.safe_load(proc.stdout)
    ours = compose(DOT_ENV)
    for name in ("broker", "postgres"):
        assert resolved["services"][name]["environment"] == {
            k: str(v) for k, v in ours["services"][name]["environment"].items()
        }


def test_compose_services_fit_together() -> None:
    c = compose(DOT_ENV)
    assert set(c["services"]) == {"broker", "postgres"}
    broker, postgres = c["services"]["broker"], c["services"]["postgres"]
    assert broker["build"] == "."
    assert broker["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert postgres["healthcheck"]["test"][:2] == ["CMD", "pg_isready"]
    assert set(c["volumes"]) == {v.split(":")[0] for v in postgres["volumes"]}

    env = broker["environment"]
    assert set(env) == {"BROKER_LISTEN", "BROKER_PUBLIC_URL", "BROKER_STORE_URL", "BROKER_KEK"}
    store = urlsplit(env["BROKER_STORE_URL"])
    pg = postgres["environment"]
    assert (store.scheme, store.hostname, store.port) == ("postgresql", "postgres", 5432)
    assert (store.username, store.password, store.path) == (
        pg["POSTGRES_USER"],
        pg["POSTGRES_PASSWORD"],
        "/" + pg["POSTGRES_DB"],
    )
    assert pg["POSTGRES_PASSWORD"] == DOT_ENV["POSTGRES_PASSWORD"]
    assert env["BROKER_KEK"] == DOT_ENV["BROKER_KEK"]

    # The published port is the one the broker listens on, and the default public URL's.
    [published] = broker["ports"]
    host_ip, host_port, container_port = published.split(":")
    assert env["BROKER_LISTEN"] == f"0.0.0.0:{container_port}"
    assert env["BROKER_PUBLIC_URL"] == f"http://{host_ip}:{host_port}"
    public = compose({**DOT_ENV, "BROKER_PUBLIC_URL": "https://broker.example.com"})
    assert public["services"]["broker"]["environment"]["BROKER_PUBLIC_URL"] == (
        "https://broker.example.com"
    )


def test_compose_environment_passes_the_image_configs_startup_checks(
    image_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = compose(DOT_ENV)["services"]["broker"]["environment"]
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    settings = load_settings(image_config)
    assert settings.store.url == env["BROKER_STORE_URL"]
    assert startup_problems(settings) == []


@pytest.mark.postgres
async def test_the_image_config_serves_on_postgresql_with_the_compose_environment(
    image_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """compose.yaml's broker, with its store URL pointed at this machine's PostgreSQL instead of
    the `postgres` service: it migrates, serves, and the health check finds it."""
    port = free_port()
    env = compose(DOT_ENV)["services"]["broker"]["environment"]
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("BROKER_LISTEN", f"0.0.0.0:{port}")
    async with fresh_schema("broker_image") as url:
        monkeypatch.setenv("BROKER_STORE_URL", url)
        with broker_processes(tmp_path / "procs") as procs:
            broker = procs.start(image_config, "compose", port)
            await broker.wait_ready()
            ok = await asyncio.to_thread(healthcheck)
            assert ok.returncode == 0, ok.stderr
            assert "one-time password" in broker.stdout()
            assert not (tmp_path / "data").exists()  # nothing on disk: the KEK is configured


# --- the documentation -------------------------------------------------------------------------


def test_the_postgresql_page_shows_compose_yaml_as_it_is() -> None:
    text = (ROOT / "compose.yaml").read_text("utf-8")
    # The whole page: the file's own `# ...` comment lines would end a section as headings.
    assert blocks("docs/postgresql.md", "yaml") == [text]


def test_the_dot_env_snippet_makes_what_compose_needs(tmp_path: Path) -> None:
    """The page's shell snippet, as written, up to its first docker command (no Docker here)."""
    [snippet] = blocks("docs/postgresql.md", "sh", section="Docker Compose")
    before_docker = snippet.split("\ndocker ", 1)[0]
    assert "> .env" in before_docker
    subprocess.run(["bash", "-euc", before_docker], cwd=tmp_path, check=True, timeout=60)
    # The .env file as compose reads it: one KEY=VALUE a line.
    dot_env = dict(
        line.split("=", 1) for line in (tmp_path / ".env").read_text().splitlines() if line
    )
    assert set(dot_env) == set(DOT_ENV)
    assert len(base64.b64decode(dot_env["BROKER_KEK"], validate=True)) == 32
    assert re.fullmatch(r"[0-9a-f]{32}", dot_env["POSTGRES_PASSWORD"])
    env = compose(dot_env)["services"]["broker"]["environment"]
    assert urlsplit(env["BROKER_STORE_URL"]).password == dot_env["POSTGRES_PASSWORD"]


def test_the_docs_name_the_image_configs_variables() -> None:
    """The Containers table lists every variable of config/container.toml with its default, and
    the docs' `docker run -e` use only those."""
    table = re.findall(
        r"^\| `(BROKER_\w+)` \| (?:`([^`]*)`|empty) \|",
        (ROOT / "docs" / "configuration.md").read_text(),
        re.M,
    )
    written = dict(
        re.findall(r"\$\{(BROKER_\w+):-([^}]*)\}", (ROOT / "config" / "container.toml").read_text())
    )
    assert dict(table) == written
    for page in ("README.md", "docs/configuration.md"):
        for snippet in blocks(page, "sh"):
            if "docker run" in snippet:
                assert set(re.findall(r"-e (\w+)", snippet)) <= set(written) | {"BROKER_CONFIG"}


def test_no_secret_file_enters_the_build_context_or_git() -> None:
    for ignore in (".dockerignore", ".gitignore"):
        assert ".env" in (ROOT / ignore).read_text().splitlines(), ignore
