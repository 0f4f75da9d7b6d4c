"""``broker admin policies|groups|users|roles ...``: managed policies, groups, and the policies
attached to users, groups and roles (contract C5), on the store named by the config.

Each command opens the broker on the config's store, does one IAM operation and prints the
result (JSON with ``--json``). Changes are audited as ``iam.<Operation>`` with the operator's
login name as principal (``cli:<user>``); a refused change is audited as a failure.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from broker.config import DEFAULT_CONFIG_PATH, load_settings
from broker.errors import BrokerError, InvalidRequest

if TYPE_CHECKING:
    from broker.service.container import Broker
    from broker.service.iam import PrincipalDetail
    from broker.service.iam_api.registry import Caller
    from broker.service.offboarding import Offboarded
    from broker.service.role_admin import RoleAdmin
    from broker.storage.base import Group, ManagedPolicyRecord, RoleRecord, User

Result = tuple[Any, str]  # (JSON data, text)
Action = Callable[["Broker", argparse.Namespace, str], Awaitable[Result]]


def read_text_file(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as e:
        raise InvalidRequest(
            "unreadable_file", public_message=f"cannot read {path}: {e.strerror or e}"
        ) from None
    except UnicodeDecodeError:
        raise InvalidRequest(
            "unreadable_file", public_message=f"{path} is not UTF-8 text"
        ) from None


def _actor() -> str:
    """The account root, and which OS user on the server host acted as it."""
    try:
        return f"root/cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry (containers)
        return f"root/cli:uid-{os.getuid()}"


def _iso(t: float | None) -> str | None:
    return datetime.fromtimestamp(t, UTC).isoformat() if t else None


def _run(operation: str | None, action: Action) -> Callable[[argparse.Namespace], int]:
    """A command: open the broker, run ``action``, print. ``operation`` (the IAM name of a
    change, e.g. ``AttachUserPolicy``) is audited as a failure when the change is refused."""

    def command(args: argparse.Namespace) -> int:
        from broker.cli import out, with_broker

        actor = _actor()

        async def run(broker: Broker) -> Result:
            try:
                result = await action(broker, args, actor)
            except BrokerError as e:
                if operation is not None:
                    await broker.auditor.record(
                        f"iam.{operation}", "failure", principal=actor, reason=e.reason
                    )
                raise
            if operation is not None:  # a change: running brokers refresh within a second
                await broker.iam_api.changed()
            return result

        data, text = asyncio.run(with_broker(load_settings(args.config), run))
        out(args, data, text)
        return 0

    return command


# --- views ---------------------------------------------------------------------------------


def _policy_row(p: ManagedPolicyRecord) -> dict[str, Any]:
    return {
        "name": p.name,
        "description": p.description,
        "source": p.source,
        "created_at": _iso(p.created_at),
        "updated_at": _iso(p.updated_at),
    }


def _user_row(u: User) -> dict[str, Any]:
    return {
        "id": u.id,
        "name": u.name,
        "provider": u.provider,
        "subject": u.subject,
        "email": u.email,
        "disabled": u.disabled,
        "last_login_at": _iso(u.last_login_at),
    }


def _group_row(g: Group) -> dict[str, Any]:
    return {"name": g.name, "description": g.description, "created_at": _iso(g.created_at)}


def _principal_view(d: PrincipalDetail) -> Result:
    data: dict[str, Any] = {
        "name": d.name,
        "arn": d.arn,
        "attached_policies": list(d.attached.managed),
        "inline_policies": {k: dict(v) for k, v in d.attached.inline.items()},
    }
    if d.kind == "user":
        data["groups"] = list(d.groups)
        data["permissions_boundary"] = d.attached.boundary
    if d.kind == "group":
        data["members"] = list(d.members)
    lines = [d.arn]
    lines += [f"  attached: {n}" for n in d.attached.managed]
    lines += [f"  inline:   {n}" for n in d.attached.inline]
    if d.attached.boundary:
        lines.append(f"  boundary: {d.attached.boundary}")
    lines += [f"  group:    {g}" for g in d.groups]
    lines += [f"  member:   {m}" for m in d.members]
    return data, "\n".join(lines)


def _done(what: str) -> Result:
    return {"ok": True}, what


# --- MFA devices (clients of the IAM API service, as the root) -----------------------------


def _user_ref(ref: str) -> str:
    """A user's IAM name from its name or ARN."""
    return ref.split(":user/", 1)[1] if ":user/" in ref else ref


