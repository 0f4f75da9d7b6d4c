"""docs/aws-sdk.md's snippets, run as written (issue 15 item 5): the credential-chain section's
shell block with the real AWS CLI and its Python block with boto3, in an environment with no AWS
settings but the ones the page exports, and a token file written by ``echo``; the web-identity
call and the token exchange with a real ID token as ``$OIDC_TOKEN``; and docs/github-actions.md's
workflow steps (as a runner runs them) and its token exchange with ``curl | jq``."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import sys
import textwrap
from pathlib import Path
from typing import Any

from aiohttp import web
from pytest_aiohttp import AiohttpServer

from tests.conftest import RunningBroker
from tests.sts.conftest import RoleSpec, real_id_token, start_broker, web_trust
from tests.support.doc_snippets import blocks, runs
from tests.support.oidc_server import OidcServer

PAGE = "docs/aws-sdk.md"
SECTION = "The SDK credential chain, with nothing but environment variables"


def _as_written(text: str, url: str, token_file: Path) -> str:
    return text.replace("https://broker.example.com", url).replace(
        "/var/run/secrets/token", str(token_file)
    )


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """No AWS settings and no AWS config; the venv's ``aws`` first on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env.update(HOME=str(home), AWS_EC2_METADATA_DISABLED="true", AWS_MAX_ATTEMPTS="1")
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    env.update(extra)
    return env


async def bash(script: str, env: dict[str, str]) -> str:
    proc = await asyncio.create_subprocess_exec(
        "bash",
        "-euo",
        "pipefail",
        "-c",
        script,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode == 0, err.decode()
    return out.decode()


@runs(PAGE, "sh", section="Web identity")
@runs(PAGE, "sh", section="RFC 8693 token exchange (no SDK needed)")
async def test_web_identity_and_token_exchange_as_written(
    broker: RunningBroker, oidc_server: OidcServer, tmp_path: Path
) -> None:
    env = clean_env(tmp_path, OIDC_TOKEN=await real_id_token(oidc_server, "corp", "alice"))
    [call] = blocks(PAGE, "sh", section="Web identity")
    out = json.loads(await bash(_as_written(call, broker.url, tmp_path), env))
    assert out["AssumedRoleUser"]["Arn"] == (
        "arn:broker:sts::000000000000:assumed-role/ci/build-42"
    )
    assert out["Credentials"]["SessionToken"]
    [exchange] = blocks(PAGE, "sh", section="RFC 8693 token exchange (no SDK needed)")
    answer: dict[str, Any] = json.loads(
        await bash(_as_written(exchange, broker.url, tmp_path), env)
    )
    assert answer["token_type"] == "Bearer"
    assert answer["issued_token_type"] == "urn:ietf:params:oauth:token-type:access_token"
    assert answer["access_token"]


GITHUB = "docs/github-actions.md"


def run_scripts(workflow: str) -> list[str]:
    """The ``run:`` scripts of a workflow's steps, in order: ``run: command`` or a ``run: |``
    literal block (its lines indented deeper than the key, dedented)."""
    scripts: list[str] = []
    lines = workflow.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"^(\s*)(?:- )?run: (.*)$", line)
        if not m:
            continue
        if m.group(2) != "|":
            scripts.append(m.group(2) + "\n")
            continue
        body = []
        for following in lines[i + 1 :]:
            if following.strip() and len(following) - len(following.lstrip()) <= len(m.group(1)):
                break
            body.append(following)
        scripts.append(textwrap.dedent("\n".join(body)) + "\n")
    return scripts


