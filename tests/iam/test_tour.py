"""docs/iam-api.md as written: its AWS CLI commands, its trust.json and its CLI profile, run
against a broker (the URL and nothing else substituted), then the new role used as the doc says
(assumed with a token of a provider registered through the API, allowed what ReadOnly allows)."""

from __future__ import annotations

import asyncio
import json
import re
import shlex
from pathlib import Path
from typing import Any

from tests.iam.conftest import AWS_CLI, IamEnv, call
from tests.sts.conftest import aws_env

DOC = Path(__file__).resolve().parents[2] / "docs" / "iam-api.md"
DOC_URL = "http://127.0.0.1:8000"


def blocks(kind: str) -> list[str]:
    return re.findall(rf"```{kind}\n(.*?)```", DOC.read_text(), re.S)


def commands() -> list[list[str]]:
    """The first ``sh`` block's commands (continuations joined, comments dropped)."""
    text = blocks("sh")[0].replace("\\\n", " ")
    return [shlex.split(line, comments=True) for line in text.splitlines() if line.strip()]


async def run(env: IamEnv, argv: list[str], cwd: Path, **extra: str) -> dict[str, Any]:
    creds = await env.credentials("admin")
    proc = await asyncio.create_subprocess_exec(
        AWS_CLI,
        *[a.replace(DOC_URL, env.url) for a in argv[1:]],
        "--output",
        "json",
        cwd=cwd,
        env=aws_env(
            env.tmp,
            AWS_ACCESS_KEY_ID=creds["AccessKeyId"],
            AWS_SECRET_ACCESS_KEY=creds["SecretAccessKey"],
            AWS_SESSION_TOKEN=creds["SessionToken"],
            **extra,
        ),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode == 0, (argv, err.decode())
    return json.loads(out) if out.strip() else {}


async def test_the_documented_commands_work_as_written(iam_env: IamEnv, tmp_path: Path) -> None:
    work = tmp_path / "tour"
    work.mkdir()
    (work / "trust.json").write_text(blocks("json")[0])
    results = [await run(iam_env, argv, work) for argv in commands()]
    assert [argv[4] for argv in commands()] == [
        "create-role",
        "attach-role-policy",
        "create-open-id-connect-provider",
        "list-roles",
        "simulate-principal-policy",
    ]
    created, _, provider, listed, simulated = results
    assert created["Role"]["MaxSessionDuration"] == 7200
    assert provider["OpenIDConnectProviderArn"].endswith(
        ":oidc-provider/token.actions.githubusercontent.com"
    )
    assert "deploy" in [r["RoleName"] for r in listed["Roles"]]
    [result] = simulated["EvaluationResults"]
    assert result["EvalDecision"] == "allowed"

    admin = await iam_env.client("admin")
    attached = await call(admin, "list_attached_role_policies", RoleName="deploy")
    assert [p["PolicyName"] for p in attached["AttachedPolicies"]] == ["ReadOnly"]
    role = (await call(admin, "get_role", RoleName="deploy"))["Role"]
    statement = role["AssumeRolePolicyDocument"]["Statement"][0]
    assert statement["Condition"]["StringEquals"]["token.actions.githubusercontent.com:sub"] == (
        "repo:acme/app:ref:refs/heads/main"
    )


async def test_the_documented_profile_points_the_cli_at_the_broker(
    iam_env: IamEnv, tmp_path: Path
) -> None:
    [ini] = [b for b in blocks("ini") if "[services broker]" in b]
    config = tmp_path / "aws-config"
    config.write_text(ini.replace(DOC_URL, iam_env.url))
    out = await run(
        iam_env,
        ["aws", "iam", "list-roles"],
        tmp_path,
        AWS_CONFIG_FILE=str(config),
        AWS_PROFILE="broker",
    )
    assert "admin" in [r["RoleName"] for r in out["Roles"]]