async def _all_pages(
    b: Broker, actor: str, action: str, member: str, params: dict[str, Any]
) -> list[Any]:
    from broker.service.iam_api import Caller

    caller = Caller(arn=b.iam_api.root().arn, actor=actor)
    items: list[Any] = []
    marker: str | None = None
    while True:
        page = await b.iam_api.call(
            caller, action, {**params, **({"Marker": marker} if marker else {})}
        )
        items += page.get(member, [])
        marker = page.get("Marker")
        if not page.get("IsTruncated") or not marker:
            return items


async def _mfa_list(b: Broker, a: argparse.Namespace, actor: str) -> Result:
    if a.user is not None:
        found = await _all_pages(
            b, actor, "ListMFADevices", "MFADevices", {"UserName": _user_ref(a.user)}
        )
        rows = [
            {"user": d["UserName"], "serial": d["SerialNumber"], "enabled": _iso(d["EnableDate"])}
            for d in found
        ]
    else:
        found = await _all_pages(
            b, actor, "ListVirtualMFADevices", "VirtualMFADevices", {"AssignmentStatus": "Any"}
        )
        rows = [
            {
                "user": d["User"]["UserName"] if "User" in d else None,
                "serial": d["SerialNumber"],
                "enabled": _iso(d.get("EnableDate")),
            }
            for d in found
        ]
    text = "\n".join(
        f"{r['serial']}  {r['user'] or '(unassigned)'}  {r['enabled'] or ''}".rstrip() for r in rows
    )
    return rows, text or "no MFA devices"


async def _mfa_deactivate(b: Broker, a: argparse.Namespace, actor: str) -> Result:
    from broker.service.iam_api import Caller

    name = _user_ref(a.user)
    caller = Caller(arn=b.iam_api.root().arn, actor=actor)
    found = await _all_pages(b, actor, "ListMFADevices", "MFADevices", {"UserName": name})
    if not found:
        raise InvalidRequest("no_mfa_device", public_message=f"{name} has no enabled MFA device")
    serials = [d["SerialNumber"] for d in found]
    for serial in serials:
        await b.iam_api.call(
            caller, "DeactivateMFADevice", {"UserName": name, "SerialNumber": serial}
        )
        if a.delete:
            await b.iam_api.call(caller, "DeleteVirtualMFADevice", {"SerialNumber": serial})
    verb = "deactivated and deleted" if a.delete else "deactivated"
    return {"user": name, "serials": serials, "deleted": bool(a.delete)}, (
        f"{verb} {', '.join(serials)} of {name}"
    )


# --- policies ------------------------------------------------------------------------------


async def _policies_list(b: Broker, a: argparse.Namespace, actor: str) -> Result:
    rows = [_policy_row(p) for p in await b.iam.list_policies()]
    text = "\n".join(f"{r['name']:<32} {r['source']:<7} {r['description']}" for r in rows)
    return rows, text or "no managed policies"


async def _policies_get(b: Broker, a: argparse.Namespace, actor: str) -> Result:
    import json

    d = await b.iam.get_policy(a.policy)
    uses = [
        {"type": u.principal_type, "principal": u.principal, "as_boundary": u.as_boundary}
        for u in d.uses
    ]
    data = {**_policy_row(d.record), "document": dict(d.record.document), "attached_to": uses}
    text = "\n".join(
        [
            f"{b.iam.arn('policy', d.record.name)} ({d.record.source})",
            json.dumps(dict(d.record.document), indent=2),
            *(
                f"  used by {u['type']} {u['principal']}"
                + (" as boundary" if u["as_boundary"] else "")
                for u in uses
            ),
        ]
    )
    return data, text


