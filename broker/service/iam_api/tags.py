"""Tags on users and roles (``TagUser``/``UntagUser``/``ListUserTags``, ``TagRole``/
``UntagRole``/``ListRoleTags``), at most 50 per entity as in AWS.

Keys and values are checked as AWS does (the model's patterns use ``\\p{...}`` classes that
Python's ``re`` lacks, so they are checked here): letters, numbers, spaces and ``_.:/=+-@``;
keys of 1-128 characters not starting with ``aws:``, values of 0-256; a key given twice in one
request is ``InvalidInput``. Roles declared in the config file are read-only
(``UnmodifiableEntity``): their tags cannot be changed here (they have none).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from broker.errors import IamInvalidInput
from broker.service.iam_api import escalation
from broker.service.iam_api.principals import role_named, user_named
from broker.service.iam_api.registry import Action, Call, Result, named

TAG_LIMIT = 50
_SYMBOLS = frozenset("_.:/=+-@")


def _allowed(text: str) -> bool:
    return all(c in _SYMBOLS or unicodedata.category(c)[0] in "LZN" for c in text)


def check_tags(tags: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """The request's ``Tags`` as key -> value; ``InvalidInput`` for a bad or repeated key."""
    out: dict[str, str] = {}
    for tag in tags:
        key, value = str(tag.get("Key", "")), str(tag.get("Value", ""))
        if not 1 <= len(key) <= 128 or not _allowed(key):
            raise IamInvalidInput(
                "bad_tag_key",
                public_message="A tag key has 1-128 letters, numbers, spaces or _.:/=+-@.",
            )
        if len(value) > 256 or not _allowed(value):
            raise IamInvalidInput(
                "bad_tag_value",
                public_message="A tag value has 0-256 letters, numbers, spaces or _.:/=+-@.",
            )
        if key.lower().startswith("aws:"):
            raise IamInvalidInput(
                "reserved_tag_key", public_message="Tag keys starting with 'aws:' are reserved."
            )
        if key in out:
            raise IamInvalidInput("duplicate_tag_key", public_message="Duplicate tag keys found.")
        out[key] = value
    return out


def check_keys(keys: Sequence[str]) -> list[str]:
    for key in keys:
        if not 1 <= len(key) <= 128 or not _allowed(key):
            raise IamInvalidInput(
                "bad_tag_key",
                public_message="A tag key has 1-128 letters, numbers, spaces or _.:/=+-@.",
            )
    return list(keys)


def tag_list(tags: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in tags.items()]


# --- users ----------------------------------------------------------------------------------


async def tag_user(call: Call) -> Result:
    tags = check_tags(call.params["Tags"])
    user = await user_named(call, call.params["UserName"])
    # tags are condition keys (aws:PrincipalTag/...): changing them can change permissions
    await escalation.require_bounded_target(call, "user", user.id, user.name)
    await _audit(call, "TagUser", user=user.id, name=user.name, keys=sorted(tags))
    await call.api.store.tag("user", user.id, tags, limit=TAG_LIMIT)
    return {}


async def untag_user(call: Call) -> Result:
    keys = check_keys(call.params["TagKeys"])
    user = await user_named(call, call.params["UserName"])
    await escalation.require_bounded_target(call, "user", user.id, user.name)
    await _audit(call, "UntagUser", user=user.id, name=user.name, keys=sorted(keys))
    await call.api.store.untag("user", user.id, keys)
    return {}


async def list_user_tags(call: Call) -> Result:
    user = await user_named(call, call.params["UserName"])
    return {"Tags": tag_list(await call.api.store.list_tags("user", user.id))}


# --- roles ----------------------------------------------------------------------------------


async def tag_role(call: Call) -> Result:
    tags = check_tags(call.params["Tags"])
    role = await role_named(call, call.params["RoleName"], write=True)
    await escalation.require_bounded_target(call, "role", role.name, role.name)
    await _audit(call, "TagRole", role=role.name, keys=sorted(tags))
    await call.api.store.tag("role", role.name, tags, limit=TAG_LIMIT)
    return {}


async def untag_role(call: Call) -> Result:
    keys = check_keys(call.params["TagKeys"])
    role = await role_named(call, call.params["RoleName"], write=True)
    await escalation.require_bounded_target(call, "role", role.name, role.name)
    await _audit(call, "UntagRole", role=role.name, keys=sorted(keys))
    await call.api.store.untag("role", role.name, keys)
    return {}


async def list_role_tags(call: Call) -> Result:
    role = await role_named(call, call.params["RoleName"], write=False)
    return {"Tags": tag_list(await call.api.store.list_tags("role", role.name))}


async def _audit(call: Call, action: str, **details: Any) -> None:
    await call.api.auditor.record_or_fail(
        f"iam.{action}", "success", req=call.req, principal=call.actor, details=details
    )


ACTIONS = (
    Action("TagUser", tag_user, named("user", "UserName")),
    Action("UntagUser", untag_user, named("user", "UserName")),
    Action("ListUserTags", list_user_tags, named("user", "UserName"), mutates=False, page="Tags"),
    Action("TagRole", tag_role, named("role", "RoleName")),
    Action("UntagRole", untag_role, named("role", "RoleName")),
    Action("ListRoleTags", list_role_tags, named("role", "RoleName"), mutates=False, page="Tags"),
)
