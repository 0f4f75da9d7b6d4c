"""docs/kubernetes.md as written: the provider table and the trust policy it shows, in a broker,
trusting a real OIDC provider named ``k8s`` whose account is the pod's service account
(``sub`` = ``system:serviceaccount:payments:api``) and whose client is the projected token's
audience (``broker.example.com``); then the pod's container environment, read from the page's
YAML, is the whole AWS environment of the real AWS CLI and of boto3 (only the broker's address
and the token file's path differ: the kubelet would mount the token there)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from tests.sts.conftest import RoleSpec, real_id_token, runners, start_broker  # noqa: F401
from tests.support.doc_snippets import blocks, runs
from tests.support.oidc_server import OidcServer, default_config, start_oidc_server

PAGE = "docs/kubernetes.md"
SERVICE_ACCOUNT = "system:serviceaccount:payments:api"
ARN = "arn:broker:sts::000000000000:assumed-role/payments-api/payments-api"


@pytest.fixture(scope="module")
def cluster_issuer() -> Iterator[OidcServer]:
    """The cluster's service-account issuer, played by the real oidc-provider: its one account
    is the pod's service account, its client id is the audience the pod's token is for."""
    config = default_config(
        {"k8s": ["http://127.0.0.1/callback/k8s"]},
        client_id="broker.example.com",
        accounts={"api": {"password": "api-password", "sub": SERVICE_ACCOUNT, "claims": {}}},
        algs={"k8s": "RS256"},
        loopback_any_port=True,
    )
    with start_oidc_server(config) as server:
        yield server


def pod_env(pod: dict[str, Any]) -> dict[str, str]:
    [container] = pod["spec"]["containers"]
    return {e["name"]: str(e["value"]) for e in container["env"]}


async def run(argv: list[str], env: dict[str, str]) -> str:
    proc = await asyncio.create_subprocess_exec(
        *argv, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode == 0, err.decode()
    return out.decode()


@runs(PAGE, "yaml", section="The pod")
async def test_the_pods_environment_gets_role_credentials_with_the_cli_and_boto3(
    cluster_issuer: OidcServer,
    tmp_path: Path,
    runners: list[web.AppRunner],  # noqa: F811 (the fixture)
) -> None:
    [provider] = blocks(PAGE, "toml", section="The cluster's issuer")
    [trust] = blocks(PAGE, "json", section="Trust policy")
    [manifest] = blocks(PAGE, "yaml", section="The pod")
    issuer = cluster_issuer.issuers["k8s"]
    assert 'issuer = "https://oidc.prod.example.com"' in provider
    b = await start_broker(
        tmp_path / "broker",
        roles={"payments-api": RoleSpec(json.loads(trust))},
        providers=provider.replace("https://oidc.prod.example.com", issuer),
        runners=runners,
    )

    pod = yaml.safe_load(manifest)
    assert pod["kind"] == "Pod"
    [volume] = pod["spec"]["volumes"]
    [source] = volume["projected"]["sources"]
    projected = source["serviceAccountToken"]
    env = pod_env(pod)
    # the token file the env names is the one the projected volume mounts
    [mount] = pod["spec"]["containers"][0]["volumeMounts"]
    assert mount["name"] == volume["name"]
    assert env["AWS_WEB_IDENTITY_TOKEN_FILE"] == f"{mount['mountPath']}/{projected['path']}"
    # and its audience is the one the provider table accepts and the trust policy pins
    assert f'audiences = ["{projected["audience"]}"]' in provider
    assert (
        json.loads(trust)["Statement"][0]["Condition"]["StringEquals"]["k8s:aud"]
        == (projected["audience"])
    )

    token_file = tmp_path / "token"
    token_file.write_text(await real_id_token(cluster_issuer, "k8s", "api"))
    assert env.pop("AWS_ENDPOINT_URL_STS") == "https://broker.example.com"
    env.update(AWS_ENDPOINT_URL_STS=b.url, AWS_WEB_IDENTITY_TOKEN_FILE=str(token_file))
    # nothing of this machine's AWS set-up: no AWS_* but the pod's, no config files, no IMDS
    home = tmp_path / "home"
    home.mkdir()
    shell = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    shell.update(HOME=str(home), AWS_EC2_METADATA_DISABLED="true", **env)
    shell["PATH"] = f"{Path(sys.executable).parent}:{shell.get('PATH', '')}"

    identity = json.loads(await run(["aws", "sts", "get-caller-identity"], shell))
    assert identity["Arn"] == ARN
    program = 'import boto3\nprint(boto3.Session().client("sts").get_caller_identity()["Arn"])'
    assert (await run([sys.executable, "-c", program], shell)).strip() == ARN
