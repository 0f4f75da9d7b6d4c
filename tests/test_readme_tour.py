"""README's five-minute tour, step 4 (issue 15 item 4): the provider, the role and both policy
documents it shows, put where it says, pass ``broker check-config`` with no warning; and the
policy section's ``broker simulate`` of that role answers what the README prints."""

from __future__ import annotations

import asyncio
import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from broker.service.cli_sessions import CLI_SESSION_PREFIX
from tests.cli.test_cli_e2e import bash, shell_env
from tests.cli.test_cli_e2e import login as cli_login
from tests.conftest import BrokerFactory
from tests.support.doc_snippets import ROOT, blocks, runs
from tests.support.login_driver import parse_forms
from tests.support.oidc_server import OidcServer
from tests.test_admin_users_cli import login
from tests.test_serve import served, shipped_config  # noqa: F401 (fixtures)

STEP_4 = ("**4. Add a provider", "**5. Check before you start.**")


def broker(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "broker.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


async def step_3(url: str, token: str) -> tuple[str, str, str, str]:
    """Step 3's Python as written (against ``url``), on ``token``: the four values it shows."""
    [python] = blocks("README.md", "python", between=STEPS_2_3)
    here = python.replace("http://127.0.0.1:8000", url)
    program = f"token = {token!r}\n{here}".rstrip().splitlines()
    program[-1] = f"print(repr(({program[-1]})))"  # the last line is the expression shown
    proc = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", "\n".join(program)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    role, idp, idp_sub, sid = eval(proc.stdout)  # a tuple of four strings
    return role, idp, idp_sub, sid


def test_step_4_as_written_passes_check_config_without_warnings(tmp_path: Path) -> None:
    [toml] = blocks("README.md", "toml", between=STEP_4)
    trust, access = blocks("README.md", "json", between=STEP_4)
    config = tmp_path / "config"
    shutil.copytree(ROOT / "config", config)
    readme = (ROOT / "README.md").read_text()
    # the files go where the README says
    assert "`config/policies/dev-trust.json`" in readme
    assert "`config/policies/dev-access.json`" in readme
    (config / "policies" / "dev-trust.json").write_text(trust)
    (config / "policies" / "dev-access.json").write_text(access)
    with (config / "broker.toml").open("a") as f:
        f.write("\n" + toml)
    env = {"PATH": "/usr/bin:/bin", "GOOGLE_CLIENT_ID": "id", "GOOGLE_CLIENT_SECRET": "secret"}
    r = broker("check-config", "--config", str(config / "broker.toml"), "--json", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    report = json.loads(r.stdout)
    assert report.get("warnings", []) == []

    # the policy section's first simulate command, on this config
    [commands] = [b for b in blocks("README.md", "sh") if "may the role `dev` of step 4 GET" in b]
    line = commands.split("# may the role `dev` of step 4 GET this URL from this address?\n", 1)[1]
    argv = shlex.split(line.split("\n# ", 1)[0].replace("\\\n", " "))
    assert argv[:2] == ["broker", "simulate"]
    r = broker(*argv[1:], "--config", str(config / "broker.toml"), env=env)
    assert r.returncode == 0, r.stderr
    decision = json.loads(r.stdout)
    assert decision["decision"] == "allowed"
    assert decision["matched_statements"][0]["policy"] == "dev/policy[0]"
    assert decision["matched_statements"][0]["sid"] == "Apps"


STEPS_2_3 = ("**2. Your session as JSON.**", "**4. Add a provider")


@runs("README.md", "sh", between=STEPS_2_3)
@runs("README.md", "python", between=STEPS_2_3)
async def test_steps_2_and_3_as_written_with_the_session_cookie(
    served: tuple[subprocess.Popen[str], str, int],  # noqa: F811
) -> None:
    """The cookie the sign-in sets is the ``TOKEN`` of step 2 and the ``token`` of step 3."""
    _, otp, port = served
    base = f"http://127.0.0.1:{port}"
    s, landed, _ = await login(base, "admin", otp)
    assert landed == "/password"
    async with s:
        async with s.get(f"{base}/password") as r:
            pw = dict(parse_forms(await r.text())[0].fields)
        new = "a much better password"
        data = {**pw, "new_password": new, "confirm": new}
        async with s.post(f"{base}/password", data=data) as r:
            assert r.url.path == "/session"
        cookies = {c.key: c.value for c in s.cookie_jar}
    token = cookies["broker_session"]

    def here(text: str) -> str:
        return text.replace("127.0.0.1:8000", f"127.0.0.1:{port}")

    [shell] = blocks("README.md", "sh", between=STEPS_2_3)
    proc = await asyncio.to_thread(
        subprocess.run,
        ["bash", "-euo", "pipefail", "-c", here(shell)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "TOKEN": token},
    )
    assert proc.returncode == 0, proc.stderr
    session = json.loads(proc.stdout)
    assert session["role"] == "arn:broker:iam::000000000000:role/admin"
    assert session["provider"] == "local"

    role, idp, idp_sub, sid = await step_3(here("http://127.0.0.1:8000"), token)
    assert (role, idp, idp_sub) == ("arn:broker:iam::000000000000:role/admin", "local", "admin")
    assert sid


async def test_step_3_verifies_the_token_broker_token_prints(
    broker_factory: BrokerFactory, oidc_server: OidcServer, tmp_path: Path
) -> None:
    """Step 2's line on the CLI: after ``broker login`` (docs/cli.md, driven to its end with
    the real provider), ``broker token`` prints a token that step 3's program verifies as
    written, with the same claims as the cookie's."""
    readme = (ROOT / "README.md").read_text()
    between = readme[readme.index(STEPS_2_3[0]) : readme.index("**3. Verify a broker token")]
    assert "`broker token` ([the CLI](docs/cli.md)" in between
    assert "which step 3 verifies the same way" in between
    b = await broker_factory(oidc=oidc_server)
    env = shell_env(b, tmp_path / "home")
    await cli_login(b, oidc_server, env)
    token = (await bash("broker token", env)).strip()

    role, idp, idp_sub, sid = await step_3(b.url, token)
    # the CLI session's: alice, who took the role dev when she approved the sign-in
    assert (role, idp, idp_sub) == ("arn:broker:iam::000000000000:role/dev", "corp", "alice")
    assert sid.startswith(CLI_SESSION_PREFIX)
