"""``/console/users`` and ``/console/access-keys``: IAM users, everything attached to them, their
access keys and their live sessions.

Every read and write is an IAM action run with the signed-in session's own policies
(:meth:`Console.call`), except what IAM has no action for, authorized under ``broker:`` on the
user's ARN (:meth:`Console.authorize`) and done by the offboarding service the CLI uses:

* ``broker:DisableUser`` / ``broker:EnableUser``: ``broker admin users disable`` / ``enable``
  (disabling also ends every credential the user holds);
* ``broker:ListSessions``: the user's live browser sessions (``Store.list_user_sessions``);
* ``broker:RevokeSession``: end one of them, or all (``OffboardingService.end_session`` /
  ``revoke_user_sessions``: a revocation every instance applies within its poll).

A new access key's secret is on the page that answers the ``CreateAccessKey`` POST and nowhere
else (pages are ``no-store``); reloading that page resubmits a consumed form (409).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

from aiohttp import web

from broker.errors import BrokerError, InvalidRequest, NotFound, RevocationStateStale
from broker.storage.base import Session, User
from broker.web.console.base import Column, Console, console, table, text
from broker.web.console.effective import Source, parse_document, rows
from broker.web.pages import redirect

T = TypeVar("T")

#: IAM's ``userNameType``: ``[\w+=,.@-]+``, 1 to 64 characters (ASCII ``\w``)
USER_NAME = re.compile(r"[\w+=,.@-]+", re.ASCII)
USER_NAME_MAX = 64
PASSWORD_MAX = 128
SESSION_HANDLE = 32  # hex digits of a session id's digest the forms name it by
SESSION_PREFIX = 8  # characters of a session id shown
MAX_SESSIONS = 200

USER_COLUMNS = (
    Column("name", "Name"),
    Column("created", "Created"),
    Column("password_used", "Password last used"),
    Column("status", "Status"),
)
KEY_COLUMNS = (
    Column("user", "User"),
    Column("key", "Access key ID"),
    Column("status", "Status"),
    Column("created", "Created"),
    Column("last_used", "Last used"),
)

#: ``?done=`` codes of the user page and what they say (query text is never echoed)
DONE = {
    "created": "User created.",
    "group-added": "Added to the group.",
    "group-removed": "Removed from the group.",
    "attached": "Policy attached.",
    "detached": "Policy detached.",
    "key-active": "Access key activated.",
    "key-inactive": "Access key deactivated.",
    "key-deleted": "Access key deleted.",
    "disabled": "User disabled: it cannot sign in, and every session it had has ended.",
    "enabled": "User enabled: it can sign in again.",
    "session-ended": "Session ended.",
    "sessions-ended": "Every session of this user has ended.",
}
LIST_DONE = {"deleted": "User deleted."}


def user_path(name: str) -> str:
    return "/console/users/" + quote(name, safe="")


def _name(request: web.Request) -> str:
    return request.match_info["name"]


def check_user_name(name: str) -> None:
    """IAM's rule for a user name, said plainly (the IAM service checks again)."""
    if not name:
        raise InvalidRequest("user_name_required", public_message="Enter a user name.")
    if len(name) > USER_NAME_MAX:
        raise InvalidRequest(
            "user_name_too_long",
            public_message=f"A user name has at most {USER_NAME_MAX} characters "
            f"(this one has {len(name)}).",
        )
    if not USER_NAME.fullmatch(name):
        raise InvalidRequest(
            "user_name_invalid",
            public_message="A user name may contain only letters, digits and + = , . @ _ - "
            "(no spaces).",
        )


async def _store_users(c: Console) -> dict[str, User]:
    """The broker's user records by name (the disabled flag IAM's ``User`` does not carry);
    read once the caller's ``ListUsers``/``GetUser`` was allowed."""
    return {u.name: u for u in await c.broker.store.list_users()}


# --- the list --------------------------------------------------------------------------------


