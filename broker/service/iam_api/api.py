"""The IAM API as one service: authorize ``iam:<Action>`` on the target's ARN with the caller's
own policies, run the action, page its list, audit a refusal, and tell every cache (on this
instance now, on the others through the store's IAM generation) that IAM changed.

The Query API (``broker/web/iam.py``), ``broker admin`` and the web console are its clients.
Successful changes are audited by the service methods the actions call, before the change
(fail-closed); a refused call is audited here as ``iam.<Action>`` ``failure`` with the reason.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from broker.clock import Clock
from broker.config import Settings
from broker.domain import json_input
from broker.errors import (
    AlreadyExists,
    BrokerError,
    Conflict,
    IamAccessDenied,
    IamDeleteConflict,
    IamEntityAlreadyExists,
    IamError,
    IamInvalidInput,
    IamLimitExceeded,
    IamMalformedPolicyDocument,
    IamNoSuchEntity,
    IamServiceFailure,
    IamUnmodifiableEntity,
    InvalidRequest,
    LimitExceeded,
    MalformedPolicy,
    NotFound,
    ReadOnlyFromConfig,
    RecordNotFound,
    StsError,
)
from broker.service.access_keys import AccessKeyService
from broker.service.activity import ActivityLog
from broker.service.audit import Auditor, RequestInfo
from broker.service.authorize import Authorizer
from broker.service.credential_report import CredentialReports
from broker.service.hashing import PasswordHashing
from broker.service.iam import IamService
from broker.service.iam_api.registry import Action, Call, Caller, Params, Result
from broker.service.mfa import MfaService
from broker.service.offboarding import OffboardingService
from broker.service.providers import OidcProviderService
from broker.service.verified import ACCESS
from broker.storage.base import Store

log = logging.getLogger(__name__)

GENERATION_KEY = "iam_generation"
DEFAULT_MAX_ITEMS = 100
MAX_MARKER_BYTES = 64
"""A marker's JSON, at most: ours is ``{"o": <offset>}``."""


def _marker(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset}).encode()).decode().rstrip("=")


def _offset(marker: str) -> int:
    """The offset a ``Marker`` of ours holds. The caller sends it, so it is read as outside
    JSON (``json_input``, at most ``MAX_MARKER_BYTES``): whatever else it is, ``bad_marker``."""
    try:
        raw = base64.urlsafe_b64decode(marker + "=" * (-len(marker) % 4))
        offset = json_input.loads_object(raw, max_bytes=MAX_MARKER_BYTES).get("o")
    except (binascii.Error, ValueError):  # json_input.JsonInputError is a ValueError
        raise IamInvalidInput(
            "bad_marker", public_message="The Marker is not one this API returned."
        ) from None
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        raise IamInvalidInput(
            "bad_marker", public_message="The Marker is not one this API returned."
        )
    return offset


def page_bounds(params: Params, total: int) -> tuple[int, int, str | None]:
    """The slice ``[start:stop]`` of a sorted list of ``total`` items that ``Marker`` and
    ``MaxItems`` ask for, and the ``Marker`` of the next page (None on the last)."""
    start = _offset(params["Marker"]) if "Marker" in params else 0
    stop = start + int(params.get("MaxItems", DEFAULT_MAX_ITEMS))
    return start, stop, _marker(stop) if stop < total else None


def as_iam_error(e: BrokerError) -> BrokerError:
    """The service layer's generic errors as IAM's codes (AWS errors pass through)."""
    if isinstance(e, StsError):
        return e
    message = e.public_message
    if isinstance(e, NotFound | RecordNotFound):
        return IamNoSuchEntity(e.reason, public_message=message)
    if isinstance(e, AlreadyExists):
        return IamEntityAlreadyExists(e.reason, public_message=message)
    if isinstance(e, LimitExceeded):
        return IamLimitExceeded(e.reason, public_message=message)
    if isinstance(e, ReadOnlyFromConfig):
        return IamUnmodifiableEntity(e.reason, public_message=message)
    if isinstance(e, Conflict):
        return IamDeleteConflict(e.reason, public_message=message)
    if isinstance(e, MalformedPolicy):
        return IamMalformedPolicyDocument(e.reason, public_message=message)
    if isinstance(e, InvalidRequest):
        return IamInvalidInput(e.reason, public_message=message)
    if e.status >= 500:
        return e
    return IamInvalidInput(e.reason, public_message=message)


