"""Virtual MFA devices through the IAM API with the real boto3 client: create (the seed and a
PNG QR code, once), enable with two consecutive ``pyotp`` codes, list, resync, deactivate,
delete, and AWS's error codes for each refusal; ``broker admin mfa list|deactivate``."""

from __future__ import annotations

import asyncio
import json
import sqlite3

import botocore.exceptions
import pyotp
import pytest

from broker.cli import main
from broker.clock import FrozenClock
from tests.iam.conftest import IamEnv, advance, call, error_code
from tests.sts.conftest import ACCOUNT

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def env(clocked_iam_env: IamEnv) -> IamEnv:
    return clocked_iam_env


async def _error(coro: object) -> str:
    with pytest.raises(botocore.exceptions.ClientError) as e:
        await coro  # type: ignore[misc]
    return error_code(e.value)


async def test_device_lifecycle_with_boto3(env: IamEnv, clock: FrozenClock) -> None:
    iam = await env.client("admin")
    await call(iam, "create_user", UserName="carol")

    out = await call(iam, "create_virtual_mfa_device", VirtualMFADeviceName="carol-phone")
    device = out["VirtualMFADevice"]
    serial = device["SerialNumber"]
    assert serial == f"arn:broker:iam::{ACCOUNT}:mfa/carol-phone"
    assert device["QRCodePNG"].startswith(PNG_MAGIC)
    seed = device["Base32StringSeed"].decode("ascii")
    otp = pyotp.TOTP(seed)
    assert (
        await _error(call(iam, "create_virtual_mfa_device", VirtualMFADeviceName="carol-phone"))
        == "EntityAlreadyExists"
    )

    listed = await call(iam, "list_virtual_mfa_devices", AssignmentStatus="Unassigned")
    assert [d["SerialNumber"] for d in listed["VirtualMFADevices"]] == [serial]
    # the seed is never returned again
    assert "Base32StringSeed" not in json.dumps(listed, default=str)

    now = clock.now()
    # wrong, repeated or reversed codes
    for c1, c2 in [
        ("000000", "000000"),
        (otp.at(now), otp.at(now)),
        (otp.at(now), otp.at(now - 30)),
        ("12345a", otp.at(now)),
    ]:
        code = await _error(
            call(
                iam,
                "enable_mfa_device",
                UserName="carol",
                SerialNumber=serial,
                AuthenticationCode1=c1,
                AuthenticationCode2=c2,
            )
        )
        assert code in ("InvalidAuthenticationCode", "ValidationError")
    assert (
        await _error(
            call(
                iam,
                "enable_mfa_device",
                UserName="nobody-here",
                SerialNumber=serial,
                AuthenticationCode1=otp.at(now - 30),
                AuthenticationCode2=otp.at(now),
            )
        )
        == "NoSuchEntity"
    )
    await call(
        iam,
        "enable_mfa_device",
        UserName="carol",
        SerialNumber=serial,
        AuthenticationCode1=otp.at(now - 30),
        AuthenticationCode2=otp.at(now),
    )
    listed = await call(iam, "list_mfa_devices", UserName="carol")
    assert [d["SerialNumber"] for d in listed["MFADevices"]] == [serial]
    assert listed["MFADevices"][0]["UserName"] == "carol"
    assigned = await call(iam, "list_virtual_mfa_devices", AssignmentStatus="Assigned")
    assert assigned["VirtualMFADevices"][0]["User"]["UserName"] == "carol"

    # a second device for carol: deactivate the first one first (re-enrolment)
    spare = (await call(iam, "create_virtual_mfa_device", VirtualMFADeviceName="spare"))[
        "VirtualMFADevice"
    ]
    o2 = pyotp.TOTP(spare["Base32StringSeed"].decode())
    assert (
        await _error(
            call(
                iam,
                "enable_mfa_device",
                UserName="carol",
                SerialNumber=spare["SerialNumber"],
                AuthenticationCode1=o2.at(now - 30),
                AuthenticationCode2=o2.at(now),
            )
        )
        == "LimitExceeded"
    )

    await advance(env, clock, 60)
    now = clock.now()
    await call(
        iam,
        "resync_mfa_device",
        UserName="carol",
        SerialNumber=serial,
        AuthenticationCode1=otp.at(now - 30),
        AuthenticationCode2=otp.at(now),
    )
    assert (
        await _error(  # the same two codes again: used
            call(
                iam,
                "resync_mfa_device",
                UserName="carol",
                SerialNumber=serial,
                AuthenticationCode1=otp.at(now - 30),
                AuthenticationCode2=otp.at(now),
            )
        )
        == "InvalidAuthenticationCode"
    )

    assert await _error(call(iam, "delete_virtual_mfa_device", SerialNumber=serial)) == (
        "DeleteConflict"
    )
    assert await _error(call(iam, "delete_user", UserName="carol")) == "DeleteConflict"
    await call(iam, "deactivate_mfa_device", UserName="carol", SerialNumber=serial)
    assert (await call(iam, "list_mfa_devices", UserName="carol"))["MFADevices"] == []
    assert (
        await _error(call(iam, "deactivate_mfa_device", UserName="carol", SerialNumber=serial))
        == "NoSuchEntity"
    )
    await call(iam, "delete_virtual_mfa_device", SerialNumber=serial)
    assert await _error(call(iam, "delete_virtual_mfa_device", SerialNumber=serial)) == (
        "NoSuchEntity"
    )
    remaining = await call(iam, "list_virtual_mfa_devices")
    assert [d["SerialNumber"] for d in remaining["VirtualMFADevices"]] == [spare["SerialNumber"]]

    events = await env.broker.broker.store.list_audit(limit=500)
    text = json.dumps([e.__dict__ for e in events], default=str)
    assert seed not in text
    assert "mfa_codes_invalid" in text


