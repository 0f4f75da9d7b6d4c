"""docs/envoy.md's ``ext_authz`` configuration against a running broker. Envoy itself is not
packaged for this platform, so the test does what that configuration makes Envoy do (v3
``ExtAuthz`` with an ``http_service``, as its documentation specifies):

- ``header_mutation`` first removes the request headers it lists;
- the check request has the original method, ``path_prefix`` + the original path and query,
  the original ``Host``, and only the headers ``authorization_request.allowed_headers`` matches
  (plus ``Content-Length``, which Envoy always sends);
- on a 200, the answer's headers that ``allowed_upstream_headers`` matches are set on the
  request to the app; on anything else, the client gets the broker's status, body and the
  headers ``allowed_client_headers`` matches.

The test reads every one of those lists from the page's YAML, so a change to the page is a
change to what is tested."""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
import yaml
from yarl import URL

from broker.service.forward_auth import IDENTITY_HEADERS
from tests.conftest import RunningBroker
from tests.forward_auth.conftest import VIEWER, BrokerStarter, session_token
from tests.support.doc_snippets import blocks

PAGE = "docs/envoy.md"
SECTION = "Envoy (v3 API; `header_mutation` needs Envoy 1.27 or later)"


def envoy_config() -> dict[str, Any]:
    first = blocks(PAGE, "yaml", section=SECTION)[0]
    doc: dict[str, Any] = yaml.safe_load(first)
    return doc


def http_filter(doc: dict[str, Any], name: str) -> dict[str, Any]:
    [f] = [f for f in doc["http_filters"] if f["name"] == name]
    config: dict[str, Any] = f["typed_config"]
    return config


def exact(patterns: dict[str, Any]) -> set[str]:
    """The header names of a ``ListStringMatcher`` (the page uses ``exact`` matchers only)."""
    found = set()
    for p in patterns["patterns"]:
        assert set(p) == {"exact"}, f"a matcher the test does not model: {p}"
        found.add(p["exact"])
    return found


DOC = envoy_config()
EXT_AUTHZ = http_filter(DOC, "envoy.filters.http.ext_authz")
SERVICE = EXT_AUTHZ["http_service"]
REMOVED = {
    m["remove"]
    for m in http_filter(DOC, "envoy.filters.http.header_mutation")["mutations"][
        "request_mutations"
    ]
}
ALLOWED = exact(SERVICE["authorization_request"]["allowed_headers"])
UPSTREAM = exact(SERVICE["authorization_response"]["allowed_upstream_headers"])
CLIENT = exact(SERVICE["authorization_response"]["allowed_client_headers"])


def test_the_page_points_ext_authz_at_the_brokers_forward_auth_path() -> None:
    assert SERVICE["path_prefix"] == "/auth"
    assert EXT_AUTHZ["failure_mode_allow"] is False
    assert SERVICE["server_uri"]["uri"] == "http://127.0.0.1:8000"  # the default listen
    [cluster] = DOC["clusters"]
    assert cluster["name"] == SERVICE["server_uri"]["cluster"]
    [endpoint] = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
    assert endpoint["endpoint"]["address"]["socket_address"]["port_value"] == 8000
    # the identity headers the app receives are stripped from what a client sends
    assert {h.lower() for h in IDENTITY_HEADERS} <= REMOVED
    # and so are the headers the broker reads the original request from
    assert {"x-original-url", "x-original-method", "x-forwarded-uri", "x-forwarded-method"} <= (
        REMOVED
    )


@pytest.fixture
async def b(start_broker: BrokerStarter) -> RunningBroker:
    return await start_broker(
        access={"viewer": VIEWER}, public=("https://app.example.com/healthz",)
    )


