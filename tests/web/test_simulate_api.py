"""POST /v1/simulate against a running broker: who may call it, what it answers, bad input."""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import pytest

from broker.domain.claims import Identity
from broker.storage.base import RoleRecord, User
from tests.conftest import E2E_ROLES, BrokerFactory, RunningBroker

VIEWER = {
    "Version": "2012-10-17",
    "Statement": [
        {"Sid": "Grafana", "Effect": "Allow", "Action": "http:*",
         "Resource": "https://grafana.example.com/*"},
        {"Sid": "NoAdmin", "Effect": "Deny", "Action": "http:*",
         "Resource": "https://grafana.example.com/admin/*"},
    ],
}  # fmt: skip
SIMULATOR = {
    "Version": "2012-10-17",
    "Statement": [
        {"Sid": "Sim", "Effect": "Allow",
         "Action": ["iam:SimulatePrincipalPolicy", "iam:SimulateCustomPolicy"], "Resource": "*"}
    ],
}  # fmt: skip


async def token_for(rb: RunningBroker, role: str) -> str:
    b = rb.broker
    user = await b.store.find_user("local", "admin")
    assert user is not None
    identity = Identity(provider="local", subject="admin", name="admin", user_id=user.id)
    _, token = await b.sessions.create(identity, b.roles.arn(role), max_session_duration=3600)
    return str(token)


@pytest.fixture
async def running(broker_factory: BrokerFactory) -> RunningBroker:
    rb = await broker_factory(roles={"local-admin": E2E_ROLES["local-admin"]})
    b = rb.broker
    now = time.time()
    trust = E2E_ROLES["local-admin"]
    for name, policies in (("viewer", [VIEWER]), ("auditor", [SIMULATOR])):
        await b.store.put_role(RoleRecord(name, "", trust, policies, None, 3600, "api", now, now))
    await b.authorizer.refresh()
    return rb


async def post(rb: RunningBroker, body: Any, token: str | None) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{rb.url}/v1/simulate", json=body, headers=headers) as r,
    ):
        return r.status, await r.json()


REQ = {"action": "http:GET", "resource": "https://grafana.example.com/admin/x"}


async def test_simulate_a_role(running: RunningBroker) -> None:
    status, body = await post(
        running, {**REQ, "principal": "viewer"}, await token_for(running, "auditor")
    )
    assert status == 200
    assert body["decision"] == "explicitDeny"
    assert body["matched_statements"] == [
        {"policy": "viewer/policy[0]", "sid": "NoAdmin", "index": 1, "effect": "Deny"}
    ]
    assert body["principal"].endswith(":role/viewer")


async def test_simulate_by_arn_with_session_policy(running: RunningBroker) -> None:
    token = await token_for(running, "auditor")
    session = {"Version": "2012-10-17", "Statement": [
        {"Sid": "OnlyD", "Effect": "Allow", "Action": "http:GET",
         "Resource": "https://grafana.example.com/d/*"}]}  # fmt: skip
    arn = running.broker.authorizer.role_arn("viewer")
    body = {"action": "http:GET", "principal": arn, "session_policies": [session]}
    status, out = await post(
        running, {**body, "resource": "https://grafana.example.com/d/1"}, token
    )
    assert (status, out["decision"]) == (200, "allowed")
    assert [m["sid"] for m in out["matched_statements"]] == ["Grafana", "OnlyD"]
    status, out = await post(running, {**body, "resource": "https://grafana.example.com/x"}, token)
    assert (status, out["decision"]) == (200, "implicitDeny")


