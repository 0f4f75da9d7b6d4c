"""What every console page shares: who is calling, the one way to run an action, forms, tables.

The console is a third client of ``IamApi`` (after the Query API and ``broker admin``): every
read and write goes through :meth:`Console.call`, which authorizes ``iam:<Action>`` with the
signed-in session's own policies and audits a refusal. Console pieces that IAM has no action
for (the audit trail, a user's live sessions, the unused-access report) are authorized the same
way under the ``broker:`` service prefix (:meth:`Console.authorize`); docs/console.md lists them.

:meth:`Console.may` only decides what the page *shows* (a link, a button); it never stands in for
the service's check, which runs again on every request.

Forms carry two hidden values: ``csrf`` (HMAC bound to the session, as elsewhere) and ``nonce``,
a single-use value bound to this browser, consumed atomically in the store by the first submit
of the page's forms. A second submit of the same page (a double click, a replayed POST) finds it
consumed and changes nothing (409).
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

from aiohttp import web
from aiohttp.typedefs import Handler

from broker.errors import BrokerError, Conflict, CsrfError, IamAccessDenied, InvalidRequest
from broker.service.audit import RequestInfo
from broker.service.container import Broker
from broker.service.iam_api import Caller
from broker.service.iam_api.registry import Params, Result
from broker.service.single_use import SingleUseValues
from broker.service.verified import Credential
from broker.storage.base import SingleUse
from broker.web.csrf import csrf_token
from broker.web.keys import BROKER, RENDERER
from broker.web.pages import (
    BROWSER_COOKIE_LIFETIME,
    COOKIES,
    browser_value,
    checked_form,
    current_session,
    info_of,
    when,
)
from broker.web.render import SECURITY_HEADERS

CSRF_PURPOSE = "console"
FORM_NONCE = "console-form"  # single-use kind: one per rendered page with forms
NONCE_LIFETIME = 3600.0
PER_PAGE = 50
MAX_PER_PAGE = 500
MAX_QUERY = 256  # a search box's text; longer is not a search
# the form value a POST took, to put back if the request fails (keeping_form_on_failure)
_TAKEN = web.RequestKey("taken_form_value", SingleUse)
#: the site's CSP, plus ``connect-src 'self'`` for the live policy validator's fetch
CONSOLE_CSP = SECURITY_HEADERS["Content-Security-Policy"].replace(
    "default-src 'none';", "default-src 'none'; connect-src 'self';"
)


@dataclass(frozen=True)
class Section:
    """One entry of the console's navigation: shown when the caller may run ``action`` on
    ``resource`` (the resource the service itself checks for that listing)."""

    key: str
    title: str
    path: str
    action: str
    resource: str = "*"


SECTIONS: tuple[Section, ...] = (
    Section("users", "Users", "/console/users", "iam:ListUsers"),
    Section("access-keys", "Access keys", "/console/access-keys", "iam:ListAccessKeys"),
    Section("groups", "Groups", "/console/groups", "iam:ListGroups"),
    Section("roles", "Roles", "/console/roles", "iam:ListRoles"),
    Section("policies", "Policies", "/console/policies", "iam:ListPolicies"),
    Section(
        "providers",
        "Identity providers",
        "/console/providers",
        "iam:ListOpenIDConnectProviders",
    ),
    Section("simulator", "Policy simulator", "/console/simulator", "iam:SimulateCustomPolicy"),
    Section("audit", "Audit trail", "/console/audit", "broker:LookupAuditEvents"),
    Section("reports", "Reports", "/console/reports", "iam:GetCredentialReport"),
)


#: fields a stale form's page never shows again (secrets, and the form's own values)
_NOT_KEPT = ("csrf", "nonce", "password", "secret")
STALE_MESSAGE = (
    "This form was opened before you last signed in (or it is too old): nothing was changed. "
    "What you typed is below: check it and send it again."
)


class StaleForm(CsrfError):
    """A console form from this site whose CSRF token is no longer the session's (signed out
    and in again since the page was opened): refused as any CSRF failure (403, audited,
    nothing changed), answered with ``response``: what was typed, in a fresh form."""

    def __init__(self, reason: str, response: web.Response) -> None:
        super().__init__(reason)
        self.response = response


class FormReplayed(Conflict):
    """The page's single-use form value was used already (double submit or replay)."""

    status = 409


