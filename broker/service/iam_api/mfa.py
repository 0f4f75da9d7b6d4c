"""Virtual MFA devices through the IAM API: ``CreateVirtualMFADevice``, ``EnableMFADevice``,
``ListMFADevices``, ``ListVirtualMFADevices``, ``DeactivateMFADevice``,
``DeleteVirtualMFADevice``, ``ResyncMFADevice`` (docs/mfa.md).

The codes are judged by ``MfaService`` (single use, constant-time, rate-limited, audited).
Serial numbers are ``arn:broker:iam::<account>:mfa/<name>``. A user holds at most one enabled
device: ``EnableMFADevice`` for a user who has one is ``LimitExceeded`` until it is deactivated;
that is how re-enrolment is kept to whoever may ``iam:DeactivateMFADevice`` (or, on the
session page, to whoever has a current code of the old device). The seed and the QR code are
returned once, by ``CreateVirtualMFADevice``, and never again.
"""

from __future__ import annotations

from typing import Any

from broker.errors import (
    IamInvalidAuthenticationCode,
    IamInvalidInput,
    IamLimitExceeded,
    IamServiceFailure,
    IamValidationError,
    InvalidMfaCode,
    RateLimited,
)
from broker.service import totp
from broker.service.iam_api import escalation
from broker.service.iam_api.principals import user_named
from broker.service.iam_api.registry import Action, Call, Resource, Result, anything, named
from broker.service.iam_api.users import user_name, user_shape
from broker.service.mfa import MfaService
from broker.storage.base import MfaDevice, User

ASSIGNMENT_STATUSES = ("Assigned", "Unassigned", "Any")


def _mfa(call: Call) -> MfaService:
    if call.api.mfa is None:
        raise IamServiceFailure("mfa_unavailable")
    return call.api.mfa


def _serial_resource(call: Call) -> str:
    """``DeleteVirtualMFADevice`` acts on the device: its serial number is its ARN."""
    return str(call.params.get("SerialNumber", ""))


def _device_resource(call: Call) -> str:
    return call.arn("mfa", str(call.params.get("VirtualMFADeviceName", "")))


def _codes(call: Call) -> tuple[str, str]:
    return str(call.params["AuthenticationCode1"]), str(call.params["AuthenticationCode2"])


def _code_error(e: InvalidMfaCode | RateLimited) -> IamInvalidAuthenticationCode | IamLimitExceeded:
    if isinstance(e, RateLimited):
        return IamLimitExceeded(
            e.reason, public_message="Too many invalid authentication codes; try again later."
        )
    return IamInvalidAuthenticationCode(e.reason)


async def _users_by_id(call: Call, devices: list[MfaDevice]) -> dict[str, User]:
    out: dict[str, User] = {}
    for d in devices:
        if d.user_id is not None and d.user_id not in out:
            out[d.user_id] = await call.api.store.get_user(d.user_id)
    return out


async def create_virtual_mfa_device(call: Call) -> Result:
    path = call.params.get("Path", "/")
    if path != "/":
        raise IamValidationError(
            "unsupported_path", public_message="This broker supports only the path '/'."
        )
    if call.params.get("Tags"):
        raise IamInvalidInput(
            "mfa_tags_unsupported", public_message="Tags on MFA devices are not supported."
        )
    mfa = _mfa(call)
    name = str(call.params["VirtualMFADeviceName"])
    created = await mfa.create_virtual_device(name, actor=call.actor, req=call.req)
    uri = mfa.provisioning_uri(created.seed, account=name)
    return {
        "VirtualMFADevice": {
            "SerialNumber": created.device.serial_number,
            # as AWS: the Base32 seed's text, and a PNG of the otpauth:// URI (blobs)
            "Base32StringSeed": created.seed.encode("ascii"),
            "QRCodePNG": totp.qr_png(uri),
        }
    }


async def enable_mfa_device(call: Call) -> Result:
    user = await user_named(call, user_name(call))
    await escalation.require_bounded_target(call, "user", user.id, user.name)
    code1, code2 = _codes(call)
    try:
        await _mfa(call).enable(
            str(call.params["SerialNumber"]),
            user.id,
            code1,
            code2,
            actor=call.actor,
            req=call.req,
        )
    except (InvalidMfaCode, RateLimited) as e:
        raise _code_error(e) from e
    return {}


async def resync_mfa_device(call: Call) -> Result:
    user = await user_named(call, user_name(call))
    code1, code2 = _codes(call)
    try:
        await _mfa(call).resync(
            str(call.params["SerialNumber"]),
            user.id,
            code1,
            code2,
            actor=call.actor,
            req=call.req,
        )
    except (InvalidMfaCode, RateLimited) as e:
        raise _code_error(e) from e
    return {}


async def deactivate_mfa_device(call: Call) -> Result:
    user = await user_named(call, user_name(call))
    await escalation.require_bounded_target(call, "user", user.id, user.name)
    await _mfa(call).deactivate(
        str(call.params["SerialNumber"]), user.id, actor=call.actor, req=call.req
    )
    return {}


async def delete_virtual_mfa_device(call: Call) -> Result:
    await _mfa(call).delete(str(call.params["SerialNumber"]), actor=call.actor, req=call.req)
    return {}


async def list_mfa_devices(call: Call) -> Result:
    user = await user_named(call, user_name(call))
    devices = await call.api.store.list_mfa_devices(user_id=user.id)
    return {
        "MFADevices": [
            {"UserName": user.name, "SerialNumber": d.serial_number, "EnableDate": d.enabled_at}
            for d in devices
        ]
    }


async def list_virtual_mfa_devices(call: Call) -> Result:
    status = str(call.params.get("AssignmentStatus", "Any"))
    if status not in ASSIGNMENT_STATUSES:
        raise IamValidationError(
            "bad_assignment_status",
            public_message="AssignmentStatus must be one of Assigned, Unassigned, Any.",
        )
    devices = await call.api.store.list_mfa_devices()
    if status == "Assigned":
        devices = [d for d in devices if d.user_id is not None]
    elif status == "Unassigned":
        devices = [d for d in devices if d.user_id is None]
    users = await _users_by_id(call, devices)
    out: list[dict[str, Any]] = []
    for d in devices:
        shape: dict[str, Any] = {"SerialNumber": d.serial_number}
        if d.user_id is not None:
            shape["User"] = user_shape(call, users[d.user_id])
            shape["EnableDate"] = d.enabled_at
        out.append(shape)
    return {"VirtualMFADevices": out}


_user: Resource = named("user", "UserName")

ACTIONS = (
    Action("CreateVirtualMFADevice", create_virtual_mfa_device, _device_resource),
    Action("EnableMFADevice", enable_mfa_device, _user),
    Action("ResyncMFADevice", resync_mfa_device, _user),
    Action("DeactivateMFADevice", deactivate_mfa_device, _user),
    Action("DeleteVirtualMFADevice", delete_virtual_mfa_device, _serial_resource),
    Action("ListMFADevices", list_mfa_devices, _user, mutates=False, page="MFADevices"),
    Action(
        "ListVirtualMFADevices",
        list_virtual_mfa_devices,
        anything,
        mutates=False,
        page="VirtualMFADevices",
    ),
)
