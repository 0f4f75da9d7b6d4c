"""First start on an empty store: an ``admin`` user with a one-time password, shown once."""

from __future__ import annotations

import uuid

from broker.clock import Clock
from broker.config import Settings
from broker.errors import AlreadyExists
from broker.service.audit import Auditor
from broker.service.hashing import PasswordHashing
from broker.service.passwords import one_time_password
from broker.storage.base import Store, User

BOOTSTRAP_USER = "admin"


async def bootstrap_admin(
    settings: Settings, store: Store, auditor: Auditor, clock: Clock, hashing: PasswordHashing
) -> str | None:
    """Create ``admin`` if the store has no users and a local provider is configured.

    Returns the one-time password (the caller prints it once) or None when nothing was done.
    The password is stored only as a hash and must be changed at first login.
    """
    local = next((n for n, p in settings.providers.items() if p.type == "local"), None)
    if local is None or await store.count_users() > 0:
        return None
    password = one_time_password()
    password_hash = await hashing.hash(password)
    now = clock.now()
    try:
        await store.create_user(
            User(
                id=str(uuid.uuid4()),
                provider=local,
                subject=BOOTSTRAP_USER,
                name=BOOTSTRAP_USER,
                created_at=now,
                password_hash=password_hash,
                must_change_password=True,
                password_changed_at=now,
            )
        )
    except AlreadyExists:
        return None  # another instance bootstrapped first
    await auditor.record("user.bootstrap", "success", principal=f"{local}/{BOOTSTRAP_USER}")
    return password
