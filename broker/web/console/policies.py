"""``/console/policies``: managed policies and their versions, with the live-validating JSON
editor (``broker.web.console.validate``).

Pages are addressed by the policy's *name* (``/console/policies/<name>``: the broker keeps every
policy on the path ``/``, and names are URL-safe); the ARN is built from it. Every read and write
is the IAM action of the same name, authorized with the caller's own policies:

============================================  ============================================
page or form                                  IAM actions
============================================  ============================================
GET  /console/policies                        ListPolicies
GET  /console/policies/new, POST /console/…   CreatePolicy
GET  /console/policies/<name>                 GetPolicy, ListPolicyVersions,
                                              GetPolicyVersion, ListEntitiesForPolicy
GET  …/<name>/edit, POST …/<name>/versions    CreatePolicyVersion (SetAsDefault)
POST …/<name>/default                         SetDefaultPolicyVersion
POST …/<name>/versions/delete                 DeletePolicyVersion
POST …/<name>/delete                          DeletePolicy
============================================  ============================================

Policies declared in the config file are read-only (the service answers ``UnmodifiableEntity``);
their pages say so and show no write buttons. A save that fails re-renders the form with what
was typed, the service's message and the validator's findings (no script needed).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from broker.errors import BrokerError, InvalidRequest
from broker.service.iam import MAX_POLICY_VERSIONS
from broker.web.console.base import Column, Console, console, table, text
from broker.web.console.effective import parse_document
from broker.web.console.validate import report
from broker.web.pages import redirect

MAX_DOCUMENT_FIELD = 64 * 1024  # characters of the editor's text (the service limits the policy)
MAX_DESCRIPTION = 1000  # IAM's limit
MAX_NAME_FIELD = 128

COLUMNS = (
    Column("name", "Name"),
    Column("attachments", "Attached to"),
    Column("default_version", "Default version"),
    Column("updated", "Updated"),
    Column("created", "Created"),
    Column("description", "Description", sortable=False),
)

DONE = {
    "created": "The policy was created.",
    "edited": "A new version was saved and is now the default.",
    "default": "The default version was changed.",
    "version-deleted": "The version was deleted.",
    "deleted": "The policy was deleted.",
}

EXAMPLE = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "iam:GetUser", "Resource": "*"}],
    },
    indent=2,
)


def pretty(document: Any) -> str:
    """A policy document (JSON text or a mapping) indented for reading."""
    if isinstance(document, str):
        parsed = parse_document(document)
        if parsed is None:
            return document
        document = parsed
    return json.dumps(document, indent=2, ensure_ascii=False)


def readonly(c: Console, name: str) -> bool:
    """Declared in the config file: the service refuses every change (UnmodifiableEntity)."""
    return name in c.broker.settings.policies


def _notice(request: web.Request) -> str:
    return DONE.get(request.query.get("done", ""), "")


def _name(request: web.Request) -> str:
    return request.match_info["name"]


# --- the list ------------------------------------------------------------------------------


async def list_policies(request: web.Request) -> web.StreamResponse:
    c = await console(request)
    policies = await c.call_all("ListPolicies", "Policies")
    rows = [
        {
            "name": p["PolicyName"],
            "arn": p["Arn"],
            "attachments": int(p.get("AttachmentCount", 0)),
            "boundaries": int(p.get("PermissionsBoundaryUsageCount", 0)),
            "default_version": p.get("DefaultVersionId", ""),
            "updated": p.get("UpdateDate"),
            "created": p.get("CreateDate"),
            "description": p.get("Description", ""),
            "readonly": readonly(c, p["PolicyName"]),
        }
        for p in policies
    ]
    t = table(
        request,
        rows,
        COLUMNS,
        search=lambda r: f"{r['name']} {r['description']}",
        default_sort="name",
    )
    return await c.page(
        "console/policies.html",
        section="policies",
        t=t,
        may_create=c.may("iam:CreatePolicy", c.arn("policy", "*")),
        notice=_notice(request),
    )


# --- create ------------------------------------------------------------------------------


async def new_policy(request: web.Request) -> web.StreamResponse:
    c = await console(request)
    return await _create_form(c, name="", description="", document=EXAMPLE)


async def _create_form(
    c: Console,
    *,
    name: str,
    description: str,
    document: str,
    error: str = "",
    findings: Mapping[str, Any] | None = None,
    status: int = 200,
) -> web.Response:
    return await c.page(
        "console/policy_new.html",
        section="policies",
        may_create=c.may("iam:CreatePolicy", c.arn("policy", name or "*")),
        name=name,
        description=description,
        document=document,
        findings=findings,
        error=error,
        status=status,
    )


def _findings_for(document: str) -> dict[str, Any] | None:
    """The validator's findings when they explain a refused save (errors only)."""
    result = report(document)
    return result if result["errors"] else None


