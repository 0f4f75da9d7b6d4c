"""Provider names that collide with a namespace the broker owns are refused (issue 11, 0b).

A provider's claims are the condition keys ``<provider>:<claim>``: a provider named ``aws`` or
``broker`` would set the global keys (``aws:MultiFactorAuthPresent``, ``aws:SourceIp``) that only
the broker may set; ``sts``, ``iam`` and ``http`` are the namespaces of the broker's own actions
and keys. ``load_settings`` and ``broker check-config`` refuse them, naming the provider and why.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from broker.cli import main
from broker.config import load_settings
from broker.errors import ConfigError

KELVIN = "\u212a"  # KELVIN SIGN: lower-cases to "k"

# (toml table key, name as written, id, words the message must have)
REFUSED = [
    ("aws", "aws", "aws", "global condition keys"),
    ("AWS", "AWS", "aws-upper", "global condition keys"),
    ("Aws", "Aws", "aws-mixed", "global condition keys"),
    ("broker", "broker", "broker", "global condition keys"),
    ("BROKER", "BROKER", "broker-upper", "global condition keys"),
    (f'"bro{KELVIN}er"', f"bro{KELVIN}er", "broker-kelvin-sign", "global condition keys"),
    ("sts", "sts", "sts", "STS actions"),
    ("iam", "iam", "iam", "admin actions"),
    ("IAM", "IAM", "iam-upper", "admin actions"),
    ("http", "http", "http", "proxied HTTP"),
]


def _config(tmp_path: Path, table: str) -> Path:
    path = tmp_path / "broker.toml"
    path.write_text(
        f"""
[server]
public_url = "http://127.0.0.1:8000"
[store]
url = "sqlite:///{tmp_path}/broker.db"
[keys]
kek = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
[providers.{table}]
issuer = "http://127.0.0.1:9/"
client_id = "broker"
""",
        encoding="utf-8",
    )
    return path


@pytest.mark.parametrize(
    ("table", "name", "why"),
    [(t, n, w) for t, n, _, w in REFUSED],
    ids=[i for _, _, i, _ in REFUSED],
)
def test_load_settings_refuses_a_reserved_provider_name(
    tmp_path: Path, table: str, name: str, why: str
) -> None:
    with pytest.raises(ConfigError) as e:
        load_settings(_config(tmp_path, table))
    mine = [p for p in e.value.problems if p.startswith(f"providers.{name}:")]
    assert len(mine) == 1, e.value.problems
    assert f"provider name {name!r} is reserved" in mine[0]
    assert why in mine[0]
    assert "choose another name" in mine[0]


@pytest.mark.parametrize(
    ("table", "name", "why"),
    [(t, n, w) for t, n, _, w in REFUSED if t in ("aws", "AWS", "broker", "sts")],
    ids=[i for t, _, i, _ in REFUSED if t in ("aws", "AWS", "broker", "sts")],
)
def test_check_config_refuses_a_reserved_provider_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], table: str, name: str, why: str
) -> None:
    cfg = _config(tmp_path, table)
    assert main(["check-config", "--config", str(cfg)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert f"providers.{name}: the provider name {name!r} is reserved" in err
    assert why in err
    assert main(["check-config", "--config", str(cfg), "--json"]) == 2
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is False
    assert any(p.startswith(f"providers.{name}: ") and why in p for p in data["problems"])


@pytest.mark.parametrize(
    "name", ["aws-sso", "awsidp", "brokers", "my-aws", "https"], ids=lambda n: str(n)
)
def test_names_that_only_contain_a_reserved_word_are_fine(tmp_path: Path, name: str) -> None:
    settings = load_settings(_config(tmp_path, name))
    assert list(settings.providers) == [name]