async def list_users(request: web.Request) -> web.StreamResponse:
    c = await console(request)
    users = await c.call_all("ListUsers", "Users")
    records = await _store_users(c)
    items = [
        {
            "name": u["UserName"],
            "created": u.get("CreateDate"),
            "password_used": u.get("PasswordLastUsed"),
            "status": "disabled" if _disabled(records, u["UserName"]) else "active",
            "href": user_path(u["UserName"]),
        }
        for u in users
    ]
    t = table(request, items, USER_COLUMNS, search=lambda r: str(r["name"]), default_sort="name")
    return await c.page(
        "console/users.html",
        section="users",
        t=t,
        any_users=bool(items),
        notice=LIST_DONE.get(request.query.get("done", ""), ""),
        can_create=c.may("iam:CreateUser", c.arn("user", "*")),
    )


def _disabled(records: Mapping[str, User], name: str) -> bool:
    record = records.get(name)
    return record is not None and record.disabled


# --- creating a user -------------------------------------------------------------------------


async def new_user(request: web.Request) -> web.StreamResponse:
    c = await console(request)
    return await c.page("console/user_new.html", section="users", typed={"name": ""})


async def create_user(request: web.Request) -> web.StreamResponse:
    c = await console(request)
    form = await c.form("console.users.create")
    typed = {"name": str(form.get("name", ""))[:256]}
    try:
        name = text(form, "name", max_length=256)
        typed["name"] = name
        password = text(form, "password", max_length=PASSWORD_MAX)
        check_user_name(name)
        await c.call("CreateUser", {"UserName": name})
    except BrokerError as e:
        return await c.page(
            "console/user_new.html",
            section="users",
            typed=typed,
            error=e.public_message,
            status=e.status,
        )
    if password:
        try:
            await c.call(
                "CreateLoginProfile",
                {"UserName": name, "Password": password, "PasswordResetRequired": True},
            )
        except BrokerError as e:
            # No half-made user: the one just created goes again.
            _, undo_error = await _attempt(c.call("DeleteUser", {"UserName": name}))
            after = (
                " Nothing was created."
                if not undo_error
                else f" The user {name} was created without a password."
            )
            return await c.page(
                "console/user_new.html",
                section="users",
                typed=typed,
                error=e.public_message + after,
                status=e.status,
            )
    return redirect(user_path(name) + "?done=created")


# --- one user --------------------------------------------------------------------------------


async def _attempt(work: Awaitable[T]) -> tuple[T | None, str]:
    """``work``'s result, or the message of why it failed (a section the caller may not read
    says so instead of breaking the page)."""
    try:
        return await work, ""
    except BrokerError as e:
        return None, e.public_message


@dataclass(frozen=True)
class LiveSession:
    handle: str
    prefix: str
    role: str
    provider: str
    started: float
    last_seen: float
    ends: float


def session_handle(session_id: str) -> str:
    """How the page's forms name a session (its id stays on the server)."""
    return hashlib.sha256(session_id.encode()).hexdigest()[:SESSION_HANDLE]


def _live(s: Session) -> LiveSession:
    ends = s.expires_at
    if s.idle_timeout > 0:
        ends = min(ends, max(s.last_seen_at, s.created_at) + s.idle_timeout)
    return LiveSession(
        handle=session_handle(s.id),
        prefix=s.id[:SESSION_PREFIX],
        role=s.role_arn.rsplit("/", 1)[-1],
        provider=s.provider,
        started=s.created_at,
        last_seen=max(s.last_seen_at, s.created_at),
        ends=ends,
    )


def pretty(document: Any) -> str:
    """A policy document for people: indented JSON (IAM answers documents URL-encoded)."""
    if isinstance(document, str):
        parsed = parse_document(document)
        return document if parsed is None else json.dumps(parsed, indent=2)
    return json.dumps(document, indent=2)


async def _policy_document(c: Console, arn: str) -> Any:
    policy = (await c.call("GetPolicy", {"PolicyArn": arn}))["Policy"]
    version = await c.call(
        "GetPolicyVersion", {"PolicyArn": arn, "VersionId": policy["DefaultVersionId"]}
    )
    return version["PolicyVersion"].get("Document", "")


def _policy_link(arn: str) -> str:
    return "/console/policies/" + quote(arn.rsplit("/", 1)[-1], safe="")


