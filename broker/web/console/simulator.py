"""``/console/simulator``: the IAM policy simulator for people.

A principal (a user or role, from ``ListUsers`` / ``ListRoles``) is simulated with
``iam:SimulatePrincipalPolicy``; a policy typed in with ``iam:SimulateCustomPolicy``. Both run
through :meth:`Console.call` (authorized with the caller's own policies, refusal audited), so
the decisions shown are exactly what the API answers: one row per (action, resource) with AWS's
decision names and the statements that decided it.

Below the results, the policies involved are shown statement by statement, the deciding
statements marked (class ``matched``, a marker and text). For a typed policy the API gives each
deciding statement's position in the text, which names the statement. For a principal's stored
policies the API gives only the policy (AWS reports no positions for them), so once the API call
has been authorized the page asks the broker's engine (the same :class:`Simulator` the action
runs) which statement of that policy decided; a stored policy's document is shown only when the
caller may read it (``iam:GetPolicyVersion`` / ``iam:Get<Kind>Policy`` / ``iam:GetRole``), so
simulating never reveals more than reading would.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from broker.domain import json_input
from broker.domain.claims import ContextValue
from broker.domain.policy.parse import MAX_DOCUMENT_BYTES
from broker.errors import BrokerError, InvalidRequest
from broker.policy import Policy
from broker.service.iam_api.simulation import source, statement_spans
from broker.service.simulate import Simulator
from broker.web.console.base import CSRF_PURPOSE, Console, console
from broker.web.pages import checked_form

#: context key types (AWS's ``ContextKeyType`` values)
TYPES = (
    "string",
    "stringList",
    "numeric",
    "numericList",
    "boolean",
    "booleanList",
    "ip",
    "ipList",
    "date",
    "dateList",
    "binary",
    "binaryList",
)
BLANK_CONTEXT_ROWS = 3  # rows shown empty (a page without scripts adds rows by submitting)
MAX_CONTEXT_ROWS = 20
MAX_ACTIONS = 100
MAX_RESOURCES = 50
MAX_PAIRS = 500  # the API allows more; a page of more rows is no use to a person
MAX_POLICY = 65_536
MAX_LIST = 8_192
_SPLIT = re.compile(r"[\n,]")
_INLINE = re.compile(r"(?P<kind>user|group|role)/(?P<owner>[^/]+)/.+")
_ROLE_OWN = re.compile(r"(?P<role>[^/]+)/(?:policy\[\d+\]|boundary)")


@dataclass
class ContextRow:
    key: str = ""
    type: str = "string"
    values: str = ""


@dataclass
class Inputs:
    """What was typed (kept as typed when the simulation fails)."""

    mode: str = "principal"
    principal: str = ""
    policy: str = ""
    actions: str = ""
    resources: str = ""
    context: list[ContextRow] = field(default_factory=list)

    def rows(self) -> list[ContextRow]:
        """The rows to show: those filled in, then blank ones."""
        filled = [r for r in self.context if r.key or r.values]
        blanks = max(BLANK_CONTEXT_ROWS, 1)
        return [*filled, *(ContextRow() for _ in range(blanks))][: MAX_CONTEXT_ROWS + blanks]


@dataclass
class Statement:
    index: int
    sid: str
    effect: str
    text: str
    matched_for: list[str] = field(default_factory=list)  # "action on resource" it decided

    @property
    def matched(self) -> bool:
        return bool(self.matched_for)


@dataclass
class PolicyView:
    key: int  # position on the page (anchors: #policy-<key>-<index>)
    name: str  # the engine's label
    policy_id: str  # SourcePolicyId
    policy_type: str  # SourcePolicyType
    readable: bool
    needs: str = ""  # the action that would let the caller read it
    statements: list[Statement] = field(default_factory=list)


@dataclass
class Deciding:
    policy_id: str
    policy_type: str
    label: str  # "statement 2 (Sid DenyAll)" or "" when not known
    anchor: str  # "#policy-0-1" or ""


@dataclass
class ResultRow:
    action: str
    resource: str
    decision: str
    deciding: list[Deciding]
    missing: list[str]


# --- reading the form ------------------------------------------------------------------------


def split(value: str) -> list[str]:
    """One item per line or comma-separated; blanks dropped, duplicates once."""
    out: dict[str, None] = {}
    for part in _SPLIT.split(value):
        if part.strip():
            out[part.strip()] = None
    return list(out)


def read_inputs(form: Mapping[str, object]) -> tuple[Inputs, str]:
    """What was typed (each field cut to its limit, so that the page can show it again) and
    the first problem with it ("" if none)."""
    problems: list[str] = []

    def field_(name: str, limit: int) -> str:
        value = form.get(name, "")
        value = value if isinstance(value, str) else ""
        if len(value) > limit:
            problems.append(f"{name}: at most {limit} characters.")
        return value[:limit]

    mode = field_("mode", 16)
    inputs = Inputs(
        mode=mode if mode in ("principal", "custom") else "principal",
        principal=field_("principal", 2048).strip(),
        policy=field_("policy", MAX_POLICY),
        actions=field_("actions", MAX_LIST).strip(),
        resources=field_("resources", MAX_LIST).strip(),
    )
    for i in range(MAX_CONTEXT_ROWS + BLANK_CONTEXT_ROWS):
        if f"ctx_key_{i}" not in form:
            continue
        kind = field_(f"ctx_type_{i}", 16)
        inputs.context.append(
            ContextRow(
                key=field_(f"ctx_key_{i}", 256).strip(),
                type=kind if kind in TYPES else "string",
                values=field_(f"ctx_values_{i}", MAX_LIST).strip(),
            )
        )
    return inputs, problems[0] if problems else ""


def _bad(reason: str, message: str) -> InvalidRequest:
    return InvalidRequest(reason, public_message=message)


def params_of(inputs: Inputs) -> dict[str, Any]:
    """The API parameters; a clear InvalidRequest for what the form itself can tell is wrong."""
    actions = split(inputs.actions)
    resources = split(inputs.resources) or ["*"]
    if not actions:
        raise _bad("no_actions", "Name at least one action (e.g. iam:ListUsers).")
    if len(actions) > MAX_ACTIONS or len(resources) > MAX_RESOURCES:
        raise _bad(
            "too_many",
            f"At most {MAX_ACTIONS} actions and {MAX_RESOURCES} resources at a time.",
        )
    if len(actions) * len(resources) > MAX_PAIRS:
        raise _bad("too_many_pairs", f"At most {MAX_PAIRS} action and resource pairs at a time.")
    entries = []
    filled = [r for r in inputs.context if r.key or r.values]
    if len(filled) > MAX_CONTEXT_ROWS:
        raise _bad("too_many_context", f"At most {MAX_CONTEXT_ROWS} context keys.")
    for row in filled:
        if not row.key:
            raise _bad("context_key_required", "A context row has values but no key name.")
        values = [v.strip() for v in row.values.split(",") if v.strip()]
        if not values:
            raise _bad("context_values_required", f"Give the context key {row.key} a value.")
        entries.append(
            {"ContextKeyName": row.key, "ContextKeyType": row.type, "ContextKeyValues": values}
        )
    params: dict[str, Any] = {"ActionNames": actions, "ResourceArns": resources}
    if entries:
        params["ContextEntries"] = entries
    if inputs.mode == "principal":
        if not inputs.principal:
            raise _bad("no_principal", "Choose the user or role to simulate.")
        params["PolicySourceArn"] = inputs.principal
    else:
        if not inputs.policy.strip():
            raise _bad("no_policy", "Type the policy document to simulate.")
        params["PolicyInputList"] = [inputs.policy]
    return params


def context_of(params: Mapping[str, Any]) -> dict[str, ContextValue]:
    """``ContextEntries`` as the engine's context (as the API reads them)."""
    out: dict[str, ContextValue] = {}
    for e in params.get("ContextEntries", ()):
        values = [str(v) for v in e["ContextKeyValues"]]
        out[e["ContextKeyName"]] = values if e["ContextKeyType"].endswith("List") else values[0]
    return out


