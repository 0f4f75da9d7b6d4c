"""IAM users' long-lived access keys: creating, listing, changing and deleting them, and
finding the key a SigV4 request names.

The secret is made here, returned once (by ``create``) and stored sealed under the KEK
(``broker.kek.seal``, associated data ``access-key:<id>`` so that a sealed secret cannot be
moved to another key's row); it is never logged or audited. SigV4 needs the secret itself, so
``lookup`` unseals it and keeps it in memory for ``CACHE_SECONDS`` at most. The cache is dropped
by ``forget`` on every IAM change (here at once; on other instances at their next IAM
generation poll, every second) and when a user revocation is recorded (disabling a user), so an
Inactive or deleted key is refused at once here and within two seconds everywhere.

Last use (time, region, service) is noted in memory on the request path and written in
batches by ``flush`` (the broker's periodic work); reads merge what is still pending.
"""

from __future__ import annotations

import builtins
import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from broker import kek as kek_seal
from broker.clock import Clock
from broker.domain import sts as rules
from broker.errors import (
    InvalidRequest,
    KeyRingError,
    LimitExceeded,
    RecordNotFound,
    StoreError,
)
from broker.service.audit import Auditor, RequestInfo
from broker.storage.base import AccessKeyRecord, AccessKeyReview, AccessKeyUse, Store, User

log = logging.getLogger(__name__)

KEYS_PER_USER = 2  # AWS's quota AccessKeysPerUser
ACTIVE = "Active"
INACTIVE = "Inactive"
STATUSES = (ACTIVE, INACTIVE)
CACHE_SECONDS = 30.0
CACHE_ENTRIES = 10_000
REVIEW_BATCH = 1000  # keys read per store query by ``every_key``


def seal_label(access_key_id: str) -> str:
    return f"access-key:{access_key_id}"


@dataclass(frozen=True)
class NewAccessKey:
    record: AccessKeyRecord
    secret: str = field(repr=False)


@dataclass(frozen=True)
class KnownKey:
    """An Active key of an enabled user, as SigV4 verification needs it."""

    record: AccessKeyRecord
    user: User
    secret: str = field(repr=False)
    tags: Mapping[str, str] = field(default_factory=dict)  # the user's: aws:PrincipalTag/*


