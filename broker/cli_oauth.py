"""The CLI as an OAuth 2.0 public native client of the broker (issue 14, docs/cli.md).

Plain blocking HTTP (urllib): ``broker credentials`` runs once per AWS SDK refresh as a
``credential_process`` and should start fast. Sign-in is the authorization code flow with PKCE
and a loopback redirect (RFC 8252) or the device authorization grant (RFC 8628)."""

from __future__ import annotations

import base64
import http.server
import json
import secrets
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import webbrowser
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from authlib.oauth2.rfc7636 import create_s256_code_challenge

from broker.cli_cache import CLIENT_ID, ClientError, NotSignedIn
from broker.domain import json_input

TIMEOUT = 30  # seconds for one HTTP request
MAX_REPLY_BYTES = 1 << 20  # of a server's JSON answer read at most (a broker's are a few KiB)
LOGIN_WAIT = 600  # seconds the loopback listener waits for the browser
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


@dataclass(frozen=True)
class Reply:
    status: int
    body: dict[str, Any]

    @property
    def error(self) -> str:
        return str(self.body.get("error") or "")

    def describe(self) -> str:
        what = self.body.get("error_description") or self.error or f"HTTP {self.status}"
        return str(what)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer, not an instruction: urllib would follow it with the same
    ``Authorization`` header, to whatever host it names."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirects())


def request(
    method: str,
    url: str,
    *,
    form: dict[str, str] | None = None,
    body: dict[str, Any] | None = None,
    bearer: str | None = None,
) -> Reply:
    headers = {"Accept": "application/json", "User-Agent": "broker-cli"}
    data = None
    if form is not None:
        data = urllib.parse.urlencode(form).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    elif body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if bearer is not None:
        headers["Authorization"] = f"Bearer {bearer}"
    if not url.startswith(("http://", "https://")):  # never file: or another scheme
        raise ClientError(f"{url!r} is not an http(s) URL")
    req = urllib.request.Request(url, data=data, headers=headers, method=method)  # noqa: S310
    try:
        with _OPENER.open(req, timeout=TIMEOUT) as resp:
            status, raw = resp.status, resp.read(MAX_REPLY_BYTES + 1)
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read(MAX_REPLY_BYTES + 1)
        if 300 <= status < 400:
            where = e.headers.get("Location", "elsewhere")
            raise ClientError(
                f"{url} redirected to {where}: not followed (is this the broker's own URL?)"
            ) from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", None) or e
        raise ClientError(f"cannot reach {url}: {reason}") from None
    try:  # the server's answer is outside input: bounded size and depth (json_input)
        parsed = json_input.loads(raw, max_bytes=MAX_REPLY_BYTES) if raw else {}
    except json_input.JsonInputError:
        parsed = None
    if not isinstance(parsed, dict):
        raise ClientError(f"{url} answered HTTP {status} with no JSON object: is it a broker?")
    return Reply(status, parsed)


def credentials_accepted(url: str, creds: dict[str, Any]) -> bool:
    """Whether the broker still accepts role credentials: STS ``GetCallerIdentity`` signed with
    them (SigV4 by botocore, imported here only). A revoked role, a disabled user or an ended
    sign-in make the broker refuse them (4xx); anything else it answers is an error."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    body = "Action=GetCallerIdentity&Version=2011-06-15"
    signed = AWSRequest(
        method="POST",
        url=url + "/",
        data=body,
        headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
    )
    keys = Credentials(creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"])
    SigV4Auth(keys, "sts", "us-east-1").add_auth(signed)
    headers = {k: str(v) for k, v in signed.headers.items()}
    req = urllib.request.Request(url + "/", data=body.encode(), headers=headers, method="POST")  # noqa: S310
    try:
        with _OPENER.open(req, timeout=TIMEOUT) as resp:
            resp.read(MAX_REPLY_BYTES)
            return bool(resp.status == 200)
    except urllib.error.HTTPError as e:
        if 400 <= e.code < 500:
            return False
        raise ClientError(f"{url} could not check the cached credentials: HTTP {e.code}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", None) or e
        raise ClientError(f"cannot reach {url}: {reason}") from None


def discover(url: str) -> dict[str, str]:
    """The endpoints the CLI needs, from the broker's OpenID configuration."""
    where = f"{url}/.well-known/openid-configuration"
    reply = request("GET", where)
    if reply.status != 200:
        raise ClientError(f"{where}: HTTP {reply.status}: is {url} a broker?")
    wanted = ("token_endpoint", "revocation_endpoint")
    found = {
        k: reply.body.get(k)
        for k in (*wanted, "authorization_endpoint", "device_authorization_endpoint")
    }
    missing = [k for k in wanted if not isinstance(found[k], str)]
    if missing:
        raise ClientError(f"{where} names no {', '.join(missing)}: is {url} a broker?")
    return {k: v for k, v in found.items() if isinstance(v, str)}


