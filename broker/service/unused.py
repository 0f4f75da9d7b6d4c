"""Unused access (``broker report unused --days N``): what was not used within the window, from
the store and the access activity (``ActivityLog``).

- **users** not signed in (``users.last_login_at``), without activity under their ARN and without
  an access key used within the window;
- **roles** whose sessions did nothing and that no one assumed within the window;
- **access keys** not used within the window (never used: judged by their creation);
- **users without MFA**: no enabled MFA device;
- **managed policies** attached to nothing, or whose allowed actions none of the principals they
  are attached to (users, roles, the members of groups) was allowed within the window. The
  activity does not say which policy allowed an action: an action another policy of the same
  principal allowed counts for this one too, so "used" is an upper bound.

Something created within the window is not reported as unused yet (it has not had the window
to be used in), except a policy attached to nothing. "Last used" is the last use ever recorded.

Streaming: every table is read in keyset pages of ``page`` rows, and each page's activity is
read with one grouped query on the activity's primary key (principal first): memory holds one
page, never a table, whatever the number of users or activity rows.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from broker.clock import Clock
from broker.config import Settings
from broker.domain.policy.wildcard import Glob
from broker.storage.base import PolicyUse, Store

DAY = 86400.0
DEFAULT_PAGE = 1000

KINDS = ("user", "role", "access_key", "mfa", "policy")


@dataclass(frozen=True)
class Finding:
    kind: str  # one of KINDS
    name: str
    arn: str
    reason: str
    created_at: float
    last_used: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "arn": self.arn,
            "reason": self.reason,
            "created_at": self.created_at,
            "last_used": self.last_used,
        }


def granted_action_patterns(document: Mapping[str, Any]) -> list[str]:
    """The action patterns a policy document's ``Allow`` statements grant (``NotAction``:
    ``*``, anything but a few). Conditions and resources are not looked at."""
    body = document.get("Statement", [])
    statements = [body] if isinstance(body, Mapping) else body
    patterns: list[str] = []
    for s in statements if isinstance(statements, list) else []:
        if not isinstance(s, Mapping) or s.get("Effect") != "Allow":
            continue
        if "NotAction" in s:
            patterns.append("*")
            continue
        action = s.get("Action", [])
        patterns.extend([action] if isinstance(action, str) else [a for a in action if a])
    return sorted(set(patterns))


def matcher(patterns: Iterable[str]) -> Any:
    """A test of an action name against ``patterns`` (IAM: case-insensitive wildcards)."""
    globs = [Glob.of(p, ignore_case=True) for p in patterns]
    return lambda action: any(g.matches(action) for g in globs)


def _latest(*times: float | None) -> float | None:
    known = [t for t in times if t is not None]
    return max(known) if known else None


def _chunks(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class UnusedAccess:
    def __init__(
        self, settings: Settings, store: Store, clock: Clock, *, page: int = DEFAULT_PAGE
    ) -> None:
        self._settings = settings
        self._store = store
        self._clock = clock
        self._page = page

    def cutoff(self, days: int) -> float:
        return self._clock.now() - days * DAY

    async def findings(self, days: int) -> AsyncIterator[Finding]:
        """Every finding, kind by kind (``KINDS`` order), each kind in key order."""
        cutoff = self.cutoff(days)
        for stream in (
            self.users(cutoff),
            self.roles(cutoff),
            self.access_keys(cutoff),
            self.users_without_mfa(),
            self.policies(cutoff),
        ):
            async for f in stream:
                yield f

    async def _user_pages(self) -> AsyncIterator[Sequence[Any]]:
        after = ""
        while True:
            users = await self._store.users_page(after=after, limit=self._page)
            if not users:
                return
            yield users
            after = users[-1].id

    async def users(self, cutoff: float) -> AsyncIterator[Finding]:
        arn = self._settings.arn
        async for users in self._user_pages():
            arns = {u.id: arn("user", u.name) for u in users}
            activity = await self._store.activity_last_used(list(arns.values()))
            keys = await self._store.access_keys_last_used([u.id for u in users])
            for u in users:
                seen = _latest(u.last_login_at, activity.get(arns[u.id]), keys.get(u.id))
                if (seen if seen is not None else u.created_at) < cutoff:
                    yield Finding(
                        "user",
                        u.name,
                        arns[u.id],
                        "no sign-in or activity in the window",
                        u.created_at,
                        seen,
                    )

    async def users_without_mfa(self) -> AsyncIterator[Finding]:
        arn = self._settings.arn
        async for users in self._user_pages():
            with_mfa = await self._store.users_with_mfa([u.id for u in users])
            for u in users:
                if u.id not in with_mfa:
                    yield Finding(
                        "mfa", u.name, arn("user", u.name), "no enabled MFA device", u.created_at
                    )

    async def roles(self, cutoff: float) -> AsyncIterator[Finding]:
        arn = self._settings.arn
        after = ""
        while True:
            roles = await self._store.roles_page(after=after, limit=self._page)
            if not roles:
                return
            after = roles[-1].name
            arns = [arn("role", r.name) for r in roles]
            used = await self._store.activity_last_used(arns)
            assumed = await self._store.assumed_roles(arns)
            for r, role_arn in zip(roles, arns, strict=True):
                seen = _latest(used.get(role_arn), assumed.get(role_arn))
                if (seen if seen is not None else r.created_at) < cutoff:
                    yield Finding(
                        "role",
                        r.name,
                        role_arn,
                        "not assumed and its sessions did nothing in the window",
                        r.created_at,
                        seen,
                    )

    async def access_keys(self, cutoff: float) -> AsyncIterator[Finding]:
        arn = self._settings.arn
        after = ""
        while True:
            keys = await self._store.access_keys_page(after=after, limit=self._page)
            if not keys:
                return
            after = keys[-1].access_key_id
            for k in keys:
                ref = k.last_used_at if k.last_used_at is not None else k.created_at
                if ref < cutoff:
                    why = "never used" if k.last_used_at is None else "not used in the window"
                    yield Finding(
                        "access_key",
                        k.access_key_id,
                        arn("user", k.user_name) if k.user_name else "",
                        f"{why} ({k.status}, user {k.user_name or k.user_id})",
                        k.created_at,
                        k.last_used_at,
                    )

    async def policies(self, cutoff: float) -> AsyncIterator[Finding]:
        arn = self._settings.arn
        after = ""
        while True:
            page = await self._store.managed_policies_page(after=after, limit=self._page)
            if not page:
                return
            after = page[-1].name
            for p in page:
                uses = await self._store.policy_uses(p.name)
                if not uses:
                    yield Finding(
                        "policy", p.name, arn("policy", p.name), "attached to nothing", p.created_at
                    )
                    continue
                granted = matcher(granted_action_patterns(p.document))
                last: float | None = None
                async for chunk in self._principal_arns(uses):
                    for _principal, action, at in await self._store.activity_summary(chunk):
                        if granted(action):
                            last = _latest(last, at)
                    if last is not None and last >= cutoff:
                        break
                if (last if last is not None else p.created_at) < cutoff:
                    yield Finding(
                        "policy",
                        p.name,
                        arn("policy", p.name),
                        "none of the actions it allows was used in the window",
                        p.created_at,
                        last,
                    )

    async def _principal_arns(self, uses: Sequence[PolicyUse]) -> AsyncIterator[Sequence[str]]:
        """The ARNs of the principals a policy is attached to (a group's: its members'), in
        chunks of at most one page."""
        arn = self._settings.arn
        roles = [arn("role", u.principal) for u in uses if u.principal_type == "role"]
        for chunk in _chunks(roles, self._page):
            yield chunk
        user_ids = [u.principal for u in uses if u.principal_type == "user"]
        for ids in _chunks(user_ids, self._page):
            names = await self._store.user_names(ids)
            yield [arn("user", n) for n in names.values()]
        for use in uses:
            if use.principal_type == "group":
                members = await self._store.group_members(use.principal)
                for ids in _chunks(members, self._page):
                    names = await self._store.user_names(ids)
                    yield [arn("user", n) for n in names.values()]
