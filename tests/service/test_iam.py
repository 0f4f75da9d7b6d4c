"""Managed policies, groups, and policies attached to users, groups and roles: what an
administrator can change (and is refused), and what is then in force — through the authorizer
for roles, and the simulator for users and groups."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from broker.errors import AlreadyExists, BrokerError, Conflict, InvalidRequest, NotFound
from broker.service.simulate import Simulator
from broker.storage.base import User
from tests.conftest import E2E_ROLES, BrokerFactory, RunningBroker

ACCOUNT = "000000000000"
READ_ONLY = {
    "Version": "2012-10-17",
    "Statement": [{"Sid": "Read", "Effect": "Allow", "Action": ["s3:Get*", "s3:List*"],
                   "Resource": "*"}],
}  # fmt: skip
WRITE = {
    "Version": "2012-10-17",
    "Statement": [{"Sid": "Write", "Effect": "Allow", "Action": "s3:Put*", "Resource": "*"}],
}
NO_SECRETS = {
    "Version": "2012-10-17",
    "Statement": [{"Sid": "NoSecrets", "Effect": "Deny", "Action": "s3:*",
                   "Resource": "arn:aws:s3:::secrets/*"}],
}  # fmt: skip
OWN_PREFIX = {
    "Version": "2012-10-17",
    "Statement": [{"Sid": "Home", "Effect": "Allow", "Action": "s3:*",
                   "Resource": "arn:aws:s3:::home/${aws:username}/*"}],
}  # fmt: skip
ONLY_S3_GET = {
    "Version": "2012-10-17",
    "Statement": [{"Sid": "Bound", "Effect": "Allow", "Action": "s3:Get*", "Resource": "*"}],
}
ROLE_TABLES = """
[roles.reader]
trust_policy = "local-admin-trust.json"
managed_policies = ["ReadOnly", "arn:broker:iam::000000000000:policy/NoSecrets"]

[policies.ReadOnly]
document = "readonly.json"

