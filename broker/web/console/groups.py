"""``/console/groups``: the account's IAM groups (``ListGroups``), creating one
(``CreateGroup``), and a group's page: its members (``GetGroup``; ``AddUserToGroup`` from the
users ``ListUsers`` gives, ``RemoveUserFromGroup``), its managed policies
(``ListAttachedGroupPolicies``; ``AttachGroupPolicy`` from ``ListPolicies``,
``DetachGroupPolicy``), its inline policies (``ListGroupPolicies``/``GetGroupPolicy``;
``DeleteGroupPolicy``), its effective permissions and ``DeleteGroup`` (IAM's ``DeleteConflict``
while it has members or policies).

Every write is a POST through ``Console.form`` then ``Console.call``: the service authorizes
and audits it; a refusal or bad input re-renders the page with the service's message.

The helpers at the end (policy documents, effective-permission sources) serve ``roles`` too.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from aiohttp import web

from broker.errors import BrokerError
from broker.web.console.base import Column, Console, console, error_message, table, text
from broker.web.console.effective import Source, parse_document, rows
from broker.web.pages import redirect

SECTION = "groups"
LIST = "/console/groups"
#: above this many users the "add a member" control is a text box rather than a select
SELECT_LIMIT = 500

COLUMNS = (
    Column("name", "Name"),
    Column("created", "Created"),
    Column("arn", "ARN", sortable=False),
)

#: ``?done=`` codes and the fixed notice each shows (query text is never echoed)
NOTICES = {
    "created": "The group was created.",
    "deleted": "The group was deleted.",
    "added": "The user was added to the group.",
    "removed": "The user was removed from the group.",
    "attached": "The policy was attached.",
    "detached": "The policy was detached.",
    "inline-deleted": "The inline policy was deleted.",
}


def group_path(name: str) -> str:
    return f"{LIST}/{quote(name, safe='')}"


def notice_of(request: web.Request) -> str:
    return NOTICES.get(request.query.get("done", ""), "")


# --- the list and creating a group ------------------------------------------------------------


async def list_groups(request: web.Request) -> web.StreamResponse:
    c = await console(request)
    groups = await c.call_all("ListGroups", "Groups")
    found = [
        {
            "name": g["GroupName"],
            "created": g["CreateDate"],
            "arn": g["Arn"],
            "path": group_path(g["GroupName"]),
        }
        for g in groups
    ]
    t = table(request, found, COLUMNS, search=lambda r: r["name"], default_sort="name")
    return await c.page(
        "console/groups.html",
        section=SECTION,
        t=t,
        notice=notice_of(request),
        can_create=c.may("iam:CreateGroup"),
    )


async def new_group(request: web.Request) -> web.StreamResponse:
    c = await console(request)
    return await c.page("console/group_new.html", section=SECTION, typed={"name": ""})


async def create_group(request: web.Request) -> web.StreamResponse:
    c = await console(request)
    form = await c.form("console.groups.create")
    typed = {"name": str(form.get("name", ""))}
    try:
        name = text(form, "name", max_length=256)
        await c.call("CreateGroup", {"GroupName": name})
    except BrokerError as e:
        return await c.page(
            "console/group_new.html",
            section=SECTION,
            typed=typed,
            error=error_message(e),
            status=e.status,
        )
    return redirect(group_path(name) + "?done=created")


# --- a group's page ---------------------------------------------------------------------------


async def show_group(request: web.Request) -> web.StreamResponse:
    c = await console(request)
    return await group_page(c, _name(request), notice=notice_of(request))


async def group_page(
    c: Console, name: str, *, notice: str = "", error: str = "", status: int = 200
) -> web.StreamResponse:
    got = await c.call("GetGroup", {"GroupName": name, "MaxItems": 1000})
    group = got["Group"]
    members = [u["UserName"] for u in got.get("Users", [])]
    arn = group["Arn"]
    attached = await c.call_all(
        "ListAttachedGroupPolicies", "AttachedPolicies", {"GroupName": name}
    )
    inline_names = await c.call_all("ListGroupPolicies", "PolicyNames", {"GroupName": name})
    inline: list[dict[str, Any]] = []
    for policy in inline_names:
        doc = (await c.call("GetGroupPolicy", {"GroupName": name, "PolicyName": policy}))[
            "PolicyDocument"
        ]
        inline.append({"name": policy, "document": pretty(doc), "raw": doc})
    managed = await managed_sources(c, attached, kind="managed")
    sources = [
        *managed,
        *(Source("inline", p["name"], p["raw"], link=f"#inline-{p['name']}") for p in inline),
    ]

    users: list[str] | None = None  # None: no list to choose from (a text box instead)
    if c.may("iam:AddUserToGroup", arn) and c.may("iam:ListUsers"):
        try:
            every = [u["UserName"] for u in await c.call_all("ListUsers", "Users")]
        except BrokerError:
            every = []
        if len(every) <= SELECT_LIMIT:
            users = sorted(set(every) - set(members), key=str.casefold)
    policies = await attachable(c, arn, "iam:AttachGroupPolicy", [a["PolicyArn"] for a in attached])
    return await c.page(
        "console/group.html",
        section=SECTION,
        status=status,
        notice=notice,
        error=error,
        group=group,
        path=group_path(name),
        members=members,
        attached=[{**a, "link": policy_link(a["PolicyName"])} for a in attached],
        inline=inline,
        statements=rows(sources),
        users=users,
        policies=policies,
        can={
            "add": c.may("iam:AddUserToGroup", arn),
            "remove": c.may("iam:RemoveUserFromGroup", arn),
            "attach": c.may("iam:AttachGroupPolicy", arn),
            "detach": c.may("iam:DetachGroupPolicy", arn),
            "delete_inline": c.may("iam:DeleteGroupPolicy", arn),
            "delete": c.may("iam:DeleteGroup", arn),
        },
    )


def _name(request: web.Request) -> str:
    return request.match_info["name"]  # aiohttp has decoded it


async def _write(
    request: web.Request, audit: str, action: str, params: Mapping[str, str], done: str
) -> web.StreamResponse:
    """One POST on a group's page: the form's value ``field`` into ``params``; on failure the
    page again with the service's message."""
    c = await console(request)
    name = _name(request)
    form = await c.form(audit)
    try:
        values = {key: text(form, field, max_length=2048) for key, field in params.items()}
        await c.call(action, {"GroupName": name, **values})
    except BrokerError as e:
        return await group_page(c, name, error=error_message(e), status=e.status)
    return redirect(group_path(name) + f"?done={done}")


