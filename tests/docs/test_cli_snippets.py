"""The ``broker`` commands of README.md and docs/ run as written, each in the directory the page
assumes (a checkout: ``config/`` as shipped, ``.venv/bin/broker``), with ``broker`` on PATH and
nothing else set up but what the page says: README's policy section after tour step 4, the
audit trail's ``verify`` before and after an edit of a row, ``check-config``'s transcripts in
docs/configuration.md, and the offboarding commands of docs/postgresql.md on PostgreSQL."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.support.doc_snippets import ROOT, blocks, runs
from tests.support.postgres import fresh_schema

VENV_BIN = Path(sys.executable).parent
KEK = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY="


def checkout(tmp_path: Path) -> Path:
    """A directory like the repository's root: the shipped config/ and .venv/bin/broker."""
    root = tmp_path / "checkout"
    shutil.copytree(ROOT / "config", root / "config", ignore=shutil.ignore_patterns("examples"))
    (root / ".venv").symlink_to(VENV_BIN.parent)
    return root


def shell(
    script: str, cwd: Path, *, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``script`` in ``bash -euo pipefail`` with ``broker`` on PATH and no BROKER_* settings."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("BROKER_", "GOOGLE_"))}
    environ.update(PATH=f"{VENV_BIN}:/usr/bin:/bin", HOME=str(cwd), **(env or {}))
    r = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=cwd,
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert not check or r.returncode == 0, (script, r.stdout, r.stderr)
    return r


def transcript(block: str) -> list[tuple[str, str]]:
    """A ``console`` block as (command, the output shown after it) pairs."""
    pairs: list[tuple[str, list[str]]] = []
    for line in block.splitlines():
        if line.startswith("$ "):
            pairs.append((line[2:], []))
        else:
            pairs[-1][1].append(line)
    return [(cmd, "\n".join(out).strip("\n")) for cmd, out in pairs]


def output(r: subprocess.CompletedProcess[str]) -> str:
    """What a terminal shows, with broker's stderr notes about a generated KEK left out."""
    err = [line for line in r.stderr.splitlines() if not line.startswith("no [keys].kek")]
    return (r.stdout + "\n".join(err)).strip("\n")


# --- README.md --------------------------------------------------------------------------------

STEP_4 = ("**4. Add a provider", "**5. Check before you start.**")
POLICIES = "## Policies: the engine, the simulator, validation"


@runs("README.md", "sh", section="A five-minute tour", containing="check-config")
@runs("README.md", "sh", section=POLICIES[3:])
def test_readme_step_5_and_the_policy_section_after_step_4(tmp_path: Path) -> None:
    root = checkout(tmp_path)
    [toml] = blocks("README.md", "toml", between=STEP_4)
    trust, access = blocks("README.md", "json", between=STEP_4)
    (root / "config/policies/dev-trust.json").write_text(trust)
    (root / "config/policies/dev-access.json").write_text(access)
    with (root / "config/broker.toml").open("a") as f:
        f.write("\n" + toml)
    google = {"GOOGLE_CLIENT_ID": "id", "GOOGLE_CLIENT_SECRET": "secret"}

    [step_5] = blocks("README.md", "sh", section="A five-minute tour", containing="check-config")
    r = shell(step_5, root, env=google)
    assert r.stdout.startswith("config/broker.toml: OK (2 providers, 2 roles"), r.stdout

    [section] = blocks("README.md", "sh", section=POLICIES[3:])
    r = shell(section, root, env=google)
    # the last command's answer, which the block's last comment states
    assert r.stdout.rstrip().splitlines()[-3:] == [
        "allowed",
        "  Allow user/alice/home statement 0",
        "  Allow policy/S3 statement 0",
    ]
    first = json.loads(r.stdout[: r.stdout.index("\n}\n") + 2])
    assert first["decision"] == "allowed"
    assert first["matched_statements"][0]["sid"] == "Apps"


# --- docs/audit.md ----------------------------------------------------------------------------

AUDIT = "docs/audit.md"


@runs(AUDIT, "sh", section="`broker audit verify`")
def test_audit_verify_as_written_then_the_break_it_shows(tmp_path: Path) -> None:
    root = checkout(tmp_path)
    for group in ("a", "b", "c", "d"):  # four audited changes: rows 1-4
        shell(f"broker admin groups create {group}", root)
    [verify] = blocks(AUDIT, "sh", section="`broker audit verify`")
    r = shell(verify, root)  # both commands exit 0 on the intact chain
    assert r.stdout.startswith("OK: 4 chained rows"), r.stdout
    report = json.loads(r.stdout[r.stdout.index("{") :])
    assert report["ok"] is True
    assert "broken" not in report

    with sqlite3.connect(root / "var/broker.db") as db:
        db.execute("UPDATE audit_events SET reason = 'edited' WHERE id = 3")
    text, as_json = verify.splitlines()
    r = shell(text, root, check=False)
    assert r.returncode == 1
    [shown] = blocks(AUDIT, "text", section="`broker audit verify`")
    assert r.stdout.strip("\n") == shown.strip("\n")
    r = shell(as_json, root, check=False)
    assert r.returncode == 1
    broken = json.loads(r.stdout)["broken"]
    assert (broken["row_id"], broken["kind"]) == (3, "changed")


# --- docs/configuration.md --------------------------------------------------------------------

CONFIGURATION = "docs/configuration.md"
CHECK_CONFIG = "`broker check-config`"


@runs(CONFIGURATION, "console", section=CHECK_CONFIG, containing="config/broker.toml")
def test_check_config_ok_transcript(tmp_path: Path) -> None:
    root = checkout(tmp_path)
    [block] = blocks(CONFIGURATION, "console", section=CHECK_CONFIG, containing="broker.toml: OK")
    for command, shown in transcript(block):
        r = shell(command, root)
        assert output(r) == shown, command


@runs(CONFIGURATION, "console", section=CHECK_CONFIG, containing="9 problem(s)")
def test_check_config_problems_transcript(tmp_path: Path) -> None:
    """The page's broker.toml, beside the role's two documents, without BROKER_KEK."""
    [toml] = blocks(CONFIGURATION, "toml", section=CHECK_CONFIG)
    (tmp_path / "broker.toml").write_text(toml)
    (tmp_path / "policies").mkdir()
    shutil.copy(ROOT / "config/policies/admin-trust.json", tmp_path / "policies/dev-trust.json")
    shutil.copy(ROOT / "config/policies/admin-access.json", tmp_path / "policies/dev.json")
    [block] = blocks(CONFIGURATION, "console", section=CHECK_CONFIG, containing="9 problem(s)")
    [(command, shown)] = transcript(block)
    r = shell(command, tmp_path, check=False)
    assert r.returncode == 2
    assert output(r) == shown


# --- docs/postgresql.md -----------------------------------------------------------------------

POSTGRESQL = "docs/postgresql.md"


@runs(POSTGRESQL, "sh", section="Offboarding")
async def test_offboarding_as_written_on_postgresql(tmp_path: Path) -> None:
    """On a fresh PostgreSQL schema, with the user ``alice`` and the role ``deploy`` the
    commands name; each is audited as the change it makes."""
    root = checkout(tmp_path)
    config = root / "config/broker.toml"
    async with fresh_schema("offboarding") as url:
        text = config.read_text().replace('url = "sqlite:///../var/broker.db"', f'url = "{url}"')
        text = text.replace("[keys]\n", f'[keys]\nkek = "{KEK}"\n')
        text += (
            "\n[roles.deploy]\n"
            'trust_policy = "policies/admin-trust.json"\n'
            'policies = ["policies/admin-access.json"]\n'
        )
        config.write_text(text)
        shell("broker migrate && broker admin users create alice --one-time-password", root)
        [commands] = blocks(POSTGRESQL, "sh", section="Offboarding")
        shell(commands, root)
        r = shell("broker audit list --json --limit 20", root)
        events = json.loads(r.stdout)  # newest first
        assert [(e["action"], e["outcome"]) for e in events[:4]] == [
            ("role.revoke_sessions", "success"),
            ("user.revoke_sessions", "success"),
            ("user.enable", "success"),
            ("user.disable", "success"),
        ]


def test_a_kek_made_as_the_pages_say_is_accepted(tmp_path: Path) -> None:
    """configuration.md and postgresql.md: "generate one with `openssl rand -base64 32`"."""
    for page in ("docs/configuration.md", "docs/postgresql.md"):
        assert "`openssl rand -base64 32`" in (ROOT / page).read_text("utf-8")
    root = checkout(tmp_path)
    config = root / "config/broker.toml"
    config.write_text(config.read_text().replace("[keys]\n", '[keys]\nkek = "${BROKER_KEK}"\n'))
    r = shell(
        'BROKER_KEK="$(openssl rand -base64 32)" broker check-config --config config/broker.toml',
        root,
    )
    assert r.stdout.startswith("config/broker.toml: OK"), r.stdout
