"""docs/access-keys.md as written, with the real AWS CLI: its ``sh`` blocks run by ``bash``
(the broker's URL substituted), the administrator's with an ``iam:*`` role session, the
program's with nothing but the key file the first block wrote. Then the CLI's view of an
Inactive key (``InvalidClientTokenId`` at once), and the rotation block: the old key is
refused, the new one works."""

from __future__ import annotations

import asyncio
import json
import os
import re
from pathlib import Path

from tests.iam.conftest import AWS_CLI, IamEnv
from tests.sts.conftest import ACCOUNT, aws_env
from tests.support.doc_snippets import runs

DOC = Path(__file__).resolve().parents[2] / "docs" / "access-keys.md"
DOC_URL = "http://127.0.0.1:8000"


def blocks(kind: str) -> list[str]:
    return re.findall(rf"```{kind}\n(.*?)```", DOC.read_text(), re.S)


async def bash(
    env: IamEnv, script: str, cwd: Path, *, admin: bool, **extra: str
) -> tuple[int, str, str]:
    creds: dict[str, str] = {}
    if admin:
        c = await env.credentials("admin")
        creds = {
            "AWS_ACCESS_KEY_ID": c["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": c["SecretAccessKey"],
            "AWS_SESSION_TOKEN": c["SessionToken"],
        }
    environ = aws_env(env.tmp, URL=env.url, AWS_DEFAULT_OUTPUT="json", **creds, **extra)
    environ["PATH"] = f"{Path(AWS_CLI).parent}{os.pathsep}{environ.get('PATH', '')}"
    proc = await asyncio.create_subprocess_exec(
        "bash",
        "-euo",
        "pipefail",
        "-c",
        script.replace(DOC_URL, env.url),
        cwd=cwd,
        env=environ,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=240)
    return proc.returncode or 0, out.decode(), err.decode()


async def caller(env: IamEnv, work: Path) -> tuple[int, str, str]:
    """``aws sts get-caller-identity`` with the key in ci-key.txt."""
    return await bash(
        env,
        "read -r AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY < ci-key.txt\n"
        "export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY\n"
        "aws --endpoint-url $URL sts get-caller-identity\n",
        work,
        admin=False,
    )


@runs("docs/access-keys.md", "sh", section="Create one")
@runs("docs/access-keys.md", "sh", section="Use it")
@runs("docs/access-keys.md", "sh", section="Rotate it")
async def test_the_documented_commands_work_as_written(iam_env: IamEnv, tmp_path: Path) -> None:
    create, use, rotate = blocks("sh")
    policy_doc, trust_doc = blocks("json")
    work = tmp_path / "keys"
    work.mkdir()
    (work / "ci-policy.json").write_text(policy_doc)
    (work / "deploy-trust.json").write_text(trust_doc)

    code, out, err = await bash(iam_env, create, work, admin=True)
    assert code == 0, err
    first, secret = (work / "ci-key.txt").read_text().split()
    assert first.startswith("AKIA")
    assert len(secret) == 40

    code, out, err = await bash(iam_env, use, work, admin=False)
    assert code == 0, err
    assert f"arn:broker:iam::{ACCOUNT}:user/ci" in out
    assert f"arn:broker:sts::{ACCOUNT}:assumed-role/deploy/ci-run" in out
    assert '"AccessKeyId": "ASIA' in out
    assert first in out  # list-access-keys, the caller's own

    # Inactive: refused at once, through the CLI; Active again: accepted
    update = (
        "aws --endpoint-url $URL iam update-access-key --user-name ci "
        "--access-key-id {} --status {}"
    )
    code, _, err = await bash(iam_env, update.format(first, "Inactive"), work, admin=True)
    assert code == 0, err
    code, _, err = await caller(iam_env, work)
    assert code != 0
    assert "InvalidClientTokenId" in err
    code, _, err = await bash(iam_env, update.format(first, "Active"), work, admin=True)
    assert code == 0, err
    code, _, err = await caller(iam_env, work)
    assert code == 0, err

    old_key = (work / "ci-key.txt").read_text()
    code, out, err = await bash(iam_env, rotate, work, admin=True)
    assert code == 0, err
    used = json.loads(out)["AccessKeyLastUsed"]  # get-access-key-last-used of the old key
    assert used["ServiceName"] in ("sts", "iam")
    assert used["Region"] == "us-east-1"
    new = (work / "ci-key.txt").read_text()
    assert new.split()[0] != first
    code, out, err = await caller(iam_env, work)
    assert code == 0, err
    (work / "ci-key.txt").write_text(old_key)
    code, _, err = await caller(iam_env, work)
    assert code != 0
    assert "InvalidClientTokenId" in err
