"""Account-wide IAM reads: ``GetAccountSummary`` (entity counts and quotas) and
``GetAccountAuthorizationDetails`` (every principal and policy with what is attached).

``SummaryMap`` holds only AWS's keys, and only those the broker has a meaning for: counts of
what the store holds, and quotas. A quota is the broker's own limit where it enforces one
(policy sizes: 6,144 characters managed, 2,048 / 5,120 / 10,240 inline for users / groups /
roles; 5 versions per policy; 10 attached managed policies), else AWS's default quota, which
the broker does not enforce (docs/iam-api.md). Keys of things the broker does not have
(server certificates, signing certificates, access keys, MFA devices, instance profiles) are
left out.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from broker.service.iam import INLINE_DOCUMENT_CHARS, MAX_DOCUMENT_CHARS, MAX_POLICY_VERSIONS
from broker.service.iam_api.api import page_bounds
from broker.service.iam_api.attachments import MAX_ATTACHED
from broker.service.iam_api.groups import group_shape
from broker.service.iam_api.policies import policy_shape, version_shape
from broker.service.iam_api.registry import Action, Call, Result, anything
from broker.service.iam_api.roles import role_shape
from broker.service.iam_api.tags import tag_list
from broker.service.iam_api.users import user_shape
from broker.service.role_admin import RoleView
from broker.storage.base import AttachedPolicies, PolicyUseCount, PolicyVersion, PrincipalType

_KINDS: tuple[PrincipalType, ...] = ("user", "group", "role")
#: The members of GetRole's ``Role`` that ``RoleDetail`` has too.
_ROLE_DETAIL = (
    "Path",
    "RoleName",
    "RoleId",
    "Arn",
    "CreateDate",
    "AssumeRolePolicyDocument",
    "PermissionsBoundary",
    "Tags",
)

#: AWS's default quotas, reported as they are (the broker does not enforce them).
AWS_DEFAULT_QUOTAS = {
    "UsersQuota": 5000,
    "GroupsQuota": 300,
    "RolesQuota": 1000,
    "PoliciesQuota": 1500,
    "GroupsPerUserQuota": 10,
    "PolicyVersionsInUseQuota": 10000,
}

#: The broker's own limits (enforced).
BROKER_QUOTAS = {
    "PolicySizeQuota": MAX_DOCUMENT_CHARS,
    "UserPolicySizeQuota": INLINE_DOCUMENT_CHARS["user"],
    "GroupPolicySizeQuota": INLINE_DOCUMENT_CHARS["group"],
    "RolePolicySizeQuota": INLINE_DOCUMENT_CHARS["role"],
    "VersionsPerPolicyQuota": MAX_POLICY_VERSIONS,
    "AttachedPoliciesPerUserQuota": MAX_ATTACHED,
    "AttachedPoliciesPerGroupQuota": MAX_ATTACHED,
    "AttachedPoliciesPerRoleQuota": MAX_ATTACHED,
}


async def summary(call: Call) -> dict[str, int]:
    store = call.api.store
    attachments = 0
    for kind in _KINDS:
        found = await store.all_attachments(kind)
        attachments += sum(len(a.managed) + (1 if a.boundary else 0) for a in found.values())
    providers = len(await call.api.providers.list())  # configured and registered
    return {
        "Users": await store.count_users(),
        "Groups": len(await store.list_groups()),
        "Roles": len(await store.list_roles()),
        "Policies": len(await store.list_managed_policies()),
        "PolicyVersionsInUse": attachments,
        "Providers": providers,
        **AWS_DEFAULT_QUOTAS,
        **BROKER_QUOTAS,
    }


async def get_account_summary(call: Call) -> Result:
    return {"SummaryMap": await summary(call)}


# --- GetAccountAuthorizationDetails ----------------------------------------------------------

#: ``Filter`` values and the result member each selects (config-declared managed policies are
#: the account's own, "local"; the broker has no AWS-managed policies).
FILTERS = {
    "User": "UserDetailList",
    "Group": "GroupDetailList",
    "Role": "RoleDetailList",
    "LocalManagedPolicy": "Policies",
    "AWSManagedPolicy": None,
}
MEMBERS = ("UserDetailList", "GroupDetailList", "RoleDetailList", "Policies")


def _document(doc: Mapping[str, Any]) -> str:
    return json.dumps(doc)


def _attached(call: Call, attached: AttachedPolicies) -> dict[str, Any]:
    """The attachment members common to users, groups and roles."""
    out: dict[str, Any] = {
        "AttachedManagedPolicies": [
            {"PolicyName": name, "PolicyArn": call.arn("policy", name)} for name in attached.managed
        ],
    }
    if attached.boundary:
        out["PermissionsBoundary"] = {
            "PermissionsBoundaryType": "PermissionsBoundaryPolicy",
            "PermissionsBoundaryArn": call.arn("policy", attached.boundary),
        }
    return out


def _inline(
    attached: AttachedPolicies, own: Sequence[tuple[str, Mapping[str, Any]]] = ()
) -> list[dict[str, Any]]:
    found = [*own, *sorted(attached.inline.items())]
    return [{"PolicyName": name, "PolicyDocument": _document(doc)} for name, doc in found]


async def _user_details(call: Call, attachments: Mapping[str, AttachedPolicies]) -> list[Any]:
    store = call.api.store
    out = []
    for user in sorted(await store.list_users(), key=lambda u: (u.name, u.id)):
        attached = attachments.get(user.id, AttachedPolicies())
        shape = user_shape(call, user)
        detail = {k: shape[k] for k in ("Path", "UserName", "UserId", "Arn", "CreateDate")}
        detail["UserPolicyList"] = _inline(attached)
        detail["GroupList"] = await store.user_groups(user.id)
        detail.update(_attached(call, attached))
        tags = await store.list_tags("user", user.id)
        if tags:
            detail["Tags"] = tag_list(tags)
        out.append(detail)
    return out


async def _group_details(call: Call, attachments: Mapping[str, AttachedPolicies]) -> list[Any]:
    out = []
    for group in await call.api.store.list_groups():
        attached = attachments.get(group.name, AttachedPolicies())
        detail: dict[str, Any] = {
            **group_shape(call, group),
            "GroupPolicyList": _inline(attached),
        }
        detail["AttachedManagedPolicies"] = _attached(call, attached)["AttachedManagedPolicies"]
        out.append(detail)
    return out


async def _role_details(call: Call, attachments: Mapping[str, AttachedPolicies]) -> list[Any]:
    """Roles as ``GetRole`` shows them, with their policies. A config role's own documents are
    listed among its inline policies under the names the simulator reports them by
    (``<role>/policy[<i>]``); a config role's boundary *document* has no ARN and is not shown
    (an attached managed boundary is)."""
    store = call.api.store
    out = []
    for role in sorted(await store.list_roles(), key=lambda r: r.name):
        attached = attachments.get(role.name, AttachedPolicies())
        tags = await store.list_tags("role", role.name)
        shape = role_shape(call, role, RoleView(role, attached.boundary, tags))
        detail = {k: v for k, v in shape.items() if k in _ROLE_DETAIL}
        own = [(f"{role.name}/policy[{i}]", doc) for i, doc in enumerate(role.policies)]
        detail["InstanceProfileList"] = []
        detail["RolePolicyList"] = _inline(attached, own)
        detail["AttachedManagedPolicies"] = _attached(call, attached)["AttachedManagedPolicies"]
        out.append(detail)
    return out


async def _policy_details(call: Call, uses: Sequence[AttachedPolicies]) -> list[Any]:
    """Managed policies as ``GetPolicy`` shows them, with every version."""
    attachments: dict[str, int] = {}
    boundaries: dict[str, int] = {}
    for attached in uses:
        for name in attached.managed:
            attachments[name] = attachments.get(name, 0) + 1
        if attached.boundary:
            boundaries[attached.boundary] = boundaries.get(attached.boundary, 0) + 1
    out = []
    store = call.api.store
    for record in await store.list_managed_policies():
        counts = PolicyUseCount(
            attachments=attachments.get(record.name, 0),
            boundaries=boundaries.get(record.name, 0),
        )
        versions = await store.list_policy_versions(record.name) or [
            PolicyVersion(
                record.name, record.default_version, record.document, record.updated_at, True
            )
        ]
        detail = policy_shape(call, record, counts)
        detail["PolicyVersionList"] = [version_shape(v) for v in versions]
        out.append(detail)
    return out


async def get_account_authorization_details(call: Call) -> Result:
    """Every user, group, role and managed policy with what is attached to it, paged as AWS
    does: ``MaxItems`` counts entities across the four lists together (users first, then
    groups, roles and policies), and a ``Marker`` continues where the last page stopped."""
    wanted = set(MEMBERS)
    filters = call.params.get("Filter") or ()
    if filters:
        wanted = {m for f in filters if (m := FILTERS.get(str(f))) is not None}
    store = call.api.store
    by_kind = {kind: await store.all_attachments(kind) for kind in _KINDS}
    found: dict[str, list[Any]] = {m: [] for m in MEMBERS}
    if "UserDetailList" in wanted:
        found["UserDetailList"] = await _user_details(call, by_kind["user"])
    if "GroupDetailList" in wanted:
        found["GroupDetailList"] = await _group_details(call, by_kind["group"])
    if "RoleDetailList" in wanted:
        found["RoleDetailList"] = await _role_details(call, by_kind["role"])
    if "Policies" in wanted:
        every = [a for kind in _KINDS for a in by_kind[kind].values()]
        found["Policies"] = await _policy_details(call, every)
    combined = [(m, item) for m in MEMBERS for item in found[m]]
    start, stop, marker = page_bounds(call.params, len(combined))
    page = combined[start:stop]
    out: Result = {m: [item for member, item in page if member == m] for m in MEMBERS}
    out["IsTruncated"] = marker is not None
    if marker is not None:
        out["Marker"] = marker
    return out


ACTIONS = (
    Action("GetAccountSummary", get_account_summary, anything, mutates=False),
    Action(
        "GetAccountAuthorizationDetails",
        get_account_authorization_details,
        anything,
        mutates=False,
    ),
)