async def _effective(
    c: Console,
    attached: Sequence[Mapping[str, Any]],
    inline: Sequence[tuple[str, Any]],
    groups: Sequence[Mapping[str, Any]],
    boundary: str,
) -> list[Source]:
    sources: list[Source] = []
    for p in attached:
        doc = await _policy_document(c, p["PolicyArn"])
        sources.append(Source("managed", p["PolicyName"], doc, link=_policy_link(p["PolicyArn"])))
    for pname, doc in inline:
        sources.append(Source("inline", pname, doc))
    for g in groups:
        gname = g["GroupName"]
        glink = "/console/groups/" + quote(gname, safe="")
        for p in await c.call_all(
            "ListAttachedGroupPolicies", "AttachedPolicies", {"GroupName": gname}
        ):
            doc = await _policy_document(c, p["PolicyArn"])
            sources.append(
                Source(
                    "group managed",
                    p["PolicyName"],
                    doc,
                    via=gname,
                    link=_policy_link(p["PolicyArn"]),
                )
            )
        for pname in await c.call_all("ListGroupPolicies", "PolicyNames", {"GroupName": gname}):
            got = await c.call("GetGroupPolicy", {"GroupName": gname, "PolicyName": pname})
            sources.append(
                Source("group inline", pname, got["PolicyDocument"], via=gname, link=glink)
            )
    if boundary:
        doc = await _policy_document(c, boundary)
        sources.append(
            Source("boundary", boundary.rsplit("/", 1)[-1], doc, link=_policy_link(boundary))
        )
    return sources


async def _sessions(c: Console, user: User, arn: str) -> list[Session]:
    """The user's live sessions, less those a user or role revocation ended without marking
    their rows (``broker admin roles revoke-sessions``, ``AWSRevokeOlderSessions``)."""
    await c.authorize("broker:ListSessions", arn)
    found = await c.broker.store.list_user_sessions(
        user.id, now=c.broker.clock.now(), limit=MAX_SESSIONS
    )
    return [s for s in found if not _revoked(c, s)]


def _revoked(c: Console, s: Session) -> bool:
    try:
        return c.broker.revocations.is_revoked(
            session_id=s.id, user_id=s.user_id, role_arn=s.role_arn, issued_at=s.created_at
        )
    except RevocationStateStale:  # unsure: list it (ending it again does no harm)
        return False


async def _record(c: Console, name: str) -> User:
    found = await c.broker.store.find_users_by_name(name)
    if len(found) != 1:
        raise NotFound(
            f"no_such_user:{name}", public_message=f"The user with name {name} cannot be found."
        )
    return found[0]


