"""Enrolling a virtual MFA device from the session page, and removing it there.

``begin`` creates an unassigned device and a single-use value bound to the browser and to the
session (the page shows the QR code and the secret once: a reload starts over with a new
device, and the one shown before is deleted). ``confirm`` enables the device with two
consecutive codes, then uses the value up. ``remove`` deactivates and deletes the user's device
given a current code of it: re-enrolment always needs the old device (or an administrator's
``DeactivateMFADevice``).
"""

from __future__ import annotations

import contextlib
import re
import secrets
from dataclasses import dataclass

from broker.clock import Clock
from broker.errors import Conflict, InvalidState, NotFound
from broker.service import single_use, totp
from broker.service.audit import Auditor, RequestInfo
from broker.service.mfa import MfaService
from broker.service.single_use import SingleUseValues
from broker.storage.base import MfaDevice, Store, User

ENROL_LIFETIME = 600  # seconds to scan the code and type two codes
# The path of devices made here: an enrolment never confirmed leaves an unassigned device under
# it, which ``Broker.tick`` deletes once the enrolment has expired.
ENROL_PATH = "/broker-enrolment/"
_NOT_NAME_CHARS = re.compile(r"[^\w+=,.@-]", re.ASCII)


@dataclass(frozen=True)
class Enrolment:
    """What the page shows once: the device, its secret and the QR code (an SVG) of it."""

    ticket: str
    serial_number: str
    seed: str
    qr_svg: str


def device_name(user: User) -> str:
    """A fresh device name for the user: its name in the allowed characters, and a suffix."""
    base = _NOT_NAME_CHARS.sub("-", user.name)[:200] or "user"
    return f"{base}-{secrets.token_hex(4)}"


class MfaEnrolment:
    def __init__(self, store: Store, mfa: MfaService, auditor: Auditor, clock: Clock) -> None:
        self._store = store
        self._mfa = mfa
        self._audit = auditor
        self._values = SingleUseValues(store, clock)

    async def begin(
        self, user: User, *, session_id: str, browser: str, previous: str, req: RequestInfo
    ) -> Enrolment:
        """A new device to enrol; ``previous`` (the enrolment this browser had, if any) ends
        and its device is deleted, so a secret is never shown twice."""
        actor = f"{user.provider}/{user.subject}"
        old = await self._values.consume(single_use.MFA_ENROL, previous, browser=browser)
        if old is not None:
            # already enabled or deleted meanwhile: nothing left to clean up
            with contextlib.suppress(NotFound, Conflict):
                await self._mfa.delete(str(old["serial"]), actor=actor, req=req)
        created = await self._mfa.create_virtual_device(
            device_name(user), actor=actor, req=req, path=ENROL_PATH
        )
        serial = created.device.serial_number
        ticket = await self._values.issue(
            single_use.MFA_ENROL,
            {"serial": serial, "user_id": user.id, "sid": session_id},
            browser=browser,
            lifetime=ENROL_LIFETIME,
        )
        uri = self._mfa.provisioning_uri(created.seed, account=user.name)
        return Enrolment(ticket, serial, created.seed, totp.qr_svg(uri))

    async def pending(
        self, ticket: str, *, user_id: str, session_id: str, browser: str, req: RequestInfo
    ) -> str:
        """The serial number of the enrolment this browser and session hold; audited
        ``InvalidState`` if none."""
        payload = await self._values.peek(single_use.MFA_ENROL, ticket, browser=browser)
        if payload is None or payload.get("user_id") != user_id or payload.get("sid") != session_id:
            await self._audit.record(
                "mfa.enable",
                "failure",
                req=req,
                principal=user_id,
                reason="enrolment_unknown_used_expired_or_other_browser",
            )
            raise InvalidState(
                "enrolment_unknown_used_expired_or_other_browser",
                public_message="This enrolment has expired or was already completed. Start again.",
            )
        return str(payload["serial"])

    async def confirm(
        self,
        ticket: str,
        code1: str,
        code2: str,
        *,
        user: User,
        session_id: str,
        browser: str,
        req: RequestInfo,
    ) -> MfaDevice:
        """Enable the device with two consecutive codes (``InvalidMfaCode`` leaves the
        enrolment open for two new codes), then use the enrolment up."""
        serial = await self.pending(
            ticket, user_id=user.id, session_id=session_id, browser=browser, req=req
        )
        actor = f"{user.provider}/{user.subject}"
        device = await self._mfa.enable(serial, user.id, code1, code2, actor=actor, req=req)
        await self._values.consume(single_use.MFA_ENROL, ticket, browser=browser)
        return device

    async def remove(self, user: User, code: str, *, req: RequestInfo) -> None:
        """Deactivate and delete the user's device, given a current code of it."""
        device = await self._mfa.enabled_device(user.id)
        if device is None:
            raise NotFound("no_enabled_mfa_device", public_message="You have no MFA device.")
        actor = f"{user.provider}/{user.subject}"
        await self._mfa.deactivate(device.serial_number, user.id, actor=actor, req=req, code=code)
        await self._mfa.delete(device.serial_number, actor=actor, req=req)
