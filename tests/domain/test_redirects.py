"""The ?rd= table: only relative paths and allowed hosts; every trick falls back to /session."""

from __future__ import annotations

import pytest

from broker.config import RedirectRule
from broker.domain.redirects import safe_redirect

RULES = (
    RedirectRule(host="example.com", subdomains=True, port=None, any_port=False),
    RedirectRule(host="app.internal", subdomains=False, port=8443, any_port=False),
    RedirectRule(host="dev.test", subdomains=False, port=None, any_port=True),
)
OWN = "http://127.0.0.1:8000"

ALLOWED = [
    ("relative", "/dashboard?x=1"),
    ("relative-root", "/"),
    ("subdomain", "https://grafana.example.com/d/abc"),
    ("apex-of-dot-rule", "https://example.com/"),
    ("explicit-default-port", "https://example.com:443/x"),
    ("exact-host-port", "https://app.internal:8443/x"),
    ("any-port", "http://dev.test:3000/"),
    ("own-origin", "http://127.0.0.1:8000/roles"),
    ("upper-case-host", "https://GRAFANA.Example.COM/"),
]

REFUSED = [
    ("empty", ""),
    ("scheme-relative", "//evil.test/"),
    ("backslash", "/\\evil.test"),
    ("backslash-tab", "/\\t/evil.test"),
    ("tab", "/\t/evil.test"),
    ("newline", "/\n/evil.test"),
    ("dot-segments-backslash", "/./../\\evil.test"),
    ("dot-segments", "/a/../../x"),
    ("suffix-attack", "https://example.com.evil.test/"),
    ("lookalike", "https://evilexample.com/"),
    ("wrong-port", "https://example.com:8443/"),
    ("wrong-port-exact-host", "https://app.internal:9443/"),
    ("default-port-not-listed", "https://app.internal/"),
    ("missing-scheme", "grafana.example.com/x"),
    ("javascript", "javascript:alert(1)"),
    ("data", "data:text/html,hi"),
    ("userinfo", "https://example.com@evil.test/"),
    ("userinfo-allowed-host", "https://user@grafana.example.com/"),
    ("nested-rd", "/login?rd=https://evil.test/"),
    ("nested-rd-absolute", "https://grafana.example.com/oauth?rd=https://evil.test"),
    ("ftp", "ftp://example.com/"),
    ("bad-port", "https://example.com:99999/"),
    ("space", "/ /evil"),
    ("triple-slash", "///evil.test"),
    ("own-host-other-port", "http://127.0.0.1:9000/"),
    ("too-long", "/" + "a" * 5000),
    ("nul", "/a\x00b"),
]


@pytest.mark.parametrize(("rd"), [r for _, r in ALLOWED], ids=[i for i, _ in ALLOWED])
def test_allowed(rd: str) -> None:
    assert safe_redirect(rd, own_origin=OWN, rules=RULES) == rd


@pytest.mark.parametrize(("rd"), [r for _, r in REFUSED], ids=[i for i, _ in REFUSED])
def test_refused_falls_back(rd: str) -> None:
    assert safe_redirect(rd, own_origin=OWN, rules=RULES) == "/session"


def test_none_falls_back() -> None:
    assert safe_redirect(None, own_origin=OWN, rules=RULES, fallback="/x") == "/x"
