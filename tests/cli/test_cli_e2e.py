"""docs/cli.md end to end, as written, against the real broker and the real oidc-provider:
``broker login`` with the loopback redirect (the test plays the browser with an aiohttp client
through the provider's sign-in and the broker's confirmation page) and with ``--device`` (real
Chromium enters the code), then the real AWS CLI and boto3 through ``credential_process``,
refreshes, parallel calls, and the end of the session at the server."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

import aiohttp
import pytest

from tests.conftest import BrokerFactory, RunningBroker
from tests.e2e.conftest import TOKYO, in_tokyo
from tests.e2e.test_browser_login import provider_sign_in
from tests.sts.conftest import aws_env
from tests.support.cli_client import cli_env, run_cli
from tests.support.doc_snippets import blocks, runs
from tests.support.login_driver import follow_login, parse_forms
from tests.support.oidc_server import OidcServer

if TYPE_CHECKING:
    from playwright.async_api import Page

pytestmark = pytest.mark.oidc

PAGE = "docs/cli.md"
BIN = str(Path(sys.executable).parent)  # the venv's `broker` and `aws` scripts
AUTHORIZE = r"(http://127\.0\.0\.1:\d+/oauth2/authorize\?\S+)"


@pytest.fixture
async def b(broker_factory: BrokerFactory, oidc_server: OidcServer) -> RunningBroker:
    return await broker_factory(oidc=oidc_server)


def shell_env(b: RunningBroker, home: Path, **extra: str) -> dict[str, str]:
    """A person's shell: the venv's ``broker`` and ``aws`` on PATH, an AWS config that reads
    nothing of the machine's (tests/sts/conftest.py aws_env), a cache of its own."""
    env = aws_env(home.parent, **cli_env(home, BROKER=b.url, **extra))
    env.update(HOME=str(home), AWS_DEFAULT_OUTPUT="json")
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


