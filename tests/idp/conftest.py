"""Fixtures for the OpenID Connect relying party tests: a frozen clock, a client session, and
fake providers (``tests/support/fake_idp.py``) served over real HTTP on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from pytest_aiohttp import AiohttpServer

from broker.clock import FrozenClock
from broker.idp import OIDCClient
from tests.support.fake_idp import FakeIdP

StartIdP = Callable[..., Awaitable[FakeIdP]]
MakeClient = Callable[..., OIDCClient]


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def start_idp(aiohttp_server: AiohttpServer, clock: FrozenClock) -> StartIdP:
    """Start another fake provider: ``await start_idp(alg="ES256")``."""

    async def start(**kwargs: Any) -> FakeIdP:
        idp = FakeIdP(clock=clock, **kwargs)
        idp.bind(await aiohttp_server(idp.app))
        return idp

    return start


@pytest.fixture
async def idp(start_idp: StartIdP) -> FakeIdP:
    return await start_idp()


@pytest.fixture
def make_client(http: aiohttp.ClientSession, clock: FrozenClock) -> MakeClient:
    """``make_client(idp, **ProviderConfig overrides)``."""

    def make(idp: FakeIdP, **overrides: Any) -> OIDCClient:
        return OIDCClient(idp.provider_config(**overrides), http, clock=clock)

    return make


@pytest.fixture
def client(make_client: MakeClient, idp: FakeIdP) -> OIDCClient:
    return make_client(idp)
