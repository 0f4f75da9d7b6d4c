"""Issue 13's parts together, on real data: an access key made and used through the API and an
MFA device enabled through the API show in the credentials report (key active, last used date,
region and service; MFA active) and keep their user and key out of the unused-access review,
while an idle user's key and missing MFA are listed."""

from __future__ import annotations

import base64
import time

import pyotp

from broker.service.unused import UnusedAccess
from tests.iam.conftest import IamEnv, call
from tests.iam.keys_support import EVERYTHING, key_client, user_with_key
from tests.iam.test_credential_report import AWS_DOCUMENTED_HEADER, generated, parse


async def test_report_and_review_see_real_keys_and_devices(iam_env: IamEnv) -> None:
    env = iam_env
    active = await user_with_key(env, "ci", EVERYTHING)
    idle = await user_with_key(env, "idle", EVERYTHING)
    admin = await env.client("admin")
    out = await call(admin, "create_virtual_mfa_device", VirtualMFADeviceName="ci-phone")
    otp = pyotp.TOTP(out["VirtualMFADevice"]["Base32StringSeed"].decode("ascii"))
    now = time.time()
    await call(
        admin,
        "enable_mfa_device",
        UserName="ci",
        SerialNumber=out["VirtualMFADevice"]["SerialNumber"],
        AuthenticationCode1=otp.at(now - 30),
        AuthenticationCode2=otp.at(now),
    )
    used_at = time.time()
    await call(key_client(env.url, "sts", active), "get_caller_identity")
    await env.broker.broker.access_keys.flush()  # what the 5-second tick does

    await generated(admin)
    report = await call(admin, "get_credential_report")
    content = report["Content"]
    header, rows = parse(content if isinstance(content, bytes) else base64.b64decode(content))
    assert header == AWS_DOCUMENTED_HEADER
    col = {name: i for i, name in enumerate(header)}
    ci, idle_row = rows["ci"], rows["idle"]
    assert ci[col["mfa_active"]] == "true"
    assert ci[col["access_key_1_active"]] == "true"
    assert ci[col["access_key_1_last_used_region"]] == "us-east-1"
    assert ci[col["access_key_1_last_used_service"]] == "sts"
    last_used = ci[col["access_key_1_last_used_date"]]
    assert last_used[:10] == time.strftime("%Y-%m-%d", time.gmtime(used_at))
    assert ci[col["access_key_2_active"]] == "false"
    assert idle_row[col["mfa_active"]] == "false"
    assert idle_row[col["access_key_1_active"]] == "true"
    assert idle_row[col["access_key_1_last_used_date"]] == "N/A"

    # the review, as if 100 days had passed without anything else happening
    b = env.broker.broker
    await b.flush_activity()

    class Later:
        def now(self) -> float:
            return time.time() + 100 * 86400

    findings = [f async for f in UnusedAccess(b.settings, b.store, Later()).findings(90)]
    keys = {f.name for f in findings if f.kind == "access_key"}
    no_mfa = {f.name for f in findings if f.kind == "mfa"}
    assert idle["AccessKeyId"] in keys
    assert active["AccessKeyId"] in keys  # 100 days later it is idle too
    assert "idle" in no_mfa
    assert "ci" not in no_mfa

    recent = [f async for f in UnusedAccess(b.settings, b.store, b.clock).findings(90)]
    recent_keys = {f.name for f in recent if f.kind == "access_key"}
    assert active["AccessKeyId"] not in recent_keys  # used today
