"""IAM roles: Create/Get/List/Update/Delete Role, UpdateRoleDescription, UpdateAssumeRolePolicy.

The service logic is ``broker.service.role_admin.RoleAdmin``; this module maps the model's
parameters onto it and its results onto the model's ``Role`` structure. Roles live at the path
``/`` only; config roles are read-only (``UnmodifiableEntity``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from broker.domain.sts import role_id
from broker.errors import IamInvalidInput, IamValidationError
from broker.service.iam_api import escalation
from broker.service.iam_api.registry import Action, Call, Result, anything, named
from broker.service.iam_api.tags import check_tags, tag_list
from broker.service.role_admin import RoleAdmin, RoleView
from broker.storage.base import RoleRecord


def role_admin(call: Call) -> RoleAdmin:
    api = call.api
    return RoleAdmin(api.settings, api.store, api.auditor, api.offboarding, api.clock)


def role_shape(call: Call, role: RoleRecord, view: RoleView | None = None) -> dict[str, Any]:
    """The model's ``Role``; with ``view`` (GetRole, CreateRole, UpdateRoleDescription) also
    its boundary and tags, which ListRoles leaves out as IAM does."""
    out: dict[str, Any] = {
        "Path": "/",
        "RoleName": role.name,
        "RoleId": role_id(call.api.settings.server.account_id, role.name),
        "Arn": call.arn("role", role.name),
        "CreateDate": role.created_at,
        "AssumeRolePolicyDocument": _json(role.trust_policy),
        "MaxSessionDuration": int(role.max_session_duration),
    }
    if role.description:
        out["Description"] = role.description
    if view is not None:
        if view.boundary is not None:
            out["PermissionsBoundary"] = {
                "PermissionsBoundaryType": "PermissionsBoundaryPolicy",
                "PermissionsBoundaryArn": call.arn("policy", view.boundary),
            }
        if view.tags:
            out["Tags"] = tag_list(view.tags)
    return out


def _json(doc: Mapping[str, Any]) -> str:
    return json.dumps(doc, separators=(",", ":"))


def _path(call: Call) -> None:
    if call.params.get("Path", "/") != "/":
        raise IamValidationError(
            "unsupported_path", public_message="This broker supports only the path '/'."
        )


def _no_signin_duration(call: Call) -> None:
    if "MaxSigninSessionDuration" in call.params or call.params.get(
        "ResetMaxSigninSessionDuration"
    ):
        raise IamInvalidInput(
            "unsupported_signin_duration",
            public_message="MaxSigninSessionDuration is not supported by this broker.",
        )


async def create_role(call: Call) -> Result:
    _path(call)
    _no_signin_duration(call)
    p = call.params
    name = p["RoleName"]
    tags = check_tags(p.get("Tags", []))
    # no self-escalation: a bounded caller creates only roles under its own boundary
    await escalation.require_boundary_for_new(call, "role", p.get("PermissionsBoundary"))
    if tags:  # tagging on create needs iam:TagRole as well, as in IAM
        call.api.authorize(call.caller, "TagRole", call.arn("role", name), call.req)
    view = await role_admin(call).create(
        name,
        p["AssumeRolePolicyDocument"],
        actor=call.actor,
        req=call.req,
        description=p.get("Description", ""),
        max_session_duration=p.get("MaxSessionDuration", 3600),
        boundary=p.get("PermissionsBoundary"),
        tags=tags,
    )
    return {"Role": role_shape(call, view.record, view)}


async def get_role(call: Call) -> Result:
    view = await role_admin(call).view(call.params["RoleName"])
    shape = role_shape(call, view.record, view)
    # The last allowed request of the role's sessions (the access activity, flushed every
    # few seconds); one read on the activity's primary key.
    used = await call.api.store.activity_last_used([shape["Arn"]])
    if used:
        shape["RoleLastUsed"] = {"LastUsedDate": used[shape["Arn"]]}
    return {"Role": shape}


async def list_roles(call: Call) -> Result:
    prefix = call.params.get("PathPrefix", "/")
    roles = await role_admin(call).list_roles() if "/".startswith(prefix) else []
    return {"Roles": [role_shape(call, r) for r in sorted(roles, key=lambda r: r.name)]}


async def update_role(call: Call) -> Result:
    _no_signin_duration(call)
    p = call.params
    await role_admin(call).update(
        p["RoleName"],
        operation="UpdateRole",
        actor=call.actor,
        req=call.req,
        description=p.get("Description"),
        max_session_duration=p.get("MaxSessionDuration"),
    )
    return {}


async def update_role_description(call: Call) -> Result:
    admin = role_admin(call)
    p = call.params
    await admin.update(
        p["RoleName"],
        operation="UpdateRoleDescription",
        actor=call.actor,
        req=call.req,
        description=p["Description"],
    )
    view = await admin.view(p["RoleName"])
    return {"Role": role_shape(call, view.record, view)}


async def update_assume_role_policy(call: Call) -> Result:
    p = call.params
    # no self-escalation: a bounded caller changes the trust only of roles under its boundary
    await escalation.require_bounded_target(call, "role", p["RoleName"], p["RoleName"])
    await role_admin(call).update(
        p["RoleName"],
        operation="UpdateAssumeRolePolicy",
        actor=call.actor,
        req=call.req,
        trust=p["PolicyDocument"],
    )
    return {}


async def delete_role(call: Call) -> Result:
    await role_admin(call).delete(call.params["RoleName"], actor=call.actor, req=call.req)
    return {}


_ROLE = named("role", "RoleName")

ACTIONS = (
    Action("CreateRole", create_role, _ROLE),
    Action("GetRole", get_role, _ROLE, mutates=False),
    Action("ListRoles", list_roles, anything, mutates=False, page="Roles"),
    Action("UpdateRole", update_role, _ROLE),
    Action("UpdateRoleDescription", update_role_description, _ROLE),
    Action("UpdateAssumeRolePolicy", update_assume_role_policy, _ROLE),
    Action("DeleteRole", delete_role, _ROLE),
)
