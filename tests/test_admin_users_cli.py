"""Issue 15 item 2: a second local user and a lost admin password, from the server host:
``broker admin users create NAME [--one-time-password | --password-stdin]`` and
``broker admin users reset-password NAME``, against a running ``broker serve``."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import aiohttp

from tests.support.login_driver import parse_forms
from tests.test_serve import broker_cmd, served, shipped_config  # noqa: F401 (fixtures)


def cli(path: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        broker_cmd("admin", *args, "--config", str(path)),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=path.parent.parent,
    )


async def login(base: str, user: str, password: str) -> tuple[aiohttp.ClientSession, str, str]:
    """Signs in at /login/local; returns the session, the path it landed on and the page."""
    s = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    async with s.get(f"{base}/login/local") as r:
        fields = dict(parse_forms(await r.text())[0].fields)
    async with s.post(
        f"{base}/login/local", data={**fields, "username": user, "password": password}
    ) as r:
        return s, r.url.path, await r.text()


async def test_create_users_and_reset_a_lost_admin_password(
    served: tuple[subprocess.Popen[str], str, int],  # noqa: F811
    shipped_config: tuple[Path, int],  # noqa: F811
) -> None:
    _, admin_otp, port = served
    path, _ = shipped_config
    base = f"http://127.0.0.1:{port}"

    r = cli(path, "users", "create", "alice", "--one-time-password", "--json")
    assert r.returncode == 0, r.stderr
    alice = json.loads(r.stdout)
    assert alice["arn"] == "arn:broker:iam::000000000000:user/alice"
    s, landed, page = await login(base, "alice", alice["one_time_password"])
    await s.close()
    assert landed == "/password"  # a one-time password must be changed at once
    assert alice["one_time_password"] not in r.stderr

    r = cli(path, "users", "create", "bob", "--password-stdin", stdin="bob's long password\n")
    assert r.returncode == 0, r.stderr
    assert "bob's long password" not in r.stdout + r.stderr
    s, landed, page = await login(base, "bob", "bob's long password")
    await s.close()
    # the password is right and need not change; the shipped config has no role for bob
    assert "no role is available to you" in page

    # admin signs in, changes the one-time password, then forgets it
    s, landed, page = await login(base, "admin", admin_otp)
    assert landed == "/password"
    async with s.get(f"{base}/password") as resp:
        pw = dict(parse_forms(await resp.text())[0].fields)
    new = "a much better password"
    async with s.post(f"{base}/password", data={**pw, "new_password": new, "confirm": new}) as resp:
        assert resp.url.path == "/session"

    r = cli(path, "users", "reset-password", "admin", "--json")
    assert r.returncode == 0, r.stderr
    reset = json.loads(r.stdout)
    assert reset["sessions_ended"] >= 1
    # the old session ends on the running broker within its poll interval
    for _ in range(50):
        async with s.get(
            f"{base}/session", headers={"Accept": "application/json"}, allow_redirects=False
        ) as resp:
            if resp.status != 200:
                break
        await asyncio.sleep(0.1)
    assert resp.status in (302, 303, 401)
    await s.close()
    s, landed, page = await login(base, "admin", new)
    await s.close()
    assert landed == "/login/local"  # the forgotten password no longer works
    s, landed, page = await login(base, "admin", reset["one_time_password"])
    await s.close()
    assert landed == "/password"

    r = cli(path, "users", "create", "alice")
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1].startswith("broker: User with name alice already")
    r = cli(path, "users", "reset-password", "nobody")
    assert r.returncode == 1
    assert "cannot be found" in r.stderr
