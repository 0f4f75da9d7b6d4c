"""``/console/providers``: OpenID Connect identity providers (IAM's ``*OpenIDConnectProvider*``).

A provider's page is ``/console/providers/<name>``, its name being what IAM names it (the URL's
host and path, e.g. ``token.actions.githubusercontent.com``; a config-declared provider keeps its
table name). Writes post the provider's ARN in a hidden field to fixed paths:

==========================================  ===========================================
page or form                                IAM actions
==========================================  ===========================================
GET  /console/providers                     ListOpenIDConnectProviders,
                                            GetOpenIDConnectProvider (each)
GET  /console/providers/<name>              GetOpenIDConnectProvider
GET  /console/providers/new, POST …         CreateOpenIDConnectProvider
POST /console/providers/client-ids/add      AddClientIDToOpenIDConnectProvider
POST /console/providers/client-ids/remove   RemoveClientIDFromOpenIDConnectProvider
POST /console/providers/delete              DeleteOpenIDConnectProvider
==========================================  ===========================================

Providers declared in the config file are listed too, read-only (the service answers
``UnmodifiableEntity``): marked, without write buttons.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from aiohttp import web

from broker.errors import BrokerError, InvalidRequest
from broker.web.console.base import Column, Console, console, table, text
from broker.web.pages import redirect

MAX_URL = 255
MAX_LIST_FIELD = 20_000  # a textarea of client IDs (100 of up to 255 characters) or thumbprints
MAX_CLIENT_ID = 255

COLUMNS = (
    Column("name", "Provider"),
    Column("clients", "Client IDs"),
    Column("created", "Created"),
)

DONE = {
    "created": "The provider was created.",
    "client-added": "The client ID was added.",
    "client-removed": "The client ID was removed.",
    "deleted": "The provider was deleted.",
}

_SPLIT = re.compile(r"[\s,]+")


def href(name: str) -> str:
    return "/console/providers/" + quote(name, safe="/:[]")


def config_names(c: Console) -> set[str]:
    """Providers declared in the config file (read-only through the API)."""
    return {n for n, p in c.broker.settings.providers.items() if p.type != "local"}


def _items(raw: str) -> list[str]:
    return [x for x in _SPLIT.split(raw) if x]


def _notice(request: web.Request) -> str:
    return DONE.get(request.query.get("done", ""), "")


def _name_of(arn: str) -> str:
    return arn.split(":oidc-provider/", 1)[-1]


async def list_providers(request: web.Request) -> web.StreamResponse:
    c = await console(request)
    listed = (await c.call("ListOpenIDConnectProviders"))["OpenIDConnectProviderList"]
    fixed = config_names(c)
    rows: list[dict[str, Any]] = []
    for item in listed:
        arn = item["Arn"]
        name = _name_of(arn)
        row: dict[str, Any] = {
            "name": name,
            "arn": arn,
            "href": href(name),
            "url": "",
            "clients": None,
            "created": None,
            "readonly": name in fixed,
        }
        try:
            got = await c.call("GetOpenIDConnectProvider", {"OpenIDConnectProviderArn": arn})
            row.update(
                url=got.get("Url", ""),
                clients=len(got.get("ClientIDList", [])),
                created=got.get("CreateDate"),
            )
        except BrokerError:  # deleted meanwhile, or not readable: listed by name only
            pass
        rows.append(row)
    t = table(
        request,
        rows,
        COLUMNS,
        search=lambda r: f"{r['name']} {r['url']}",
        default_sort="name",
    )
    return await c.page(
        "console/providers.html",
        section="providers",
        t=t,
        may_create=c.may("iam:CreateOpenIDConnectProvider", c.arn("oidc-provider", "*")),
        notice=_notice(request),
    )


async def show_provider(
    c: Console, name: str, *, error: str = "", status: int = 200
) -> web.Response:
    request = c.request
    arn = c.arn("oidc-provider", name)
    got = await c.call("GetOpenIDConnectProvider", {"OpenIDConnectProviderArn": arn})
    fixed = name in config_names(c)
    return await c.page(
        "console/provider.html",
        section="providers",
        name=name,
        arn=arn,
        provider=got,
        readonly=fixed,
        may_add=not fixed and c.may("iam:AddClientIDToOpenIDConnectProvider", arn),
        may_remove=not fixed and c.may("iam:RemoveClientIDFromOpenIDConnectProvider", arn),
        may_delete=not fixed and c.may("iam:DeleteOpenIDConnectProvider", arn),
        notice=_notice(request),
        error=error,
        status=status,
    )


async def new_provider(request: web.Request) -> web.StreamResponse:
    c = await console(request)
    return await _create_form(c, url="https://", client_ids="", thumbprints="")


async def _create_form(
    c: Console,
    *,
    url: str,
    client_ids: str,
    thumbprints: str,
    error: str = "",
    status: int = 200,
) -> web.Response:
    return await c.page(
        "console/provider_new.html",
        section="providers",
        may_create=c.may("iam:CreateOpenIDConnectProvider", c.arn("oidc-provider", "*")),
        url=url,
        client_ids=client_ids,
        thumbprints=thumbprints,
        error=error,
        status=status,
    )


async def create_provider(request: web.Request) -> web.StreamResponse:
    c = await console(request)
    form = await c.form("console.provider.create")
    url = str(form.get("url", ""))[: MAX_URL * 2]
    client_ids = str(form.get("client_ids", ""))[:MAX_LIST_FIELD]
    thumbprints = str(form.get("thumbprints", ""))[:MAX_LIST_FIELD]
    try:
        url = text(form, "url", max_length=MAX_URL)
        client_ids = text(form, "client_ids", max_length=MAX_LIST_FIELD)
        thumbprints = text(form, "thumbprints", max_length=MAX_LIST_FIELD)
        if not url:
            raise InvalidRequest("missing_url", public_message="Give the provider's URL.")
        params: dict[str, Any] = {"Url": url}
        if _items(client_ids):
            params["ClientIDList"] = _items(client_ids)
        if _items(thumbprints):
            params["ThumbprintList"] = _items(thumbprints)
        result = await c.call("CreateOpenIDConnectProvider", params)
    except BrokerError as e:
        return await _create_form(
            c,
            url=url,
            client_ids=client_ids,
            thumbprints=thumbprints,
            error=e.public_message,
            status=e.status,
        )
    name = _name_of(result["OpenIDConnectProviderArn"])
    return redirect(f"{href(name)}?done=created")


async def _change(
    request: web.Request, audit: str, action: str, done: str, extra: Mapping[str, str] = {}
) -> web.StreamResponse:
    """A write on one provider, named by its ARN in the form; its page again on refusal."""
    c = await console(request)
    form = await c.form(audit)
    arn = text(form, "arn", max_length=2048)
    name = _name_of(arn)
    try:
        params: dict[str, Any] = {"OpenIDConnectProviderArn": arn}
        for param, field in extra.items():
            value = text(form, field, max_length=MAX_CLIENT_ID)
            if not value:
                raise InvalidRequest(
                    f"missing_{field}", public_message="Give the client ID (audience)."
                )
            params[param] = value
        await c.call(action, params)
    except BrokerError as e:
        if done == "deleted" and e.status == 404:
            raise
        return await show_provider(c, name, error=e.public_message, status=e.status)
    if done == "deleted":
        return redirect("/console/providers?done=deleted")
    return redirect(f"{href(name)}?done={done}")


async def add_client(request: web.Request) -> web.StreamResponse:
    return await _change(
        request,
        "console.provider.client.add",
        "AddClientIDToOpenIDConnectProvider",
        "client-added",
        {"ClientID": "client_id"},
    )


async def remove_client(request: web.Request) -> web.StreamResponse:
    return await _change(
        request,
        "console.provider.client.remove",
        "RemoveClientIDFromOpenIDConnectProvider",
        "client-removed",
        {"ClientID": "client_id"},
    )


async def delete_provider(request: web.Request) -> web.StreamResponse:
    return await _change(
        request, "console.provider.delete", "DeleteOpenIDConnectProvider", "deleted"
    )


async def _show(request: web.Request) -> web.StreamResponse:
    return await show_provider(await console(request), request.match_info["name"])


ROUTES = (
    ("GET", "/console/providers", list_providers),
    ("POST", "/console/providers", create_provider),
    ("GET", "/console/providers/new", new_provider),
    ("POST", "/console/providers/client-ids/add", add_client),
    ("POST", "/console/providers/client-ids/remove", remove_client),
    ("POST", "/console/providers/delete", delete_provider),
    ("GET", "/console/providers/{name:.+}", _show),
)
