"""The ``broker`` CLI's sessions: the broker as the authorization server of its public client
``broker-cli`` (authorization code + PKCE with a loopback redirect, RFC 8252; the device grant,
RFC 8628; refresh-token rotation, RFC 9700 §4.14), and what the CLI does with the result.

What the CLI receives is a new *CLI session* of the person who approved it: a session row of
the same user and identity (provider session id included, so back-channel logout reaches it),
its short-lived session token as the access token, and an opaque refresh token. Ending that
session (RFC 7009 revocation, ``broker admin users revoke-sessions``, disabling the user,
back-channel logout, refresh-token reuse) makes the refresh fail; role credentials taken with
it carry its id as ``origin_sid``, and ending it from here records an ``origin`` revocation.

Every value handed out here (authorization code, refresh token, device code, user code) is a
single-use value (``SingleUseValues``): the store keeps only its hash, namespaced by kind and
bound to the client id, and the request acting on it consumes it atomically. Every refusal is
audited with a specific reason.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from authlib.oauth2.rfc7636.challenge import CODE_VERIFIER_PATTERN, create_s256_code_challenge
from authlib.oauth2.rfc8628.endpoint import create_string_user_code

from broker.clock import Clock
from broker.config import Settings
from broker.domain.claims import Identity
from broker.domain.cli_oauth import CLIENT_ID, loopback_port, normalize_user_code
from broker.errors import (
    AlreadyExists,
    AuthorizationPending,
    BrokerError,
    ExpiredDeviceCode,
    InvalidGrant,
    InvalidRequest,
    OAuthAccessDenied,
    SlowDown,
    Unauthenticated,
)
from broker.service import provider_logouts
from broker.service.audit import Auditor, RequestInfo
from broker.service.login_limits import LoginLimits
from broker.service.revocation import RevocationState
from broker.service.roles import Candidate, RoleCatalog
from broker.service.sessions import SessionService
from broker.service.single_use import SingleUseValues, binding_hash
from broker.service.sts import IssuedCredentials, StsService, session_identity_claims
from broker.service.verified import Credential
from broker.storage.base import Revocation, Session, SingleUse, Store

CODE = "cli-code"  # an authorization code: the approving session, redirect URI, challenge
REFRESH = "cli-refresh"  # a live refresh token: its CLI session
REFRESH_USED = "cli-refresh-used"  # a rotated one, kept to detect its reuse
DEVICE = "cli-device"  # a device code: its user code and origin
USER_CODE = "cli-user-code"  # the user code of a pending device request: one decision
DECISION = "cli-device-decision"  # a decision on a device code, until polled once
POLL = "cli-device-poll"  # one per device code and polling interval: ``slow_down``

CODE_LIFETIME = 60
DEVICE_LIFETIME = 600
DEVICE_INTERVAL = 5
DEVICE_GRACE = 3600  # a device code is known this long after expiry: ``expired_token``
MAX_VALUE = 256
CLI_SESSION_PREFIX = "cli-"  # a CLI session's id: what revocation of its token recognises


@dataclass(frozen=True)
class CliTokens:
    access_token: str = ""
    expires_in: int = 0
    refresh_token: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "access_token": self.access_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "refresh_token": self.refresh_token,
            "scope": "openid",
        }


@dataclass(frozen=True)
class DeviceStart:
    device_code: str
    user_code: str  # as shown: ``BCDF-GHJK``
    expires_in: int
    interval: int


@dataclass(frozen=True)
class DeviceRequest:
    """A pending device request as the approving person sees it: where it came from."""

    user_code: str
    source_ip: str
    user_agent: str
    requested_at: float


def session_identity(s: Session) -> Identity:
    return Identity(
        provider=s.provider,
        subject=s.subject,
        name=s.email or s.subject,
        email=s.email,
        groups=s.groups,
        mfa=s.mfa,
        user_id=s.user_id,
        provider_sid=s.provider_sid,
        mfa_authenticated_at=s.mfa_authenticated_at,
        verified_at=s.created_at,
    )


class CliSessions:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        sessions: SessionService,
        roles: RoleCatalog,
        sts: StsService,
        revocations: RevocationState,
        auditor: Auditor,
        clock: Clock,
    ) -> None:
        self._settings = settings
        self._store = store
        self._sessions = sessions
        self._roles = roles
        self._sts = sts
        self._revocations = revocations
        self._audit = auditor
        self._clock = clock
        self._values = SingleUseValues(store, clock)
        self._client = binding_hash(CLIENT_ID)
        self._limits = LoginLimits(store, settings.login, clock)

    # --- the authorization code --------------------------------------------------------------

    async def issue_code(
        self, ctx: Credential, redirect_uri: str, code_challenge: str, req: RequestInfo
    ) -> str:
        """An authorization code for the approving browser session ``ctx`` (already checked:
        ``check_authorize``), bound to the exact redirect URI and the S256 challenge. The
        audit row comes first (``AuditUnavailable``: no code)."""
        await self._audit.record_or_fail(
            "cli.authorize",
            "success",
            req=req,
            principal=f"{ctx.provider}/{ctx.subject}",
            details={"port": loopback_port(redirect_uri), "session": ctx.session_id},
        )
        return await self._values.issue(
            CODE,
            {"sid": ctx.session_id, "redirect_uri": redirect_uri, "challenge": code_challenge},
            browser=CLIENT_ID,
            lifetime=CODE_LIFETIME,
        )

    async def redeem_code(
        self, code: str, redirect_uri: str, code_verifier: str, req: RequestInfo
    ) -> CliTokens:
        """RFC 6749 §4.1.3 with RFC 7636 §4.6. The code is consumed first (atomically): a wrong
        verifier or redirect URI spends it too, so a stolen code gets one guess."""
        action = "cli.token.authorization_code"
        try:
            if not CODE_VERIFIER_PATTERN.match(code_verifier):
                raise InvalidRequest(
                    "code_verifier_malformed",
                    public_message="code_verifier must be 43 to 128 unreserved characters.",
                )
            found = await self._values.consume(CODE, code, browser=CLIENT_ID)
            if found is None:
                raise InvalidGrant("code_unknown_used_or_expired")
            if not secrets.compare_digest(str(found["redirect_uri"]), redirect_uri):
                raise InvalidGrant("redirect_uri_mismatch")
            challenge = create_s256_code_challenge(code_verifier)
            if not secrets.compare_digest(str(found["challenge"]), challenge):
                raise InvalidGrant("code_verifier_mismatch")
            return await self._open(str(found["sid"]), action, req)
        except BrokerError as e:
            await self._audit.record(action, "failure", req=req, reason=e.reason)
            raise

    # --- the CLI session and its refresh tokens ----------------------------------------------

    async def _open(self, source_sid: str, action: str, req: RequestInfo) -> CliTokens:
        """A new CLI session of the person whose (still live) session ``source_sid`` approved."""
        try:
            source = await self._sessions.live(source_sid)
        except Unauthenticated as e:
            raise InvalidGrant(f"approving_{e.reason}") from e
        identity = session_identity(source)
        await self._refuse_logged_out(identity)
        sid = CLI_SESSION_PREFIX + self._sessions.new_id()
        # Fail-closed: no session is opened without its audit row.
        await self._audit.record_or_fail(
            action,
            "success",
            req=req,
            principal=f"{identity.provider}/{identity.subject}",
            details={"session": sid, "approved_by_session": source_sid},
        )
        session, token = await self._sessions.create(
            identity,
            source.role_arn,
            max_session_duration=self._settings.session.lifetime,
            session_id=sid,
        )
        # A back-channel logout of the approving session's provider session that ended it
        # after ``live`` above may have missed this new row: its tombstone is seen here.
        await self._refuse_logged_out(identity, session_id=session.id)
        return await self._tokens(session, token)

    async def _refuse_logged_out(self, identity: Identity, *, session_id: str = "") -> None:
        now = self._clock.now()
        reason = await provider_logouts.refusal(self._store, identity, now)
        if reason is None:
            return
        if session_id:
            await self._store.revoke_session(session_id, now=now, reason=reason)
        raise InvalidGrant(f"approving_{reason}")

    async def _tokens(self, session: Session, token: str) -> CliTokens:
        refresh = await self._values.issue(
            REFRESH,
            {"sid": session.id},
            browser=CLIENT_ID,
            lifetime=max(1.0, session.expires_at - self._clock.now()),
        )
        cred = self._sessions.verify(token)
        return CliTokens(
            access_token=token,
            expires_in=max(0, int(cred.expires_at - self._clock.now())),
            refresh_token=refresh,
        )

    async def refresh(self, refresh_token: str, req: RequestInfo) -> CliTokens:
        """RFC 6749 §6 with rotation: the old refresh token is spent, a new one issued. An old
        one presented again ends the CLI session (RFC 9700 §4.14.2: whoever holds it, the
        session is compromised)."""
        action = "cli.token.refresh_token"
        try:
            found = await self._values.consume(REFRESH, refresh_token, browser=CLIENT_ID)
            if found is None:
                used = await self._values.peek(REFRESH_USED, refresh_token, browser=CLIENT_ID)
                if used is not None:
                    await self._end(str(used["sid"]), "refresh_token_reused", req)
                    raise InvalidGrant("refresh_token_reused")
                raise InvalidGrant("refresh_token_unknown_or_expired")
            sid = str(found["sid"])
            try:
                session = await self._sessions.live(sid)
            except Unauthenticated as e:
                raise InvalidGrant(f"cli_{e.reason}") from e
            # Fail-closed: no new token without its audit row.
            await self._audit.record_or_fail(
                action,
                "success",
                req=req,
                principal=f"{session.provider}/{session.subject}",
                details={"session": sid},
            )
            now = self._clock.now()
            await self._store.put_single_use(
                SingleUse(
                    kind=REFRESH_USED,
                    key=binding_hash(refresh_token),
                    binding=self._client,
                    payload={"sid": sid},
                    created_at=now,
                    expires_at=max(now + 1, session.expires_at),
                )
            )
            token = await self._sessions.renew(sid)
        except BrokerError as e:
            await self._audit.record(action, "failure", req=req, reason=e.reason)
            raise
        return await self._tokens(session, token)

    async def revoke_refresh(self, refresh_token: str, req: RequestInfo) -> bool:
        """RFC 7009 for a refresh token: ends its CLI session. False: not a live one of ours."""
        if not 0 < len(refresh_token) <= MAX_VALUE:
            return False
        found = await self._values.peek(REFRESH, refresh_token, browser=CLIENT_ID)
        if found is None:
            return False
        await self._end(str(found["sid"]), "rfc7009", req)
        return True

    async def revoke_cli_access_token(self, token: str, req: RequestInfo) -> bool:
        """RFC 7009 for a CLI session's access token: the session and what was derived from
        it end. False: not a valid CLI session token (the STS revocation handles the rest)."""
        try:
            await self._sessions.keyring.learn(token)
            ctx = self._sessions.verify(token)
        except Unauthenticated:
            return False
        if not ctx.session_id.startswith(CLI_SESSION_PREFIX):
            return False
        await self._end(ctx.session_id, "rfc7009", req)
        return True

    async def _end(self, sid: str, reason: str, req: RequestInfo) -> None:
        now = self._clock.now()
        await self._audit.record_or_fail(
            "cli.session_end", "success", req=req, reason=reason, details={"session": sid}
        )
        await self._store.revoke_session(sid, now=now, reason=reason)
        origin = Revocation(kind="origin", target=sid, before=now, created_at=now)
        await self._store.add_revocation(origin)
        self._revocations.apply(origin)
        self._revocations.apply(Revocation(kind="session", target=sid, before=now, created_at=now))

    # --- the device grant ---------------------------------------------------------------------

    async def start_device(self, req: RequestInfo) -> DeviceStart:
        """RFC 8628 §3.1-3.2: a device code for the CLI, a user code for the person. The
        audit row comes first (``AuditUnavailable``: nothing is started)."""
        await self._audit.record_or_fail("cli.device", "success", req=req)
        now = self._clock.now()
        origin = {"ip": req.source_ip, "ua": req.user_agent[:200], "at": now}
        for _ in range(5):  # a user code already pending is drawn again
            user_code = create_string_user_code()
            device_code = secrets.token_urlsafe(32)
            try:
                await self._store.put_single_use(
                    SingleUse(
                        kind=USER_CODE,
                        key=binding_hash(normalize_user_code(user_code)),
                        binding=self._client,
                        payload={"device": binding_hash(device_code), **origin},
                        created_at=now,
                        expires_at=now + DEVICE_LIFETIME,
                    )
                )
            except AlreadyExists:
                continue
            await self._store.put_single_use(
                SingleUse(
                    kind=DEVICE,
                    key=binding_hash(device_code),
                    binding=self._client,
                    payload={"expires_at": now + DEVICE_LIFETIME, **origin},
                    created_at=now,
                    expires_at=now + DEVICE_LIFETIME + DEVICE_GRACE,
                )
            )
            return DeviceStart(device_code, user_code, DEVICE_LIFETIME, DEVICE_INTERVAL)
        raise AlreadyExists("user_code_space_crowded")

    async def device_request(
        self, ctx: Credential, user_code: str, req: RequestInfo
    ) -> DeviceRequest:
        """The pending request a user code names (for the confirmation page); uses nothing.
        Guesses count against the person and the address like failed logins (RFC 8628 §5.1:
        a user code is short), and a right one is forgiven."""
        who = f"{ctx.provider}/{ctx.subject}"
        try:
            attempt = await self._limits.attempt("cli-device", ctx.user_id, req.source_ip)
        except BrokerError as e:
            await self._audit.record(
                "cli.device.lookup", "failure", req=req, principal=who, reason=e.reason
            )
            raise
        code = normalize_user_code(user_code)
        found = (
            await self._store.peek_single_use(
                USER_CODE, binding_hash(code), binding=self._client, now=self._clock.now()
            )
            if code
            else None
        )
        if found is None:
            unknown = InvalidRequest(
                "user_code_unknown",
                public_message="This code is not valid (or has expired, or was used).",
            )
            await self._audit.record(
                "cli.device.lookup", "failure", req=req, principal=who, reason=unknown.reason
            )
            raise unknown
        await attempt.succeeded()
        p = found.payload
        return DeviceRequest(
            user_code=f"{code[:4]}-{code[4:]}",
            source_ip=str(p.get("ip", "")),
            user_agent=str(p.get("ua", "")),
            requested_at=float(p.get("at", 0.0)),
        )

    async def decide_device(
        self, ctx: Credential, user_code: str, *, approve: bool, req: RequestInfo
    ) -> None:
        """The signed-in person's one decision on a device request (the user code is consumed
        atomically); approval binds the device code to this browser's session."""
        action = "cli.device.approve" if approve else "cli.device.deny"
        who = f"{ctx.provider}/{ctx.subject}"
        code = normalize_user_code(user_code)
        now = self._clock.now()
        found = (
            await self._store.consume_single_use(
                USER_CODE, binding_hash(code), binding=self._client, now=now
            )
            if code
            else None
        )
        if found is None:
            e = InvalidRequest(
                "user_code_unknown",
                public_message="This code is not valid (or has expired, or was used).",
            )
            await self._audit.record(action, "failure", req=req, principal=who, reason=e.reason)
            raise e
        await self._audit.record_or_fail(
            action, "success", req=req, principal=who, details={"session": ctx.session_id}
        )
        await self._store.put_single_use(
            SingleUse(
                kind=DECISION,
                key=str(found.payload["device"]),
                binding=self._client,
                payload={"approved": approve, "sid": ctx.session_id},
                created_at=now,
                expires_at=found.expires_at,
            )
        )

    async def poll_device(self, device_code: str, req: RequestInfo) -> CliTokens:
        """RFC 8628 §3.4-3.5: pending, slow_down, expired, denied, or the tokens (once)."""
        action = "cli.token.device_code"
        try:
            if not 0 < len(device_code) <= MAX_VALUE:
                raise InvalidGrant("device_code_malformed")
            key = binding_hash(device_code)
            now = self._clock.now()
            device = await self._store.peek_single_use(DEVICE, key, binding=self._client, now=now)
            if device is None:
                raise InvalidGrant("device_code_unknown_or_used")
            if now >= float(device.payload["expires_at"]):
                raise ExpiredDeviceCode("device_code_expired")
            await self._slow_down(key, now)
            decision = await self._store.consume_single_use(
                DECISION, key, binding=self._client, now=now
            )
            if decision is None:
                raise AuthorizationPending("authorization_pending")
            # The device code ends with its decision: a second poll finds nothing.
            await self._store.consume_single_use(DEVICE, key, binding=self._client, now=now)
            if not decision.payload["approved"]:
                raise OAuthAccessDenied("device_denied")
            return await self._open(str(decision.payload["sid"]), action, req)
        except BrokerError as e:
            if not isinstance(e, AuthorizationPending):  # the normal wait is not a refusal
                await self._audit.record_batched(action, "failure", req=req, reason=e.reason)
            raise

    async def _slow_down(self, device_key: str, now: float) -> None:
        """One poll per device code and ``DEVICE_INTERVAL`` window: the window's marker is a
        single-use value whose insertion is the check (``AlreadyExists``: a second poll)."""
        window = int(now // DEVICE_INTERVAL)
        try:
            await self._store.put_single_use(
                SingleUse(
                    kind=POLL,
                    key=f"{device_key}:{window}",
                    binding=self._client,
                    payload={},
                    created_at=now,
                    expires_at=now + DEVICE_LIFETIME,
                )
            )
        except AlreadyExists as e:
            raise SlowDown("polled_too_fast") from e

    # --- roles and role credentials ------------------------------------------------------------

    async def roles(self, ctx: Credential, req: RequestInfo) -> Sequence[Candidate]:
        """The roles the session's person may take: ``/roles``'s trust evaluation."""
        identity = Identity(
            provider=ctx.provider,
            subject=ctx.subject,
            name=ctx.subject,
            email=ctx.email,
            groups=ctx.groups,
            claims=session_identity_claims(ctx),
            mfa=ctx.mfa,
            user_id=ctx.user_id,
            mfa_authenticated_at=ctx.mfa_authenticated_at,
        )
        return await self._roles.candidates(identity, source_ip=req.source_ip)

    async def credentials(
        self, ctx: Credential, role: str, duration: int | None, req: RequestInfo
    ) -> IssuedCredentials:
        return await self._sts.assume_for_session(ctx, role, req, duration=duration)


def credential_process(issued: IssuedCredentials) -> Mapping[str, Any]:
    """AWS ``credential_process`` JSON (``Version`` 1)."""
    exp = datetime.fromtimestamp(issued.expiration, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "Version": 1,
        "AccessKeyId": issued.access_key_id,
        "SecretAccessKey": issued.secret_access_key,
        "SessionToken": issued.session_token,
        "Expiration": exp,
    }
