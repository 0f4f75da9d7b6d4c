"""Least-privilege policy generation (``broker policy generate --role NAME --days N``), as IAM
Access Analyzer's: an identity policy allowing what the role's sessions were actually allowed
within the window (the access activity), and nothing else.

How the activity becomes statements:

- one entry per observed action, with the resources it was observed on; actions with the same
  resources share a statement; everything sorted, so the same activity gives the same bytes;
- resources are literal: ``*``, ``?`` and ``$`` in them are written ``${*}``, ``${?}``, ``${$}``
  (so a path with a ``*`` in it grants that path, not a wildcard) — except ``*`` alone and a
  trailing ``/*``, which the activity log writes for what it collapsed when it was full
  (``broker.service.activity``) and are granted as the wildcard they stand for;
- many paths of one host are collapsed only when needed: when one action was observed on more
  than ``MAX_RESOURCES_PER_SCOPE`` resources of one scope (a URL's origin; an ARN's
  ``arn:partition:service:region:account:``), they become one pattern, the scope plus the
  longest common ``/``-ending prefix of all of them plus ``*`` (``https://app/api/users/1``...
  ``/api/users/99`` give ``https://app/api/users/*``). Memory stays bounded: past the limit
  only the running common prefix is kept;
- an exact resource that a wildcard of the same action already covers is left out;
- actions that are not plain ``service:Name`` (an app may ask ``/v1/authorize`` anything) are
  left out and listed in ``skipped``: in a policy they would be patterns.

The document is checked with the validator (``broker.policy.validate_policy``): an error is a
bug here and raises.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from broker.clock import Clock
from broker.config import Settings
from broker.errors import InvalidRequest, NotFound
from broker.policy import validate_policy
from broker.storage.base import Store

DAY = 86400.0
MAX_RESOURCES_PER_SCOPE = 20
PAGE = 1000
_ACTION = re.compile(r"[A-Za-z0-9_.\-]+:[A-Za-z0-9_.\-]+")


def _literal(text: str) -> str:
    return text.replace("$", "${$}").replace("*", "${*}").replace("?", "${?}")


def escape(resource: str) -> str:
    """An observed resource as a policy value (see the module doc for ``*`` and ``/*``)."""
    if resource == "*":
        return resource
    if resource.endswith("/*"):
        return _literal(resource[:-1]) + "*"
    return _literal(resource)


def scope_of(resource: str) -> str:
    """What resources are collapsed within: a URL's origin, an ARN's account part."""
    scheme, sep, rest = resource.partition("://")
    if sep:
        return f"{scheme}://{rest.split('/', 1)[0]}"
    if resource.startswith("arn:") and resource.count(":") >= 5:
        return ":".join(resource.split(":", 5)[:5]) + ":"
    return resource


def _common_prefix(a: str, b: str) -> str:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return a[:n]


@dataclass
class _Scope:
    """The resources of one (action, scope): exact while few, a running prefix after."""

    exact: set[str] = field(default_factory=set)
    prefix: str | None = None  # set once collapsed

    def add(self, resource: str) -> None:
        if self.prefix is not None:
            self.prefix = _common_prefix(self.prefix, resource)
            return
        self.exact.add(resource)
        if len(self.exact) > MAX_RESOURCES_PER_SCOPE:
            it = iter(self.exact)
            prefix = next(it)
            for r in it:
                prefix = _common_prefix(prefix, r)
            self.prefix, self.exact = prefix, set()

    def patterns(self, scope: str) -> list[str]:
        if self.prefix is None:
            return sorted(escape(r) for r in self.exact)
        rest = self.prefix[len(scope) :]
        if "://" in scope:  # a URL: up to the last "/" of the common path
            rest = rest[: rest.rfind("/") + 1] or "/"
        return [_literal(scope + rest) + "*"]


def _covered(resource: str, wildcards: Iterable[str]) -> bool:
    return any(resource != w and resource.startswith(w[:-1]) for w in wildcards)


@dataclass(frozen=True)
class GeneratedPolicy:
    role: str
    days: int
    document: dict[str, Any]
    actions: int  # distinct actions granted
    skipped: tuple[str, ...]  # observed actions left out (not plain ``service:Name``)
    warnings: tuple[str, ...]  # the validator's warnings


class PolicyGenerator:
    def __init__(self, settings: Settings, store: Store, clock: Clock) -> None:
        self._settings = settings
        self._store = store
        self._clock = clock

    async def generate(self, role: str, days: int) -> GeneratedPolicy:
        if days < 1:
            raise InvalidRequest("bad_days", public_message="--days must be at least 1")
        if await self._store.get_role(role) is None:
            raise NotFound(f"no_such_role:{role}", public_message=f"There is no role {role!r}.")
        since = self._clock.now() - days * DAY
        principal = self._settings.arn("role", role)
        scopes: dict[str, dict[str, _Scope]] = {}  # action -> scope -> resources
        skipped: set[str] = set()
        after = ("", "")
        while True:
            rows = await self._store.activity_page(principal, since=since, after=after, limit=PAGE)
            if not rows:
                break
            after = (rows[-1].action, rows[-1].resource)
            for r in rows:
                if not _ACTION.fullmatch(r.action):
                    skipped.add(r.action)
                    continue
                per = scopes.setdefault(r.action, {})
                per.setdefault(scope_of(r.resource), _Scope()).add(r.resource)
        if not scopes:
            raise NotFound(
                f"no_activity:{role}",
                public_message=f"No allowed activity of role {role!r} in the last {days} days: "
                "there is nothing to generate a policy from.",
            )
        by_resources: dict[tuple[str, ...], list[str]] = {}
        for action, per in scopes.items():
            resources = sorted({p for scope, s in per.items() for p in s.patterns(scope)})
            if "*" in resources:
                resources = ["*"]
            wildcards = [w for w in resources if w.endswith("*") and not w.endswith("${*}")]
            resources = [r for r in resources if not _covered(r, wildcards)]
            by_resources.setdefault(tuple(resources), []).append(action)
        statements = [
            {"Effect": "Allow", "Action": sorted(actions), "Resource": list(resources)}
            for resources, actions in by_resources.items()
        ]
        statements.sort(key=lambda s: (s["Action"], s["Resource"]))
        for i, s in enumerate(statements, 1):
            s["Sid"] = f"Observed{i}"
        document: dict[str, Any] = {"Version": "2012-10-17", "Statement": statements}
        report = validate_policy(document, kind="identity")
        if report.errors:
            raise AssertionError(f"generated policy has errors: {report.errors}")
        warnings = tuple(f"{w.code}: {w.path}: {w.message}" for w in report.warnings)
        return GeneratedPolicy(
            role=role,
            days=days,
            document=document,
            actions=len(scopes),
            skipped=tuple(sorted(skipped)),
            warnings=warnings,
        )
