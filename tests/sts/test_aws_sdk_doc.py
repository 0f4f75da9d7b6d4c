"""docs/aws-sdk.md's credential-chain section, run as written (issue 15 item 5): its shell
block with the real AWS CLI and its Python block with boto3, in an environment with no AWS
settings but the ones the page exports, and a token file written by ``echo``."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from tests.conftest import RunningBroker
from tests.sts.conftest import real_id_token
from tests.support.doc_snippets import blocks
from tests.support.oidc_server import OidcServer

PAGE = "docs/aws-sdk.md"
SECTION = "The SDK credential chain, with nothing but environment variables"


def _as_written(text: str, url: str, token_file: Path) -> str:
    return text.replace("https://broker.example.com", url).replace(
        "/var/run/secrets/token", str(token_file)
    )


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
