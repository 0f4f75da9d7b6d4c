"""``/console/roles``: the account's roles (``ListRoles``; last use from ``GetRole``'s
``RoleLastUsed``), creating one (``CreateRole``), and a role's page: its properties and last use
(``GetRole``), its trust policy (``UpdateAssumeRolePolicy``), its managed policies
(``ListAttachedRolePolicies``; ``AttachRolePolicy`` from ``ListPolicies``, ``DetachRolePolicy``),
its inline policies (``ListRolePolicies``/``GetRolePolicy``; ``DeleteRolePolicy``), its
permissions boundary, its effective permissions, the services it may use and when it last used
them (``GenerateServiceLastAccessedDetails`` + ``GetServiceLastAccessedDetails``, computed at
once by this broker), "Revoke active sessions" (``PutRolePolicy`` of ``AWSRevokeOlderSessions``,
as the IAM console does: ``broker/service/iam_api/revoke.py``) and ``DeleteRole``.

Roles declared in the config file are read-only through IAM (``UnmodifiableEntity``): their
pages say so and offer no change (the service refuses a forced one all the same).
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from aiohttp import web

from broker.errors import BrokerError, InvalidRequest
from broker.service.role_admin import (
    MAX_SESSION_SECONDS,
    MIN_SESSION_SECONDS,
    REVOKE_POLICY_NAME,
)
from broker.web.console.base import Column, Console, console, error_message, table, text
from broker.web.console.effective import Source, rows
from broker.web.console.groups import attachable, managed_sources, policy_link, pretty
from broker.web.pages import redirect

SECTION = "roles"
LIST = "/console/roles"
#: what the form takes of a trust policy: well above IAM's quota, so that the service (which
#: counts non-whitespace characters) is the one to say what is too long
TRUST_FORM_LIMIT = 65536
DESCRIPTION_LIMIT = 1000  # IAM's
SESSION_HOURS = tuple(range(MIN_SESSION_SECONDS // 3600, MAX_SESSION_SECONDS // 3600 + 1))

COLUMNS = (
    Column("name", "Name"),
    Column("description", "Description"),
    Column("created", "Created"),
    Column("last_used", "Last used"),
)

NOTICES = {
    "created": "The role was created.",
    "deleted": "The role was deleted.",
    "trust-updated": "The trust policy was updated.",
    "attached": "The policy was attached.",
    "detached": "The policy was detached.",
    "inline-deleted": "The inline policy was deleted.",
    "revoked": "Every session of this role issued until now was revoked: those credentials "
    "are refused from now on. New sessions can still be started.",
}

EXAMPLE_TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Federated": "local"},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {"local:sub": "ada"}},
        }
    ],
}


def role_path(name: str) -> str:
    return f"{LIST}/{quote(name, safe='')}"


def from_config(c: Console, name: str) -> bool:
    """Declared in the config file (read-only through IAM)."""
    return name in c.broker.settings.roles


def _notice(request: web.Request) -> str:
    return NOTICES.get(request.query.get("done", ""), "")


# --- the list -----------------------------------------------------------------------------


async def list_roles(request: web.Request) -> web.StreamResponse:
    c = await console(request)
    roles = await c.call_all("ListRoles", "Roles")
    # ListRoles leaves RoleLastUsed out (as IAM does): GetRole per role, when allowed
    last_used: dict[str, float] = {}
    for r in roles:
        if not c.may("iam:GetRole", r["Arn"]):
            continue
        try:
            used = (await c.call("GetRole", {"RoleName": r["RoleName"]}))["Role"].get(
                "RoleLastUsed", {}
            )
        except BrokerError:
            continue
        if "LastUsedDate" in used:
            last_used[r["RoleName"]] = used["LastUsedDate"]
    found = [
        {
            "name": r["RoleName"],
            "description": r.get("Description", ""),
            "created": r["CreateDate"],
            "last_used": last_used.get(r["RoleName"]),
            "config": from_config(c, r["RoleName"]),
            "path": role_path(r["RoleName"]),
        }
        for r in roles
    ]
    t = table(
        request,
        found,
        COLUMNS,
        search=lambda r: f"{r['name']} {r['description']}",
        default_sort="name",
    )
    return await c.page(
        "console/roles.html",
        section=SECTION,
        t=t,
        notice=_notice(request),
        can_create=c.may("iam:CreateRole"),
    )


# --- creating a role ------------------------------------------------------------------------


def _new_form(typed: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "typed": typed
        or {"name": "", "description": "", "max_session": "3600", "trust_policy": ""},
        "hours": SESSION_HOURS,
        "example": json.dumps(EXAMPLE_TRUST, indent=2),
    }


async def new_role(request: web.Request) -> web.StreamResponse:
    c = await console(request)
    return await c.page("console/role_new.html", section=SECTION, **_new_form())


def _seconds(raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise InvalidRequest(
            "bad_max_session_duration",
            public_message="Maximum session duration: a whole number of seconds.",
        ) from None


async def create_role(request: web.Request) -> web.StreamResponse:
    c = await console(request)
    form = await c.form("console.roles.create")
    typed = {
        k: str(form.get(k, "")) for k in ("name", "description", "max_session", "trust_policy")
    }
    try:
        name = text(form, "name", max_length=256)
        params: dict[str, Any] = {
            "RoleName": name,
            "AssumeRolePolicyDocument": text(form, "trust_policy", max_length=TRUST_FORM_LIMIT),
            "MaxSessionDuration": _seconds(text(form, "max_session", max_length=16)),
        }
        description = text(form, "description", max_length=DESCRIPTION_LIMIT)
        if description:
            params["Description"] = description
        await c.call("CreateRole", params)
    except BrokerError as e:
        return await c.page(
            "console/role_new.html",
            section=SECTION,
            error=error_message(e),
            status=e.status,
            **_new_form(typed),
        )
    return redirect(role_path(name) + "?done=created")


# --- a role's page ------------------------------------------------------------------------


async def show_role(request: web.Request) -> web.StreamResponse:
    c = await console(request)
    name = request.match_info["name"]
    services = None
    if request.query.get("services") == "1":
        services = await last_accessed(c, c.arn("role", name))
    return await role_page(c, name, notice=_notice(request), services=services)


async def last_accessed(c: Console, arn: str) -> dict[str, Any]:
    """The services the role's policies allow and when it last used each (or why not)."""
    try:
        job = await c.call("GenerateServiceLastAccessedDetails", {"Arn": arn})
        details = await c.call("GetServiceLastAccessedDetails", {"JobId": job["JobId"]})
    except BrokerError as e:
        return {"error": error_message(e), "rows": []}
    found = sorted(details.get("ServicesLastAccessed", []), key=lambda s: s["ServiceNamespace"])
    return {"error": "", "rows": found}


