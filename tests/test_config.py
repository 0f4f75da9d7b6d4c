"""The config schema (contract C1) and ``broker check-config`` (C5), table-driven.

Every bad value is reported by its dotted key path, and every problem of a file at once.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from broker.cli import main
from broker.config import Networks, Settings, load_settings, parse_duration, parse_settings
from broker.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "config" / "broker.toml"
KEK = base64.b64encode(bytes(range(32))).decode()
TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Federated": "local"},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {"local:sub": "admin"}},
        }
    ],
}
LOCAL = {"providers": {"local": {"type": "local"}}}
OIDC = {"issuer": "https://login.example.com", "client_id": "broker"}


def merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """A deep merge of two TOML documents (``extra`` wins)."""
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


def parse(
    extra: Mapping[str, Any], *, env: Mapping[str, str] | None = None, base: Path | None = None
) -> Settings:
    return parse_settings(merge(LOCAL, extra), base=base or Path("/nonexistent"), env=env or {})


def problems_of(
    extra: Mapping[str, Any], *, env: Mapping[str, str] | None = None, base: Path | None = None
) -> list[str]:
    with pytest.raises(ConfigError) as e:
        parse(extra, env=env, base=base)
    return e.value.problems


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# --- the shipped config ------------------------------------------------------------------------


def test_shipped_config_loads() -> None:
    s = load_settings(SHIPPED)
    assert s.config_path == SHIPPED
    assert s.server.listen_host == "127.0.0.1"
    assert s.server.listen_port == 8000
    assert s.server.public_url == "http://127.0.0.1:8000"
    assert s.server.account_id == "000000000000"
    assert list(s.providers) == ["local"]
    assert s.providers["local"].type == "local"
    assert list(s.roles) == ["admin"]
    admin = s.roles["admin"]
    assert admin.max_session_duration == 8 * 3600
    assert admin.trust_policy["Statement"][0]["Principal"] == {"Federated": "local"}
    assert len(admin.policies) == 1
    assert s.keys.algorithm == "EdDSA"
    assert s.keys.kek is None  # the embedded default: generated beside the database
    # sqlite:///../var/broker.db is relative to config/, i.e. <repo>/var/broker.db
    assert s.sqlite_path == ROOT / "var" / "broker.db"


def test_empty_document_needs_a_provider() -> None:
    with pytest.raises(ConfigError) as e:
        parse_settings({}, base=Path("/x"), env={})
    assert e.value.problems == [
        "providers: at least one provider is required (for example [providers.local])"
    ]


def test_defaults() -> None:
    s = parse({})
    assert s.server.listen_host == "127.0.0.1"
    assert s.server.listen_port == 8000
    assert s.server.public_url == "http://127.0.0.1:8000"
    assert s.server.allowed_redirect_domains == ()
    assert s.server.trusted_proxies == ()
    assert not s.server.secure
    assert (s.server.max_concurrency, s.server.queue_timeout) == (256, 2.0)
    assert s.keys.algorithm == "EdDSA"
    assert s.keys.rotate_every == 7 * 86400
    assert s.session.cookie_name == "broker_session"
    assert (s.session.lifetime, s.session.idle_timeout, s.session.token_lifetime) == (
        8 * 3600,
        3600,
        900,
    )
    assert s.session.revocation_max_staleness == 10
    assert s.login.max_failures_per_user == 5
    assert s.login.max_failures_per_address == 20
    assert (s.login.hash_workers, s.login.hash_queue) == (2, 32)
    assert s.log_level == "INFO"
    assert s.store.url == "sqlite:////nonexistent/broker.db"
    assert s.providers["local"].display_name == "User name and password"


def test_full_server_section() -> None:
    s = parse(
        {
            "server": {
                "listen": "[::1]:9000",
                "public_url": "https://broker.example.com/",
                "allowed_redirect_domains": [".Example.com", "app.internal:8443", "dev.test:*"],
                "trusted_proxies": ["127.0.0.1", "10.0.0.0/8", "fd00::/8"],
                "account_id": "123456789012",
                "max_concurrency": 64,
                "queue_timeout": "500ms",
            }
        }
    )
    assert (s.server.listen_host, s.server.listen_port) == ("::1", 9000)
    assert (s.server.max_concurrency, s.server.queue_timeout) == (64, 0.5)
    assert s.server.public_url == "https://broker.example.com"  # trailing slash dropped
    assert s.server.secure
    rules = [(r.host, r.subdomains, r.port, r.any_port) for r in s.server.allowed_redirect_domains]
    assert rules == [
        ("example.com", True, None, False),
        ("app.internal", False, 8443, False),
        ("dev.test", False, None, True),
    ]
    assert [str(n) for n in s.server.trusted_proxies] == ["127.0.0.1/32", "10.0.0.0/8", "fd00::/8"]
    assert isinstance(s.server.trusted_proxies, Networks)  # its hash computed once
    assert s.arn("role", "dev") == "arn:broker:iam::123456789012:role/dev"


# --- ${ENV} substitution -----------------------------------------------------------------------


def test_env_substitution_replaces_inside_strings() -> None:
    s = parse(
        {
            "keys": {"kek": "${BROKER_KEK}"},
            "server": {"public_url": "https://${HOST}:${PORT}/b"},
            "providers": {"corp": {**OIDC, "client_secret": "${CORP_SECRET}"}},
        },
        env={"BROKER_KEK": KEK, "HOST": "broker.example.com", "PORT": "8443", "CORP_SECRET": "s3"},
    )
    assert s.keys.kek is not None
    assert s.keys.kek.get() == KEK
    assert s.server.public_url == "https://broker.example.com:8443/b"
    secret = s.providers["corp"].client_secret
    assert secret is not None
    assert secret.get() == "s3"


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        pytest.param(
            {"keys": {"kek": "${BROKER_KEK}"}},
            "keys.kek: environment variable BROKER_KEK is not set",
            id="section-key",
        ),
        pytest.param(
            {"providers": {"corp": {**OIDC, "client_secret": "${CORP_SECRET}"}}},
            "providers.corp.client_secret: environment variable CORP_SECRET is not set",
            id="provider-key",
        ),
        pytest.param(
            {"providers": {"corp": {**OIDC, "scopes": ["openid", "${EXTRA_SCOPE}"]}}},
            "providers.corp.scopes[1]: environment variable EXTRA_SCOPE is not set",
            id="list-item",
        ),
    ],
)
def test_env_missing_names_the_variable_and_the_key(extra: dict[str, Any], expected: str) -> None:
    # removeprefix: see test_env_missing_path_has_no_leading_dot (a config.py bug)
    assert [p.removeprefix(".") for p in problems_of(extra)] == [expected]


def test_env_default_fills_a_key_and_is_validated_like_any_value() -> None:
    s = parse({"server": {"listen": "${L:-0.0.0.0:9000}", "public_url": "${U:-http://b:9000}"}})
    assert (s.server.listen_host, s.server.listen_port, s.server.public_url) == (
        "0.0.0.0",
        9000,
        "http://b:9000",
    )
    assert problems_of({"server": {"listen": "${L:-nowhere}"}}) == [
        "server.listen: 'nowhere' must be 'host:port'"
    ]
    # An empty default leaves the key empty, which for [keys].kek means "not configured".
    assert parse({"keys": {"kek": "${BROKER_KEK:-}"}}).keys.kek is None


def test_env_missing_path_has_no_leading_dot() -> None:
    assert problems_of({"keys": {"kek": "${K}"}}) == ["keys.kek: environment variable K is not set"]


@pytest.mark.parametrize(
    ("value", "env", "expected"),
    [
        pytest.param("$${NOT_A_VAR}", {}, "${NOT_A_VAR}", id="escaped"),
        pytest.param("a$${X}b${X}", {"X": "1"}, "a${X}b1", id="escaped-and-real"),
        pytest.param("$$${X}", {"X": "1"}, "$${X}", id="dollar-then-escape"),
        pytest.param("cost: $5 and $HOME", {}, "cost: $5 and $HOME", id="bare-dollar-untouched"),
        pytest.param("${X}", {"X": "${Y}"}, "${Y}", id="value-not-rescanned"),
        pytest.param("${aws:username}", {}, "${aws:username}", id="policy-variable-untouched"),
        pytest.param("${X:-dflt}", {}, "dflt", id="default-when-unset"),
        pytest.param("${X:-dflt}", {"X": ""}, "dflt", id="default-when-empty"),
        pytest.param("${X:-dflt}", {"X": "set"}, "set", id="default-unused-when-set"),
        pytest.param("${X:-}", {}, "", id="empty-default"),
        pytest.param(
            "a${X:-http://h:1/p?q=$y}b", {}, "ahttp://h:1/p?q=$yb", id="default-as-written"
        ),
        pytest.param("${X:-${Y}}", {"Y": "1"}, "${Y}", id="default-not-rescanned"),
        pytest.param("${X:-d}", {"X": "${Y}"}, "${Y}", id="value-with-default-not-rescanned"),
        pytest.param("$${X:-d}", {}, "${X:-d}", id="escaped-default"),
        pytest.param("${X-d}", {}, "${X-d}", id="only-colon-dash-is-a-default"),
    ],
)
def test_env_escape(value: str, env: dict[str, str], expected: str) -> None:
    s = parse({"roles": {"r": {"description": value, "trust_policy": TRUST}}}, env=env)
    assert s.roles["r"].description == expected


# --- durations ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        pytest.param("90s", 90, id="seconds"),
        pytest.param("15m", 900, id="minutes"),
        pytest.param("1h", 3600, id="hour"),
        pytest.param("1h30m", 5400, id="compound"),
        pytest.param("7d", 7 * 86400, id="days"),
        pytest.param("2w", 14 * 86400, id="weeks"),
        pytest.param("1500ms", 1.5, id="milliseconds"),
        pytest.param("1d2h3m4s", 86400 + 7200 + 180 + 4, id="all-units"),
        pytest.param(" 5m ", 300, id="surrounding-space"),
    ],
)
def test_duration_ok(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("1x", id="unknown-unit"),
        pytest.param("", id="empty"),
        pytest.param("   ", id="blank"),
        pytest.param("10", id="no-unit"),
        pytest.param("-5m", id="negative"),
        pytest.param("1.5h", id="fraction"),
        pytest.param("5M", id="upper-case"),
        pytest.param("m", id="unit-only"),
        pytest.param("5m3", id="trailing-number"),
        pytest.param("1h 30m", id="inner-space"),
    ],
)
def test_duration_bad(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        pytest.param(
            {"keys": {"rotate_every": "1x"}},
            "keys.rotate_every: '1x' is not a duration like '15m', '1h30m' or '7d'",
            id="bad-unit",
        ),
        pytest.param({"session": {"lifetime": ""}}, "session.lifetime: empty duration", id="empty"),
        pytest.param(
            {"session": {"token_lifetime": 10}},
            "session.token_lifetime: must be a duration string such as '15m' or '1h'",
            id="number",
        ),
        pytest.param(
            {"login": {"state_ttl": "0s"}},
            "login.state_ttl: must be longer than zero",
            id="zero",
        ),
        pytest.param(
            {"session": {"lifetime": "1h", "idle_timeout": "2h"}},
            "session.idle_timeout: must not be longer than session.lifetime",
            id="idle-longer-than-lifetime",
        ),
        pytest.param(
            {"session": {"revocation_max_staleness": "1s"}},
            "session.revocation_max_staleness: must be between 2s and 5m",
            id="staleness-below-the-poll-interval",
        ),
        pytest.param(
            {"session": {"revocation_max_staleness": "1h"}},
            "session.revocation_max_staleness: must be between 2s and 5m",
            id="staleness-too-long",
        ),
    ],
)
def test_duration_keys(extra: dict[str, Any], expected: str) -> None:
    assert problems_of(extra) == [expected]


# --- unknown keys ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "path"),
    [
        pytest.param({"listen": "0.0.0.0:8000"}, "listen", id="root"),
        pytest.param({"server": {"port": 8000}}, "server.port", id="server"),
        pytest.param({"store": {"pool_size": 5}}, "store.pool_size", id="store"),
        pytest.param({"keys": {"kid": "x"}}, "keys.kid", id="keys"),
        pytest.param({"session": {"secure": True}}, "session.secure", id="session"),
        pytest.param({"login": {"captcha": True}}, "login.captcha", id="login"),
        pytest.param(
            {"providers": {"corp": {**OIDC, "redirect_uri": "x"}}},
            "providers.corp.redirect_uri",
            id="providers.oidc",
        ),
        pytest.param(
            {"providers": {"local": {"type": "local", "client_id": "x"}}},
            "providers.local.client_id",
            id="providers.local",
        ),
        pytest.param(
            {"roles": {"dev": {"trust_policy": TRUST, "trust": TRUST}}},
            "roles.dev.trust",
            id="roles",
        ),
        pytest.param(
            {"policies": {"P": {"document": TRUST, "path": "x"}}},
            "policies.P.path",
            id="policies",
        ),
        pytest.param({"proxy": {"private": []}}, "proxy.private", id="proxy"),
        pytest.param(
            {"proxy": {"public": [{"url": "https://a.example.com/", "method": "GET"}]}},
            "proxy.public[0].method",
            id="proxy.public",
        ),
    ],
)
def test_unknown_key_rejected_with_dotted_path(extra: dict[str, Any], path: str) -> None:
    assert problems_of(extra) == [f"{path}: unknown key"]


# --- bad values --------------------------------------------------------------------------------

BAD_VALUES = [
    # [server]
    pytest.param({"server": {"listen": "8000"}}, "server.listen", id="listen-no-host"),
    pytest.param({"server": {"listen": "localhost:http"}}, "server.listen", id="listen-port-name"),
    pytest.param({"server": {"listen": "0.0.0.0:65536"}}, "server.listen", id="listen-port-big"),
    pytest.param({"server": {"listen": 8000}}, "server.listen", id="listen-not-string"),
    pytest.param({"server": {"public_url": "ftp://x"}}, "server.public_url", id="url-scheme"),
    pytest.param(
        {"server": {"public_url": "broker.example.com"}}, "server.public_url", id="url-rel"
    ),
    pytest.param({"server": {"public_url": "https://b/?q=1"}}, "server.public_url", id="url-query"),
    pytest.param(
        {"server": {"public_url": "https://b/#f"}}, "server.public_url", id="url-fragment"
    ),
    pytest.param({"server": {"account_id": "123"}}, "server.account_id", id="account-short"),
    pytest.param(
        {"server": {"account_id": "12345678901a"}}, "server.account_id", id="account-alpha"
    ),
    pytest.param({"server": {"account_id": 123456789012}}, "server.account_id", id="account-int"),
    pytest.param(
        {"server": {"trusted_proxies": ["10.0.0.0/8", "10.0.0.0/33"]}},
        "server.trusted_proxies[1]",
        id="proxy-bad-prefix",
    ),
    pytest.param(
        {"server": {"trusted_proxies": ["proxy.internal"]}},
        "server.trusted_proxies[0]",
        id="proxy-hostname",
    ),
    pytest.param(
        {"server": {"trusted_proxies": "127.0.0.1/32"}},
        "server.trusted_proxies",
        id="proxy-not-list",
    ),
    pytest.param(
        {"server": {"allowed_redirect_domains": ["https://app.example.com"]}},
        "server.allowed_redirect_domains[0]",
        id="redirect-url",
    ),
    pytest.param(
        {"server": {"allowed_redirect_domains": ["example.com/path"]}},
        "server.allowed_redirect_domains[0]",
        id="redirect-path",
    ),
    pytest.param(
        {"server": {"allowed_redirect_domains": ["ok.com", "user@example.com"]}},
        "server.allowed_redirect_domains[1]",
        id="redirect-userinfo",
    ),
    pytest.param(
        {"server": {"allowed_redirect_domains": ["example.com:http"]}},
        "server.allowed_redirect_domains[0]",
        id="redirect-port-name",
    ),
    pytest.param(
        {"server": {"allowed_redirect_domains": ["example.com:0"]}},
        "server.allowed_redirect_domains[0]",
        id="redirect-port-zero",
    ),
    pytest.param(
        {"server": {"allowed_redirect_domains": [""]}},
        "server.allowed_redirect_domains[0]",
        id="redirect-empty",
    ),
    pytest.param(
        {"server": {"allowed_redirect_domains": ["*.example.com"]}},
        "server.allowed_redirect_domains[0]",
        id="redirect-glob",
    ),
    pytest.param(
        {"server": {"allowed_redirect_domains": ["a..example.com"]}},
        "server.allowed_redirect_domains[0]",
        id="redirect-double-dot",
    ),
    # [store]
    pytest.param({"store": {"url": "mysql://db/broker"}}, "store.url", id="store-scheme"),
    pytest.param({"store": {"url": "sqlite://broker.db"}}, "store.url", id="store-two-slashes"),
    # [keys]
    pytest.param({"keys": {"algorithm": "HS256"}}, "keys.algorithm", id="algorithm"),
    pytest.param({"keys": {"algorithm": "eddsa"}}, "keys.algorithm", id="algorithm-case"),
    pytest.param({"keys": {"kek": "not base64!"}}, "keys.kek", id="kek-not-base64"),
    pytest.param(
        {"keys": {"kek": base64.b64encode(b"x" * 16).decode()}}, "keys.kek", id="kek-16-bytes"
    ),
    pytest.param(
        {"keys": {"kek": base64.b64encode(b"x" * 33).decode()}}, "keys.kek", id="kek-33-bytes"
    ),
    pytest.param({"keys": {"kek": bytes(32).hex()}}, "keys.kek", id="kek-hex"),
    # [session], [login], log_level
    pytest.param({"session": {"cookie_name": "my cookie"}}, "session.cookie_name", id="cookie"),
    pytest.param(
        {"login": {"max_failures_per_user": 0}}, "login.max_failures_per_user", id="failures-0"
    ),
    pytest.param(
        {"login": {"max_failures_per_address": "20"}},
        "login.max_failures_per_address",
        id="failures-str",
    ),
    pytest.param({"login": {"hash_workers": 0}}, "login.hash_workers", id="hash-workers-0"),
    pytest.param({"login": {"hash_queue": -1}}, "login.hash_queue", id="hash-queue-negative"),
    pytest.param({"log_level": "TRACE"}, "log_level", id="log-level"),
    # [providers.*]
    pytest.param({"providers": {"Corp": OIDC}}, "providers.Corp", id="provider-upper"),
    pytest.param({"providers": {"my.corp": OIDC}}, "providers.my.corp", id="provider-dot"),
    pytest.param({"providers": {"-corp": OIDC}}, "providers.-corp", id="provider-leading-dash"),
    pytest.param({"providers": {"c" * 33: OIDC}}, "providers." + "c" * 33, id="provider-long"),
    pytest.param(
        {"providers": {"corp": {**OIDC, "type": "saml"}}}, "providers.corp.type", id="type"
    ),
    pytest.param(
        {"providers": {"corp": {"client_id": "broker"}}}, "providers.corp.issuer", id="no-issuer"
    ),
    pytest.param(
        {"providers": {"corp": {"issuer": "https://login.example.com"}}},
        "providers.corp.client_id",
        id="no-client-id",
    ),
    pytest.param(
        {"providers": {"corp": {**OIDC, "issuer": "login.example.com"}}},
        "providers.corp.issuer",
        id="issuer-not-url",
    ),
    pytest.param(
        {"providers": {"corp": {**OIDC, "scopes": ["email", "profile"]}}},
        "providers.corp.scopes",
        id="scopes-no-openid",
    ),
    pytest.param(
        {"providers": {"corp": {**OIDC, "scopes": "openid"}}},
        "providers.corp.scopes",
        id="scopes-not-list",
    ),
    pytest.param(
        {"providers": {"corp": {**OIDC, "audiences": [1]}}},
        "providers.corp.audiences",
        id="audiences-not-strings",
    ),
    pytest.param(
        {"providers": {"corp": {**OIDC, "timeout": 0}}}, "providers.corp.timeout", id="timeout-0"
    ),
    pytest.param(
        {"providers": {"corp": {**OIDC, "leeway": -1}}}, "providers.corp.leeway", id="leeway-neg"
    ),
    pytest.param(
        {"providers": {"corp": {**OIDC, "leeway": True}}}, "providers.corp.leeway", id="leeway-bool"
    ),
    pytest.param(
        {"providers": {"g": {"type": "google"}}}, "providers.g.client_id", id="google-no-client-id"
    ),
    # [roles.*]
    pytest.param({"roles": {"dev": {}}}, "roles.dev.trust_policy", id="no-trust-policy"),
    pytest.param(
        {"roles": {"dev": {"trust_policy": 5}}}, "roles.dev.trust_policy", id="trust-policy-int"
    ),
    pytest.param(
        {"roles": {"dev": {"trust_policy": TRUST, "max_session_duration": "14m"}}},
        "roles.dev.max_session_duration",
        id="session-too-short",
    ),
    pytest.param(
        {"roles": {"dev": {"trust_policy": TRUST, "max_session_duration": "12h1s"}}},
        "roles.dev.max_session_duration",
        id="session-too-long",
    ),
    pytest.param(
        {"roles": {"dev": {"trust_policy": TRUST, "policies": TRUST}}},
        "roles.dev.policies",
        id="policies-not-list",
    ),
    pytest.param(
        {"roles": {"dev": {"trust_policy": TRUST, "policies": [TRUST, 3]}}},
        "roles.dev.policies[1]",
        id="policies-item",
    ),
    pytest.param(
        {"roles": {"dev": {"trust_policy": TRUST, "permissions_boundary": []}}},
        "roles.dev.permissions_boundary",
        id="boundary-list",
    ),
    pytest.param({"roles": {"a b": {"trust_policy": TRUST}}}, "roles.a b", id="role-name"),
    # [policies.*], [[proxy.public]]
    pytest.param({"policies": {"P": {}}}, "policies.P.document", id="policy-no-document"),
    pytest.param({"policies": {"P/Q": {"document": TRUST}}}, "policies.P/Q", id="policy-name"),
    pytest.param({"proxy": {"public": [{}]}}, "proxy.public[0].url", id="public-no-url"),
    pytest.param(
        {"proxy": {"public": [{"url": "/healthz"}]}}, "proxy.public[0].url", id="public-relative"
    ),
    pytest.param({"proxy": {"public": {"url": "x"}}}, "proxy.public", id="public-not-array"),
]


@pytest.mark.parametrize(("extra", "path"), BAD_VALUES)
def test_bad_value_reported_by_path(extra: dict[str, Any], path: str) -> None:
    problems = problems_of(extra)
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{path}: "), problems


def test_managed_policies_by_name_or_arn() -> None:
    s = parse(
        {
            "roles": {
                "dev": {
                    "trust_policy": TRUST,
                    "managed_policies": [
                        "ReadOnly",
                        "arn:broker:iam::000000000000:policy/ReadOnly",
                        "arn:broker:iam::000000000000:policy/team/Deploy",
                    ],
                }
            },
            "policies": {"ReadOnly": {"document": TRUST}, "Deploy": {"document": TRUST}},
        }
    )
    assert s.roles["dev"].managed_policies == ("ReadOnly", "Deploy")


def test_section_that_is_not_a_table() -> None:
    assert problems_of({"server": "127.0.0.1:8000"}) == ["server: must be a table"]
    problems = problems_of({"providers": {"corp": "oidc"}})
    assert problems[0] == "providers.corp: must be a table"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        pytest.param(
            {"keys": {"kek": "abc"}},
            "keys.kek: must be base64 of 32 random bytes (openssl rand -base64 32)",
            id="kek",
        ),
        pytest.param(
            {"keys": {"algorithm": "HS256"}},
            "keys.algorithm: 'HS256' must be one of EdDSA, ES256, RS256",
            id="algorithm",
        ),
        pytest.param(
            {"providers": {"corp": {**OIDC, "scopes": ["email"]}}},
            "providers.corp.scopes: must include 'openid'",
            id="scopes",
        ),
        pytest.param(
            {"roles": {"dev": {"trust_policy": TRUST, "max_session_duration": "13h"}}},
            "roles.dev.max_session_duration: must be between 15m and 12h",
            id="max-session",
        ),
        pytest.param(
            {"server": {"trusted_proxies": ["nope"]}},
            "server.trusted_proxies[0]: 'nope' is not an IP network",
            id="cidr",
        ),
        pytest.param(
            {"server": {"max_concurrency": 0}},
            "server.max_concurrency: must be at least 1",
            id="max-concurrency-zero",
        ),
        pytest.param(
            {"server": {"max_concurrency": 2.5}},
            "server.max_concurrency: must be a whole number",
            id="max-concurrency-fraction",
        ),
        pytest.param(
            {"server": {"queue_timeout": "0s"}},
            "server.queue_timeout: must be longer than zero",
            id="queue-timeout-zero",
        ),
        pytest.param(
            {"roles": {"dev": {"trust_policy": TRUST, "managed_policies": ["ReadOnly"]}}},
            "roles.dev.managed_policies[0]: no policy named 'ReadOnly': "
            "declare it as [policies.ReadOnly]",
            id="managed-unknown",
        ),
        pytest.param(
            {"roles": {"dev": {"trust_policy": TRUST, "managed_policies": "ReadOnly"}}},
            "roles.dev.managed_policies: must be a list of strings",
            id="managed-not-list",
        ),
    ],
)
def test_bad_value_message(extra: dict[str, Any], message: str) -> None:
    assert problems_of(extra) == [message]


def test_redirect_rule_with_two_leading_dots_is_rejected() -> None:
    problems_of({"server": {"allowed_redirect_domains": ["..example.com"]}})


def test_in_memory_sqlite_is_refused() -> None:
    assert problems_of({"store": {"url": "sqlite:///:memory:"}}) == [
        "store.url: an in-memory or empty SQLite path cannot hold the store"
    ]


@pytest.mark.parametrize(
    "duration",
    [pytest.param("15m", id="min"), pytest.param("12h", id="max"), pytest.param("1h", id="mid")],
)
def test_role_session_duration_bounds_inclusive(duration: str) -> None:
    s = parse({"roles": {"dev": {"trust_policy": TRUST, "max_session_duration": duration}}})
    assert 900 <= s.roles["dev"].max_session_duration <= 43200


@pytest.mark.parametrize(
    ("kek", "ok"),
    [
        pytest.param(KEK, True, id="32-bytes"),
        pytest.param(base64.b64encode(b"\xff" * 32).decode(), True, id="32-bytes-with-slashes"),
        pytest.param(base64.urlsafe_b64encode(b"\xff" * 32).decode(), False, id="urlsafe"),
        pytest.param(KEK.rstrip("="), False, id="unpadded"),
    ],
)
def test_kek_must_be_standard_base64_of_32_bytes(kek: str, ok: bool) -> None:
    if ok:
        s = parse({"keys": {"kek": kek}})
        assert s.keys.kek is not None
        assert len(base64.b64decode(s.keys.kek.get())) == 32
    else:
        assert problems_of({"keys": {"kek": kek}})[0].startswith("keys.kek: ")


# --- policy files ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        pytest.param(None, "not found", id="missing"),
        pytest.param("{not json", "is not valid JSON", id="invalid-json"),
        pytest.param('["a list"]', "must hold a JSON object", id="not-an-object"),
        pytest.param(b"\xff\xfe{}", "is not valid JSON", id="not-utf8"),
    ],
)
@pytest.mark.parametrize(
    ("key", "path"),
    [
        pytest.param("trust_policy", "roles.dev.trust_policy", id="trust"),
        pytest.param("policies", "roles.dev.policies[0]", id="policies"),
        pytest.param("permissions_boundary", "roles.dev.permissions_boundary", id="boundary"),
    ],
)
def test_policy_file_problems(
    tmp_path: Path, content: str | bytes | None, fragment: str, key: str, path: str
) -> None:
    if isinstance(content, bytes):
        (tmp_path / "p.json").write_bytes(content)
    elif content is not None:
        write(tmp_path / "p.json", content)
    role: dict[str, Any] = {"trust_policy": TRUST}
    role[key] = ["p.json"] if key == "policies" else "p.json"
    problems = problems_of({"roles": {"dev": role}}, base=tmp_path)
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{path}: policy file 'p.json' "), problems
    assert fragment in problems[0]


def test_policy_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    write(tmp_path / "etc" / "policies" / "trust.json", json.dumps(TRUST))
    write(tmp_path / "etc" / "policies" / "ro.json", '{"Version": "2012-10-17", "Statement": []}')
    absolute = write(tmp_path / "abs.json", json.dumps(TRUST))
    cfg = write(
        tmp_path / "etc" / "broker.toml",
        f"""
