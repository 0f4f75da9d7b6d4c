"""Run the ``broker`` CLI as a person does: a separate process, with its own config home (the
cache) and HOME, so that tests never read or write the user's ~/.config/broker."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BROKER_CLI = [sys.executable, "-m", "broker.cli"]
ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Run:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def cli_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BROKER_"))}
    home.mkdir(parents=True, exist_ok=True)
    env.update({"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")})
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


async def run_cli(env: dict[str, str], *args: str) -> Run:
    proc = await asyncio.create_subprocess_exec(
        *BROKER_CLI,
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return Run(proc.returncode, out.decode(), err.decode())


class LoginProcess:
    """``broker login --no-browser`` running: the test reads the sign-in URL from its stderr,
    plays the browser, then waits for the process to finish."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.stderr_lines: list[str] = []

    @classmethod
    async def start(cls, env: dict[str, str], *args: str) -> LoginProcess:
        proc = await asyncio.create_subprocess_exec(
            *BROKER_CLI,
            "login",
            "--no-browser",
            *args,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(proc)

    async def line_matching(self, pattern: str) -> re.Match[str]:
        assert self.proc.stderr is not None
        while True:
            raw = await asyncio.wait_for(self.proc.stderr.readline(), 60)
            assert raw, f"broker login ended before printing {pattern!r}: {self.stderr_lines}"
            line = raw.decode()
            self.stderr_lines.append(line)
            m = re.search(pattern, line)
            if m:
                return m

    async def finish(self) -> Run:
        out, err = await asyncio.wait_for(self.proc.communicate(), 60)
        assert self.proc.returncode is not None
        return Run(self.proc.returncode, out.decode(), "".join(self.stderr_lines) + err.decode())
