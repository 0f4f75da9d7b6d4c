"""The web console at ``/console`` (issue 16): server-rendered pages over ``IamApi`` with the
signed-in session's own permissions. Each area is a module with a ``ROUTES`` table; ``base``
holds what they share (the caller, forms, tables)."""

from __future__ import annotations

from aiohttp import web

from broker.web.console import (
    audit,
    groups,
    home,
    policies,
    providers,
    reports,
    roles,
    simulator,
    users,
    validate,
)
from broker.web.console.base import keeping_form_on_failure
from broker.web.middleware import observed

AREAS = (home, users, groups, roles, policies, providers, validate, simulator, audit, reports)


def add_routes(router: web.UrlDispatcher) -> None:
    for area in AREAS:
        for method, path, handler in area.ROUTES:
            if method == "POST":
                handler = keeping_form_on_failure(handler)
            router.add_route(method, path, observed(handler))
