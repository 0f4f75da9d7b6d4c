"""Logging in: the authorization-code flow with any OIDC provider, and the local provider.

Every step that fails raises a ``BrokerError`` with a specific reason and is audited; nothing is
issued on failure. Each single-use value of a flow (the login state, the pending role choice, the
password-change ticket) is bound to the browser it was issued to, consumed at most once, and only
by the request that succeeds with it; logout ends them all.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from broker.clock import Clock
from broker.config import Settings
from broker.domain.claims import Identity, amr_auth_time, amr_shows_mfa
from broker.domain.redirects import safe_redirect
from broker.errors import (
    AccessDenied,
    BrokerError,
    InvalidCredentials,
    InvalidMfaCode,
    InvalidRequest,
    InvalidState,
    NoRoleAvailable,
    NotFound,
    Overloaded,
    RateLimited,
)
from broker.idp import OIDCClient, new_pkce
from broker.service import provider_logouts, single_use
from broker.service.activity import ActivityLog
from broker.service.audit import Auditor, RequestInfo
from broker.service.hashing import PasswordHashing
from broker.service.login_limits import LoginLimits
from broker.service.mfa import MfaService
from broker.service.passwords import password_problem
from broker.service.roles import Candidate, RoleCatalog
from broker.service.sessions import SessionService
from broker.service.single_use import SingleUseValues, binding_hash
from broker.service.sts import session_identity_claims
from broker.service.verified import Credential
from broker.storage.base import LoginState, RoleRecord, Session, Store, User

PENDING_LIFETIME = 600  # seconds a role choice or a password change may wait
MAX_SID_LENGTH = 256  # a provider's session id longer than this is not kept (nor matchable)
DISABLED_MESSAGE = "This account is disabled. Ask an administrator."


@dataclass(frozen=True)
class LoginOutcome:
    """A verified identity, the roles it may take, and where to go afterwards."""

    identity: Identity
    candidates: Sequence[Candidate]
    redirect_after: str
    requested_role: str | None = None


@dataclass(frozen=True)
class PendingChoice:
    """A verified identity waiting to choose among ``roles`` (a single-use value's payload)."""

    identity: Identity
    roles: tuple[str, ...]
    redirect_after: str


@dataclass(frozen=True)
class PasswordChange:
    """A local user who must set a new password before a session (a single-use value's)."""

    user_id: str
    redirect_after: str
    role: str | None
    mfa_authenticated_at: float | None = None  # the code accepted before, if the user has MFA


@dataclass(frozen=True)
class PendingMfa:
    """A local user whose password was right, waiting to give an MFA code (a single-use
    value's payload)."""

    user_id: str
    redirect_after: str
    role: str | None


@dataclass(frozen=True)
class Completed:
    session: Session
    token: str
    redirect_after: str


class LoginService:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        clients: Mapping[str, OIDCClient],
        roles: RoleCatalog,
        sessions: SessionService,
        auditor: Auditor,
        clock: Clock,
        hashing: PasswordHashing,
        mfa: MfaService | None = None,
        activity: ActivityLog | None = None,
    ) -> None:
        self._settings = settings
        self._activity = activity
        self._mfa = mfa
        self._store = store
        self._clients = clients
        self._roles = roles
        self._sessions = sessions
        self._audit = auditor
        self._clock = clock
        self._values = SingleUseValues(store, clock)
        self._hashing = hashing
        self._limits = LoginLimits(store, settings.login, clock)

    # --- helpers ---------------------------------------------------------------------------

    def safe_rd(self, rd: str | None) -> str:
        from urllib.parse import urlsplit

        u = urlsplit(self._settings.server.public_url)
        return safe_redirect(
            rd,
            own_origin=f"{u.scheme}://{u.netloc}",
            rules=self._settings.server.allowed_redirect_domains,
        )

    def callback_url(self, provider: str) -> str:
        return f"{self._settings.server.public_url}/callback/{provider}"

    def _provider_client(self, provider: str) -> OIDCClient:
        client = self._clients.get(provider)
        if client is None:
            raise NotFound(f"unknown_provider:{provider}", public_message="Unknown provider.")
        return client

    @staticmethod
    def _valid_role_name(role: str | None) -> str | None:
        if role is None or role == "":
            return None
        if len(role) > 64 or not all(c.isalnum() or c in "_.+=@-" for c in role):
            raise InvalidRequest("bad_role_parameter", public_message="Invalid role name.")
        return role

    # --- the authorization-code flow -------------------------------------------------------

    async def start(
        self, provider: str, *, rd: str | None, role: str | None, req: RequestInfo
    ) -> tuple[str, str]:
        """Returns (authorization URL, raw browser-binding value for the login cookie)."""
        client = self._provider_client(provider)
        role = self._valid_role_name(role)
        now = self._clock.now()
        binding_raw = secrets.token_urlsafe(32)
        verifier, challenge = new_pkce()
        state = LoginState(
            state=secrets.token_urlsafe(32),
            provider=provider,
            browser_binding=binding_hash(binding_raw),
            nonce=secrets.token_urlsafe(32),
            code_verifier=verifier,
            redirect_after=self.safe_rd(rd),
            role=role,
            created_at=now,
            expires_at=now + self._settings.login.state_ttl,
        )
        url = await client.authorization_url(
            redirect_uri=self.callback_url(provider),
            state=state.state,
            nonce=state.nonce,
            code_challenge=challenge,
        )
        await self._store.put_login_state(state)
        await self._audit.record(
            "login.start", "success", req=req, principal=provider, details={"role": role or ""}
        )
        return url, binding_raw

    async def finish(
        self,
        provider: str,
        params: Mapping[str, str],
        *,
        binding_raw: str | None,
        req: RequestInfo,
    ) -> LoginOutcome:
        try:
            return await self._finish(provider, params, binding_raw=binding_raw, req=req)
        except BrokerError as e:
            await self._audit.record(
                "login", "failure", req=req, principal=provider, reason=e.reason
            )
            raise

    async def _finish(
        self,
        provider: str,
        params: Mapping[str, str],
        *,
        binding_raw: str | None,
        req: RequestInfo,
    ) -> LoginOutcome:
        client = self._provider_client(provider)
        state_value = params.get("state", "")
        if not state_value:
            raise InvalidState("state_missing")
        if not binding_raw:
            raise InvalidState("login_cookie_missing")
        now = self._clock.now()
        state = await self._store.consume_login_state(
            state_value, browser_binding=binding_hash(binding_raw), now=now
        )
        if state is None:
            raise InvalidState("state_unknown_used_expired_or_other_browser")
        if state.provider != provider:
            raise InvalidState("state_for_another_provider")
        code = await client.check_authorization_response(params)
        token_set = await client.exchange_code(
            code=code, code_verifier=state.code_verifier, redirect_uri=self.callback_url(provider)
        )
        id_token = await client.verify_id_token(
            token_set.id_token,
            nonce=state.nonce,
            max_age=self._settings.login.state_ttl,  # the verifier adds the provider's leeway
            access_token=token_set.access_token or None,
            code=code,
        )
        identity = await self._federated_identity(provider, id_token.claims, now)
        return await self._outcome(identity, state.redirect_after, state.role, req)

    async def _federated_identity(
        self, provider: str, claims: Mapping[str, Any], now: float
    ) -> Identity:
        subject = str(claims["sub"])
        email = claims.get("email")
        # An unverified email is not an identity attribute we repeat to apps.
        if not isinstance(email, str) or claims.get("email_verified") is False:
            email = ""
        raw_groups = claims.get("groups", [])
        groups = (
            tuple(g for g in raw_groups if isinstance(g, str))
            if isinstance(raw_groups, list)
            else ()
        )
        name = next(
            (
                str(claims[k])
                for k in ("preferred_username", "email", "name")
                if isinstance(claims.get(k), str) and claims[k]
            ),
            subject,
        )
        user = await self._store.upsert_federated_user(
            provider, subject, name=name, email=email, groups=groups, now=now
        )
        if user.disabled:
            raise AccessDenied("user_disabled", public_message=DISABLED_MESSAGE)
        mfa = amr_shows_mfa(claims.get("amr"))  # RFC 8176: see docs/mfa.md
        sid = claims.get("sid")  # OIDC Back-Channel Logout 1.0 §2.1; bounded like any name
        return Identity(
            provider=provider,
            subject=subject,
            name=name,
            email=email,
            groups=groups,
            claims=dict(claims),
            mfa=mfa,
            user_id=user.id,
            provider_sid=sid if isinstance(sid, str) and 0 < len(sid) <= MAX_SID_LENGTH else "",
            mfa_authenticated_at=(amr_auth_time(claims) or now) if mfa else None,
            verified_at=now,
        )

    async def _outcome(
        self, identity: Identity, rd: str, role: str | None, req: RequestInfo
    ) -> LoginOutcome:
        candidates = await self._roles.candidates(identity, source_ip=req.source_ip)
        principal = f"{identity.provider}/{identity.subject}"
        if not candidates:
            raise NoRoleAvailable("no_role_trusts_identity")
        if role is not None and role not in {c.role.name for c in candidates}:
            raise AccessDenied(
                f"role_not_allowed:{role}",
                public_message=f"The role {role!r} is not available to you.",
            )
        await self._audit.record(
            "login.identity",
            "success",
            req=req,
            principal=principal,
            details={"candidates": [c.role.name for c in candidates]},
        )
        return LoginOutcome(
            identity=identity, candidates=candidates, redirect_after=rd, requested_role=role
        )

    # --- the local provider ----------------------------------------------------------------

    def local_provider(self) -> str | None:
        return next((n for n, p in self._settings.providers.items() if p.type == "local"), None)

    async def local_login(
        self, username: str, password: str, *, rd: str | None, role: str | None, req: RequestInfo
    ) -> tuple[User, str, str | None]:
        """Check a local password. Returns (user, redirect_after, role); rate-limited."""
        provider = self.local_provider()
        if provider is None:
            raise NotFound("local_provider_disabled")
        role = self._valid_role_name(role)
        principal = f"{provider}/{username}"
        try:
            attempt = await self._limits.attempt(provider, username, req.source_ip)
        except RateLimited:
            await self._audit.record(
                "login", "failure", req=req, principal=principal, reason="rate_limited"
            )
            raise
        user = await self._store.find_user(provider, username) if username else None
        try:
            ok = await self._hashing.verify(user.password_hash if user else None, password)
        except Overloaded as e:
            await attempt.void()
            await self._audit.record(
                "login", "failure", req=req, principal=principal, reason=e.reason
            )
            raise
        if user is None or not ok or user.disabled:
            reason = (
                "unknown_user"
                if user is None
                else "user_disabled"
                if user.disabled and ok
                else "wrong_password"
            )
            await self._audit.record(
                "login", "failure", req=req, principal=principal, reason=reason
            )
            raise InvalidCredentials(reason)
        await attempt.succeeded()
        return user, self.safe_rd(rd), role

    async def local_outcome(
        self,
        user: User,
        *,
        rd: str,
        role: str | None,
        req: RequestInfo,
        mfa_authenticated_at: float | None = None,
    ) -> LoginOutcome:
        """``mfa_authenticated_at``: when the user's MFA code was accepted (None: no MFA)."""
        now = self._clock.now()
        await self._store.record_login(user.id, now)
        identity = Identity(
            provider=user.provider,
            subject=user.subject,
            name=user.name,
            email=user.email,
            groups=user.groups,
            claims={
                "sub": user.subject,
                "name": user.name,
                "email": user.email,
                "groups": list(user.groups),
            },
            user_id=user.id,
            mfa=mfa_authenticated_at is not None,
            mfa_authenticated_at=mfa_authenticated_at,
            verified_at=now,
        )
        try:
            return await self._outcome(identity, rd, role, req)
        except BrokerError as e:
            await self._audit.record(
                "login",
                "failure",
                req=req,
                principal=f"{user.provider}/{user.subject}",
                reason=e.reason,
            )
            raise

    # --- the MFA step of a local login (single use, bound to the browser) -------------------

    async def mfa_required(self, user: User) -> bool:
        """Whether the user has an enabled MFA device (the login asks for a code)."""
        return self._mfa is not None and await self._mfa.enabled_device(user.id) is not None

    async def offer_mfa(self, user: User, *, rd: str, role: str | None, browser: str) -> str:
        """The pending second step that lets this browser, once, finish the login with a code."""
        return await self._values.issue(
            single_use.PENDING_MFA,
            {"user_id": user.id, "rd": rd, "role": role},
            browser=browser,
            lifetime=PENDING_LIFETIME,
        )

    async def pending_mfa(self, ticket: str, *, browser: str, req: RequestInfo) -> PendingMfa:
        """The pending MFA step this browser holds; audited ``InvalidState`` if none."""
        payload = await self._values.peek(single_use.PENDING_MFA, ticket, browser=browser)
        if payload is None:
            await self._audit.record(
                "login.mfa",
                "failure",
                req=req,
                reason="mfa_ticket_unknown_used_expired_or_other_browser",
            )
            raise InvalidState(
                "mfa_ticket_unknown_used_expired_or_other_browser",
                public_message="This sign-in step has expired or was already used. Sign in again.",
            )
        role = payload.get("role")
        return PendingMfa(
            user_id=str(payload["user_id"]),
            redirect_after=str(payload.get("rd") or "/session"),
            role=role if isinstance(role, str) else None,
        )

    async def complete_mfa(
        self, ticket: str, code: str, *, browser: str, req: RequestInfo
    ) -> tuple[User, PendingMfa, float]:
        """Check the code of the pending step's user and use up the step: (user, step, when the
        code was accepted). A wrong code leaves the step (rate-limited per user); the code is
        used up before the step, so neither can serve twice."""
        pending = await self.pending_mfa(ticket, browser=browser, req=req)
        user = await self._store.get_user(pending.user_id)
        principal = f"{user.provider}/{user.subject}"
        if self._mfa is None:
            raise InvalidState("mfa_unavailable")
        try:
            if user.disabled:
                raise AccessDenied("user_disabled", public_message=DISABLED_MESSAGE)
            proof = await self._mfa.verify(user.id, None, code, req=req, purpose="login.mfa")
            if proof is None:
                raise InvalidMfaCode("mfa_code_refused")
            if await self._values.consume(single_use.PENDING_MFA, ticket, browser=browser) is None:
                raise InvalidState("mfa_ticket_already_used")
        except BrokerError as e:
            await self._audit.record(
                "login", "failure", req=req, principal=principal, reason=e.reason
            )
            raise
        return user, pending, proof.authenticated_at

    # --- the password-change ticket (single use, bound to the browser) ----------------------

    async def offer_password_change(
        self,
        user: User,
        *,
        rd: str,
        role: str | None,
        browser: str,
        mfa_authenticated_at: float | None = None,
    ) -> str:
        """The ticket that lets this browser, once, set the password of a user who must."""
        return await self._values.issue(
            single_use.PASSWORD_CHANGE,
            {"user_id": user.id, "rd": rd, "role": role, "mfa_at": mfa_authenticated_at},
            browser=browser,
            lifetime=PENDING_LIFETIME,
        )

    async def password_change(
        self, ticket: str, *, browser: str, req: RequestInfo
    ) -> PasswordChange:
        """The pending password change this browser holds; audited ``InvalidState`` if none."""
        payload = await self._values.peek(single_use.PASSWORD_CHANGE, ticket, browser=browser)
        if payload is None:
            await self._audit.record(
                "user.password_change",
                "failure",
                req=req,
                reason="password_ticket_unknown_used_expired_or_other_browser",
            )
            raise InvalidState("password_ticket_unknown_used_expired_or_other_browser")
        role = payload.get("role")
        mfa_at = payload.get("mfa_at")
        return PasswordChange(
            user_id=str(payload["user_id"]),
            redirect_after=str(payload.get("rd") or "/session"),
            role=role if isinstance(role, str) else None,
            mfa_authenticated_at=float(mfa_at) if isinstance(mfa_at, int | float) else None,
        )

    async def change_password(
        self, ticket: str, new_password: str, confirm: str, *, browser: str, req: RequestInfo
    ) -> tuple[User, PasswordChange]:
        """Set the new password of the ticket's user and use up the ticket. Every refusal
        leaves the ticket as it was (the person may try another password) and is audited."""
        change = await self.password_change(ticket, browser=browser, req=req)
        user = await self._store.get_user(change.user_id)
        principal = f"{user.provider}/{user.subject}"
        try:
            if not user.must_change_password or user.disabled:
                # The ticket outlived its purpose (changed elsewhere, or the user was disabled).
                raise InvalidState(
                    "password_change_not_pending",
                    public_message="This password change is no longer pending. Sign in again.",
                )
            if new_password != confirm:
                raise InvalidRequest(
                    "password_confirmation_mismatch", public_message="The two passwords differ."
                )
            problem = password_problem(new_password, username=user.name)
            if problem:
                raise InvalidRequest("weak_password", public_message=problem)
            if await self._hashing.verify(user.password_hash, new_password):
                raise InvalidRequest(
                    "password_reused",
                    public_message="Choose a password other than the one-time one.",
                )
            new_hash = await self._hashing.hash(new_password)  # Overloaded leaves the ticket
            # Consumed only now, by the one request that changes the password.
            if (
                await self._values.consume(single_use.PASSWORD_CHANGE, ticket, browser=browser)
                is None
            ):
                raise InvalidState("password_ticket_already_used")
        except BrokerError as e:
            await self._audit.record(
                "user.password_change", "failure", req=req, principal=principal, reason=e.reason
            )
            raise
        await self._audit.record_or_fail(
            "user.password_change", "success", req=req, principal=principal
        )
        await self._store.set_password(user.id, new_hash, must_change=False, now=self._clock.now())
        return await self._store.get_user(user.id), change

    # --- choosing a role and issuing the session -------------------------------------------

    async def offer_roles(self, outcome: LoginOutcome, *, browser: str) -> str:
        """The pending choice that lets this browser, once, take one of the outcome's roles."""
        i = outcome.identity
        return await self._values.issue(
            single_use.PENDING_ROLE,
            {
                "user_id": i.user_id,
                "provider": i.provider,
                "subject": i.subject,
                "name": i.name,
                "email": i.email,
                "groups": list(i.groups),
                "mfa": i.mfa,
                "mfa_at": i.mfa_authenticated_at,
                "provider_sid": i.provider_sid,
                "at": i.verified_at,
                "roles": [c.role.name for c in outcome.candidates],
                "rd": outcome.redirect_after,
            },
            browser=browser,
            lifetime=PENDING_LIFETIME,
        )

    async def pending_choice(self, ticket: str, *, browser: str, req: RequestInfo) -> PendingChoice:
        """The role choice this browser holds; audited ``InvalidState`` if none."""
        c = await self._values.peek(single_use.PENDING_ROLE, ticket, browser=browser)
        if c is None:
            await self._audit.record(
                "role.choose",
                "failure",
                req=req,
                reason="pending_choice_unknown_used_expired_or_other_browser",
            )
            raise InvalidState(
                "pending_choice_unknown_used_expired_or_other_browser",
                public_message="This role choice has expired or was already made. Sign in again.",
            )
        identity = Identity(
            provider=str(c["provider"]),
            subject=str(c["subject"]),
            name=str(c.get("name", "")),
            email=str(c.get("email", "")),
            groups=tuple(str(g) for g in c.get("groups", [])),
            mfa=c.get("mfa") is True,
            user_id=str(c["user_id"]),
            provider_sid=str(c.get("provider_sid", "")),
            mfa_authenticated_at=(
                float(c["mfa_at"]) if isinstance(c.get("mfa_at"), int | float) else None
            ),
            verified_at=float(c["at"]) if isinstance(c.get("at"), int | float) else 0.0,
        )
        return PendingChoice(
            identity=identity,
            roles=tuple(str(r) for r in c.get("roles", [])),
            redirect_after=str(c.get("rd") or "/session"),
        )

    async def choose_role(
        self, ticket: str, role_name: str, *, browser: str, req: RequestInfo
    ) -> Completed:
        """Use up the pending choice for one of its roles and issue the session."""
        choice = await self.pending_choice(ticket, browser=browser, req=req)
        role = await self._allowed_role(choice.identity, role_name, choice.roles, req=req)
        # A provider logout since the callback refuses the choice before anything is used up.
        await self._refuse_logged_out(choice.identity, req)
        if await self._values.consume(single_use.PENDING_ROLE, ticket, browser=browser) is None:
            await self._audit.record(
                "role.choose",
                "failure",
                req=req,
                principal=f"{choice.identity.provider}/{choice.identity.subject}",
                reason="pending_choice_already_used",
            )
            raise InvalidState(
                "pending_choice_already_used",
                public_message="This role choice was already made. Sign in again.",
            )
        return await self._issue(choice.identity, role, rd=choice.redirect_after, req=req)

    async def forget_browser(self, *browser_values: str) -> int:
        """End every pending flow value this browser holds (logout)."""
        return await self._values.forget_browser(*browser_values)

    async def complete(
        self,
        identity: Identity,
        role_name: str,
        allowed: Sequence[str],
        *,
        rd: str,
        req: RequestInfo,
    ) -> Completed:
        """Issue the session for a role the identity was found to be allowed to take."""
        role = await self._allowed_role(identity, role_name, allowed, req=req)
        return await self._issue(identity, role, rd=rd, req=req)

    async def switch_role(self, ctx: Credential, role_name: str, *, req: RequestInfo) -> Completed:
        """The portal's "Switch": a new session for another role this person may take now (the
        same trust evaluation as at sign-in), ending no later than the current one, which ends
        with it (a new id: no fixation; what was derived from the old session ends too)."""
        s = await self._sessions.live(ctx.session_id)  # a revoked session switches nothing
        identity = Identity(
            provider=s.provider,
            subject=s.subject,
            name=s.subject,
            email=s.email,
            groups=s.groups,
            claims=session_identity_claims(ctx),
            mfa=s.mfa,
            user_id=s.user_id,
            provider_sid=s.provider_sid,  # the provider's logout still ends the new session
            mfa_authenticated_at=s.mfa_authenticated_at,
            verified_at=s.created_at,
        )
        candidates = await self._roles.candidates(identity, source_ip=req.source_ip)
        role = await self._allowed_role(
            identity, role_name, [c.role.name for c in candidates], req=req
        )
        done = await self._issue(
            identity, role, rd="/session", req=req, ends_by=ctx.session_expires_at
        )
        await self._sessions.end(ctx, reason="role_switch")
        return done

    async def _allowed_role(
        self, identity: Identity, role_name: str, allowed: Sequence[str], *, req: RequestInfo
    ) -> RoleRecord:
        principal = f"{identity.provider}/{identity.subject}"
        if role_name not in allowed:
            await self._audit.record(
                "role.choose",
                "denied",
                req=req,
                principal=principal,
                reason=f"role_not_allowed:{role_name}",
            )
            raise AccessDenied(
                f"role_not_allowed:{role_name}", public_message="That role is not available to you."
            )
        role = await self._store.get_role(role_name)
        if role is None:
            await self._audit.record(
                "role.choose", "denied", req=req, principal=principal, reason="role_deleted"
            )
            raise AccessDenied("role_deleted", public_message="That role no longer exists.")
        return role

    async def _refuse_disabled(
        self, identity: Identity, principal: str, req: RequestInfo, *, session_id: str = ""
    ) -> None:
        if not (await self._store.get_user(identity.user_id)).disabled:
            return
        if session_id:
            await self._store.revoke_session(session_id, now=self._clock.now(), reason="disabled")
        await self._audit.record(
            "role.choose", "denied", req=req, principal=principal, reason="user_disabled"
        )
        raise AccessDenied("user_disabled", public_message=DISABLED_MESSAGE)

    async def _refuse_logged_out(
        self, identity: Identity, req: RequestInfo, *, session_id: str = ""
    ) -> None:
        """Refuse (audited) an identity a provider's back-channel logout ended while its login
        was pending (``provider_logouts``); ``session_id``: the session just made of it, which is
        revoked then (no token of it has left)."""
        now = self._clock.now()
        reason = await provider_logouts.refusal(self._store, identity, now)
        if reason is None:
            return
        if session_id:
            await self._store.revoke_session(session_id, now=now, reason=reason)
        await self._audit.record(
            "role.choose",
            "denied",
            req=req,
            principal=f"{identity.provider}/{identity.subject}",
            reason=reason,
            details={"sid": identity.provider_sid},
        )
        raise AccessDenied(reason, public_message=provider_logouts.ENDED_MESSAGE)

    async def _issue(
        self,
        identity: Identity,
        role: RoleRecord,
        *,
        rd: str,
        req: RequestInfo,
        ends_by: float | None = None,
    ) -> Completed:
        principal = f"{identity.provider}/{identity.subject}"
        arn = self._roles.arn(role.name)
        await self._refuse_disabled(identity, principal, req)
        await self._refuse_logged_out(identity, req)
        session_id = self._sessions.new_id()
        # Fail-closed: no session exists, and no token leaves, without its audit rows.
        await self._audit.record_all_or_fail(
            self._audit.event(
                "role.choose", "success", req=req, principal=principal, details={"role": arn}
            ),
            self._audit.event(
                "login",
                "success",
                req=req,
                principal=principal,
                details={"role": arn, "session": session_id},
            ),
        )
        session, token = await self._sessions.create(
            identity,
            arn,
            max_session_duration=role.max_session_duration,
            session_id=session_id,
            ends_by=ends_by,
        )
        # Again once the session exists: a user disabled after the first read is disabled before
        # its revocation is written, and that revocation voids this session; or this read sees it.
        await self._refuse_disabled(identity, principal, req, session_id=session.id)
        # The same for a back-channel logout whose tombstone landed after the first read.
        await self._refuse_logged_out(identity, req, session_id=session.id)
        if self._activity is not None:
            # Taking a role at sign-in is assuming it with a web identity: counted as STS counts
            # AssumeRoleWithWebIdentity (the provider as the caller), so the unused-access
            # review sees the role as assumed even if its session then calls nothing.
            self._activity.note(
                self._settings.arn("oidc-provider", identity.provider),
                "sts:AssumeRoleWithWebIdentity",
                arn,
            )
        return Completed(session=session, token=token, redirect_after=rd)
