"""The nginx and Caddy configs in the docs are the ones the integration tests run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.proxies.run import CADDY_SITE, NGINX_SITE, render

DOCS = Path(__file__).resolve().parents[2] / "docs"

# The values the docs show; the tests render the same templates with ports on 127.0.0.1.
CASES = [
    (
        "nginx.md",
        "nginx",
        NGINX_SITE,
        {
            "listen": "80",
            "server_name": "app.example.com",
            "broker": "http://127.0.0.1:8000",
            "upstream": "http://127.0.0.1:3000",
        },
    ),
    (
        "caddy.md",
        "caddyfile",
        CADDY_SITE,
        {
            "site": "app.example.com",
            "host": "app.example.com",
            "broker": "127.0.0.1:8000",
            "upstream": "127.0.0.1:3000",
        },
    ),
]


@pytest.mark.parametrize(("doc", "lang", "template", "values"), CASES, ids=[c[0] for c in CASES])
def test_doc_config_is_the_tested_template(
    doc: str, lang: str, template: Path, values: dict[str, str]
) -> None:
    text = (DOCS / doc).read_text(encoding="utf-8")
    blocks = re.findall(rf"```{lang}\n(.*?)```", text, flags=re.DOTALL)
    assert blocks == [render(template, values)], f"docs/{doc} differs from {template.name}"


@pytest.mark.parametrize("doc", ["nginx.md", "traefik.md", "caddy.md", "envoy.md"])
def test_every_proxy_page_strips_and_passes_the_headers(doc: str) -> None:
    text = (DOCS / doc).read_text(encoding="utf-8").lower()
    for header in ("user", "email", "groups", "role", "session", "assertion"):
        assert f"x-auth-request-{header}" in text
    assert "trusted_proxies" in text
    assert "/login?rd=" in text or "x-auth-request-redirect" in text