async def test_reader_may_list_but_not_change(env: IamEnv) -> None:
    reader = await env.client("reader")
    admin = await env.client("admin")
    await call(admin, "create_virtual_mfa_device", VirtualMFADeviceName="x-phone")
    assert (
        await _error(call(reader, "create_virtual_mfa_device", VirtualMFADeviceName="y-phone"))
        == "AccessDenied"
    )
    assert (
        await _error(
            call(
                reader,
                "delete_virtual_mfa_device",
                SerialNumber=f"arn:broker:iam::{ACCOUNT}:mfa/x-phone",
            )
        )
        == "AccessDenied"
    )
    listed = await call(reader, "list_virtual_mfa_devices")
    assert len(listed["VirtualMFADevices"]) == 1


async def test_admin_cli_lists_and_deactivates(
    env: IamEnv, clock: FrozenClock, capsys: pytest.CaptureFixture[str]
) -> None:
    iam = await env.client("admin")
    await call(iam, "create_user", UserName="dave")
    device = (await call(iam, "create_virtual_mfa_device", VirtualMFADeviceName="dave-phone"))[
        "VirtualMFADevice"
    ]
    otp = pyotp.TOTP(device["Base32StringSeed"].decode())
    now = clock.now()
    await call(
        iam,
        "enable_mfa_device",
        UserName="dave",
        SerialNumber=device["SerialNumber"],
        AuthenticationCode1=otp.at(now - 30),
        AuthenticationCode2=otp.at(now),
    )
    config = str(env.tmp / "b" / "broker.toml")

    def cli(*args: str) -> object:
        capsys.readouterr()
        assert main(["admin", "mfa", *args, "--config", config, "--json"]) == 0
        return json.loads(capsys.readouterr().out)

    rows = await asyncio.to_thread(cli, "list", "dave")
    assert rows == [
        {"user": "dave", "serial": device["SerialNumber"], "enabled": rows[0]["enabled"]}  # type: ignore[index]
    ]
    everything = await asyncio.to_thread(cli, "list")
    assert [r["serial"] for r in everything] == [device["SerialNumber"]]  # type: ignore[attr-defined]
    done = await asyncio.to_thread(cli, "deactivate", "dave", "--delete")
    assert done == {"user": "dave", "serials": [device["SerialNumber"]], "deleted": True}
    assert (await call(iam, "list_mfa_devices", UserName="dave"))["MFADevices"] == []
    assert (
        await _error(call(iam, "delete_virtual_mfa_device", SerialNumber=device["SerialNumber"]))
        == "NoSuchEntity"
    )


