"""Roles in the store (source "api") for the policy tests: callers with managed policies and
permissions boundaries, as the roles API would create them (config roles are read-only)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from broker.storage.base import RoleRecord
from tests.iam.conftest import IamEnv
from tests.sts.conftest import web_trust


async def make_role(
    env: IamEnv,
    name: str,
    *,
    policies: Sequence[Mapping[str, Any]] = (),
    managed: Sequence[str] = (),
    inline: Mapping[str, Mapping[str, Any]] | None = None,
    boundary: str | None = None,
    trusts: Sequence[str] = (),
) -> None:
    """An API role ``name`` assumable (AssumeRoleWithWebIdentity of provider ``fake``) by sub
    ``name`` and by the subs ``trusts``."""
    b = env.broker.broker
    now = time.time()
    subs = [name, *trusts]
    trust = web_trust("fake", {"StringEquals": {"fake:sub": subs if len(subs) > 1 else name}})
    await b.store.put_role(
        RoleRecord(name, "", trust, [dict(p) for p in policies], None, 3600.0, "api", now, now)
    )
    for m in managed:
        await b.store.attach_policy("role", name, m)
    for k, v in (inline or {}).items():
        await b.store.put_inline_policy("role", name, k, v)
    if boundary is not None:
        await b.store.set_boundary("role", name, boundary)
    await b.iam_api.changed()
