"""The loopback redirect and user-code rules of the CLI's flows (``broker.domain.cli_oauth``)."""

from __future__ import annotations

import pytest

from broker.domain.cli_oauth import check_client, loopback_port, normalize_user_code
from broker.errors import InvalidRequest


@pytest.mark.parametrize(
    ("uri", "port"),
    [
        ("http://127.0.0.1:53682/callback", 53682),
        ("http://127.0.0.1:1/callback", 1),
        ("http://[::1]:65535/callback", 65535),
    ],
)
def test_loopback_redirects_are_accepted_on_any_port(uri: str, port: int) -> None:
    assert loopback_port(uri) == port


@pytest.mark.parametrize(
    "uri",
    [
        None,
        "",
        "https://127.0.0.1:53682/callback",
        "http://localhost:53682/callback",
        "http://127.0.0.1/callback",
        "http://127.0.0.1:0/callback",
        "http://127.0.0.1:65536/callback",
        "http://127.0.0.1:053682/callback",
        "http://127.0.0.1:53682/callback/",
        "http://127.0.0.1:53682/Callback",
        "http://127.0.0.1:53682/callback?next=https://evil.test",
        "http://127.0.0.1:53682/callback#x",
        "http://127.0.0.1:53682/callback#",
        "http://127.0.0.1:53682/callback?",
        "http://user@127.0.0.1:53682/callback",
        "http://127.0.0.1:53682@evil.test/callback",
        "http://127.0.0.1.evil.test:53682/callback",
        "http://[::1]/callback",
        "http://[::ffff:127.0.0.1]:1/callback",
        "http://127.0.0.1:53682/callback\u00a0",
        "http://127.0.0.1: 53682/callback",
        "//127.0.0.1:53682/callback",
        "http://127.0.0.1:53682/" + "a" * 100,
    ],
)
def test_anything_else_is_refused(uri: str | None) -> None:
    with pytest.raises(InvalidRequest) as e:
        loopback_port(uri)
    assert e.value.reason == "redirect_uri_not_loopback"


def test_only_the_cli_is_a_client() -> None:
    check_client("broker-cli")
    for other in (None, "", "Broker-CLI", "broker-cli "):
        with pytest.raises(InvalidRequest):
            check_client(other)


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("BCDF-GHJK", "BCDFGHJK"),
        ("bcdf ghjk", "BCDFGHJK"),
        ("bcdfghjk", "BCDFGHJK"),
        ("BCDF-GHJA", ""),  # a vowel: never one of ours
        ("BCDF-GHJ", ""),
        ("BCDF-GHJK-L", ""),
        ("", ""),
        ("\u0412CDF-GHJK", ""),
    ],
)
def test_user_codes_ignore_case_and_separators(raw: str, code: str) -> None:
    assert normalize_user_code(raw) == code
