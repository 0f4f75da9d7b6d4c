"""Issue 15 item 5: ``echo "$TOKEN" > file`` adds a newline, and the SDKs send the file as it
is. A compact JWT holds no whitespace, so the broker drops it around the token instead of
refusing it as ``InvalidIdentityToken``; whitespace inside stays a refusal."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import boto3
import botocore.exceptions
import pytest

from tests.conftest import RunningBroker
from tests.sts.conftest import arn, real_id_token
from tests.sts.test_aws_clients import isolated_aws, web_identity  # noqa: F401 (fixture)
from tests.support.oidc_server import OidcServer

EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ID_TOKEN = "urn:ietf:params:oauth:token-type:id_token"


async def test_a_token_file_written_by_echo_works_with_the_sdk_chain(
    broker: RunningBroker, oidc_server: OidcServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token_file = tmp_path / "oidc-token"
    token_file.write_text(await real_id_token(oidc_server, "corp", "alice") + "\n")
    monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(token_file))
    monkeypatch.setenv("AWS_ROLE_ARN", arn("ci"))
    monkeypatch.setenv("AWS_ROLE_SESSION_NAME", "echoed")
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", broker.url)
    me = await asyncio.to_thread(boto3.Session().client("sts").get_caller_identity)
    assert me["Arn"].endswith(":assumed-role/ci/echoed")


async def test_surrounding_whitespace_is_dropped_and_inner_whitespace_refused(
    broker: RunningBroker, oidc_server: OidcServer
) -> None:
    token = await real_id_token(oidc_server, "corp", "alice")
    out = await web_identity(broker.url, f" \t{token}\r\n", "ci")
    assert out["Credentials"]["AccessKeyId"].startswith("ASIA")
    head, _, rest = token.partition(".")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        await web_identity(broker.url, f"{head}. {rest}", "ci")
    assert e.value.response["Error"]["Code"] == "InvalidIdentityToken"

    async with (
        aiohttp.ClientSession() as s,
        s.post(
            f"{broker.url}/oauth2/token",
            data={
                "grant_type": EXCHANGE,
                "subject_token": token + "\n",
                "subject_token_type": ID_TOKEN,
                "scope": "role:ci",
            },
        ) as r,
    ):
        assert r.status == 200, await r.text()
        assert (await r.json())["token_type"] == "Bearer"
