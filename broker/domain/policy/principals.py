"""``Principal``/``NotPrincipal`` in resource-based (trust) policies.

A policy names principals by type: ``{"Federated": "google"}``, ``{"AWS": ["arn:...", ...]}``,
``{"Service": "..."}`` or ``"*"``. The caller is described the same way, by type, with every
spelling that identifies it:
``{"Federated": ["google", "arn:broker:iam::000000000000:oidc-provider/google"]}``.
A statement's principal matches when, for some type, any listed value matches any of the
caller's values of that type (wildcards allowed, case-sensitive). ``"*"`` and ``{"AWS": "*"}``
match everyone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from broker.domain.policy.wildcard import Glob

#: Principal types a policy may name (exact spelling, as in IAM).
PRINCIPAL_TYPES = ("AWS", "Federated", "Service", "CanonicalUser")

#: The caller, by lower-cased principal type.
Caller = Mapping[str, tuple[str, ...]]
CallerInput = Mapping[str, str | Sequence[str]]


def normalise_caller(principal: CallerInput) -> Caller:
    caller: dict[str, tuple[str, ...]] = {}
    for kind, values in principal.items():
        texts = (values,) if isinstance(values, str) else tuple(values)
        caller[kind.lower()] = caller.get(kind.lower(), ()) + texts
    return caller


@dataclass(frozen=True, slots=True)
class PrincipalSet:
    everyone: bool
    by_type: tuple[tuple[str, tuple[Glob, ...]], ...]  # (lower-cased type, patterns)
    negated: bool = False

    def matches(self, caller: Caller) -> bool:
        return self._named(caller) != self.negated

    def _named(self, caller: Caller) -> bool:
        if self.everyone:
            return True
        for kind, patterns in self.by_type:
            for value in caller.get(kind, ()):
                if any(p.matches(value) for p in patterns):
                    return True
        return False
