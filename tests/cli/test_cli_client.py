"""The CLI client's own behaviour (docs/cli.md) against a fake of the contract
(tests/cli/fake_broker.py): the loopback listener, PKCE and state, device polling, the cache's
permissions, lock and margin, exec and token. The real broker: tests/cli/test_cli_e2e.py."""

from __future__ import annotations

import asyncio
import json
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from aiohttp import web

from broker.cli_cache import ClientError
from broker.cli_oauth import claims, discover, login_device, login_loopback
from tests.cli.fake_broker import Fake, serve
from tests.support.cli_client import LoginProcess, cli_env, run_cli
from tests.support.fuzz import b64url
from tests.support.oidc_server import free_port

URL_LINE = r"(http://127\.0\.0\.1:\d+/oauth2/authorize\?\S+)"


@pytest.fixture
async def fake() -> AsyncIterator[Fake]:
    async for f in serve(Fake()):
        yield f


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return cli_env(tmp_path / "home")


async def login(fake: Fake, env: dict[str, str]) -> str:
    proc = await LoginProcess.start(env, "--url", fake.url)
    link = (await proc.line_matching(URL_LINE)).group(1)
    async with aiohttp.ClientSession() as browser, browser.get(link) as resp:
        page = await resp.text()
    run = await proc.finish()
    assert run.code == 0, run.stderr
    assert "you can close this window" in page
    return run.stdout


def cache_file(env: dict[str, str]) -> Path:
    [path] = (Path(env["XDG_CONFIG_HOME"]) / "broker").glob("*.json")
    return path


async def test_login_uses_pkce_s256_and_a_private_cache(fake: Fake, env: dict[str, str]) -> None:
    out = await login(fake, env)
    assert "signed in to" in out
    assert "alice" in out
    assert fake.verifiers_checked == 1  # the fake checked S256(code_verifier) == code_challenge
    directory = Path(env["XDG_CONFIG_HOME"]) / "broker"
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    for f in directory.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    data = json.loads(cache_file(env).read_text())
    assert data["refresh_token"] in fake.refresh_tokens
    assert data["refresh_token"] not in out  # no secret printed


async def test_the_authorization_url_is_the_contracts(fake: Fake, env: dict[str, str]) -> None:
    proc = await LoginProcess.start(env, "--url", fake.url)
    link = (await proc.line_matching(URL_LINE)).group(1)
    q = {k: v[0] for k, v in parse_qs(urlsplit(link).query).items()}
    assert q["response_type"] == "code"
    assert q["client_id"] == "broker-cli"
    assert q["code_challenge_method"] == "S256"
    assert len(q["code_challenge"]) == 43
    assert len(q["state"]) >= 43
    redirect = urlsplit(q["redirect_uri"])
    assert (redirect.scheme, redirect.hostname, redirect.path) == ("http", "127.0.0.1", "/callback")
    # a callback with another state (another page poking the port) is refused; the login waits
    async with aiohttp.ClientSession() as other:
        forged = f"{q['redirect_uri']}?code=stolen&state=not-the-state"
        async with other.get(forged) as resp:
            assert resp.status == 400
        async with other.get(link) as resp:
            assert resp.status == 200
    run = await proc.finish()
    assert run.code == 0, run.stderr
    assert fake.verifiers_checked == 1


async def test_a_denied_sign_in_is_one_clear_line(fake: Fake, env: dict[str, str]) -> None:
    fake.deny = True
    proc = await LoginProcess.start(env, "--url", fake.url)
    link = (await proc.line_matching(URL_LINE)).group(1)
    async with aiohttp.ClientSession() as browser, browser.get(link) as resp:
        assert resp.status == 400
    run = await proc.finish()
    assert run.code == 1
    assert run.stderr.splitlines()[-1] == "broker: the sign-in was denied in the browser"
    assert not (Path(env["XDG_CONFIG_HOME"]) / "broker").exists() or not list(
        (Path(env["XDG_CONFIG_HOME"]) / "broker").glob("*.json")
    )


async def test_no_callback_within_the_wait_is_an_error(fake: Fake) -> None:
    endpoints = await asyncio.to_thread(discover, fake.url)
    with pytest.raises(ClientError, match="no sign-in came back"):
        await asyncio.to_thread(
            login_loopback, fake.url, endpoints, open_browser=False, say=lambda _: None, wait=0.1
        )