def _need(endpoints: dict[str, str], name: str, url: str) -> str:
    if name not in endpoints:
        raise ClientError(f"{url} does not offer {name.replace('_', ' ')} (a newer broker does)")
    return endpoints[name]


def tokens_from(reply: Reply, now: float) -> dict[str, Any]:
    b = reply.body
    if not isinstance(b.get("access_token"), str) or not isinstance(b.get("refresh_token"), str):
        raise ClientError("the broker's token response has no access_token or refresh_token")
    expires_in = b.get("expires_in")
    lifetime = float(expires_in) if isinstance(expires_in, int | float) else 300.0
    return {
        "access_token": b["access_token"],
        "refresh_token": b["refresh_token"],
        "expires_at": now + lifetime,
    }


# --- authorization code + PKCE with a loopback redirect ------------------------------------------


class _Callback(http.server.BaseHTTPRequestHandler):
    """Answers ``GET /callback?...`` once with the right ``state``; the result goes to the
    server object. Other requests (a wrong state: another page poking the port) are refused and
    the wait goes on."""

    server: _LoopbackServer

    def do_GET(self) -> None:
        parts = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(parts.query))
        if parts.path != "/callback":
            self._page(404, "Not found.")
        elif not secrets.compare_digest(query.get("state", ""), self.server.state):
            self._page(400, "This sign-in response is not the one the broker CLI is waiting for.")
        else:
            ok = "code" in query and "error" not in query
            self._page(
                200 if ok else 400,
                "Signed in: you can close this window and return to the terminal."
                if ok
                else "The sign-in was not completed; see the terminal.",
            )
            self.server.result = query
            self.server.done.set()

    def _page(self, status: int, text: str) -> None:
        body = (
            f"<!doctype html><meta charset=utf-8><title>broker CLI</title><p>{text}</p>"
        ).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return  # the query holds the code: not for the terminal


class _LoopbackServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: str) -> None:
        super().__init__(("127.0.0.1", 0), _Callback)
        self.state = state
        self.result: dict[str, str] | None = None
        self.done = threading.Event()


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)  # 64 characters of [A-Za-z0-9_-] (RFC 7636 §4.1)
    return verifier, create_s256_code_challenge(verifier)


