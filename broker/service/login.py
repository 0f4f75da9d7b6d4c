"""Logging in: the authorization-code flow with any OIDC provider, and the local provider.

Every step that fails raises a ``BrokerError`` with a specific reason and is audited; nothing is
issued on failure, and the single-use login state is consumed at most once (and only by the
browser it was issued to).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from broker.clock import Clock
from broker.config import Settings
from broker.domain import tokens
from broker.domain.claims import Identity
from broker.domain.redirects import safe_redirect
from broker.errors import (
    AccessDenied,
    BrokerError,
    InvalidCredentials,
    InvalidRequest,
    InvalidState,
    InvalidToken,
    NoRoleAvailable,
    NotFound,
    RateLimited,
)
from broker.idp import OIDCClient, new_pkce
from broker.service.audit import Auditor, RequestInfo
from broker.service.passwords import (
    RateLimiter,
    hash_password,
    password_problem,
    verify_password,
)
from broker.service.roles import Candidate, RoleCatalog
from broker.service.sessions import SessionService
from broker.signing import KeyRing
from broker.storage.base import LoginState, Session, Store, User

PENDING_TYP = "broker-pending+jwt"  # identity waiting for a role choice
PASSWORD_TYP = "broker-password+jwt"  # local user who must set a new password first
PENDING_LIFETIME = 600


def binding_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


@dataclass(frozen=True)
class LoginOutcome:
    """A verified identity, the roles it may take, and where to go afterwards."""

    identity: Identity
    candidates: Sequence[Candidate]
    redirect_after: str
    requested_role: str | None = None


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
        keyring: KeyRing,
        auditor: Auditor,
        clock: Clock,
    ) -> None:
        self._settings = settings
        self._store = store
        self._clients = clients
        self._roles = roles
        self._sessions = sessions
        self._keys = keyring
        self._audit = auditor
        self._clock = clock
        login = settings.login
        self._user_limiter = RateLimiter(
            clock, limit=login.max_failures_per_user, window=login.failure_window
        )
        self._ip_limiter = RateLimiter(
            clock, limit=login.max_failures_per_address, window=login.failure_window
        )

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
        amr = claims.get("amr")
        mfa = isinstance(amr, list) and any(m in ("mfa", "otp", "hwk", "swk") for m in amr)
        return Identity(
            provider=provider,
            subject=subject,
            name=name,
            email=email,
            groups=groups,
            claims=dict(claims),
            mfa=mfa,
            user_id=user.id,
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
        user_key = f"{provider}:{username.lower()}"
        ip_key = f"ip:{req.source_ip}"
        if self._user_limiter.blocked(user_key) or self._ip_limiter.blocked(ip_key):
            await self._audit.record(
                "login",
                "failure",
                req=req,
                principal=f"{provider}/{username}",
                reason="rate_limited",
            )
            raise RateLimited("too_many_failures")
        user = await self._store.find_user(provider, username) if username else None
        ok = verify_password(user.password_hash if user else None, password)
        if user is None or not ok or user.disabled:
            self._user_limiter.fail(user_key)
            self._ip_limiter.fail(ip_key)
            reason = (
                "unknown_user"
                if user is None
                else "user_disabled"
                if user.disabled and ok
                else "wrong_password"
            )
            await self._audit.record(
                "login", "failure", req=req, principal=f"{provider}/{username}", reason=reason
            )
            raise InvalidCredentials(reason)
        self._user_limiter.reset(user_key)
        return user, self.safe_rd(rd), role

    async def local_outcome(
        self, user: User, *, rd: str, role: str | None, req: RequestInfo
    ) -> LoginOutcome:
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

    def password_change_token(self, user: User, *, rd: str, role: str | None) -> str:
        now = self._clock.now()
        return self._keys.sign(
            {
                "iss": self._settings.server.public_url,
                "aud": self._settings.server.public_url,
                "sub": user.id,
                "iat": int(now),
                "exp": int(now + PENDING_LIFETIME),
                "jti": secrets.token_urlsafe(16),
                "rd": rd,
                "role": role,
            },
            typ=PASSWORD_TYP,
        )

    def read_password_change_token(self, token: str) -> tuple[str, str, str | None]:
        try:
            c = self._keys.verify(
                token, typ=PASSWORD_TYP, audience=self._settings.server.public_url
            )
        except InvalidToken as e:
            raise InvalidState(f"password_change_token:{e.reason}") from e
        role = c.get("role")
        return (
            str(c["sub"]),
            str(c.get("rd") or "/session"),
            role if isinstance(role, str) else None,
        )

    async def change_password(
        self, user_id: str, new_password: str, confirm: str, *, req: RequestInfo
    ) -> User:
        user = await self._store.get_user(user_id)
        if new_password != confirm:
            raise InvalidRequest(
                "password_confirmation_mismatch", public_message="The two passwords differ."
            )
        problem = password_problem(new_password, username=user.name)
        if problem:
            raise InvalidRequest("weak_password", public_message=problem)
        if verify_password(user.password_hash, new_password):
            raise InvalidRequest(
                "password_reused", public_message="Choose a password other than the one-time one."
            )
        await self._store.set_password(user.id, hash_password(new_password), must_change=False)
        await self._audit.record(
            "user.password_change", "success", req=req, principal=f"{user.provider}/{user.subject}"
        )
        return await self._store.get_user(user.id)

    # --- choosing a role and issuing the session -------------------------------------------

    def pending_token(self, outcome: LoginOutcome) -> str:
        now = self._clock.now()
        i = outcome.identity
        return self._keys.sign(
            {
                "iss": self._settings.server.public_url,
                "aud": self._settings.server.public_url,
                "sub": i.user_id,
                "iat": int(now),
                "exp": int(now + PENDING_LIFETIME),
                "jti": secrets.token_urlsafe(16),
                tokens.CLAIM_PROVIDER: i.provider,
                tokens.CLAIM_SUBJECT: i.subject,
                "name": i.name,
                tokens.CLAIM_EMAIL: i.email,
                tokens.CLAIM_GROUPS: list(i.groups),
                tokens.CLAIM_MFA: i.mfa,
                "roles": [c.role.name for c in outcome.candidates],
                "rd": outcome.redirect_after,
            },
            typ=PENDING_TYP,
        )

    def read_pending(self, token: str) -> tuple[Identity, list[str], str]:
        """(identity, role names it may take, redirect) from a pending-choice token."""
        try:
            c = self._keys.verify(token, typ=PENDING_TYP, audience=self._settings.server.public_url)
        except InvalidToken as e:
            raise InvalidState(f"pending_choice:{e.reason}") from e
        identity = Identity(
            provider=str(c[tokens.CLAIM_PROVIDER]),
            subject=str(c[tokens.CLAIM_SUBJECT]),
            name=str(c.get("name", "")),
            email=str(c.get(tokens.CLAIM_EMAIL, "")),
            groups=tuple(str(g) for g in c.get(tokens.CLAIM_GROUPS, [])),
            mfa=bool(c.get(tokens.CLAIM_MFA, False)),
            user_id=str(c["sub"]),
        )
        return identity, [str(r) for r in c.get("roles", [])], str(c.get("rd") or "/session")

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
        arn = self._roles.arn(role_name)
        session, token = await self._sessions.create(
            identity, arn, max_session_duration=role.max_session_duration
        )
        await self._audit.record(
            "role.choose", "success", req=req, principal=principal, details={"role": arn}
        )
        await self._audit.record(
            "login",
            "success",
            req=req,
            principal=principal,
            details={"role": arn, "session": session.id},
        )
        return Completed(session=session, token=token, redirect_after=rd)