class AccessKeyService:
    def __init__(
        self,
        store: Store,
        *,
        kek: bytes,
        auditor: Auditor,
        clock: Clock,
        user_generation: Callable[[], int] = lambda: 0,
    ) -> None:
        self._store = store
        self._kek = kek
        self._audit = auditor
        self._clock = clock
        self._user_generation = user_generation  # RevocationState.user_generation
        # id -> (the key or None for "no usable key", cached until, user generation then)
        self._cache: OrderedDict[str, tuple[KnownKey | None, float, int]] = OrderedDict()
        self._pending: dict[str, AccessKeyUse] = {}

    # --- administration (the IAM API's actions call these) ------------------------------------

    async def create(self, user: User, *, actor: str, req: RequestInfo) -> NewAccessKey:
        akid = rules.new_user_access_key_id()
        secret = rules.new_user_secret()
        label = seal_label(akid)
        record = AccessKeyRecord(
            access_key_id=akid,
            user_id=user.id,
            secret_sealed=kek_seal.seal(self._kek, label, secret.encode("ascii")),
            seal_kid=label,
            status=ACTIVE,
            created_at=self._clock.now(),
        )
        if len(await self._store.list_access_keys(user.id)) >= KEYS_PER_USER:
            # checked again atomically by the store; this avoids an audit row for a sure refusal
            raise LimitExceeded(
                "access_key_limit",
                public_message=f"Cannot exceed quota for AccessKeysPerUser: {KEYS_PER_USER}",
            )
        await self._audit.record_or_fail(
            "iam.CreateAccessKey",
            "success",
            req=req,
            principal=actor,
            details={"user": user.name, "user_id": user.id, "access_key_id": akid},
        )
        await self._store.create_access_key(record, limit=KEYS_PER_USER)
        self.forget()
        return NewAccessKey(record, secret)

    async def list(self, user: User) -> list[AccessKeyRecord]:
        return [self._with_pending(k) for k in await self._store.list_access_keys(user.id)]

    async def every_key(self) -> builtins.list[AccessKeyReview]:
        """Every access key of every existing user with the user's name (never a secret), by
        key id: one store query per ``REVIEW_BATCH`` keys, whatever the number of users (the
        console's account-wide list; its caller authorizes each row in memory)."""
        found: builtins.list[AccessKeyReview] = []
        after = ""
        while True:
            batch = await self._store.access_keys_page(after=after, limit=REVIEW_BATCH)
            found.extend(self._review_with_pending(k) for k in batch if k.user_name)
            if len(batch) < REVIEW_BATCH:
                return found
            after = batch[-1].access_key_id

    async def owned(self, user: User, access_key_id: str) -> AccessKeyRecord:
        """The user's key of that id; ``RecordNotFound`` (IAM's NoSuchEntity) otherwise."""
        for k in await self._store.list_access_keys(user.id):
            if k.access_key_id == access_key_id:
                return self._with_pending(k)
        raise RecordNotFound(
            f"no_such_access_key:{access_key_id[:32]}",
            public_message=f"The Access Key with id {access_key_id[:32]} cannot be found.",
        )

    async def set_status(
        self, user: User, access_key_id: str, status: str, *, actor: str, req: RequestInfo
    ) -> None:
        if status not in STATUSES:
            raise InvalidRequest("bad_status", public_message="Status must be Active or Inactive.")
        await self.owned(user, access_key_id)
        await self._audit.record_or_fail(
            "iam.UpdateAccessKey",
            "success",
            req=req,
            principal=actor,
            details={"user": user.name, "access_key_id": access_key_id, "status": status},
        )
        await self._store.set_access_key_status(access_key_id, user.id, status)
        self.forget()

    async def delete(self, user: User, access_key_id: str, *, actor: str, req: RequestInfo) -> None:
        await self.owned(user, access_key_id)
        await self._audit.record_or_fail(
            "iam.DeleteAccessKey",
            "success",
            req=req,
            principal=actor,
            details={"user": user.name, "access_key_id": access_key_id},
        )
        await self._store.delete_access_key(access_key_id, user.id)
        self._pending.pop(access_key_id, None)
        self.forget()

    async def find(self, access_key_id: str) -> tuple[AccessKeyRecord, User] | None:
        """Any key by id with its user (``GetAccessKeyLastUsed``); None if there is none."""
        record = await self._store.get_access_key(access_key_id)
        if record is None:
            return None
        try:
            user = await self._store.get_user(record.user_id)
        except RecordNotFound:
            return None
        return self._with_pending(record), user

    # --- SigV4 --------------------------------------------------------------------------------

    def forget(self) -> None:
        """IAM changed: look every key up again."""
        self._cache.clear()

    async def lookup(self, access_key_id: str) -> KnownKey | None:
        """The Active key of an enabled user with this id, or None. Raises ``StoreError``."""
        now = self._clock.now()
        generation = self._user_generation()
        hit = self._cache.get(access_key_id)
        if hit is not None and hit[1] > now and hit[2] == generation:
            self._cache.move_to_end(access_key_id)
            return hit[0]
        found, cacheable = await self._load(access_key_id)
        if not cacheable:
            self._cache.pop(access_key_id, None)
            return found
        self._cache[access_key_id] = (found, now + CACHE_SECONDS, generation)
        self._cache.move_to_end(access_key_id)
        if len(self._cache) > CACHE_ENTRIES:
            self._cache.popitem(last=False)
        return found

    async def _load(self, access_key_id: str) -> tuple[KnownKey | None, bool]:
        """(the usable key or None, whether the answer may be cached). A disabled user's key is
        not cached: enabling the user records no revocation, and must take effect at once."""
        record = await self._store.get_access_key(access_key_id)
        if record is None or record.status != ACTIVE:
            return None, True
        try:
            user = await self._store.get_user(record.user_id)
        except RecordNotFound:
            return None, True
        if user.disabled:
            return None, False
        if record.seal_kid != seal_label(access_key_id):
            return None, True  # a sealed secret moved from another row
        try:
            secret = kek_seal.unseal(self._kek, record.seal_kid, record.secret_sealed)
        except KeyRingError as e:
            log.error("access key %s cannot be unsealed: %s", access_key_id, e.reason)
            return None, True
        tags = await self._store.list_tags("user", user.id)
        return KnownKey(record, user, secret.decode("ascii"), tags), True

    def note_use(self, access_key_id: str, *, region: str, service: str) -> None:
        """Remember a use; written by ``flush`` (off the request path)."""
        self._pending[access_key_id] = AccessKeyUse(self._clock.now(), region, service)

    async def flush(self) -> None:
        pending, self._pending = self._pending, {}
        try:
            await self._store.record_access_key_use(pending)
        except StoreError:
            for akid, use in pending.items():  # kept for the next flush, newest wins
                newer = self._pending.get(akid)
                if newer is None or newer.at < use.at:
                    self._pending[akid] = use
            raise

    def _review_with_pending(self, k: AccessKeyReview) -> AccessKeyReview:
        use = self._pending.get(k.access_key_id)
        if use is None or (k.last_used_at is not None and k.last_used_at >= use.at):
            return k
        return replace(k, last_used_at=use.at)

    def _with_pending(self, k: AccessKeyRecord) -> AccessKeyRecord:
        use = self._pending.get(k.access_key_id)
        if use is None or (k.last_used_at is not None and k.last_used_at >= use.at):
            return k
        return replace(
            k, last_used_at=use.at, last_used_region=use.region, last_used_service=use.service
        )