def login_loopback(
    url: str,
    endpoints: dict[str, str],
    *,
    open_browser: bool,
    say: Callable[[str], None],
    wait: float = LOGIN_WAIT,
) -> Reply:
    authorize = _need(endpoints, "authorization_endpoint", url)
    verifier, challenge = pkce_pair()
    state = secrets.token_urlsafe(32)
    server = _LoopbackServer(state)
    redirect_uri = f"http://127.0.0.1:{server.server_address[1]}/callback"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        query = urllib.parse.urlencode(
            {
                "response_type": "code",
                "client_id": CLIENT_ID,
                "redirect_uri": redirect_uri,
                "code_challenge": challenge,
                "code_challenge_method": "S256",
                "state": state,
                "scope": "openid",
            }
        )
        link = f"{authorize}?{query}"
        if open_browser and webbrowser.open(link):
            say(f"Opened the browser to sign in to {url}. If it did not open, visit:\n{link}")
        else:
            say(f"To sign in to {url}, open this URL in a browser on this computer:\n{link}")
        if not server.done.wait(wait):
            raise ClientError(f"no sign-in came back from the browser within {int(wait)} s")
    finally:
        server.shutdown()
        server.server_close()
    result = server.result or {}
    if "error" in result:
        if result["error"] == "access_denied":
            raise ClientError("the sign-in was denied in the browser")
        raise ClientError(
            f"the sign-in failed: {result.get('error_description') or result['error']}"
        )
    return request(
        "POST",
        endpoints["token_endpoint"],
        form={
            "grant_type": "authorization_code",
            "code": result["code"],
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
            "client_id": CLIENT_ID,
        },
    )


# --- device authorization grant ------------------------------------------------------------------


def login_device(
    url: str,
    endpoints: dict[str, str],
    *,
    say: Callable[[str], None],
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Reply:
    device = _need(endpoints, "device_authorization_endpoint", url)
    start = request("POST", device, form={"client_id": CLIENT_ID, "scope": "openid"})
    b = start.body
    if start.status != 200 or not isinstance(b.get("device_code"), str):
        raise ClientError(f"{device} refused the device sign-in: {start.describe()}")
    interval = float(b.get("interval") or 5)
    deadline = clock() + float(b.get("expires_in") or 600)
    complete = b.get("verification_uri_complete")
    say(
        f"To sign in to {url}, open {b.get('verification_uri')} in a browser on any device "
        f"and enter the code {b.get('user_code')}" + (f"\n(or open {complete})" if complete else "")
    )
    while True:
        sleep(interval)
        if clock() >= deadline:
            raise ClientError(
                "the code expired before it was approved: run `broker login "
                f"--url {url} --device` again"
            )
        reply = request(
            "POST",
            endpoints["token_endpoint"],
            form={
                "grant_type": DEVICE_GRANT,
                "device_code": b["device_code"],
                "client_id": CLIENT_ID,
            },
        )
        if reply.status == 200:
            return reply
        if reply.error == "authorization_pending":
            continue
        if reply.error == "slow_down":
            interval += 5  # RFC 8628 §3.5: for this and every later request
            continue
        if reply.error == "expired_token":
            raise ClientError(
                "the code expired before it was approved: run `broker login "
                f"--url {url} --device` again"
            )
        if reply.error == "access_denied":
            raise ClientError("the sign-in was denied in the browser")
        raise ClientError(f"the device sign-in failed: {reply.describe()}")


# --- the signed-in session ------------------------------------------------------------------------


def refresh(url: str, endpoints: dict[str, str], refresh_token: str, now: float) -> dict[str, Any]:
    reply = request(
        "POST",
        endpoints["token_endpoint"],
        form={
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": CLIENT_ID,
        },
    )
    if reply.status == 200:
        return tokens_from(reply, now)
    if reply.status in (400, 401) and reply.error in (
        "invalid_grant",
        "invalid_token",
        "invalid_client",
        "unauthorized_client",
    ):
        raise NotSignedIn(url)
    raise ClientError(f"{url} could not refresh the sign-in: {reply.describe()}")


def revoke(endpoints: dict[str, str], token: str) -> Reply:
    return request(
        "POST",
        endpoints["revocation_endpoint"],
        form={"token": token, "token_type_hint": "refresh_token", "client_id": CLIENT_ID},
    )


def claims(access_token: str) -> dict[str, Any]:
    """The access token's claims, unverified: only to tell the user who they signed in as."""
    try:
        payload = access_token.split(".")[1]
        raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        data = json_input.loads(raw, max_bytes=MAX_REPLY_BYTES)
    except (IndexError, ValueError):  # json_input.JsonInputError is a ValueError
        return {}
    return data if isinstance(data, dict) else {}


def stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
