"""IAM users: every user the broker knows (local and federated) is an IAM user named by its
``name``; users created here are local users (a password comes with ``CreateLoginProfile``).

Users are found by their IAM name only (never by the broker's internal id, which a caller
could otherwise give as ``UserName`` to act on someone its policies do not name). Tags,
memberships and policies are keyed by the user's id, so ``UpdateUser``'s rename keeps them; a
local user's login name follows its IAM name. ``DeleteUser`` is refused (``DeleteConflict``)
while the user has a login profile, group memberships, policies or an enabled MFA device, as
in AWS, and ends every session and credential the user holds.
"""

from __future__ import annotations

import uuid
from typing import Any

from broker.domain.sts import iam_user_unique_id
from broker.errors import IamEntityAlreadyExists, IamValidationError
from broker.service.iam_api import escalation
from broker.service.iam_api.policies import policy_name
from broker.service.iam_api.principals import user_named
from broker.service.iam_api.registry import Action, Call, Result, anything, named
from broker.service.iam_api.tags import TAG_LIMIT, check_tags
from broker.storage.base import User

USER_ID_PREFIX = "AIDA"


def user_id(user: User) -> str:
    """A stable unique id in AWS's form (``AIDA`` + 17 characters) for the user's record."""
    return iam_user_unique_id(user.id)


def local_provider(call: Call) -> str:
    for name, p in call.api.settings.providers.items():
        if p.type == "local":
            return name
    return "local"


def is_local(call: Call, user: User) -> bool:
    provider = call.api.settings.providers.get(user.provider)
    return provider is not None and provider.type == "local"


def user_shape(call: Call, user: User, *, boundary: str | None = None) -> dict[str, Any]:
    """The ``User`` structure of the model (``boundary``: its permissions boundary's name)."""
    out: dict[str, Any] = {
        "Path": "/",
        "UserName": user.name,
        "UserId": user_id(user),
        "Arn": call.arn("user", user.name),
        "CreateDate": user.created_at,
    }
    if user.password_hash and user.last_login_at:
        out["PasswordLastUsed"] = user.last_login_at
    if boundary is not None:
        out["PermissionsBoundary"] = {
            "PermissionsBoundaryType": "PermissionsBoundaryPolicy",
            "PermissionsBoundaryArn": call.arn("policy", boundary),
        }
    return out


def _path(call: Call, param: str = "Path") -> None:
    path = call.params.get(param, "/")
    if path != "/":
        raise IamValidationError(
            "unsupported_path", public_message="This broker supports only the path '/'."
        )


def user_name(call: Call) -> str:
    name = call.params.get("UserName")
    if name is None:
        raise IamValidationError(
            "user_name_required",
            public_message="Must specify userName when calling with non-User credentials",
        )
    return str(name)


async def create_user(call: Call) -> Result:
    _path(call)
    name = call.params["UserName"]
    tags = check_tags(call.params.get("Tags", []))
    boundary = call.params.get("PermissionsBoundary")
    await escalation.require_boundary_for_new(call, "user", boundary)
    boundary_name = policy_name(call, "PermissionsBoundary") if boundary else None
    if boundary_name is not None:
        await call.api.iam.get_policy(boundary_name)  # NoSuchEntity before anything is written
    if await call.api.store.find_users_by_name(name):
        raise IamEntityAlreadyExists(
            f"user_exists:{name}", public_message=f"User with name {name} already exists."
        )
    now = call.api.clock.now()
    user = User(
        id=str(uuid.uuid4()),
        provider=local_provider(call),
        subject=name,
        name=name,
        created_at=now,
    )
    await call.api.auditor.record_or_fail(
        "iam.CreateUser",
        "success",
        req=call.req,
        principal=call.actor,
        details={"user": name, "tags": sorted(tags), "boundary": boundary_name},
    )
    created = await call.api.store.create_user(user)  # AlreadyExists if a racer was first
    if tags:
        await call.api.store.tag("user", created.id, tags, limit=TAG_LIMIT)
    if boundary_name is not None:
        await call.api.store.set_boundary("user", created.id, boundary_name)
    return {"User": user_shape(call, created, boundary=boundary_name)}


async def get_user(call: Call) -> Result:
    user = await user_named(call, user_name(call))
    boundary = (await call.api.store.attached_policies("user", user.id)).boundary
    out = user_shape(call, user, boundary=boundary)
    tags = await call.api.store.list_tags("user", user.id)
    if tags:
        out["Tags"] = [{"Key": k, "Value": v} for k, v in tags.items()]
    return {"User": out}


async def list_users(call: Call) -> Result:
    users = sorted(await call.api.store.list_users(), key=lambda u: (u.name, u.id))
    return {"Users": [user_shape(call, u) for u in users]}


async def update_user(call: Call) -> Result:
    _path(call, "NewPath")
    user = await user_named(call, call.params["UserName"])
    new = call.params.get("NewUserName")
    if new is None or new == user.name:
        return {}
    # As AWS: renaming needs the permission on the new name too.
    call.api.authorize(call.caller, "UpdateUser", call.arn("user", new), call.req)
    if await call.api.store.find_users_by_name(new):
        raise IamEntityAlreadyExists(
            f"user_exists:{new}", public_message=f"User with name {new} already exists."
        )
    await call.api.auditor.record_or_fail(
        "iam.UpdateUser",
        "success",
        req=call.req,
        principal=call.actor,
        details={"user": user.id, "name": user.name, "new_name": new},
    )
    # A local user signs in with its IAM name; a federated one keeps its provider's subject.
    subject = new if is_local(call, user) else None
    await call.api.store.rename_user(user.id, new, subject=subject)
    return {}


async def delete_user(call: Call) -> Result:
    user = await user_named(call, call.params["UserName"])
    await call.api.auditor.record_or_fail(
        "iam.DeleteUser",
        "success",
        req=call.req,
        principal=call.actor,
        details={"user": user.id, "name": user.name},
    )
    # Conflict (nothing deleted) while it has a login profile, groups or policies.
    deleted = await call.api.store.delete_user(user.id)
    await call.api.offboarding.end_deleted_user(deleted, actor=call.actor)
    return {}


ACTIONS = (
    Action("CreateUser", create_user, named("user", "UserName")),
    Action("GetUser", get_user, named("user", "UserName"), mutates=False),
    Action("ListUsers", list_users, anything, mutates=False, page="Users"),
    Action("UpdateUser", update_user, named("user", "UserName")),
    Action("DeleteUser", delete_user, named("user", "UserName")),
)
