"""IdP-initiated logout: OpenID Connect Back-Channel Logout 1.0 (§2.5 - §2.8).

A provider whose configuration names a ``backchannel_logout_uri`` POSTs a logout token there
when one of its sessions ends. The token is verified (``OIDCClient.verify_logout_token``: like
an ID token, plus ``events``, ``sid``/``sub`` and no ``nonce``), its ``jti`` is used up in the
store (a single-use value of kind ``LOGOUT_JTI``, remembered as long as the token could be
accepted), and only then does anything end, on every instance within the revocation poll:

- ``sid`` (with or without ``sub``): exactly the broker sessions that began with that provider
  session (the ``sid`` of the ID token at login, kept on the session row) and every credential
  derived from them (``Store.revoke_provider_session``: the live rows are marked revoked and
  each session gets one ``origin`` revocation). Derived credentials (STS credentials from
  AssumeRole, RFC 8693 token-exchange results, chains of them) carry the id of the broker session
  they came from in their ``origin_sid`` claim (``tokens.CLAIM_ORIGIN_SID``; a chain keeps the
  first session's), which ``RevocationState.is_revoked`` checks against ``origin`` revocations.
  The user's other sessions (another browser, another provider session) and what was derived
  from them stay. A ``sid`` that started no session here ends nothing, even with a ``sub``.
- ``sub`` alone: every session of that provider subject's broker user, and every credential
  issued to that user until now (``Store.revoke_user_sessions``: one ``user`` revocation).

A login still pending when the token arrives (the callback done, the role not yet chosen) has
no session row to end: the token also leaves a tombstone in the store (``provider_logouts``:
the ``sid``, or the ``sub`` with the time), which refuses that login when it would become a
session, on any instance.

A plain ``POST /logout`` records a ``session`` revocation instead, which ends only that
session's own tokens: credentials derived from it live on until they expire, as AWS STS
credentials outlive the console session. Back-channel logout ends the provider session's
effects, so it takes them too.

Every refusal is audited (``logout.backchannel``, with the reason) and changes nothing.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping

from broker.clock import Clock
from broker.config import Settings
from broker.errors import (
    AlreadyExists,
    BrokerError,
    InvalidIdToken,
    InvalidLogoutToken,
    NotFound,
    StoreError,
)
from broker.idp import OIDCClient
from broker.idp.logout_token import MAX_AGE, LogoutToken
from broker.service import provider_logouts
from broker.service.audit import Auditor, RequestInfo
from broker.service.login import PENDING_LIFETIME
from broker.service.revocation import RevocationState
from broker.storage.base import Revocation, SingleUse, Store

log = logging.getLogger(__name__)

ACTION = "logout.backchannel"
LOGOUT_JTI = "logout-token-jti"  # single-use kind: a provider's logout token, by its jti
REASON = "backchannel_logout"


def jti_key(provider: str, jti: str) -> str:
    """The store key of a logout token's ``jti`` (providers' ``jti`` values may collide)."""
    return hashlib.sha256(f"{provider}\n{jti}".encode()).hexdigest()


class BackchannelLogout:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        clients: Mapping[str, OIDCClient],
        revocations: RevocationState,
        auditor: Auditor,
        clock: Clock,
    ) -> None:
        self._settings = settings
        self._store = store
        self._clients = clients
        self._revocations = revocations
        self._audit = auditor
        self._clock = clock

    async def refused(self, provider: str, err: BrokerError, req: RequestInfo) -> None:
        """Audit a request refused before its token could be read (the web layer's checks)."""
        await self._audit.record(
            ACTION, "failure", req=req, principal=provider[:64], reason=err.reason
        )

    async def logout(self, provider: str, logout_token: str, req: RequestInfo) -> int:
        """Verify the logout token and end what it names; returns how many users it concerned
        (0 is a success too: nothing of that provider session is left here).
        Raises ``NotFound`` (no such provider, or back-channel logout not enabled for it),
        ``InvalidLogoutToken`` (400), ``ProviderUnavailable`` or ``StoreError``."""
        principal = provider[:64]
        try:
            client = self._client(provider)
            if not logout_token:
                raise InvalidLogoutToken("logout_token_missing")
            token = await self._verified(client, logout_token)
            principal = f"{provider}/{token.subject or ''}"
            await self._use_jti(provider, token)
        except BrokerError as e:
            await self._audit.record(
                ACTION, "failure", req=req, principal=principal, reason=e.reason
            )
            raise
        try:
            users, sessions = await self._end(provider, token)
        except StoreError as e:
            # Nothing may be half done and unrepeatable: let the provider (or an operator) retry.
            await self._release_jti(provider, token)
            await self._audit.record(
                ACTION, "failure", req=req, principal=principal, reason=e.reason
            )
            raise
        await self._audit.record(
            ACTION,
            "success",
            req=req,
            principal=principal,
            details={
                "sid": token.sid or "",
                "sub": token.subject or "",
                "users": users,
                "sessions": sessions,
            },
        )
        return len(users)

    def _client(self, provider: str) -> OIDCClient:
        client = self._clients.get(provider)
        if client is None or not client.config.backchannel_logout_uri:
            raise NotFound(
                f"backchannel_logout_not_enabled:{provider[:64]}",
                public_message="Back-channel logout is not enabled for this provider.",
            )
        return client

    @staticmethod
    async def _verified(client: OIDCClient, raw: str) -> LogoutToken:
        try:
            return await client.verify_logout_token(raw)
        except InvalidIdToken as e:
            raise InvalidLogoutToken(e.reason) from e

    async def _use_jti(self, provider: str, token: LogoutToken) -> None:
        """§2.6 step 7 (optional there, required here): a replayed token would end sessions
        that began after the logout it announced."""
        leeway = self._clients[provider].config.leeway
        now = self._clock.now()
        # The token is refused once its iat is older than MAX_AGE (+ leeway): remember that long.
        until = max(token.issued_at + MAX_AGE + leeway, now) + 1
        try:
            await self._store.put_single_use(
                SingleUse(
                    kind=LOGOUT_JTI,
                    key=jti_key(provider, token.jti),
                    binding="",
                    payload={"sid": token.sid or "", "sub": token.subject or ""},
                    created_at=now,
                    expires_at=until,
                )
            )
        except AlreadyExists as e:
            raise InvalidLogoutToken("jti_replayed") from e

    async def _release_jti(self, provider: str, token: LogoutToken) -> None:
        try:
            await self._store.consume_single_use(
                LOGOUT_JTI, jti_key(provider, token.jti), binding="", now=self._clock.now()
            )
        except StoreError:
            log.warning("could not release the jti of a failed back-channel logout")

    async def _end(self, provider: str, token: LogoutToken) -> tuple[list[str], list[str]]:
        """End what the token names; returns (the users concerned, the sessions ended by
        ``sid``), each sorted."""
        now = self._clock.now()
        # First the tombstone, for logins still pending: a session issued after this write
        # sees it; one issued before it is a row that the revocation below ends.
        leeway = self._clients[provider].config.leeway
        await provider_logouts.remember(
            self._store,
            provider,
            sid=token.sid,
            subject=token.subject,
            now=now,
            lifetime=self._settings.login.state_ttl + PENDING_LIFETIME + leeway,
        )
        if token.sid is not None:
            # Session-granular (§2.4): only what that provider session started, and what was
            # derived from it; the user's other sessions stay.
            users = await self._store.provider_session_users(provider, token.sid)
            ended = await self._store.revoke_provider_session(
                provider, token.sid, now=now, reason=REASON
            )
            for r in ended:
                self._revocations.apply(r)  # at once here; the others at their next poll
            return users, [r.target for r in ended]
        user = await self._store.find_user(provider, token.subject or "")
        if user is None:
            return [], []
        await self._store.revoke_user_sessions(user.id, now=now, reason=REASON)
        self._revocations.apply(Revocation(kind="user", target=user.id, before=now, created_at=now))
        return [user.id], []