async def _detail(
    c: Console,
    name: str,
    *,
    notice: str = "",
    error: str = "",
    status: int = 200,
    created_key: Mapping[str, Any] | None = None,
) -> web.Response:
    """The user page (also the answer of a failed action on it, with ``error``)."""
    user = (await c.call("GetUser", {"UserName": name}))["User"]
    arn = user["Arn"]
    record = await _record(c, name)
    q = {"UserName": name}
    groups, groups_error = await _attempt(c.call_all("ListGroupsForUser", "Groups", q))
    attached, attached_error = await _attempt(
        c.call_all("ListAttachedUserPolicies", "AttachedPolicies", q)
    )
    inline: list[tuple[str, Any]] = []
    names, inline_error = await _attempt(c.call_all("ListUserPolicies", "PolicyNames", q))
    for pname in names or []:
        got, inline_error = await _attempt(
            c.call("GetUserPolicy", {"UserName": name, "PolicyName": pname})
        )
        if got is None:
            break
        inline.append((pname, got["PolicyDocument"]))
    boundary = str(user.get("PermissionsBoundary", {}).get("PermissionsBoundaryArn", ""))
    effective: list[Any] | None = None
    effective_error = groups_error or attached_error or inline_error
    if not effective_error:
        sources, effective_error = await _attempt(
            _effective(c, attached or [], inline, groups or [], boundary)
        )
        effective = rows(sources) if sources is not None else None
    mfa, mfa_error = await _attempt(c.call_all("ListMFADevices", "MFADevices", q))
    keys, keys_error = await _attempt(c.call_all("ListAccessKeys", "AccessKeyMetadata", q))
    key_rows = []
    for k in keys or []:
        used, _ = await _attempt(c.call("GetAccessKeyLastUsed", {"AccessKeyId": k["AccessKeyId"]}))
        last = (used or {}).get("AccessKeyLastUsed", {})
        key_rows.append(
            {**k, "LastUsedDate": last.get("LastUsedDate"), "Service": last.get("ServiceName", "")}
        )
    # what may be chosen to add: groups it is not in, policies not attached
    all_groups: list[Any] = []
    all_policies: list[Any] = []
    if c.may("iam:AddUserToGroup", arn) and groups is not None:
        listed, _ = await _attempt(c.call_all("ListGroups", "Groups"))
        member = {g["GroupName"] for g in groups}
        all_groups = sorted(
            (g["GroupName"] for g in listed or [] if g["GroupName"] not in member), key=str.casefold
        )
    if c.may("iam:AttachUserPolicy", arn) and attached is not None:
        listed, _ = await _attempt(c.call_all("ListPolicies", "Policies"))
        on = {p["PolicyArn"] for p in attached}
        all_policies = sorted(
            ((p["Arn"], p["PolicyName"]) for p in listed or [] if p["Arn"] not in on),
            key=lambda p: p[1].casefold(),
        )
    sessions: list[LiveSession] | None = None
    sessions_error = ""
    if c.may("broker:ListSessions", arn):
        found, sessions_error = await _attempt(_sessions(c, record, arn))
        sessions = [_live(s) for s in found] if found is not None else None
    else:
        sessions_error = "Your role may not see this user's sessions (broker:ListSessions)."
    path = user_path(name)
    can = {
        "group_add": c.may("iam:AddUserToGroup", arn),
        "group_remove": c.may("iam:RemoveUserFromGroup", arn),
        "attach": c.may("iam:AttachUserPolicy", arn),
        "detach": c.may("iam:DetachUserPolicy", arn),
        "key_create": c.may("iam:CreateAccessKey", arn),
        "key_update": c.may("iam:UpdateAccessKey", arn),
        "key_delete": c.may("iam:DeleteAccessKey", arn),
        "disable": c.may("broker:DisableUser", arn),
        "enable": c.may("broker:EnableUser", arn),
        "end_session": c.may("broker:RevokeSession", arn),
        "delete": c.may("iam:DeleteUser", arn),
    }
    return await c.page(
        "console/user.html",
        section="users",
        status=status,
        notice=notice,
        error=error,
        user=user,
        name=name,
        path=path,
        disabled=record.disabled,
        tags=user.get("Tags", []),
        groups=groups,
        groups_error=groups_error,
        attached=attached,
        attached_error=attached_error,
        inline_docs=[(pname, pretty(doc)) for pname, doc in inline],
        inline_error=inline_error,
        boundary=boundary,
        effective=effective,
        effective_error=effective_error,
        mfa=mfa,
        mfa_error=mfa_error,
        keys=key_rows if keys is not None else None,
        keys_error=keys_error,
        all_groups=all_groups,
        all_policies=all_policies,
        sessions=sessions,
        sessions_error=sessions_error,
        can=can,
        created_key=created_key,
    )


async def user_page(request: web.Request) -> web.StreamResponse:
    c = await console(request)
    return await _detail(c, _name(request), notice=DONE.get(request.query.get("done", ""), ""))


# --- actions on one user ---------------------------------------------------------------------


Work = Callable[[Console, str, Mapping[str, object]], Awaitable[str]]


def _action(audit: str, work: Work) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """A POST on a user's page: the form checked, ``work`` done (its answer is the ``done``
    code), then back to the page; a failure re-renders the page with the service's message."""

    async def handler(request: web.Request) -> web.StreamResponse:
        c = await console(request)
        name = _name(request)
        form = await c.form(audit)
        try:
            done = await work(c, name, form)
        except BrokerError as e:
            return await _detail(c, name, error=e.public_message, status=e.status)
        if done == "deleted":
            return redirect("/console/users?done=deleted")
        return redirect(user_path(name) + "?done=" + done)

    return handler