async def test_device_polling_honours_interval_and_slow_down(fake: Fake) -> None:
    fake.device_answers = ["authorization_pending", "slow_down", "authorization_pending"]
    endpoints = await asyncio.to_thread(discover, fake.url)
    slept: list[float] = []
    said: list[str] = []
    reply = await asyncio.to_thread(
        login_device, fake.url, endpoints, say=said.append, sleep=slept.append
    )
    assert reply.status == 200
    assert "refresh_token" in reply.body
    assert slept == [1, 1, 6, 6]  # interval 1, then +5 for this and every later poll
    assert "BCDF-GHJK" in said[0]
    assert f"{fake.url}/device" in said[0]


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ("expired_token", "the code expired before it was approved"),
        ("access_denied", "the sign-in was denied in the browser"),
    ],
)
async def test_device_polling_stops_on_expiry_and_denial(
    fake: Fake, answer: str, message: str
) -> None:
    fake.device_answers = ["authorization_pending", answer]
    endpoints = await asyncio.to_thread(discover, fake.url)
    with pytest.raises(ClientError, match=message):
        await asyncio.to_thread(
            login_device, fake.url, endpoints, say=lambda _: None, sleep=lambda _: None
        )
    assert fake.device_answers == []


async def test_device_polling_stops_at_expires_in_by_the_clock(fake: Fake) -> None:
    fake.device_answers = ["authorization_pending"] * 1000
    endpoints = await asyncio.to_thread(discover, fake.url)
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    with pytest.raises(ClientError, match="expired before it was approved"):
        await asyncio.to_thread(
            login_device,
            fake.url,
            endpoints,
            say=lambda _: None,
            sleep=sleep,
            clock=lambda: now[0],
        )
    assert now[0] >= 600


async def test_not_signed_in(fake: Fake, env: dict[str, str]) -> None:
    for args in (["credentials", "--role", "dev"], ["roles"], ["token"]):
        run = await run_cli(env, *args, "--url", fake.url)
        assert run.code == 1
        assert run.stderr == (
            f"broker: not signed in to {fake.url}: run `broker login --url {fake.url}`\n"
        )


async def test_a_refused_refresh_means_not_signed_in(fake: Fake, env: dict[str, str]) -> None:
    fake.login_expires_in = 0  # expired at once: the next call must refresh
    await login(fake, env)
    fake.refresh_tokens.clear()  # the server ended the session
    run = await run_cli(env, "credentials", "--role", "dev", "--url", fake.url)
    assert run.code == 1
    assert (
        run.stderr == f"broker: not signed in to {fake.url}: run `broker login --url {fake.url}`\n"
    )
    assert fake.refreshes == 1
    # the dead refresh token is never sent again
    run = await run_cli(env, "credentials", "--role", "dev", "--url", fake.url)
    assert run.code == 1
    assert fake.refreshes == 1


async def test_credential_process_json_is_exact(fake: Fake, env: dict[str, str]) -> None:
    await login(fake, env)
    run = await run_cli(env, "credentials", "--role", "dev", "--url", fake.url)
    assert run.code == 0, run.stderr
    creds = run.json()
    assert sorted(creds) == sorted(
        ["Version", "AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration"]
    )
    assert creds["Version"] == 1
    # cached: the second call asks nothing
    again = await run_cli(env, "credentials", "--role", "dev", "--url", fake.url)
    assert again.json() == creds
    assert fake.credential_requests == 1
    # a role the person may not take: the server's reason, exit 1
    run = await run_cli(env, "credentials", "--role", "admin", "--url", fake.url)
    assert run.code == 1
    assert "refused the role 'admin': no trust" in run.stderr


async def test_role_credentials_are_fetched_again_within_5_minutes_of_expiry(
    fake: Fake, env: dict[str, str]
) -> None:
    fake.credential_lifetime = 299  # already inside the 5-minute margin
    await login(fake, env)
    first = (await run_cli(env, "credentials", "--role", "dev", "--url", fake.url)).json()
    second = (await run_cli(env, "credentials", "--role", "dev", "--url", fake.url)).json()
    assert first["AccessKeyId"] != second["AccessKeyId"]
    assert fake.credential_requests == 2
    fake.credential_lifetime = 360  # outside it (with room for slow process starts): cached
    third = (await run_cli(env, "credentials", "--role", "dev", "--url", fake.url)).json()
    fourth = (await run_cli(env, "credentials", "--role", "dev", "--url", fake.url)).json()
    assert third == fourth
    assert fake.credential_requests == 3