async def _policies_create(b: Broker, a: argparse.Namespace, actor: str) -> Result:
    p = await b.iam.create_policy(
        a.name, read_text_file(a.file), description=a.description, actor=actor
    )
    return _policy_row(p), f"created {b.iam.arn('policy', p.name)}"


async def _policies_update(b: Broker, a: argparse.Namespace, actor: str) -> Result:
    p = await b.iam.update_policy(a.policy, read_text_file(a.file), actor=actor)
    return _policy_row(p), f"updated {b.iam.arn('policy', p.name)}"


async def _policies_delete(b: Broker, a: argparse.Namespace, actor: str) -> Result:
    await b.iam.delete_policy(a.policy, actor=actor)
    return _done(f"deleted policy {a.policy}")


# --- groups --------------------------------------------------------------------------------


async def _groups_list(b: Broker, a: argparse.Namespace, actor: str) -> Result:
    rows = [_group_row(g) for g in await b.iam.list_groups()]
    return rows, "\n".join(f"{r['name']:<32} {r['description']}" for r in rows) or "no groups"


async def _groups_create(b: Broker, a: argparse.Namespace, actor: str) -> Result:
    g = await b.iam.create_group(a.name, description=a.description, actor=actor)
    return _group_row(g), f"created {b.iam.arn('group', g.name)}"


async def _groups_delete(b: Broker, a: argparse.Namespace, actor: str) -> Result:
    await b.iam.delete_group(a.group, actor=actor)
    return _done(f"deleted group {a.group}")


async def _groups_add_user(b: Broker, a: argparse.Namespace, actor: str) -> Result:
    await b.iam.add_user_to_group(a.group, a.user, actor=actor)
    return _done(f"added {a.user} to {a.group}")


async def _groups_remove_user(b: Broker, a: argparse.Namespace, actor: str) -> Result:
    await b.iam.remove_user_from_group(a.group, a.user, actor=actor)
    return _done(f"removed {a.user} from {a.group}")


# --- users ---------------------------------------------------------------------------------


async def _users_list(b: Broker, a: argparse.Namespace, actor: str) -> Result:
    rows = [_user_row(u) for u in await b.store.list_users()]
    text = "\n".join(f"{r['name']:<24} {r['provider']:<10} {r['id']}  {r['email']}" for r in rows)
    return rows, text or "no users"


def _root(b: Broker, actor: str) -> Caller:
    """The account root as ``broker admin`` acts: allowed everything, audited as ``actor``.
    Commands that go through the IAM API (``_run(None, ...)``: it audits and refreshes)."""
    from broker.service.iam_api.registry import Caller

    return Caller(arn=b.iam_api.root().arn, actor=actor)


def _new_password(a: argparse.Namespace) -> tuple[str, bool]:
    """(password, shown once): read from standard input, or a new one-time password."""
    if getattr(a, "password_stdin", False):
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise InvalidRequest("empty_password", public_message="no password on standard input")
        return password, False
    from broker.service.passwords import one_time_password

    return one_time_password(), True


async def _users_create(b: Broker, a: argparse.Namespace, actor: str) -> Result:
    root = _root(b, actor)
    created = await b.iam_api.call(root, "CreateUser", {"UserName": a.name})
    row: dict[str, Any] = {"user": created["User"]["UserName"], "arn": created["User"]["Arn"]}
    if not (a.password_stdin or a.one_time_password):
        return row, f"created {a.name} (no password: it cannot sign in until given one)"
    password, shown = _new_password(a)
    await b.iam_api.call(
        root,
        "CreateLoginProfile",
        {"UserName": a.name, "Password": password, "PasswordResetRequired": shown},
    )
    if shown:
        row["one_time_password"] = password
        return row, (
            f"created {a.name} with a one-time password (shown once; to be changed at the "
            f"first login):\n\n    {password}\n"
        )
    return row, f"created {a.name} with the password read from standard input"