async def _add_to_group(c: Console, name: str, form: Mapping[str, object]) -> str:
    group = text(form, "group", max_length=128)
    if not group:
        raise InvalidRequest("group_required", public_message="Choose a group.")
    await c.call("AddUserToGroup", {"UserName": name, "GroupName": group})
    return "group-added"


async def _remove_from_group(c: Console, name: str, form: Mapping[str, object]) -> str:
    group = text(form, "group", max_length=128)
    await c.call("RemoveUserFromGroup", {"UserName": name, "GroupName": group})
    return "group-removed"


async def _attach(c: Console, name: str, form: Mapping[str, object]) -> str:
    arn = text(form, "policy", max_length=2048)
    if not arn:
        raise InvalidRequest("policy_required", public_message="Choose a policy.")
    await c.call("AttachUserPolicy", {"UserName": name, "PolicyArn": arn})
    return "attached"


async def _detach(c: Console, name: str, form: Mapping[str, object]) -> str:
    arn = text(form, "policy", max_length=2048)
    await c.call("DetachUserPolicy", {"UserName": name, "PolicyArn": arn})
    return "detached"


async def _update_key(c: Console, name: str, form: Mapping[str, object]) -> str:
    key = text(form, "key", max_length=128)
    status = text(form, "status", max_length=16)
    if status not in ("Active", "Inactive"):
        raise InvalidRequest("bad_status", public_message="Status: Active or Inactive.")
    await c.call("UpdateAccessKey", {"UserName": name, "AccessKeyId": key, "Status": status})
    return "key-active" if status == "Active" else "key-inactive"


async def _delete_key(c: Console, name: str, form: Mapping[str, object]) -> str:
    key = text(form, "key", max_length=128)
    await c.call("DeleteAccessKey", {"UserName": name, "AccessKeyId": key})
    return "key-deleted"


async def _disable(c: Console, name: str, form: Mapping[str, object]) -> str:
    await c.authorize("broker:DisableUser", c.arn("user", name))
    user = await _record(c, name)
    await c.broker.offboarding.disable_user(user.id, actor=c.caller.actor, reason="console")
    return "disabled"


async def _enable(c: Console, name: str, form: Mapping[str, object]) -> str:
    await c.authorize("broker:EnableUser", c.arn("user", name))
    user = await _record(c, name)
    await c.broker.offboarding.enable_user(user.id, actor=c.caller.actor, reason="console")
    return "enabled"


async def _end_session(c: Console, name: str, form: Mapping[str, object]) -> str:
    handle = text(form, "session", max_length=SESSION_HANDLE)
    await c.authorize("broker:RevokeSession", c.arn("user", name))
    user = await _record(c, name)
    live = await c.broker.store.list_user_sessions(
        user.id, now=c.broker.clock.now(), limit=MAX_SESSIONS
    )
    match = [s for s in live if session_handle(s.id) == handle]
    if len(match) != 1:
        raise NotFound("no_such_session", public_message="That session has ended already.")
    await c.broker.offboarding.end_session(
        user.id, match[0].id, actor=c.caller.actor, reason="ended in the console"
    )
    return "session-ended"


async def _end_all_sessions(c: Console, name: str, form: Mapping[str, object]) -> str:
    await c.authorize("broker:RevokeSession", c.arn("user", name))
    user = await _record(c, name)
    await c.broker.offboarding.revoke_user_sessions(
        user.id, actor=c.caller.actor, reason="ended in the console"
    )
    return "sessions-ended"


async def _delete_user(c: Console, name: str, form: Mapping[str, object]) -> str:
    await c.call("DeleteUser", {"UserName": name})
    return "deleted"


