"""``broker simulate`` and ``broker admin policies validate`` (contract C5)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from broker.cli import main
from tests.conftest import E2E_ROLES, write_config

POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {"Sid": "Read", "Effect": "Allow", "Action": "s3:Get*", "Resource": "arn:aws:s3:::b/*",
         "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}},
        {"Sid": "NoSecret", "Effect": "Deny", "Action": "s3:*",
         "Resource": "arn:aws:s3:::b/secret/*"},
    ],
}  # fmt: skip


def write(path: Path, doc: Any) -> str:
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return str(path)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


SIM: list[tuple[str, list[str], str, list[str]]] = [
    ("allowed", ["--resource", "arn:aws:s3:::b/k", "--context", "aws:SourceIp=10.1.2.3"],
     "allowed", ["Read"]),
    ("deny", ["--resource", "arn:aws:s3:::b/secret/k", "--context", "broker:SourceIp=10.1.2.3"],
     "explicitDeny", ["NoSecret"]),
    ("implicit", ["--resource", "arn:aws:s3:::b/k"], "implicitDeny", []),
]  # fmt: skip


@pytest.mark.parametrize(
    ("extra", "decision", "sids"), [c[1:] for c in SIM], ids=[c[0] for c in SIM]
)
def test_simulate_policy_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], decision: str,
    sids: list[str],
) -> None:  # fmt: skip
    policy = write(tmp_path / "p.json", POLICY)
    code, out, _ = run(
        capsys, "simulate", "--policy", policy, "--action", "s3:GetObject", *extra, "--json"
    )
    assert code == 0
    data = json.loads(out)
    assert data["decision"] == decision
    assert [m["sid"] for m in data["matched_statements"]] == sids
    assert all(m["policy"] == policy for m in data["matched_statements"])


def test_simulate_session_policy_and_list_context(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = write(tmp_path / "p.json", {"Version": "2012-10-17", "Statement": [
        {"Sid": "Tags", "Effect": "Allow", "Action": "s3:*", "Resource": "*",
         "Condition": {"ForAllValues:StringEquals": {"aws:TagKeys": ["a", "b"]}}}]})  # fmt: skip
    session = write(tmp_path / "s.json", {"Version": "2012-10-17", "Statement": [
        {"Sid": "Put", "Effect": "Allow", "Action": "s3:Put*", "Resource": "*"}]})  # fmt: skip
    base = [
        "simulate",
        "--policy",
        policy,
        "--session-policy",
        session,
        "--resource",
        "r",
        "--json",
    ]
    ctx = ["--context", "aws:TagKeys=a", "--context", "aws:TagKeys=b"]
    _, out, _ = run(capsys, *base, "--action", "s3:PutObject", *ctx)
    assert json.loads(out)["decision"] == "allowed"
    _, out, _ = run(capsys, *base, "--action", "s3:GetObject", *ctx)
    assert json.loads(out)["decision"] == "implicitDeny"
    _, out, _ = run(capsys, *base, "--action", "s3:PutObject", *ctx, "--context", "aws:TagKeys=c")
    assert json.loads(out)["decision"] == "implicitDeny"


def test_simulate_a_role(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(
        tmp_path, port=8000, oidc=None, roles={"local-admin": E2E_ROLES["local-admin"]}
    )
    code, out, err = run(capsys, "simulate", "--config", str(config), "--principal", "local-admin",
                         "--action", "iam:CreateUser", "--resource", "*", "--json")  # fmt: skip
    assert code == 0, err
    data = json.loads(out)
    assert data["decision"] == "allowed"
    assert data["matched_statements"][0]["policy"] == "local-admin/policy[0]"
    code, _, err = run(capsys, "simulate", "--config", str(config), "--principal", "nobody",
                       "--action", "iam:CreateUser", "--resource", "*")  # fmt: skip
    assert code == 1
    assert err.strip() == "broker: no role named 'nobody' (unknown_role)"


ERRORS: list[tuple[str, list[str], str]] = [
    ("missing-file", ["--policy", "nope.json"], "cannot read nope.json"),
    ("bad-action", ["--policy", "{p}", "--action", "s3"], "service:Action"),
    ("bad-context", ["--policy", "{p}", "--context", "novalue"], "--context wants key=value"),
    ("nothing", [], "give a principal, a credential or at least one policy"),
    ("bad-policy", ["--policy", "{bad}"], "Statement.Effect"),
]  # fmt: skip


@pytest.mark.parametrize(("argv", "fragment"), [c[1:] for c in ERRORS], ids=[c[0] for c in ERRORS])
def test_simulate_errors_are_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], fragment: str
) -> None:
    p = write(tmp_path / "p.json", POLICY)
    bad = write(
        tmp_path / "bad.json", {"Statement": {"Effect": "Maybe", "Action": "*", "Resource": "*"}}
    )
    argv = [a.format(p=p, bad=bad) for a in argv]
    if "--action" not in argv:
        argv += ["--action", "s3:GetObject"]
    code, out, err = run(capsys, "simulate", *argv, "--resource", "x")
    assert code != 0
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    assert fragment in err


def test_validate_errors_exit_nonzero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = write(tmp_path / "bad.json", {"Statement": [{"Effect": "Allw", "Action": "s3:*",
        "Resource": "*", "Condition": {"StringEqual": {"k:a": "x"}}}]})  # fmt: skip
    code, out, _ = run(capsys, "admin", "policies", "validate", bad)
    assert code == 1
    lines = out.splitlines()
    assert lines[0].startswith(f"{bad}: error: Statement[0].Effect: ")
    assert "(fix: Did you mean StringEquals?)" in lines[1]
    assert lines[-1] == f"{bad}: 2 error(s), 0 warning(s) (identity policy)"


def test_validate_warnings_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trust = write(tmp_path / "t.json", {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Federated": "github"},
         "Action": "sts:AssumeRoleWithWebIdentity"}]})  # fmt: skip
    code, out, _ = run(capsys, "admin", "policies", "validate", trust, "--json")
    assert code == 0
    data = json.loads(out)
    assert (data["kind"], data["ok"], data["errors"]) == ("trust", True, [])
    assert [w["code"] for w in data["warnings"]] == ["FEDERATED_TRUST_WITHOUT_SUB_OR_AUD"]
    assert data["warnings"][0]["path"] == "Statement[0]"
    assert data["warnings"][0]["fix"]


def test_check_config_prints_warnings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(
        tmp_path, port=8000, oidc=None, roles={"local-admin": E2E_ROLES["local-admin"]}
    )
    code, out, err = run(capsys, "check-config", "--config", str(config))
    assert code == 0, err
    assert "STAR_ACTION_ON_STAR_RESOURCE" in out  # the test roles' access policy is "*" on "*"
    code, out, _ = run(capsys, "check-config", "--config", str(config), "--json")
    assert any("STAR_ACTION_ON_STAR_RESOURCE" in w for w in json.loads(out)["warnings"])