async def _users_reset_password(b: Broker, a: argparse.Namespace, actor: str) -> Result:
    root = _root(b, actor)
    password, shown = _new_password(a)
    params = {"UserName": a.user, "Password": password, "PasswordResetRequired": shown}
    found = await b.store.find_users_by_name(a.user)
    has_profile = len(found) == 1 and found[0].password_hash is not None
    # a user without a password gets one (the API then checks that it is a local user)
    action = "UpdateLoginProfile" if has_profile else "CreateLoginProfile"
    await b.iam_api.call(root, action, params)
    done = await b.offboarding.revoke_user_sessions(a.user, actor=actor, reason="password reset")
    row: dict[str, Any] = {"user": a.user, "sessions_ended": done.sessions_ended}
    text = f"reset the password of {a.user}; ended {done.sessions_ended} session(s)"
    if shown:
        row["one_time_password"] = password
        text += (
            ". One-time password (shown once; to be changed at the next login):"
            f"\n\n    {password}\n"
        )
    return row, text


async def _users_set_boundary(b: Broker, a: argparse.Namespace, actor: str) -> Result:
    await b.iam.set_boundary("user", a.user, a.policy, actor=actor)
    return _done(f"{a.policy} is now the permissions boundary of {a.user}")


async def _users_delete_boundary(b: Broker, a: argparse.Namespace, actor: str) -> Result:
    await b.iam.set_boundary("user", a.user, None, actor=actor)
    return _done(f"{a.user} has no permissions boundary")


async def _users_disable(b: Broker, a: argparse.Namespace, actor: str) -> Result:
    done = await b.offboarding.disable_user(a.user, actor=actor, reason=a.reason)
    return _offboarded(done), (
        f"disabled {done.label} ({done.target}); ended {done.sessions_ended} session(s) and "
        "every credential derived from them"
    )


async def _users_enable(b: Broker, a: argparse.Namespace, actor: str) -> Result:
    done = await b.offboarding.enable_user(a.user, actor=actor, reason=a.reason)
    return _offboarded(done), f"enabled {done.label} ({done.target})"


async def _users_revoke_sessions(b: Broker, a: argparse.Namespace, actor: str) -> Result:
    done = await b.offboarding.revoke_user_sessions(a.user, actor=actor, reason=a.reason)
    return _offboarded(done), (
        f"ended {done.sessions_ended} session(s) of {done.label} ({done.target}) and every "
        "credential derived from them"
    )


async def _roles_revoke_sessions(b: Broker, a: argparse.Namespace, actor: str) -> Result:
    done = await b.offboarding.revoke_role_sessions(a.role, actor=actor, reason=a.reason)
    return _offboarded(done), f"ended every credential of {done.target} issued until now"


def _role_admin(b: Broker) -> RoleAdmin:
    from broker.service.role_admin import RoleAdmin

    return RoleAdmin(b.settings, b.store, b.auditor, b.offboarding, b.clock)


def _role_name(ref: str) -> str:
    text = ref.strip()
    return text.rsplit("/", 1)[-1] if text.startswith("arn:") else text


async def _roles_create(b: Broker, a: argparse.Namespace, actor: str) -> Result:
    view = await _role_admin(b).create(
        a.name,
        read_text_file(a.trust),
        actor=actor,
        description=a.description,
        max_session_duration=a.max_session_duration,
        boundary=a.boundary,
    )
    return _role_row(b, view.record), f"created {b.iam.arn('role', view.record.name)}"


async def _roles_update_trust(b: Broker, a: argparse.Namespace, actor: str) -> Result:
    role = await _role_admin(b).update(
        _role_name(a.role),
        operation="UpdateAssumeRolePolicy",
        actor=actor,
        trust=read_text_file(a.trust),
    )
    return _role_row(b, role), f"updated the trust policy of {b.iam.arn('role', role.name)}"


