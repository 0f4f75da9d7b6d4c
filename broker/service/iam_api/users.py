"""IAM users: every user the broker knows (local and federated) is an IAM user named by its
``name``; users created here are local users (a password comes with ``CreateLoginProfile``)."""

from __future__ import annotations

import base64
import hashlib
import uuid
from typing import Any

from broker.errors import IamEntityAlreadyExists, IamValidationError
from broker.service.iam_api.registry import Action, Call, Result, anything, named
from broker.storage.base import User

USER_ID_PREFIX = "AIDA"


def user_id(user: User) -> str:
    """A stable unique id in AWS's form (``AIDA`` + 17 characters) for the user's record."""
    digest = hashlib.sha256(user.id.encode()).digest()
    return USER_ID_PREFIX + base64.b32encode(digest).decode("ascii")[:17]


def local_provider(call: Call) -> str:
    for name, p in call.api.settings.providers.items():
        if p.type == "local":
            return name
    return "local"


def user_shape(call: Call, user: User) -> dict[str, Any]:
    """The ``User`` structure of the model."""
    out: dict[str, Any] = {
        "Path": "/",
        "UserName": user.name,
        "UserId": user_id(user),
        "Arn": call.arn("user", user.name),
        "CreateDate": user.created_at,
    }
    if user.password_hash and user.last_login_at:
        out["PasswordLastUsed"] = user.last_login_at
    return out


def _path(call: Call) -> None:
    path = call.params.get("Path", "/")
    if path != "/":
        raise IamValidationError(
            "unsupported_path", public_message="This broker supports only the path '/'."
        )


async def create_user(call: Call) -> Result:
    _path(call)
    name = call.params["UserName"]
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
        "iam.CreateUser", "success", req=call.req, principal=call.actor, details={"user": name}
    )
    created = await call.api.store.create_user(user)
    return {"User": user_shape(call, created)}


async def get_user(call: Call) -> Result:
    name = call.params.get("UserName")
    if name is None:
        raise IamValidationError(
            "user_name_required",
            public_message="Must specify userName when calling with non-User credentials",
        )
    user = await call.api.iam.resolve_user(name)
    return {"User": user_shape(call, user)}


async def list_users(call: Call) -> Result:
    users = sorted(await call.api.store.list_users(), key=lambda u: (u.name, u.id))
    return {"Users": [user_shape(call, u) for u in users]}


ACTIONS = (
    Action("CreateUser", create_user, named("user", "UserName")),
    Action("GetUser", get_user, named("user", "UserName"), mutates=False),
    Action("ListUsers", list_users, anything, mutates=False, page="Users"),
)
