"""IAM groups: broker-managed sets of users sharing policies (not the providers' group claims).

``DeleteGroup`` is refused (``DeleteConflict``) while the group has members or policies, as in
AWS; ``AddUserToGroup`` is idempotent. The changes go through ``IamService``, which audits them.
``UpdateGroup`` renames a group with its members and policies in one transaction; as in AWS
the caller needs ``iam:UpdateGroup`` on both the old and the new name.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from broker.errors import AlreadyExists, IamEntityAlreadyExists, IamValidationError, RecordNotFound
from broker.service.iam_api import escalation
from broker.service.iam_api.principals import group_named, user_named
from broker.service.iam_api.registry import Action, Call, Result, anything, named
from broker.service.iam_api.users import user_shape
from broker.storage.base import Group

GROUP_ID_PREFIX = "AGPA"


def group_id(group: Group) -> str:
    """A stable id in AWS's form; a group deleted and created again gets a new one."""
    digest = hashlib.sha256(f"{group.name}\0{group.created_at!r}".encode()).digest()
    return GROUP_ID_PREFIX + base64.b32encode(digest).decode("ascii")[:17]


def group_shape(call: Call, group: Group) -> dict[str, Any]:
    """The ``Group`` structure of the model."""
    return {
        "Path": "/",
        "GroupName": group.name,
        "GroupId": group_id(group),
        "Arn": call.arn("group", group.name),
        "CreateDate": group.created_at,
    }


async def create_group(call: Call) -> Result:
    path = call.params.get("Path", "/")
    if path != "/":
        raise IamValidationError(
            "unsupported_path", public_message="This broker supports only the path '/'."
        )
    group = await call.api.iam.create_group(call.params["GroupName"], actor=call.actor)
    return {"Group": group_shape(call, group)}


async def get_group(call: Call) -> Result:
    group = await group_named(call, call.params["GroupName"])
    users = []
    for uid in await call.api.store.group_members(group.name):
        try:
            users.append(await call.api.store.get_user(uid))
        except RecordNotFound:  # deleted meanwhile
            continue
    users.sort(key=lambda u: (u.name, u.id))
    return {"Group": group_shape(call, group), "Users": [user_shape(call, u) for u in users]}


async def list_groups(call: Call) -> Result:
    prefix = call.params.get("PathPrefix", "/")
    groups = sorted(await call.api.store.list_groups(), key=lambda g: g.name)
    return {"Groups": [group_shape(call, g) for g in groups if "/".startswith(prefix)]}


async def delete_group(call: Call) -> Result:
    group = await group_named(call, call.params["GroupName"])
    await call.api.iam.delete_group(group.name, actor=call.actor)
    return {}


async def update_group(call: Call) -> Result:
    path = call.params.get("NewPath", "/")
    if path != "/":
        raise IamValidationError(
            "unsupported_path", public_message="This broker supports only the path '/'."
        )
    group = await group_named(call, call.params["GroupName"])
    new = call.params.get("NewGroupName")
    if new is None or new == group.name:
        return {}
    call.api.authorize(call.caller, "UpdateGroup", call.arn("group", new), call.req)
    await call.api.auditor.record_or_fail(
        "iam.UpdateGroup",
        "success",
        req=call.req,
        principal=call.actor,
        details={"group": group.name, "new_name": new},
    )
    try:
        await call.api.store.rename_group(group.name, new)
    except AlreadyExists:
        raise IamEntityAlreadyExists(
            f"group_exists:{new}", public_message=f"Group with name {new} already exists."
        ) from None
    return {}


async def add_user_to_group(call: Call) -> Result:
    group = await group_named(call, call.params["GroupName"])
    user = await user_named(call, call.params["UserName"])
    # the group's policies become the user's: a bounded caller may only give them to a user
    # under its own boundary (broker/service/iam_api/escalation.py, rule 2)
    await escalation.require_bounded_target(call, "user", user.id, user.name)
    await call.api.iam.add_user_to_group(group.name, user.id, actor=call.actor)
    return {}


async def remove_user_from_group(call: Call) -> Result:
    group = await group_named(call, call.params["GroupName"])
    user = await user_named(call, call.params["UserName"])
    await call.api.iam.remove_user_from_group(group.name, user.id, actor=call.actor)
    return {}


async def list_groups_for_user(call: Call) -> Result:
    user = await user_named(call, call.params["UserName"])
    groups = []
    for name in sorted(await call.api.store.user_groups(user.id)):
        group = await call.api.store.get_group(name)
        if group is not None:
            groups.append(group_shape(call, group))
    return {"Groups": groups}


ACTIONS = (
    Action("CreateGroup", create_group, named("group", "GroupName")),
    Action("GetGroup", get_group, named("group", "GroupName"), mutates=False, page="Users"),
    Action("ListGroups", list_groups, anything, mutates=False, page="Groups"),
    Action("DeleteGroup", delete_group, named("group", "GroupName")),
    Action("UpdateGroup", update_group, named("group", "GroupName")),
    Action("AddUserToGroup", add_user_to_group, named("group", "GroupName")),
    Action("RemoveUserFromGroup", remove_user_from_group, named("group", "GroupName")),
    Action(
        "ListGroupsForUser",
        list_groups_for_user,
        named("user", "UserName"),
        mutates=False,
        page="Groups",
    ),
)
