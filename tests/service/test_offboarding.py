"""Offboarding (``OffboardingService``) on a real store and a frozen clock: disabling a user ends
its sessions and everything derived from them and refuses new logins; enabling lets it sign in
again; a user's or a role's credentials can be ended without disabling anyone; each operation is
audited, a refused one as a failure; another instance on the same store follows at its next
revocation poll."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from broker.clock import FrozenClock
from broker.config import load_settings
from broker.domain.claims import Identity
from broker.errors import (
    AccessDenied,
    AuditUnavailable,
    InvalidCredentials,
    NotFound,
    StoreError,
    Unauthenticated,
)
from broker.service.audit import RequestInfo
from broker.service.container import Broker
from tests.conftest import E2E_ROLES, write_config

ACCOUNT = "000000000000"
REQ = RequestInfo(request_id="t", source_ip="192.0.2.1")
# local-admin: what the local admin signs in as; deploy: chained from it (token exchange, STS)
DEPLOY_TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"AWS": f"arn:broker:iam::{ACCOUNT}:role/local-admin"},
            "Action": "sts:AssumeRole",
        }
    ],
}


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(time.time())


@pytest.fixture
async def broker(tmp_path: Path, clock: FrozenClock) -> AsyncIterator[Broker]:
    path = write_config(
        tmp_path,
        port=8000,
        oidc=None,
        roles={"local-admin": E2E_ROLES["local-admin"], "deploy": DEPLOY_TRUST},
        extra="[login]\nmax_failures_per_user = 50\n",
    )
    async with aiohttp.ClientSession() as http:
        b = await Broker.open(load_settings(path), http=http, clock=clock)
        try:
            yield b
        finally:
            await b.close()


async def advance(b: Broker, clock: FrozenClock, seconds: float = 1.0) -> None:
    """Move time as a running broker sees it: its revocation poll keeps up."""
    clock.advance(seconds)
    await b.poll_revocations()


async def admin_identity(b: Broker) -> Identity:
    user = await b.store.find_user("local", "admin")
    assert user is not None
    return Identity(provider="local", subject="admin", name="admin", user_id=user.id)


async def credentials(b: Broker) -> tuple[str, str]:
    """A session token (role local-admin) and a token-exchange result for role deploy."""
    identity = await admin_identity(b)
    _, session = await b.sessions.create(
        identity, b.roles.arn("local-admin"), max_session_duration=3600
    )
    issued = await b.sts.exchange(session, "access_token", b.roles.arn("deploy"), REQ)
    return session, issued.session_token


def valid(b: Broker, token: str) -> bool:
    """True if it verifies, False if it is revoked (any other refusal fails the test)."""
    try:
        b.credentials.verify(token)
    except Unauthenticated as e:
        if e.reason != "session_revoked":
            raise
        return False
    return True


async def audited(b: Broker, action: str) -> list[tuple[str, str]]:
    return [(e.outcome, e.reason) for e in await b.store.list_audit(action=action)]


async def test_disable_ends_everything_and_refuses_logins_until_enabled(
    broker: Broker, clock: FrozenClock
) -> None:
    b = broker
    session, access = await credentials(b)
    assert valid(b, session)
    assert valid(b, access)
    for _ in range(2):  # the second time too: the token is cached after two verifications
        assert valid(b, access)

    done = await b.offboarding.disable_user("admin", actor="cli:ops", reason="left")
    assert done.sessions_ended == 1
    assert (await b.store.find_user("local", "admin")).disabled  # type: ignore[union-attr]
    assert not valid(b, session)
    assert not valid(b, access)
    (event,) = await b.store.list_audit(action="user.disable")
    assert (event.outcome, event.principal) == ("success", "cli:ops")
    assert event.details["sessions"] == 1
    assert event.details["note"] == "left"

    await advance(b, clock)
    assert b.bootstrap_password is not None
    with pytest.raises(InvalidCredentials, match="user_disabled"):
        await b.login.local_login("admin", b.bootstrap_password, rd=None, role=None, req=REQ)
    # a login that was past its password check when the user was disabled gets no session
    with pytest.raises(AccessDenied, match="user_disabled"):
        await b.login.complete(
            await admin_identity(b), "local-admin", ["local-admin"], rd="/", req=REQ
        )

    await b.offboarding.enable_user("admin", actor="cli:ops")
    assert await audited(b, "user.enable") == [("success", "")]
    assert not valid(b, session)  # what was ended stays ended
    user, _, _ = await b.login.local_login(
        "admin", b.bootstrap_password, rd=None, role=None, req=REQ
    )
    done_login = await b.login.complete(
        await admin_identity(b), "local-admin", ["local-admin"], rd="/", req=REQ
    )
    assert valid(b, done_login.token)
    assert user.name == "admin"


async def test_revoke_user_sessions_ends_credentials_but_not_the_account(
    broker: Broker, clock: FrozenClock
) -> None:
    b = broker
    session, access = await credentials(b)
    done = await b.offboarding.revoke_user_sessions("admin", actor="cli:ops")
    assert done.sessions_ended == 1
    assert not valid(b, session)
    assert not valid(b, access)
    assert not (await b.store.find_user("local", "admin")).disabled  # type: ignore[union-attr]
    assert await audited(b, "user.revoke_sessions") == [("success", "")]
    await advance(b, clock)
    session2, access2 = await credentials(b)  # issued after the revocation: valid
    assert valid(b, session2)
    assert valid(b, access2)


async def test_revoke_role_sessions_ends_only_that_roles_credentials(
    broker: Broker, clock: FrozenClock
) -> None:
    b = broker
    session, access = await credentials(b)
    done = await b.offboarding.revoke_role_sessions("deploy", actor="cli:ops")
    assert done.target == f"arn:broker:iam::{ACCOUNT}:role/deploy"
    assert not valid(b, access)  # the token-exchange result (an STS credential) of role deploy
    assert valid(b, session)  # a local-admin session: another role
    await b.offboarding.revoke_role_sessions(
        f"arn:broker:iam::{ACCOUNT}:role/local-admin", actor="cli:ops"
    )
    assert not valid(b, session)
    assert [o for o, _ in await audited(b, "role.revoke_sessions")] == ["success", "success"]
    await advance(b, clock)
    session2, access2 = await credentials(b)
    assert valid(b, session2)
    assert valid(b, access2)


async def test_unknown_targets_are_refused_and_audited(broker: Broker) -> None:
    b = broker
    with pytest.raises(NotFound):
        await b.offboarding.disable_user("nobody", actor="cli:ops")
    with pytest.raises(NotFound):
        await b.offboarding.revoke_role_sessions("no-such-role", actor="cli:ops")
    assert await audited(b, "user.disable") == [("failure", "no_such_user:nobody")]
    assert await audited(b, "role.revoke_sessions") == [("failure", "no_such_role:no-such-role")]


async def test_another_instance_follows_at_its_next_poll(
    broker: Broker, clock: FrozenClock
) -> None:
    b = broker
    session, access = await credentials(b)
    async with aiohttp.ClientSession() as http:
        other = await Broker.open(b.settings, http=http, clock=clock, bootstrap=False)
        try:
            assert valid(other, session)
            assert valid(other, access)
            await b.offboarding.disable_user("admin", actor="cli:ops")
            await other.poll_revocations()
            assert not valid(other, session)
            assert not valid(other, access)
        finally:
            await other.close()


async def test_enable_is_not_made_without_its_audit_row_and_disable_is_never_held_back(
    broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    b = broker
    session, _ = await credentials(b)

    async def refused(events: object) -> None:
        raise StoreError("audit table is read-only")

    monkeypatch.setattr(b.store, "append_audit_many", refused)
    with pytest.raises(AuditUnavailable):  # the operator learns the row is missing...
        await b.offboarding.disable_user("admin", actor="cli:ops")
    assert (await b.store.find_user("local", "admin")).disabled  # type: ignore[union-attr]
    assert not valid(b, session)  # ...but the user is offboarded all the same
    with pytest.raises(AuditUnavailable):
        await b.offboarding.enable_user("admin", actor="cli:ops")
    assert (await b.store.find_user("local", "admin")).disabled  # type: ignore[union-attr]


async def test_end_session_ends_that_session_and_what_came_from_it(broker: Broker) -> None:
    b = broker
    session, access = await credentials(b)
    other, _ = await credentials(b)
    sid = b.credentials.verify(session).session_id
    done = await b.offboarding.end_session("admin", sid, actor="console:ada")
    assert done.sessions_ended == 1
    assert not valid(b, session)
    assert not valid(b, access)  # derived from it (token exchange): an origin revocation
    assert valid(b, other)  # the user's other session goes on
    user = await b.store.find_user("local", "admin")
    assert user is not None
    live = await b.store.list_user_sessions(user.id, now=b.clock.now())
    assert [s.id for s in live] == [b.credentials.verify(other).session_id]
    # again, or a session that is not this user's: refused, audited, nothing changes
    with pytest.raises(NotFound):
        await b.offboarding.end_session("admin", sid, actor="console:ada")
    with pytest.raises(NotFound):
        await b.offboarding.end_session("admin", "no-such-session", actor="console:ada")
    assert await audited(b, "session.revoke") == [
        ("failure", "no_such_session"),
        ("failure", "no_such_session"),
        ("success", ""),
    ]