@dataclass
class Console:
    """One console request: the broker, the signed-in credential and the IAM caller it is."""

    request: web.Request
    broker: Broker
    credential: Credential
    caller: Caller
    _nonce: str | None = field(default=None, init=False)

    # --- running actions -------------------------------------------------------------------

    @property
    def req(self) -> RequestInfo:
        return info_of(self.request)

    async def call(self, action: str, params: Params | None = None) -> Result:
        """``IamApi.call``: authorized, audited on refusal, IAM caches refreshed on change."""
        return await self.broker.iam_api.call(self.caller, action, params or {}, self.req)

    async def call_all(self, action: str, member: str, params: Params | None = None) -> list[Any]:
        """Every item of a paged ``List*`` action (the console pages and sorts them itself)."""
        items: list[Any] = []
        query: dict[str, Any] = {**(params or {}), "MaxItems": 1000}
        while True:
            result = await self.call(action, query)
            items.extend(result.get(member, []))
            if not result.get("IsTruncated"):
                return items
            query["Marker"] = result["Marker"]

    async def authorize(self, action: str, resource: str) -> None:
        """A ``broker:`` console action (one IAM has no action for): decided by the caller's
        policies as IAM actions are; a refusal is audited and raised (403)."""
        b = self.broker
        cred = self.credential
        await b.authorizer.prepare(cred.principal)
        authorizer = b.authorizer
        decision = authorizer.decide(
            cred.principal,
            action=action,
            resource=resource,
            context=authorizer.context_for(cred.principal, source_ip=self.req.source_ip),
            session_policies=cred.session_policies,
        )
        if decision.decision != "allowed":
            err = IamAccessDenied(
                f"not_authorized:{decision.decision}",
                public_message=f"You are not allowed to perform {action} on {resource}.",
            )
            await b.auditor.record(
                f"console.{action}",
                "failure",
                req=self.req,
                principal=self.caller.actor,
                reason=err.reason,
            )
            raise err
        b.activity.note(cred.role_arn, action, resource)

    async def authorize_iam(self, name: str, resource: str) -> None:
        """``iam:<name>`` on ``resource`` decided as ``IamApi.call`` decides it (without running
        the action): a refusal is audited as ``iam.<name>`` ``failure`` and raised (403)."""
        api = self.broker.iam_api
        cred = self.credential
        await self.broker.authorizer.prepare(cred.principal)
        try:
            api.authorize(self.caller, name, resource, self.req)
        except BrokerError as e:
            await api.record_failure(self.caller, name, self.req, e)
            raise

    def decider(self, action: str) -> Callable[[str], bool]:
        """Whether ``action`` is allowed on a resource, decided in memory with the caller's
        compiled policies (no I/O: for filtering many rows after :meth:`authorize_iam`, which
        compiled an IAM user's policies)."""
        b = self.broker
        cred = self.credential
        context = b.authorizer.context_for(cred.principal, source_ip=self.req.source_ip)

        def allowed(resource: str) -> bool:
            decision = b.authorizer.decide(
                cred.principal,
                action=action,
                resource=resource,
                context=context,
                session_policies=cred.session_policies,
            )
            return decision.decision == "allowed"

        return allowed

    def may(self, action: str, resource: str = "*") -> bool:
        """Whether to *show* a link or button; the service checks again when it is used."""
        b = self.broker
        cred = self.credential
        decision = b.authorizer.decide(
            cred.principal,
            action=action,
            resource=resource,
            context=b.authorizer.context_for(cred.principal, source_ip=self.req.source_ip),
            session_policies=cred.session_policies,
        )
        return decision.decision == "allowed"

    def arn(self, kind: str, name: str) -> str:
        return self.broker.settings.arn(kind, name)

    # --- forms ------------------------------------------------------------------------------

    async def form(self, action: str) -> Mapping[str, object]:
        """The posted form once its CSRF token checks out and its single-use value is consumed
        (audited ``action`` failure otherwise): of two submits of one page only one gets here."""
        try:
            form = await checked_form(
                self.request,
                purpose=CSRF_PURPOSE,
                binding=self.credential.session_id,
                action=action,
                principal=self.caller.actor,
            )
        except CsrfError as e:
            # Only a form this site served (the browser says so: Origin) gets what was typed
            # back; a cross-site post, or one without Origin, gets the bare refusal.
            own = urlsplit(self.broker.settings.server.public_url)
            origin = self.request.headers.get("Origin")
            if e.reason != "csrf_mismatch" or origin != f"{own.scheme}://{own.netloc}":
                raise
            raise StaleForm(e.reason, await self._stale_page()) from e
        raw = str(form.get("nonce", ""))
        values = SingleUseValues(self.broker.store, self.broker.clock)
        taken = await values.take(FORM_NONCE, raw, browser=browser_value(self.request))
        if taken is None:
            err = FormReplayed(
                "form_replayed",
                public_message="This form was already submitted (or has expired): nothing was "
                "changed. Reload the page to act again.",
            )
            await self.broker.auditor.record(
                action, "failure", req=self.req, principal=self.caller.actor, reason=err.reason
            )
            raise err
        self.request[_TAKEN] = taken  # put back if the request fails (keeping_form_on_failure)
        return form

    async def _stale_page(self) -> web.Response:
        """The refused form's fields (no secret) in a fresh form to the same place."""
        posted = await self.request.post()
        fields = [
            (k, v)
            for k, v in posted.items()
            if isinstance(v, str) and not any(word in k.lower() for word in _NOT_KEPT)
        ][:50]
        return await self.page(
            "console/stale_form.html",
            status=403,
            error=STALE_MESSAGE,
            action_path=self.request.path,
            fields=fields,
        )

    async def page(
        self, template: str, *, section: str = "", status: int = 200, **context: Any
    ) -> web.Response:
        """A console page: the layout's navigation (only what the caller may open), the CSRF
        token and a fresh single-use form value for the page's forms."""
        # the browser binding the form value is bound to: this browser's, or a new one
        browser = browser_value(self.request) or secrets.token_urlsafe(24)
        values = SingleUseValues(self.broker.store, self.broker.clock)
        nonce = await values.issue(FORM_NONCE, {}, browser=browser, lifetime=NONCE_LIFETIME)
        now = self.broker.clock.now()
        context.setdefault("notice", "")  # a confirmation of what was just done
        context.setdefault("error", "")  # why the action failed (the form keeps what was typed)
        resp = self.request.app[RENDERER].page(
            template,
            status=status,
            nav=[s for s in SECTIONS if self.may(s.action, s.resource)],
            section=section,
            me=self.caller.arn,
            role_name=self.credential.role_name,
            csrf=csrf_token(self.broker.csrf_key, CSRF_PURPOSE, self.credential.session_id),
            logout_csrf=csrf_token(self.broker.csrf_key, "logout", self.credential.session_id),
            nonce=nonce,
            when=lambda at: when(at, now) if at else None,
            **context,
        )
        cookies = self.request.app[COOKIES]
        cookies.set(resp, cookies.browser, browser, max_age=BROWSER_COOKIE_LIFETIME)
        # the policy editor's live validator fetches /console/validate (same origin only)
        resp.headers["Content-Security-Policy"] = CONSOLE_CSP
        return resp


