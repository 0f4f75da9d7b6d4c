"""docs/aws-sdk.md's snippets, run as written (issue 15 item 5): the credential-chain section's
shell block with the real AWS CLI and its Python block with boto3, in an environment with no AWS
settings but the ones the page exports, and a token file written by ``echo``; the web-identity
call and the token exchange with a real ID token as ``$OIDC_TOKEN``; and docs/github-actions.md's
token exchange with ``curl | jq``."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
from pathlib import Path
from typing import Any

from aiohttp import web

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


@runs(GITHUB, "sh", containing="scope=role:ci-deploy")
async def test_github_actions_token_exchange_as_written(
    oidc_server: OidcServer, tmp_path: Path, runners: list[web.AppRunner]
) -> None:
    """The page's role ``ci-deploy``, trusting a token of the real provider (standing in for
    GitHub's, which only a runner gets)."""
    trust = web_trust("corp", {"StringEquals": {"corp:sub": "alice", "corp:aud": "broker"}})
    b = await start_broker(
        tmp_path / "b", oidc=oidc_server, roles={"ci-deploy": RoleSpec(trust)}, runners=runners
    )
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