async def _roles_delete(b: Broker, a: argparse.Namespace, actor: str) -> Result:
    name = _role_name(a.role)
    await _role_admin(b).delete(name, actor=actor)
    return _done(f"deleted role {name} and ended its sessions")


def _role_row(b: Broker, r: RoleRecord) -> dict[str, Any]:
    return {
        "name": r.name,
        "arn": b.iam.arn("role", r.name),
        "description": r.description,
        "source": r.source,
        "policies": len(r.policies),
        "max_session_duration": r.max_session_duration,
    }


def _offboarded(done: Offboarded) -> dict[str, Any]:
    return {"target": done.target, "name": done.label, "sessions_ended": done.sessions_ended}


async def _roles_list(b: Broker, a: argparse.Namespace, actor: str) -> Result:
    rows = [_role_row(b, r) for r in await b.store.list_roles()]
    text = "\n".join(f"{r['name']:<24} {r['source']:<7} {r['description']}" for r in rows)
    return rows, text or "no roles"


# --- what users, groups and roles share -----------------------------------------------------------


def _get(kind: Any) -> Action:
    async def action(b: Broker, a: argparse.Namespace, actor: str) -> Result:
        return _principal_view(await b.iam.describe(kind, getattr(a, kind)))

    return action


def _attach(kind: Any) -> Action:
    async def action(b: Broker, a: argparse.Namespace, actor: str) -> Result:
        await b.iam.attach_policy(kind, getattr(a, kind), a.policy, actor=actor)
        return _done(f"attached {a.policy} to {kind} {getattr(a, kind)}")

    return action


def _detach(kind: Any) -> Action:
    async def action(b: Broker, a: argparse.Namespace, actor: str) -> Result:
        await b.iam.detach_policy(kind, getattr(a, kind), a.policy, actor=actor)
        return _done(f"detached {a.policy} from {kind} {getattr(a, kind)}")

    return action


def _put_inline(kind: Any) -> Action:
    async def action(b: Broker, a: argparse.Namespace, actor: str) -> Result:
        doc = read_text_file(a.file)
        await b.iam.put_inline_policy(kind, getattr(a, kind), a.name, doc, actor=actor)
        return _done(f"put inline policy {a.name} on {kind} {getattr(a, kind)}")

    return action


def _delete_inline(kind: Any) -> Action:
    async def action(b: Broker, a: argparse.Namespace, actor: str) -> Result:
        await b.iam.delete_inline_policy(kind, getattr(a, kind), a.name, actor=actor)
        return _done(f"deleted inline policy {a.name} of {kind} {getattr(a, kind)}")

    return action


# --- parsers -------------------------------------------------------------------------------


def common_args(p: argparse.ArgumentParser, *, json: bool = True) -> argparse.ArgumentParser:
    """``--config`` and ``--json``, which every command that prints a result takes."""
    p.add_argument(
        "--config",
        default=os.environ.get("BROKER_CONFIG", str(DEFAULT_CONFIG_PATH)),
        help="path of the TOML config file (default: $BROKER_CONFIG or config/broker.toml)",
    )
    if json:
        p.add_argument("--json", action="store_true", help="print the result as JSON")
    return p


def _verb(
    sub: Any, name: str, help: str, fn: Callable[[argparse.Namespace], int], *args: str
) -> argparse.ArgumentParser:
    """A verb taking positional ``args`` (``NAME:help`` each)."""
    p: argparse.ArgumentParser = common_args(
        sub.add_parser(name, help=help, description=help + ".")
    )
    for spec in args:
        dest, _, text = spec.partition(":")
        p.add_argument(dest, metavar=dest.upper(), help=text)
    p.set_defaults(fn=fn)
    return p


