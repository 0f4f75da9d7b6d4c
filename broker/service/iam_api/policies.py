"""IAM managed policies and their versions: Create/Get/List/Delete Policy, Create/Get/List/
Delete PolicyVersion, SetDefaultPolicyVersion.

A policy is ``arn:broker:iam::<account>:policy/<name>`` (path ``/`` only). Policies declared in
the config file (``[policies.<name>]``) are read-only here (``UnmodifiableEntity``) and are what
``Scope=AWS`` lists (the operator's policies, as AWS's own managed policies); ``Scope=Local``
lists those created through the API. ``OnlyAttached``: attached to a user, group or role;
``PolicyUsageFilter=PermissionsBoundary``: used as a boundary. At most five versions
(``LimitExceeded``). A bounded caller is held to ``escalation``'s rules.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from typing import Any

from broker.errors import IamInvalidInput, IamNoSuchEntity, IamValidationError
from broker.service.iam_api import escalation
from broker.service.iam_api.registry import Action, Call, Result, anything, given_arn, named
from broker.storage.base import ManagedPolicyRecord, PolicyUseCount, PolicyVersion

POLICY_ID_PREFIX = "ANPA"
_POLICY_ARN = re.compile(r"arn:(?P<partition>[^:]+):iam::(?P<account>[^:]*):policy/(?P<path>.*)")


def policy_id(call: Call, record: ManagedPolicyRecord) -> str:
    """A stable unique id in AWS's form (``ANPA`` + 17 characters): the same policy keeps it,
    a policy deleted and created again under its name gets another."""
    account = call.api.settings.server.account_id
    digest = hashlib.sha256(f"{account}:policy:{record.name}:{record.created_at!r}".encode())
    return POLICY_ID_PREFIX + base64.b32encode(digest.digest()).decode("ascii")[:17]


def policy_name(call: Call, param: str = "PolicyArn") -> str:
    """The name of the policy that parameter ``param`` (an ARN) names: ``InvalidInput`` if it is
    no policy ARN, ``NoSuchEntity`` if it is one of another account or path."""
    arn = str(call.params[param])
    m = _POLICY_ARN.fullmatch(arn)
    if m is None:
        raise IamInvalidInput("bad_policy_arn", public_message=f"ARN {arn} is not valid."[:300])
    name = m["path"]
    if arn != call.arn("policy", name) or not name:
        raise IamNoSuchEntity(
            "foreign_policy_arn",
            public_message=f"Policy {arn} does not exist or is not attachable."[:300],
        )
    return name


def policy_shape(
    call: Call, record: ManagedPolicyRecord, counts: PolicyUseCount | None
) -> dict[str, Any]:
    counts = counts or PolicyUseCount()
    out: dict[str, Any] = {
        "PolicyName": record.name,
        "PolicyId": policy_id(call, record),
        "Arn": call.arn("policy", record.name),
        "Path": "/",
        "DefaultVersionId": record.default_version,
        "AttachmentCount": counts.attachments,
        "PermissionsBoundaryUsageCount": counts.boundaries,
        "IsAttachable": True,
        "CreateDate": record.created_at,
        "UpdateDate": record.updated_at,
    }
    if record.description:
        out["Description"] = record.description
    return out


def version_shape(version: PolicyVersion, *, document: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {
        "VersionId": version.version_id,
        "IsDefaultVersion": version.is_default,
        "CreateDate": version.created_at,
    }
    if document:
        out["Document"] = json.dumps(version.document)
    return out


def _path(call: Call) -> None:
    if call.params.get("Path", "/") != "/":
        raise IamValidationError(
            "unsupported_path", public_message="This broker supports only the path '/'."
        )


async def _counts(call: Call, name: str) -> PolicyUseCount:
    uses = await call.api.store.policy_uses(name)
    return PolicyUseCount(
        attachments=sum(1 for u in uses if not u.as_boundary),
        boundaries=sum(1 for u in uses if u.as_boundary),
    )


async def create_policy(call: Call) -> Result:
    _path(call)
    if call.params.get("Tags"):
        raise IamInvalidInput(
            "policy_tags_unsupported", public_message="This broker does not tag policies."
        )
    record = await call.api.iam.create_policy(
        call.params["PolicyName"],
        str(call.params["PolicyDocument"]),
        description=str(call.params.get("Description", "")),
        actor=call.actor,
    )
    return {"Policy": policy_shape(call, record, None)}


async def get_policy(call: Call) -> Result:
    detail = await call.api.iam.get_policy(policy_name(call))
    return {"Policy": policy_shape(call, detail.record, await _counts(call, detail.record.name))}


async def list_policies(call: Call) -> Result:
    scope = call.params.get("Scope", "All")
    only_attached = bool(call.params.get("OnlyAttached", False))
    usage = call.params.get("PolicyUsageFilter")
    prefix = str(call.params.get("PathPrefix", "/"))
    counts = await call.api.store.policy_use_counts()
    out = []
    for record in await call.api.iam.list_policies():
        c = counts.get(record.name, PolicyUseCount())
        if scope == "AWS" and record.source != "config":
            continue
        if scope == "Local" and record.source == "config":
            continue
        if usage == "PermissionsBoundary" and c.boundaries == 0:
            continue  # only the policies used as a boundary
        if only_attached and usage != "PermissionsBoundary" and c.attachments == 0:
            continue  # only the policies attached to a user, group or role
        if not "/".startswith(prefix):
            continue
        out.append(policy_shape(call, record, c))
    return {"Policies": out}


async def delete_policy(call: Call) -> Result:
    name = policy_name(call)
    await escalation.require_policy_change_allowed(call, name, document=False)
    await call.api.iam.delete_policy(name, actor=call.actor)
    return {}


async def create_policy_version(call: Call) -> Result:
    name = policy_name(call)
    await escalation.require_policy_change_allowed(call, name, document=True)
    version = await call.api.iam.create_policy_version(
        name,
        str(call.params["PolicyDocument"]),
        set_as_default=bool(call.params.get("SetAsDefault", False)),
        actor=call.actor,
    )
    return {"PolicyVersion": version_shape(version, document=False)}


async def get_policy_version(call: Call) -> Result:
    version = await call.api.iam.get_policy_version(policy_name(call), call.params["VersionId"])
    return {"PolicyVersion": version_shape(version)}


async def list_policy_versions(call: Call) -> Result:
    versions = await call.api.iam.list_policy_versions(policy_name(call))
    return {"Versions": [version_shape(v, document=False) for v in versions]}


async def delete_policy_version(call: Call) -> Result:
    name = policy_name(call)
    await escalation.require_policy_change_allowed(call, name, document=False)
    await call.api.iam.delete_policy_version(name, call.params["VersionId"], actor=call.actor)
    return {}


async def set_default_policy_version(call: Call) -> Result:
    name = policy_name(call)
    await escalation.require_policy_change_allowed(call, name, document=True)
    await call.api.iam.set_default_policy_version(name, call.params["VersionId"], actor=call.actor)
    return {}


POLICY = given_arn("PolicyArn")

ACTIONS = (
    Action("CreatePolicy", create_policy, named("policy", "PolicyName")),
    Action("GetPolicy", get_policy, POLICY, mutates=False),
    Action("ListPolicies", list_policies, anything, mutates=False, page="Policies"),
    Action("DeletePolicy", delete_policy, POLICY),
    Action("CreatePolicyVersion", create_policy_version, POLICY),
    Action("GetPolicyVersion", get_policy_version, POLICY, mutates=False),
    Action("ListPolicyVersions", list_policy_versions, POLICY, mutates=False, page="Versions"),
    Action("DeletePolicyVersion", delete_policy_version, POLICY),
    Action("SetDefaultPolicyVersion", set_default_policy_version, POLICY),
)
