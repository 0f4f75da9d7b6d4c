"""What is in force for one principal: its identity policies and its permissions boundary,
compiled from what the store says is attached to it.

Parsing is cached: a managed policy by (name, updated_at), an inline one by its label and
content, so that recompiling every role each refresh parses only what changed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from broker.policy import Policy, PolicyError, parse_policy
from broker.storage.base import AttachedPolicies, ManagedPolicyRecord, Store, User


@dataclass(frozen=True)
class PolicySet:
    """Compiled permissions of one principal. ``missing``: attached managed policies that no
    longer exist (a race with their deletion); such a set is ``broken`` and allows nothing,
    since a vanished boundary must never widen what is allowed."""

    identity: tuple[Policy, ...] = ()
    boundary: Policy | None = None
    missing: tuple[str, ...] = ()

    @property
    def broken(self) -> bool:
        return bool(self.missing)


def managed_label(name: str) -> str:
    """How a managed policy is named in matched statements."""
    return f"policy/{name}"


class PolicyCompiler:
    """Parses stored documents once. A document that fails to parse raises ``PolicyError``
    naming it: callers treat the principal as broken (allowing nothing)."""

    def __init__(self) -> None:
        self._managed: dict[str, tuple[float, Policy]] = {}
        self._inline: dict[tuple[str, str], Policy] = {}

    def managed(self, record: ManagedPolicyRecord) -> Policy:
        hit = self._managed.get(record.name)
        if hit is not None and hit[0] == record.updated_at:
            return hit[1]
        policy = parse_policy(dict(record.document), name=managed_label(record.name))
        self._managed[record.name] = (record.updated_at, policy)
        return policy

    def inline(self, label: str, document: Mapping[str, Any]) -> Policy:
        key = (label, json.dumps(document, sort_keys=True))
        hit = self._inline.get(key)
        if hit is None:
            hit = self._inline[key] = parse_policy(dict(document), name=label)
        return hit

    def forget_except(self, managed_names: Iterable[str]) -> None:
        """Drop cached managed policies that no longer exist (bounded memory)."""
        keep = set(managed_names)
        for name in [n for n in self._managed if n not in keep]:
            del self._managed[name]
        if len(self._inline) > 4096:
            self._inline.clear()

    def compile(
        self,
        owners: Iterable[tuple[str, AttachedPolicies]],
        managed: Mapping[str, ManagedPolicyRecord],
        *,
        extra: Iterable[Policy] = (),
        boundary: Policy | None = None,
    ) -> PolicySet:
        """The identity policies of several owners (a user and its groups: ``owners`` is
        (label, attached) pairs, label like ``user/alice``), each managed policy once, plus
        ``extra``; the first owner's boundary unless ``boundary`` is given."""
        identity: list[Policy] = list(extra)
        seen: set[str] = set()
        missing: list[str] = []
        first_boundary: str | None = None
        for i, (label, attached) in enumerate(owners):
            if i == 0:
                first_boundary = attached.boundary
            for name in attached.managed:
                if name in seen:
                    continue
                seen.add(name)
                record = managed.get(name)
                if record is None:
                    missing.append(name)
                else:
                    identity.append(self.managed(record))
            for name, doc in sorted(attached.inline.items()):
                identity.append(self.inline(f"{label}/{name}", doc))
        if boundary is None and first_boundary is not None:
            record = managed.get(first_boundary)
            if record is None:
                missing.append(first_boundary)  # the set is broken: callers deny
            else:
                boundary = self.managed(record)
        return PolicySet(tuple(identity), boundary, tuple(missing))


async def compile_owners(
    store: Store, compiler: PolicyCompiler, owners: list[tuple[str, AttachedPolicies]]
) -> PolicySet:
    """``owners``' policies with the managed ones they name read from the store; raises
    ``PolicyError`` if a stored document does not parse."""
    names = {n for _, a in owners for n in (*a.managed, a.boundary) if n}
    managed = {}
    for n in sorted(names):
        record = await store.get_managed_policy(n)
        if record is not None:
            managed[n] = record
    return compiler.compile(owners, managed)


async def user_policy_set(store: Store, compiler: PolicyCompiler, user: User) -> PolicySet:
    """What is in force for an IAM user: its own managed and inline policies, then each of
    its groups', and the user's permissions boundary. The one place users are compiled (the
    simulator and ``Authorizer`` both use it); raises ``PolicyError`` as ``compile_owners``."""
    owners = [(f"user/{user.name}", await store.attached_policies("user", user.id))]
    for g in await store.user_groups(user.id):
        owners.append((f"group/{g}", await store.attached_policies("group", g)))
    return await compile_owners(store, compiler, owners)


__all__ = [
    "PolicyCompiler",
    "PolicyError",
    "PolicySet",
    "compile_owners",
    "managed_label",
    "user_policy_set",
]
