"""OpenID Connect providers (IAM's ``*OpenIDConnectProvider*`` actions) over
``broker.service.providers``: a provider registered here is trusted by
``AssumeRoleWithWebIdentity`` on every instance (see that module for naming and verification).

Each action is ``iam:<Action>`` on the provider's ARN
(``arn:broker:iam::<account>:oidc-provider/<host/path>``); ``CreateOpenIDConnectProvider`` on
the ARN the new provider would have; ``ListOpenIDConnectProviders`` on ``*``.
"""

from __future__ import annotations

from typing import Any

from broker.errors import IamInvalidInput
from broker.service.iam_api.registry import Action, Call, Result, anything, given_arn
from broker.service.providers import ProviderView, name_from_arn, provider_name


def _arn(call: Call, name: str) -> str:
    return call.arn("oidc-provider", name)


def _create_resource(call: Call) -> str:
    url = str(call.params.get("Url", ""))
    try:
        return _arn(call, provider_name(url))
    except IamInvalidInput:
        return _arn(call, url)  # refused by the action itself (after authorization)


def _name(call: Call) -> str:
    arn = str(call.params["OpenIDConnectProviderArn"])
    return name_from_arn(arn, call.api.settings.server.account_id)


def _tags(tags: tuple[tuple[str, str], ...]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in tags]


def _shape(view: ProviderView) -> dict[str, Any]:
    """``GetOpenIDConnectProviderResponse``: the URL without its scheme, as AWS shows it."""
    out: dict[str, Any] = {
        "Url": view.url.split("://", 1)[-1],
        "ClientIDList": list(view.client_ids),
        "ThumbprintList": list(view.thumbprints),
        "Tags": _tags(view.tags),
    }
    if view.created_at is not None:
        out["CreateDate"] = view.created_at
    return out


async def create(call: Call) -> Result:
    p = call.params
    tags = _tag_pairs(call)
    record = await call.api.providers.create(
        str(p["Url"]),
        client_ids=[str(c) for c in p.get("ClientIDList", [])],
        thumbprints=[str(t) for t in p.get("ThumbprintList", [])],
        tags=tags,
        actor=call.actor,
        req=call.req,
    )
    return {"OpenIDConnectProviderArn": _arn(call, record.name), "Tags": _tags(record.tags)}


async def get(call: Call) -> Result:
    return _shape(await call.api.providers.get(_name(call)))


async def list_providers(call: Call) -> Result:
    views = await call.api.providers.list()
    return {"OpenIDConnectProviderList": [{"Arn": _arn(call, v.name)} for v in views]}


async def delete(call: Call) -> Result:
    await call.api.providers.delete(_name(call), actor=call.actor, req=call.req)
    return {}


async def add_client_id(call: Call) -> Result:
    await call.api.providers.add_client_id(
        _name(call), str(call.params["ClientID"]), actor=call.actor, req=call.req
    )
    return {}


async def remove_client_id(call: Call) -> Result:
    await call.api.providers.remove_client_id(
        _name(call), str(call.params["ClientID"]), actor=call.actor, req=call.req
    )
    return {}


async def update_thumbprint(call: Call) -> Result:
    await call.api.providers.update_thumbprints(
        _name(call),
        [str(t) for t in call.params["ThumbprintList"]],
        actor=call.actor,
        req=call.req,
    )
    return {}


def _tag_pairs(call: Call) -> tuple[tuple[str, str], ...]:
    return tuple((str(t["Key"]), str(t.get("Value", ""))) for t in call.params.get("Tags", []))


async def tag(call: Call) -> Result:
    await call.api.providers.tag(_name(call), _tag_pairs(call), actor=call.actor, req=call.req)
    return {}


async def untag(call: Call) -> Result:
    keys = [str(k) for k in call.params["TagKeys"]]
    await call.api.providers.untag(_name(call), keys, actor=call.actor, req=call.req)
    return {}


async def list_tags(call: Call) -> Result:
    view = await call.api.providers.get(_name(call))
    return {"Tags": _tags(view.tags)}


_ARN_PARAM = given_arn("OpenIDConnectProviderArn")

ACTIONS = (
    Action("CreateOpenIDConnectProvider", create, _create_resource),
    Action("GetOpenIDConnectProvider", get, _ARN_PARAM, mutates=False),
    Action("ListOpenIDConnectProviders", list_providers, anything, mutates=False),
    Action("DeleteOpenIDConnectProvider", delete, _ARN_PARAM),
    Action("AddClientIDToOpenIDConnectProvider", add_client_id, _ARN_PARAM),
    Action("RemoveClientIDFromOpenIDConnectProvider", remove_client_id, _ARN_PARAM),
    Action("UpdateOpenIDConnectProviderThumbprint", update_thumbprint, _ARN_PARAM),
    Action("TagOpenIDConnectProvider", tag, _ARN_PARAM),
    Action("UntagOpenIDConnectProvider", untag, _ARN_PARAM),
    Action("ListOpenIDConnectProviderTags", list_tags, _ARN_PARAM, mutates=False, page="Tags"),
)
