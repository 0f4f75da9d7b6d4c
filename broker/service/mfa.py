"""Virtual MFA devices (TOTP) and the one check every surface uses: ``MfaService.verify``.

Login (the local provider's second step), STS (``AssumeRole`` and ``GetSessionToken`` with
``SerialNumber`` + ``TokenCode``) and the IAM API (``EnableMFADevice``, ``ResyncMFADevice``,
...) all go through this service, so a code is judged the same way everywhere:

- the code is looked for in the current 30 s step and one either side, compared in constant
  time (``broker.service.totp``);
- it is used once: the device's ``last_step`` moves forward by a compare-and-set in the store,
  and a code of a step at or below it is refused, on every broker instance;
- attempts are counted per user in the store's failed-login counts (``[login]
  max_failures_per_user`` per ``failure_window``), *before* the check, so concurrent guesses
  cannot all get through; a success clears the count;
- every refusal is audited (``mfa.<purpose>`` ``failure`` with the reason); neither the seed nor
  the code is ever logged, audited or returned (the seed only once, at creation).

Seeds are sealed under the KEK (``broker.kek.seal``), bound to the device's serial number.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass

from broker import kek as kek_box
from broker.clock import Clock
from broker.config import LoginConfig
from broker.errors import (
    AlreadyExists,
    Conflict,
    InvalidMfaCode,
    InvalidRequest,
    LimitExceeded,
    NotFound,
    RateLimited,
)
from broker.service import totp
from broker.service.audit import Auditor, RequestInfo
from broker.storage.base import MfaDevice, Store

# AWS's VirtualMFADeviceName: [\w+=,.@-]+, 1-226 characters
_NAME = re.compile(r"^[\w+=,.@-]{1,226}$", re.ASCII)
# AWS's SerialNumber: [\w+=/:,.@-]+, 9-256 characters
_SERIAL = re.compile(r"^[\w+=/:,.@-]{9,256}$", re.ASCII)


@dataclass(frozen=True)
class MfaProof:
    """A code that was just accepted: which device, and when (``aws:MultiFactorAuthAge``)."""

    serial_number: str
    authenticated_at: float


@dataclass(frozen=True)
class NewVirtualDevice:
    """A device just created, with its seed: the only time the seed is available in clear."""

    device: MfaDevice
    seed: str


def _seal_kid(serial_number: str) -> str:
    return f"mfa:{serial_number}"


def _limit_key(user_id: str) -> str:
    return "mfa-user:" + hashlib.sha256(user_id.encode()).hexdigest()


def is_serial_number(text: str) -> bool:
    return bool(_SERIAL.match(text))


class MfaService:
    def __init__(
        self,
        store: Store,
        auditor: Auditor,
        clock: Clock,
        *,
        kek: bytes,
        limits: LoginConfig,
        account_id: str,
        issuer: str = "broker",
    ) -> None:
        self._store = store
        self._audit = auditor
        self._clock = clock
        self._kek = kek
        self._limits = limits
        self._account = account_id
        self.issuer = issuer  # the label authenticator apps show next to the account

    # --- names -------------------------------------------------------------------------------

    def serial_number(self, name: str) -> str:
        return f"arn:broker:iam::{self._account}:mfa/{name}"

    @staticmethod
    def check_name(name: str) -> str:
        if not _NAME.match(name):
            raise InvalidRequest(
                "bad_mfa_device_name",
                public_message="The device name must be 1-226 characters of letters, digits "
                "and +=,.@_-.",
            )
        return name

    def seed_of(self, device: MfaDevice) -> str:
        return kek_box.unseal(self._kek, device.seal_kid, device.seed_sealed).decode("ascii")

    def _consecutive(self, device: MfaDevice, code1: str, code2: str) -> int | None:
        """The later step of two consecutive codes of ``device`` not used yet, or None."""
        return totp.consecutive_steps(
            self.seed_of(device), code1, code2, now=self._clock.now(), after=device.last_step
        )

    def provisioning_uri(self, seed: str, *, account: str) -> str:
        return totp.provisioning_uri(seed, account=account, issuer=self.issuer)

    # --- devices -----------------------------------------------------------------------------

    async def create_virtual_device(
        self, name: str, *, actor: str, req: RequestInfo, path: str = "/"
    ) -> NewVirtualDevice:
        """A new unassigned device with a fresh seed; ``AlreadyExists`` if the name is taken."""
        serial = self.serial_number(self.check_name(name))
        seed = totp.new_seed()
        device = MfaDevice(
            serial_number=serial,
            name=name,
            path=path,
            seed_sealed=kek_box.seal(self._kek, _seal_kid(serial), seed.encode("ascii")),
            seal_kid=_seal_kid(serial),
            created_at=self._clock.now(),
        )
        if await self._store.get_mfa_device(serial) is not None:
            raise AlreadyExists(
                f"mfa_device_exists:{name}",
                public_message=f"MFADevice entity at the same path and name already exists: "
                f"{name}.",
            )
        await self._audit.record_or_fail(
            "mfa.create", "success", req=req, principal=actor, details={"serial": serial}
        )
        await self._store.create_mfa_device(device)  # AlreadyExists if created meanwhile
        return NewVirtualDevice(device=device, seed=seed)

    async def device(self, serial_number: str) -> MfaDevice:
        found = (
            await self._store.get_mfa_device(serial_number)
            if is_serial_number(serial_number)
            else None
        )
        if found is None:
            raise NotFound(
                f"no_such_mfa_device:{serial_number[:256]}",
                public_message=f"MFA device with serial number {serial_number[:256]} not found.",
            )
        return found

    async def enabled_device(self, user_id: str) -> MfaDevice | None:
        found = await self._store.list_mfa_devices(user_id=user_id)
        return found[0] if found else None

    async def enable(
        self,
        serial_number: str,
        user_id: str,
        code1: str,
        code2: str,
        *,
        actor: str,
        req: RequestInfo,
    ) -> MfaDevice:
        """Assign an unassigned device to the user, proven by two consecutive codes.

        A user holds at most one enabled device: enabling another is ``LimitExceeded`` until
        the first is deactivated (which, from the session page, itself takes a current code
        of it). Refusals are audited; wrong codes count against the user's MFA attempts."""
        try:
            device = await self.device(serial_number)
            if device.user_id is not None:
                raise AlreadyExists(
                    "mfa_device_in_use",
                    public_message="The MFA device is already enabled for a user.",
                )
            if await self.enabled_device(user_id) is not None:
                raise LimitExceeded(
                    "user_has_mfa_device",
                    public_message="The user already has an enabled MFA device; deactivate "
                    "it first.",
                )
            async with self._attempt(user_id):
                step = self._consecutive(device, code1, code2)
                if step is None:
                    raise InvalidMfaCode("mfa_codes_invalid")
            await self._audit.record_or_fail(
                "mfa.enable",
                "success",
                req=req,
                principal=actor,
                details={"serial": serial_number, "user": user_id},
            )
            if not await self._store.enable_mfa_device(
                serial_number, user_id, step=step, now=self._clock.now()
            ):
                raise Conflict(  # raced: enabled (or codes used) by a concurrent request
                    "mfa_enable_raced",
                    public_message="The MFA device or the user changed meanwhile; try again.",
                )
        except (NotFound, Conflict, AlreadyExists, InvalidMfaCode, RateLimited) as e:
            await self._refused("enable", req, actor, e.reason, serial_number, user_id)
            raise
        return await self.device(serial_number)

    async def verify(
        self,
        user_id: str,
        serial_number: str | None,
        code: str,
        *,
        req: RequestInfo,
        purpose: str,
    ) -> MfaProof | None:
        """Check one code of the user's enabled device and use it up.

        ``serial_number``: the device the caller names (STS ``SerialNumber``); None for the
        user's enabled device (login). Returns the proof, or None if the code is refused for
        any reason (no such device, not the user's, malformed, wrong, outside the window, used
        before); raises ``RateLimited`` past the user's limit. ``purpose`` names the caller in
        the audit trail (``login``, ``sts.AssumeRole``, ``sts.GetSessionToken``, ...)."""
        try:
            async with self._attempt(user_id):
                proof = await self._check(user_id, serial_number, code)
        except RateLimited as e:
            await self._refused(purpose, req, user_id, e.reason, serial_number or "", user_id)
            raise
        except InvalidMfaCode as e:
            await self._refused(purpose, req, user_id, e.reason, serial_number or "", user_id)
            return None
        return proof

    async def _check(self, user_id: str, serial_number: str | None, code: str) -> MfaProof:
        device = await self.enabled_device(user_id)
        if device is None:
            raise InvalidMfaCode("no_enabled_mfa_device")
        if serial_number is not None and serial_number != device.serial_number:
            raise InvalidMfaCode("mfa_serial_not_users_device")
        now = self._clock.now()
        step = totp.matching_step(self.seed_of(device), code, now=now, after=device.last_step)
        if step is None:
            raise InvalidMfaCode("mfa_code_wrong_or_used")
        if not await self._store.advance_mfa_step(device.serial_number, user_id, step):
            raise InvalidMfaCode("mfa_code_used_concurrently")
        return MfaProof(serial_number=device.serial_number, authenticated_at=now)

    async def resync(
        self,
        serial_number: str,
        user_id: str,
        code1: str,
        code2: str,
        *,
        actor: str,
        req: RequestInfo,
    ) -> None:
        """Check two consecutive codes of the user's device and record them used. The broker
        keeps no clock-drift offset per device (the ±1 step window absorbs ordinary drift), so
        this confirms that the device and the server agree, as ``ResyncMFADevice`` does."""
        try:
            device = await self.device(serial_number)
            if device.user_id != user_id:
                raise NotFound(
                    "mfa_device_not_users",
                    public_message=f"MFA device with serial number {serial_number} is not "
                    "enabled for that user.",
                )
            async with self._attempt(user_id):
                step = self._consecutive(device, code1, code2)
                if step is None:
                    raise InvalidMfaCode("mfa_codes_invalid")
            await self._audit.record_or_fail(  # before the codes are used up (fail-closed)
                "mfa.resync",
                "success",
                req=req,
                principal=actor,
                details={"serial": serial_number, "user": user_id},
            )
            if not await self._store.advance_mfa_step(serial_number, user_id, step):
                raise InvalidMfaCode("mfa_codes_invalid")  # raced: used meanwhile
        except (NotFound, InvalidMfaCode, RateLimited) as e:
            await self._refused("resync", req, actor, e.reason, serial_number, user_id)
            raise

    async def deactivate(
        self,
        serial_number: str,
        user_id: str,
        *,
        actor: str,
        req: RequestInfo,
        code: str | None = None,
    ) -> None:
        """Unassign the device from the user. With ``code`` (the session page's self-service
        removal), a current code of that device must be given, and is used up."""
        try:
            device = await self.device(serial_number)
            if device.user_id != user_id:
                raise NotFound(
                    "mfa_device_not_users",
                    public_message=f"MFA device with serial number {serial_number} is not "
                    "enabled for that user.",
                )
            step: int | None = None
            if code is not None:
                async with self._attempt(user_id):
                    step = totp.matching_step(
                        self.seed_of(device), code, now=self._clock.now(), after=device.last_step
                    )
                    if step is None:
                        raise InvalidMfaCode("mfa_code_wrong_or_used")
            await self._audit.record_or_fail(
                "mfa.deactivate",
                "success",
                req=req,
                principal=actor,
                details={"serial": serial_number, "user": user_id, "with_code": code is not None},
            )
            if not await self._store.deactivate_mfa_device(serial_number, user_id, step=step):
                raise InvalidMfaCode("mfa_deactivate_raced")
        except (NotFound, InvalidMfaCode, RateLimited) as e:
            await self._refused("deactivate", req, actor, e.reason, serial_number, user_id)
            raise

    async def delete(self, serial_number: str, *, actor: str, req: RequestInfo) -> None:
        """Delete an unassigned device (``Conflict`` while it is enabled for a user)."""
        try:
            device = await self.device(serial_number)
            if device.user_id is not None:
                raise Conflict(
                    "mfa_device_enabled",
                    public_message="The MFA device is enabled for a user; deactivate it first.",
                )
            await self._audit.record_or_fail(
                "mfa.delete", "success", req=req, principal=actor, details={"serial": serial_number}
            )
            if not await self._store.delete_mfa_device(serial_number):
                raise Conflict(
                    "mfa_device_enabled",
                    public_message="The MFA device is enabled for a user; deactivate it first.",
                )
        except (NotFound, Conflict) as e:
            await self._refused("delete", req, actor, e.reason, serial_number, "")
            raise

    # --- helpers -----------------------------------------------------------------------------

    def _attempt(self, user_id: str) -> _Attempt:
        return _Attempt(self._store, self._clock, self._limits, _limit_key(user_id))

    async def _refused(
        self, what: str, req: RequestInfo, principal: str, reason: str, serial: str, user: str
    ) -> None:
        action = what if "." in what else f"mfa.{what}"
        await self._audit.record(
            action,
            "failure",
            req=req,
            principal=principal,
            reason=reason,
            details={"serial": serial[:256], "user": user},
        )


class _Attempt:
    """One counted MFA attempt (``async with``): counted before the check, so that concurrent
    guesses cannot all pass it while none is counted; forgiven (the count cleared) if the block
    ends without an error."""

    def __init__(self, store: Store, clock: Clock, limits: LoginConfig, key: str) -> None:
        self._store = store
        self._clock = clock
        self._limits = limits
        self._key = key

    async def __aenter__(self) -> None:
        now = self._clock.now()
        (count,) = await self._store.add_login_failures(
            [self._key], now=now, window=self._limits.failure_window
        )
        if count.count > self._limits.max_failures_per_user:
            raise RateLimited(
                "mfa_too_many_failures", retry_after=math.ceil(count.window_end - now)
            )

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            await self._store.forgive_login_failures(clear=[self._key])