async def role_page(
    c: Console,
    name: str,
    *,
    notice: str = "",
    error: str = "",
    status: int = 200,
    trust_text: str | None = None,
    services: dict[str, Any] | None = None,
) -> web.StreamResponse:
    role = (await c.call("GetRole", {"RoleName": name}))["Role"]
    arn = role["Arn"]
    config = from_config(c, name)
    attached = await c.call_all("ListAttachedRolePolicies", "AttachedPolicies", {"RoleName": name})
    inline: list[dict[str, Any]] = []
    for policy in await c.call_all("ListRolePolicies", "PolicyNames", {"RoleName": name}):
        doc = (await c.call("GetRolePolicy", {"RoleName": name, "PolicyName": policy}))[
            "PolicyDocument"
        ]
        inline.append({"name": policy, "document": pretty(doc), "raw": doc})

    sources = await managed_sources(c, attached, kind="managed")
    sources += [Source("inline", p["name"], p["raw"], link=f"#inline-{p['name']}") for p in inline]
    config_policies: list[dict[str, Any]] = []
    if config:  # the config file's own documents (IAM lists none of them)
        rc = c.broker.settings.roles[name]
        for i, doc in enumerate(rc.policies, start=1):
            label = f"config policy {i}"
            config_policies.append({"name": label, "document": pretty(doc)})
            sources.append(Source("config file", label, doc))
    boundary: dict[str, Any] | None = None
    boundary_arn = role.get("PermissionsBoundary", {}).get("PermissionsBoundaryArn")
    if boundary_arn:
        bname = boundary_arn.rsplit("/", 1)[-1]
        boundary = {
            "name": bname,
            "arn": boundary_arn,
            "link": policy_link(bname),
            "document": "",
        }
        sources += await managed_sources(
            c, [{"PolicyName": bname, "PolicyArn": boundary_arn}], kind="boundary"
        )
    elif config and c.broker.settings.roles[name].permissions_boundary is not None:
        doc = c.broker.settings.roles[name].permissions_boundary or {}
        boundary = {"name": "from the config file", "arn": "", "link": "", "document": pretty(doc)}
        sources.append(Source("boundary", "config file boundary", doc))

    writable = not config
    policies = (
        await attachable(c, arn, "iam:AttachRolePolicy", [a["PolicyArn"] for a in attached])
        if writable
        else None
    )
    trust = pretty(role.get("AssumeRolePolicyDocument", "{}"))
    return await c.page(
        "console/role.html",
        section=SECTION,
        status=status,
        notice=notice,
        error=error,
        role=role,
        config=config,
        path=role_path(name),
        trust=trust,
        trust_text=trust if trust_text is None else trust_text,
        attached=[{**a, "link": policy_link(a["PolicyName"])} for a in attached],
        inline=inline,
        config_policies=config_policies,
        boundary=boundary,
        statements=rows(sources),
        policies=policies,
        services=services,
        revoke_policy=REVOKE_POLICY_NAME,
        session_hours=f"{float(role['MaxSessionDuration']) / 3600:g}",
        can={
            "trust": writable and c.may("iam:UpdateAssumeRolePolicy", arn),
            "detach": writable and c.may("iam:DetachRolePolicy", arn),
            "delete_inline": writable and c.may("iam:DeleteRolePolicy", arn),
            "revoke": writable and c.may("iam:PutRolePolicy", arn),
            "delete": writable and c.may("iam:DeleteRole", arn),
            "services": c.may("iam:GenerateServiceLastAccessedDetails", arn),
        },
    )