async def through_envoy(
    b: RunningBroker, method: str, host: str, path_qs: str, headers: Mapping[str, str]
) -> tuple[int, dict[str, str], str]:
    """The check request Envoy makes for a client's request, and the broker's answer."""
    sent = {k.lower(): v for k, v in headers.items()}
    sent = {k: v for k, v in sent.items() if k not in REMOVED}  # header_mutation
    check = {k: v for k, v in sent.items() if k in ALLOWED}
    check.update({"host": host, "content-length": "0"})
    async with (
        aiohttp.ClientSession(skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding")) as s,
        s.request(
            method,
            URL(b.url + SERVICE["path_prefix"] + path_qs, encoded=True),
            headers=check,
            allow_redirects=False,
        ) as r,
    ):
        return r.status, {k.lower(): v for k, v in r.headers.items()}, await r.text()


def client_request(**extra: str) -> dict[str, str]:
    """What a browser sends, and the proto Envoy sets, plus whatever a client adds."""
    return {
        "User-Agent": "Mozilla/5.0",
        "Accept": "text/html",
        "X-Forwarded-Proto": "https",
        **extra,
    }


async def test_allowed_the_app_gets_exactly_the_identity_headers(b: RunningBroker) -> None:
    token = await session_token(b, "viewer")
    code, headers, _ = await through_envoy(
        b,
        "GET",
        "app.example.com",
        "/dashboards?orgId=1",
        client_request(Cookie=f"broker_session={token}"),
    )
    assert code == 200
    identity = {k for k in headers if k.startswith("x-auth-request-")}
    assert identity == UPSTREAM == {h.lower() for h in IDENTITY_HEADERS}
    upstream = {k: v for k, v in headers.items() if k in UPSTREAM}
    assert upstream["x-auth-request-user"] == "corp/bob"
    assert upstream["x-auth-request-role"] == "arn:broker:iam::000000000000:role/viewer"
    assert all(upstream.values())

    # a bearer token through the allowed Authorization header, the same
    code, headers, _ = await through_envoy(
        b,
        "GET",
        "app.example.com",
        "/x",
        client_request(Authorization=f"Bearer {token}"),
    )
    assert code == 200
    assert headers["x-auth-request-user"] == "corp/bob"

    # a public route: the same headers, present and empty
    code, headers, _ = await through_envoy(
        b, "GET", "app.example.com", "/healthz", client_request()
    )
    assert code == 200
    assert {k: v for k, v in headers.items() if k.startswith("x-auth-request-")} == dict.fromkeys(
        UPSTREAM, ""
    )


async def test_spoofed_identity_and_original_url_headers_change_nothing(
    b: RunningBroker,
) -> None:
    """A client that sends the broker's identity headers or an original URL of its own: Envoy
    drops them before the check, and the broker decides on the real path (and the app's
    headers are the broker's)."""
    token = await session_token(b, "viewer")
    spoof = client_request(
        Cookie=f"broker_session={token}",
        **{
            "X-Auth-Request-User": "corp/admin",
            "X-Original-URL": "https://app.example.com/dashboards",
            "X-Forwarded-Uri": "/dashboards",
        },
    )
    code, headers, _ = await through_envoy(b, "GET", "app.example.com", "/admin/users", spoof)
    assert code == 403
    assert not UPSTREAM & set(headers)
    code, headers, _ = await through_envoy(b, "GET", "app.example.com", "/ok", spoof)
    assert code == 200
    assert headers["x-auth-request-user"] == "corp/bob"


async def test_denied_answers_are_what_the_page_says(b: RunningBroker) -> None:
    """401 without a session: an HTML page that refreshes to the login, and ``Location``, both
    in what Envoy passes to the client; 403 when the role may not; never identity headers."""
    code, headers, body = await through_envoy(
        b, "GET", "app.example.com", "/dashboards?orgId=1", client_request()
    )
    assert code == 401
    login = f"{b.url}/login?rd=" + quote("https://app.example.com/dashboards?orgId=1", safe="")
    to_client = {k: v for k, v in headers.items() if k in CLIENT}
    assert set(to_client) == CLIENT  # location, x-auth-request-redirect, content-type
    assert to_client["location"] == to_client["x-auth-request-redirect"] == login
    assert to_client["content-type"].startswith("text/html")
    refresh = re.search(r'http-equiv="refresh" content="0;url=([^"]+)"', body)
    assert refresh, body
    assert html.unescape(refresh.group(1)) == login
    assert not UPSTREAM & set(headers)

    token = await session_token(b, "viewer")
    code, headers, _ = await through_envoy(
        b,
        "DELETE",
        "api.example.com:8443",
        "/v1/x",
        client_request(Cookie=f"broker_session={token}"),
    )
    assert code == 403  # the role may only GET there: Envoy sends the original method
    assert not UPSTREAM & set(headers)