async def test_aws_cli_writes_the_qr_code_and_enables(env: IamEnv, clock: FrozenClock) -> None:
    """As docs/mfa.md shows: the CLI writes the PNG (or the Base32 seed) to a file."""
    creds = await env.credentials("admin")
    iam = await env.client("admin")
    await call(iam, "create_user", UserName="erin")
    png = env.tmp / "qr.png"
    rc, out, err = await env.aws(
        creds,
        "iam",
        "create-virtual-mfa-device",
        "--virtual-mfa-device-name",
        "erin-phone",
        "--outfile",
        str(png),
        "--bootstrap-method",
        "QRCodePNG",
    )
    assert rc == 0, err
    serial = out["VirtualMFADevice"]["SerialNumber"]
    assert png.read_bytes().startswith(PNG_MAGIC)
    seed_file = env.tmp / "seed.txt"
    rc, out, err = await env.aws(
        creds,
        "iam",
        "create-virtual-mfa-device",
        "--virtual-mfa-device-name",
        "erin-spare",
        "--outfile",
        str(seed_file),
        "--bootstrap-method",
        "Base32StringSeed",
    )
    assert rc == 0, err
    spare = out["VirtualMFADevice"]["SerialNumber"]
    assert spare != serial
    otp = pyotp.TOTP(seed_file.read_text().strip())
    now = clock.now()
    rc, _, err = await env.aws(
        creds,
        "iam",
        "enable-mfa-device",
        "--user-name",
        "erin",
        "--serial-number",
        spare,
        "--authentication-code1",
        otp.at(now - 30),
        "--authentication-code2",
        otp.at(now),
    )
    assert rc == 0, err
    rc, listed, err = await env.aws(creds, "iam", "list-mfa-devices", "--user-name", "erin")
    assert rc == 0, err
    assert [d["SerialNumber"] for d in listed["MFADevices"]] == [spare]


def _audit(env: IamEnv, sql: str) -> None:
    path = env.broker.settings.sqlite_path
    assert path is not None
    with sqlite3.connect(path) as conn:
        conn.execute(sql)


async def test_resync_that_cannot_be_audited_is_a_503_and_uses_no_code(
    env: IamEnv, clock: FrozenClock
) -> None:
    iam = await env.client("admin")
    await call(iam, "create_user", UserName="dora")
    out = await call(iam, "create_virtual_mfa_device", VirtualMFADeviceName="dora-phone")
    serial = out["VirtualMFADevice"]["SerialNumber"]
    otp = pyotp.TOTP(out["VirtualMFADevice"]["Base32StringSeed"].decode("ascii"))
    now = clock.now()
    codes = {"AuthenticationCode1": otp.at(now - 30), "AuthenticationCode2": otp.at(now)}
    await call(iam, "enable_mfa_device", UserName="dora", SerialNumber=serial, **codes)
    await advance(env, clock, 60)
    now = clock.now()
    codes = {"AuthenticationCode1": otp.at(now - 30), "AuthenticationCode2": otp.at(now)}

    _audit(
        env,
        "CREATE TRIGGER audit_down BEFORE INSERT ON audit_events "
        "BEGIN SELECT RAISE(ABORT, 'audit store down'); END",
    )
    with pytest.raises(botocore.exceptions.ClientError) as e:
        await call(iam, "resync_mfa_device", UserName="dora", SerialNumber=serial, **codes)
    _audit(env, "DROP TRIGGER audit_down")
    assert error_code(e.value) == "ServiceUnavailable"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    # nothing was used up: the same two codes resync once the audit store is back
    await call(iam, "resync_mfa_device", UserName="dora", SerialNumber=serial, **codes)
    events = await env.broker.broker.store.list_audit(limit=50, action="mfa.resync")
    assert [ev.outcome for ev in events] == ["success"]