@runs(GITHUB, "sh", containing="scope=role:ci-deploy")
@runs(GITHUB, "yaml", section="Workflow")
async def test_github_actions_workflow_and_token_exchange_as_written(
    oidc_server: OidcServer,
    tmp_path: Path,
    runners: list[web.AppRunner],
    aiohttp_server: AiohttpServer,
) -> None:
    """The page's role ``ci-deploy``, trusting a token of the real provider (standing in for
    GitHub's, which only a runner gets). The workflow's steps run as a runner runs them
    (``bash -e``, ``$GITHUB_ENV`` applied to the next step), with the runner's token endpoint
    handing out that token."""
    trust = web_trust("corp", {"StringEquals": {"corp:sub": "alice", "corp:aud": "broker"}})
    b = await start_broker(
        tmp_path / "b", oidc=oidc_server, roles={"ci-deploy": RoleSpec(trust)}, runners=runners
    )
    id_token = await real_id_token(oidc_server, "corp", "alice")

    async def runner_token(request: web.Request) -> web.Response:
        # what GitHub's endpoint checks: the request token, and the audience asked for
        assert request.headers["Authorization"] == "bearer request-token"
        assert request.query["audience"] == "broker.example.com"
        return web.json_response({"count": 1, "value": id_token})

    app = web.Application()
    app.router.add_get("/token", runner_token)
    idp = await aiohttp_server(app)
    [workflow] = blocks(GITHUB, "yaml", section="Workflow")
    steps = run_scripts(workflow)
    assert len(steps) == 2
    runner_temp, github_env = tmp_path / "runner-temp", tmp_path / "github-env"
    runner_temp.mkdir()
    github_env.touch()
    env = clean_env(
        tmp_path,
        ACTIONS_ID_TOKEN_REQUEST_TOKEN="request-token",
        ACTIONS_ID_TOKEN_REQUEST_URL=f"{idp.make_url('/token')}?api-version=2.0",
        RUNNER_TEMP=str(runner_temp),
        GITHUB_ENV=str(github_env),
        GITHUB_RUN_ID="4242",
    )
    outputs = []
    for step in steps:
        for line in github_env.read_text().splitlines():
            key, _, value = line.partition("=")
            env[key] = value
        outputs.append(await bash(step.replace("https://broker.example.com", b.url), env))
    assert (runner_temp / "oidc-token").read_text() == id_token  # printf '%s': no newline
    identity = json.loads(outputs[-1])
    assert identity["Arn"] == "arn:broker:sts::000000000000:assumed-role/ci-deploy/gh-4242"

    [exchange] = blocks(GITHUB, "sh", containing="scope=role:ci-deploy")
    env = clean_env(tmp_path, TOKEN=await real_id_token(oidc_server, "corp", "alice"))
    token = (await bash(exchange.replace("https://broker.example.com", b.url), env)).strip()
    payload = token.split(".")[1]  # jq -r printed the bare compact JWS
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims["role"] == "arn:broker:iam::000000000000:role/ci-deploy"


@runs(PAGE, "sh", section=SECTION)
@runs(PAGE, "python", section=SECTION)
async def test_the_credential_chain_snippets_run_as_written(
    broker: RunningBroker, oidc_server: OidcServer, tmp_path: Path
) -> None:
    [shell] = blocks(PAGE, "sh", section=SECTION)
    [python] = blocks(PAGE, "python", section=SECTION)
    token_file = tmp_path / "token"
    token = await real_id_token(oidc_server, "corp", "alice")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    home = tmp_path / "home"
    home.mkdir()
    env.update(HOME=str(home), AWS_EC2_METADATA_DISABLED="true", AWS_MAX_ATTEMPTS="1")
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    script = (
        f'echo "{token}" > {token_file}\n'  # the newline echo adds is accepted
        + _as_written(shell, broker.url, token_file)
        + f"\"{sys.executable}\" - <<'PY'\n{python}PY\n"
    )
    proc = await asyncio.create_subprocess_exec(
        "bash",
        "-euo",
        "pipefail",
        "-c",
        script,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode == 0, err.decode()
    text = out.decode()
    # the CLI's JSON, then the Python block's print
    assert '"Arn": "arn:broker:sts::000000000000:assumed-role/ci/build-42"' in text
    assert text.rstrip().endswith("arn:broker:sts::000000000000:assumed-role/ci/build-42")
