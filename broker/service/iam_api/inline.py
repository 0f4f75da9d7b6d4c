"""Inline policies of users, groups and roles (Put/Get/Delete/List {User,Group,Role}Policy) and
permissions boundaries (Put/Delete {User,Role}PermissionsBoundary).

Inline documents are limited as IAM's: 2,048 non-whitespace characters for a user, 5,120 for a
group, 10,240 for a role (``MalformedPolicyDocument``, nothing stored). Config roles are
read-only (``UnmodifiableEntity``); their own documents from the config file are not listed
here. A bounded caller is held to ``escalation``'s rules 1 and 2.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from broker.errors import IamNoSuchEntity
from broker.service.iam_api import escalation, revoke
from broker.service.iam_api.attachments import _PARAM, KINDS, principal_key
from broker.service.iam_api.policies import policy_name
from broker.service.iam_api.registry import Action, Call, Result, named
from broker.storage.base import PrincipalType

BOUNDED: tuple[PrincipalType, ...] = ("user", "role")


def _put(kind: PrincipalType) -> Callable[[Call], Awaitable[Result]]:
    async def run(call: Call) -> Result:
        key, label = await principal_key(call, kind, for_write=True)
        await escalation.require_bounded_target(call, kind, key, label)
        await call.api.iam.put_inline_policy(
            kind,
            key,
            call.params["PolicyName"],
            str(call.params["PolicyDocument"]),
            actor=call.actor,
        )
        if kind == "role":  # the console's "Revoke active sessions": also a revocation
            await revoke.after_put_role_policy(
                call, key, call.params["PolicyName"], str(call.params["PolicyDocument"])
            )
        return {}

    return run


def _get(kind: PrincipalType) -> Callable[[Call], Awaitable[Result]]:
    async def run(call: Call) -> Result:
        key, label = await principal_key(call, kind, for_write=False)
        name = call.params["PolicyName"]
        document = (await call.api.store.attached_policies(kind, key)).inline.get(name)
        if document is None:
            raise IamNoSuchEntity(
                f"no_such_inline_policy:{kind}/{label}/{name}"[:300],
                public_message=f"The {kind} policy with name {name} cannot be found.",
            )
        return {
            _PARAM[kind]: label,
            "PolicyName": name,
            "PolicyDocument": json.dumps(document),
        }

    return run


def _delete(kind: PrincipalType) -> Callable[[Call], Awaitable[Result]]:
    async def run(call: Call) -> Result:
        key, label = await principal_key(call, kind, for_write=True)
        await escalation.require_bounded_target(call, kind, key, label)
        await call.api.iam.delete_inline_policy(
            kind, key, call.params["PolicyName"], actor=call.actor
        )
        return {}

    return run


def _list(kind: PrincipalType) -> Callable[[Call], Awaitable[Result]]:
    async def run(call: Call) -> Result:
        key, _ = await principal_key(call, kind, for_write=False)
        inline = (await call.api.store.attached_policies(kind, key)).inline
        return {"PolicyNames": sorted(inline)}

    return run


def _put_boundary(kind: PrincipalType) -> Callable[[Call], Awaitable[Result]]:
    async def run(call: Call) -> Result:
        name = policy_name(call, "PermissionsBoundary")
        key, _ = await principal_key(call, kind, for_write=True)
        await escalation.require_boundary_for_new(
            call, kind, str(call.params["PermissionsBoundary"])
        )
        await call.api.iam.set_boundary(kind, key, name, actor=call.actor)
        return {}

    return run


def _delete_boundary(kind: PrincipalType) -> Callable[[Call], Awaitable[Result]]:
    async def run(call: Call) -> Result:
        key, label = await principal_key(call, kind, for_write=True)
        await escalation.require_no_boundary_removal(call, kind, label)
        if (await call.api.store.attached_policies(kind, key)).boundary is None:
            raise IamNoSuchEntity(
                f"no_boundary:{kind}/{label}"[:300],
                public_message=f"The {kind} with name {label} has no permissions boundary.",
            )
        await call.api.iam.set_boundary(kind, key, None, actor=call.actor)
        return {}

    return run


ACTIONS = (
    *(Action(f"Put{k.title()}Policy", _put(k), named(k, _PARAM[k])) for k in KINDS),
    *(Action(f"Get{k.title()}Policy", _get(k), named(k, _PARAM[k]), mutates=False) for k in KINDS),
    *(Action(f"Delete{k.title()}Policy", _delete(k), named(k, _PARAM[k])) for k in KINDS),
    *(
        Action(
            f"List{k.title()}Policies",
            _list(k),
            named(k, _PARAM[k]),
            mutates=False,
            page="PolicyNames",
        )
        for k in KINDS
    ),
    *(
        Action(f"Put{k.title()}PermissionsBoundary", _put_boundary(k), named(k, _PARAM[k]))
        for k in BOUNDED
    ),
    *(
        Action(f"Delete{k.title()}PermissionsBoundary", _delete_boundary(k), named(k, _PARAM[k]))
        for k in BOUNDED
    ),
)