[policies.NoSecrets]
document = "nosecrets.json"
"""


@pytest.fixture
async def running(broker_factory: BrokerFactory, tmp_path: Path) -> RunningBroker:
    directory = tmp_path / "broker"
    directory.mkdir()
    (directory / "readonly.json").write_text(json.dumps(READ_ONLY))
    (directory / "nosecrets.json").write_text(json.dumps(NO_SECRETS))
    return await broker_factory(roles={"local-admin": E2E_ROLES["local-admin"]}, extra=ROLE_TABLES)


async def a_user(rb: RunningBroker, name: str, provider: str = "corp") -> User:
    user = User(id=f"id-{provider}-{name}", provider=provider, subject=f"sub-{name}", name=name)
    return await rb.broker.store.create_user(user)  # type: ignore[no-any-return]


async def simulate(rb: RunningBroker, principal: str, action: str, resource: str) -> Any:
    b = rb.broker
    result = await Simulator(b.authorizer, b.iam).simulate(
        action=action, resource=resource, principal=principal
    )
    return result


@contextlib.contextmanager
def refused(error: type[BrokerError], pattern: str) -> Iterator[None]:
    """Raises ``error`` whose public message (what the admin reads) matches ``pattern``."""
    with pytest.raises(error) as e:
        yield
    assert re.search(pattern, e.value.public_message), e.value.public_message


def sids(result: Any) -> list[tuple[str, str]]:
    return [(m.policy, m.sid) for m in result.decision.matched_statements]


# --- config ------------------------------------------------------------------------------------


async def test_config_policies_are_reconciled_and_attached_to_config_roles(
    running: RunningBroker,
) -> None:
    b = running.broker
    names = [(p.name, p.source) for p in await b.iam.list_policies()]
    assert names == [("NoSecrets", "config"), ("ReadOnly", "config")]
    reader = f"arn:broker:iam::{ACCOUNT}:role/reader"
    r = await simulate(running, "reader", "s3:GetObject", "arn:aws:s3:::data/x")
    assert (r.decision.decision, sids(r)) == ("allowed", [("policy/ReadOnly", "Read")])
    assert r.principal == reader
    r = await simulate(running, reader, "s3:GetObject", "arn:aws:s3:::secrets/x")
    assert (r.decision.decision, sids(r)) == ("explicitDeny", [("policy/NoSecrets", "NoSecrets")])
    r = await simulate(running, "reader", "s3:PutObject", "arn:aws:s3:::data/x")
    assert r.decision.decision == "implicitDeny"
    detail = await b.iam.get_policy("ReadOnly")
    assert [(u.principal_type, u.principal) for u in detail.uses] == [("role", "reader")]


async def test_config_policies_and_roles_are_read_only(running: RunningBroker) -> None:
    iam = running.broker.iam
    with refused(Conflict, "declared in the config file"):
        await iam.update_policy("ReadOnly", WRITE, actor="t")
    with refused(Conflict, "declared in the config file"):
        await iam.delete_policy("arn:broker:iam::000000000000:policy/ReadOnly", actor="t")
    await iam.create_policy("Write", WRITE, actor="t")
    with refused(Conflict, r"role 'reader' is declared in the config file"):
        await iam.attach_policy("role", "reader", "Write", actor="t")


# --- managed policies --------------------------------------------------------------------------


async def test_managed_policy_lifecycle_is_audited(running: RunningBroker) -> None:
    b = running.broker
    created = await b.iam.create_policy("Write", json.dumps(WRITE), description="w", actor="op")
    assert (created.name, created.source, created.description) == ("Write", "api", "w")
    with refused(AlreadyExists, "already exists"):
        await b.iam.create_policy("Write", WRITE, actor="op")
    updated = await b.iam.update_policy("Write", READ_ONLY, actor="op")
    assert updated.document == READ_ONLY
    assert updated.updated_at > created.updated_at
    await b.iam.delete_policy("Write", actor="op")
    with refused(NotFound, "no policy named 'Write'"):
        await b.iam.get_policy("Write")
    events = [(e.action, e.principal, dict(e.details)) for e in await b.store.list_audit()]
    assert [e for e in events if e[0].startswith("iam.")] == [
        ("iam.DeletePolicy", "op", {"policy": "Write"}),
        ("iam.CreatePolicyVersion", "op", {"policy": "Write"}),
        ("iam.CreatePolicy", "op", {"policy": "Write"}),
    ]


BAD_POLICIES: list[tuple[str, str, Any, type[BrokerError], str]] = [
    ("bad-name", "no spaces", WRITE, InvalidRequest, "policy names are"),
    ("not-json", "P", "{nope", InvalidRequest, "is not a valid policy"),
    ("no-effect", "P", {"Statement": [{"Action": "*", "Resource": "*"}]}, InvalidRequest,
     "Statement[0].Effect"),
    ("trust-as-permission", "P", E2E_ROLES["local-admin"], InvalidRequest, "Principal"),
    ("too-large", "P", {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": f"s3:Get{'x' * 40}{i}", "Resource": "*"}
        for i in range(200)]}, InvalidRequest, "at most 6144"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "doc", "error", "fragment"),
    [c[1:] for c in BAD_POLICIES],
    ids=[c[0] for c in BAD_POLICIES],
)
async def test_bad_policies_are_refused_and_nothing_is_stored(
    running: RunningBroker, name: str, doc: Any, error: type[BrokerError], fragment: str
) -> None:
    b = running.broker
    with pytest.raises(error) as e:
        await b.iam.create_policy(name, doc, actor="op")
    assert fragment in e.value.public_message
    assert [p.name for p in await b.iam.list_policies()] == ["NoSecrets", "ReadOnly"]


async def test_an_attached_policy_cannot_be_deleted(running: RunningBroker) -> None:
    b = running.broker
    alice = await a_user(running, "alice")
    await b.iam.create_policy("Write", WRITE, actor="op")
    await b.iam.attach_policy("user", "alice", "Write", actor="op")
    await b.iam.create_policy("Bound", ONLY_S3_GET, actor="op")
    await b.iam.set_boundary("user", alice.id, "Bound", actor="op")
    with refused(Conflict, "attached to user id-corp-alice"):
        await b.iam.delete_policy("Write", actor="op")
    with refused(Conflict, r"user id-corp-alice \(boundary\)"):
        await b.iam.delete_policy("Bound", actor="op")
    await b.iam.detach_policy("user", "alice", "Write", actor="op")
    await b.iam.delete_policy("Write", actor="op")
    with refused(NotFound, "not attached"):
        await b.iam.detach_policy("user", "alice", "Write", actor="op")


# --- users and groups --------------------------------------------------------------------------


async def test_user_policies_come_from_the_user_and_its_groups(running: RunningBroker) -> None:
    b = running.broker
    await a_user(running, "alice")
    await b.iam.create_policy("Write", WRITE, actor="op")
    await b.iam.create_group("ops", actor="op")
    await b.iam.attach_policy("group", "ops", "NoSecrets", actor="op")
    await b.iam.put_inline_policy("group", "ops", "write", WRITE, actor="op")
    await b.iam.put_inline_policy("user", "alice", "home", OWN_PREFIX, actor="op")
    await b.iam.attach_policy("user", "alice", "ReadOnly", actor="op")
    alice = f"arn:broker:iam::{ACCOUNT}:user/alice"

    r = await simulate(running, alice, "s3:GetObject", "arn:aws:s3:::secrets/x")
    assert r.decision.decision == "allowed"  # not in ops yet
    await b.iam.add_user_to_group("ops", alice, actor="op")
    r = await simulate(running, alice, "s3:GetObject", "arn:aws:s3:::secrets/x")
    assert (r.decision.decision, sids(r)) == ("explicitDeny", [("policy/NoSecrets", "NoSecrets")])
    r = await simulate(running, alice, "s3:PutObject", "arn:aws:s3:::data/x")
    assert (r.decision.decision, sids(r)) == ("allowed", [("group/ops/write", "Write")])
    # the user's own inline policy, with ${aws:username} substituted
    r = await simulate(running, alice, "s3:DeleteObject", "arn:aws:s3:::home/alice/k")
    assert (r.decision.decision, sids(r)) == ("allowed", [("user/alice/home", "Home")])
    r = await simulate(running, alice, "s3:DeleteObject", "arn:aws:s3:::home/bob/k")
    assert r.decision.decision == "implicitDeny"
    assert r.principal == alice
    assert r.context["broker:username"] == "alice"

    detail = await b.iam.describe("user", "alice")
    assert (detail.attached.managed, list(detail.attached.inline), detail.groups) == (
        ("ReadOnly",),
        ["home"],
        ("ops",),
    )
    group = f"arn:broker:iam::{ACCOUNT}:group/ops"
    r = await simulate(running, group, "s3:PutObject", "arn:aws:s3:::data/x")
    assert (r.decision.decision, r.principal) == ("allowed", group)
    await b.iam.remove_user_from_group("ops", "alice", actor="op")
    r = await simulate(running, alice, "s3:PutObject", "arn:aws:s3:::data/x")
    assert r.decision.decision == "implicitDeny"


async def test_a_boundary_limits_what_a_user_policy_allows(running: RunningBroker) -> None:
    b = running.broker
    await a_user(running, "alice")
    await b.iam.create_policy("Write", WRITE, actor="op")
    await b.iam.create_policy("Bound", ONLY_S3_GET, actor="op")
    await b.iam.attach_policy("user", "alice", "Write", actor="op")
    await b.iam.attach_policy("user", "alice", "ReadOnly", actor="op")
    alice = f"arn:broker:iam::{ACCOUNT}:user/alice"
    assert (await simulate(running, alice, "s3:PutObject", "b")).decision.decision == "allowed"
    await b.iam.set_boundary("user", "alice", "Bound", actor="op")
    r = await simulate(running, alice, "s3:PutObject", "b")
    assert r.decision.decision == "implicitDeny"
    r = await simulate(running, alice, "s3:GetObject", "b")
    assert (r.decision.decision, sids(r)) == (
        "allowed",
        [("policy/ReadOnly", "Read"), ("policy/Bound", "Bound")],
    )
    await b.iam.set_boundary("user", "alice", None, actor="op")
    assert (await simulate(running, alice, "s3:PutObject", "b")).decision.decision == "allowed"
    with refused(InvalidRequest, "groups have no permissions boundary"):
        await b.iam.set_boundary("group", "ops", "Bound", actor="op")


async def test_users_are_found_by_id_name_or_arn_and_ambiguity_is_refused(
    running: RunningBroker,
) -> None:
    iam = running.broker.iam
    corp = await a_user(running, "sam", "corp")
    assert (await iam.resolve_user("sam")).id == corp.id
    assert (await iam.resolve_user(f"arn:broker:iam::{ACCOUNT}:user/sam")).id == corp.id
    partner = await a_user(running, "sam", "partner")
    with refused(InvalidRequest, "2 users are named 'sam'"):
        await iam.resolve_user("sam")
    assert (await iam.resolve_user(partner.id)).id == partner.id
    with refused(NotFound, "no user named 'nobody'"):
        await iam.resolve_user(f"arn:broker:iam::{ACCOUNT}:user/nobody")
    with refused(NotFound, "no user named 'nobody'"):
        await simulate(running, f"arn:broker:iam::{ACCOUNT}:user/nobody", "s3:GetObject", "b")
    with refused(NotFound, "no group named 'nobody'"):
        await simulate(running, f"arn:broker:iam::{ACCOUNT}:group/nobody", "s3:GetObject", "b")


async def test_groups_are_deleted_only_when_empty(running: RunningBroker) -> None:
    b = running.broker
    await a_user(running, "alice")
    await b.iam.create_group("ops", description="on call", actor="op")
    with refused(AlreadyExists, "already exists"):
        await b.iam.create_group("ops", actor="op")
    await b.iam.add_user_to_group("ops", "alice", actor="op")
    await b.iam.add_user_to_group("ops", "alice", actor="op")  # idempotent
    await b.iam.put_inline_policy("group", "ops", "w", WRITE, actor="op")
    with refused(Conflict, "1 members, 0 attached and 1 inline"):
        await b.iam.delete_group("ops", actor="op")
    await b.iam.remove_user_from_group("ops", "alice", actor="op")
    with refused(NotFound, "is not in group"):
        await b.iam.remove_user_from_group("ops", "alice", actor="op")
    await b.iam.delete_inline_policy("group", "ops", "w", actor="op")
    await b.iam.delete_group("ops", actor="op")
    assert await b.iam.list_groups() == []


# --- roles created through the store follow their attachments ---------------------------------


async def test_api_role_attachments_take_effect_on_refresh(running: RunningBroker) -> None:
    from broker.storage.base import RoleRecord

    b = running.broker
    await b.store.put_role(
        RoleRecord("api", "", E2E_ROLES["local-admin"], [], None, 3600, "api", 1.0, 1.0)
    )
    await b.authorizer.refresh()
    assert (await simulate(running, "api", "s3:GetObject", "b")).decision.decision == (
        "implicitDeny"
    )
    await b.iam.attach_policy("role", "api", "ReadOnly", actor="op")
    await b.authorizer.refresh()
    first = b.authorizer.role(b.authorizer.role_arn("api"))
    assert (await simulate(running, "api", "s3:GetObject", "b")).decision.decision == "allowed"
    await b.authorizer.refresh()
    assert b.authorizer.role(b.authorizer.role_arn("api")) is first  # unchanged: not recompiled
    await b.iam.create_policy("Write", WRITE, actor="op")
    await b.iam.attach_policy("role", "api", "Write", actor="op")
    await b.iam.update_policy("Write", NO_SECRETS, actor="op")
    await b.authorizer.refresh()
    r = await simulate(running, "api", "s3:PutObject", "arn:aws:s3:::secrets/x")
    assert (r.decision.decision, sids(r)) == ("explicitDeny", [("policy/Write", "NoSecrets")])