async def create_key(request: web.Request) -> web.StreamResponse:
    """``CreateAccessKey``: the answer is the one page that ever shows the secret."""
    c = await console(request)
    name = _name(request)
    await c.form("console.users.create_access_key")
    try:
        created = (await c.call("CreateAccessKey", {"UserName": name}))["AccessKey"]
    except BrokerError as e:
        return await _detail(c, name, error=e.public_message, status=e.status)
    return await c.page(
        "console/user_key_created.html",
        section="users",
        name=name,
        path=user_path(name),
        key=created,
    )


# --- every access key --------------------------------------------------------------------------


async def access_keys(request: web.Request) -> web.StreamResponse:
    """Every key the caller may list, from one read of the store after one decision: the
    caller must be allowed ``iam:ListUsers`` (the page names users); each user's keys are then
    shown if ``iam:ListAccessKeys`` is allowed on that user, and their last use if
    ``iam:GetAccessKeyLastUsed`` is, both decided in memory. The users whose keys are hidden
    are counted (over every user, so the count tells nothing about who has keys) and that
    partial refusal is audited once for the page."""
    c = await console(request)
    await c.authorize_iam("ListUsers", "*")
    may_list = c.decider("iam:ListAccessKeys")
    may_see_use = c.decider("iam:GetAccessKeyLastUsed")
    users = await c.broker.store.list_users()
    listable: dict[str, bool] = {}
    seen_use: dict[str, bool] = {}
    for u in users:
        arn = c.arn("user", u.name)
        listable[u.name] = may_list(arn)
        seen_use[u.name] = may_see_use(arn)
    problems = sum(not ok for ok in listable.values())
    items: list[dict[str, Any]] = [
        {
            "user": k.user_name,
            "key": k.access_key_id,
            "status": k.status,
            "created": k.created_at,
            "last_used": k.last_used_at if seen_use.get(k.user_name) else None,
            "last_used_hidden": not seen_use.get(k.user_name),
            "href": user_path(k.user_name),
        }
        for k in await c.broker.access_keys.every_key()
        if listable.get(k.user_name)
    ]
    if problems:
        await c.broker.auditor.record(
            "iam.ListAccessKeys",
            "failure",
            req=c.req,
            principal=c.caller.actor,
            reason="not_authorized:some_users",
            details={"console": "/console/access-keys", "users_hidden": problems},
        )
    t = table(
        request,
        items,
        KEY_COLUMNS,
        search=lambda r: f"{r['user']} {r['key']} {r['status']}",
        default_sort="user",
    )
    return await c.page(
        "console/access_keys.html",
        section="access-keys",
        t=t,
        any_keys=bool(items),
        problems=problems,
    )


ROUTES = (
    ("GET", "/console/users", list_users),
    ("POST", "/console/users", create_user),
    ("GET", "/console/users/new", new_user),
    ("GET", "/console/users/{name}", user_page),
    (
        "POST",
        "/console/users/{name}/groups/add",
        _action("console.users.add_to_group", _add_to_group),
    ),
    (
        "POST",
        "/console/users/{name}/groups/remove",
        _action("console.users.remove_from_group", _remove_from_group),
    ),
    (
        "POST",
        "/console/users/{name}/policies/attach",
        _action("console.users.attach_policy", _attach),
    ),
    (
        "POST",
        "/console/users/{name}/policies/detach",
        _action("console.users.detach_policy", _detach),
    ),
    ("POST", "/console/users/{name}/access-keys", create_key),
    (
        "POST",
        "/console/users/{name}/access-keys/update",
        _action("console.users.update_access_key", _update_key),
    ),
    (
        "POST",
        "/console/users/{name}/access-keys/delete",
        _action("console.users.delete_access_key", _delete_key),
    ),
    ("POST", "/console/users/{name}/disable", _action("console.users.disable", _disable)),
    ("POST", "/console/users/{name}/enable", _action("console.users.enable", _enable)),
    (
        "POST",
        "/console/users/{name}/sessions/end",
        _action("console.users.end_session", _end_session),
    ),
    (
        "POST",
        "/console/users/{name}/sessions/end-all",
        _action("console.users.end_all_sessions", _end_all_sessions),
    ),
    ("POST", "/console/users/{name}/delete", _action("console.users.delete", _delete_user)),
    ("GET", "/console/access-keys", access_keys),
)