async def create_policy(request: web.Request) -> web.StreamResponse:
    c = await console(request)
    form = await c.form("console.policy.create")
    name = str(form.get("name", ""))[: MAX_NAME_FIELD * 2]
    description = str(form.get("description", ""))[: MAX_DESCRIPTION * 2]
    document = str(form.get("document", ""))[:MAX_DOCUMENT_FIELD]
    try:
        name = text(form, "name", max_length=MAX_NAME_FIELD)
        description = text(form, "description", max_length=MAX_DESCRIPTION)
        document = text(form, "document", max_length=MAX_DOCUMENT_FIELD)
        if not name:
            raise InvalidRequest("missing_name", public_message="Give the policy a name.")
        params: dict[str, Any] = {"PolicyName": name, "PolicyDocument": document}
        if description:
            params["Description"] = description
        await c.call("CreatePolicy", params)
    except BrokerError as e:
        return await _create_form(
            c,
            name=name,
            description=description,
            document=document,
            error=e.public_message,
            findings=_findings_for(document),
            status=e.status,
        )
    return redirect(f"/console/policies/{name}?done=created")


# --- one policy ------------------------------------------------------------------------


async def show_policy(request: web.Request) -> web.StreamResponse:
    return await _policy_page(await console(request), _name(request))


async def _policy_page(
    c: Console, name: str, *, error: str = "", status: int = 200
) -> web.Response:
    """The policy's page; ``error``: why the action just tried failed."""
    request = c.request
    arn = c.arn("policy", name)
    policy = (await c.call("GetPolicy", {"PolicyArn": arn}))["Policy"]
    versions = (await c.call("ListPolicyVersions", {"PolicyArn": arn}))["Versions"]
    versions.sort(key=lambda v: _version_number(v["VersionId"]), reverse=True)
    shown = request.query.get("version", policy["DefaultVersionId"])
    if shown not in {v["VersionId"] for v in versions}:
        shown = policy["DefaultVersionId"]
    version = (await c.call("GetPolicyVersion", {"PolicyArn": arn, "VersionId": shown}))[
        "PolicyVersion"
    ]
    entities: dict[str, list[str]] = {"users": [], "groups": [], "roles": []}
    entities_error = ""
    try:
        found = await c.call("ListEntitiesForPolicy", {"PolicyArn": arn, "MaxItems": 1000})
        entities["users"] = sorted(u["UserName"] for u in found.get("PolicyUsers", []))
        entities["groups"] = sorted(g["GroupName"] for g in found.get("PolicyGroups", []))
        entities["roles"] = sorted(r["RoleName"] for r in found.get("PolicyRoles", []))
    except BrokerError as e:
        entities_error = e.public_message
    fixed = readonly(c, name)
    return await c.page(
        "console/policy.html",
        section="policies",
        policy=policy,
        arn=arn,
        name=name,
        versions=versions,
        version=version,
        document=pretty(version["Document"]),
        entities=entities,
        entities_error=entities_error,
        readonly=fixed,
        full=len(versions) >= MAX_POLICY_VERSIONS,
        max_versions=MAX_POLICY_VERSIONS,
        may_edit=not fixed and c.may("iam:CreatePolicyVersion", arn),
        may_set_default=not fixed and c.may("iam:SetDefaultPolicyVersion", arn),
        may_delete_version=not fixed and c.may("iam:DeletePolicyVersion", arn),
        may_delete=not fixed and c.may("iam:DeletePolicy", arn),
        notice=_notice(request),
        error=error,
        status=status,
    )


