"""Sessions (contract C4): a server-side record plus a short-lived broker-signed JWT.

The JWT in the cookie lives ``token_lifetime`` (never longer than the idle timeout or the
session). Verifying it is a signature check plus the in-memory revocation state: no database.
When it is past half its life, ``refresh`` consults the store once (session still live, not idle
too long) and issues a new one; that is where the idle timeout is enforced server-side.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import uuid
from typing import Any

from broker.clock import Clock
from broker.config import Settings
from broker.domain import tokens
from broker.domain.claims import Identity
from broker.errors import (
    AlreadyExists,
    ExpiredToken,
    InvalidToken,
    TokenExpired,
    Unauthenticated,
)
from broker.keyring import KeyRing
from broker.service.revocation import RevocationState
from broker.service.single_use import binding_hash
from broker.service.verified import Credential, credential_from_claims
from broker.storage.base import Revocation, Session, SingleUse, Store

log = logging.getLogger(__name__)

PORTAL_CREDENTIALS = "portal-credentials"  # this session handed out role credentials


def verified_claims(keys: KeyRing, token: str, *, typ: str, audience: str) -> dict[str, Any]:
    """The claims of a broker token of type ``typ``, or ``Unauthenticated`` naming the check
    that failed (``token_expired`` apart, so callers can renew)."""
    try:
        return keys.verify(token, typ=typ, audience=audience)
    except ExpiredToken as e:
        raise TokenExpired("token_expired") from e
    except InvalidToken as e:
        raise Unauthenticated(f"invalid_token:{e.reason}") from e


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
        ends_by: float | None = None,
    ) -> tuple[Session, str]:
        """A brand-new session (a new id at every login: no fixation) and its first token.
        ``session_id``: the fresh id to use, when the caller audits it before (``new_id``).
        ``ends_by``: a latest end (a role switch never outlives the session it replaces)."""
        now = self._clock.now()
        cfg = self._settings.session
        lifetime = min(cfg.lifetime, max_session_duration)
        if ends_by is not None:
            lifetime = min(lifetime, max(0.0, ends_by - now))
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
            mfa_authenticated_at=identity.mfa_authenticated_at if identity.mfa else None,
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
        iat = tokens.issue_time(now)  # to the millisecond: see ``issue_time``
        claims: dict[str, Any] = {
            "iss": self._issuer,
            "sub": s.user_id,
            "aud": self._issuer,
            "iat": iat,
            "nbf": iat,
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
        if s.mfa and s.mfa_authenticated_at is not None:
            claims[tokens.CLAIM_MFA_AT] = s.mfa_authenticated_at
        return self._keys.sign(claims, typ=tokens.SESSION_TYP)

    # --- verifying (hot path: no database) -------------------------------------------------

    def verify(self, token: str) -> Credential:
        """Signature, typ, audience, expiry and revocation. Raises ``Unauthenticated``.

        The credential's claims are decoded again from ``token`` if read (``TokenClaims``):
        forward-auth verifies every token it has not seen and rarely reads them."""
        c = verified_claims(self._keys, token, typ=tokens.SESSION_TYP, audience=self._issuer)
        cred = self._not_revoked(credential_from_claims(c, token))
        self.note_seen(cred.session_id, self._clock.now())
        return cred

    def note_seen(self, session_id: str, now: float) -> None:
        """Last-seen bookkeeping, batched: written by ``flush_last_seen``."""
        self._pending_touch[session_id] = now

    def needs_refresh(self, ctx: Credential) -> bool:
        now = self._clock.now()
        half = (ctx.expires_at - ctx.issued_at) / 2
        return now >= ctx.issued_at + half and ctx.expires_at < ctx.session_expires_at

    async def refresh(self, ctx: Credential) -> str:
        """A new token for a live session; enforces revocation and idle timeout from the store."""
        return await self.renew(ctx.session_id)

    async def live(self, session_id: str) -> Session:
        """The session, if it is live (not revoked, expired or idle too long); else
        ``Unauthenticated``."""
        now = self._clock.now()
        s = await self._store.get_session(session_id)
        if s is None or s.revoked_at is not None:
            raise Unauthenticated("session_revoked")
        if now >= s.expires_at:
            raise Unauthenticated("session_expired")
        if now - s.last_seen_at > s.idle_timeout:
            raise Unauthenticated("session_idle")
        return s

    async def renew(self, session_id: str) -> str:
        """A new token for a live session (see ``live``)."""
        s = await self.live(session_id)
        now = self._clock.now()
        await self._store.touch_sessions({s.id: now})
        return self._token(s, now)

    async def resume(self, token: str) -> tuple[Credential, str | None]:
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

    def _verify_expired(self, token: str) -> Credential:
        try:
            c = self._keys.verify(
                token,
                typ=tokens.SESSION_TYP,
                audience=self._issuer,
                leeway=self._settings.session.idle_timeout,
            )
        except InvalidToken as e:
            raise Unauthenticated(f"invalid_token:{e.reason}") from e
        return self._not_revoked(credential_from_claims(c, token))

    def _not_revoked(self, cred: Credential) -> Credential:
        if self._revocations.is_revoked(
            session_id=cred.session_id,
            user_id=cred.user_id,
            role_arn=cred.role_arn,
            issued_at=cred.issued_at,
            origin_session_id=cred.origin_session_id,
        ):
            raise Unauthenticated("session_revoked")
        return cred

    # --- ending ----------------------------------------------------------------------------

    async def end(self, ctx: Credential, *, reason: str) -> None:
        """End the session. A plain logout leaves what services derived from it (token
        exchange) alive; but role credentials a person took in the portal (``mark_portal``)
        end with it: an ``origin`` revocation, as back-channel logout records."""
        now = self._clock.now()
        await self._store.revoke_session(ctx.session_id, now=now, reason=reason)
        key = binding_hash(ctx.session_id)
        if await self._store.peek_single_use(PORTAL_CREDENTIALS, key, binding=key, now=now):
            origin = await self._store.add_revocation(
                Revocation(kind="origin", target=ctx.session_id, before=now, created_at=now)
            )
            self._revocations.apply(origin)
        # Take effect on this instance at once, before the next poll.
        self._revocations.apply(
            Revocation(kind="session", target=ctx.session_id, before=now, created_at=now)
        )

    async def mark_portal(self, ctx: Credential) -> None:
        """Note, before the portal hands this session's person role credentials, that ending
        the session must end them too (see ``end``); kept until the session's own end."""
        key = binding_hash(ctx.session_id)
        mark = SingleUse(
            kind=PORTAL_CREDENTIALS,
            key=key,
            binding=key,
            payload={},
            created_at=self._clock.now(),
            expires_at=ctx.session_expires_at,
        )
        with contextlib.suppress(AlreadyExists):  # marked by an earlier portal request
            await self._store.put_single_use(mark)

    async def flush_last_seen(self) -> int:
        """Write the batched last-seen times; called periodically."""
        if not self._pending_touch:
            return 0
        batch, self._pending_touch = self._pending_touch, {}
        await self._store.touch_sessions(batch)
        return len(batch)
