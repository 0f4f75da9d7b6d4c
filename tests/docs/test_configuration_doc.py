"""docs/configuration.md's TOML examples through the broker's own config loader, not only a TOML
parser: each example, layered on the shipped ``config/broker.toml`` together with the page's
own ``[server]`` and ``[keys]`` examples (the deployment the page describes: its
``public_url`` is ``https://broker.example.com``, its KEK comes from ``$BROKER_KEK``), passes
``parse_settings`` and the start-up checks (``startup_problems``: policies and the KEK rule)
with no warning, with the files it names created beside the config; and the page's
deliberately broken ``broker.toml`` fails with exactly the problems the page prints."""

from __future__ import annotations

import base64
import shutil
import tomllib
from pathlib import Path
from typing import Any

import pytest

from broker.config import Settings, parse_settings
from broker.errors import ConfigError
from broker.service.container import startup_problems
from broker.service.roles import policy_warnings, trust_policy_warnings
from tests.support.doc_snippets import ROOT, blocks

PAGE = "docs/configuration.md"
CHECK_CONFIG = "`broker check-config`"
ENV = {
    "BROKER_KEK": base64.b64encode(bytes(range(32))).decode(),
    "BROKER_DB_PASSWORD": "db-password",
    "GOOGLE_CLIENT_ID": "google-client",
    "GOOGLE_CLIENT_SECRET": "google-secret",
    "CORP_CLIENT_SECRET": "corp-secret",
}
# the keys whose string values are files relative to the config
FILE_KEYS = ("trust_policy", "policies", "permissions_boundary", "document", "logo")
SVG = '<svg xmlns="http://www.w3.org/2000/svg" width="1" height="1"/>'


def merged(base: dict[str, Any], layer: dict[str, Any]) -> dict[str, Any]:
    """``layer`` over ``base``: tables merge key by key, anything else is replaced."""
    out = dict(base)
    for key, value in layer.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


def named_files(value: Any, key: str = "") -> list[str]:
    """The relative paths an example names under the file keys (inline tables are not)."""
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in named_files(v, k)]
    if key in FILE_KEYS and isinstance(value, str):
        return [value]
    if key in FILE_KEYS and isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


def create(directory: Path, relative: str) -> None:
    """A file the example names: a trust policy (the shipped admin one) for a name with
    ``trust``, a logo, else a permission policy (the shipped admin one)."""
    path = directory / relative
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".svg":
        path.write_text(SVG)
    elif "trust" in path.name:
        shutil.copy(ROOT / "config/policies/admin-trust.json", path)
    else:
        shutil.copy(ROOT / "config/policies/admin-access.json", path)


def load(directory: Path, data: dict[str, Any]) -> Settings:
    """What ``broker check-config`` does: the schema, then policies and the KEK rule; and no
    warning either, so that a reader who copies an example gets no complaint."""
    settings = parse_settings(data, base=directory, env=ENV)
    assert startup_problems(settings) == []
    assert policy_warnings(settings) + trust_policy_warnings(settings) == []
    return settings


EXAMPLES = [
    pytest.param(body, id=f"{i}-{body.strip().splitlines()[0][:40]}")
    for i, body in enumerate(blocks(PAGE, "toml"))
    if body not in blocks(PAGE, "toml", section=CHECK_CONFIG)
]


def deployment(directory: Path) -> dict[str, Any]:
    """The shipped config, copied into ``directory``, with the page's [server] and [keys]."""
    shutil.copytree(ROOT / "config", directory)
    base = tomllib.loads((directory / "broker.toml").read_text("utf-8"))
    for section in ("`[server]`", "`[keys]`"):
        [example] = blocks(PAGE, "toml", section=section)
        base = merged(base, tomllib.loads(example))
    return base


def test_the_deployment_the_examples_build_on_loads(tmp_path: Path) -> None:
    settings = load(tmp_path / "config", deployment(tmp_path / "config"))
    assert settings.server.public_url == "https://broker.example.com"
    assert settings.keys.kek is not None


@pytest.mark.parametrize("example", EXAMPLES)
def test_each_example_loads_through_the_brokers_config_parser(example: str, tmp_path: Path) -> None:
    directory = tmp_path / "config"
    layer = tomllib.loads(example)
    data = merged(deployment(directory), layer)
    for relative in named_files(layer):
        create(directory, relative)
    settings = load(directory, data)
    # what the example set is what the broker holds
    for name in layer.get("providers", {}):
        assert name in settings.providers
    for name in layer.get("roles", {}):
        assert name in settings.roles
    for name in layer.get("policies", {}):
        assert name in settings.policies
    for route in layer.get("proxy", {}).get("public", []):
        assert route["url"] in {r.url for r in settings.public_routes}


def test_the_broken_example_fails_with_the_problems_the_page_prints(tmp_path: Path) -> None:
    [toml] = blocks(PAGE, "toml", section=CHECK_CONFIG)
    [shown] = blocks(PAGE, "console", section=CHECK_CONFIG, containing="9 problem(s)")
    printed = [line.removeprefix("  - ") for line in shown.splitlines() if line.startswith("  - ")]
    assert len(printed) == 9
    data = tomllib.loads(toml)
    for relative in named_files(data):  # "beside a policies/ directory with the two documents"
        create(tmp_path, relative)
    env = {k: v for k, v in ENV.items() if k != "BROKER_KEK"}  # "with BROKER_KEK not set"
    with pytest.raises(ConfigError) as caught:
        parse_settings(data, base=tmp_path, env=env)
    assert caught.value.problems == printed