[providers.local]
type = "local"
[roles.dev]
trust_policy = "policies/trust.json"
permissions_boundary = "{absolute}"
[policies.ReadOnly]
document = "policies/ro.json"
""",
    )
    s = load_settings(cfg)
    assert s.roles["dev"].trust_policy == TRUST
    assert s.roles["dev"].permissions_boundary == TRUST
    assert s.policies["ReadOnly"].document["Statement"] == []


# --- every problem at once ---------------------------------------------------------------------


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    cfg = write(
        tmp_path / "broker.toml",
        """
colour = "blue"                          # 1 unknown root key

[server]
listen = "nowhere"                       # 2
public_url = "ftp://broker"              # 3
account_id = "42"                        # 4
trusted_proxies = ["10.0.0.0/99"]        # 5
allowed_redirect_domains = ["a/b"]       # 6
port = 80                                # 7 unknown

[keys]
algorithm = "none"                       # 8
kek = "${MISSING_KEK}"                   # 9 missing variable

[session]
lifetime = "forever"                     # 10

[providers.corp]
scopes = ["email"]                       # 11 issuer, 12 client_id, 13 no openid
colour = "red"                           # 14 unknown

[roles.dev]
max_session_duration = "1d"              # 15 too long; 16 no trust_policy
policies = ["missing.json"]              # 17
""",
    )
    with pytest.raises(ConfigError) as e:
        load_settings(cfg)
    problems = e.value.problems
    assert len(problems) == 17, "\n".join(problems)
    for path in [
        "colour",
        "server.listen",
        "server.public_url",
        "server.account_id",
        "server.trusted_proxies[0]",
        "server.allowed_redirect_domains[0]",
        "server.port",
        "keys.algorithm",
        "session.lifetime",
        "providers.corp.issuer",
        "providers.corp.client_id",
        "providers.corp.scopes",
        "providers.corp.colour",
        "roles.dev.max_session_duration",
        "roles.dev.trust_policy",
        "roles.dev.policies[0]",
    ]:
        assert any(p.startswith(f"{path}: ") for p in problems), (path, problems)
    assert any("MISSING_KEK" in p and "keys.kek" in p for p in problems), problems


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        pytest.param("[server\nlisten = 1", "not valid TOML", id="toml-syntax"),
        pytest.param("a = 1\na = 2", "not valid TOML", id="duplicate-key"),
        pytest.param(None, "cannot read the config file", id="missing-file"),
    ],
)
def test_unreadable_file(tmp_path: Path, text: str | None, fragment: str) -> None:
    cfg = tmp_path / "broker.toml"
    if text is not None:
        write(cfg, text)
    with pytest.raises(ConfigError) as e:
        load_settings(cfg)
    assert len(e.value.problems) == 1
    assert e.value.problems[0].startswith(f"{cfg}: {fragment}")


# --- secrets -----------------------------------------------------------------------------------


def test_secrets_never_show_in_repr() -> None:
    s = parse(
        {
            "keys": {"kek": KEK},
            "providers": {"corp": {**OIDC, "client_secret": "hunter2-client-secret"}},
        }
    )
    for text in (repr(s), str(s), repr(s.keys), repr(s.providers["corp"])):
        assert KEK not in text
        assert "hunter2-client-secret" not in text
        assert "Secret('**********')" in text
    secret = s.providers["corp"].client_secret
    assert secret is not None
    assert secret.get() == "hunter2-client-secret"
    assert str(secret) == repr(secret) == "Secret('**********')"
    assert f"{secret}" == "Secret('**********')"


def test_store_password_never_shows_in_repr() -> None:
    s = parse({"store": {"url": "postgresql://broker:pg-pass-123@db:5432/broker"}})
    assert "pg-pass-123" not in repr(s)


# --- provider presets --------------------------------------------------------------------------


def test_google_preset_defaults() -> None:
    s = parse({"providers": {"google": {"type": "google", "client_id": "abc.apps"}}})
    g = s.providers["google"]
    assert g.type == "google"
    assert g.issuer == "https://accounts.google.com"
    assert g.scopes == ("openid", "email", "profile")
    assert g.audiences == ("abc.apps",)
    assert g.display_name == "Google"
    assert g.client_secret is None


def test_google_preset_can_be_overridden() -> None:
    s = parse(
        {
            "providers": {
                "workspace": {
                    "type": "google",
                    "client_id": "abc.apps",
                    "display_name": "Example Workspace",
                    "audiences": ["abc.apps", "other.apps"],
                }
            }
        }
    )
    w = s.providers["workspace"]
    assert w.display_name == "Example Workspace"
    assert w.audiences == ("abc.apps", "other.apps")


def test_oidc_defaults() -> None:
    s = parse({"providers": {"corp": dict(OIDC)}})
    c = s.providers["corp"]
    assert c.type == "oidc"
    assert c.display_name == "corp"
    assert c.audiences == ("broker",)
    assert (c.leeway, c.timeout, c.discovery_ttl, c.jwks_refetch_cooldown) == (60, 10, 3600, 60)


# --- store URLs --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected_url", "expected_path"),
    [
        pytest.param(
            "sqlite:///broker.db", "sqlite:////base/dir/broker.db", "/base/dir/broker.db", id="rel"
        ),
        pytest.param(
            "sqlite:///../var/b.db", "sqlite:////base/var/b.db", "/base/var/b.db", id="rel-parent"
        ),
        pytest.param("sqlite:////srv/b.db", "sqlite:////srv/b.db", "/srv/b.db", id="absolute"),
        pytest.param(
            "postgresql://u:p@db:5432/broker", "postgresql://u:p@db:5432/broker", None, id="pg"
        ),
        pytest.param("postgres://db/broker", "postgres://db/broker", None, id="pg-short"),
    ],
)
def test_store_url_resolution(url: str, expected_url: str, expected_path: str | None) -> None:
    s = parse({"store": {"url": url}}, base=Path("/base/dir"))
    assert s.store.url == expected_url
    assert s.sqlite_path == (Path(expected_path) if expected_path else None)


def test_relative_sqlite_path_follows_the_config_file_not_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = write(
        tmp_path / "conf" / "broker.toml",
        '[store]\nurl = "sqlite:///data/b.db"\n[providers.local]\ntype = "local"\n',
    )
    monkeypatch.chdir(tmp_path)
    s = load_settings("conf/broker.toml")
    assert s.sqlite_path == tmp_path / "conf" / "data" / "b.db"
    assert s.config_path == cfg


# --- the docs list every key -------------------------------------------------------------------


def test_docs_mention_every_key_read_by_config_py() -> None:
    docs = ROOT / "docs" / "configuration.md"
    if not docs.exists():
        pytest.skip("docs/configuration.md not written yet")
    source = (ROOT / "broker" / "config.py").read_text(encoding="utf-8")
    # every t.string("key", ...), t.duration("key", ...), t._get("key"), t.path("key"), ...
    keys = set(re.findall(r'\b(?:t|root|proxy)\.\w+\(\s*"([a-z_]+)"', source))
    assert len(keys) >= 40, sorted(keys)
    text = docs.read_text(encoding="utf-8")
    forms = ("`{}`", "[{}]", "[{}.", ".{}]")  # a key, or a [section] / [[proxy.public]]
    missing = sorted(k for k in keys if not any(f.format(k) in text for f in forms))
    assert not missing, f"docs/configuration.md does not document: {missing}"


# --- broker check-config -----------------------------------------------------------------------


def _needs_policy_engine() -> None:
    try:
        import broker.service.container  # noqa: F401
    except ImportError as e:  # pragma: no cover - only while the layers are being written
        pytest.skip(f"check-config needs broker.service.container / broker.policy: {e}")


BAD_CONFIG = """
[server]
listen = "nowhere"
account_id = "1"

