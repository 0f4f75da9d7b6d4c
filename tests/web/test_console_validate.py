"""``POST /console/validate`` (the policy editor's live validator) without a browser: who may
call it, and its bounds: every nasty body is a clear 4xx or a finding, never a 5xx."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.conftest import RunningBroker
from tests.e2e.console.conftest import PASSWORD, console_broker  # noqa: F401 (a fixture)
from tests.support.login_driver import parse_forms

STAR = '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}'


@pytest.fixture
async def ada(console_broker: RunningBroker) -> AsyncIterator[tuple[aiohttp.ClientSession, str]]:  # noqa: F811
    """A client signed in as ada (console-admin) and the console's CSRF token."""
    url = console_broker.url
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        async with s.get(f"{url}/login/local") as r:
            data = dict(parse_forms(await r.text())[0].fields)
        data.update(username="ada", password=PASSWORD)
        async with s.post(f"{url}/login/local", data=data, headers={"Origin": url}) as r:
            assert r.status == 200, await r.text()
        async with s.get(f"{url}/console/policies/new") as r:
            page = await r.text()
            assert r.status == 200, page
        # the console form's token (the sign-out form's comes first, for another purpose)
        m = re.search(r'name="csrf" value="([0-9a-f]+)">\s*<input type="hidden" name="nonce"', page)
        assert m
        yield s, m.group(1)


async def post(
    s: aiohttp.ClientSession,
    url: str,
    body: bytes | dict[str, str],
    csrf: str | None,
    **headers: str,
) -> tuple[int, Any]:
    h = {"Accept": "application/json", "Origin": url, **headers}
    if csrf is not None:
        h["X-CSRF-Token"] = csrf
    if isinstance(body, bytes):
        h["Content-Type"] = "application/x-www-form-urlencoded"
    async with s.post(f"{url}/console/validate", data=body, headers=h, allow_redirects=False) as r:
        if r.content_type == "application/json":
            return r.status, await r.json()
        return r.status, await r.text()


async def test_findings_and_size(
    console_broker: RunningBroker,  # noqa: F811
    ada: tuple[aiohttp.ClientSession, str],
) -> None:
    s, csrf = ada
    url = console_broker.url
    status, body = await post(s, url, {"document": STAR, "kind": "identity"}, csrf)
    assert status == 200, body
    assert isinstance(body, dict)
    assert body["ok"] is True
    assert [w["code"] for w in body["warnings"]] == ["STAR_ACTION_ON_STAR_RESOURCE"]
    assert body["limit"] == 6144
    assert body["size"] == len(STAR)
    maybe = STAR.replace('"Allow"', '"Maybe"')
    status, body = await post(s, url, {"document": maybe}, csrf)
    assert status == 200
    assert isinstance(body, dict)
    assert body["ok"] is False
    assert any(e["path"].startswith("Statement[0]") for e in body["errors"])
    # trust policies: the role's limit
    status, body = await post(s, url, {"document": STAR, "kind": "resource"}, csrf)
    assert status == 200
    assert isinstance(body, dict)
    assert body["limit"] == 4096
    # too large: the validator says so with the service's count
    actions = ",".join(f'"s3:Get{i:05d}"' for i in range(600))
    big = STAR.replace('"Action":"*"', f'"Action":[{actions}]')
    status, body = await post(s, url, {"document": big}, csrf)
    assert isinstance(body, dict)
    assert body["size"] > 6144
    assert [e["code"] for e in body["errors"]] == ["POLICY_TOO_LARGE"]


async def test_callers_refused(
    console_broker: RunningBroker,  # noqa: F811
    ada: tuple[aiohttp.ClientSession, str],
) -> None:
    s, csrf = ada
    url = console_broker.url
    form = {"document": STAR}
    # no CSRF header (a cross-site form post cannot set one), a wrong one, a foreign origin
    assert (await post(s, url, form, None))[0] == 403
    assert (await post(s, url, form, "0" * 64))[0] == 403
    assert (await post(s, url, form, csrf, Origin="https://evil.example"))[0] == 403
    # not signed in: sent to sign in, nothing validated
    async with aiohttp.ClientSession() as anon:
        status, _ = await post(anon, url, form, csrf)
        assert status == 303


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"document=" + b"a" * (64 * 1024 + 1), 413),  # over the bound
        (b"document=%ff%fe&kind=identity", 400),  # percent-encoded bytes that are not UTF-8
        (b"document=\xff\xfe", 400),  # raw bytes that are not UTF-8
        (b"document=%ED%A0%80", 400),  # an encoded surrogate
        (b"kind=trust&document=%7B%7D", 400),  # an unknown kind
        (b"document=a&document=b", 400),  # a field twice
        (b"&".join([b"a=1"] * 50), 400),  # many fields
    ],
)
async def test_bad_bodies_are_4xx(
    console_broker: RunningBroker,  # noqa: F811
    ada: tuple[aiohttp.ClientSession, str],
    body: bytes,
    status: int,
) -> None:
    s, csrf = ada
    got, answer = await post(s, console_broker.url, body, csrf)
    assert got == status, answer


@pytest.mark.parametrize(
    "document",
    [
        "[" * 20000,  # deep nesting (percent-encoded: 60 kB)
        '{"a":' * 3000 + "1" + "}" * 3000,
        '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*",'
        '"Condition":{"NumericLessThan":{"aws:x":1e99999999}}}]}',  # a huge number
        "9" * 50000,  # a huge integer
        "",
        "\x00\u202e\ufeff",
    ],
)
async def test_nasty_documents_are_findings(
    console_broker: RunningBroker,  # noqa: F811
    ada: tuple[aiohttp.ClientSession, str],
    document: str,
) -> None:
    s, csrf = ada
    status, body = await post(s, console_broker.url, {"document": document}, csrf)
    assert status == 200, body
    assert isinstance(body, dict)
    assert body["ok"] is False
    assert body["errors"]
