"""docs/iam-api.md as written: its AWS CLI commands, its trust.json and its CLI profile, run
against a broker (the URL and nothing else substituted), then the new role used as the doc says:
assumed with an ID token of a provider registered through the API (the real oidc-provider in
GitHub Actions' place: its trust.json with the provider's name, audience and subject swapped),
and allowed what ReadOnly allows, nothing more."""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from botocore.exceptions import ClientError

from tests.iam.conftest import AWS_CLI, IamEnv, call, error_code, sts_client
from tests.sts.conftest import aws_env, real_id_token
from tests.support.doc_snippets import runs
from tests.support.oidc_server import OidcServer

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


async def tour(env: IamEnv, tmp_path: Path) -> tuple[Path, list[dict[str, Any]]]:
    """The page's commands, run in a directory holding its trust.json; their answers."""
    work = tmp_path / "tour"
    work.mkdir()
    (work / "trust.json").write_text(blocks("json")[0])
    return work, [await run(env, argv, work) for argv in commands()]


@runs("docs/iam-api.md", "sh", containing="iam create-role --role-name deploy")
async def test_the_documented_commands_work_as_written(iam_env: IamEnv, tmp_path: Path) -> None:
    _, results = await tour(iam_env, tmp_path)
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


async def authorize(env: IamEnv, token: str, action: str) -> str:
    async with (
        aiohttp.ClientSession() as s,
        s.post(
            f"{env.url}/v1/authorize",
            json={"action": action, "resource": "arn:aws:s3:::bucket/key", "context": {}},
            headers={"Authorization": f"Bearer {token}"},
        ) as r,
    ):
        decision: str = (await r.json())["decision"]
        return decision


@pytest.mark.oidc
async def test_the_new_role_is_taken_with_a_token_of_a_provider_registered_through_the_api(
    iam_env: IamEnv, tmp_path: Path, oidc_server: OidcServer
) -> None:
    """After the page's commands: the real oidc-provider registered with the same command the
    page uses for GitHub Actions, the role's trust.json pointed at it, and the role assumed with
    its ID token for alice; the credentials may do what ReadOnly allows (``s3:Get*``) only."""
    work, _ = await tour(iam_env, tmp_path)
    issuer = oidc_server.issuers["corp"]
    name = issuer.split("://", 1)[1]
    [create] = [argv for argv in commands() if "create-open-id-connect-provider" in argv]
    register = [a.replace("https://token.actions.githubusercontent.com", issuer) for a in create]
    register = [a.replace("sts.amazonaws.com", "broker") for a in register]
    out = await run(iam_env, register, work)
    assert out["OpenIDConnectProviderArn"] == iam_env.arn("oidc-provider", name)
    trust = (
        blocks("json")[0]
        .replace("token.actions.githubusercontent.com", name)
        .replace("sts.amazonaws.com", "broker")
        .replace("repo:acme/app:ref:refs/heads/main", "alice")
    )
    (work / "corp-trust.json").write_text(trust)
    update = "iam update-assume-role-policy --role-name deploy --policy-document"
    await run(
        iam_env, ["aws", "--endpoint-url", DOC_URL, *update.split(), "file://corp-trust.json"], work
    )

    async def assume(username: str) -> Any:
        return await asyncio.to_thread(
            sts_client(iam_env.url).assume_role_with_web_identity,
            RoleArn=iam_env.arn("role", "deploy"),
            RoleSessionName="tour",
            WebIdentityToken=await real_id_token(oidc_server, "corp", username),
        )

    creds = (await assume("alice"))["Credentials"]
    assert await authorize(iam_env, creds["SessionToken"], "s3:GetObject") == "allowed"
    assert await authorize(iam_env, creds["SessionToken"], "s3:PutObject") == "implicitDeny"
    assert await authorize(iam_env, creds["SessionToken"], "iam:ListRoles") == "implicitDeny"
    with pytest.raises(ClientError) as e:  # bob is not the trusted subject
        await assume("bob")
    assert error_code(e.value) == "AccessDenied"


