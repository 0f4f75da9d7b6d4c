"""Every shipped config (config/examples/*.toml, config/broker.toml and the container image's
config/container.toml) loads and passes the start-up checks, with the environment variables it
references set (and, for the container's, with none set: each has a default)."""

from __future__ import annotations

import base64
import re
import shutil
from pathlib import Path

import pytest

from broker.config import load_settings
from broker.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "config" / "examples").glob("*.toml"))
KEK = base64.b64encode(bytes(range(32))).decode()
_VAR = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(:-[^}]*)?\}")
CONTAINER = ROOT / "config" / "container.toml"


def env_vars(path: Path, *, defaulted: bool = False) -> list[str]:
    """The ``${VAR}`` names a config file requires (``$${`` escapes excluded), or with
    ``defaulted`` those it references as ``${VAR:-default}``."""
    found = _VAR.finditer(path.read_text("utf-8"))
    return sorted({m.group(1) for m in found if m.group(1) and bool(m.group(2)) == defaulted})


def dummy_env(monkeypatch: pytest.MonkeyPatch, names: list[str]) -> None:
    for name in names:
        monkeypatch.setenv(name, KEK if name.endswith("KEK") else f"dummy-{name.lower()}")


def startup_problems_of(settings: object) -> list[str]:
    try:
        from broker.service.container import startup_problems
    except ImportError as e:  # pragma: no cover - only while the layers are being written
        pytest.skip(f"broker.service.container / broker.policy not importable yet: {e}")
    problems: list[str] = startup_problems(settings)  # type: ignore[arg-type]
    return problems


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= 3


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_loads(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dummy_env(monkeypatch, env_vars(path))
    settings = load_settings(path)
    assert settings.providers
    assert settings.roles
    assert startup_problems_of(settings) == []
    for name, p in settings.providers.items():
        if p.type != "local":
            assert p.client_id, name
            assert "openid" in p.scopes, name


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_names_every_missing_variable(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    names = env_vars(path)
    if not names:
        pytest.skip("references no environment variables")
    for name in names:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError) as e:
        load_settings(path)
    text = "\n".join(e.value.problems)
    for name in names:
        assert f"environment variable {name} is not set" in text


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_kek_is_required_to_be_32_bytes(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if "BROKER_KEK" not in env_vars(path):
        pytest.skip("does not set [keys].kek from BROKER_KEK")
    dummy_env(monkeypatch, env_vars(path))
    monkeypatch.setenv("BROKER_KEK", base64.b64encode(b"short").decode())
    with pytest.raises(ConfigError) as e:
        load_settings(path)
    assert [p.split(":")[0] for p in e.value.problems] == ["keys.kek"]


def test_shipped_default_passes_startup_checks() -> None:
    settings = load_settings(ROOT / "config" / "broker.toml")
    assert startup_problems_of(settings) == []


# --- the container image's config (config/container.toml, the Dockerfile's broker.toml) ----------

CONTAINER_VARS = [
    "BROKER_ACCOUNT_ID",
    "BROKER_KEK",
    "BROKER_LISTEN",
    "BROKER_LOG_LEVEL",
    "BROKER_PUBLIC_URL",
    "BROKER_STORE_URL",
]


@pytest.fixture
def container_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """config/container.toml laid out as in the image (/etc/broker), no BROKER_* variable set."""
    etc = tmp_path / "etc" / "broker"
    shutil.copytree(ROOT / "config" / "policies", etc / "policies")
    shutil.copy(CONTAINER, etc / "broker.toml")
    for name in CONTAINER_VARS:
        monkeypatch.delenv(name, raising=False)
    return etc / "broker.toml"


def test_container_config_is_set_by_environment_variables_each_with_a_default() -> None:
    assert env_vars(CONTAINER) == []
    assert env_vars(CONTAINER, defaulted=True) == CONTAINER_VARS


def test_container_config_defaults(container_config: Path) -> None:
    settings = load_settings(container_config)
    s = settings.server
    assert (s.listen_host, s.listen_port, s.public_url) == (
        "0.0.0.0",
        8000,
        "http://127.0.0.1:8000",
    )
    assert s.account_id == "000000000000"
    assert settings.log_level == "INFO"
    assert settings.store.url == "sqlite:////var/lib/broker/broker.db"
    assert list(settings.providers) == ["local"]
    assert list(settings.roles) == ["admin"]
    assert settings.keys.kek is None  # generated beside the database, in the data volume
    assert startup_problems_of(settings) == []


def test_container_config_from_environment(
    container_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {
        "BROKER_LISTEN": "0.0.0.0:9000",
        "BROKER_PUBLIC_URL": "https://broker.example.com",
        "BROKER_STORE_URL": "postgresql://broker:pw@postgres:5432/broker",
        "BROKER_KEK": KEK,
        "BROKER_ACCOUNT_ID": "123456789012",
        "BROKER_LOG_LEVEL": "debug",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    settings = load_settings(container_config)
    s = settings.server
    assert (s.listen_host, s.listen_port, s.public_url) == (
        "0.0.0.0",
        9000,
        "https://broker.example.com",
    )
    assert settings.arn("role", "admin") == "arn:broker:iam::123456789012:role/admin"
    assert settings.log_level == "DEBUG"
    assert settings.store.url == env["BROKER_STORE_URL"]
    assert settings.keys.kek is not None
    assert settings.keys.kek.get() == KEK
    assert startup_problems_of(settings) == []


def test_container_config_on_postgresql_requires_the_kek(
    container_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BROKER_STORE_URL", "postgresql://broker:pw@postgres:5432/broker")
    monkeypatch.setenv("BROKER_KEK", "")  # set but empty, as `-e BROKER_KEK=` leaves it
    settings = load_settings(container_config)
    assert [p.split(":")[0] for p in startup_problems_of(settings)] == ["keys.kek"]


@pytest.mark.parametrize(
    ("name", "value", "key"),
    [
        ("BROKER_LISTEN", "9000", "server.listen"),
        ("BROKER_PUBLIC_URL", "broker.example.com", "server.public_url"),
        ("BROKER_STORE_URL", "mysql://db/broker", "store.url"),
        ("BROKER_KEK", base64.b64encode(b"short").decode(), "keys.kek"),
        ("BROKER_ACCOUNT_ID", "42", "server.account_id"),
        ("BROKER_LOG_LEVEL", "loud", "log_level"),
    ],
)
def test_container_config_names_the_key_of_a_bad_variable(
    container_config: Path, monkeypatch: pytest.MonkeyPatch, name: str, value: str, key: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as e:
        load_settings(container_config)
    assert [p.split(":")[0] for p in e.value.problems] == [key]