async def test_cached_credentials_the_broker_ended_are_fetched_again(
    fake: Fake, env: dict[str, str]
) -> None:
    """Cached role credentials are handed out only while the broker accepts them (STS
    GetCallerIdentity signed with them); once it refuses them (a role's or user's revocation),
    new ones are fetched."""
    await login(fake, env)
    first = (await run_cli(env, "credentials", "--role", "dev", "--url", fake.url)).json()
    again = (await run_cli(env, "credentials", "--role", "dev", "--url", fake.url)).json()
    assert again == first
    assert (fake.credential_requests, fake.identity_checks) == (1, 1)
    fake.ended_keys.add(first["AccessKeyId"])
    fresh = (await run_cli(env, "credentials", "--role", "dev", "--url", fake.url)).json()
    assert fresh["AccessKeyId"] != first["AccessKeyId"]
    assert (fake.credential_requests, fake.identity_checks) == (2, 2)


async def test_two_parallel_calls_refresh_once(fake: Fake, env: dict[str, str]) -> None:
    fake.login_expires_in = 0  # both calls find an expired access token
    fake.refresh_delay = 0.5  # and the first one's refresh is still running when the second asks
    await login(fake, env)
    a, b = await asyncio.gather(
        run_cli(env, "credentials", "--role", "dev", "--url", fake.url),
        run_cli(env, "credentials", "--role", "dev", "--url", fake.url),
    )
    assert (a.code, b.code) == (0, 0), (a.stderr, b.stderr)
    assert fake.refreshes == 1
    assert fake.credential_requests == 1
    assert a.json() == b.json()


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
async def test_a_cache_file_others_can_read_is_refused(
    fake: Fake, env: dict[str, str], mode: int
) -> None:
    await login(fake, env)
    path = cache_file(env)
    path.chmod(mode)
    run = await run_cli(env, "credentials", "--role", "dev", "--url", fake.url)
    assert run.code == 1
    assert run.stdout == ""
    assert run.stderr == (
        f"broker: {path}: the cache file is accessible by group or others (mode {mode:o}); "
        f"run `chmod 600 {path}` or remove it\n"
    )
    assert fake.credential_requests == 0


async def test_a_cache_directory_others_can_enter_is_refused(
    fake: Fake, env: dict[str, str]
) -> None:
    await login(fake, env)
    directory = cache_file(env).parent
    directory.chmod(0o755)
    run = await run_cli(env, "roles", "--url", fake.url)
    assert run.code == 1
    assert f"{directory}: the cache directory is accessible by group or others" in run.stderr