async def _write(
    request: web.Request,
    audit: str,
    action: str,
    fields: dict[str, str],
    done: str,
) -> web.StreamResponse:
    c = await console(request)
    name = request.match_info["name"]
    form = await c.form(audit)
    try:
        values = {key: text(form, field, max_length=2048) for key, field in fields.items()}
        await c.call(action, {"RoleName": name, **values})
    except BrokerError as e:
        return await role_page(c, name, error=error_message(e), status=e.status)
    return redirect(role_path(name) + f"?done={done}")


async def update_trust(request: web.Request) -> web.StreamResponse:
    c = await console(request)
    name = request.match_info["name"]
    form = await c.form("console.roles.update_trust")
    typed = str(form.get("trust_policy", ""))
    try:
        document = text(form, "trust_policy", max_length=TRUST_FORM_LIMIT)
        await c.call("UpdateAssumeRolePolicy", {"RoleName": name, "PolicyDocument": document})
    except BrokerError as e:
        return await role_page(c, name, error=error_message(e), status=e.status, trust_text=typed)
    return redirect(role_path(name) + "?done=trust-updated")


async def attach_policy(request: web.Request) -> web.StreamResponse:
    return await _write(
        request,
        "console.roles.attach_policy",
        "AttachRolePolicy",
        {"PolicyArn": "policy_arn"},
        "attached",
    )


async def detach_policy(request: web.Request) -> web.StreamResponse:
    return await _write(
        request,
        "console.roles.detach_policy",
        "DetachRolePolicy",
        {"PolicyArn": "policy_arn"},
        "detached",
    )


async def delete_inline(request: web.Request) -> web.StreamResponse:
    return await _write(
        request,
        "console.roles.delete_inline_policy",
        "DeleteRolePolicy",
        {"PolicyName": "policy_name"},
        "inline-deleted",
    )


def revoke_document(now: float) -> str:
    """The IAM console's "Revoke active sessions" policy: deny everything to tokens issued
    before ``now`` (rounded up to the millisecond: a token of this very instant is void too;
    the service caps the time at its own now)."""
    at = datetime.fromtimestamp(math.ceil(now * 1000) / 1000, UTC)
    stamp = at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Deny",
                    "Action": ["*"],
                    "Resource": ["*"],
                    "Condition": {"DateLessThan": {"aws:TokenIssueTime": stamp}},
                }
            ],
        }
    )


async def revoke_sessions(request: web.Request) -> web.StreamResponse:
    c = await console(request)
    name = request.match_info["name"]
    await c.form("console.roles.revoke_sessions")
    try:
        await c.call(
            "PutRolePolicy",
            {
                "RoleName": name,
                "PolicyName": REVOKE_POLICY_NAME,
                "PolicyDocument": revoke_document(c.broker.clock.now()),
            },
        )
    except BrokerError as e:
        return await role_page(c, name, error=error_message(e), status=e.status)
    return redirect(role_path(name) + "?done=revoked")


async def delete_role(request: web.Request) -> web.StreamResponse:
    c = await console(request)
    name = request.match_info["name"]
    await c.form("console.roles.delete")
    try:
        await c.call("DeleteRole", {"RoleName": name})
    except BrokerError as e:
        return await role_page(c, name, error=error_message(e), status=e.status)
    return redirect(LIST + "?done=deleted")


ROUTES = (
    ("GET", LIST, list_roles),
    ("POST", LIST, create_role),
    ("GET", LIST + "/new", new_role),
    ("GET", LIST + "/{name}", show_role),
    ("POST", LIST + "/{name}/trust", update_trust),
    ("POST", LIST + "/{name}/policies", attach_policy),
    ("POST", LIST + "/{name}/policies/detach", detach_policy),
    ("POST", LIST + "/{name}/inline/delete", delete_inline),
    ("POST", LIST + "/{name}/revoke", revoke_sessions),
    ("POST", LIST + "/{name}/delete", delete_role),
)
