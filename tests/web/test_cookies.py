"""Cookie attributes: HttpOnly and SameSite=Lax always; Secure and __Host- on https."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import web

from broker.config import parse_settings
from broker.web.cookies import Cookies


@pytest.mark.parametrize(
    ("public_url", "name", "secure"),
    [
        ("http://127.0.0.1:8000", "broker_session", False),
        ("https://broker.example.com", "__Host-broker_session", True),
    ],
    ids=["http", "https"],
)
def test_session_cookie_attributes(
    public_url: str, name: str, secure: bool, tmp_path: Path
) -> None:
    settings = parse_settings(
        {"server": {"public_url": public_url}, "providers": {"local": {"type": "local"}}},
        base=tmp_path,
    )
    c = Cookies(settings)
    assert c.session == name
    resp = web.Response()
    c.set(resp, c.session, "v", max_age=60)
    morsel = resp.cookies[name]
    assert morsel["httponly"] is True
    assert morsel["samesite"] == "Lax"
    assert morsel["path"] == "/"
    assert not morsel["domain"]
    assert bool(morsel["secure"]) is secure