async def start_bash(script: str, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        "bash",
        "-euo",
        "pipefail",
        "-c",
        script,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def bash(script: str, env: dict[str, str]) -> str:
    proc = await start_bash(script, env)
    out, err = await asyncio.wait_for(proc.communicate(), 240)
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def read_until(stream: asyncio.StreamReader, pattern: str, seen: list[str]) -> str:
    while True:
        raw = await asyncio.wait_for(stream.readline(), 60)
        assert raw, f"the CLI ended before printing {pattern!r}: {seen}"
        seen.append(raw.decode())
        m = re.search(pattern, seen[-1])
        if m:
            return m.group(1)


async def approve_in_browser(
    b: RunningBroker, oidc: OidcServer, link: str, user: str = "alice"
) -> str:
    """Play the browser of the loopback flow: the authorize URL sends an anonymous browser to
    sign in, the provider signs alice in, the broker asks for confirmation, approving sends the
    browser to the CLI's loopback port. Returns the page the CLI served there."""
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as browser:
        async with browser.get(link, allow_redirects=False) as resp:
            assert resp.status == 303
            login = urljoin(b.url, resp.headers["Location"])
        assert "/login?rd=" in login
        rd = login.split("rd=", 1)[1]
        result = await follow_login(
            browser,
            f"{b.url}/login/corp?rd={rd}",
            username=user,
            password=oidc.accounts[user],
        )
        assert result.status == 200
        text, url = result.text, result.url
        chooser = [f for f in parse_forms(text) if f.action == "/roles"]
        if chooser:  # alice may take two roles: the browser session takes one, then goes on
            data = [*chooser[0].fields, ("role", "dev")]
            async with browser.post(urljoin(url, "/roles"), data=data) as resp:
                text, url = await resp.text(), str(resp.url)
        assert "Sign in the broker CLI on this computer as" in text
        [form] = [f for f in parse_forms(text) if f.action == "/oauth2/authorize"]
        data = [*form.fields, ("decision", "approve")]
        async with browser.post(
            urljoin(url, form.action), data=data, allow_redirects=False
        ) as resp:
            assert resp.status == 303, await resp.text()
            callback = resp.headers["Location"]
        assert callback.startswith("http://127.0.0.1:")
        async with browser.get(callback) as resp:
            assert resp.status == 200
            return await resp.text()


async def login(b: RunningBroker, oidc: OidcServer, env: dict[str, str]) -> str:
    """The documented ``broker login --no-browser``, driven to its end."""
    [script] = blocks(PAGE, "sh", containing="--no-browser")
    proc = await start_bash(script, env)
    assert proc.stderr is not None
    seen: list[str] = []
    link = await read_until(proc.stderr, AUTHORIZE, seen)
    page = await approve_in_browser(b, oidc, link)
    assert "you can close this window" in page
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, "".join(seen) + err.decode()
    return out.decode()


def json_documents(text: str, n: int) -> list[Any]:
    """The first ``n`` JSON documents printed one after the other, then the rest of the text."""
    found: list[Any] = []
    for _ in range(n):
        text = text.lstrip()
        doc, end = json.JSONDecoder().raw_decode(text)
        found.append(doc)
        text = text[end:]
    return [*found, text]


def cache_path(env: dict[str, str]) -> Path:
    [path] = (Path(env["XDG_CONFIG_HOME"]) / "broker").glob("*.json")
    return path


async def refreshes(b: RunningBroker) -> int:
    await b.broker.auditor.flush()
    events = await b.broker.store.list_audit(limit=100, action="cli.token.refresh_token")
    return sum(1 for e in events if e.outcome == "success")


@runs(PAGE, "sh", containing="--no-browser")
@runs(PAGE, "sh", section="Use it")
async def test_login_then_roles_credentials_exec_token_logout(
    b: RunningBroker, oidc_server: OidcServer, tmp_path: Path
) -> None:
    env = shell_env(b, tmp_path / "home")
    out = await login(b, oidc_server, env)
    assert out.startswith(f"signed in to {b.url} as ")
    path = cache_path(env)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert oct(path.parent.stat().st_mode & 0o777) == "0o700"

    [use] = blocks(PAGE, "sh", section="Use it")
    out = await bash(use, env)
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "DESCRIPTION"]
    assert {line.split()[0] for line in lines[1:3]} == {"admin", "dev"}
    creds, identity, roles, rest = json_documents(out[out.index("{") :], 3)
    assert sorted(creds) == sorted(
        ["Version", "AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration"]
    )
    assert ":assumed-role/dev/" in identity["Arn"]
    assert {r["name"] for r in roles["roles"]} == {"admin", "dev"}
    assert rest.strip() == f"signed out of {b.url}"
    assert not path.exists()
    # signed out at the server too: the revoked CLI session's credentials are refused
    cfg = tmp_path / "aws-config"
    cfg.write_text("")
    aws = aws_env(
        tmp_path,
        AWS_CONFIG_FILE=str(cfg),
        AWS_ACCESS_KEY_ID=creds["AccessKeyId"],
        AWS_SECRET_ACCESS_KEY=creds["SecretAccessKey"],
        AWS_SESSION_TOKEN=creds["SessionToken"],
    )
    proc = await asyncio.create_subprocess_exec(
        f"{BIN}/aws",
        "sts",
        "get-caller-identity",
        "--endpoint-url",
        b.url,
        env=aws,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    assert proc.returncode != 0, "credentials of a logged-out CLI session still work"
    assert "(InvalidClientTokenId)" in err.decode()


def aws_profile_env(b: RunningBroker, tmp_path: Path, env: dict[str, str]) -> dict[str, str]:
    """``~/.aws/config`` as docs/cli.md shows it, for this broker's URL."""
    [ini] = blocks(PAGE, "ini", section="The AWS CLI and SDKs: `credential_process`")
    config = tmp_path / "aws-config"
    config.write_text(ini.replace("http://127.0.0.1:8000", b.url))
    keep = {k: env[k] for k in ("XDG_CONFIG_HOME", "PATH", "PYTHONPATH", "BROKER")}
    return aws_env(tmp_path, AWS_CONFIG_FILE=str(config), **keep)


async def cached_key(env: dict[str, str]) -> str:
    return str(json.loads(cache_path(env).read_text())["roles"]["dev"]["AccessKeyId"])


def age_cache(env: dict[str, str], *, role_left: float, access_expired: bool) -> None:
    """Time passes for the cache: the role credentials have ``role_left`` seconds left (less
    than the 5-minute margin: the next call fetches new ones), and the access token expired
    (the next call refreshes it with the refresh token at the real broker). The CLI's clock is
    the real one, so the cache is aged rather than the clock moved."""
    path = cache_path(env)
    data = json.loads(path.read_text())
    when = datetime.fromtimestamp(time.time() + role_left, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    for creds in data.get("roles", {}).values():
        creds["Expiration"] = when
    if access_expired:
        data["expires_at"] = 0
    path.write_text(json.dumps(data))


@runs(PAGE, "sh", section="The AWS CLI and SDKs: `credential_process`")
@runs(PAGE, "python", section="The AWS CLI and SDKs: `credential_process`")
async def test_the_aws_cli_and_boto3_with_credential_process_refresh_on_their_own(
    b: RunningBroker, oidc_server: OidcServer, tmp_path: Path
) -> None:
    env = shell_env(b, tmp_path / "home")
    await login(b, oidc_server, env)
    aws = aws_profile_env(b, tmp_path, env)
    [cli] = blocks(PAGE, "sh", section="The AWS CLI and SDKs: `credential_process`")
    [program] = blocks(PAGE, "python", section="The AWS CLI and SDKs: `credential_process`")

    identity = json.loads(await bash(cli, aws))
    assert ":assumed-role/dev/" in identity["Arn"]
    first = await cached_key(env)
    assert (await bash(f"python3 - <<'EOF'\n{program}EOF\n", aws)).strip() == identity["Arn"]
    assert await cached_key(env) == first  # boto3 was given the cached credentials
    assert await refreshes(b) == 0

    age_cache(env, role_left=60, access_expired=True)
    again = json.loads(await bash(cli, aws))
    assert ":assumed-role/dev/" in again["Arn"]
    assert await cached_key(env) != first  # new credentials, with a refreshed access token
    assert await refreshes(b) == 1


async def test_two_parallel_credential_process_calls_refresh_once(
    b: RunningBroker, oidc_server: OidcServer, tmp_path: Path
) -> None:
    env = shell_env(b, tmp_path / "home")
    await login(b, oidc_server, env)
    age_cache(env, role_left=0, access_expired=True)
    a, c = await asyncio.gather(
        run_cli(env, "credentials", "--role", "dev", "--url", b.url),
        run_cli(env, "credentials", "--role", "dev", "--url", b.url),
    )
    assert (a.code, c.code) == (0, 0), (a.stderr, c.stderr)
    assert a.json() == c.json()  # one fetch: the second caller used what the first stored
    assert await refreshes(b) == 1


async def test_cached_credentials_of_a_revoked_role_are_never_handed_out(
    b: RunningBroker, oidc_server: OidcServer, tmp_path: Path
) -> None:
    """``broker admin roles revoke-sessions dev`` ends the cached role credentials at the
    broker: the next ``broker credentials`` fetches new ones rather than handing out the dead
    ones until they expire (the AWS CLI would fail with them for up to an hour)."""
    env = shell_env(b, tmp_path / "home")
    await login(b, oidc_server, env)
    aws = aws_profile_env(b, tmp_path, env)
    [cli] = blocks(PAGE, "sh", section="The AWS CLI and SDKs: `credential_process`")
    assert ":assumed-role/dev/" in json.loads(await bash(cli, aws))["Arn"]
    first = await cached_key(env)
    assert ":assumed-role/dev/" in json.loads(await bash(cli, aws))["Arn"]
    assert await cached_key(env) == first  # while they are accepted: from the cache

    await b.broker.offboarding.revoke_role_sessions("dev", actor="test", reason="rotated")
    run = await run_cli(env, "credentials", "--role", "dev", "--url", b.url)
    # The sign-in is not the role's (a CLI session takes roles, it is none): new credentials.
    assert run.code == 0, run.stderr
    assert run.json()["AccessKeyId"] != first
    assert await cached_key(env) == run.json()["AccessKeyId"]
    assert ":assumed-role/dev/" in json.loads(await bash(cli, aws))["Arn"]


async def test_the_end_of_the_session_at_the_server_and_a_readable_cache(
    b: RunningBroker, oidc_server: OidcServer, tmp_path: Path
) -> None:
    env = shell_env(b, tmp_path / "home")
    await login(b, oidc_server, env)
    # role credentials in the cache: after the end at the server they are not handed out
    assert (await run_cli(env, "credentials", "--role", "dev", "--url", b.url)).code == 0
    path = cache_path(env)
    kept = path.read_bytes()
    assert b'"roles"' in kept
    # the session ends at the server (here: logged out from a copy of this cache)
    assert (await run_cli(env, "logout")).code == 0
    path.write_bytes(kept)
    path.chmod(0o600)
    run = await run_cli(env, "credentials", "--role", "dev", "--url", b.url)
    assert run.code == 1
    assert run.stdout == ""
    assert run.stderr == f"broker: not signed in to {b.url}: run `broker login --url {b.url}`\n"

    await login(b, oidc_server, env)
    cache_path(env).chmod(0o644)
    run = await run_cli(env, "credentials", "--role", "dev", "--url", b.url)
    assert run.code == 1
    assert "the cache file is accessible by group or others (mode 644)" in run.stderr


@runs(PAGE, "sh", section="Headless hosts: `--device`")
@pytest.mark.browser
@pytest.mark.browser_context(**TOKYO)
async def test_device_login_with_the_code_entered_in_chromium(
    b: RunningBroker, oidc_server: OidcServer, tmp_path: Path, page: Page
) -> None:
    env = shell_env(b, tmp_path / "home")
    [script] = blocks(PAGE, "sh", section="Headless hosts: `--device`")
    proc = await start_bash(script, env)
    assert proc.stderr is not None
    seen: list[str] = []
    verification = await read_until(proc.stderr, r"open (http://\S+/device) in a browser", seen)
    code = re.search(r"enter the code ([A-Z]{4}-[A-Z]{4})", "".join(seen))
    assert code, seen
    # on another device: the URL asks alice to sign in first, then for the code
    await page.goto(verification)
    await page.click("#provider-corp")
    await provider_sign_in(page, oidc_server, "corp", "alice")
    await page.wait_for_url(f"{b.url}/roles")
    await page.click("#role-dev")
    await page.wait_for_url(f"{b.url}/device")
    await page.fill("#user_code", code.group(1))
    await page.click("#continue")
    assert (await page.text_content("#user-code")) == code.group(1)
    assert (await page.text_content("#origin-ip")) == "127.0.0.1"
    # when it was asked for, in the reader's zone (Tokyo, UTC+9, no daylight saving time)
    at = await page.get_attribute("#origin-at", "datetime")
    assert at
    in_tokyo(at, await page.text_content("#origin-at") or "")
    await page.click("#approve")
    await page.wait_for_selector("#done")
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, "".join(seen) + err.decode()
    assert out.decode().startswith(f"signed in to {b.url} as ")
    run = await run_cli(env, "credentials", "--role", "dev")
    assert run.code == 0, run.stderr
    assert run.json()["Version"] == 1