async def test_simulate_custom_policies_with_context(running: RunningBroker) -> None:
    policy = {"Version": "2012-10-17", "Statement": [
        {"Sid": "Office", "Effect": "Allow", "Action": "s3:*", "Resource": "*",
         "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}}]}  # fmt: skip
    token = await token_for(running, "auditor")
    body = {"action": "s3:GetObject", "resource": "arn:aws:s3:::b/k", "policies": [policy]}
    status, out = await post(running, {**body, "context": {"aws:SourceIp": "10.1.1.1"}}, token)
    assert (status, out["decision"], out["principal"]) == (200, "allowed", None)
    status, out = await post(running, {**body, "context": {"aws:SourceIp": "11.1.1.1"}}, token)
    assert (status, out["decision"]) == (200, "implicitDeny")


async def test_caller_needs_the_simulate_permission(running: RunningBroker) -> None:
    status, body = await post(
        running, {**REQ, "principal": "viewer"}, await token_for(running, "viewer")
    )
    assert status == 403
    assert body["error"] == "access_denied"
    assert "iam:SimulatePrincipalPolicy" in body["error_description"]


async def test_no_or_bad_credential(running: RunningBroker) -> None:
    status, body = await post(running, REQ, None)
    assert (status, body["error"]) == (401, "unauthenticated")
    status, body = await post(running, REQ, "not-a-token")
    assert status == 401


BAD: list[tuple[str, Any, int, str]] = [
    ("not-an-object", [1], 400, "the body must be a JSON object"),
    ("missing-action", {"resource": "x", "principal": "viewer"}, 400, "'action'"),
    ("bad-action", {"action": "s3", "resource": "x", "principal": "viewer"}, 400, "service:Action"),
    ("unknown-field", {**REQ, "principl": "viewer"}, 400, "unknown field 'principl'"),
    ("unknown-role", {**REQ, "principal": "nobody"}, 404, "no role named 'nobody'"),
    ("unknown-user", {**REQ, "principal": "arn:broker:iam::000000000000:user/bob"}, 404,
     "no user named 'bob'"),
    ("unknown-group", {**REQ, "principal": "arn:broker:iam::000000000000:group/ops"}, 404,
     "no group named 'ops'"),
    ("bad-arn", {**REQ, "principal": "arn:broker:iam::000000000000:thing/x"}, 400,
     "is not a role, user or group ARN"),
    ("bad-context", {**REQ, "principal": "viewer", "context": {"k": {"x": 1}}}, 400,
     "must be a string or a list of strings"),
    ("bad-policy", {**REQ, "policies": [{"Statement": {"Effect": "Maybe"}}]}, 400,
     "policies[0]: Statement.Effect"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("body", "status", "fragment"), [c[1:] for c in BAD], ids=[c[0] for c in BAD]
)
async def test_bad_input(running: RunningBroker, body: Any, status: int, fragment: str) -> None:
    got, out = await post(running, body, await token_for(running, "auditor"))
    assert got == status, out
    assert fragment in out["error_description"]
    if "policies" in body:
        assert out["errors"][0]["fix"]


async def test_simulate_a_user_through_its_group(running: RunningBroker) -> None:
    b = running.broker
    await b.store.create_user(User(id="u-carol", provider="corp", subject="c", name="carol"))
    await b.iam.create_group("viewers", actor="test")
    await b.iam.add_user_to_group("viewers", "carol", actor="test")
    await b.iam.put_inline_policy("group", "viewers", "grafana", VIEWER, actor="test")
    carol = "arn:broker:iam::000000000000:user/carol"
    status, out = await post(
        running, {**REQ, "principal": carol}, await token_for(running, "auditor")
    )
    assert status == 200
    assert (out["decision"], out["principal"]) == ("explicitDeny", carol)
    assert out["matched_statements"] == [
        {"policy": "group/viewers/grafana", "sid": "NoAdmin", "index": 1, "effect": "Deny"}
    ]


async def test_no_permission_reveals_nothing_about_who_exists(running: RunningBroker) -> None:
    """Without iam:SimulatePrincipalPolicy, a real and a made-up user get the same 403."""
    b = running.broker
    await b.store.create_user(User(id="u-dave", provider="corp", subject="d", name="dave"))
    token = await token_for(running, "viewer")
    answers = []
    for name in ("dave", "nobody"):
        principal = f"arn:broker:iam::000000000000:user/{name}"
        status, out = await post(running, {**REQ, "principal": principal}, token)
        answers.append((status, out["error"], out["error_description"].replace(name, "X")))
    assert answers[0] == answers[1]
    assert answers[0][0] == 403
