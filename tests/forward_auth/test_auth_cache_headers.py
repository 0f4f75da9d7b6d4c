"""How long a proxy may reuse ``/auth``'s answer (issue 17): an allow says at most
``[proxy] auth_cache_max_age`` (``Cache-Control: max-age``, and nginx's absolute
``X-Accel-Expires``: the end of the current second, because nginx would keep a ``max-age=1``
answer up to 2 s), a credential that ends sooner is never reused, and a denial is never reused
at all."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from broker.clock import FrozenClock
from broker.config import load_settings
from broker.errors import ConfigError
from tests.conftest import RunningBroker, write_config
from tests.forward_auth.conftest import VIEWER, BrokerStarter, session_token
from tests.forward_auth.test_auth_endpoint import APP, ask, cookie, nginx


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(time.time())


@pytest.fixture
async def b(start_broker: BrokerStarter, clock: FrozenClock) -> RunningBroker:
    return await start_broker(access={"viewer": VIEWER}, public=(f"{APP}/public/*",), clock=clock)


def reuse(headers: dict[str, str]) -> str | None:
    if headers.get("Cache-Control") == "no-store":  # nothing may extend what is not reusable
        assert "X-Accel-Expires" not in headers
    return headers.get("Cache-Control")


async def test_an_allow_may_be_reused_until_the_end_of_this_second(
    b: RunningBroker, clock: FrozenClock
) -> None:
    token = await session_token(b, "viewer")
    second = int(clock.now())
    status, headers, _ = await ask(b, {**nginx(f"{APP}/page"), **cookie(token)})
    assert status == 200
    assert reuse(headers) == "max-age=1"
    assert headers["X-Accel-Expires"] == f"@{second}"
    status, headers, _ = await ask(b, nginx(f"{APP}/public/x"))
    assert (status, reuse(headers), headers["X-Accel-Expires"]) == (200, "max-age=1", f"@{second}")
    # The verdict is kept by the broker for longer; the stamp follows the clock, also for a
    # byte-identical repeat answered from the broker's own per-second cache.
    clock.advance(1)
    for _ in range(2):
        status, headers, _ = await ask(b, {**nginx(f"{APP}/page"), **cookie(token)})
        assert (status, headers["X-Accel-Expires"]) == (200, f"@{second + 1}")


async def test_denials_are_never_reused(b: RunningBroker) -> None:
    token = await session_token(b, "viewer")
    unauthenticated = await ask(b, nginx(f"{APP}/page"))
    forbidden = await ask(b, {**nginx(f"{APP}/admin/x"), **cookie(token)})
    malformed = await ask(b, nginx("not a url"))
    for status, headers, _ in (unauthenticated, forbidden, malformed):
        assert status in (401, 403)
        assert reuse(headers) == "no-store"
    assert [unauthenticated[0], forbidden[0], malformed[0]] == [401, 403, 403]


async def test_a_credential_about_to_end_is_not_reused(
    b: RunningBroker, clock: FrozenClock
) -> None:
    token = await session_token(b, "viewer", max_session_duration=3)
    clock.advance(1.5)  # 1.5 s left
    status, headers, _ = await ask(b, {**nginx(f"{APP}/soon"), **cookie(token)})
    assert (status, reuse(headers)) == (200, "no-store")


async def test_reuse_can_be_turned_off(start_broker: BrokerStarter) -> None:
    b = await start_broker(access={"viewer": VIEWER}, extra='[proxy]\nauth_cache_max_age = "0s"\n')
    token = await session_token(b, "viewer")
    status, headers, _ = await ask(b, {**nginx(f"{APP}/page"), **cookie(token)})
    assert (status, reuse(headers)) == (200, "no-store")


@pytest.mark.parametrize("value", ['"2s"', '"500ms"', '"1m"'])
def test_a_longer_reuse_is_refused_by_the_config(tmp_path: Path, value: str) -> None:
    extra = f"[proxy]\nauth_cache_max_age = {value}\n"
    path = write_config(tmp_path, port=1, oidc=None, roles={}, extra=extra)
    with pytest.raises(ConfigError, match="auth_cache_max_age"):
        load_settings(path)
