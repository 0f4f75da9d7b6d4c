"""``broker.domain.urls``: the original request and its normalised form, as tables."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.config import parse_settings
from broker.domain.urls import (
    UrlRejected,
    from_envoy,
    from_forwarded,
    from_original_url,
    normalise_path,
    public_pattern,
)
from broker.errors import ConfigError
from broker.service.forward_auth import compile_public_routes
from broker.web.cookies import Cookies

PATHS = [
    ("/", "/"),
    ("/a/b", "/a/b"),
    ("/a/b/", "/a/b/"),
    ("//a///b//", "/a/b/"),
    ("/.well-known/x", "/.well-known/x"),
    ("/a.b/c", "/a.b/c"),
    ("/a%2eb/c%2E%2Ed", "/a.b/c..d"),
    ("/%41%7a%30%2d%2e%5f%7e", "/Az0-._~"),
    ("/a%3bb", "/a%3Bb"),
    ("/a%20b", "/a%20b"),
    ("/%20a", "/%20a"),
    ("/caf%c3%a9", "/caf%C3%A9"),
    ("/100%25", "/100%25"),
    ("/A/B", "/A/B"),
]

REJECTED = [
    ("a/b", "path_not_absolute"),
    ("/a%2fb", "encoded_slash"),
    ("/a%5cb", "encoded_backslash"),
    ("/a%00", "encoded_control_character"),
    ("/a%0a", "encoded_control_character"),
    ("/a%7f", "encoded_control_character"),
    ("/a%252e", "double_encoding"),
    ("/a%25%32%65", "double_encoding"),
    ("/%c0%ae", "invalid_utf8_escape"),
    ("/%e0%80%ae", "invalid_utf8_escape"),
    ("/%ed%a0%80", "invalid_utf8_escape"),
    ("/%ef%bc%8f", "confusable_escape"),
    ("/%ef%bc%8e%ef%bc%8e", "confusable_escape"),
    ("/%e2%80%8b", "confusable_escape"),
    ("/a\\b", "backslash"),
    ("/a#b", "fragment"),
    ("/a b", "control_or_space"),
    ("/a\tb", "control_or_space"),
    ("/é", "raw_non_ascii"),
    ("/%zz", "bad_escape"),
    ("/%a", "bad_escape"),
    # Dot segments are refused, never resolved: upstreams resolve them differently (or not at
    # all), and `/secret//../x` is `/x` after merging slashes but `/secret/x` to RFC 3986.
    ("/..", "dot_segment"),
    ("/.", "dot_segment"),
    ("/a/./b", "dot_segment"),
    ("/a/b/.", "dot_segment"),
    ("/a/b/../c", "dot_segment"),
    ("/a/b/..", "dot_segment"),
    ("/secret//../x", "dot_segment"),
    ("/secret/x//..", "dot_segment"),
    ("/a/../..", "dot_segment"),
    ("/a/%2e%2e/b", "encoded_dot_segment"),
    ("/a/%2E%2E/b", "encoded_dot_segment"),
    ("/a/%2e%2E/b", "encoded_dot_segment"),
    ("/a/.%2e/b", "encoded_dot_segment"),
    ("/a/%2e./b", "encoded_dot_segment"),
    ("/a/%2e/b", "encoded_dot_segment"),
    ("/%2e%2e/a", "encoded_dot_segment"),
    ("/a//%2e%2e/b", "encoded_dot_segment"),
    # IIS-style servers strip trailing dots and spaces from a segment: /admin./x is /admin/x.
    ("/admin./x", "trailing_dot"),
    ("/admin../x", "trailing_dot"),
    ("/.../x", "trailing_dot"),
    ("/admin%2e/x", "trailing_dot"),
    ("/x/file.", "trailing_dot"),
    ("/admin%20/x", "trailing_space"),
    ("/admin.%20/x", "trailing_space"),
    ("/admin%20%20/x", "trailing_space"),
    ("/admin%09/x", "encoded_control_character"),
    ("/admin%c2%a0/x", "confusable_escape"),
    ("/admin%e3%80%80/x", "confusable_escape"),
    # ;path parameters: stripped by Tomcat, Jetty and Spring, a plain character elsewhere.
    ("/a;p=1/b", "path_parameter"),
    ("/a/..;/b", "path_parameter"),
    ("/admin;/x", "path_parameter"),
    ("/;x/a", "path_parameter"),
    ("/a/b;", "path_parameter"),
]


@pytest.mark.parametrize(("raw", "expected"), PATHS, ids=[p for p, _ in PATHS])
def test_normalise_path(raw: str, expected: str) -> None:
    assert normalise_path(raw) == expected


@pytest.mark.parametrize(("raw", "reason"), REJECTED, ids=[p for p, _ in REJECTED])
def test_rejected_paths(raw: str, reason: str) -> None:
    with pytest.raises(UrlRejected) as e:
        normalise_path(raw)
    assert e.value.reason == reason


URLS = [
    ("HTTPS://App.Example.COM/x", "https://app.example.com/x"),
    ("https://app.example.com:443/x", "https://app.example.com/x"),
    ("http://app.example.com:80/x", "http://app.example.com/x"),
    ("https://app.example.com:8443/x", "https://app.example.com:8443/x"),
    ("http://app.example.com:443/x", "http://app.example.com:443/x"),
    ("https://app.example.com./x", "https://app.example.com/x"),
    ("https://app.example.com", "https://app.example.com/"),
    ("https://app.example.com?q=1", "https://app.example.com/"),
    ("https://app.example.com/x?q=/../admin", "https://app.example.com/x"),
    ("http://10.0.0.1:8080/x", "http://10.0.0.1:8080/x"),
    ("http://[::1]:8080/x", "http://[::1]:8080/x"),
    ("http://[2001:DB8::1]/x", "http://[2001:db8::1]/x"),
]


@pytest.mark.parametrize(("url", "resource"), URLS, ids=[u for u, _ in URLS])
def test_original_url_resource(url: str, resource: str) -> None:
    assert from_original_url("get", url).resource == resource


BAD_URLS = [
    ("app.example.com/x", "url_not_absolute"),
    ("ftp://app.example.com/x", "bad_scheme"),
    ("https://user@app.example.com/x", "bad_host"),
    ("https://user:pw@app.example.com/x", "bad_host"),
    ("https://app%2eexample.com/x", "bad_host"),
    ("https:///x", "bad_host"),
    ("https://app.example.com:0/x", "bad_port"),
    ("https://app.example.com:65536/x", "bad_port"),
    ("https://app.example.com:-1/x", "bad_port"),
    ("https://app.example.com:/x", "bad_port"),
    ("https://[::1/x", "bad_host"),
    ("https://[nothex]/x", "bad_host"),
    ("https://app_.-example.com/x", "bad_host"),
    ("https://app.example.com#frag/x", "bad_host"),
    ("https://app.example.com/x?a b", "control_or_space"),
]


@pytest.mark.parametrize(("url", "reason"), BAD_URLS, ids=[u for u, _ in BAD_URLS])
def test_bad_original_urls(url: str, reason: str) -> None:
    with pytest.raises(UrlRejected) as e:
        from_original_url("GET", url)
    assert e.value.reason == reason


def test_the_redirect_url_keeps_what_was_asked_for() -> None:
    r = from_original_url("GET", "HTTPS://App.example.com:443/a//b%20c?x=1&y=2")
    assert r.url == "https://app.example.com/a//b%20c?x=1&y=2"
    assert r.origin == "https://app.example.com"
    assert r.path == "/a/b%20c"


def test_forwarded_and_envoy_styles() -> None:
    r = from_forwarded("post", "HTTPS", "App.example.com:8443", "/x//y?q")
    assert (r.method, r.resource) == ("POST", "https://app.example.com:8443/x/y")
    with pytest.raises(UrlRejected, match="path_not_absolute"):
        from_forwarded("GET", "https", "app.example.com", "x")
    assert from_envoy("GET", None, "app.example.com", "/x").resource == "http://app.example.com/x"
    assert from_envoy("GET", "https", "a.test:443", "/").resource == "https://a.test/"


@pytest.mark.parametrize("method", ["G ET", "GET\r\n", "", "1", "M" * 33, "GÉT"])
def test_bad_methods(method: str) -> None:
    with pytest.raises(UrlRejected, match="bad_method"):
        from_original_url(method, "https://a.test/")


@pytest.mark.parametrize(
    ("pattern", "resource", "matches"),
    [
        ("https://a.test/healthz", "https://a.test/healthz", True),
        ("https://a.test/healthz", "https://a.test/healthz/", False),
        ("https://A.test:443/healthz", "https://a.test/healthz", True),
        ("https://a.test/static/*", "https://a.test/static/", True),
        ("https://a.test/static/*", "https://a.test/static/x/y", True),
        ("https://a.test/static/*", "https://a.test/static", False),
        ("https://a.test/static/*", "https://a.test/staticx", False),
        ("https://a.test*", "https://a.test/x", True),
        ("https://a.test*", "https://a.test.evil/x", False),
        ("https://a.test/*", "http://a.test/x", False),
    ],
)
def test_public_patterns(pattern: str, resource: str, matches: bool) -> None:
    assert public_pattern(pattern).matches(resource) is matches


@pytest.mark.parametrize(
    "pattern",
    [
        "https://a.test/*/x",
        "https://a.test/a%2Fb",
        "https://a.test/?x",
        "https://a.test/a/../public/*",
        "https://a.test/public;x/*",
        "https://a.test/public./*",
    ],
)
def test_bad_public_patterns(pattern: str) -> None:
    with pytest.raises(UrlRejected):
        public_pattern(pattern)


# --- config: the session cookie's domain, [proxy] options ----------------------------------------

BASE = {"providers": {"local": {"type": "local"}}}


def test_cookie_domain_changes_the_prefix_and_sets_the_domain() -> None:
    s = parse_settings(
        {
            **BASE,
            "server": {"public_url": "https://broker.example.com"},
            "session": {"cookie_domain": ".Example.com"},
        },
        base=Path("/nonexistent"),
        env={},
    )
    c = Cookies(s)
    assert c.domain == ".example.com"
    assert c.session == "__Secure-broker_session"
    assert c.login == "__Host-broker_login"
    plain = Cookies(
        parse_settings(
            {**BASE, "server": {"public_url": "https://b.example.com"}},
            base=Path("/nonexistent"),
            env={},
        )
    )
    assert plain.session == "__Host-broker_session"
    assert plain.domain is None


@pytest.mark.parametrize(
    ("domain", "public_url", "problem"),
    [
        (".other.com", "https://broker.example.com", "parent domain"),
        ("exa mple.com", "https://broker.example.com", "must be a domain"),
        ("localhost", "http://localhost:8000", "must be a domain"),
        ("..example.com", "https://broker.example.com", "must be a domain"),
    ],
)
def test_bad_cookie_domains(domain: str, public_url: str, problem: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_settings(
            {**BASE, "server": {"public_url": public_url}, "session": {"cookie_domain": domain}},
            base=Path("/nonexistent"),
            env={},
        )
    assert any(problem in p for p in e.value.problems), e.value.problems


def test_proxy_options() -> None:
    s = parse_settings({**BASE, "proxy": {"assertion_lifetime": "2m"}}, base=Path("/x"), env={})
    assert s.proxy.assertion_lifetime == 120
    with pytest.raises(ConfigError, match="at most 1h"):
        parse_settings({**BASE, "proxy": {"assertion_lifetime": "2h"}}, base=Path("/x"), env={})
    with pytest.raises(ConfigError, match="cannot be normalised"):
        compile_public_routes(["https://a.test/a%2Fb"])