def _version_number(version_id: str) -> int:
    try:
        return int(version_id.lstrip("v"))
    except ValueError:
        return 0


async def _refused(c: Console, name: str, e: BrokerError) -> web.Response:
    """The policy page again, with why the action failed."""
    return await _policy_page(c, name, error=e.public_message, status=e.status)


async def edit_policy(request: web.Request) -> web.StreamResponse:
    c = await console(request)
    name = _name(request)
    arn = c.arn("policy", name)
    policy = (await c.call("GetPolicy", {"PolicyArn": arn}))["Policy"]
    version = (
        await c.call(
            "GetPolicyVersion", {"PolicyArn": arn, "VersionId": policy["DefaultVersionId"]}
        )
    )["PolicyVersion"]
    return await _edit_form(c, policy, document=pretty(version["Document"]))


async def _edit_form(
    c: Console,
    policy: Mapping[str, Any],
    *,
    document: str,
    error: str = "",
    findings: Mapping[str, Any] | None = None,
    status: int = 200,
) -> web.Response:
    name = policy["PolicyName"]
    return await c.page(
        "console/policy_edit.html",
        section="policies",
        policy=policy,
        name=name,
        readonly=readonly(c, name),
        document=document,
        findings=findings,
        error=error,
        status=status,
    )


async def create_version(request: web.Request) -> web.StreamResponse:
    c = await console(request)
    name = _name(request)
    arn = c.arn("policy", name)
    form = await c.form("console.policy.edit")
    document = str(form.get("document", ""))[:MAX_DOCUMENT_FIELD]
    try:
        document = text(form, "document", max_length=MAX_DOCUMENT_FIELD)
        await c.call(
            "CreatePolicyVersion",
            {"PolicyArn": arn, "PolicyDocument": document, "SetAsDefault": True},
        )
    except BrokerError as e:
        policy = (await c.call("GetPolicy", {"PolicyArn": arn}))["Policy"]
        return await _edit_form(
            c,
            policy,
            document=document,
            error=e.public_message,
            findings=_findings_for(document),
            status=e.status,
        )
    return redirect(f"/console/policies/{name}?done=edited")


async def set_default(request: web.Request) -> web.StreamResponse:
    c = await console(request)
    name = _name(request)
    form = await c.form("console.policy.default")
    try:
        version = text(form, "version", max_length=64)
        await c.call(
            "SetDefaultPolicyVersion",
            {"PolicyArn": c.arn("policy", name), "VersionId": version},
        )
    except BrokerError as e:
        return await _refused(c, name, e)
    return redirect(f"/console/policies/{name}?done=default")


async def delete_version(request: web.Request) -> web.StreamResponse:
    c = await console(request)
    name = _name(request)
    form = await c.form("console.policy.version.delete")
    try:
        version = text(form, "version", max_length=64)
        await c.call(
            "DeletePolicyVersion",
            {"PolicyArn": c.arn("policy", name), "VersionId": version},
        )
    except BrokerError as e:
        return await _refused(c, name, e)
    return redirect(f"/console/policies/{name}?done=version-deleted")


async def delete_policy(request: web.Request) -> web.StreamResponse:
    c = await console(request)
    name = _name(request)
    await c.form("console.policy.delete")
    try:
        await c.call("DeletePolicy", {"PolicyArn": c.arn("policy", name)})
    except BrokerError as e:
        return await _refused(c, name, e)
    return redirect("/console/policies?done=deleted")


ROUTES = (
    ("GET", "/console/policies", list_policies),
    ("POST", "/console/policies", create_policy),
    ("GET", "/console/policies/new", new_policy),
    ("GET", "/console/policies/{name}", show_policy),
    ("GET", "/console/policies/{name}/edit", edit_policy),
    ("POST", "/console/policies/{name}/versions", create_version),
    ("POST", "/console/policies/{name}/default", set_default),
    ("POST", "/console/policies/{name}/versions/delete", delete_version),
    ("POST", "/console/policies/{name}/delete", delete_policy),
)