@runs("docs/iam-api.md", "sh", section="Revoking a role's sessions")
async def test_revoking_a_roles_sessions_as_written(iam_env: IamEnv, tmp_path: Path) -> None:
    """The block runs in bash as written; the role's older credentials are then denied."""
    admin = await iam_env.client("admin")
    await call(admin, "create_role", RoleName="deploy", AssumeRolePolicyDocument=blocks("json")[0])
    [shell] = [b for b in blocks("sh") if "AWSRevokeOlderSessions" in b]
    creds = await iam_env.credentials("admin")
    env = aws_env(
        tmp_path,
        AWS_ACCESS_KEY_ID=creds["AccessKeyId"],
        AWS_SECRET_ACCESS_KEY=creds["SecretAccessKey"],
        AWS_SESSION_TOKEN=creds["SessionToken"],
    )
    env["PATH"] = f"{Path(AWS_CLI).parent}:{env.get('PATH', '')}"
    proc = await asyncio.create_subprocess_exec(
        "bash",
        "-euo",
        "pipefail",
        "-c",
        shell.replace(DOC_URL, iam_env.url),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode == 0, err.decode()
    got = await call(
        admin, "get_role_policy", RoleName="deploy", PolicyName="AWSRevokeOlderSessions"
    )
    [statement] = got["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Deny"
    assert "aws:TokenIssueTime" in statement["Condition"]["DateLessThan"]


@runs("docs/iam-api.md", "sh", containing="broker admin roles revoke-sessions admin")
async def test_a_config_roles_sessions_are_revoked_on_the_server_host(
    iam_env: IamEnv, tmp_path: Path
) -> None:
    """The ``admin`` role is declared in the config file: the API refuses the console's
    revocation policy on it (``UnmodifiableEntity``, nothing revoked); the page's ``broker
    admin`` command, run beside the server's config, revokes its sessions, audited."""
    creds = await iam_env.credentials("admin")
    code, _, err = await iam_env.aws(
        creds,
        "iam",
        "put-role-policy",
        "--role-name",
        "admin",
        "--policy-name",
        "AWSRevokeOlderSessions",
        "--policy-document",
        json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Deny",
                        "Action": ["*"],
                        "Resource": ["*"],
                        "Condition": {
                            "DateLessThan": {"aws:TokenIssueTime": "2099-01-01T00:00:00Z"}
                        },
                    }
                ],
            }
        ),
    )
    assert code != 0
    assert "(UnmodifiableEntity) when calling the PutRolePolicy operation" in err
    store = iam_env.broker.broker.store
    assert not await store.list_audit(action="role.revoke_sessions")

    [block] = [b for b in blocks("sh") if "broker admin roles revoke-sessions" in b]
    config = iam_env.broker.settings.config_path
    assert config is not None
    assert config.name == "broker.toml"
    work = tmp_path / "host"
    work.mkdir()
    (work / "config").symlink_to(config.parent)  # config/broker.toml, the default
    env = aws_env(tmp_path)
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    proc = await asyncio.create_subprocess_exec(
        "bash",
        "-euo",
        "pipefail",
        "-c",
        block,
        cwd=work,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err_bytes = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode == 0, err_bytes.decode()
    assert "ended every credential of arn:broker:iam::" in out.decode()

    await iam_env.broker.broker.poll_revocations()  # the server learns it (within 2 s)
    code, _, err = await iam_env.aws(creds, "iam", "list-roles")
    assert code != 0, "the admin role's credentials outlived the revocation"
    [event] = await store.list_audit(action="role.revoke_sessions")
    assert event.outcome == "success"
    assert event.principal.startswith("root/cli:")
    assert event.details["role"] == iam_env.arn("role", "admin")
    assert event.details["note"] == "laptop lost"
    # new credentials of the role can be taken afterwards
    code, out_json, err = await iam_env.aws(await iam_env.credentials("admin"), "iam", "list-roles")
    assert code == 0, err
    assert "admin" in [r["RoleName"] for r in out_json["Roles"]]


@runs("docs/iam-api.md", "python", section="Pointing tools at the broker")
async def test_the_boto3_lines_as_written(iam_env: IamEnv, tmp_path: Path) -> None:
    """With the admin's credentials in the environment and the page's trust.json beside it."""
    (tmp_path / "trust.json").write_text(blocks("json")[0])
    [python] = blocks("python")
    creds = await iam_env.credentials("admin")
    env = aws_env(
        tmp_path,
        AWS_ACCESS_KEY_ID=creds["AccessKeyId"],
        AWS_SECRET_ACCESS_KEY=creds["SecretAccessKey"],
        AWS_SESSION_TOKEN=creds["SessionToken"],
    )
    del env["AWS_DEFAULT_REGION"], env["AWS_REGION"]  # the block names its region
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        python.replace(DOC_URL, iam_env.url),
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode == 0, err.decode()
    role = (await call(await iam_env.client("admin"), "get_role", RoleName="deploy"))["Role"]
    assert role["Arn"] == iam_env.arn("role", "deploy")


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
