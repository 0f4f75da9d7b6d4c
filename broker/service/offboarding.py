"""Offboarding: disable and enable users, end every credential of a user or of a role.

Ending credentials is one revocation record in the store (``user`` or ``role``, "everything
issued up to now"), which this instance applies at once and every other instance picks up at its
next revocation poll (within 2 s, contract C4). The record voids every credential derived from
the user or role: browser sessions and their tokens, broker bearer tokens, STS credentials and
token-exchange results all carry the user id (``sub``) and the role ARN and are checked against
it; a revoked token cannot be refreshed either (refreshing verifies it first). A user's
session rows are marked revoked too.

A disabled user cannot sign in (local or federated), choose a role, or get STS credentials with
a web identity token; disabling also ends what the user already holds. Every operation is
audited (``user.disable``, ``user.enable``, ``user.revoke_sessions``, ``session.revoke``,
``role.revoke_sessions``), a refused one as a failure. Enabling gives access back, so its
audit row is written first and the change is not made without it; an operation that takes
access away is never held back by the audit log: it is made, then its row is written, and the
operator gets an error if that fails.
"""

from __future__ import annotations

from dataclasses import dataclass

from broker.clock import Clock
from broker.errors import BrokerError, NotFound
from broker.service.audit import Auditor
from broker.service.iam import IamService
from broker.service.revocation import RevocationState
from broker.storage.base import Revocation, Store, User


@dataclass(frozen=True)
class Offboarded:
    """What an operation did: whom it was about and how many live sessions it ended."""

    target: str  # the user id or role ARN
    label: str  # the user's or role's name
    sessions_ended: int = 0


