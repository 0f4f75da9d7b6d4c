"""Back-channel logouts that logins still pending must see (OpenID Connect Back-Channel Logout
1.0 §2.7: the RP ends *every* session the logout names, including one not yet issued).

A login becomes a session in steps: the callback verifies the ID token, then the person may
choose a role (``PENDING_ROLE``), which holds the identity, the provider's ``sid`` included, for
up to ``PENDING_LIFETIME``. A logout token that arrives in between finds no session row to end,
so ``BackchannelLogout`` also leaves a tombstone in the store (``Store.put_provider_logout``),
shared by every instance: the ``sid`` ended, or, for a ``sub``-only token, the provider user
logged out at that time. Every path that turns a verified identity into a session (``_issue`` of
``LoginService``: role choice, the single-role login, role switch; a CLI session) asks
``refusal`` before the session exists and once more after: a logout whose tombstone lands after
the first read revokes the new row itself (its ``revoke_provider_session`` / user revocation
runs after the tombstone is written), or the second read sees the tombstone.

A tombstone lasts as long as a login that began before the logout could still be pending: the
login state (``[login] state_ttl``), then the pending choice, plus the provider's clock leeway.
"""

from __future__ import annotations

from broker.domain.claims import Identity
from broker.storage.base import ProviderLogout, Store

SID = "sid"  # a provider session ended: every login that began in it
SUB = "sub"  # a provider user logged out: every login of theirs verified until then

SESSION_ENDED = "provider_session_ended"
USER_LOGGED_OUT = "provider_user_logged_out"
ENDED_MESSAGE = (
    "You signed out at your identity provider while this sign-in was waiting. Sign in again."
)


async def remember(
    store: Store,
    provider: str,
    *,
    sid: str | None,
    subject: str | None,
    now: float,
    lifetime: float,
) -> None:
    """Leave the tombstone of a logout token: its ``sid`` if it has one (session-granular, as
    the logout itself), else its ``sub`` with ``now`` as the time the user logged out."""
    kind, value = (SID, sid) if sid is not None else (SUB, subject or "")
    if not value:
        return
    await store.put_provider_logout(
        ProviderLogout(
            provider=provider, kind=kind, value=value, logged_out_at=now, expires_at=now + lifetime
        )
    )


async def refusal(store: Store, identity: Identity, now: float) -> str | None:
    """Why ``identity`` may not become a session (a back-channel logout ended it), or None."""
    for t in await store.provider_logouts(
        identity.provider, sid=identity.provider_sid, subject=identity.subject, now=now
    ):
        if t.kind == SID:
            return SESSION_ENDED
        if t.kind == SUB and identity.verified_at <= t.logged_out_at:
            return USER_LOGGED_OUT
    return None
