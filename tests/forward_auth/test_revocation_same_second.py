"""A credential issued *after* a revocation, within the same second, must be accepted.

Found by tests/e2e/test_two_processes.py (at random: a sign-in right after
``broker admin roles revoke-sessions``): tokens carried a whole-second ``iat`` (``int(now)``)
while a revocation records ``before`` to the fraction, and ``RevocationState.is_revoked`` voids
``issued_at <= before``. A session made 0.3 s after the revocation had ``iat`` = the revocation's
second, so it was dead on arrival: the login was audited as a success, yet the user landed on the
login page again. Rounding ``before`` down would let credentials of that second issued *before*
the revocation live; so tokens now carry their issue time to the millisecond, rounded down
(``tokens.issue_time``).
"""

from __future__ import annotations

import time

import jwt
import pytest

from broker.clock import FrozenClock
from broker.domain.tokens import issue_time
from tests.conftest import RunningBroker
from tests.forward_auth.conftest import VIEWER, BrokerStarter, session_token
from tests.forward_auth.test_auth_endpoint import APP, ask, cookie, nginx


async def _revoke(b: RunningBroker, kind: str, token: str) -> None:
    broker = b.broker
    if kind == "role":
        await broker.offboarding.revoke_role_sessions("viewer", actor="test")
    elif kind == "user":
        user = await broker.store.find_user("corp", "bob")
        assert user is not None
        await broker.offboarding.revoke_user_sessions(user.id, actor="test")
    else:  # the user signs out of that session
        await broker.sessions.end(broker.sessions.verify(token), reason="logout")


@pytest.mark.parametrize("kind", ["role", "user", "session"])
async def test_a_session_issued_just_after_a_revocation_in_the_same_second_works(
    start_broker: BrokerStarter, kind: str
) -> None:
    clock = FrozenClock(float(int(time.time())) + 0.2)
    b = await start_broker(access={"viewer": VIEWER}, clock=clock)
    before = await session_token(b, "viewer")
    status, _, _ = await ask(b, nginx(APP + "/x", **cookie(before)))
    assert status == 200
    clock.advance(0.3)
    await _revoke(b, kind, before)
    status, _, _ = await ask(b, nginx(APP + "/x", **cookie(before)))
    assert status == 401  # issued before the revocation: ended

    clock.advance(0.3)  # after the revocation, in the same second
    after = await session_token(b, "viewer")
    status, headers, body = await ask(b, nginx(APP + "/x", **cookie(after)))
    assert status == 200, body
    status, _, _ = await ask(b, nginx(APP + "/x", **cookie(before)))
    assert status == 401  # and the old one stays ended
    # the assertion carries the same millisecond issue time
    claims = jwt.decode(headers["X-Auth-Request-Assertion"], options={"verify_signature": False})
    assert claims["iat"] == claims["nbf"] == issue_time(clock.now())
    assert int(claims["iat"]) == int(clock.now() - 0.6)  # all within one second


async def test_a_session_issued_at_the_instant_of_a_role_revocation_is_ended(
    start_broker: BrokerStarter,
) -> None:
    """Fail closed: a revocation voids what was issued up to and at its time."""
    clock = FrozenClock(float(int(time.time())) + 0.5)
    b = await start_broker(access={"viewer": VIEWER}, clock=clock)
    await b.broker.offboarding.revoke_role_sessions("viewer", actor="test")
    same_instant = await session_token(b, "viewer")
    status, _, _ = await ask(b, nginx(APP + "/x", **cookie(same_instant)))
    assert status == 401