USER = "user:a user id, name, or ARN (arn:broker:iam::<account>:user/<name>)"
GROUP = "group:a group name or ARN"
POLICY = "policy:a managed policy name or ARN"
ROLE = "role:a role name or ARN (roles from the config file are read-only)"


def _password_source(p: argparse.ArgumentParser) -> None:
    source = p.add_mutually_exclusive_group()
    source.add_argument(
        "--one-time-password",
        action="store_true",
        help="generate a one-time password, printed once, to be changed at the first login",
    )
    source.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )


def add_principal_verbs(sub: Any, kind: str, who: str, op: str) -> None:
    """get / attach-policy / detach-policy / put-policy / delete-policy for users, groups or
    roles."""
    _verb(sub, "get", f"show a {kind}'s policies", _run(None, _get(kind)), who)
    _verb(
        sub,
        "attach-policy",
        f"attach a managed policy to a {kind}",
        _run(f"Attach{op}Policy", _attach(kind)),
        who,
        POLICY,
    )
    _verb(
        sub,
        "detach-policy",
        f"detach a managed policy from a {kind}",
        _run(f"Detach{op}Policy", _detach(kind)),
        who,
        POLICY,
    )
    _verb(
        sub,
        "put-policy",
        f"create or replace an inline policy of a {kind}",
        _run(f"Put{op}Policy", _put_inline(kind)),
        who,
        "name:the inline policy's name",
        "file:a JSON policy document",
    )
    _verb(
        sub,
        "delete-policy",
        f"delete an inline policy of a {kind}",
        _run(f"Delete{op}Policy", _delete_inline(kind)),
        who,
        "name:the inline policy's name",
    )


def _offboarding_verbs(sub: Any, name: str, help: str, action: Action, who: str) -> None:
    """Audited by the offboarding service itself (``user.disable`` ...), failures included."""
    p = _verb(sub, name, help, _run(None, action), who)
    p.add_argument("--reason", default="", help="a note for the audit log")


