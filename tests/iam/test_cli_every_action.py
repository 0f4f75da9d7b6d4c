"""Every IAM action the broker registers, driven unchanged by the real AWS CLI.

``PHASES`` is one table, in order: each row runs ``aws iam <action as the CLI spells it>`` with
the row's arguments, against one broker, as the ``admin`` role (``iam:*``) or ``nobody`` (no IAM
permission); a row either checks the answer's key fields or expects a refusal whose text names
the error code. The test fails unless every action in ``all_actions()`` has at least one
successful row and one refused row, so a new action without a CLI case fails it. The rows
of one phase run together, a few at a time; a phase starts once the one before it has
finished, so each row sees the state the phases above it made.

Further down: session policies narrow ``iam:*`` (credentials from ``aws sts assume-role
--policy`` that allows only ``iam:Get*`` are refused ``CreateUser``, audited), and an IAM call
signed with credential scope service ``sts`` is refused.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyotp
import pytest
from aiohttp import web
from botocore import xform_name
from pytest_aiohttp import AiohttpServer

from broker.clock import FrozenClock
from broker.service.iam_api import all_actions
from tests.iam.conftest import (
    IamEnv,
    advance,
    allow,
    iam_roles,
    policy,
    start_iam_env,
)
from tests.iam.users_support import form, raw_iam
from tests.sts.conftest import ACCOUNT, RoleSpec, chain_trust

ARN = f"arn:broker:iam::{ACCOUNT}"
POLICY_ARN = f"{ARN}:policy/cli-p"
MISSING_POLICY = f"{ARN}:policy/no-such-policy"
PROVIDER_URL = "https://cli.example.com"
PROVIDER_ARN = f"{ARN}:oidc-provider/cli.example.com"
MISSING_PROVIDER = f"{ARN}:oidc-provider/missing.example.com"
SERIAL = f"{ARN}:mfa/cli-mfa"
THUMB = "a" * 40
NO_KEY = "AKIA" + "Z" * 16
PASSWORD = "correct horse battery 9"


def doc(*actions: str) -> str:
    return json.dumps(policy(allow(list(actions))))


DOC = doc("s3:GetObject")
DOC2 = doc("s3:GetObject", "s3:ListBucket")
BROKEN = '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow"'
TRUST = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Federated": "fake"},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {"StringEquals": {"fake:sub": "cli"}},
            }
        ],
    }
)
NO_PRINCIPAL = doc("sts:AssumeRoleWithWebIdentity")  # a trust policy must name its principal

Out = dict[str, Any]
State = dict[str, str]


@dataclass(frozen=True)
class Step:
    """``aws iam <action> <args>``: ``check`` the answer, or expect ``error`` (its code).

    An argument ``@name`` is ``state["@name"]``; ``save`` adds to the state from the answer;
    ``before`` runs first (to move the broker's clock, to compute MFA codes)."""

    action: str
    args: tuple[str, ...] = ()
    check: Callable[[Out], object] | None = None
    error: str | None = None
    caller: str = "admin"
    save: Callable[[Out], State] | None = None
    before: Callable[[Run], Awaitable[None]] | None = None


def ok(
    action: str,
    *args: str,
    check: Callable[[Out], object] = lambda out: out == {},
    save: Callable[[Out], State] | None = None,
    before: Callable[[Run], Awaitable[None]] | None = None,
) -> Step:
    return Step(action, args, check=check, save=save, before=before)


def refused(action: str, code: str, *args: str, caller: str = "admin") -> Step:
    return Step(action, args, error=code, caller=caller)


def denied(action: str, *args: str) -> Step:
    """Refused to the ``nobody`` role, which has no IAM permission."""
    return refused(action, "AccessDenied", *args, caller="nobody")


def names(items: list[Out], key: str) -> list[str]:
    return [str(i[key]) for i in items]


def tags(out: Out) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in out["Tags"]}


@dataclass
class Run:
    env: IamEnv
    clock: FrozenClock
    creds: dict[str, dict[str, str]]
    work: Path
    state: State = field(default_factory=dict)

    async def sync_clock(self) -> None:
        """The frozen broker clock catches up with the wall clock the CLI signs with."""
        await advance(self.env, self.clock, max(0.0, time.time() - self.clock.now()))

    def otp(self) -> pyotp.TOTP:
        return pyotp.TOTP((self.work / "seed.txt").read_text().strip())


async def enable_codes(run: Run) -> None:
    """Two consecutive codes of the device, the second current."""
    await run.sync_clock()
    now, otp = run.clock.now(), run.otp()
    run.state["@code1"], run.state["@code2"] = otp.at(now - 30), otp.at(now)


async def resync_codes(run: Run) -> None:
    """Two consecutive codes later than the ones enabling used: a minute and a half on."""
    await advance(run.env, run.clock, 90)
    now, otp = run.clock.now(), run.otp()
    run.state["@code1"], run.state["@code2"] = otp.at(now - 30), otp.at(now)


async def report_built(run: Run) -> None:
    """The credential report generation an earlier phase started has finished."""
    reports = run.env.broker.broker.iam_api.reports
    for _ in range(400):
        if await reports.generate(actor="test") == "COMPLETE":
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the credential report was never built")


