"""Looking up the entity an IAM API call names: by its IAM name only (never by the broker's
internal id, which a caller could otherwise give to act on someone its policies do not name),
with AWS's ``NoSuchEntity`` when there is none."""

from __future__ import annotations

from broker.errors import IamInvalidInput, IamNoSuchEntity, IamUnmodifiableEntity
from broker.service.iam_api.registry import Call
from broker.storage.base import Group, RoleRecord, User


async def user_named(call: Call, name: str) -> User:
    found = await call.api.store.find_users_by_name(name)
    if not found:
        raise IamNoSuchEntity(
            f"no_such_user:{name}",
            public_message=f"The user with name {name} cannot be found.",
        )
    if len(found) > 1:  # names are not unique across providers (federated users)
        raise IamInvalidInput(
            f"ambiguous_user:{name}",
            public_message=f"{len(found)} users are named {name}; rename all but one "
            "(broker admin users) to administer them here.",
        )
    return found[0]


async def group_named(call: Call, name: str) -> Group:
    group = await call.api.store.get_group(name)
    if group is None:
        raise IamNoSuchEntity(
            f"no_such_group:{name}",
            public_message=f"The group with name {name} cannot be found.",
        )
    return group


async def role_named(call: Call, name: str, *, write: bool) -> RoleRecord:
    """``write``: roles declared in the config file are read-only (``UnmodifiableEntity``)."""
    role = await call.api.store.get_role(name)
    if role is None:
        raise IamNoSuchEntity(
            f"no_such_role:{name}", public_message=f"The role with name {name} cannot be found."
        )
    if write and role.source == "config":
        raise IamUnmodifiableEntity(
            f"role_from_config:{name}",
            public_message=f"Cannot perform the operation on the role {name}: it is declared "
            "in the configuration file and read-only here.",
        )
    return role
