"""The authorizer's IAM users: compiled on first use from the user's, its groups' and its
boundary's policies (the simulator's code), kept in a bounded cache keyed by ARN and user id,
dropped by every refresh; a user not compiled, disabled, deleted or re-created under the same
name allows nothing."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from broker.clock import FrozenClock
from broker.config import load_settings
from broker.service import authorize
from broker.service.authorize import Principal
from broker.service.container import Broker
from broker.storage.base import Group, ManagedPolicyRecord, User
from tests.conftest import E2E_ROLES, write_config

ACCOUNT = "000000000000"
READ = {"Version": "2012-10-17", "Statement": [
    {"Sid": "Read", "Effect": "Allow", "Action": "app:Read", "Resource": "*"}]}  # fmt: skip
WRITE = {"Version": "2012-10-17", "Statement": [
    {"Sid": "Write", "Effect": "Allow", "Action": "app:Write", "Resource": "*"}]}  # fmt: skip


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[Broker]:
    path = write_config(
        tmp_path, port=8000, oidc=None, roles={"local-admin": E2E_ROLES["local-admin"]}
    )
    async with aiohttp.ClientSession() as http:
        b = await Broker.open(load_settings(path), http=http, clock=FrozenClock(time.time()))
        try:
            yield b
        finally:
            await b.close()


def arn(name: str) -> str:
    return f"arn:broker:iam::{ACCOUNT}:user/{name}"


async def make_user(b: Broker, name: str) -> Principal:
    b.clock.now()
    await b.store.create_user(User(id=f"id-{name}", provider="local", subject=name, name=name))
    return Principal(role_arn=arn(name), user_id=f"id-{name}", username=name)


def decision(b: Broker, p: Principal, action: str) -> str:
    ctx = b.authorizer.context_for(p, source_ip="")
    return b.authorizer.decide(p, action=action, resource="r", context=ctx).decision


async def test_a_user_is_compiled_on_first_use_with_its_groups(broker: Broker) -> None:
    b = broker
    now = b.clock.now()
    ci = await make_user(b, "ci")
    await b.store.put_managed_policy(ManagedPolicyRecord("Write", WRITE, created_at=now,
                                                         updated_at=now))  # fmt: skip
    await b.store.put_inline_policy("user", "id-ci", "read", READ)
    await b.store.create_group(Group("g"))
    await b.store.add_group_member("g", "id-ci")
    await b.store.attach_policy("group", "g", "Write")

    assert b.authorizer.needs_prepare(ci)
    assert decision(b, ci, "app:Read") == "implicitDeny"  # not compiled: deny, no store read
    await b.authorizer.prepare(ci)
    assert not b.authorizer.needs_prepare(ci)
    assert decision(b, ci, "app:Read") == "allowed"
    assert decision(b, ci, "app:Write") == "allowed"  # the group's
    assert decision(b, ci, "app:Delete") == "implicitDeny"

    await b.store.remove_group_member("g", "id-ci")
    assert decision(b, ci, "app:Write") == "allowed"  # cached until IAM changes ...
    await b.authorizer.refresh()  # ... which refreshes (here and, polled, everywhere)
    assert b.authorizer.needs_prepare(ci)
    await b.authorizer.prepare(ci)
    assert decision(b, ci, "app:Write") == "implicitDeny"


async def test_disabled_and_impostor_users_allow_nothing(broker: Broker) -> None:
    b = broker
    ci = await make_user(b, "ci")
    await b.store.put_inline_policy("user", "id-ci", "read", READ)
    impostor = Principal(role_arn=arn("ci"), user_id="id-old-ci", username="ci")
    await b.authorizer.prepare(impostor)  # a deleted user's id under a reused name
    assert decision(b, impostor, "app:Read") == "implicitDeny"
    await b.store.set_user_disabled("id-ci", True)
    await b.authorizer.prepare(ci)
    assert decision(b, ci, "app:Read") == "implicitDeny"
    ghost = Principal(role_arn=arn("nobody"), user_id="id-nobody")
    await b.authorizer.prepare(ghost)
    assert decision(b, ghost, "app:Read") == "implicitDeny"


async def test_the_cache_is_bounded(broker: Broker, monkeypatch: pytest.MonkeyPatch) -> None:
    b = broker
    monkeypatch.setattr(authorize, "USER_CACHE_ENTRIES", 2)
    users = [await make_user(b, n) for n in ("a", "b", "c")]
    for u in users:
        await b.store.put_inline_policy("user", u.user_id, "read", READ)
        await b.authorizer.prepare(u)
    assert b.authorizer.needs_prepare(users[0])  # the least recently used went
    assert decision(b, users[0], "app:Read") == "implicitDeny"
    assert [decision(b, u, "app:Read") for u in users[1:]] == ["allowed", "allowed"]
