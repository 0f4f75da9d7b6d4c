"""No self-escalation: what a caller bounded by a permissions boundary may change.

``iam:<Action>`` on the target (checked by ``IamApi.authorize``) says whether a caller may call
an action at all. A permissions boundary limits what the caller's own credentials allow, but
IAM changes could still carry permissions past it: widening the boundary policy itself, lifting
a boundary, or giving more to a principal the caller can then assume or pass. These rules close
that, for every caller whose role has a permissions boundary (the account root and unbounded
callers are not restricted further):

1. **Its boundary is fixed.** A bounded caller may not change the managed policy that is its
   own boundary (``CreatePolicyVersion``, ``SetDefaultPolicyVersion``, ``DeletePolicyVersion``,
   ``DeletePolicy``), and may not remove any permissions boundary
   (``Delete{User,Role}PermissionsBoundary``) or set one other than its own
   (``Put{User,Role}PermissionsBoundary`` only with the caller's boundary policy): so it can
   neither remove nor replace its own boundary.
2. **Only principals under the same boundary.** A bounded caller may change the permissions or
   the trust of a user or role only if that target carries the same boundary policy as the
   caller (AWS's ``iam:PermissionsBoundary`` condition pattern, made a rule): attaching or
   detaching managed policies, putting or deleting inline policies, ``UpdateAssumeRolePolicy``,
   and creating a user or role (the new one must be created with the caller's boundary). For a
   group, every member must carry it. Anything the caller grants there stays within its
   boundary, since the target is bounded by the same policy.
3. **No chains.** A bounded caller may change a managed policy's document
   (``CreatePolicyVersion``, ``SetDefaultPolicyVersion``) only if every principal that policy is
   attached to carries the caller's boundary, and the policy is nobody's boundary. With 2, every
   principal whose permissions or trust a bounded caller can change is bounded by the caller's
   own boundary: no role it could assume or pass becomes more privileged than that boundary.

A caller whose boundary is a document of its own role (config roles) carries no boundary
*policy*: no target can match it, so it may change no principal's permissions (fail closed).
Refusals are ``AccessDenied`` with a reason starting ``escalation:``; ``IamApi`` audits them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from broker.errors import IamAccessDenied
from broker.service.iam_api.registry import Call
from broker.storage.base import PrincipalType, Store


@dataclass(frozen=True)
class Boundary:
    """A bounded caller's boundary: a managed policy's name, or (config roles) a document of
    the role's own (``policy`` None)."""

    role: str
    policy: str | None
    document: Mapping[str, Any] | None = None


async def caller_boundary(call: Call) -> Boundary | None:
    """The caller's permissions boundary, or None (the root, or a caller without one)."""
    cred = call.caller.credential
    if cred is None:
        return None
    if cred.is_user:  # an IAM user's key or session: the user's own boundary
        attached = await call.api.store.attached_policies("user", cred.user_id)
        return Boundary(cred.role_name, attached.boundary) if attached.boundary else None
    return await role_boundary(call.api.store, cred.role_name)


async def role_boundary(store: Store, role: str) -> Boundary | None:
    record = await store.get_role(role)
    if record is not None and record.permissions_boundary:
        return Boundary(role, None, record.permissions_boundary)
    attached = await store.attached_policies("role", role)
    if attached.boundary is not None:
        return Boundary(role, attached.boundary)
    return None


def _deny(call: Call, reason: str, message: str) -> IamAccessDenied:
    return IamAccessDenied(
        f"escalation:{reason}"[:300],
        public_message=f"{call.caller.arn} is bounded by a permissions boundary: {message}",
    )


async def _carries(store: Store, kind: PrincipalType, key: str, bound: Boundary) -> bool:
    """Whether the user (by id) or role (by name) is bounded by the caller's boundary."""
    if bound.policy is None:
        return False
    if kind == "role":
        record = await store.get_role(key)
        if record is not None and record.permissions_boundary:
            return False
    if kind == "group":
        members = await store.group_members(key)
        return all([await _carries(store, "user", m, bound) for m in members])
    return (await store.attached_policies(kind, key)).boundary == bound.policy


async def require_bounded_target(call: Call, kind: PrincipalType, key: str, label: str) -> None:
    """Rule 2: a bounded caller changes the permissions or trust of ``kind`` ``key`` (user id,
    group or role name; ``label`` is how to name it) only if the target carries the caller's
    boundary policy (a group: every member does). For ``UpdateAssumeRolePolicy``, attach,
    detach, put and delete of inline policies."""
    bound = await caller_boundary(call)
    if bound is None or await _carries(call.api.store, kind, key, bound):
        return
    what = "every member of group" if kind == "group" else kind
    raise _deny(
        call,
        f"target_not_bounded:{kind}/{label}",
        f"{what} {label} does not carry the caller's permissions boundary "
        f"({_name(call, bound)}), so the caller may not change its permissions or trust",
    )


async def require_boundary_for_new(call: Call, kind: PrincipalType, boundary: str | None) -> None:
    """Rule 2 for ``CreateRole``/``CreateUser`` (``boundary``: the ``PermissionsBoundary``
    parameter, an ARN or None) and rule 1 for ``Put{User,Role}PermissionsBoundary``: a bounded
    caller may only give the caller's own boundary policy."""
    bound = await caller_boundary(call)
    if bound is None:
        return
    given = boundary.rsplit("/", 1)[-1] if boundary else None
    if bound.policy is not None and given == bound.policy:
        return
    raise _deny(
        call,
        f"boundary_required:{kind}",
        f"the {kind} must have the caller's permissions boundary ({_name(call, bound)})",
    )


async def require_no_boundary_removal(call: Call, kind: PrincipalType, label: str) -> None:
    """Rule 1: a bounded caller removes no permissions boundary (its own or another's)."""
    bound = await caller_boundary(call)
    if bound is None:
        return
    raise _deny(
        call,
        f"boundary_removal:{kind}/{label}",
        f"it may not remove the permissions boundary of {kind} {label}",
    )


async def require_policy_change_allowed(call: Call, policy: str, *, document: bool) -> None:
    """Rules 1 and 3 for a change of managed policy ``policy``: never the caller's own
    boundary; and when its document changes (``document``), only if every principal it is
    attached to carries the caller's boundary and it is nobody's boundary."""
    bound = await caller_boundary(call)
    if bound is None:
        return
    if policy == bound.policy:
        raise _deny(
            call,
            f"own_boundary:{policy}",
            f"it may not change policy {policy}, its own permissions boundary",
        )
    if not document:
        return
    store = call.api.store
    for use in await store.policy_uses(policy):
        if use.as_boundary or not await _carries(store, use.principal_type, use.principal, bound):
            how = "the boundary of" if use.as_boundary else "attached to"
            raise _deny(
                call,
                f"policy_in_use:{policy}:{use.principal_type}/{use.principal}",
                f"policy {policy} is {how} {use.principal_type} {use.principal}, which is not "
                f"bounded by the caller's permissions boundary ({_name(call, bound)})",
            )


async def require_key_target_allowed(call: Call, user_id: str, label: str) -> None:
    """Rule 2 for access keys: a key (or re-activating one) lets its holder act as the user, so
    a bounded caller may do it for itself, or for a user that carries its boundary."""
    cred = call.caller.credential
    if cred is not None and cred.is_user and cred.user_id == user_id:
        return
    await require_bounded_target(call, "user", user_id, label)


def _name(call: Call, bound: Boundary) -> str:
    if bound.policy is not None:
        return call.arn("policy", bound.policy)
    return f"the boundary document of role {bound.role}"
