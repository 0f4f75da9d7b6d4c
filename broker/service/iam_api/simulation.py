"""The IAM policy simulator as API actions: ``SimulatePrincipalPolicy`` (a user's, group's or
role's policies, plus any given) and ``SimulateCustomPolicy`` (only the given policies).

Both are answered by the broker's one simulator (:mod:`broker.service.simulate`, also behind
``broker simulate`` and ``POST /v1/simulate``) and its policy engine: one decision per
(action, resource) pair, with AWS's names (``allowed`` / ``explicitDeny`` / ``implicitDeny``),
the statements that decided it, the context keys its candidate statements read but the
request did not carry (``MissingContextValues``) and, when a permissions boundary is in play,
whether the boundary alone allows it.

Differences from AWS (docs/iam-api.md): resource-based policies (``ResourcePolicy``,
``ResourceOwner``, ``ResourceHandlingOption``), Organizations policies and
``PolicyExclusionList`` are not simulated (``InvalidInput``); ``StartPosition``/``EndPosition``
are reported for the documents given in the request (whose text the caller has), not for stored
ones; ``ResourceSpecificResults`` is not filled (each (action, resource) pair is an
``EvaluationResult`` of its own, as AWS lists them).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from typing import Any

from broker.domain.claims import ContextValue
from broker.domain.policy.context import RequestContext, canonical_key
from broker.errors import IamInvalidInput, IamMalformedPolicyDocument, IamNoSuchEntity
from broker.policy import Decision, Policy, PolicyError, evaluate, parse_policy
from broker.service.iam_api.registry import Action, Call, Result, anything
from broker.service.simulate import Simulator, Target, merge_context, simulate_documents

#: At most this many (action, resource) pairs in one simulation (each is one evaluation).
MAX_EVALUATIONS = 10_000

_PRINCIPAL = re.compile(
    r"arn:(?P<partition>[^:]+):iam::(?P<account>[^:]*):(?P<kind>user|group|role)/"
    r"(?:[^:]*/)?(?P<name>[^/:]+)"
)
_ROLE_OWN = re.compile(r"[^/]+/policy\[\d+\]")
_INLINE = re.compile(r"(?P<kind>user|group|role)/[^/]+/(?P<name>.+)")
_UNSUPPORTED = (
    "ResourcePolicy",
    "ResourceOwner",
    "ResourceHandlingOption",
    "PolicyExclusionList",
    "OrderedOrganizationPolicyInputList",
)


# --- parameters ------------------------------------------------------------------------------


def _unsupported(call: Call) -> None:
    for name in _UNSUPPORTED:
        if call.params.get(name):
            raise IamInvalidInput(
                f"unsupported_parameter:{name}",
                public_message=f"{name} is not supported by this broker's simulator "
                "(it simulates identity-based policies only).",
            )


def _policies(call: Call, param: str, texts: dict[str, str] | None = None) -> list[Policy]:
    """The documents of ``param``, parsed; a bad one is ``MalformedPolicyDocument`` naming it.
    ``texts`` collects each document's text by its label (for statement positions)."""
    out: list[Policy] = []
    for i, text in enumerate(call.params.get(param) or (), start=1):
        label = f"{param}.{i}"
        if texts is not None:
            texts[label] = str(text)
        try:
            out.append(parse_policy(str(text), name=label))
        except PolicyError as e:
            problems = "; ".join(f"{p}: {m}" if p else m for p, m in e.errors)
            raise IamMalformedPolicyDocument(
                f"malformed_policy:{label}"[:300],
                public_message=f"{label} is not a valid policy: {problems}",
            ) from None
    return out


def _boundary(call: Call, texts: dict[str, str]) -> Policy | None:
    found = _policies(call, "PermissionsBoundaryPolicyInputList", texts)
    if len(found) > 1:
        raise IamInvalidInput(
            "too_many_boundaries",
            public_message="PermissionsBoundaryPolicyInputList may hold only one policy.",
        )
    return found[0] if found else None


