"""``GenerateServiceLastAccessedDetails`` / ``GetServiceLastAccessedDetails``: which services an
entity's policies allow, and when each was last used (from the access activity).

The entity (``Arn``) is a user, a role, a group or a managed policy. The services are the action
prefixes (``iam``, ``sts``, ``http``, ``s3`` ...) that its policies' ``Allow`` statements grant
(a user's: its own and its groups'; a wildcard prefix such as ``*`` stands for the broker's own
services and every service in the activity). Whose activity counts: the user, the role, a group's
members, a policy's principals (a group's: its members). The job is computed when generated (the
report is small: one row per service) and kept in ``report_jobs`` (kind
``service_last_accessed``); only ``SERVICE_LEVEL`` granularity is offered.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from broker.domain.policy.wildcard import Glob
from broker.errors import IamInvalidInput, IamNoSuchEntity
from broker.service.iam_api.principals import group_named, role_named, user_named
from broker.service.iam_api.registry import Action, Call, Result, anything, given_arn
from broker.service.unused import granted_action_patterns
from broker.storage.base import ReportJob, Store

KIND = "service_last_accessed"
CHUNK = 500

#: Names of the services the broker itself decides, and of common AWS ones (else the prefix).
SERVICE_NAMES = {
    "http": "HTTP applications behind the broker's forward-auth",
    "iam": "AWS Identity and Access Management",
    "sts": "AWS Security Token Service",
    "s3": "Amazon S3",
}
BROKER_SERVICES = ("http", "iam", "sts")

_ARN = re.compile(
    r"arn:broker:iam::(?P<account>[0-9]{12}):(?P<kind>user|role|group|policy)/(?P<name>.+)"
)


async def _documents(call: Call, kind: str, name: str) -> list[Mapping[str, Any]]:
    """The identity policy documents of a user (with its groups'), role, group or policy."""
    store = call.api.store
    if kind == "policy":
        policy = await store.get_managed_policy(name)
        if policy is None:
            raise IamNoSuchEntity(
                f"no_such_policy:{name}", public_message=f"Policy {name} does not exist."
            )
        return [policy.document]
    docs: list[Mapping[str, Any]] = []
    owners: list[tuple[Any, str]] = []
    if kind == "role":
        role = await role_named(call, name, write=False)
        docs.extend(role.policies)
        owners.append(("role", role.name))
    elif kind == "group":
        owners.append(("group", (await group_named(call, name)).name))
    else:
        user = await user_named(call, name)
        owners.append(("user", user.id))
        owners.extend(("group", g) for g in await store.user_groups(user.id))
    for owner_kind, owner in owners:
        attached = await store.attached_policies(owner_kind, owner)
        docs.extend(attached.inline.values())
        for managed in attached.managed:
            policy = await store.get_managed_policy(managed)
            if policy is not None:
                docs.append(policy.document)
    return docs


async def _principals(call: Call, kind: str, name: str) -> list[str]:
    """Whose activity counts for the entity (ARNs)."""
    arn, store = call.arn, call.api.store
    if kind in ("user", "role"):
        return [arn(kind, name)]
    user_ids: list[str] = []
    roles: list[str] = []
    groups = [name] if kind == "group" else []
    if kind == "policy":
        for use in await store.policy_uses(name):
            if use.principal_type == "role":
                roles.append(arn("role", use.principal))
            elif use.principal_type == "user":
                user_ids.append(use.principal)
            else:
                groups.append(use.principal)
    for g in groups:
        user_ids.extend(await store.group_members(g))
    names: list[str] = []
    for start in range(0, len(user_ids), CHUNK):
        found = await store.user_names(user_ids[start : start + CHUNK])
        names.extend(arn("user", n) for n in found.values())
    return sorted(set(roles) | set(names))


def _namespaces(patterns: Iterable[str], observed: Iterable[str]) -> list[str]:
    """The service prefixes ``patterns`` grant; a wildcard prefix matches the broker's
    services and those ``observed``."""
    known = set(BROKER_SERVICES) | set(observed)
    out: set[str] = set()
    for p in patterns:
        prefix = p.split(":", 1)[0].lower() if ":" in p else p.lower()
        if "*" in prefix or "?" in prefix:
            glob = Glob.of(prefix, ignore_case=True)
            out.update(n for n in known if glob.matches(n))
        elif prefix:
            out.add(prefix)
    return sorted(out)


async def _services(store: Store, principals: Sequence[str], patterns: list[str]) -> list[Any]:
    last: dict[str, tuple[float, str]] = {}  # namespace -> (time, principal)
    entities: dict[str, set[str]] = {}
    for start in range(0, len(principals), CHUNK):
        for principal, action, at in await store.activity_summary(
            principals[start : start + CHUNK]
        ):
            ns = action.split(":", 1)[0].lower()
            entities.setdefault(ns, set()).add(principal)
            if ns not in last or at > last[ns][0]:
                last[ns] = (at, principal)
    services = []
    for ns in _namespaces(patterns, last):
        row: dict[str, Any] = {
            "ServiceName": SERVICE_NAMES.get(ns, ns),
            "ServiceNamespace": ns,
            "TotalAuthenticatedEntities": len(entities.get(ns, ())),
        }
        if ns in last:
            row["LastAuthenticated"] = last[ns][0]
            row["LastAuthenticatedEntity"] = last[ns][1]
        services.append(row)
    return services


async def generate(call: Call) -> Result:
    arn = str(call.params["Arn"])
    m = _ARN.fullmatch(arn)
    if m is None:
        raise IamInvalidInput("bad_arn", public_message=f"ARN {arn} is not valid."[:300])
    kind, name = m["kind"], m["name"]
    if arn != call.arn(kind, name):
        raise IamNoSuchEntity(
            "foreign_arn", public_message=f"The entity {arn} cannot be found."[:300]
        )
    if call.params.get("Granularity", "SERVICE_LEVEL") != "SERVICE_LEVEL":
        raise IamInvalidInput(
            "unsupported_granularity",
            public_message="This broker offers only SERVICE_LEVEL granularity.",
        )
    patterns = sorted(
        {p for d in await _documents(call, kind, name) for p in granted_action_patterns(d)}
    )
    principals = await _principals(call, kind, name)
    store = call.api.store
    now = call.api.clock.now()
    services = await _services(store, principals, patterns)
    job = ReportJob(
        job_id=str(uuid.uuid4()),
        kind=KIND,
        subject=arn,
        status="COMPLETED",
        created_at=now,
        completed_at=call.api.clock.now(),
        content=json.dumps({"services": services}, sort_keys=True).encode(),
    )
    await store.put_report_job(job)
    return {"JobId": job.job_id}


async def get(call: Call) -> Result:
    job_id = str(call.params["JobId"])
    job = await call.api.store.get_report_job(job_id) if len(job_id) <= 64 else None
    if job is None or job.kind != KIND:
        raise IamNoSuchEntity(
            "no_such_job", public_message=f"No job with id {job_id[:64]} was found."
        )
    services = json.loads(job.content or b"{}").get("services", [])
    return {
        "JobStatus": job.status,
        "JobType": "SERVICE_LEVEL",
        "JobCreationDate": job.created_at,
        "JobCompletionDate": job.completed_at if job.completed_at is not None else job.created_at,
        "ServicesLastAccessed": services,
    }


ACTIONS = (
    Action("GenerateServiceLastAccessedDetails", generate, given_arn("Arn"), mutates=False),
    Action(
        "GetServiceLastAccessedDetails", get, anything, mutates=False, page="ServicesLastAccessed"
    ),
)
