"""Two brokers on one PostgreSQL store: a key made Inactive (or deleted) through one is
refused by the other within 2 s (its IAM generation poll), and made Active again, accepted."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from botocore.exceptions import ClientError
from pytest_aiohttp import AiohttpServer

from broker.clock import SystemClock
from tests.conftest import RunningBroker
from tests.iam.conftest import IamEnv, call, error_code, iam_roles
from tests.iam.keys_support import EVERYTHING, eventually, key_client, user_with_key
from tests.sts.conftest import _provider, aws_env, start_broker
from tests.support.fake_idp import FakeIdP
from tests.support.postgres import fresh_schema

pytestmark = [pytest.mark.postgres]


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    async with fresh_schema("broker_keys") as url:
        yield url


async def test_an_inactive_key_is_refused_by_the_other_instance(
    tmp_path: Path,
    pg_url: str,
    aiohttp_server: AiohttpServer,
    runners: list[web.AppRunner],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for k, v in aws_env(tmp_path).items():
        monkeypatch.setenv(k, v)
    idp = FakeIdP(clock=SystemClock())
    idp.bind(await aiohttp_server(idp.app))
    brokers: list[RunningBroker] = []
    for name in ("a", "b"):
        brokers.append(
            await start_broker(
                tmp_path / name,
                roles=iam_roles(),
                providers=_provider("fake", idp.issuer, idp.client_id),
                runners=runners,
                store_url=pg_url,
                public_url=brokers[0].url if brokers else None,
            )
        )
    a, b = brokers
    env_a = IamEnv(a, idp, tmp_path)
    key = await user_with_key(env_a, "ci", EVERYTHING)
    on_b = key_client(b.url, "sts", key)
    iam_b = key_client(b.url, "iam", key)

    async def accepted_on_b() -> bool:
        try:
            await call(on_b, "get_caller_identity")
            return True
        except ClientError as e:
            if error_code(e) != "InvalidClientTokenId":
                raise
            return False

    async def refused_on_b() -> bool:
        return not await accepted_on_b()

    await eventually(accepted_on_b)  # B looks the key up (and caches it)
    await call(iam_b, "list_access_keys")
    admin = await env_a.client("admin")
    kid = key["AccessKeyId"]
    await call(admin, "update_access_key", UserName="ci", AccessKeyId=kid, Status="Inactive")
    await eventually(refused_on_b)
    with pytest.raises(ClientError) as e:
        await call(iam_b, "list_access_keys")
    assert error_code(e.value) == "InvalidClientTokenId"

    await call(admin, "update_access_key", UserName="ci", AccessKeyId=kid, Status="Active")
    await eventually(accepted_on_b)
    await call(admin, "delete_access_key", UserName="ci", AccessKeyId=kid)
    await eventually(refused_on_b)
