"""The nginx, Caddy and Traefik configs in the docs are the ones the integration tests run."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.proxies.run import (
    CADDY_SITE,
    NGINX_SITE,
    TRAEFIK_DYNAMIC,
    TRAEFIK_STATIC,
    local_caddyfile,
    render,
)

DOCS = Path(__file__).resolve().parents[2] / "docs"

# The values the docs show; the tests render the same templates with ports on 127.0.0.1.
TRAEFIK_VALUES = {
    "address": ":80",
    "dynamic": "/etc/traefik/dynamic.yml",
    "host": "app.example.com",
    "broker": "http://127.0.0.1:8000",
    "upstream": "http://127.0.0.1:3000",
}

# (page, code block language, the templates its blocks show in order, values, other blocks)
CASES = [
    (
        "nginx.md",
        "nginx",
        [NGINX_SITE],
        {
            "listen": "80",
            "auth_cache": "/var/cache/nginx/broker-auth",
            "server_name": "app.example.com",
            "broker": "http://127.0.0.1:8000",
            "upstream": "http://127.0.0.1:3000",
        },
        0,
    ),
    (
        "caddy.md",
        "caddyfile",
        [CADDY_SITE],
        {
            "site": "app.example.com",
            "host": "app.example.com",
            "broker": "127.0.0.1:8000",
            "upstream": "127.0.0.1:3000",
        },
        1,  # the whole local Caddyfile, checked below
    ),
    # the third yaml block of traefik.md, Docker labels, is checked below
    ("traefik.md", "yaml", [TRAEFIK_STATIC, TRAEFIK_DYNAMIC], TRAEFIK_VALUES, 1),
]


def code_blocks(doc: str, lang: str) -> list[str]:
    text = (DOCS / doc).read_text(encoding="utf-8")
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.DOTALL)


@pytest.mark.parametrize(
    ("doc", "lang", "templates", "values", "others"), CASES, ids=[c[0] for c in CASES]
)
def test_doc_config_is_the_tested_template(
    doc: str, lang: str, templates: list[Path], values: dict[str, str], others: int
) -> None:
    blocks = code_blocks(doc, lang)
    expected = [render(t, values) for t in templates]
    names = ", ".join(t.name for t in templates)
    assert blocks[: len(expected)] == expected, f"docs/{doc} differs from {names}"
    assert len(blocks) == len(expected) + others, f"docs/{doc}: unexpected ```{lang} blocks"


def flatten(prefix: str, value: Any) -> dict[str, str]:
    """A configuration tree as Traefik's labels (or command-line flags) spell it."""
    if isinstance(value, dict):
        out: dict[str, str] = {}
        for key, item in value.items():
            out.update(flatten(f"{prefix}.{key}", item))
        return out
    if isinstance(value, list):
        return {prefix: ",".join(str(v) for v in value)}
    if isinstance(value, bool):
        return {prefix: str(value).lower()}
    return {prefix: str(value)}


def test_traefik_docker_labels_and_flags_are_the_tested_config() -> None:
    """The Docker labels of docs/traefik.md set what the tested file-provider config sets
    (only the broker's address differs: a container name), and the page names the static
    options as command-line flags."""
    yaml = pytest.importorskip("yaml")  # PyYAML comes with awscli in the test extra
    dynamic = yaml.safe_load(render(TRAEFIK_DYNAMIC, TRAEFIK_VALUES))["http"]
    expected = flatten("traefik.http.middlewares", dynamic["middlewares"])
    expected["traefik.http.routers.app.middlewares"] = ",".join(
        dynamic["routers"]["app"]["middlewares"]
    )
    (block,) = code_blocks("traefik.md", "yaml")[2:]
    # Traefik reads label keys case-insensitively (the header names in them too)
    labels = {
        key.lower(): value
        for key, value in (label.split("=", 1) for label in yaml.safe_load(block)["labels"])
    }
    expected = {key.lower(): value for key, value in expected.items()}
    address = "traefik.http.middlewares.broker-auth.forwardauth.address"
    assert labels.pop(address).endswith("/auth")
    del expected[address]
    assert labels == expected

    static = yaml.safe_load(render(TRAEFIK_STATIC, TRAEFIK_VALUES))
    del static["entryPoints"]["web"]["address"], static["providers"]
    text = (DOCS / "traefik.md").read_text(encoding="utf-8")
    for key, tree in static.items():
        for flag, value in flatten(key, tree).items():
            assert f"`--{flag}={value}`" in text, flag


@pytest.mark.parametrize("doc", ["nginx.md", "traefik.md", "caddy.md", "envoy.md"])
def test_every_proxy_page_strips_and_passes_the_headers(doc: str) -> None:
    text = (DOCS / doc).read_text(encoding="utf-8").lower()
    for header in ("user", "email", "groups", "role", "session", "assertion"):
        assert f"x-auth-request-{header}" in text
    assert "trusted_proxies" in text
    assert "/login?rd=" in text or "x-auth-request-redirect" in text


def test_caddy_local_file_is_the_one_the_tests_run() -> None:
    """docs/caddy.md's "On one machine" Caddyfile, byte for byte what ``tests.proxies.run.caddy``
    writes (ports aside), with an ``http://`` site address."""
    (block,) = code_blocks("caddy.md", "caddyfile")[1:]
    assert block == local_caddyfile(
        {
            "site": "http://127.0.0.1:8080",
            "host": "127.0.0.1:8080",
            "broker": "127.0.0.1:8000",
            "upstream": "127.0.0.1:3000",
        }
    )
    assert block.splitlines()[5].startswith("http://127.0.0.1:8080 {")