def _context_value(name: str, kind: str, value: str) -> str:
    """One value checked against its declared type (AWS refuses ill-typed values)."""
    base = kind.removesuffix("List")
    ok = True
    if base == "numeric":
        try:
            float(value)
        except ValueError:
            ok = False
    elif base == "boolean":
        ok = value.lower() in ("true", "false")
    elif base == "ip":
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            ok = False
    if not ok:
        raise IamInvalidInput(
            f"bad_context_value:{name}"[:200],
            public_message=f"The value {value!r} of context key {name} is not of type {kind}.",
        )
    return value


def _context(call: Call) -> dict[str, ContextValue]:
    """``ContextEntries`` as the engine's context: a ``*List`` type is a list of values, any
    other type exactly one value."""
    out: dict[str, ContextValue] = {}
    seen: set[str] = set()
    for entry in call.params.get("ContextEntries") or ():
        name = str(entry.get("ContextKeyName", ""))
        kind = str(entry.get("ContextKeyType", "string"))
        values = [str(v) for v in entry.get("ContextKeyValues") or ()]
        if not name:
            raise IamInvalidInput(
                "context_key_required", public_message="Every context entry needs a ContextKeyName."
            )
        if canonical_key(name) in seen:
            raise IamInvalidInput(
                f"duplicate_context_key:{name}"[:200],
                public_message=f"The context key {name} is given more than once.",
            )
        seen.add(canonical_key(name))
        checked = [_context_value(name, kind, v) for v in values]
        if kind.endswith("List"):
            out[name] = checked
        elif len(checked) != 1:
            raise IamInvalidInput(
                f"context_value_count:{name}"[:200],
                public_message=f"The context key {name} of type {kind} takes exactly one value.",
            )
        else:
            out[name] = checked[0]
    return out


def _pairs(call: Call) -> list[tuple[str, str]]:
    actions = [str(a) for a in call.params.get("ActionNames") or ()]
    resources = [str(r) for r in call.params.get("ResourceArns") or ()] or ["*"]
    if not actions:
        raise IamInvalidInput(
            "action_names_required", public_message="ActionNames must name at least one action."
        )
    if len(actions) * len(resources) > MAX_EVALUATIONS:
        raise IamInvalidInput(
            "too_many_evaluations",
            public_message=f"At most {MAX_EVALUATIONS} action and resource pairs may be "
            "simulated at once.",
        )
    for action in actions:
        if action != "*" and ":" not in action:
            raise IamInvalidInput(
                f"bad_action:{action}"[:200],
                public_message=f"Action {action!r} is not service:Action (e.g. s3:GetObject).",
            )
    return [(a, r) for a in actions for r in resources]


# --- results ---------------------------------------------------------------------------------


def source(policy_name: str) -> tuple[str, str]:
    """(SourcePolicyId, SourcePolicyType) of a policy as the engine names it: a managed one
    ``policy/<name>``, an inline one ``<user|group|role>/<owner>/<name>``, a config role's own
    documents ``<role>/policy[<i>]`` and ``<role>/boundary``, given documents
    ``PolicyInputList.<n>``."""
    if policy_name.startswith(("PolicyInputList.", "PermissionsBoundaryPolicyInputList.")):
        return policy_name, "none"
    if _ROLE_OWN.fullmatch(policy_name):  # before managed ones: a role may be named "policy"
        return policy_name, "role"
    if policy_name.startswith("policy/"):
        return policy_name.removeprefix("policy/"), "user-managed"
    inline = _INLINE.fullmatch(policy_name)
    if inline:
        return inline["name"], inline["kind"]
    return policy_name, "role"


def _skip_string(text: str, i: int) -> int:
    """``text[i]`` is ``"``: the index just past the closing quote."""
    i += 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
        elif text[i] == '"':
            return i + 1
        else:
            i += 1
    return i


