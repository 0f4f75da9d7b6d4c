"""Sessions (contract C4): a server-side record plus a short-lived broker-signed JWT.

The JWT in the cookie lives ``token_lifetime`` (never longer than the idle timeout or the
session). Verifying it is a signature check plus the in-memory revocation state: no database.
When it is past half its life, ``refresh`` consults the store once (session still live, not idle
too long) and issues a new one; that is where the idle timeout is enforced server-side.
"""

from __future__ import annotations

import logging
import secrets
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from broker.clock import Clock
from broker.config import Settings
from broker.domain import tokens
from broker.domain.claims import Identity
from broker.errors import ExpiredToken, InvalidToken, TokenExpired, Unauthenticated
from broker.keyring import KeyRing
from broker.service.revocation import RevocationState
from broker.storage.base import Revocation, Session, Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SessionContext:
    """A verified session token, as the rest of the broker sees it."""

    session_id: str
    user_id: str
    provider: str
    subject: str
    role_arn: str
    email: str
    groups: tuple[str, ...]
    mfa: bool
    tags: Mapping[str, str]
    issued_at: float
    token_expires_at: float
    session_expires_at: float
    claims: Mapping[str, Any]

    @property
    def role_name(self) -> str:
        return self.role_arn.rsplit("/", 1)[-1]


class SessionView(Protocol):
    """What revocation is checked on: any verified form of a session token's claims."""

    @property
    def session_id(self) -> str: ...
    @property
    def user_id(self) -> str: ...
    @property
    def role_arn(self) -> str: ...
    @property
    def issued_at(self) -> float: ...


View = TypeVar("View", bound=SessionView)


def verified_claims(keys: KeyRing, token: str, *, typ: str, audience: str) -> dict[str, Any]:
    """The claims of a broker token of type ``typ``, or ``Unauthenticated`` naming the check
    that failed (``token_expired`` apart, so callers can renew)."""
    try:
        return keys.verify(token, typ=typ, audience=audience)
    except ExpiredToken as e:
        raise TokenExpired("token_expired") from e
    except InvalidToken as e:
        raise Unauthenticated(f"invalid_token:{e.reason}") from e


def _context(c: Mapping[str, Any]) -> SessionContext:
    """A verified token's claims as a ``SessionContext``; a missing claim is an invalid token."""
    try:
        return SessionContext(
            session_id=str(c[tokens.CLAIM_SID]),
            user_id=str(c["sub"]),
            provider=str(c[tokens.CLAIM_PROVIDER]),
            subject=str(c[tokens.CLAIM_SUBJECT]),
            role_arn=str(c[tokens.CLAIM_ROLE]),
            email=str(c.get(tokens.CLAIM_EMAIL, "")),
            groups=tuple(str(g) for g in c.get(tokens.CLAIM_GROUPS, [])),
            mfa=bool(c.get(tokens.CLAIM_MFA, False)),
            tags={str(k): str(v) for k, v in dict(c.get(tokens.CLAIM_TAGS, {})).items()},
            issued_at=float(c["iat"]),
            token_expires_at=float(c["exp"]),
            session_expires_at=float(c.get("session_exp", c["exp"])),
            claims=c,
        )
    except (KeyError, TypeError, ValueError) as e:
        raise Unauthenticated("invalid_token:missing_claim") from e