async def test_exec_gives_the_credentials_to_the_child_only(
    fake: Fake, env: dict[str, str], tmp_path: Path
) -> None:
    await login(fake, env)
    dump = tmp_path / "child-env.json"
    script = (
        "import json, os, sys; "
        f"json.dump({{k: v for k, v in os.environ.items() if k.startswith('AWS_')}}, "
        f"open({str(dump)!r}, 'w')); sys.exit(7)"
    )
    env_with_profile = {**env, "AWS_PROFILE": "other"}
    run = await run_cli(
        env_with_profile, "exec", "--role", "dev", "--url", fake.url, "--", "python3", "-c", script
    )
    assert run.code == 7  # the child's exit code
    child = json.loads(dump.read_text())
    creds = (await run_cli(env, "credentials", "--role", "dev", "--url", fake.url)).json()
    assert child == {
        "AWS_ACCESS_KEY_ID": creds["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": creds["SecretAccessKey"],
        "AWS_SESSION_TOKEN": creds["SessionToken"],
        "AWS_CREDENTIAL_EXPIRATION": creds["Expiration"],
    }
    missing = await run_cli(env, "exec", "--role", "dev", "--url", fake.url, "--", "no-such-cmd")
    assert missing.code == 127
    assert "broker: cannot run no-such-cmd" in missing.stderr


async def test_token_roles_and_logout(fake: Fake, env: dict[str, str]) -> None:
    await login(fake, env)
    token = (await run_cli(env, "token")).stdout.strip()  # the URL of the last login
    assert token in fake.access_tokens
    role_token = (await run_cli(env, "token", "--role", "dev", "--json")).json()
    creds = (await run_cli(env, "credentials", "--role", "dev")).json()
    assert role_token["token"] == creds["SessionToken"]
    roles = await run_cli(env, "roles")
    assert roles.stdout.splitlines() == ["NAME  DESCRIPTION", "dev   Dev"]
    assert (await run_cli(env, "roles", "--json")).json()["roles"][0]["name"] == "dev"
    path = cache_file(env)
    refresh_token = json.loads(path.read_text())["refresh_token"]
    out = await run_cli(env, "logout", "--json")
    assert out.json() == {"url": fake.url, "revoked": True, "deleted": True}
    assert fake.revoked == [refresh_token]
    assert not path.exists()
    run = await run_cli(env, "roles")
    assert run.code == 1
    assert "not signed in" in run.stderr


async def test_the_cache_is_written_atomically(fake: Fake, env: dict[str, str]) -> None:
    """No temporary file is left behind, and the file is replaced (new inode), never rewritten
    in place where a concurrent reader could see half of it."""
    fake.credential_lifetime = 10
    await login(fake, env)
    before = cache_file(env).stat().st_ino
    await run_cli(env, "credentials", "--role", "dev", "--url", fake.url)
    assert cache_file(env).stat().st_ino != before
    assert [p.name for p in cache_file(env).parent.iterdir() if p.name.endswith(".tmp")] == []


async def test_a_redirect_is_not_followed_with_the_token(fake: Fake, env: dict[str, str]) -> None:
    await login(fake, env)
    fake.redirect_api = True
    run = await run_cli(env, "roles", "--url", fake.url)
    assert run.code == 1
    assert "/v1/roles redirected to http://localhost:" in run.stderr
    assert "not followed" in run.stderr
    assert fake.captured == []


@pytest.mark.parametrize(
    "url", ["http://broker.example", "http://127.0.0.1.evil.test", "file:///etc/passwd"]
)
async def test_a_url_that_would_send_tokens_in_clear_is_refused(
    env: dict[str, str], url: str
) -> None:
    run = await run_cli(env, "login", "--url", url, "--no-browser")
    assert run.code == 1
    assert len(run.stderr.splitlines()) == 1
    assert "https://" in run.stderr


async def test_logout_forgets_the_session_even_when_the_broker_is_unreachable(
    fake: Fake, env: dict[str, str]
) -> None:
    await login(fake, env)
    path = cache_file(env)
    data = json.loads(path.read_text())
    data["endpoints"]["revocation_endpoint"] = "http://127.0.0.1:9/oauth2/revoke"
    path.write_text(json.dumps(data))
    run = await run_cli(env, "logout", "--url", fake.url)
    assert run.code == 0
    assert "did not confirm the logout: cannot reach" in run.stderr
    assert not path.exists()


async def test_signing_in_again_ends_the_previous_session(fake: Fake, env: dict[str, str]) -> None:
    await login(fake, env)
    first = json.loads(cache_file(env).read_text())["refresh_token"]
    await login(fake, env)
    second = json.loads(cache_file(env).read_text())["refresh_token"]
    assert fake.revoked == [first]
    assert second in fake.refresh_tokens


async def test_login_json(fake: Fake, env: dict[str, str]) -> None:
    proc = await LoginProcess.start(env, "--url", fake.url, "--json")
    link = (await proc.line_matching(URL_LINE)).group(1)
    async with aiohttp.ClientSession() as browser, browser.get(link) as resp:
        assert resp.status == 200
    run = await proc.finish()
    assert run.code == 0, run.stderr
    assert run.json() == {
        "url": fake.url,
        "signed_in": True,
        "subject": "alice",
        "cache": str(cache_file(env)),
    }


# --- what a server answers is outside input -------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 3000 + b"]" * 3000,  # was a RecursionError: a traceback, not one clear line
        b'{"token_endpoint": ' + b"[" * 3000 + b"]" * 3000 + b"}",
        b'{"token_endpoint": "\xff"}',
        b"{" + b" " * (2 << 20) + b"}",  # past what the CLI reads of a reply
        b"[]",
    ],
    ids=["deep", "deep_member", "not_utf8", "too_large", "array"],
)
async def test_a_hostile_server_reply_is_one_clear_error(body: bytes) -> None:
    async def discovery(_: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/.well-known/openid-configuration", discovery)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        with pytest.raises(ClientError, match="no JSON object: is it a broker"):
            await asyncio.to_thread(discover, f"http://127.0.0.1:{port}")
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    "payload",
    [b"[" * 3000 + b"]" * 3000, b'{"sub": "\xff"}', b"[1]", b"{"],
    ids=["deep", "not_utf8", "array", "broken"],
)
def test_unreadable_access_token_claims_are_none(payload: bytes) -> None:
    assert claims(f"eyJhbGciOiJub25lIn0.{b64url(payload)}.sig") == {}
    good = b64url(b'{"sub": "alice"}')
    assert claims(f"eyJhbGciOiJub25lIn0.{good}.sig") == {"sub": "alice"}