def add_admin_commands(admin: Any) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    """Register ``groups`` and ``users``, and the managed-policy verbs of ``policies``; returns
    the ``policies`` verbs so that the caller adds ``validate``."""
    policies = admin.add_parser("policies", help="managed policies").add_subparsers(
        dest="policies_verb", required=True, metavar="VERB"
    )
    _verb(policies, "list", "list managed policies", _run(None, _policies_list))
    _verb(
        policies,
        "get",
        "show a managed policy and where it is attached",
        _run(None, _policies_get),
        POLICY,
    )
    p = _verb(
        policies,
        "create",
        "create a managed policy from a JSON file (validated first)",
        _run("CreatePolicy", _policies_create),
        "name:the policy's name",
        "file:a JSON policy document",
    )
    p.add_argument("--description", default="")
    _verb(
        policies,
        "update",
        "replace a managed policy's document",
        _run("CreatePolicyVersion", _policies_update),
        POLICY,
        "file:a JSON policy document",
    )
    _verb(
        policies,
        "delete",
        "delete a managed policy (refused while it is attached)",
        _run("DeletePolicy", _policies_delete),
        POLICY,
    )

    groups = admin.add_parser("groups", help="groups of users").add_subparsers(
        dest="groups_verb", required=True, metavar="VERB"
    )
    _verb(groups, "list", "list groups", _run(None, _groups_list))
    p = _verb(
        groups, "create", "create a group", _run("CreateGroup", _groups_create), "name:its name"
    )
    p.add_argument("--description", default="")
    _verb(
        groups,
        "delete",
        "delete an empty group (no members, no policies)",
        _run("DeleteGroup", _groups_delete),
        GROUP,
    )
    _verb(
        groups,
        "add-user",
        "add a user to a group",
        _run("AddUserToGroup", _groups_add_user),
        GROUP,
        USER,
    )
    _verb(
        groups,
        "remove-user",
        "remove a user from a group",
        _run("RemoveUserFromGroup", _groups_remove_user),
        GROUP,
        USER,
    )
    add_principal_verbs(groups, "group", GROUP, "Group")

    users = admin.add_parser("users", help="users and their policies").add_subparsers(
        dest="users_verb", required=True, metavar="VERB"
    )
    _verb(users, "list", "list users", _run(None, _users_list))
    p = _verb(
        users,
        "create",
        "create a local user (with a password: --one-time-password or --password-stdin)",
        _run(None, _users_create),
        "name:the user's name (its login name)",
    )
    _password_source(p)
    p = _verb(
        users,
        "reset-password",
        "give a local user a new password (by default a one-time password, printed once, to "
        "be changed at the next login) and end its sessions",
        _run(None, _users_reset_password),
        USER,
    )
    p.add_argument(
        "--password-stdin", action="store_true", help="read the new password from standard input"
    )
    add_principal_verbs(users, "user", USER, "User")
    _verb(
        users,
        "set-boundary",
        "make a managed policy the user's permissions boundary",
        _run("PutUserPermissionsBoundary", _users_set_boundary),
        USER,
        POLICY,
    )
    _verb(
        users,
        "delete-boundary",
        "remove the user's permissions boundary",
        _run("DeleteUserPermissionsBoundary", _users_delete_boundary),
        USER,
    )
    _offboarding_verbs(
        users,
        "disable",
        "refuse the user's logins and end every session and "
        "credential it holds (visible on every instance within 2 s)",
        _users_disable,
        USER,
    )
    _offboarding_verbs(users, "enable", "let a disabled user sign in again", _users_enable, USER)
    _offboarding_verbs(
        users,
        "revoke-sessions",
        "end every session and credential the user holds now (it may sign in again)",
        _users_revoke_sessions,
        USER,
    )
    roles = admin.add_parser("roles", help="roles and their policies").add_subparsers(
        dest="roles_verb", required=True, metavar="VERB"
    )
    _verb(roles, "list", "list roles", _run(None, _roles_list))
    p = _verb(
        roles,
        "create",
        "create a role from a trust policy JSON file (it is assumable at once; attach its "
        "policies with attach-policy / put-policy)",
        _run("CreateRole", _roles_create),
        "name:its name (1-64 of letters, digits and _+=,.@-)",
        "trust:a JSON trust policy (who may assume the role)",
    )
    p.add_argument("--description", default="")
    p.add_argument("--max-session-duration", type=int, default=3600, help="seconds, 3600-43200")
    p.add_argument("--boundary", default=None, help="a managed policy ARN as boundary")
    _verb(
        roles,
        "update-trust",
        "replace a role's trust policy",
        _run("UpdateAssumeRolePolicy", _roles_update_trust),
        ROLE,
        "trust:a JSON trust policy",
    )
    _verb(
        roles,
        "delete",
        "delete a role and end its sessions (refused while policies are attached)",
        _run("DeleteRole", _roles_delete),
        ROLE,
    )
    _offboarding_verbs(
        roles,
        "revoke-sessions",
        "end every session and credential of the role "
        "issued until now: browser sessions, bearer tokens, STS credentials, token-exchange "
        "results",
        _roles_revoke_sessions,
        ROLE,
    )
    add_principal_verbs(roles, "role", ROLE, "Role")
    mfa = admin.add_parser("mfa", help="users' MFA devices").add_subparsers(
        dest="mfa_verb", required=True, metavar="VERB"
    )
    p = _verb(mfa, "list", "list MFA devices (of one user, or all)", _run(None, _mfa_list))
    p.add_argument("user", metavar="USER", nargs="?", default=None, help="a user name or ARN")
    p = _verb(
        mfa,
        "deactivate",
        "deactivate the user's MFA device (a lost phone): its sign-in no longer asks for a "
        "code until a new device is enrolled",
        _run(None, _mfa_deactivate),
        "user:a user name or ARN",
    )
    p.add_argument("--delete", action="store_true", help="delete the device too")
    return policies  # type: ignore[no-any-return]