class OffboardingService:
    def __init__(
        self,
        store: Store,
        iam: IamService,
        revocations: RevocationState,
        auditor: Auditor,
        clock: Clock,
    ) -> None:
        self._store = store
        self._iam = iam
        self._revocations = revocations
        self._audit = auditor
        self._clock = clock

    async def disable_user(self, ref: str, *, actor: str, reason: str = "") -> Offboarded:
        """Refuse the user's logins from now on and end everything it holds."""
        return await self._end_user("user.disable", ref, actor, reason, disable=True)

    async def enable_user(self, ref: str, *, actor: str, reason: str = "") -> Offboarded:
        """Let the user sign in again; credentials ended earlier stay ended."""
        action = "user.enable"
        user = await self._user(action, ref, actor)
        try:
            await self._audit.record_or_fail(
                action,
                "success",
                principal=actor,
                details={"user": user.id, "name": user.name, "note": reason},
            )
            await self._store.set_user_disabled(user.id, False)
        except BrokerError as e:
            await self._failed(action, actor, user.id, e)
            raise
        return Offboarded(user.id, user.name)

    async def revoke_user_sessions(self, ref: str, *, actor: str, reason: str = "") -> Offboarded:
        """End every credential the user holds now; it may sign in again."""
        return await self._end_user("user.revoke_sessions", ref, actor, reason, disable=False)

    async def end_session(
        self, ref: str, session_id: str, *, actor: str, reason: str = ""
    ) -> Offboarded:
        """End one live session of the user (an administrator's "end this session"): the
        session and every credential derived from it (an ``origin`` revocation, as back-channel
        logout records), here at once and elsewhere at the next poll. ``NotFound`` if it is
        not a live session of that user (nothing changes then)."""
        action = "session.revoke"
        user = await self._user(action, ref, actor)
        try:
            session = await self._store.get_session(session_id)
            if session is None or session.user_id != user.id or session.revoked_at is not None:
                raise NotFound("no_such_session", public_message="That session has ended already.")
            now = self._clock.now()
            ended = await self._store.revoke_session(
                session_id, now=now, reason=reason or "revoked by an administrator"
            )
            origin = await self._store.add_revocation(
                Revocation(kind="origin", target=session_id, before=now, created_at=now)
            )
        except BrokerError as e:
            await self._failed(action, actor, user.id, e)
            raise
        self._revocations.apply(origin)
        self._revocations.apply(
            Revocation(kind="session", target=session_id, before=now, created_at=now)
        )
        await self._audit.record_or_fail(
            action,
            "success",
            principal=actor,
            details={"user": user.id, "name": user.name, "session": session_id, "note": reason},
        )
        return Offboarded(user.id, user.name, int(ended))

    async def _end_user(
        self, action: str, ref: str, actor: str, reason: str, *, disable: bool
    ) -> Offboarded:
        user = await self._user(action, ref, actor)
        try:
            if disable:
                # The flag first: a login that passes its disabled check before this write
                # creates its session before the revocation below, which then voids it.
                await self._store.set_user_disabled(user.id, True)
            default = "disabled" if disable else "revoked by an administrator"
            ended = await self._revoke_user(user, reason=reason or default)
        except BrokerError as e:
            await self._failed(action, actor, user.id, e)
            raise
        # After the change, not before: an offboarding is never held back by the audit log
        # (the operator gets the error; the change stands).
        await self._audit.record_or_fail(
            action,
            "success",
            principal=actor,
            details={"user": user.id, "name": user.name, "sessions": ended, "note": reason},
        )
        return Offboarded(user.id, user.name, ended)

    async def end_deleted_user(self, user: User, *, actor: str) -> int:
        """End every credential of a user that was just deleted (IAM ``DeleteUser``); its
        record is gone, so it is given, not looked up. Returns the live sessions ended."""
        ended = await self._revoke_user(user, reason="deleted")
        await self._audit.record_or_fail(
            "user.revoke_sessions",
            "success",
            principal=actor,
            details={"user": user.id, "name": user.name, "sessions": ended, "note": "deleted"},
        )
        return ended

    async def revoke_role_sessions(
        self, ref: str, *, actor: str, reason: str = "", before: float | None = None
    ) -> Offboarded:
        """End every credential of the role issued up to now (sessions, bearer tokens, STS
        credentials, token-exchange results); new ones can be issued afterwards. ``before``:
        only those issued before that (earlier) time."""
        action = "role.revoke_sessions"
        text = ref.strip()
        name = text.rsplit("/", 1)[-1] if text.startswith("arn:") else text
        try:
            if await self._store.get_role(name) is None:
                raise NotFound(f"no_such_role:{name}", public_message=f"no role named {name!r}")
            arn = self._iam.arn("role", name)
            now = self._clock.now()
            cutoff = now if before is None else min(before, now)
            stored = await self._store.add_revocation(
                Revocation(kind="role", target=arn, before=cutoff, created_at=now)
            )
        except BrokerError as e:
            await self._failed(action, actor, text[:200], e)
            raise
        self._revocations.apply(stored)  # here at once; elsewhere at the next poll
        await self._audit.record_or_fail(
            action,
            "success",
            principal=actor,
            details={"role": arn, "before": cutoff, "note": reason},
        )
        return Offboarded(arn, name)

    async def _revoke_user(self, user: User, *, reason: str) -> int:
        now = self._clock.now()
        ended = await self._store.revoke_user_sessions(user.id, now=now, reason=reason)
        # STS credentials issued to a subject before its first login carry ``provider/subject``
        # as their user id (``StsService._user_id``): those end too.
        stand_in = Revocation(
            kind="user", target=f"{user.provider}/{user.subject}", before=now, created_at=now
        )
        await self._store.add_revocation(stand_in)
        self._revocations.apply(Revocation(kind="user", target=user.id, before=now, created_at=now))
        self._revocations.apply(stand_in)
        return ended

    async def _user(self, action: str, ref: str, actor: str) -> User:
        try:
            return await self._iam.resolve_user(ref)
        except BrokerError as e:
            await self._failed(action, actor, ref.strip()[:200], e)
            raise

    async def _failed(self, action: str, actor: str, target: str, e: BrokerError) -> None:
        await self._audit.record(
            action, "failure", principal=actor, reason=e.reason, details={"target": target}
        )