# --- the policies involved -------------------------------------------------------------------


def _statements(document: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    body = document.get("Statement")
    if isinstance(body, Mapping):
        return [body]
    return [s for s in body if isinstance(s, Mapping)] if isinstance(body, list) else []


def policy_view(key: int, name: str, document: Mapping[str, Any] | None, needs: str) -> PolicyView:
    policy_id, policy_type = source(name)
    view = PolicyView(key, name, policy_id, policy_type, document is not None, needs)
    for i, s in enumerate(_statements(document or {})):
        view.statements.append(
            Statement(
                index=i,
                sid=str(s.get("Sid", "")),
                effect=str(s.get("Effect", "")),
                text=json.dumps(s, indent=2),
            )
        )
    return view


def _position(text: str, offset: int) -> tuple[int, int]:
    """(Line, Column) as the API reports a statement's start (see ``iam_api.simulation``)."""
    line_start = text.rfind("\n", 0, offset) + 1
    return text.count("\n", 0, offset) + 1, offset - line_start + 2


def _label(view: PolicyView | None, index: int | None) -> Deciding:
    if view is None or index is None:
        return Deciding("", "", "", "")
    stmt = view.statements[index] if view.readable and index < len(view.statements) else None
    sid = f" (Sid {stmt.sid})" if stmt is not None and stmt.sid else ""
    return Deciding(
        view.policy_id,
        view.policy_type,
        f"statement {index + 1}{sid}",
        f"#policy-{view.key}-{index}" if stmt is not None else "",
    )


def _mark(view: PolicyView, index: int, what: str) -> None:
    found = view.statements[index] if view.readable and index < len(view.statements) else None
    if found is not None and what not in found.matched_for:
        found.matched_for.append(what)


def _api_deciding(m: Mapping[str, Any]) -> Deciding:
    return Deciding(str(m.get("SourcePolicyId", "")), str(m.get("SourcePolicyType", "")), "", "")


def custom_results(
    inputs: Inputs, results: Sequence[Mapping[str, Any]]
) -> tuple[list[ResultRow], list[PolicyView]]:
    """The typed policy: each deciding statement found by the position the API reports."""
    try:  # it parsed (the API accepted it), and is read within the same bounds here
        document = json_input.loads(inputs.policy, max_bytes=MAX_DOCUMENT_BYTES)
    except json_input.JsonInputError:
        document = {}
    view = policy_view(0, "PolicyInputList.1", document if isinstance(document, dict) else {}, "")
    by_position = {
        _position(inputs.policy, start): i
        for i, (start, _) in enumerate(statement_spans(inputs.policy))
    }
    rows = []
    for r in results:
        what = f"{r['EvalActionName']} on {r['EvalResourceName']}"
        deciding = []
        for m in r.get("MatchedStatements", ()):
            start = m.get("StartPosition")
            index = by_position.get((start["Line"], start["Column"])) if start else None
            if m.get("SourcePolicyId") != view.policy_id or index is None:
                deciding.append(_api_deciding(m))
                continue
            _mark(view, index, what)
            deciding.append(_label(view, index))
        rows.append(_row(r, deciding))
    return rows, [view]


def _row(r: Mapping[str, Any], deciding: list[Deciding]) -> ResultRow:
    return ResultRow(
        action=str(r["EvalActionName"]),
        resource=str(r["EvalResourceName"]),
        decision=str(r["EvalDecision"]),
        deciding=deciding,
        missing=[str(k) for k in r.get("MissingContextValues", ())],
    )


def reading_action(c: Console, name: str) -> tuple[str, str]:
    """What the caller would need to read a stored policy's document (the engine's label)."""
    if name.startswith("policy/"):
        return "iam:GetPolicyVersion", c.arn("policy", name.removeprefix("policy/"))
    inline = _INLINE.fullmatch(name)
    if inline:
        kind = inline["kind"]
        return f"iam:Get{kind.capitalize()}Policy", c.arn(kind, inline["owner"])
    own = _ROLE_OWN.fullmatch(name)
    return "iam:GetRole", c.arn("role", own["role"] if own else name.split("/", 1)[0])


async def principal_results(
    c: Console, params: Mapping[str, Any], results: Sequence[Mapping[str, Any]]
) -> tuple[list[ResultRow], list[PolicyView]]:
    """A principal's stored policies: the API has authorized this simulation and answered; the
    engine it ran says which statement of each deciding policy decided."""
    simulator = Simulator(c.broker.authorizer, c.broker.iam)
    target = await simulator.resolve(str(params["PolicySourceArn"]))
    policies: list[Policy] = [*target.identity, *((target.boundary,) if target.boundary else ())]
    views: dict[str, PolicyView] = {}
    for p in policies:
        action, resource = reading_action(c, p.name)
        readable = c.may(action, resource)
        views[p.name] = policy_view(len(views), p.name, p.document if readable else None, action)
    context = context_of(params)
    rows = []
    for r in results:
        action, resource = str(r["EvalActionName"]), str(r["EvalResourceName"])
        sim = await simulator.simulate(
            action=action, resource=resource, principal=target, context=context
        )
        engine = {
            source(m.policy): (views.get(m.policy), m.index)
            for m in sim.decision.matched_statements
        }
        deciding = []
        for m in r.get("MatchedStatements", ()):
            view, index = engine.get(
                (str(m.get("SourcePolicyId")), str(m.get("SourcePolicyType"))), (None, None)
            )
            if view is None or index is None:
                deciding.append(_api_deciding(m))
                continue
            _mark(view, index, f"{action} on {resource}")
            deciding.append(_label(view, index))
        rows.append(_row(r, deciding))
    return rows, list(views.values())


# --- the page --------------------------------------------------------------------------------


async def _choices(c: Console) -> list[tuple[str, list[tuple[str, str]]]]:
    """The principals the caller may list, as (group label, [(ARN, name)])."""
    out = []
    for action, member, kind, label in (
        ("ListUsers", "Users", "user", "Users"),
        ("ListRoles", "Roles", "role", "Roles"),
    ):
        if not c.may(f"iam:{action}"):
            continue
        try:
            items = await c.call_all(action, member)
        except BrokerError:
            continue
        names = sorted(str(i[f"{kind.capitalize()}Name"]) for i in items)
        out.append((label, [(c.arn(kind, n), n) for n in names]))
    return out


async def _may_simulate(c: Console) -> None:
    """The page is the simulator's: a caller allowed neither simulation is refused (audited)."""
    if not (c.may("iam:SimulateCustomPolicy") or c.may("iam:SimulatePrincipalPolicy")):
        await c.authorize("iam:SimulateCustomPolicy", "*")


async def _render(
    c: Console,
    inputs: Inputs,
    *,
    results: list[ResultRow] | None = None,
    policies: list[PolicyView] | None = None,
    error: str = "",
    status: int = 200,
) -> web.Response:
    choices = await _choices(c)
    return await c.page(
        "console/simulator.html",
        section="simulator",
        status=status,
        error=error,
        inputs=inputs,
        choices=choices,
        listed={arn for _, items in choices for arn, _ in items},
        types=TYPES,
        results=results,
        policies=policies or [],
    )


async def simulator_get(request: web.Request) -> web.StreamResponse:
    c = await console(request)
    await _may_simulate(c)
    inputs = Inputs(principal=request.query.get("principal", "")[:2048])
    if request.query.get("mode") == "custom":
        inputs.mode = "custom"
    return await _render(c, inputs)


async def simulator_post(request: web.Request) -> web.StreamResponse:
    c = await console(request)
    # A simulation changes nothing, so this POST is CSRF-checked (another site must not make a
    # signed-in browser run, and have audited, simulations it chose) but does not consume the
    # page's single-use value: running it twice is harmless, and the person can edit the inputs
    # and simulate again from the results page without reloading. (A POST rather than a GET
    # form: a typed policy does not fit in a URL, and policies should not land in access logs.)
    form = await checked_form(
        request,
        purpose=CSRF_PURPOSE,
        binding=c.credential.session_id,
        action="console.simulate",
        principal=c.caller.actor,
    )
    await _may_simulate(c)
    inputs, problem = read_inputs(form)
    try:
        if problem:
            raise InvalidRequest("field_too_long", public_message=problem)
        params = params_of(inputs)
        if inputs.mode == "principal":
            answer = await c.call("SimulatePrincipalPolicy", params)
            results = answer.get("EvaluationResults", [])
            rows, policies = await principal_results(c, params, results)
        else:
            answer = await c.call("SimulateCustomPolicy", params)
            rows, policies = custom_results(inputs, answer.get("EvaluationResults", []))
    except BrokerError as e:
        return await _render(c, inputs, error=e.public_message, status=e.status)
    return await _render(c, inputs, results=rows, policies=policies)


ROUTES = (
    ("GET", "/console/simulator", simulator_get),
    ("POST", "/console/simulator", simulator_post),
)