def _skip_space(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t\r\n":
        i += 1
    return i


def _skip_value(text: str, i: int) -> int:
    """The index just past the JSON value starting at ``text[i]`` (the text is valid JSON:
    it parsed)."""
    if i >= len(text):
        return i
    if text[i] == '"':
        return _skip_string(text, i)
    if text[i] in "{[":
        depth = 0
        while i < len(text):
            c = text[i]
            if c == '"':
                i = _skip_string(text, i)
                continue
            if c in "{[":
                depth += 1
            elif c in "}]":
                depth -= 1
                if depth == 0:
                    return i + 1
            i += 1
        return i
    while i < len(text) and text[i] not in ",}] \t\r\n":
        i += 1
    return i


def statement_spans(text: str) -> list[tuple[int, int]]:
    """Where each statement of a policy document's text starts and ends (offsets of its
    ``{`` and ``}``), in ``Statement`` order; [] if the text is not laid out as expected."""
    i = _skip_space(text, 0)
    if not text.startswith("{", i):
        return []
    i += 1
    spans: list[tuple[int, int]] = []
    while True:
        i = _skip_space(text, i)
        if i >= len(text) or text[i] != '"':
            return spans
        end = _skip_string(text, i)
        key = text[i + 1 : end - 1]
        i = _skip_space(text, end)
        if not text.startswith(":", i):
            return spans
        i = _skip_space(text, i + 1)
        value_end = _skip_value(text, i)
        if key == "Statement":
            spans = _elements(text, i, value_end)
        i = _skip_space(text, value_end)
        if not text.startswith(",", i):
            return spans
        i += 1


def _elements(text: str, start: int, end: int) -> list[tuple[int, int]]:
    if text.startswith("{", start):
        return [(start, end - 1)]
    if not text.startswith("[", start):
        return []
    out = []
    i = start + 1
    while i < end:
        i = _skip_space(text, i)
        if text.startswith("{", i):
            stop = _skip_value(text, i)
            out.append((i, stop - 1))
            i = stop
        elif text.startswith(("]",), i):
            break
        else:
            i = _skip_value(text, i)
        i = _skip_space(text, i)
        if text.startswith(",", i):
            i += 1
    return out


def _position(text: str, offset: int) -> dict[str, int]:
    """Line (from 1) and column as AWS reports them (its examples: the column just past the
    brace, counting from 1)."""
    line_start = text.rfind("\n", 0, offset) + 1
    return {"Line": text.count("\n", 0, offset) + 1, "Column": offset - line_start + 2}


def _statements(decision: Decision, texts: Mapping[str, str]) -> list[dict[str, Any]]:
    out = []
    for m in decision.matched_statements:
        policy_id, policy_type = source(m.policy)
        found: dict[str, Any] = {"SourcePolicyId": policy_id, "SourcePolicyType": policy_type}
        text = texts.get(m.policy)
        if text is not None:
            spans = statement_spans(text)
            if m.index < len(spans):
                start, end = spans[m.index]
                found["StartPosition"] = _position(text, start)
                found["EndPosition"] = _position(text, end)
        out.append(found)
    return out


def missing_context(
    policies: Sequence[Policy],
    action: str,
    resource: str,
    context: Mapping[str, ContextValue],
) -> list[str]:
    """Condition keys of the statements that match the action and resource (conditions aside)
    that the context does not carry, as first written, once each."""
    ctx = RequestContext(context)
    given = {canonical_key(k) for k, v in context.items() if v not in ("", [])}
    lowered = action.lower()
    out: dict[str, str] = {}
    for policy in policies:
        for statement in policy.candidates(lowered):
            if not statement.actions.matches(lowered):
                continue
            if statement.resources is not None and not statement.resources.matches(resource, ctx):
                continue
            for condition in statement.conditions:
                key = condition.canonical_key
                if key not in given and key not in out:
                    out[key] = condition.key
    return list(out.values())


def _result(
    action: str,
    resource: str,
    decision: Decision,
    *,
    policies: Sequence[Policy],
    boundary: Policy | None,
    context: Mapping[str, ContextValue],
    texts: Mapping[str, str],
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "EvalActionName": action,
        "EvalResourceName": resource,
        "EvalDecision": decision.decision,
        "MatchedStatements": _statements(decision, texts),
        "MissingContextValues": missing_context(
            [*policies, *((boundary,) if boundary else ())], action, resource, context
        ),
    }
    if boundary is not None:
        alone = evaluate(action=action, resource=resource, context=context, identity=[boundary])
        out["PermissionsBoundaryDecisionDetail"] = {"AllowedByPermissionsBoundary": alone.allowed}
    return out


# --- actions ---------------------------------------------------------------------------------


def _parse_principal(arn: str, account: str) -> tuple[str, str] | None:
    found = _PRINCIPAL.fullmatch(arn.strip())
    if found is None or found["account"] != account:
        return None
    return found["kind"], found["name"]


def source_arn(call: Call) -> str:
    """What ``SimulatePrincipalPolicy`` is authorized on: the principal's canonical ARN (a path
    in the given ARN is dropped, as the broker has none), else the parameter as given."""
    given = str(call.params.get("PolicySourceArn", ""))
    parsed = _parse_principal(given, call.api.settings.server.account_id)
    return call.arn(*parsed) if parsed else given


async def _caller_context(call: Call) -> dict[str, ContextValue]:
    """``CallerArn`` (a user ARN): the keys a request by that user carries."""
    caller = call.params.get("CallerArn")
    if not caller:
        return {}
    parsed = _parse_principal(str(caller), call.api.settings.server.account_id)
    if parsed is None or parsed[0] != "user":
        raise IamInvalidInput(
            "bad_caller_arn", public_message="CallerArn must be the ARN of an IAM user."
        )
    user = await call.api.iam.resolve_user(parsed[1])
    return {
        "broker:PrincipalArn": call.arn("user", user.name),
        "broker:username": user.name,
        "broker:userid": user.id,
    }


async def simulate_principal_policy(call: Call) -> Result:
    _unsupported(call)
    given = str(call.params["PolicySourceArn"])
    parsed = _parse_principal(given, call.api.settings.server.account_id)
    if parsed is None:
        if _PRINCIPAL.fullmatch(given.strip()):
            raise IamNoSuchEntity(
                "other_account", public_message=f"No principal {given} in this account."
            )
        raise IamInvalidInput(
            "bad_policy_source_arn",
            public_message="PolicySourceArn must be the ARN of an IAM user, group or role.",
        )
    texts: dict[str, str] = {}
    extra = _policies(call, "PolicyInputList", texts)
    boundary = _boundary(call, texts)
    entries = _context(call)
    pairs = _pairs(call)
    simulator = Simulator(call.api.authorizer, call.api.iam)
    target: Target = await simulator.resolve(call.arn(*parsed))
    caller = await _caller_context(call)
    context = merge_context(merge_context(target.context, caller), entries)
    in_force = boundary if boundary is not None else target.boundary
    results = []
    for action, resource in pairs:
        sim = await simulator.simulate(
            action=action,
            resource=resource,
            principal=target,
            context=merge_context(caller, entries),
            policies=extra,
            boundary=boundary,
        )
        results.append(
            _result(
                action,
                resource,
                sim.decision,
                policies=[*target.identity, *extra],
                boundary=in_force,
                context=context,
                texts=texts,
            )
        )
    return {"EvaluationResults": results}


async def simulate_custom_policy(call: Call) -> Result:
    _unsupported(call)
    texts: dict[str, str] = {}
    policies = _policies(call, "PolicyInputList", texts)
    if not policies:
        raise IamInvalidInput(
            "policy_input_required", public_message="PolicyInputList must hold a policy."
        )
    boundary = _boundary(call, texts)
    context = merge_context(await _caller_context(call), _context(call))
    results = []
    for action, resource in _pairs(call):
        sim = simulate_documents(
            action=action,
            resource=resource,
            context=context,
            policies=policies,
            boundary=boundary,
        )
        results.append(
            _result(
                action,
                resource,
                sim.decision,
                policies=policies,
                boundary=boundary,
                context=context,
                texts=texts,
            )
        )
    return {"EvaluationResults": results}


ACTIONS = (
    Action(
        "SimulatePrincipalPolicy",
        simulate_principal_policy,
        source_arn,
        mutates=False,
        page="EvaluationResults",
    ),
    Action(
        "SimulateCustomPolicy",
        simulate_custom_policy,
        anything,
        mutates=False,
        page="EvaluationResults",
    ),
)