class IamApi:
    def __init__(
        self,
        *,
        settings: Settings,
        store: Store,
        iam: IamService,
        authorizer: Authorizer,
        offboarding: OffboardingService,
        auditor: Auditor,
        clock: Clock,
        actions: Sequence[Action],
        refresh: Callable[[], Awaitable[None]],
        hashing: PasswordHashing | None = None,
        providers: OidcProviderService | None = None,
        activity: ActivityLog | None = None,
        access_keys: AccessKeyService | None = None,
        mfa: MfaService | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.iam = iam
        self.authorizer = authorizer
        self.offboarding = offboarding
        self.providers = providers or OidcProviderService(settings, store, auditor, clock)
        self.auditor = auditor
        self.clock = clock
        self._actions: Mapping[str, Action] = {a.name: a for a in actions}
        self._refresh = refresh
        self.hashing = hashing  # login profiles' passwords (argon2, off the event loop)
        self.reports = CredentialReports(settings, store, auditor, clock)
        self.access_keys = access_keys  # IAM users' long-lived keys
        self.mfa = mfa  # virtual MFA devices (iam_api.mfa)
        self._generation: str | None = None
        self.activity = activity  # allowed calls are counted (the unused-access review)

    @property
    def actions(self) -> Mapping[str, Action]:
        return self._actions

    def root(self) -> Caller:
        return Caller(arn=f"arn:broker:iam::{self.settings.server.account_id}:root", actor="root")

    async def call(
        self, caller: Caller, name: str, params: Params, req: RequestInfo | None = None
    ) -> Result:
        """Run one action for ``caller``; raises the ``IamError`` AWS would answer."""
        req = req or RequestInfo()
        action = self._actions.get(name)
        if action is None:
            raise IamInvalidInput(f"unknown_action:{name[:64]}")
        call = Call(api=self, caller=caller, params=params, req=req)
        if caller.credential is not None:  # an IAM user's, compiled on first use
            await self.authorizer.prepare(caller.credential.principal)
        try:
            cred = caller.credential
            if cred is not None and cred.kind == ACCESS and cred.is_user and not cred.mfa:
                # AWS: GetSessionToken credentials call no IAM action unless made with MFA
                raise IamAccessDenied(
                    "session_token_without_mfa",
                    public_message="Credentials from GetSessionToken cannot call IAM API "
                    "operations unless MFA authentication information was included in the "
                    "request.",
                )
            if not action.authorize_in_run:
                self.authorize(caller, name, action.resource(call), req)
            result = await action.run(call)
        except BrokerError as e:
            err = as_iam_error(e)
            await self.record_failure(caller, name, req, err)
            raise err from e
        if action.mutates:
            await self.changed()
        if action.page is not None:
            result = self._page(result, action.page, params)
        return result

    async def record_failure(
        self, caller: Caller, name: str, req: RequestInfo, err: BrokerError
    ) -> None:
        """The audit row of an ``iam:<name>`` call refused or failed with ``err`` (an IAM
        error: ``as_iam_error``), by whichever client made it."""
        await self.auditor.record(
            f"iam.{name}",
            "failure",
            req=req,
            principal=caller.actor,
            reason=err.reason,
            details={"code": getattr(err, "code", "")},
        )

    def authorize(self, caller: Caller, name: str, resource: str, req: RequestInfo) -> None:
        """``iam:<name>`` on ``resource`` by the caller's identity policies, boundary and
        session policies; the root may do everything. Denies when unsure."""
        cred = caller.credential
        if cred is None:
            return
        authorizer = self.authorizer
        decision = authorizer.decide(
            cred.principal,
            action=f"iam:{name}",
            resource=resource,
            context=authorizer.context_for(cred.principal, source_ip=req.source_ip),
            session_policies=cred.session_policies,
        )
        if decision.decision != "allowed":
            raise IamAccessDenied(
                f"not_authorized:{decision.decision}",
                public_message=f"User: {caller.arn} is not authorized to perform: iam:{name} "
                f"on resource: {resource}"
                + (" with an explicit deny" if decision.decision == "explicitDeny" else ""),
            )
        if self.activity is not None:
            self.activity.note(cred.role_arn, f"iam:{name}", resource)

    @staticmethod
    def _page(result: Result, member: str, params: Params) -> Result:
        items: list[Any] = list(result.get(member, []))
        start, stop, marker = page_bounds(params, len(items))
        out = dict(result)
        out[member] = items[start:stop]
        out["IsTruncated"] = marker is not None
        if marker is not None:
            out["Marker"] = marker
        return out

    # --- caches across instances ----------------------------------------------------------

    async def changed(self) -> None:
        """IAM changed: refresh this instance's caches now, and bump the store's generation so
        that other instances refresh at their next poll (every second)."""
        generation = uuid.uuid4().hex
        await self.store.set_meta(GENERATION_KEY, generation)
        self._generation = generation
        await self._refresh()

    async def poll(self) -> bool:
        """Refresh if another instance (or ``broker admin``) changed IAM; True if it did."""
        generation = await self.store.get_meta(GENERATION_KEY)
        if generation == self._generation:
            return False
        # The first poll refreshes too: the caches were built when the broker opened, before
        # this generation was read, and a change made meanwhile must not be missed.
        self._generation = generation
        await self._refresh()
        return True


__all__ = ["IamApi", "IamError", "IamServiceFailure", "as_iam_error"]