def keeping_form_on_failure(handler: Handler) -> Handler:
    """A console POST that fails (an error raised, or an error page answered) uses up nothing:
    the page's single-use form value it took goes back to the store as it was."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            resp = await handler(request)
        except StaleForm as e:
            return e.response  # audited by checked_form; no form value was taken
        except web.HTTPException as e:
            if e.status >= 400:
                await _put_back(request)
            raise
        except BaseException:
            await _put_back(request)
            raise
        if resp.status >= 400:
            await _put_back(request)
        return resp

    return wrapped


async def _put_back(request: web.Request) -> None:
    taken = request.get(_TAKEN)
    if taken is not None:
        b = request.app[BROKER]
        await SingleUseValues(b.store, b.clock).put_back(taken)


async def console(request: web.Request) -> Console:
    """The signed-in console caller; a browser without a session is sent to sign in first."""
    cred = await current_session(request)
    if cred is None:
        raise web.HTTPSeeOther("/login?" + urlencode({"rd": request.path_qs[:2048]}))
    b = request.app[BROKER]
    arn = b.sts.caller_identity(cred).arn
    return Console(request, b, cred, Caller(arn=arn, actor=arn, credential=cred))


# --- form values ------------------------------------------------------------------------------


def text(form: Mapping[str, object], name: str, *, max_length: int = 1024) -> str:
    """A text field's value (stripped); a bad or oversized value is a clear 400."""
    value = form.get(name, "")
    if not isinstance(value, str):
        raise InvalidRequest(f"bad_field:{name}", public_message=f"{name}: expected text.")
    if len(value) > max_length:
        raise InvalidRequest(
            f"field_too_long:{name}",
            public_message=f"{name}: at most {max_length} characters.",
        )
    return value.strip()


