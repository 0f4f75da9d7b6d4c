"""Account-wide IAM reads: ``GetAccountSummary`` (entity counts and quotas).

``SummaryMap`` holds only AWS's keys, and only those the broker has a meaning for: counts of
what the store holds, and quotas. A quota is the broker's own limit where it enforces one
(policy documents: 6,144 characters, managed, inline and trust alike; 5 versions per policy;
50 tags), else AWS's default quota, which the broker does not enforce (docs/iam-api.md).
Keys of things the broker does not have (server certificates, signing certificates, access
keys, MFA devices, instance profiles) are left out.
"""

from __future__ import annotations

from broker.service.iam import MAX_DOCUMENT_CHARS
from broker.service.iam_api.registry import Action, Call, Result, anything
from broker.storage.base import PrincipalType

#: AWS's default quotas, reported as they are (the broker does not enforce them).
AWS_DEFAULT_QUOTAS = {
    "UsersQuota": 5000,
    "GroupsQuota": 300,
    "RolesQuota": 1000,
    "PoliciesQuota": 1500,
    "GroupsPerUserQuota": 10,
    "AttachedPoliciesPerUserQuota": 10,
    "AttachedPoliciesPerGroupQuota": 10,
    "AttachedPoliciesPerRoleQuota": 10,
    "PolicyVersionsInUseQuota": 10000,
}

#: The broker's own limits (enforced).
BROKER_QUOTAS = {
    "PolicySizeQuota": MAX_DOCUMENT_CHARS,
    "UserPolicySizeQuota": MAX_DOCUMENT_CHARS,
    "GroupPolicySizeQuota": MAX_DOCUMENT_CHARS,
    "RolePolicySizeQuota": MAX_DOCUMENT_CHARS,
    "VersionsPerPolicyQuota": 5,
}


async def summary(call: Call) -> dict[str, int]:
    store = call.api.store
    attachments = 0
    kinds: tuple[PrincipalType, ...] = ("user", "group", "role")
    for kind in kinds:
        found = await store.all_attachments(kind)
        attachments += sum(len(a.managed) + (1 if a.boundary else 0) for a in found.values())
    providers = sum(1 for p in call.api.settings.providers.values() if p.type != "local")
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


ACTIONS = (Action("GetAccountSummary", get_account_summary, anything, mutates=False),)
