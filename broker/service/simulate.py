"""The policy simulator: "may this principal do this action on this resource?", answered with
the decision names of the AWS policy simulator (``allowed`` / ``explicitDeny`` /
``implicitDeny``) and the statements that decided it.

The principal is one of:

* a role, by name or ARN (``dev``, ``arn:broker:iam::<account>:role/dev``, or an assumed-role
  session ARN ``arn:broker:sts::<account>:assumed-role/dev/<session>``): the role's identity
  policies (its own, attached managed and inline) and permissions boundary, as compiled by the
  :class:`Authorizer`;
* a user, by ARN (``arn:broker:iam::<account>:user/<name>``): its managed and inline policies,
  those of every group it is in, and its permissions boundary, with ``aws:username`` and
  ``aws:userid`` set;
* a group, by ARN (``...:group/<name>``): the group's managed and inline policies;
* a broker credential (a session token): its role, plus the session policies it carries, and
  the condition keys it implies (``aws:username``, ``aws:PrincipalTag/*``, MFA, ...);
* nothing: only the policy documents given.

Policy documents given directly (``policies``) are added to the principal's identity policies,
as ``aws iam simulate-principal-policy --policy-input-list`` does; ``boundary`` replaces the
principal's permissions boundary; ``session_policies`` are added to the credential's.

Context: the global keys a real request would carry (``aws:CurrentTime``, ``aws:EpochTime``,
``aws:SecureTransport``, ``aws:MultiFactorAuthPresent``, ``aws:PrincipalArn`` and, for a
credential, the keys it implies), then the caller's ``context``, whose keys replace those with the
same name (``aws:X`` and ``broker:X`` are one key).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from broker.domain import json_input
from broker.domain.claims import ContextValue
from broker.domain.policy.context import canonical_key
from broker.domain.policy.parse import MAX_DOCUMENT_BYTES
from broker.errors import InvalidRequest, NotFound
from broker.policy import Decision, Policy, PolicyError, evaluate, parse_policy
from broker.service.authorize import Authorizer, Principal
from broker.service.iam import IamService
from broker.service.verified import Credential

_ASSUMED = re.compile(r"arn:[^:]+:sts::(?P<account>[^:]*):assumed-role/(?P<role>[^/]+)/.+")
_ROLE = re.compile(r"arn:[^:]+:iam::(?P<account>[^:]*):role/(?:.*/)?(?P<role>[^/]+)")
_OTHER = re.compile(r"arn:[^:]+:iam::[^:]*:(?P<type>user|group)/.+")


@dataclass(frozen=True)
class Simulation:
    """The answer: the decision, and what was simulated."""

    decision: Decision
    principal: str | None  # the ARN simulated, or None for policies only
    context: Mapping[str, ContextValue] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = self.decision.to_dict()
        out["principal"] = self.principal
        return out


def parse_documents(
    docs: Sequence[object], what: str, *, names: Sequence[str] | None = None
) -> list[Policy]:
    """Parse policies given by the caller; a bad one raises PolicyError with paths prefixed
    by which document it was (``policies[1]: Statement[0].Effect``)."""
    parsed: list[Policy] = []
    for i, doc in enumerate(docs):
        name = names[i] if names else f"{what}[{i}]"
        if not isinstance(doc, Mapping | str | bytes):
            raise PolicyError(name, "a policy document must be a JSON object")
        try:
            parsed.append(parse_policy(doc, name=name))
        except PolicyError as e:
            raise PolicyError.collected(
                [(f"{name}: {p}" if p else name, m) for p, m in e.errors], e.fixes
            ) from None
    return parsed


def check_context(context: Mapping[str, object]) -> dict[str, ContextValue]:
    """Context keys → string or list of strings; anything else is a clear InvalidRequest."""
    out: dict[str, ContextValue] = {}
    for key, value in context.items():
        if not isinstance(key, str) or not key.strip():
            raise InvalidRequest(
                "bad_context_key", public_message="context keys must be non-empty strings"
            )
        if isinstance(value, bool):
            out[key] = "true" if value else "false"
        elif isinstance(value, str | int | float):
            out[key] = str(value)
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            out[key] = list(value)
        else:
            raise InvalidRequest(
                "bad_context_value",
                public_message=f"context value of {key!r} must be a string or a list of strings",
            )
    return out


def merge_context(
    base: Mapping[str, ContextValue], overrides: Mapping[str, ContextValue]
) -> dict[str, ContextValue]:
    """``base`` with every key that ``overrides`` names (in any spelling) replaced."""
    replaced = {canonical_key(k) for k in overrides}
    merged = {k: v for k, v in base.items() if canonical_key(k) not in replaced}
    merged.update(overrides)
    return merged


@dataclass(frozen=True)
class Target:
    """A principal resolved for simulation: what is in force for it, and its context keys."""

    arn: str
    identity: tuple[Policy, ...]
    boundary: Policy | None
    context: Mapping[str, ContextValue]


class Simulator:
    def __init__(self, authorizer: Authorizer, iam: IamService) -> None:
        self._authorizer = authorizer
        self._iam = iam

    async def resolve(self, principal: str) -> Target:
        """A role (name, ARN or assumed-role ARN), a user or a group (by ARN) → what is in
        force for it. NotFound if it does not exist; InvalidRequest if its policies are
        broken (it allows nothing, and saying "implicitDeny" would hide why)."""
        text = principal.strip()
        if not text:
            raise InvalidRequest("empty_principal", public_message="the principal is empty")
        other = _OTHER.fullmatch(text)
        if other and other["type"] == "user":
            user = await self._iam.resolve_user(text)
            arn = self._iam.arn("user", user.name)
            found = await self._iam.user_policies(user)
            who = Principal(role_arn=arn, user_id=user.id, username=user.name)
        elif other:
            group = await self._iam.resolve_group(text)
            arn = self._iam.arn("group", group.name)
            found = await self._iam.group_policies(group)
            who = Principal(role_arn=arn)
        else:
            arn = self.named_arn(text)
            return self._role_target(arn, Principal(role_arn=arn))
        if found.broken:
            raise InvalidRequest(
                "broken_principal",
                public_message=f"{arn} has attached policies that no longer exist "
                f"({', '.join(found.missing)}): it allows nothing",
            )
        return Target(
            arn, found.identity, found.boundary, self._authorizer.context_for(who, source_ip="")
        )

    def named_arn(self, principal: str) -> str:
        """The ARN a principal reference names, without looking it up: permission to simulate
        is checked on it first, so that a caller without permission learns nothing about what
        exists."""
        text = principal.strip()
        if not text:
            raise InvalidRequest("empty_principal", public_message="the principal is empty")
        other = _OTHER.fullmatch(text)
        if other:
            return self._iam.arn(other["type"], text.rsplit("/", 1)[-1])
        found = _ASSUMED.fullmatch(text) or _ROLE.fullmatch(text)
        if found is None and text.startswith("arn:"):
            raise InvalidRequest(
                "bad_principal",
                public_message=f"{text!r} is not a role, user or group ARN "
                "(arn:broker:iam::<account>:role/<name>, ...:user/<name>, ...:group/<name>) "
                "or an assumed-role ARN",
            )
        return self._authorizer.role_arn(found["role"] if found else text)

    def _role_target(self, arn: str, who: Principal) -> Target:
        role = self._authorizer.role(arn)
        if role is None:
            name = arn.rsplit("/", 1)[-1]
            raise NotFound("unknown_role", public_message=f"no role named {name!r}")
        if role.broken:
            raise InvalidRequest(
                "broken_role",
                public_message=f"the role {role.name!r} has a policy that does not parse "
                "or no longer exists (it allows nothing); run: broker check-config",
            )
        return Target(
            arn, role.identity, role.boundary, self._authorizer.context_for(who, source_ip="")
        )

    async def simulate(
        self,
        *,
        action: str,
        resource: str,
        principal: str | Target | None = None,
        credential: Credential | None = None,
        context: Mapping[str, ContextValue] | None = None,
        policies: Sequence[Policy] = (),
        boundary: Policy | None = None,
        session_policies: Sequence[Policy] = (),
    ) -> Simulation:
        """``principal``: as for :meth:`resolve`, or a target it already resolved."""
        _check_request(action, resource)
        if principal is not None and credential is not None:
            raise InvalidRequest(
                "two_principals", public_message="give a principal or a credential, not both"
            )
        target: Target | None = None
        sessions: list[Policy] = []
        if credential is not None:
            if credential.is_user:  # a user's key or GetSessionToken session: the user
                target = await self.resolve(credential.role_arn)
            else:
                target = self._role_target(credential.role_arn, credential.principal)
            sessions.extend(credential.session_policies)
        elif isinstance(principal, Target):
            target = principal
        elif principal is not None:
            target = await self.resolve(principal)
        elif not policies:
            raise InvalidRequest(
                "nothing_to_simulate",
                public_message="give a principal, a credential or at least one policy",
            )
        identity = [*(target.identity if target else ()), *policies]
        sessions.extend(session_policies)
        merged = merge_context(target.context if target else {}, context or {})
        decision = evaluate(
            action=action,
            resource=resource,
            context=merged,
            identity=identity,
            boundary=boundary if boundary is not None else (target.boundary if target else None),
            session=sessions,
        )
        return Simulation(decision, target.arn if target else None, merged)


def simulate_documents(
    *,
    action: str,
    resource: str,
    context: Mapping[str, ContextValue] | None = None,
    policies: Sequence[Policy] = (),
    boundary: Policy | None = None,
    session_policies: Sequence[Policy] = (),
) -> Simulation:
    """Simulate with policy documents only: no store, no role, no default context keys."""
    if not policies:
        raise InvalidRequest(
            "nothing_to_simulate",
            public_message="give a principal, a credential or at least one policy",
        )
    _check_request(action, resource)
    decision = evaluate(
        action=action,
        resource=resource,
        context=context or {},
        identity=policies,
        boundary=boundary,
        session=session_policies,
    )
    return Simulation(decision, None, dict(context or {}))


def _check_request(action: str, resource: str) -> None:
    if action != "*" and (not action or ":" not in action):
        raise InvalidRequest(
            "bad_action",
            public_message=f"the action must be service:Action (e.g. s3:GetObject), not {action!r}",
        )
    if not resource:
        raise InvalidRequest("bad_resource", public_message="the resource is empty")


def guess_kind(text: str | bytes) -> str:
    """``trust`` if any statement of a JSON policy names a Principal, else ``identity``
    (unreadable documents are ``identity``: validation then reports why)."""
    try:
        doc = json_input.loads(text, max_bytes=MAX_DOCUMENT_BYTES)
    except json_input.JsonInputError:
        return "identity"
    body = doc.get("Statement") if isinstance(doc, dict) else None
    statements = [body] if isinstance(body, dict) else body if isinstance(body, list) else []
    if any(isinstance(s, dict) and ("Principal" in s or "NotPrincipal" in s) for s in statements):
        return "trust"
    return "identity"