def on_provider(action: str, *more: str, arn: str = PROVIDER_ARN, **kw: Any) -> Step:
    return ok(action, "--open-id-connect-provider-arn", arn, *more, **kw)


def codes(user: str, first: str = "@code1", second: str = "@code2") -> tuple[str, ...]:
    return (
        "--user-name",
        user,
        "--serial-number",
        SERIAL,
        "--authentication-code1",
        first,
        "--authentication-code2",
        second,
    )


KINDS = (("User", "cli-u"), ("Group", "cli-g"), ("Role", "cli-r"))

# Each phase's rows run together (a few at a time); a phase starts once the one before it has
# finished. Rows of one phase never depend on each other.
PHASES: list[list[Step]] = [
    [refused("GetCredentialReport", "ReportNotPresent")],
    # --- create ---------------------------------------------------------------------------
    [
        ok(
            "CreateUser",
            "--user-name",
            "cli-u",
            "--tags",
            "Key=team,Value=a",
            check=lambda out: (
                out["User"]["UserName"] == "cli-u"
                and out["User"]["Arn"] == f"{ARN}:user/cli-u"
                and out["User"]["UserId"].startswith("AIDA")
            ),
        ),
        ok("CreateUser", "--user-name", "cli-v", check=lambda o: o["User"]["UserName"] == "cli-v"),
        ok(
            "CreateGroup",
            "--group-name",
            "cli-g",
            check=lambda out: out["Group"]["Arn"] == f"{ARN}:group/cli-g",
        ),
        ok(
            "CreateGroup",
            "--group-name",
            "cli-h",
            check=lambda o: o["Group"]["GroupName"] == "cli-h",
        ),
        ok(
            "CreateRole",
            "--role-name",
            "cli-r",
            "--assume-role-policy-document",
            TRUST,
            check=lambda out: (
                out["Role"]["Arn"] == f"{ARN}:role/cli-r"
                and out["Role"]["RoleId"].startswith("AROA")
                and out["Role"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]
                == {"Federated": "fake"}
            ),
        ),
        ok(
            "CreatePolicy",
            "--policy-name",
            "cli-p",
            "--policy-document",
            DOC,
            check=lambda out: (
                out["Policy"]["Arn"] == POLICY_ARN and out["Policy"]["DefaultVersionId"] == "v1"
            ),
        ),
        ok(
            "CreateOpenIDConnectProvider",
            "--url",
            PROVIDER_URL,
            "--client-id-list",
            "a",
            "--thumbprint-list",
            THUMB,
            check=lambda out: out["OpenIDConnectProviderArn"] == PROVIDER_ARN,
        ),
        ok(
            "CreateVirtualMFADevice",
            "--virtual-mfa-device-name",
            "cli-mfa",
            "--outfile",
            "@seedfile",
            "--bootstrap-method",
            "Base32StringSeed",
            check=lambda out: out["VirtualMFADevice"]["SerialNumber"] == SERIAL,
        ),
        refused(
            "CreateRole",
            "MalformedPolicyDocument",
            "--role-name",
            "cli-r2",
            "--assume-role-policy-document",
            NO_PRINCIPAL,
        ),
        refused("CreateAccessKey", "NoSuchEntity", "--user-name", "no-such-user"),
    ],
    # --- read what was created; the account as a whole; refusals of every kind ------------
    [
        ok(
            "CreateAccessKey",
            "--user-name",
            "cli-u",
            check=lambda out: (
                out["AccessKey"]["AccessKeyId"].startswith("AKIA")
                and out["AccessKey"]["Status"] == "Active"
                and len(out["AccessKey"]["SecretAccessKey"]) == 40
            ),
            save=lambda out: {"@key": out["AccessKey"]["AccessKeyId"]},
        ),
        ok(
            "GetUser",
            "--user-name",
            "cli-u",
            check=lambda out: out["User"]["Arn"] == f"{ARN}:user/cli-u",
        ),
        ok("ListUsers", check=lambda o: {"cli-u", "cli-v"} <= set(names(o["Users"], "UserName"))),
        ok("GetGroup", "--group-name", "cli-g", check=lambda o: o["Group"]["GroupName"] == "cli-g"),
        ok("ListGroups", check=lambda o: names(o["Groups"], "GroupName") == ["cli-g", "cli-h"]),
        ok("GetRole", "--role-name", "cli-r", check=lambda o: o["Role"]["RoleName"] == "cli-r"),
        ok("ListRoles", check=lambda o: {"admin", "cli-r"} <= set(names(o["Roles"], "RoleName"))),
        ok(
            "GetPolicy",
            "--policy-arn",
            POLICY_ARN,
            check=lambda out: (
                out["Policy"]["PolicyName"] == "cli-p" and out["Policy"]["AttachmentCount"] == 0
            ),
        ),
        ok(
            "ListPolicies",
            "--scope",
            "Local",
            check=lambda out: names(out["Policies"], "PolicyName") == ["cli-p"],
        ),
        on_provider(
            "GetOpenIDConnectProvider",
            check=lambda out: (
                out["Url"] == "cli.example.com"
                and out["ClientIDList"] == ["a"]
                and out["ThumbprintList"] == [THUMB]
            ),
        ),
        ok(
            "ListOpenIDConnectProviders",
            check=lambda out: PROVIDER_ARN in names(out["OpenIDConnectProviderList"], "Arn"),
        ),
        ok(
            "ListVirtualMFADevices",
            "--assignment-status",
            "Unassigned",
            check=lambda out: names(out["VirtualMFADevices"], "SerialNumber") == [SERIAL],
        ),
        ok("GetAccountSummary", check=lambda out: out["SummaryMap"]["Users"] >= 2),
        ok(
            "GetAccountAuthorizationDetails",
            check=lambda out: (
                "cli-u" in names(out["UserDetailList"], "UserName")
                and "cli-r" in names(out["RoleDetailList"], "RoleName")
            ),
        ),
        ok(
            "SimulatePrincipalPolicy",
            "--policy-source-arn",
            f"{ARN}:role/admin",
            "--action-names",
            "iam:CreateUser",
            check=lambda o: [r["EvalDecision"] for r in o["EvaluationResults"]] == ["allowed"],
        ),
        ok(
            "SimulateCustomPolicy",
            "--policy-input-list",
            DOC,
            "--action-names",
            "s3:GetObject",
            "s3:PutObject",
            check=lambda out: (
                [r["EvalDecision"] for r in out["EvaluationResults"]] == ["allowed", "implicitDeny"]
            ),
        ),
        ok(
            "GenerateServiceLastAccessedDetails",
            "--arn",
            f"{ARN}:role/admin",
            check=lambda out: len(out["JobId"]) == 36,
            save=lambda out: {"@job": out["JobId"]},
        ),
        ok("GenerateCredentialReport", check=lambda o: o["State"] in ("STARTED", "COMPLETE")),
        refused("CreateUser", "EntityAlreadyExists", "--user-name", "cli-u"),
        refused("CreateGroup", "EntityAlreadyExists", "--group-name", "cli-g"),
        refused(
            "CreatePolicy",
            "EntityAlreadyExists",
            "--policy-name",
            "cli-p",
            "--policy-document",
            DOC,
        ),
        refused("CreateOpenIDConnectProvider", "EntityAlreadyExists", "--url", PROVIDER_URL),
        refused(
            "CreateVirtualMFADevice",
            "EntityAlreadyExists",
            "--virtual-mfa-device-name",
            "cli-mfa",
            "--outfile",
            "@otherfile",
            "--bootstrap-method",
            "Base32StringSeed",
        ),
        refused("GetUser", "NoSuchEntity", "--user-name", "no-such-user"),
        denied("ListUsers"),
        refused("GetGroup", "NoSuchEntity", "--group-name", "no-such-group"),
        denied("ListGroups"),
        refused("GetRole", "NoSuchEntity", "--role-name", "no-such-role"),
        denied("ListRoles"),
        refused("GetPolicy", "NoSuchEntity", "--policy-arn", MISSING_POLICY),
        denied("ListPolicies"),
        *(
            refused(
                action, "NoSuchEntity", "--open-id-connect-provider-arn", MISSING_PROVIDER, *more
            )
            for action, more in (
                ("GetOpenIDConnectProvider", ()),
                ("AddClientIDToOpenIDConnectProvider", ("--client-id", "c")),
                ("RemoveClientIDFromOpenIDConnectProvider", ("--client-id", "b")),
                ("UpdateOpenIDConnectProviderThumbprint", ("--thumbprint-list", THUMB)),
                ("TagOpenIDConnectProvider", ("--tags", "Key=k,Value=v")),
                ("UntagOpenIDConnectProvider", ("--tag-keys", "k")),
                ("ListOpenIDConnectProviderTags", ()),
                ("DeleteOpenIDConnectProvider", ()),
            )
        ),
        denied("ListOpenIDConnectProviders"),
        denied("ListVirtualMFADevices"),
        refused("ListAccessKeys", "NoSuchEntity", "--user-name", "no-such-user"),
        refused("GetAccessKeyLastUsed", "NoSuchEntity", "--access-key-id", NO_KEY),
        refused(
            "UpdateAccessKey",
            "NoSuchEntity",
            "--user-name",
            "cli-u",
            "--access-key-id",
            NO_KEY,
            "--status",
            "Active",
        ),
        denied("GetAccountSummary"),
        denied("GetAccountAuthorizationDetails"),
        refused(
            "SimulatePrincipalPolicy",
            "NoSuchEntity",
            "--policy-source-arn",
            f"{ARN}:role/no-such-role",
            "--action-names",
            "iam:GetUser",
        ),
        refused(
            "SimulateCustomPolicy",
            "MalformedPolicyDocument",
            "--policy-input-list",
            BROKEN,
            "--action-names",
            "s3:GetObject",
        ),
        refused(
            "GenerateServiceLastAccessedDetails",
            "NoSuchEntity",
            "--arn",
            f"{ARN}:role/no-such-role",
        ),
        refused("GetServiceLastAccessedDetails", "NoSuchEntity", "--job-id", str(uuid.uuid4())),
        denied("GenerateCredentialReport"),
        refused("EnableMFADevice", "NoSuchEntity", *codes("no-such-user", "123456", "234567")),
        refused("ResyncMFADevice", "NoSuchEntity", *codes("no-such-user", "123456", "234567")),
        refused("ListMFADevices", "NoSuchEntity", "--user-name", "no-such-user"),
        refused(
            "DeactivateMFADevice",
            "NoSuchEntity",
            "--user-name",
            "no-such-user",
            "--serial-number",
            SERIAL,
        ),
    ],
    # --- first changes ----------------------------------------------------------------------
    [
        ok(
            "ListAccessKeys",
            "--user-name",
            "cli-u",
            check=lambda out: (
                [(k["UserName"], k["Status"]) for k in out["AccessKeyMetadata"]]
                == [("cli-u", "Active")]
            ),
        ),
        ok(
            "GetAccessKeyLastUsed",
            "--access-key-id",
            "@key",
            check=lambda out: out["UserName"] == "cli-u" and "AccessKeyLastUsed" in out,
        ),
        ok(
            "GetServiceLastAccessedDetails",
            "--job-id",
            "@job",
            check=lambda out: (
                out["JobStatus"] == "COMPLETED"
                and "iam" in names(out["ServicesLastAccessed"], "ServiceNamespace")
            ),
        ),
        ok(
            "GetCredentialReport",
            before=report_built,
            check=lambda out: (
                out["ReportFormat"] == "text/csv" and b"cli-u" in base64.b64decode(out["Content"])
            ),
        ),
        ok("UpdateUser", "--user-name", "cli-v", "--new-user-name", "cli-w"),
        ok("UpdateGroup", "--group-name", "cli-h", "--new-group-name", "cli-h2"),
        ok("AddUserToGroup", "--group-name", "cli-g", "--user-name", "cli-u"),
        ok(
            "CreateLoginProfile",
            "--user-name",
            "cli-u",
            "--password",
            PASSWORD,
            check=lambda out: out["LoginProfile"]["UserName"] == "cli-u",
        ),
        ok("TagUser", "--user-name", "cli-u", "--tags", "Key=env,Value=dev"),
        ok("TagRole", "--role-name", "cli-r", "--tags", "Key=env,Value=dev", "Key=team,Value=b"),
        ok("UpdateRole", "--role-name", "cli-r", "--max-session-duration", "7200"),
        ok(
            "CreatePolicyVersion",
            "--policy-arn",
            POLICY_ARN,
            "--policy-document",
            DOC2,
            check=lambda out: (
                out["PolicyVersion"]["VersionId"] == "v2"
                and out["PolicyVersion"]["IsDefaultVersion"] is False
            ),
        ),
        on_provider("AddClientIDToOpenIDConnectProvider", "--client-id", "b"),
        on_provider("UpdateOpenIDConnectProviderThumbprint", "--thumbprint-list", "b" * 40),
        on_provider("TagOpenIDConnectProvider", "--tags", "Key=team,Value=a", "Key=env,Value=dev"),
        ok("EnableMFADevice", *codes("cli-u"), before=enable_codes),
    ],
    [
        ok("UntagUser", "--user-name", "cli-u", "--tag-keys", "team"),
        ok("UntagRole", "--role-name", "cli-r", "--tag-keys", "team"),
        ok("UpdateLoginProfile", "--user-name", "cli-u", "--password-reset-required"),
        ok(
            "UpdateRoleDescription",
            "--role-name",
            "cli-r",
            "--description",
            "made by the CLI",
            check=lambda out: (
                out["Role"]["Description"] == "made by the CLI"
                and out["Role"]["MaxSessionDuration"] == 7200
            ),
        ),
        ok(
            "GetPolicyVersion",
            "--policy-arn",
            POLICY_ARN,
            "--version-id",
            "v2",
            check=lambda out: (
                out["PolicyVersion"]["Document"]["Statement"][0]["Action"]
                == ["s3:GetObject", "s3:ListBucket"]
            ),
        ),
        ok(
            "ListPolicyVersions",
            "--policy-arn",
            POLICY_ARN,
            check=lambda o: (
                sorted((v["VersionId"], v["IsDefaultVersion"]) for v in o["Versions"])
                == [("v1", True), ("v2", False)]
            ),
        ),
        on_provider("RemoveClientIDFromOpenIDConnectProvider", "--client-id", "a"),
        on_provider("UntagOpenIDConnectProvider", "--tag-keys", "team"),
        ok("ResyncMFADevice", *codes("cli-u"), before=resync_codes),
        ok(
            "UpdateAccessKey",
            "--user-name",
            "cli-u",
            "--access-key-id",
            "@key",
            "--status",
            "Inactive",
        ),
        ok(
            "GetGroup",
            "--group-name",
            "cli-g",
            check=lambda o: names(o["Users"], "UserName") == ["cli-u"],
        ),
        ok(
            "ListGroupsForUser",
            "--user-name",
            "cli-u",
            check=lambda out: names(out["Groups"], "GroupName") == ["cli-g"],
        ),
        ok("ListGroups", check=lambda o: names(o["Groups"], "GroupName") == ["cli-g", "cli-h2"]),
        ok("GetUser", "--user-name", "cli-w", check=lambda o: o["User"]["UserName"] == "cli-w"),
        refused(
            "UpdateUser", "EntityAlreadyExists", "--user-name", "cli-w", "--new-user-name", "cli-u"
        ),
        refused(
            "UpdateGroup", "NoSuchEntity", "--group-name", "cli-h", "--new-group-name", "cli-h3"
        ),
        refused(
            "AddUserToGroup", "NoSuchEntity", "--group-name", "cli-g", "--user-name", "nobody-x"
        ),
        refused(
            "CreateLoginProfile",
            "EntityAlreadyExists",
            "--user-name",
            "cli-u",
            "--password",
            PASSWORD,
        ),
        refused(
            "UpdateLoginProfile",
            "PasswordPolicyViolation",
            "--user-name",
            "cli-u",
            "--password",
            "x",
        ),
        refused("GetLoginProfile", "NoSuchEntity", "--user-name", "cli-w"),
        refused("ListGroupsForUser", "NoSuchEntity", "--user-name", "no-such-user"),
        refused(
            "TagUser", "NoSuchEntity", "--user-name", "no-such-user", "--tags", "Key=k,Value=v"
        ),
        refused("UntagUser", "NoSuchEntity", "--user-name", "no-such-user", "--tag-keys", "k"),
        refused("ListUserTags", "NoSuchEntity", "--user-name", "no-such-user"),
        refused("TagRole", "UnmodifiableEntity", "--role-name", "admin", "--tags", "Key=k,Value=v"),
        refused("UntagRole", "UnmodifiableEntity", "--role-name", "admin", "--tag-keys", "k"),
        refused("ListRoleTags", "NoSuchEntity", "--role-name", "no-such-role"),
        refused("DeleteUser", "DeleteConflict", "--user-name", "cli-u"),
        refused("DeleteGroup", "DeleteConflict", "--group-name", "cli-g"),
        refused("UpdateRole", "UnmodifiableEntity", "--role-name", "admin", "--description", "x"),
        refused(
            "UpdateRoleDescription",
            "NoSuchEntity",
            "--role-name",
            "no-such-role",
            "--description",
            "x",
        ),
        refused(
            "UpdateAssumeRolePolicy",
            "MalformedPolicyDocument",
            "--role-name",
            "cli-r",
            "--policy-document",
            NO_PRINCIPAL,
        ),
        refused(
            "CreatePolicyVersion",
            "MalformedPolicyDocument",
            "--policy-arn",
            POLICY_ARN,
            "--policy-document",
            BROKEN,
        ),
        refused(
            "GetPolicyVersion", "NoSuchEntity", "--policy-arn", POLICY_ARN, "--version-id", "v9"
        ),
        refused("ListPolicyVersions", "NoSuchEntity", "--policy-arn", MISSING_POLICY),
        refused(
            "SetDefaultPolicyVersion",
            "NoSuchEntity",
            "--policy-arn",
            POLICY_ARN,
            "--version-id",
            "v9",
        ),
        refused(
            "DeletePolicyVersion",
            "DeleteConflict",
            "--policy-arn",
            POLICY_ARN,
            "--version-id",
            "v1",
        ),
        refused("DeletePolicy", "DeleteConflict", "--policy-arn", POLICY_ARN),  # two versions
    ],
    [
        ok(
            "GetLoginProfile",
            "--user-name",
            "cli-u",
            check=lambda out: (
                out["LoginProfile"]["UserName"] == "cli-u"
                and out["LoginProfile"]["PasswordResetRequired"] is True
            ),
        ),
        ok("ListUserTags", "--user-name", "cli-u", check=lambda out: tags(out) == {"env": "dev"}),
        ok("ListRoleTags", "--role-name", "cli-r", check=lambda out: tags(out) == {"env": "dev"}),
        ok(
            "UpdateAssumeRolePolicy",
            "--role-name",
            "cli-r",
            "--policy-document",
            TRUST.replace('"cli"', '"cli-2"'),
        ),
        ok("SetDefaultPolicyVersion", "--policy-arn", POLICY_ARN, "--version-id", "v2"),
        on_provider(
            "GetOpenIDConnectProvider",
            check=lambda o: o["ClientIDList"] == ["b"] and o["ThumbprintList"] == ["b" * 40],
        ),
        on_provider("ListOpenIDConnectProviderTags", check=lambda out: tags(out) == {"env": "dev"}),
        ok(
            "ListMFADevices",
            "--user-name",
            "cli-u",
            check=lambda out: names(out["MFADevices"], "SerialNumber") == [SERIAL],
        ),
        refused("DeleteVirtualMFADevice", "DeleteConflict", "--serial-number", SERIAL),  # enabled
        ok(
            "ListAccessKeys",
            "--user-name",
            "cli-u",
            check=lambda out: [k["Status"] for k in out["AccessKeyMetadata"]] == ["Inactive"],
        ),
        ok("DeleteUser", "--user-name", "cli-w"),
        ok("DeleteGroup", "--group-name", "cli-h2"),
    ],
    [
        ok(
            "GetRole",
            "--role-name",
            "cli-r",
            check=lambda out: (
                out["Role"]["AssumeRolePolicyDocument"]["Statement"][0]["Condition"]
                == {"StringEquals": {"fake:sub": "cli-2"}}
            ),
        ),
        ok("DeletePolicyVersion", "--policy-arn", POLICY_ARN, "--version-id", "v1"),
        ok("DeleteLoginProfile", "--user-name", "cli-u"),
        on_provider("DeleteOpenIDConnectProvider"),
        ok("DeactivateMFADevice", "--user-name", "cli-u", "--serial-number", SERIAL),
        ok("DeleteAccessKey", "--user-name", "cli-u", "--access-key-id", "@key"),
    ],
    # --- attachments, inline policies, boundaries -----------------------------------------
    [
        ok(
            "GetPolicy",
            "--policy-arn",
            POLICY_ARN,
            check=lambda o: o["Policy"]["DefaultVersionId"] == "v2",
        ),
        refused("DeleteLoginProfile", "NoSuchEntity", "--user-name", "cli-u"),
        refused(
            "GetOpenIDConnectProvider",
            "NoSuchEntity",
            "--open-id-connect-provider-arn",
            PROVIDER_ARN,
        ),
        refused(
            "DeleteAccessKey", "NoSuchEntity", "--user-name", "cli-u", "--access-key-id", "@key"
        ),
        ok("DeleteVirtualMFADevice", "--serial-number", SERIAL),
        ok("AttachUserPolicy", "--user-name", "cli-u", "--policy-arn", POLICY_ARN),
        ok("AttachGroupPolicy", "--group-name", "cli-g", "--policy-arn", POLICY_ARN),
        ok("AttachRolePolicy", "--role-name", "cli-r", "--policy-arn", POLICY_ARN),
        *(
            ok(
                f"Put{k}Policy",
                f"--{k.lower()}-name",
                n,
                "--policy-name",
                "inl",
                "--policy-document",
                DOC,
            )
            for k, n in KINDS
        ),
        ok(
            "PutUserPermissionsBoundary",
            "--user-name",
            "cli-u",
            "--permissions-boundary",
            POLICY_ARN,
        ),
        ok(
            "PutRolePermissionsBoundary",
            "--role-name",
            "cli-r",
            "--permissions-boundary",
            POLICY_ARN,
        ),
    ],
    [
        refused("DeleteVirtualMFADevice", "NoSuchEntity", "--serial-number", SERIAL),
        *(
            ok(
                f"ListAttached{k}Policies",
                f"--{k.lower()}-name",
                n,
                check=lambda out: names(out["AttachedPolicies"], "PolicyArn") == [POLICY_ARN],
            )
            for k, n in KINDS
        ),
        *(
            ok(
                f"Get{k}Policy",
                f"--{k.lower()}-name",
                n,
                "--policy-name",
                "inl",
                check=lambda out: (
                    out["PolicyName"] == "inl"
                    and out["PolicyDocument"]["Statement"][0]["Action"] == ["s3:GetObject"]
                ),
            )
            for k, n in KINDS
        ),
        *(
            ok(
                f"List{k}Policies",
                f"--{k.lower()}-name",
                n,
                check=lambda out: out["PolicyNames"] == ["inl"],
            )
            for k, n in KINDS
        ),
        ok(
            "ListEntitiesForPolicy",
            "--policy-arn",
            POLICY_ARN,
            "--policy-usage-filter",
            "PermissionsPolicy",
            check=lambda out: (
                names(out["PolicyUsers"], "UserName") == ["cli-u"]
                and names(out["PolicyGroups"], "GroupName") == ["cli-g"]
                and names(out["PolicyRoles"], "RoleName") == ["cli-r"]
            ),
        ),
        ok(
            "GetUser",
            "--user-name",
            "cli-u",
            check=lambda out: (
                out["User"]["PermissionsBoundary"]["PermissionsBoundaryArn"] == POLICY_ARN
            ),
        ),
        ok(
            "GetRole",
            "--role-name",
            "cli-r",
            check=lambda out: (
                out["Role"]["PermissionsBoundary"]["PermissionsBoundaryArn"] == POLICY_ARN
            ),
        ),
        refused(
            "AttachUserPolicy",
            "NoSuchEntity",
            "--user-name",
            "cli-u",
            "--policy-arn",
            MISSING_POLICY,
        ),
        refused(
            "AttachGroupPolicy",
            "NoSuchEntity",
            "--group-name",
            "no-such-group",
            "--policy-arn",
            POLICY_ARN,
        ),
        refused(
            "AttachRolePolicy",
            "UnmodifiableEntity",
            "--role-name",
            "admin",
            "--policy-arn",
            POLICY_ARN,
        ),
        *(
            refused(
                f"Put{k}Policy",
                "MalformedPolicyDocument",
                f"--{k.lower()}-name",
                n,
                "--policy-name",
                "bad",
                "--policy-document",
                BROKEN,
            )
            for k, n in KINDS[:2]
        ),
        # a config role (the bootstrap admin's too) is read-only: not even the console's
        # "revoke sessions" policy (broker admin roles revoke-sessions does that)
        refused(
            "PutRolePolicy",
            "UnmodifiableEntity",
            "--role-name",
            "admin",
            "--policy-name",
            "AWSRevokeOlderSessions",
            "--policy-document",
            DOC,
        ),
        refused(
            "PutUserPermissionsBoundary",
            "NoSuchEntity",
            "--user-name",
            "cli-u",
            "--permissions-boundary",
            MISSING_POLICY,
        ),
        refused(
            "PutRolePermissionsBoundary",
            "UnmodifiableEntity",
            "--role-name",
            "admin",
            "--permissions-boundary",
            POLICY_ARN,
        ),
        *(
            refused(f"ListAttached{k}Policies", "NoSuchEntity", f"--{k.lower()}-name", "no-such")
            for k, _ in KINDS
        ),
        *(
            refused(
                f"Get{k}Policy",
                "NoSuchEntity",
                f"--{k.lower()}-name",
                n,
                "--policy-name",
                "no-such-policy",
            )
            for k, n in KINDS
        ),
        *(
            refused(f"List{k}Policies", "NoSuchEntity", f"--{k.lower()}-name", "no-such")
            for k, _ in KINDS
        ),
        refused("ListEntitiesForPolicy", "NoSuchEntity", "--policy-arn", MISSING_POLICY),
        refused("DeletePolicy", "DeleteConflict", "--policy-arn", POLICY_ARN),  # attached
        refused("DeleteRole", "DeleteConflict", "--role-name", "cli-r"),  # has policies
    ],
    [
        *(
            ok(f"Detach{k}Policy", f"--{k.lower()}-name", n, "--policy-arn", POLICY_ARN)
            for k, n in KINDS
        ),
        *(
            ok(f"Delete{k}Policy", f"--{k.lower()}-name", n, "--policy-name", "inl")
            for k, n in KINDS
        ),
        ok("DeleteUserPermissionsBoundary", "--user-name", "cli-u"),
        ok("DeleteRolePermissionsBoundary", "--role-name", "cli-r"),
        ok("RemoveUserFromGroup", "--group-name", "cli-g", "--user-name", "cli-u"),
    ],
    [
        refused(
            "DetachUserPolicy",
            "NoSuchEntity",
            "--user-name",
            "no-such",
            "--policy-arn",
            POLICY_ARN,
        ),
        refused(
            "DetachGroupPolicy",
            "NoSuchEntity",
            "--group-name",
            "no-such",
            "--policy-arn",
            POLICY_ARN,
        ),
        refused(
            "DetachRolePolicy",
            "UnmodifiableEntity",
            "--role-name",
            "admin",
            "--policy-arn",
            POLICY_ARN,
        ),
        *(
            refused(
                f"Delete{k}Policy",
                "NoSuchEntity",
                f"--{k.lower()}-name",
                n,
                "--policy-name",
                "inl",
            )
            for k, n in KINDS
        ),
        refused("DeleteUserPermissionsBoundary", "NoSuchEntity", "--user-name", "cli-u"),
        refused("DeleteRolePermissionsBoundary", "NoSuchEntity", "--role-name", "cli-r"),
        refused(
            "RemoveUserFromGroup",
            "NoSuchEntity",
            "--group-name",
            "no-such",
            "--user-name",
            "cli-u",
        ),
        ok(
            "ListEntitiesForPolicy",
            "--policy-arn",
            POLICY_ARN,
            check=lambda o: o["PolicyUsers"] == o["PolicyGroups"] == o["PolicyRoles"] == [],
        ),
    ],
    # --- what is left goes ----------------------------------------------------------------
    [
        ok("DeletePolicy", "--policy-arn", POLICY_ARN),
        ok("DeleteRole", "--role-name", "cli-r"),
        ok("DeleteGroup", "--group-name", "cli-g"),
        ok("DeleteUser", "--user-name", "cli-u"),
        refused("DeleteRole", "UnmodifiableEntity", "--role-name", "admin"),
    ],
    [
        refused("DeletePolicy", "NoSuchEntity", "--policy-arn", POLICY_ARN),
        refused("DeleteGroup", "NoSuchEntity", "--group-name", "cli-g"),
        ok("ListUsers", check=lambda out: "cli-u" not in names(out["Users"], "UserName")),
        ok("ListRoles", check=lambda out: "cli-r" not in names(out["Roles"], "RoleName")),
    ],
]
STEPS = [step for phase in PHASES for step in phase]

