"""docs/reports.md's credentials-report commands, as written: the AWS CLI generates the report
(again until it says COMPLETE, as the comment tells), fetches and decodes it into report.csv, and
``broker report credentials`` writes the same report from the store on the server host (the
config from ``$BROKER_CONFIG``, as its default)."""

from __future__ import annotations

import asyncio
import csv
import io
import sys
from pathlib import Path

from tests.iam.conftest import AWS_CLI, IamEnv
from tests.sts.conftest import aws_env
from tests.support.doc_snippets import blocks, runs

PAGE = "docs/reports.md"
SECTION = "The credentials report"
DOC_URL = "http://127.0.0.1:8000"


async def bash(script: str, cwd: Path, env: dict[str, str]) -> str:
    proc = await asyncio.create_subprocess_exec(
        "bash",
        "-euo",
        "pipefail",
        "-c",
        script,
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode == 0, (script, err.decode())
    return out.decode()


@runs(PAGE, "sh", section=SECTION)
async def test_the_credentials_report_commands_as_written(iam_env: IamEnv, tmp_path: Path) -> None:
    [block] = blocks(PAGE, "sh", section=SECTION)
    generate, get_1, get_2, local = block.replace(DOC_URL, iam_env.url).splitlines()
    creds = await iam_env.credentials("admin")
    env = aws_env(
        tmp_path,
        AWS_ACCESS_KEY_ID=creds["AccessKeyId"],
        AWS_SECRET_ACCESS_KEY=creds["SecretAccessKey"],
        AWS_SESSION_TOKEN=creds["SessionToken"],
        BROKER_CONFIG=str(iam_env.broker.settings.config_path),
    )
    env["PATH"] = f"{Path(AWS_CLI).parent}:{Path(sys.executable).parent}:{env.get('PATH', '')}"
    work = tmp_path / "work"
    work.mkdir()
    for _ in range(300):  # the comment's "until": the report is generated in the background
        if '"COMPLETE"' in await bash(generate, work, env):
            break
        await asyncio.sleep(0.2)
    else:
        raise AssertionError("the credentials report never became COMPLETE")
    await bash(f"{get_1}\n{get_2}\n", work, env)
    from_api = list(csv.reader(io.StringIO((work / "report.csv").read_text())))
    assert from_api[0][:2] == ["user", "arn"]
    assert from_api[1][0] == "<root_account>"

    await bash(local + "\n", work, env)
    from_store = list(csv.reader(io.StringIO((work / "report.csv").read_text())))
    assert from_store[0] == from_api[0]
    assert [row[:2] for row in from_store] == [row[:2] for row in from_api]
