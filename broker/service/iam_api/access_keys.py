"""IAM users' access keys: ``CreateAccessKey``, ``ListAccessKeys``, ``UpdateAccessKey``,
``DeleteAccessKey``, ``GetAccessKeyLastUsed`` (``broker.service.access_keys`` does the work).

``UserName`` left out means the caller itself, as in AWS: only an IAM user's credential (its key
or its ``GetSessionToken`` session) has one; anyone else gets AWS's ``ValidationError``. The
secret is in ``CreateAccessKey``'s answer and nowhere else, ever. A key is authorized on its
user's ARN; ``GetAccessKeyLastUsed`` names only the key, so it authorizes once the key's user is
known (an unknown key is authorized on ``*`` first, so that it tells nothing to a caller who may
not ask). Creating a key for, or re-activating a key of, another user lets the caller act as
that user: a caller bounded by a permissions boundary may do it only for users that carry its
boundary (``escalation.require_key_target_allowed``).
"""

from __future__ import annotations

from typing import Any

from broker.errors import IamNoSuchEntity, IamValidationError
from broker.service.access_keys import ACTIVE, AccessKeyService
from broker.service.iam_api import escalation
from broker.service.iam_api.principals import user_named
from broker.service.iam_api.registry import Action, Call, Result, anything
from broker.storage.base import AccessKeyRecord, User

NOT_USED = "N/A"  # AWS's ServiceName and Region of a key never used


def _service(call: Call) -> AccessKeyService:
    keys = call.api.access_keys
    if keys is None:
        raise IamValidationError(
            "access_keys_unavailable", public_message="Access keys are not available here."
        )
    return keys


def _target_name(call: Call) -> str:
    name = call.params.get("UserName")
    if name:
        return str(name)
    cred = call.caller.credential
    if cred is not None and cred.is_user:
        return cred.role_name
    raise IamValidationError(
        "user_name_required",
        public_message="Must specify userName when calling with non-User credentials",
    )


def target_arn(call: Call) -> str:
    return call.arn("user", _target_name(call))


async def _target(call: Call) -> User:
    """The user named (or the calling user itself, by id: a rename cannot redirect it)."""
    cred = call.caller.credential
    if not call.params.get("UserName") and cred is not None and cred.is_user:
        user = next(
            (
                u
                for u in await call.api.store.find_users_by_name(cred.role_name)
                if u.id == cred.user_id
            ),
            None,
        )
        if user is None:
            raise IamNoSuchEntity(
                "no_such_user:self", public_message="The calling user no longer exists."
            )
        return user
    return await user_named(call, _target_name(call))


def _metadata(user: User, k: AccessKeyRecord) -> dict[str, Any]:
    return {
        "UserName": user.name,
        "AccessKeyId": k.access_key_id,
        "Status": k.status,
        "CreateDate": k.created_at,
    }


async def create_access_key(call: Call) -> Result:
    user = await _target(call)
    await escalation.require_key_target_allowed(call, user.id, user.name)
    new = await _service(call).create(user, actor=call.actor, req=call.req)
    return {"AccessKey": {**_metadata(user, new.record), "SecretAccessKey": new.secret}}


async def list_access_keys(call: Call) -> Result:
    user = await _target(call)
    keys = await _service(call).list(user)
    return {"AccessKeyMetadata": [_metadata(user, k) for k in keys]}


async def update_access_key(call: Call) -> Result:
    user = await _target(call)
    status = str(call.params["Status"])
    if status == ACTIVE:
        await escalation.require_key_target_allowed(call, user.id, user.name)
    await _service(call).set_status(
        user, str(call.params["AccessKeyId"]), status, actor=call.actor, req=call.req
    )
    return {}


async def delete_access_key(call: Call) -> Result:
    user = await _target(call)
    await _service(call).delete(
        user, str(call.params["AccessKeyId"]), actor=call.actor, req=call.req
    )
    return {}


async def get_access_key_last_used(call: Call) -> Result:
    akid = str(call.params["AccessKeyId"])
    found = await _service(call).find(akid)
    if found is None:
        call.api.authorize(call.caller, "GetAccessKeyLastUsed", "*", call.req)
        raise IamNoSuchEntity(
            f"no_such_access_key:{akid[:32]}",
            public_message=f"The Access Key with id {akid[:32]} cannot be found.",
        )
    record, user = found
    call.api.authorize(call.caller, "GetAccessKeyLastUsed", call.arn("user", user.name), call.req)
    used: dict[str, Any] = {
        "ServiceName": record.last_used_service or NOT_USED,
        "Region": record.last_used_region or NOT_USED,
    }
    if record.last_used_at is not None:
        used["LastUsedDate"] = record.last_used_at
    return {"UserName": user.name, "AccessKeyLastUsed": used}


ACTIONS = (
    Action("CreateAccessKey", create_access_key, target_arn),
    Action("ListAccessKeys", list_access_keys, target_arn, mutates=False, page="AccessKeyMetadata"),
    Action("UpdateAccessKey", update_access_key, target_arn),
    Action("DeleteAccessKey", delete_access_key, target_arn),
    Action(
        "GetAccessKeyLastUsed",
        get_access_key_last_used,
        anything,
        mutates=False,
        authorize_in_run=True,
    ),
)