REGISTERED = {a.name: a for a in all_actions()}


def test_every_registered_action_has_a_cli_row_and_a_refused_row() -> None:
    assert {s.action for s in STEPS} <= set(REGISTERED), "rows for actions not registered"
    assert sorted(set(REGISTERED) - {s.action for s in STEPS if s.error is None}) == []
    assert sorted(set(REGISTERED) - {s.action for s in STEPS if s.error is not None}) == []


@pytest.fixture
async def env(
    tmp_path: Path,
    aiohttp_server: AiohttpServer,
    runners: list[web.AppRunner],
    monkeypatch: pytest.MonkeyPatch,
    clock: FrozenClock,
) -> IamEnv:
    """``iam_env`` on ``clock`` (MFA codes), plus ``chained``: assumable by the ``admin``
    role's sessions with ``AssumeRole``, allowed ``iam:*``."""
    roles = iam_roles()
    roles["chained"] = RoleSpec(chain_trust("admin"), (policy(allow("iam:*")),))
    return await start_iam_env(tmp_path, aiohttp_server, runners, monkeypatch, roles, clock)


async def run_step(run: Run, step: Step) -> None:
    if step.before is not None:
        await step.before(run)
    args = [run.state.get(a, a) for a in step.args]
    command = xform_name(step.action, "-")
    code, out, err = await run.env.aws(run.creds[step.caller], "iam", command, *args)
    where = f"{step.action} {args}"
    if step.error is not None:
        assert code != 0, (where, out)
        assert f"An error occurred ({step.error}) when calling the {step.action} operation" in (
            err
        ), (where, err)
        return
    assert code == 0, (where, err)
    assert step.check is not None
    assert step.check(out), (where, out)
    if step.save is not None:
        run.state.update(step.save(out))


