"""OpenID Connect providers through the IAM API, with real boto3 / AWS CLI calls, and the real
oidc-provider registered as one and trusted by AssumeRoleWithWebIdentity.

The registered provider's name is its URL's host:port/path (``127.0.0.1:<port>/corp`` here), so
its ARN is ``arn:broker:iam::<account>:oidc-provider/127.0.0.1:<port>/corp`` and its claims the
condition keys ``127.0.0.1:<port>/corp:sub`` — as AWS names ``token.actions.githubusercontent.com``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import BaseTestServer
from botocore.exceptions import ClientError
from pytest_aiohttp import AiohttpServer

from broker.clock import SystemClock
from broker.service.iam_api import Caller
from tests.iam.conftest import (
    IamEnv,
    allow,
    call,
    error_code,
    iam_roles,
    policy,
    sts_client,
)
from tests.sts.conftest import (
    ACCOUNT,
    RoleSpec,
    _provider,
    aws_env,
    real_id_token,
    start_broker,
    sts_post,
    web_trust,
)
from tests.support.fake_idp import FakeIdP
from tests.support.oidc_server import OidcServer, free_port

GHA = "https://token.actions.githubusercontent.com"
GHA_ARN = f"arn:broker:iam::{ACCOUNT}:oidc-provider/token.actions.githubusercontent.com"


def registered_name(issuer: str) -> str:
    return issuer.split("://", 1)[1].rstrip("/")


def provider_arn(issuer: str) -> str:
    return f"arn:broker:iam::{ACCOUNT}:oidc-provider/{registered_name(issuer)}"


@pytest.fixture
async def oidc_env(
    tmp_path: Path,
    aiohttp_server: AiohttpServer,
    runners: list[web.AppRunner],
    monkeypatch: pytest.MonkeyPatch,
    oidc_server: OidcServer,
) -> IamEnv:
    """``iam_env`` plus: ``deployer`` trusts the real provider's ``corp`` issuer *by ARN* (not
    configured: it must be registered through the API) for sub alice; ``gha-admin`` may
    administer only the GitHub Actions provider."""
    for k, v in aws_env(tmp_path).items():
        monkeypatch.setenv(k, v)
    idp = FakeIdP(clock=SystemClock())
    server: BaseTestServer = await aiohttp_server(idp.app)
    idp.bind(server)
    issuer = oidc_server.issuers["corp"]
    name = registered_name(issuer)
    roles = iam_roles()
    roles["deployer"] = RoleSpec(
        web_trust(
            provider_arn(issuer),
            {"StringEquals": {f"{name}:sub": "alice", f"{name}:aud": "broker"}},
            tag=False,
        )
    )
    roles["gha-admin"] = RoleSpec(
        web_trust("fake", {"StringEquals": {"fake:sub": "gha-admin"}}),
        (policy(allow("iam:*OpenIDConnectProvider*", GHA_ARN)),),
    )
    b = await start_broker(
        tmp_path / "b",
        roles=roles,
        providers=_provider("fake", idp.issuer, idp.client_id),
        runners=runners,
    )
    return IamEnv(b, idp, tmp_path)


async def assume(env: IamEnv, token: str, role: str = "deployer") -> Any:
    return await asyncio.to_thread(
        sts_client(env.url).assume_role_with_web_identity,
        RoleArn=env.arn("role", role),
        RoleSessionName="deploy",
        WebIdentityToken=token,
    )


async def test_a_provider_registered_through_the_api_is_trusted_until_deleted(
    oidc_env: IamEnv, oidc_server: OidcServer
) -> None:
    issuer = oidc_server.issuers["corp"]
    arn = provider_arn(issuer)
    token = await real_id_token(oidc_server, "corp", "alice")
    # not registered yet: an unknown issuer
    with pytest.raises(ClientError) as e:
        await assume(oidc_env, token)
    assert error_code(e.value) == "InvalidIdentityToken"

    iam = await oidc_env.client("admin")
    out = await call(iam, "create_open_id_connect_provider", Url=issuer, ClientIDList=["broker"])
    assert out["OpenIDConnectProviderArn"] == arn
    got = await call(iam, "get_open_id_connect_provider", OpenIDConnectProviderArn=arn)
    assert got["Url"] == registered_name(issuer)
    assert got["ClientIDList"] == ["broker"]
    assert got["ThumbprintList"] == []
    assert "CreateDate" in got
    listed = await call(iam, "list_open_id_connect_providers")
    arns = [p["Arn"] for p in listed["OpenIDConnectProviderList"]]
    assert arn in arns
    assert f"arn:broker:iam::{ACCOUNT}:oidc-provider/fake" in arns  # the config provider

    # assumable at once, with the claims as <host:port/path>:<claim> condition keys
    creds = await assume(oidc_env, token)
    assert creds["AssumedRoleUser"]["Arn"].endswith(":assumed-role/deployer/deploy")
    assert creds["Provider"] == arn
    assert creds["Audience"] == "broker"
    bob = await real_id_token(oidc_server, "corp", "bob")
    with pytest.raises(ClientError) as e:
        await assume(oidc_env, bob)  # the trust policy's sub condition
    assert error_code(e.value) == "AccessDenied"

    await call(iam, "delete_open_id_connect_provider", OpenIDConnectProviderArn=arn)
    with pytest.raises(ClientError) as e:
        await assume(oidc_env, token)
    assert error_code(e.value) == "InvalidIdentityToken"
    store = oidc_env.broker.broker.store
    await oidc_env.broker.broker.auditor.flush()  # STS refusals are batched
    refused = await store.list_audit(action="sts.AssumeRoleWithWebIdentity")
    assert refused[0].outcome == "failure"
    assert refused[0].reason == "unknown_issuer"
    deleted = await store.list_audit(action="iam.DeleteOpenIDConnectProvider")
    assert [(d.outcome, d.details["provider"]) for d in deleted] == [
        ("success", registered_name(issuer))
    ]
    with pytest.raises(ClientError) as e:
        await call(iam, "get_open_id_connect_provider", OpenIDConnectProviderArn=arn)
    assert error_code(e.value) == "NoSuchEntity"


async def test_the_token_audience_must_be_a_registered_client_id(
    oidc_env: IamEnv, oidc_server: OidcServer
) -> None:
    issuer = oidc_server.issuers["corp"]
    arn = provider_arn(issuer)
    iam = await oidc_env.client("admin")
    await call(iam, "create_open_id_connect_provider", Url=issuer, ClientIDList=["other"])
    token = await real_id_token(oidc_server, "corp", "alice")  # aud = broker
    with pytest.raises(ClientError) as e:
        await assume(oidc_env, token)
    assert error_code(e.value) == "InvalidIdentityToken"
    await call(iam, "add_client_id_to_open_id_connect_provider", OpenIDConnectProviderArn=arn,
               ClientID="broker")  # fmt: skip
    await assume(oidc_env, token)
    got = await call(iam, "get_open_id_connect_provider", OpenIDConnectProviderArn=arn)
    assert got["ClientIDList"] == ["other", "broker"]
    await call(iam, "remove_client_id_from_open_id_connect_provider",
               OpenIDConnectProviderArn=arn, ClientID="broker")  # fmt: skip
    with pytest.raises(ClientError) as e:
        await assume(oidc_env, token)
    assert error_code(e.value) == "InvalidIdentityToken"


async def test_tags_and_thumbprints_are_stored(oidc_env: IamEnv) -> None:
    iam = await oidc_env.client("admin")
    out = await call(
        iam,
        "create_open_id_connect_provider",
        Url=GHA,
        ClientIDList=["sts.amazonaws.com", "sts.amazonaws.com"],
        ThumbprintList=["6938FD4D98BAB03FAADB97B34396831E3780AEA1"],
        Tags=[{"Key": "team", "Value": "ci"}],
    )
    assert out["OpenIDConnectProviderArn"] == GHA_ARN
    assert out["Tags"] == [{"Key": "team", "Value": "ci"}]
    got = await call(iam, "get_open_id_connect_provider", OpenIDConnectProviderArn=GHA_ARN)
    assert got["Url"] == "token.actions.githubusercontent.com"
    assert got["ClientIDList"] == ["sts.amazonaws.com"]  # duplicates collapse
    assert got["ThumbprintList"] == ["6938fd4d98bab03faadb97b34396831e3780aea1"]
    assert got["Tags"] == [{"Key": "team", "Value": "ci"}]
    await call(iam, "update_open_id_connect_provider_thumbprint",
               OpenIDConnectProviderArn=GHA_ARN, ThumbprintList=["a" * 40, "b" * 40])  # fmt: skip
    got = await call(iam, "get_open_id_connect_provider", OpenIDConnectProviderArn=GHA_ARN)
    assert got["ThumbprintList"] == ["a" * 40, "b" * 40]

    # tags: overwrite by key (case-insensitively, as IAM), untag, list paged
    await call(iam, "tag_open_id_connect_provider", OpenIDConnectProviderArn=GHA_ARN,
               Tags=[{"Key": "TEAM", "Value": "ops"}, {"Key": "env", "Value": "prod"}])  # fmt: skip
    out = await call(iam, "list_open_id_connect_provider_tags", OpenIDConnectProviderArn=GHA_ARN)
    assert out["Tags"] == [{"Key": "TEAM", "Value": "ops"}, {"Key": "env", "Value": "prod"}]
    page = await call(iam, "list_open_id_connect_provider_tags",
                      OpenIDConnectProviderArn=GHA_ARN, MaxItems=1)  # fmt: skip
    assert page["IsTruncated"] is True
    assert page["Tags"] == [{"Key": "TEAM", "Value": "ops"}]
    await call(iam, "untag_open_id_connect_provider", OpenIDConnectProviderArn=GHA_ARN,
               TagKeys=["team", "absent"])  # fmt: skip
    out = await call(iam, "list_open_id_connect_provider_tags", OpenIDConnectProviderArn=GHA_ARN)
    assert out["Tags"] == [{"Key": "env", "Value": "prod"}]
    many = [{"Key": f"k{i}", "Value": "v"} for i in range(50)]
    with pytest.raises(ClientError) as e:
        await call(iam, "tag_open_id_connect_provider", OpenIDConnectProviderArn=GHA_ARN,
                   Tags=many)  # fmt: skip
    assert error_code(e.value) == "LimitExceeded"
    with pytest.raises(ClientError) as e:
        await call(iam, "tag_open_id_connect_provider", OpenIDConnectProviderArn=GHA_ARN,
                   Tags=[{"Key": "a", "Value": "1"}, {"Key": "A", "Value": "2"}])  # fmt: skip
    assert error_code(e.value) == "InvalidInput"
    record = await oidc_env.broker.broker.store.get_oidc_provider(registered_name(GHA))
    assert record is not None
    assert record.tags == (("env", "prod"),)
    fake = f"arn:broker:iam::{ACCOUNT}:oidc-provider/fake"
    with pytest.raises(ClientError) as e:
        await call(iam, "tag_open_id_connect_provider", OpenIDConnectProviderArn=fake,
                   Tags=[{"Key": "a", "Value": "1"}])  # fmt: skip
    assert error_code(e.value) == "UnmodifiableEntity"
    out = await call(iam, "list_open_id_connect_provider_tags", OpenIDConnectProviderArn=fake)
    assert out["Tags"] == []


async def test_aws_error_codes_and_nothing_stored(oidc_env: IamEnv) -> None:
    iam = await oidc_env.client("admin")
    store = oidc_env.broker.broker.store
    await call(iam, "create_open_id_connect_provider", Url=GHA, ClientIDList=["a"])
    cases: list[tuple[dict[str, Any], str]] = [
        ({"Url": GHA}, "EntityAlreadyExists"),
        ({"Url": GHA + "/"}, "EntityAlreadyExists"),  # the same name
        ({"Url": "https://TOKEN.actions.githubusercontent.com"}, "EntityAlreadyExists"),
        ({"Url": oidc_env.idp.issuer}, "EntityAlreadyExists"),  # the config provider "fake"
        ({"Url": "http://idp.example.com"}, "InvalidInput"),  # https only off loopback
        ({"Url": "ftp://idp.example.com"}, "InvalidInput"),
        ({"Url": "idp.example.com"}, "InvalidInput"),
        ({"Url": "https://user:pw@idp.example.com"}, "InvalidInput"),
        ({"Url": "https://idp.example.com/?a=b"}, "InvalidInput"),
        ({"Url": "https://idp.example.com/#f"}, "InvalidInput"),
        ({"Url": "https://idp.example.com/a b"}, "InvalidInput"),
        ({"Url": "https://idp.example.com/${aws:username}"}, "InvalidInput"),
        ({"Url": "https://idp.example.com/*"}, "InvalidInput"),
        ({"Url": "https://idp.example.com:99999"}, "InvalidInput"),
        ({"Url": "https://aws"}, "InvalidInput"),  # reserved condition-key namespaces
        ({"Url": "https://AWS:8443/x"}, "InvalidInput"),
        ({"Url": "https://broker"}, "InvalidInput"),
        ({"Url": "https://sts:8443/oidc"}, "InvalidInput"),
        ({"Url": "https://idp.example.com/" + "x" * 300}, "ValidationError"),
        ({"Url": "https://idp.example.com", "ThumbprintList": ["z" * 40]}, "InvalidInput"),
        (
            {"Url": "https://idp.example.com", "ThumbprintList": [f"{i:040x}" for i in range(6)]},
            "InvalidInput",
        ),
        ({"Url": "https://idp.example.com", "ClientIDList": ["x" * 256]}, "ValidationError"),
        (
            {"Url": "https://idp.example.com", "ClientIDList": [f"c{i}" for i in range(101)]},
            "LimitExceeded",
        ),
        (
            {
                "Url": "https://idp.example.com",
                "Tags": [{"Key": "a", "Value": "1"}, {"Key": "A", "Value": "2"}],
            },
            "InvalidInput",
        ),
    ]
    for params, code in cases:
        with pytest.raises(ClientError) as e:
            await call(iam, "create_open_id_connect_provider", **params)
        assert error_code(e.value) == code, params
    assert [p.name for p in await store.list_oidc_providers()] == [
        "token.actions.githubusercontent.com"
    ]
    missing = f"arn:broker:iam::{ACCOUNT}:oidc-provider/nope.example.com"
    for op, extra in (
        ("get_open_id_connect_provider", {}),
        ("delete_open_id_connect_provider", {}),
        ("add_client_id_to_open_id_connect_provider", {"ClientID": "x"}),
        ("remove_client_id_from_open_id_connect_provider", {"ClientID": "x"}),
        ("update_open_id_connect_provider_thumbprint", {"ThumbprintList": ["a" * 40]}),
    ):
        with pytest.raises(ClientError) as e:
            await call(iam, op, OpenIDConnectProviderArn=missing, **extra)
        assert error_code(e.value) == "NoSuchEntity", op
        with pytest.raises(ClientError) as e:
            await call(iam, op, OpenIDConnectProviderArn="arn:broker:iam::x:role/nope", **extra)
        assert error_code(e.value) == "InvalidInput", op
    other_account = f"arn:broker:iam::111111111111:oidc-provider/{registered_name(GHA)}"
    with pytest.raises(ClientError) as e:
        await call(iam, "get_open_id_connect_provider", OpenIDConnectProviderArn=other_account)
    assert error_code(e.value) == "NoSuchEntity"
    # at most 100 client ids: the 101st is refused and nothing changes
    for i in range(99):
        await call(iam, "add_client_id_to_open_id_connect_provider",
                   OpenIDConnectProviderArn=GHA_ARN, ClientID=f"c{i}")  # fmt: skip
    with pytest.raises(ClientError) as e:
        await call(iam, "add_client_id_to_open_id_connect_provider",
                   OpenIDConnectProviderArn=GHA_ARN, ClientID="one-too-many")  # fmt: skip
    assert error_code(e.value) == "LimitExceeded"
    record = await store.get_oidc_provider("token.actions.githubusercontent.com")
    assert record is not None
    assert len(record.client_ids) == 100
    assert "one-too-many" not in record.client_ids
    # adding twice / removing an absent one are no-ops, as in AWS
    await call(iam, "add_client_id_to_open_id_connect_provider",
               OpenIDConnectProviderArn=GHA_ARN, ClientID="a")  # fmt: skip
    await call(iam, "remove_client_id_from_open_id_connect_provider",
               OpenIDConnectProviderArn=GHA_ARN, ClientID="never")  # fmt: skip
    again = await store.get_oidc_provider("token.actions.githubusercontent.com")
    assert again is not None
    assert again.client_ids == record.client_ids


async def test_config_providers_are_listed_but_read_only(oidc_env: IamEnv) -> None:
    iam = await oidc_env.client("admin")
    fake = f"arn:broker:iam::{ACCOUNT}:oidc-provider/fake"
    got = await call(iam, "get_open_id_connect_provider", OpenIDConnectProviderArn=fake)
    assert got["Url"] == registered_name(oidc_env.idp.issuer)
    assert got["ClientIDList"] == [oidc_env.idp.client_id]
    for op, extra in (
        ("delete_open_id_connect_provider", {}),
        ("add_client_id_to_open_id_connect_provider", {"ClientID": "x"}),
        ("remove_client_id_from_open_id_connect_provider", {"ClientID": "x"}),
        ("update_open_id_connect_provider_thumbprint", {"ThumbprintList": ["a" * 40]}),
    ):
        with pytest.raises(ClientError) as e:
            await call(iam, op, OpenIDConnectProviderArn=fake, **extra)
        assert error_code(e.value) == "UnmodifiableEntity", op
    # still trusted
    await oidc_env.credentials("reader")
    local = f"arn:broker:iam::{ACCOUNT}:oidc-provider/local"  # not an OIDC provider
    with pytest.raises(ClientError) as e:
        await call(iam, "get_open_id_connect_provider", OpenIDConnectProviderArn=local)
    assert error_code(e.value) == "NoSuchEntity"


def _authz_cases(url: str, arn: str) -> Iterator[tuple[str, dict[str, Any]]]:
    yield "create_open_id_connect_provider", {"Url": url + "/new", "ClientIDList": ["x"]}
    yield "get_open_id_connect_provider", {"OpenIDConnectProviderArn": arn}
    yield "delete_open_id_connect_provider", {"OpenIDConnectProviderArn": arn}
    yield (
        "add_client_id_to_open_id_connect_provider",
        {
            "OpenIDConnectProviderArn": arn,
            "ClientID": "x",
        },
    )
    yield (
        "remove_client_id_from_open_id_connect_provider",
        {
            "OpenIDConnectProviderArn": arn,
            "ClientID": "a",
        },
    )
    yield (
        "update_open_id_connect_provider_thumbprint",
        {
            "OpenIDConnectProviderArn": arn,
            "ThumbprintList": ["c" * 40],
        },
    )


OP_ACTION = {
    "create_open_id_connect_provider": "CreateOpenIDConnectProvider",
    "get_open_id_connect_provider": "GetOpenIDConnectProvider",
    "delete_open_id_connect_provider": "DeleteOpenIDConnectProvider",
    "add_client_id_to_open_id_connect_provider": "AddClientIDToOpenIDConnectProvider",
    "remove_client_id_from_open_id_connect_provider": "RemoveClientIDFromOpenIDConnectProvider",
    "update_open_id_connect_provider_thumbprint": "UpdateOpenIDConnectProviderThumbprint",
    "list_open_id_connect_providers": "ListOpenIDConnectProviders",
    "tag_open_id_connect_provider": "TagOpenIDConnectProvider",
    "untag_open_id_connect_provider": "UntagOpenIDConnectProvider",
    "list_open_id_connect_provider_tags": "ListOpenIDConnectProviderTags",
}


async def test_authorization_table(oidc_env: IamEnv) -> None:
    """Unauthenticated, without the permission, with it only on another provider: AccessDenied
    (or the signing error), nothing changed, an audit row."""
    b = oidc_env.broker.broker
    admin = await oidc_env.client("admin")
    other_url = "https://idp.example.com/tenant"
    other = f"arn:broker:iam::{ACCOUNT}:oidc-provider/idp.example.com/tenant"
    await call(admin, "create_open_id_connect_provider", Url=other_url, ClientIDList=["a"],
               Tags=[{"Key": "t", "Value": "1"}])  # fmt: skip
    before = await b.store.list_oidc_providers()
    nobody = await oidc_env.client("nobody")
    reader = await oidc_env.client("reader")
    gha_admin = await oidc_env.client("gha-admin")  # iam:* only on the GitHub provider
    for op, params in _authz_cases(other_url, other):
        action = OP_ACTION[op]
        clients = [("nobody", nobody), ("gha-admin", gha_admin)]
        if not op.startswith(("get", "list")):
            clients.append(("reader", reader))
        for who, client in clients:
            with pytest.raises(ClientError) as e:
                await call(client, op, **params)
            assert error_code(e.value) == "AccessDenied", (who, op)
            assert f"iam:{action}" in e.value.response["Error"]["Message"]
            await b.auditor.flush()  # refusals are batched
            events = await b.store.list_audit(action=f"iam.{action}")
            assert events[0].outcome == "failure", (who, op)
            assert events[0].reason.startswith("not_authorized"), (who, op)
            assert who in events[0].principal
        status, text = await sts_post(
            oidc_env.url, {"Action": action, "Version": "2010-05-08", **_flat(params)}
        )
        assert status == 403, op
        assert "MissingAuthenticationToken" in text, op
        await b.auditor.flush()  # refusals are batched
        events = await b.store.list_audit(action=f"iam.{action}")
        assert events[0].outcome == "failure"
        assert events[0].reason == "missing_authorization"
    for who, client in (("nobody", nobody),):
        with pytest.raises(ClientError) as e:
            await call(client, "list_open_id_connect_providers")
        assert error_code(e.value) == "AccessDenied", who
    assert await b.store.list_oidc_providers() == before
    # with the permission on its own provider, gha-admin does what it may
    await call(gha_admin, "create_open_id_connect_provider", Url=GHA, ClientIDList=["x"])
    await call(gha_admin, "get_open_id_connect_provider", OpenIDConnectProviderArn=GHA_ARN)
    await call(gha_admin, "delete_open_id_connect_provider", OpenIDConnectProviderArn=GHA_ARN)
    assert await b.store.list_oidc_providers() == before


def _flat(params: dict[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in params.items():
        if isinstance(v, list):
            for i, item in enumerate(v, 1):
                out[f"{k}.member.{i}"] = str(item)
        else:
            out[k] = str(v)
    return out


async def test_aws_cli_registers_lists_and_deletes(oidc_env: IamEnv) -> None:
    creds = await oidc_env.credentials("admin")
    code, out, err = await oidc_env.aws(
        creds,
        "iam",
        "create-open-id-connect-provider",
        "--url",
        GHA,
        "--client-id-list",
        "sts.amazonaws.com",
    )
    assert code == 0, err
    assert out["OpenIDConnectProviderArn"] == GHA_ARN
    code, out, err = await oidc_env.aws(creds, "iam", "list-open-id-connect-providers")
    assert code == 0, err
    assert {"Arn": GHA_ARN} in out["OpenIDConnectProviderList"]
    code, out, err = await oidc_env.aws(
        creds, "iam", "get-open-id-connect-provider", "--open-id-connect-provider-arn", GHA_ARN
    )
    assert code == 0, err
    assert out["Url"] == "token.actions.githubusercontent.com"
    assert out["ClientIDList"] == ["sts.amazonaws.com"]
    code, out, err = await oidc_env.aws(
        creds, "iam", "delete-open-id-connect-provider", "--open-id-connect-provider-arn", GHA_ARN
    )
    assert code == 0, err
    code, out, err = await oidc_env.aws(
        creds, "iam", "delete-open-id-connect-provider", "--open-id-connect-provider-arn", GHA_ARN
    )
    assert code != 0
    assert "NoSuchEntity" in err


async def test_root_caller_and_racing_admins(oidc_env: IamEnv) -> None:
    """Two admins racing to register one provider: one wins, the other EntityAlreadyExists."""
    b = oidc_env.broker.broker
    a1, a2 = await oidc_env.client("admin"), await oidc_env.client("admin")
    results = await asyncio.gather(
        call(a1, "create_open_id_connect_provider", Url=GHA, ClientIDList=["one"]),
        call(a2, "create_open_id_connect_provider", Url=GHA, ClientIDList=["two"]),
        return_exceptions=True,
    )
    errors = [r for r in results if isinstance(r, ClientError)]
    assert len(errors) == 1
    assert error_code(errors[0]) == "EntityAlreadyExists"
    (record,) = await b.store.list_oidc_providers()
    assert record.client_ids in (("one",), ("two",))
    root: Caller = b.iam_api.root()
    out = await b.iam_api.call(root, "ListOpenIDConnectProviders", {})
    assert {"Arn": GHA_ARN} in out["OpenIDConnectProviderList"]


async def test_forged_and_unreachable_registered_issuers_are_refused_and_audited(
    oidc_env: IamEnv, oidc_server: OidcServer
) -> None:
    """A token naming a registered issuer but signed by someone else; a registered provider
    that does not answer; the token of a *config* provider presented with a registered
    provider's name in the trust policy: all refused, nothing issued, audited."""
    iam = await oidc_env.client("admin")
    issuer = oidc_server.issuers["corp"]
    await call(iam, "create_open_id_connect_provider", Url=issuer, ClientIDList=["broker"])
    forged = oidc_env.idp.mint({"iss": issuer, "aud": "broker", "sub": "alice"})
    with pytest.raises(ClientError) as e:
        await assume(oidc_env, forged)
    assert error_code(e.value) == "InvalidIdentityToken"
    down = f"http://127.0.0.1:{free_port()}/gone"
    await call(iam, "create_open_id_connect_provider", Url=down, ClientIDList=["broker"])
    unreachable = oidc_env.idp.mint({"iss": down, "aud": "broker", "sub": "alice"})
    with pytest.raises(ClientError) as e:
        await assume(oidc_env, unreachable)
    assert error_code(e.value) == "IDPCommunicationError"
    # the config provider "fake" may not pose as the registered one
    fake_alice = oidc_env.idp.mint({"sub": "alice", "aud": oidc_env.idp.client_id})
    with pytest.raises(ClientError) as e:
        await assume(oidc_env, fake_alice)
    assert error_code(e.value) == "AccessDenied"
    b = oidc_env.broker.broker
    await b.auditor.flush()
    events = await b.store.list_audit(action="sts.AssumeRoleWithWebIdentity")
    reasons = [ev.reason for ev in events if ev.outcome == "failure"]
    assert reasons[0].startswith("trust_policy")
    assert f"provider:{registered_name(down)}:discovery_unreachable" in reasons[1]
    assert reasons[-1] == f"id_token:{registered_name(issuer)}:unknown_kid"
    assert not [ev for ev in events if ev.outcome == "success" and "deployer" in ev.principal]
