"""Access keys with the real boto3: create, list, update, delete; every SDK call made with a new
key (STS GetCallerIdentity, GetSessionToken, AssumeRole, the IAM API) is the user's; an
Inactive or deleted key is refused at once with ``InvalidClientTokenId``; last use is recorded;
two keys at most; one user's key never acts as another; secrets are never audited or logged."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from botocore.exceptions import ClientError

from broker.service import access_keys as service
from tests.iam.conftest import IamEnv, allow, call, error_code, policy
from tests.iam.keys_support import EVERYTHING, key_client, user_with_key
from tests.sts.conftest import ACCOUNT

USER_ARN = f"arn:broker:iam::{ACCOUNT}:user/ci"


async def refused(client: Any, operation: str, **params: Any) -> str:
    with pytest.raises(ClientError) as e:
        await call(client, operation, **params)
    return error_code(e.value)


async def test_a_new_key_is_the_user_for_every_sdk_call(iam_env: IamEnv) -> None:
    key = await user_with_key(iam_env, "ci", EVERYTHING)
    assert key["AccessKeyId"].startswith("AKIA")
    assert len(key["AccessKeyId"]) == 20
    assert len(key["SecretAccessKey"]) == 40
    assert key["Status"] == "Active"
    sts = key_client(iam_env.url, "sts", key)
    me = await call(sts, "get_caller_identity")
    assert me["Arn"] == USER_ARN
    assert me["Account"] == ACCOUNT
    assert me["UserId"].startswith("AIDA")

    iam = key_client(iam_env.url, "iam", key)
    listed = await call(iam, "list_access_keys")  # UserName left out: the caller itself
    assert [k["AccessKeyId"] for k in listed["AccessKeyMetadata"]] == [key["AccessKeyId"]]
    assert listed["AccessKeyMetadata"][0]["UserName"] == "ci"
    assert "SecretAccessKey" not in listed["AccessKeyMetadata"][0]

    session = (await call(sts, "get_session_token", DurationSeconds=900))["Credentials"]
    assert session["AccessKeyId"].startswith("ASIA")
    via_session = key_client(iam_env.url, "sts", session)
    assert (await call(via_session, "get_caller_identity"))["Arn"] == USER_ARN
    # AWS: GetSessionToken only with long-term credentials; its credentials call no IAM
    # action without MFA
    assert await refused(via_session, "get_session_token") == "AccessDenied"
    iam_session = key_client(iam_env.url, "iam", session)
    assert await refused(iam_session, "list_access_keys") == "AccessDenied"

    admin = await iam_env.client("admin")
    trust = policy({"Effect": "Allow", "Principal": {"AWS": USER_ARN}, "Action": "sts:AssumeRole"})
    await call(
        admin, "create_role", RoleName="deployer", AssumeRolePolicyDocument=json.dumps(trust)
    )
    assumed = await call(
        sts, "assume_role", RoleArn=iam_env.arn("role", "deployer"), RoleSessionName="ci-run"
    )
    assert assumed["AssumedRoleUser"]["Arn"] == (
        f"arn:broker:sts::{ACCOUNT}:assumed-role/deployer/ci-run"
    )
    # from the GetSessionToken credentials too
    await call(
        via_session,
        "assume_role",
        RoleArn=iam_env.arn("role", "deployer"),
        RoleSessionName="ci-run2",
    )


async def test_inactive_and_deleted_keys_are_refused_at_once(iam_env: IamEnv) -> None:
    key = await user_with_key(iam_env, "ci", EVERYTHING)
    admin = await iam_env.client("admin")
    sts, iam = key_client(iam_env.url, "sts", key), key_client(iam_env.url, "iam", key)
    await call(sts, "get_caller_identity")
    await call(iam, "list_access_keys")
    await call(
        admin, "update_access_key", UserName="ci", AccessKeyId=key["AccessKeyId"], Status="Inactive"
    )
    assert await refused(sts, "get_caller_identity") == "InvalidClientTokenId"
    assert await refused(sts, "get_session_token") == "InvalidClientTokenId"
    assert await refused(iam, "list_access_keys") == "InvalidClientTokenId"
    listed = await call(admin, "list_access_keys", UserName="ci")
    assert listed["AccessKeyMetadata"][0]["Status"] == "Inactive"

    await call(
        admin, "update_access_key", UserName="ci", AccessKeyId=key["AccessKeyId"], Status="Active"
    )
    await call(sts, "get_caller_identity")
    await call(admin, "delete_access_key", UserName="ci", AccessKeyId=key["AccessKeyId"])
    assert await refused(sts, "get_caller_identity") == "InvalidClientTokenId"
    assert await refused(iam, "get_user") == "InvalidClientTokenId"
    assert (await call(admin, "list_access_keys", UserName="ci"))["AccessKeyMetadata"] == []
    await iam_env.broker.broker.auditor.flush()
    events = await iam_env.broker.broker.store.list_audit(limit=500)
    assert any(e.reason == "access_key_not_active" for e in events)


async def test_a_wrong_secret_or_a_made_up_key_is_refused(iam_env: IamEnv) -> None:
    key = await user_with_key(iam_env, "ci", EVERYTHING)
    wrong = {**key, "SecretAccessKey": "x" * 40}
    assert await refused(key_client(iam_env.url, "sts", wrong), "get_caller_identity") == (
        "SignatureDoesNotMatch"
    )
    made_up = {**key, "AccessKeyId": "AKIA" + "A" * 16}
    assert await refused(key_client(iam_env.url, "sts", made_up), "get_caller_identity") == (
        "InvalidClientTokenId"
    )
    assert await refused(key_client(iam_env.url, "iam", made_up), "list_users") == (
        "InvalidClientTokenId"
    )
    # a long-lived key with someone's session token is not a credential either
    session = (await call(key_client(iam_env.url, "sts", key), "get_session_token"))["Credentials"]
    mixed = {**key, "SessionToken": session["SessionToken"]}
    assert await refused(key_client(iam_env.url, "sts", mixed), "get_caller_identity") == (
        "InvalidClientTokenId"
    )


async def test_last_use_is_recorded(iam_env: IamEnv) -> None:
    key = await user_with_key(iam_env, "ci", EVERYTHING)
    admin = await iam_env.client("admin")
    before = await call(admin, "get_access_key_last_used", AccessKeyId=key["AccessKeyId"])
    assert before["UserName"] == "ci"
    assert before["AccessKeyLastUsed"]["ServiceName"] == "N/A"
    assert before["AccessKeyLastUsed"]["Region"] == "N/A"
    assert "LastUsedDate" not in before["AccessKeyLastUsed"]

    await call(key_client(iam_env.url, "sts", key), "get_caller_identity")
    after = (await call(admin, "get_access_key_last_used", AccessKeyId=key["AccessKeyId"]))[
        "AccessKeyLastUsed"
    ]
    assert after["ServiceName"] == "sts"
    assert after["Region"] == "us-east-1"
    first = after["LastUsedDate"]
    await iam_env.broker.broker.access_keys.flush()  # written off the request path
    stored = await iam_env.broker.broker.store.get_access_key(key["AccessKeyId"])
    assert stored is not None
    assert stored.last_used_service == "sts"

    await call(key_client(iam_env.url, "iam", key), "list_access_keys")
    later = (await call(admin, "get_access_key_last_used", AccessKeyId=key["AccessKeyId"]))[
        "AccessKeyLastUsed"
    ]
    assert later["ServiceName"] == "iam"
    assert later["LastUsedDate"] >= first


async def test_at_most_two_keys(iam_env: IamEnv) -> None:
    await user_with_key(iam_env, "ci")
    admin = await iam_env.client("admin")
    second = (await call(admin, "create_access_key", UserName="ci"))["AccessKey"]
    assert await refused(admin, "create_access_key", UserName="ci") == "LimitExceeded"
    assert len((await call(admin, "list_access_keys", UserName="ci"))["AccessKeyMetadata"]) == 2
    page = await call(admin, "list_access_keys", UserName="ci", MaxItems=1)
    assert page["IsTruncated"]
    assert len(page["AccessKeyMetadata"]) == 1
    rest = await call(admin, "list_access_keys", UserName="ci", Marker=page["Marker"])
    assert [k["AccessKeyId"] for k in rest["AccessKeyMetadata"]] == [second["AccessKeyId"]]
    # rotation: delete the old one, a new one may be made
    first = page["AccessKeyMetadata"][0]["AccessKeyId"]
    await call(admin, "delete_access_key", UserName="ci", AccessKeyId=first)
    await call(admin, "create_access_key", UserName="ci")
    # and a user with keys cannot be deleted (AWS's DeleteConflict)
    assert await refused(admin, "delete_user", UserName="ci") == "DeleteConflict"


async def test_a_key_cannot_act_as_another_user(iam_env: IamEnv) -> None:
    own = [f"arn:broker:iam::{ACCOUNT}:user/${{aws:username}}"]
    mine = allow(["iam:*AccessKey*", "iam:GetUser"], own)
    alice = await user_with_key(iam_env, "alice", mine)
    bob = await user_with_key(iam_env, "bob", mine)
    as_bob = key_client(iam_env.url, "iam", bob)
    # bob manages his own keys ...
    assert len((await call(as_bob, "list_access_keys"))["AccessKeyMetadata"]) == 1
    # ... not alice's: not by naming her, not by naming her key as his
    assert await refused(as_bob, "list_access_keys", UserName="alice") == "AccessDenied"
    assert await refused(as_bob, "create_access_key", UserName="alice") == "AccessDenied"
    assert (
        await refused(
            as_bob,
            "update_access_key",
            UserName="alice",
            AccessKeyId=alice["AccessKeyId"],
            Status="Inactive",
        )
        == "AccessDenied"
    )
    assert (
        await refused(
            as_bob, "update_access_key", AccessKeyId=alice["AccessKeyId"], Status="Inactive"
        )
        == "NoSuchEntity"
    )
    assert await refused(as_bob, "delete_access_key", AccessKeyId=alice["AccessKeyId"]) == (
        "NoSuchEntity"
    )
    assert (
        await refused(as_bob, "get_access_key_last_used", AccessKeyId=alice["AccessKeyId"])
        == "AccessDenied"
    )
    await call(key_client(iam_env.url, "sts", alice), "get_caller_identity")  # still works
    # bob's own key with alice's secret, or the other way round, signs as nobody
    swapped = {"AccessKeyId": bob["AccessKeyId"], "SecretAccessKey": alice["SecretAccessKey"]}
    assert await refused(key_client(iam_env.url, "sts", swapped), "get_caller_identity") == (
        "SignatureDoesNotMatch"
    )
    # a role session without UserName: AWS's ValidationError
    admin = await iam_env.client("admin")
    assert await refused(admin, "list_access_keys") == "ValidationError"


async def test_the_user_policies_decide_iam_calls(iam_env: IamEnv) -> None:
    key = await user_with_key(iam_env, "ci", allow("iam:ListUsers"))
    iam = key_client(iam_env.url, "iam", key)
    await call(iam, "list_users")
    assert await refused(iam, "list_roles") == "AccessDenied"
    admin = await iam_env.client("admin")
    await call(admin, "delete_user_policy", UserName="ci", PolicyName="main")
    assert await refused(iam, "list_users") == "AccessDenied"  # in force at once


async def test_session_token_duration_bounds(iam_env: IamEnv) -> None:
    key = await user_with_key(iam_env, "ci", EVERYTHING)
    sts = key_client(iam_env.url, "sts", key)
    assert await refused(sts, "get_session_token", DurationSeconds=129601) == "ValidationError"
    longest = (await call(sts, "get_session_token", DurationSeconds=129600))["Credentials"]
    assert longest["AccessKeyId"].startswith("ASIA")
    # a SerialNumber without a TokenCode is a malformed request, not an MFA attempt
    code = await refused(sts, "get_session_token", SerialNumber=f"arn:broker:iam::{ACCOUNT}:mfa/ci")
    assert code == "ValidationError"


async def test_secrets_are_never_audited_or_logged(
    iam_env: IamEnv, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    key = await user_with_key(iam_env, "ci", EVERYTHING)
    sts = key_client(iam_env.url, "sts", key)
    session = (await call(sts, "get_session_token"))["Credentials"]
    await call(key_client(iam_env.url, "iam", key), "list_access_keys")
    admin = await iam_env.client("admin")
    await call(
        admin, "update_access_key", UserName="ci", AccessKeyId=key["AccessKeyId"], Status="Inactive"
    )
    await refused(sts, "get_caller_identity")
    b = iam_env.broker.broker
    await b.auditor.flush()
    events = await b.store.list_audit(limit=1000)
    created = [e for e in events if e.action == "iam.CreateAccessKey"]
    assert created
    assert created[0].details["access_key_id"] == key["AccessKeyId"]
    dump = json.dumps([[e.action, e.principal, e.reason, e.details] for e in events])
    # the server's logs (the client's own, botocore's debug output, print its responses)
    logged = "\n".join(
        r.getMessage() for r in caplog.records if not r.name.startswith(("botocore", "urllib3"))
    )
    assert "GetSessionToken" in logged or "audit" in logged  # the server did log
    for secret in (key["SecretAccessKey"], session["SecretAccessKey"]):
        assert secret not in dump
        assert secret not in logged
    stored = await b.store.get_access_key(key["AccessKeyId"])
    assert stored is not None
    assert key["SecretAccessKey"].encode() not in stored.secret_sealed


async def test_every_key_reads_all_keys_in_batches(
    iam_env: IamEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The console's account-wide list: every key of every user, across batch boundaries,
    with a use not yet flushed."""
    monkeypatch.setattr(service, "REVIEW_BATCH", 2)
    b = iam_env.broker.broker
    api = b.iam_api
    made: dict[str, str] = {}
    for name in ("k1", "k2", "k3"):
        await api.call(api.root(), "CreateUser", {"UserName": name})
        for _ in range(2 if name != "k2" else 1):
            key = (await api.call(api.root(), "CreateAccessKey", {"UserName": name}))["AccessKey"]
            made[key["AccessKeyId"]] = name
    used = next(iter(made))
    b.access_keys.note_use(used, region="us-east-1", service="iam")
    every = await b.access_keys.every_key()
    mine = {k.access_key_id: k for k in every if k.access_key_id in made}
    assert {akid: k.user_name for akid, k in mine.items()} == made  # 5 keys, batches of 2
    assert [k.access_key_id for k in every] == sorted(k.access_key_id for k in every)
    assert mine[used].last_used_at is not None
    assert all(k.last_used_at is None for akid, k in mine.items() if akid != used)