async def test_the_aws_cli_drives_every_action(env: IamEnv, clock: FrozenClock) -> None:
    work = env.tmp / "cli"
    work.mkdir()
    run = Run(
        env,
        clock,
        {role: await env.credentials(role) for role in ("admin", "nobody")},
        work,
        {"@seedfile": str(work / "seed.txt"), "@otherfile": str(work / "other.txt")},
    )
    limit = asyncio.Semaphore(4)

    async def limited(step: Step) -> None:
        async with limit:
            await run_step(run, step)

    for phase in PHASES:
        await run.sync_clock()
        await asyncio.gather(*(limited(step) for step in phase))

    # every refusal changed nothing and was audited as a failure of its action
    store = env.broker.broker.store
    for action in {s.action for s in STEPS if s.error is not None}:
        events = await store.list_audit(action=f"iam.{action}")
        assert "failure" in [e.outcome for e in events], action
    assert not {"cli-r2", "cli-h3"} & {r.name for r in await store.list_roles()}
    assert {u.name for u in await store.list_users()}.isdisjoint({"cli-u", "cli-w", "nobody-x"})


# --- session policies and the credential scope ---------------------------------------------


async def test_a_session_policy_narrows_iam_star(env: IamEnv) -> None:
    """``chained`` allows ``iam:*``; its session taken with ``--policy`` allowing only
    ``iam:Get*`` may read, but not create a user: refused, audited, nothing created."""
    admin = await env.credentials("admin")
    code, out, err = await env.aws(
        admin,
        "sts",
        "assume-role",
        "--role-arn",
        env.arn("role", "chained"),
        "--role-session-name",
        "narrow",
        "--policy",
        doc("iam:Get*"),
    )
    assert code == 0, err
    narrow = out["Credentials"]
    code, out, err = await env.aws(narrow, "iam", "get-role", "--role-name", "chained")
    assert code == 0, err
    assert out["Role"]["RoleName"] == "chained"
    code, _, err = await env.aws(narrow, "iam", "create-user", "--user-name", "sneaky")
    assert code != 0
    assert "(AccessDenied) when calling the CreateUser operation" in err
    assert "iam:CreateUser" in err
    store = env.broker.broker.store
    assert not await store.find_users_by_name("sneaky")
    [event] = await store.list_audit(action="iam.CreateUser")
    assert event.outcome == "failure"
    assert event.reason.startswith("not_authorized")
    assert ":assumed-role/chained/narrow" in event.principal
    # without the session policy the same role may
    code, out, err = await env.aws(
        admin,
        "sts",
        "assume-role",
        "--role-arn",
        env.arn("role", "chained"),
        "--role-session-name",
        "wide",
    )
    assert code == 0, err
    code, _, err = await env.aws(out["Credentials"], "iam", "create-user", "--user-name", "ok")
    assert code == 0, err


@pytest.mark.parametrize(
    ("action", "params"),
    [("ListUsers", {}), ("CreateUser", {"UserName": "scoped-wrong"})],
    ids=["ListUsers", "CreateUser"],
)
async def test_an_iam_call_signed_for_sts_is_refused(
    env: IamEnv, action: str, params: Mapping[str, str]
) -> None:
    """The signature is valid, but for another service: ``SignatureDoesNotMatch``, audited,
    nothing done (a signature made for STS is not one for IAM)."""
    creds = await env.credentials("admin")
    status, text = await raw_iam(env, creds, form({"Action": action, **params}), service="sts")
    assert status == 403, text
    assert "<Code>SignatureDoesNotMatch</Code>" in text
    assert "Credential should be scoped to correct service: 'iam'" in text
    assert "https://iam.amazonaws.com/doc/2010-05-08/" in text
    store = env.broker.broker.store
    assert not await store.find_users_by_name("scoped-wrong")
    events = await store.list_audit(action=f"iam.{action}")
    assert [(e.outcome, e.reason) for e in events] == [("failure", "wrong_service")]
    # the same call signed for IAM goes through
    status, text = await raw_iam(env, creds, form({"Action": action, **params}))
    assert status == 200, text