async def add_member(request: web.Request) -> web.StreamResponse:
    return await _write(
        request, "console.groups.add_user", "AddUserToGroup", {"UserName": "user"}, "added"
    )


async def remove_member(request: web.Request) -> web.StreamResponse:
    return await _write(
        request,
        "console.groups.remove_user",
        "RemoveUserFromGroup",
        {"UserName": "user"},
        "removed",
    )


async def attach_policy(request: web.Request) -> web.StreamResponse:
    return await _write(
        request,
        "console.groups.attach_policy",
        "AttachGroupPolicy",
        {"PolicyArn": "policy_arn"},
        "attached",
    )


async def detach_policy(request: web.Request) -> web.StreamResponse:
    return await _write(
        request,
        "console.groups.detach_policy",
        "DetachGroupPolicy",
        {"PolicyArn": "policy_arn"},
        "detached",
    )


async def delete_inline(request: web.Request) -> web.StreamResponse:
    return await _write(
        request,
        "console.groups.delete_inline_policy",
        "DeleteGroupPolicy",
        {"PolicyName": "policy_name"},
        "inline-deleted",
    )


async def delete_group(request: web.Request) -> web.StreamResponse:
    c = await console(request)
    name = _name(request)
    await c.form("console.groups.delete")
    try:
        await c.call("DeleteGroup", {"GroupName": name})
    except BrokerError as e:
        return await group_page(c, name, error=error_message(e), status=e.status)
    return redirect(LIST + "?done=deleted")


# --- shared with roles: policy documents and effective permissions ----------------------------


def pretty(document: str | Mapping[str, Any]) -> str:
    """A policy document for people: indented JSON (as given if it does not parse)."""
    if not isinstance(document, str):
        return json.dumps(document, indent=2)
    parsed = parse_document(document)  # IAM's Get*Policy may answer URL-encoded documents
    return document if parsed is None else json.dumps(parsed, indent=2)


def policy_link(name: str) -> str:
    """Where the console shows a managed policy (the policies area's page)."""
    return f"/console/policies/{quote(name, safe='')}"


async def policy_document(c: Console, arn: str) -> str | None:
    """A managed policy's default version's document (None if the caller may not read it)."""
    try:
        policy = (await c.call("GetPolicy", {"PolicyArn": arn}))["Policy"]
        version = await c.call(
            "GetPolicyVersion", {"PolicyArn": arn, "VersionId": policy["DefaultVersionId"]}
        )
    except BrokerError:
        return None
    document = version["PolicyVersion"].get("Document")
    return str(document) if document is not None else None


async def managed_sources(
    c: Console, attached: Sequence[Mapping[str, Any]], *, kind: str, via: str = ""
) -> list[Source]:
    out = []
    for a in attached:
        doc = await policy_document(c, a["PolicyArn"])
        if doc is not None:
            out.append(
                Source(kind, a["PolicyName"], doc, via=via, link=policy_link(a["PolicyName"]))
            )
    return out


async def attachable(
    c: Console, target: str, action: str, attached: Sequence[str]
) -> list[dict[str, str]] | None:
    """The managed policies the caller could attach (None: it may not attach any, or list
    them)."""
    if not (c.may(action, target) and c.may("iam:ListPolicies")):
        return None
    try:
        policies = await c.call_all("ListPolicies", "Policies")
    except BrokerError:
        return None
    return sorted(
        ({"name": p["PolicyName"], "arn": p["Arn"]} for p in policies if p["Arn"] not in attached),
        key=lambda p: p["name"].casefold(),
    )


ROUTES = (
    ("GET", LIST, list_groups),
    ("POST", LIST, create_group),
    ("GET", LIST + "/new", new_group),
    ("GET", LIST + "/{name}", show_group),
    ("POST", LIST + "/{name}/members", add_member),
    ("POST", LIST + "/{name}/members/remove", remove_member),
    ("POST", LIST + "/{name}/policies", attach_policy),
    ("POST", LIST + "/{name}/policies/detach", detach_policy),
    ("POST", LIST + "/{name}/inline/delete", delete_inline),
    ("POST", LIST + "/{name}/delete", delete_group),
)
