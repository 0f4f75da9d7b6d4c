"""Managed policies attached to users, groups and roles: Attach/Detach {User,Group,Role}Policy,
ListAttached{User,Group,Role}Policies, ListEntitiesForPolicy.

Config roles' attachments are read-only (``UnmodifiableEntity``). At most ten managed policies
per principal, as IAM's default quota (``LimitExceeded``). A bounded caller may only change a
target that carries its boundary (``escalation`` rule 2).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from broker.domain.sts import role_id
from broker.errors import IamLimitExceeded, RecordNotFound
from broker.service.iam_api import escalation
from broker.service.iam_api.api import page_bounds
from broker.service.iam_api.groups import group_id
from broker.service.iam_api.policies import POLICY, policy_name
from broker.service.iam_api.registry import Action, Call, Result, named
from broker.service.iam_api.users import user_id
from broker.storage.base import PrincipalType

KINDS: tuple[PrincipalType, ...] = ("user", "group", "role")
_PARAM: dict[PrincipalType, str] = {"user": "UserName", "group": "GroupName", "role": "RoleName"}

MAX_ATTACHED = 10  # IAM's default quota of managed policies per user, group or role


async def principal_key(call: Call, kind: PrincipalType, *, for_write: bool) -> tuple[str, str]:
    """(store key, name) of the user, group or role named by the call's parameter; a config
    role is ``UnmodifiableEntity`` when ``for_write``."""
    return await call.api.iam.principal(kind, call.params[_PARAM[kind]], for_write=for_write)


def _attach(kind: PrincipalType) -> Callable[[Call], Awaitable[Result]]:
    async def run(call: Call) -> Result:
        name = policy_name(call)
        key, label = await principal_key(call, kind, for_write=True)
        await escalation.require_bounded_target(call, kind, key, label)
        attached = await call.api.store.attached_policies(kind, key)
        if name not in attached.managed and len(attached.managed) >= MAX_ATTACHED:
            raise IamLimitExceeded(
                f"attached_policies_limit:{kind}/{label}",
                public_message=f"Cannot exceed quota for PoliciesPer{kind.title()}: "
                f"{MAX_ATTACHED}.",
            )
        await call.api.iam.attach_policy(kind, key, name, actor=call.actor)
        return {}

    return run


def _detach(kind: PrincipalType) -> Callable[[Call], Awaitable[Result]]:
    async def run(call: Call) -> Result:
        name = policy_name(call)
        key, label = await principal_key(call, kind, for_write=True)
        await escalation.require_bounded_target(call, kind, key, label)
        await call.api.iam.detach_policy(kind, key, name, actor=call.actor)
        return {}

    return run


def _list_attached(kind: PrincipalType) -> Callable[[Call], Awaitable[Result]]:
    async def run(call: Call) -> Result:
        key, _ = await principal_key(call, kind, for_write=False)
        attached = await call.api.store.attached_policies(kind, key)
        prefix = str(call.params.get("PathPrefix", "/"))
        names = attached.managed if "/".startswith(prefix) else ()
        return {
            "AttachedPolicies": [
                {"PolicyName": n, "PolicyArn": call.arn("policy", n)} for n in names
            ]
        }

    return run


async def list_entities_for_policy(call: Call) -> Result:
    """Users, groups and roles using the policy, paged together (groups, then users, then
    roles, by name) as one list split into AWS's three members."""
    record = (await call.api.iam.get_policy(policy_name(call))).record
    wanted = call.params.get("EntityFilter")
    usage = call.params.get("PolicyUsageFilter")
    entries: list[tuple[str, dict[str, Any]]] = []
    if not "/".startswith(str(call.params.get("PathPrefix", "/"))):
        wanted = "none"
    for use in await call.api.store.policy_uses(record.name):
        if usage == "PermissionsPolicy" and use.as_boundary:
            continue
        if usage == "PermissionsBoundary" and not use.as_boundary:
            continue
        kinds = (None, "LocalManagedPolicy", "AWSManagedPolicy", use.principal_type.title())
        if wanted not in kinds:
            continue
        if use.principal_type == "group":
            group = await call.api.store.get_group(use.principal)
            if group is None:
                continue  # deleted meanwhile
            entries.append(("PolicyGroups", {"GroupName": group.name, "GroupId": group_id(group)}))
        elif use.principal_type == "role":
            account = call.api.settings.server.account_id
            entries.append(
                (
                    "PolicyRoles",
                    {"RoleName": use.principal, "RoleId": role_id(account, use.principal)},
                )
            )
        else:
            try:
                user = await call.api.store.get_user(use.principal)
            except RecordNotFound:
                continue  # deleted meanwhile
            entries.append(("PolicyUsers", {"UserName": user.name, "UserId": user_id(user)}))
    order = {"PolicyGroups": 0, "PolicyUsers": 1, "PolicyRoles": 2}
    name_of = ("GroupName", "UserName", "RoleName")
    entries.sort(key=lambda e: (order[e[0]], e[1][name_of[order[e[0]]]]))
    start, stop, marker = page_bounds(call.params, len(entries))
    out: Result = {member: [e for m, e in entries[start:stop] if m == member] for member in order}
    out["IsTruncated"] = marker is not None
    if marker is not None:
        out["Marker"] = marker
    return out


ACTIONS = (
    *(Action(f"Attach{k.title()}Policy", _attach(k), named(k, _PARAM[k])) for k in KINDS),
    *(Action(f"Detach{k.title()}Policy", _detach(k), named(k, _PARAM[k])) for k in KINDS),
    *(
        Action(
            f"ListAttached{k.title()}Policies",
            _list_attached(k),
            named(k, _PARAM[k]),
            mutates=False,
            page="AttachedPolicies",
        )
        for k in KINDS
    ),
    Action("ListEntitiesForPolicy", list_entities_for_policy, POLICY, mutates=False),
)