class SessionService:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        keyring: KeyRing,
        revocations: RevocationState,
        clock: Clock,
    ) -> None:
        self._settings = settings
        self._store = store
        self._keys = keyring
        self._revocations = revocations
        self._clock = clock
        self._issuer = settings.server.public_url
        self._pending_touch: dict[str, float] = {}

    # --- issuing ---------------------------------------------------------------------------

    async def create(
        self,
        identity: Identity,
        role_arn: str,
        *,
        max_session_duration: float,
        session_id: str | None = None,
    ) -> tuple[Session, str]:
        """A brand-new session (a new id at every login: no fixation) and its first token.
        ``session_id``: the fresh id to use, when the caller audits it before (``new_id``)."""
        now = self._clock.now()
        cfg = self._settings.session
        lifetime = min(cfg.lifetime, max_session_duration)
        session = Session(
            id=session_id or self.new_id(),
            user_id=identity.user_id,
            provider=identity.provider,
            subject=identity.subject,
            role_arn=role_arn,
            email=identity.email,
            groups=identity.groups,
            mfa=identity.mfa,
            tags={},
            created_at=now,
            expires_at=now + lifetime,
            idle_timeout=cfg.idle_timeout,
            last_seen_at=now,
            provider_sid=identity.provider_sid,
        )
        await self._store.create_session(session)
        return session, self._token(session, now)

    @staticmethod
    def new_id() -> str:
        """A fresh, unguessable session id."""
        return str(uuid.uuid4())

    def _token(self, s: Session, now: float) -> str:
        cfg = self._settings.session
        exp = min(now + min(cfg.token_lifetime, s.idle_timeout), s.expires_at)
        claims: dict[str, Any] = {
            "iss": self._issuer,
            "sub": s.user_id,
            "aud": self._issuer,
            "iat": int(now),
            "nbf": int(now),
            "exp": int(exp),
            "jti": secrets.token_urlsafe(16),
            tokens.CLAIM_SID: s.id,
            tokens.CLAIM_ROLE: s.role_arn,
            tokens.CLAIM_PROVIDER: s.provider,
            tokens.CLAIM_SUBJECT: s.subject,
            tokens.CLAIM_EMAIL: s.email,
            tokens.CLAIM_GROUPS: list(s.groups),
            tokens.CLAIM_MFA: s.mfa,
            tokens.CLAIM_TAGS: dict(s.tags),
            "session_exp": int(s.expires_at),
        }
        return self._keys.sign(claims, typ=tokens.SESSION_TYP)

    # --- verifying (hot path: no database) -------------------------------------------------

    def verify(self, token: str) -> SessionContext:
        """Signature, typ, audience, expiry and revocation. Raises ``Unauthenticated``."""
        return self.verify_as(token, _context)

    def verify_as(self, token: str, convert: Callable[[Mapping[str, Any]], View]) -> View:
        """``verify``, with the claims turned into what ``convert`` makes instead of a
        ``SessionContext`` (forward-auth builds its ``Credential`` straight from them).
        ``convert`` raises ``Unauthenticated`` for a missing claim, as ``_context`` does."""
        c = verified_claims(self._keys, token, typ=tokens.SESSION_TYP, audience=self._issuer)
        view = self._not_revoked(convert(c))
        self.note_seen(view.session_id, self._clock.now())
        return view

    def note_seen(self, session_id: str, now: float) -> None:
        """Last-seen bookkeeping, batched: written by ``flush_last_seen``."""
        self._pending_touch[session_id] = now

    def needs_refresh(self, ctx: SessionContext) -> bool:
        now = self._clock.now()
        half = (ctx.token_expires_at - ctx.issued_at) / 2
        return now >= ctx.issued_at + half and ctx.token_expires_at < ctx.session_expires_at

    async def refresh(self, ctx: SessionContext) -> str:
        """A new token for a live session; enforces revocation and idle timeout from the store."""
        now = self._clock.now()
        s = await self._store.get_session(ctx.session_id)
        if s is None or s.revoked_at is not None:
            raise Unauthenticated("session_revoked")
        if now >= s.expires_at:
            raise Unauthenticated("session_expired")
        if now - s.last_seen_at > s.idle_timeout:
            raise Unauthenticated("session_idle")
        await self._store.touch_sessions({s.id: now})
        return self._token(s, now)

    async def resume(self, token: str) -> tuple[SessionContext, str | None]:
        """Verify a cookie token, refreshing it through the store when it is past half-life or
        expired-but-within-the-idle-window. Returns the context and a new token (or None)."""
        await self._keys.learn(token)  # a key another instance made: the ring's shared refresh
        try:
            ctx = self.verify(token)
        except TokenExpired:
            # An expired token may still name a live session: one store read decides.
            ctx = self._verify_expired(token)
            new = await self.refresh(ctx)
            return self.verify(new), new
        if self.needs_refresh(ctx):
            new = await self.refresh(ctx)
            return self.verify(new), new
        return ctx, None

    @property
    def keyring(self) -> KeyRing:
        """The one key ring every verification path shares (see ``KeyRing.learn``)."""
        return self._keys

    def _verify_expired(self, token: str) -> SessionContext:
        try:
            c = self._keys.verify(
                token,
                typ=tokens.SESSION_TYP,
                audience=self._issuer,
                leeway=self._settings.session.idle_timeout,
            )
        except InvalidToken as e:
            raise Unauthenticated(f"invalid_token:{e.reason}") from e
        return self._not_revoked(_context(c))

    def _not_revoked(self, view: View) -> View:
        if self._revocations.is_revoked(
            session_id=view.session_id,
            user_id=view.user_id,
            role_arn=view.role_arn,
            issued_at=view.issued_at,
        ):
            raise Unauthenticated("session_revoked")
        return view

    # --- ending ----------------------------------------------------------------------------

    async def end(self, ctx: SessionContext, *, reason: str) -> None:
        now = self._clock.now()
        await self._store.revoke_session(ctx.session_id, now=now, reason=reason)
        # Take effect on this instance at once, before the next poll.
        self._revocations.apply(
            Revocation(kind="session", target=ctx.session_id, before=now, created_at=now)
        )

    async def flush_last_seen(self) -> int:
        """Write the batched last-seen times; called periodically."""
        if not self._pending_touch:
            return 0
        batch, self._pending_touch = self._pending_touch, {}
        await self._store.touch_sessions(batch)
        return len(batch)
