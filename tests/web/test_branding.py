"""Issue 15 item 8: pages people enjoy: ``[ui]`` branding (title, logo, accent colour) checked
by the config, the only local provider's form shown at once, times for people, no placeholders,
the request id only where it helps (error pages), and the same strict CSP with one script."""

from __future__ import annotations

import re
from pathlib import Path

import aiohttp
import pytest

from broker.config import contrast_with_white, load_settings
from broker.errors import ConfigError
from tests.conftest import BrokerFactory, write_config

LOGO = '<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"><rect width="8"/></svg>'


def ui_config(tmp_path: Path, ui: str) -> Path:
    return write_config(tmp_path, port=8000, oidc=None, extra=f"[ui]\n{ui}\n")


def test_contrast_is_wcag_2() -> None:
    assert contrast_with_white("#000000") == pytest.approx(21.0)
    assert contrast_with_white("#ffffff") == pytest.approx(1.0)
    assert contrast_with_white("#2457c5") > 4.5  # the default accent


@pytest.mark.parametrize(
    ("ui", "problem"),
    [
        ('accent = "#ffcc00"', "contrast of 1.5:1"),
        ('accent = "blue"', "must be a colour like '#2457c5'"),
        ('logo = "missing.svg"', "no such file"),
        ('logo = "logo.gif"', "must be an .svg, .png, .jpg or .webp file"),
        ('title = ""', "must be 1-64 printable characters"),
        ('colour = "#000"', "unknown key"),
    ],
)
def test_bad_branding_is_a_clear_config_problem(tmp_path: Path, ui: str, problem: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_settings(ui_config(tmp_path, ui))
    assert any(problem in p and p.startswith("ui.") for p in e.value.problems), e.value.problems


def test_short_accent_and_relative_logo(tmp_path: Path) -> None:
    (tmp_path / "logo.svg").write_text(LOGO)
    s = load_settings(ui_config(tmp_path, 'accent = "#036"\nlogo = "logo.svg"\ntitle = "Corp"'))
    assert s.ui.accent == "#003366"
    assert s.ui.logo == (tmp_path / "logo.svg").resolve()
    assert s.ui.title == "Corp"


async def test_branded_pages(broker_factory: BrokerFactory, tmp_path: Path) -> None:
    (tmp_path / "broker").mkdir()
    (tmp_path / "broker" / "logo.svg").write_text(LOGO)
    b = await broker_factory(
        extra='[ui]\ntitle = "Example Corp"\nlogo = "logo.svg"\naccent = "#0b6e4f"\n'
    )
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{b.url}/login") as r:
            page = await r.text()
            csp = r.headers["Content-Security-Policy"]
        # the only provider is local: its form at once
        assert 'action="/login/local"' in page
        assert "<title>Sign in · Example Corp</title>" in page
        assert '<img src="/ui/logo" alt="">Example Corp' in page
        assert '<script src="/static/broker.js" defer></script>' in page
        assert "script-src 'self'" in csp
        assert "unsafe-inline" not in csp
        assert "<footer>" not in page  # no request id on pages that went well
        async with s.get(f"{b.url}/ui/theme.css") as r:
            assert r.content_type == "text/css"
            assert "--accent: #0b6e4f;" in await r.text()
        async with s.get(f"{b.url}/ui/logo") as r:
            assert r.content_type == "image/svg+xml"
            assert "sandbox" in r.headers["Content-Security-Policy"]
            assert await r.text() == LOGO
        async with s.get(f"{b.url}/static/broker.js") as r:
            assert r.status == 200
        async with s.get(f"{b.url}/no/such/page") as r:
            page = await r.text()
        assert r.status == 404
        assert "quote reference <code>" in page
        assert 'class="button" href="/login">Sign in again' in page


async def test_session_page_shows_times_for_people_and_no_placeholders(
    broker_factory: BrokerFactory,
) -> None:
    from tests.support.login_driver import parse_forms

    b = await broker_factory()
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as s:
        async with s.get(f"{b.url}/login") as r:
            fields = dict(parse_forms(await r.text())[0].fields)
        otp = b.broker.bootstrap_password or ""
        data = {**fields, "username": "admin", "password": otp}
        async with s.post(f"{b.url}/login/local", data=data) as r:
            pw = dict(parse_forms(await r.text())[0].fields)
        new = "a much better password"
        async with s.post(
            f"{b.url}/password", data={**pw, "new_password": new, "confirm": new}
        ) as r:
            assert r.url.path == "/session"
            page = await r.text()
    assert "—" not in page
    assert 'id="email"' not in page  # the local admin has no email: no empty row
    assert "<time datetime=" in page
    assert "data-local>" in page
    assert " UTC</time>" in page
    assert re.search(r'<span class="muted">\(in (\d+ h )?\d+ min\)</span>', page)