def error_message(e: BrokerError) -> str:
    """What a person reads when an action fails (the service's public message)."""
    return e.public_message


# --- tables: server-side search, sort and paging ---------------------------------------------


@dataclass(frozen=True)
class Column:
    key: str
    title: str
    sortable: bool = True


@dataclass(frozen=True)
class Table:
    """One page of rows, with what the template needs to link to other pages and orders."""

    rows: Sequence[Mapping[str, Any]]
    columns: Sequence[Column]
    total: int
    page: int
    pages: int
    sort: str
    descending: bool
    q: str
    base: str
    extra: Mapping[str, str]

    def link(self, **changes: Any) -> str:
        params: dict[str, Any] = {**self.extra, "q": self.q, "sort": self.sort, "page": self.page}
        params["desc"] = "1" if self.descending else ""
        params.update(changes)
        return self.base + "?" + urlencode({k: v for k, v in params.items() if v not in ("", None)})

    def sort_link(self, key: str) -> str:
        desc = key == self.sort and not self.descending
        return self.link(sort=key, desc="1" if desc else "", page=1)

    def aria_sort(self, key: str) -> str:
        if key != self.sort:
            return "none"
        return "descending" if self.descending else "ascending"


def table(
    request: web.Request,
    rows: Iterable[Mapping[str, Any]],
    columns: Sequence[Column],
    *,
    search: Callable[[Mapping[str, Any]], str],
    default_sort: str,
    extra: Mapping[str, str] | None = None,
) -> Table:
    """Filter ``rows`` by ``?q=`` (case-insensitive substring of ``search(row)``), sort by
    ``?sort=`` (a sortable column; ``?desc=1`` reverses) and cut page ``?page=`` of
    ``?per_page=`` rows. Bad parameters fall back to the defaults: a table never fails."""
    query = request.query
    q = query.get("q", "")[:MAX_QUERY].strip()
    sortable = {c.key for c in columns if c.sortable}
    sort = query.get("sort", default_sort)
    if sort not in sortable:
        sort = default_sort
    descending = query.get("desc") == "1"
    per_page = _int(query.get("per_page"), PER_PAGE, 1, MAX_PER_PAGE)
    needle = q.casefold()
    kept = [r for r in rows if not needle or needle in search(r).casefold()]
    kept.sort(key=lambda r: _sort_key(r.get(sort)), reverse=descending)
    pages = max(1, math.ceil(len(kept) / per_page))
    page = _int(query.get("page"), 1, 1, pages)
    start = (page - 1) * per_page
    params = dict(extra or {})
    if per_page != PER_PAGE:
        params["per_page"] = str(per_page)
    return Table(
        rows=kept[start : start + per_page],
        columns=columns,
        total=len(kept),
        page=page,
        pages=pages,
        sort=sort,
        descending=descending,
        q=q,
        base=request.path,
        extra=params,
    )


def _int(raw: str | None, default: int, low: int, high: int) -> int:
    try:
        value = int(raw) if raw is not None else default
    except ValueError:
        return default
    return min(max(value, low), high)


def _sort_key(value: object) -> tuple[int, Any]:
    """None last; numbers by value; everything else by its case-folded text."""
    if value is None or value == "":
        return (2, "")
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (0, value)
    return (1, str(value).casefold())