[keys]
algorithm = "HS256"

[providers.local]
type = "local"
"""


def test_check_config_shipped_ok(capsys: pytest.CaptureFixture[str]) -> None:
    _needs_policy_engine()
    assert main(["check-config", "--config", str(SHIPPED)]) == 0
    out, err = capsys.readouterr()
    assert "OK" in out
    assert err == ""


def test_check_config_json(capsys: pytest.CaptureFixture[str]) -> None:
    _needs_policy_engine()
    assert main(["check-config", "--config", str(SHIPPED), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data == {"ok": True, "providers": ["local"], "roles": ["admin"], "policies": []}


def test_check_config_does_not_create_the_kek(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _needs_policy_engine()
    write(tmp_path / "policies" / "t.json", json.dumps(TRUST))
    cfg = write(
        tmp_path / "broker.toml",
        '[store]\nurl = "sqlite:///data/b.db"\n[providers.local]\ntype = "local"\n'
        '[roles.admin]\ntrust_policy = "policies/t.json"\n',
    )
    assert main(["check-config", "--config", str(cfg)]) == 0
    assert not (tmp_path / "data").exists()


def test_check_config_bad_lists_every_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _needs_policy_engine()
    cfg = write(tmp_path / "broker.toml", BAD_CONFIG)
    assert main(["check-config", "--config", str(cfg)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert lines[0] == "broker: the configuration has 3 problem(s):"
    assert [line.split(":")[0] for line in lines[1:]] == [
        "  - server.listen",
        "  - server.account_id",
        "  - keys.algorithm",
    ]


def test_check_config_bad_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _needs_policy_engine()
    cfg = write(tmp_path / "broker.toml", BAD_CONFIG)
    assert main(["check-config", "--config", str(cfg), "--json"]) == 2
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is False
    assert len(data["problems"]) == 3


def test_check_config_reports_policy_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Policies that parse as JSON but not as policies are startup problems, by config path."""
    _needs_policy_engine()
    cfg = write(
        tmp_path / "broker.toml",
        """
[providers.local]
type = "local"
[roles.dev]
trust_policy = { Version = "2012-10-17", Statement = [{ Effect = "Maybe" }] }
policies = [{ Statement = "nope" }]
[store]
url = "postgresql://db/broker"
""",
    )
    assert main(["check-config", "--config", str(cfg), "--json"]) == 2
    problems = json.loads(capsys.readouterr().out)["problems"]
    assert any(p.startswith("roles.dev.trust_policy: ") for p in problems), problems
    assert any(p.startswith("roles.dev.policies[0]: ") for p in problems), problems
    assert any(p.startswith("keys.kek: is required") for p in problems), problems


def test_check_config_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", "--config", str(tmp_path / "nope.toml")]) == 2
    err = capsys.readouterr().err
    assert "cannot read the config file" in err


def test_config_from_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _needs_policy_engine()
    monkeypatch.setenv("BROKER_CONFIG", str(SHIPPED))
    assert main(["check-config", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param([], id="broker"),
        pytest.param(["serve"], id="serve"),
        pytest.param(["check-config"], id="check-config"),
        pytest.param(["migrate"], id="migrate"),
        pytest.param(["keys"], id="keys"),
        pytest.param(["keys", "rotate"], id="keys-rotate"),
        pytest.param(["audit"], id="audit"),
        pytest.param(["audit", "list"], id="audit-list"),
        pytest.param(["audit", "verify"], id="audit-verify"),
    ],
)
def test_help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main([*argv, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: broker")
    if argv:  # every command and group takes --config; all but serve print a result
        assert "--config" in out
        assert ("--json" in out) == (argv != ["serve"])


def test_no_command_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main([])
    assert e.value.code == 2
    assert "usage: broker" in capsys.readouterr().err
