"""``[providers.<name>] backchannel_logout_uri``: off by default, and when set it must be the
broker's own endpoint for that provider (Back-Channel Logout 1.0 §2.2: the scheme, host and port
of the redirect URI), so a typo is caught by ``check-config`` rather than by a provider whose
logout tokens never arrive."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.config import load_settings
from broker.errors import ConfigError

PUBLIC = "https://broker.example.com/sso"


def _config(tmp_path: Path, provider: str) -> Path:
    path = tmp_path / "broker.toml"
    path.write_text(
        f"""
[server]
public_url = "{PUBLIC}"
[store]
url = "sqlite:///{tmp_path}/broker.db"
[keys]
kek = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
{provider}
""",
        encoding="utf-8",
    )
    return path


def test_off_by_default(tmp_path: Path) -> None:
    s = load_settings(
        _config(tmp_path, '[providers.corp]\nissuer = "https://idp.example"\nclient_id = "b"')
    )
    assert s.providers["corp"].backchannel_logout_uri == ""


def test_the_broker_endpoint_is_accepted(tmp_path: Path) -> None:
    uri = f"{PUBLIC}/backchannel-logout/corp"
    s = load_settings(
        _config(
            tmp_path,
            f'[providers.corp]\nissuer = "https://idp.example"\nclient_id = "b"\n'
            f'backchannel_logout_uri = "{uri}"',
        )
    )
    assert s.providers["corp"].backchannel_logout_uri == uri


@pytest.mark.parametrize(
    "uri",
    [
        "https://broker.example.com/backchannel-logout/corp",  # public_url's path left out
        f"{PUBLIC}/backchannel-logout/other",
        f"{PUBLIC}/logout",
        "http://broker.example.com/sso/backchannel-logout/corp",
        "https://evil.example/sso/backchannel-logout/corp",
    ],
    ids=["no-path-prefix", "other-provider", "other-path", "other-scheme", "other-host"],
)
def test_anything_else_is_refused_naming_the_right_value(tmp_path: Path, uri: str) -> None:
    provider = (
        f'[providers.corp]\nissuer = "https://idp.example"\nclient_id = "b"\n'
        f'backchannel_logout_uri = "{uri}"'
    )
    with pytest.raises(ConfigError) as e:
        load_settings(_config(tmp_path, provider))
    [problem] = e.value.problems
    assert problem.startswith("providers.corp.backchannel_logout_uri")
    assert f"{PUBLIC}/backchannel-logout/corp" in problem


def test_a_local_provider_has_no_back_channel(tmp_path: Path) -> None:
    provider = '[providers.local]\ntype = "local"\nbackchannel_logout_uri = "x"'
    with pytest.raises(ConfigError) as e:
        load_settings(_config(tmp_path, provider))
    assert any("providers.local.backchannel_logout_uri" in p for p in e.value.problems)
