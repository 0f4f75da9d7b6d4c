"""``POST /v1/simulate``: the policy simulator over HTTP (JSON in, JSON out).

Who may call it: a caller with a broker credential in ``Authorization: Bearer <token>`` whose
role allows

* ``iam:SimulatePrincipalPolicy`` on the simulated principal's ARN, to simulate a role, a user
  or a group (``principal``; checked before it is looked up), or the caller's own credential
  (no ``principal``: its role and session policies), and
* ``iam:SimulateCustomPolicy`` on ``*``, to simulate policy documents alone (``policies`` with no
  principal), as in AWS IAM.

Request body::

    {"action": "http:GET", "resource": "https://app.example.com/x",
     "principal": "dev" | "arn:broker:iam::<account>:role/dev" | "...:user/alice"
                  | "...:group/ops",   (optional)
     "context": {"aws:SourceIp": "10.0.0.1", "aws:TagKeys": ["a", "b"]},   (optional)
     "policies": [<policy>, ...],          identity policies to add (optional)
     "permissions_boundary": <policy>,     replaces the principal's boundary (optional)
     "session_policies": [<policy>, ...]}  (optional)

Answer (200): ``{"decision": "allowed" | "explicitDeny" | "implicitDeny",
"matched_statements": [{"policy", "sid", "index", "effect"}, ...], "principal": <ARN|null>}``.
Errors are JSON ``{"error", "error_description"}`` (400 bad input, with ``errors`` listing
``{path, message, fix}`` for bad policies; 401 no or bad credential; 403 not allowed; 404 no
such role, user or group). Every refusal is audited.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from broker.errors import AccessDenied, BrokerError, InvalidRequest, Unauthenticated
from broker.logs import request_id_var
from broker.policy import Policy, PolicyError
from broker.service.simulate import Simulator, check_context, parse_documents
from broker.service.verified import Credential
from broker.web.bodies import read_json_object
from broker.web.keys import BROKER
from broker.web.request_info import client_ip, request_info

SIMULATE_PRINCIPAL = "iam:SimulatePrincipalPolicy"
SIMULATE_CUSTOM = "iam:SimulateCustomPolicy"
MAX_BODY = 256 * 1024
_FIELDS = frozenset(
    {
        "action",
        "resource",
        "principal",
        "context",
        "policies",
        "permissions_boundary",
        "session_policies",
    }
)


def _error(err: BrokerError, message: str, extra: Mapping[str, Any] | None = None) -> web.Response:
    body: dict[str, Any] = {
        "error": err.code,
        "error_description": message,
        "request_id": request_id_var.get(),
    }
    body.update(extra or {})
    headers = {"WWW-Authenticate": 'Bearer realm="broker"'} if err.status == 401 else None
    return web.json_response(body, status=err.status, headers=headers)


def _bearer(request: web.Request) -> str:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise Unauthenticated(
            "missing_bearer",
            public_message="send a broker credential in Authorization: Bearer <token>",
        )
    return value.strip()


async def _body(request: web.Request) -> dict[str, Any]:
    body = await read_json_object(request, MAX_BODY)
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        raise InvalidRequest(
            "unknown_field",
            public_message=f"unknown field {unknown[0]!r}; known: " + ", ".join(sorted(_FIELDS)),
        )
    for name in ("action", "resource"):
        if not isinstance(body.get(name), str) or not body[name]:
            raise InvalidRequest(
                f"missing_{name}", public_message=f"{name!r} must be a non-empty string"
            )
    if "principal" in body and not isinstance(body["principal"], str):
        raise InvalidRequest("bad_principal", public_message="'principal' must be a string")
    if not isinstance(body.get("context", {}), dict):
        raise InvalidRequest("bad_context", public_message="'context' must be a JSON object")
    for name in ("policies", "session_policies"):
        if not isinstance(body.get(name, []), list):
            raise InvalidRequest(
                f"bad_{name}", public_message=f"{name!r} must be a list of policy documents"
            )
    return body


def _documents(body: Mapping[str, Any]) -> tuple[list[Policy], Policy | None, list[Policy]]:
    policies = parse_documents(body.get("policies", []), "policies")
    sessions = parse_documents(body.get("session_policies", []), "session_policies")
    boundary = None
    if body.get("permissions_boundary") is not None:
        boundary = parse_documents(
            [body["permissions_boundary"]], "permissions_boundary", names=["permissions_boundary"]
        )[0]
    return policies, boundary, sessions


async def simulate(request: web.Request) -> web.Response:
    broker = request.app[BROKER]
    trusted = broker.settings.server.trusted_proxies
    info = request_info(request, trusted)
    caller: Credential | None = None
    try:
        caller = await broker.credentials.verify_fresh(_bearer(request))
        body = await _body(request)
        policies, boundary, sessions = _documents(body)
        context = check_context(body.get("context", {}))
        simulator = Simulator(broker.authorizer, broker.iam)
        target = body.get("principal")
        if target is not None:
            needed, on = SIMULATE_PRINCIPAL, simulator.named_arn(target)
        elif policies:
            needed, on = SIMULATE_CUSTOM, "*"
        else:
            needed, on = SIMULATE_PRINCIPAL, caller.role_arn
        permitted = broker.authorizer.decide(
            caller.principal,
            action=needed,
            resource=on,
            context=broker.authorizer.context_for(
                caller.principal, source_ip=client_ip(request, trusted)
            ),
            session_policies=caller.session_policies,
        )
        if not permitted.allowed:
            raise AccessDenied(
                f"{needed}:{permitted.decision}",
                public_message=f"your role may not {needed} on {on}",
            )
        result = await simulator.simulate(
            action=body["action"],
            resource=body["resource"],
            principal=target,
            credential=caller if target is None and not policies else None,
            context=context,
            policies=policies,
            boundary=boundary,
            session_policies=sessions,
        )
    except PolicyError as e:
        await broker.auditor.record(
            "simulate", "failure", req=info, principal=_who(caller), reason="malformed_policy"
        )
        errors = [
            {"path": p, "message": m, "fix": f} for (p, m), f in zip(e.errors, e.fixes, strict=True)
        ]
        return _error(e, str(e), {"errors": errors})
    except BrokerError as e:
        await broker.auditor.record(
            "simulate", "failure", req=info, principal=_who(caller), reason=e.reason
        )
        return _error(e, e.public_message)
    return web.json_response(result.to_dict())


def _who(caller: Credential | None) -> str:
    return caller.role_arn if caller is not None else ""
