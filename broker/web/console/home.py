"""``/console``: the overview: the account's counts (``iam:GetAccountSummary``) when the caller
may read them, and the sections it may open."""

from __future__ import annotations

from aiohttp import web

from broker.errors import BrokerError
from broker.web.console.base import console

#: the counts shown on the overview, in order (keys of ``GetAccountSummary``'s ``SummaryMap``)
COUNTS = (
    ("Users", "Users"),
    ("Groups", "Groups"),
    ("Roles", "Roles"),
    ("Policies", "Managed policies"),
    ("Providers", "Identity providers"),
    ("MFADevicesInUse", "MFA devices in use"),
)


async def overview(request: web.Request) -> web.StreamResponse:
    c = await console(request)
    counts: list[tuple[str, int]] = []
    if c.may("iam:GetAccountSummary"):
        try:
            summary = (await c.call("GetAccountSummary"))["SummaryMap"]
        except BrokerError:  # refused after all (a condition the preview could not see)
            summary = {}
        counts = [(title, int(summary[key])) for key, title in COUNTS if key in summary]
    return await c.page("console/home.html", section="home", counts=counts)


ROUTES = (("GET", "/console", overview),)
