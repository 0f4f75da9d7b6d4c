"""The IAM Query API's protocol: real boto3 and AWS CLI calls, IAM's XML, errors and paging."""

from __future__ import annotations

import uuid

import aiohttp
import pytest
from botocore.exceptions import ClientError

from broker.errors import (
    BrokerError,
    Conflict,
    IamInvalidInput,
    InvalidRequest,
    MalformedPolicy,
    ReadOnlyFromConfig,
)
from broker.service.iam_api.api import as_iam_error, page_bounds
from broker.storage.base import User
from tests.iam.conftest import IamEnv, call, error_code
from tests.sts.conftest import sts_post
from tests.support.fuzz import b64url


async def test_boto3_creates_gets_and_lists_users(iam_env: IamEnv) -> None:
    iam = await iam_env.client("admin")
    out = await call(iam, "create_user", UserName="carol")
    user = out["User"]
    assert user["UserName"] == "carol"
    assert user["Arn"] == iam_env.arn("user", "carol")
    assert user["UserId"].startswith("AIDA")
    assert user["Path"] == "/"
    got = await call(iam, "get_user", UserName="carol")
    assert got["User"] == user
    listed = await call(iam, "list_users")
    assert "carol" in [u["UserName"] for u in listed["Users"]]
    assert listed["IsTruncated"] is False

    with pytest.raises(ClientError) as e:
        await call(iam, "create_user", UserName="carol")
    assert error_code(e.value) == "EntityAlreadyExists"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 409
    with pytest.raises(ClientError) as e:
        await call(iam, "get_user", UserName="nobody-here")
    assert error_code(e.value) == "NoSuchEntity"


async def test_model_constraints_are_validation_errors_and_nothing_is_stored(
    iam_env: IamEnv,
) -> None:
    iam = await iam_env.client("admin")
    for bad in ("x" * 65, "has space", "sla/sh"):
        with pytest.raises(ClientError) as e:
            await call(iam, "create_user", UserName=bad)
        assert error_code(e.value) == "ValidationError", bad
    names = [u.name for u in await iam_env.broker.broker.store.list_users()]
    assert not [n for n in names if n.startswith(("x", "has", "sla"))]


async def test_callers_need_iam_permission_on_the_target(iam_env: IamEnv) -> None:
    reader = await iam_env.client("reader")
    with pytest.raises(ClientError) as e:
        await call(reader, "create_user", UserName="dave")
    assert error_code(e.value) == "AccessDenied"
    assert "iam:CreateUser" in e.value.response["Error"]["Message"]
    assert not await iam_env.broker.broker.store.find_users_by_name("dave")
    await call(reader, "list_users")  # iam:List* is allowed
    await iam_env.broker.broker.auditor.flush()  # refusals are batched
    events = await iam_env.broker.broker.store.list_audit(action="iam.CreateUser")
    assert events[0].outcome == "failure"
    assert events[0].reason.startswith("not_authorized")


async def test_unsigned_and_unknown_calls_are_refused_in_iam_dialect(iam_env: IamEnv) -> None:
    status, text = await sts_post(iam_env.url, {"Action": "ListUsers", "Version": "2010-05-08"})
    assert status == 403
    assert "MissingAuthenticationToken" in text
    assert "https://iam.amazonaws.com/doc/2010-05-08/" in text
    status, text = await sts_post(iam_env.url, {"Action": "FlyToTheMoon", "Version": "2010-05-08"})
    assert status == 400
    assert "InvalidAction" in text


async def test_aws_cli_lists_users_past_one_page(iam_env: IamEnv) -> None:
    creds = await iam_env.credentials("admin")
    iam = await iam_env.client("admin")
    for i in range(12):
        await call(iam, "create_user", UserName=f"u{i:03d}")
    code, out, err = await iam_env.aws(creds, "iam", "list-users", "--page-size", "5")
    assert code == 0, err
    names = [u["UserName"] for u in out["Users"]]
    assert [n for n in names if n.startswith("u0")] == [f"u{i:03d}" for i in range(12)]
    page = await call(iam, "list_users", MaxItems=5)
    assert page["IsTruncated"] is True
    rest = await call(iam, "list_users", Marker=page["Marker"], MaxItems=100)
    assert len(page["Users"]) + len(rest["Users"]) == len(names)


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ReadOnlyFromConfig("role_from_config:dev"), "UnmodifiableEntity"),
        (ReadOnlyFromConfig("anything"), "UnmodifiableEntity"),
        (Conflict("mentions_from_config_but_is_not"), "DeleteConflict"),
        (MalformedPolicy("policy_too_large"), "MalformedPolicyDocument"),
        (MalformedPolicy("anything"), "MalformedPolicyDocument"),
        (InvalidRequest("malformed_policy_in_words_only"), "InvalidInput"),
    ],
    ids=["read_only", "read_only_any_reason", "conflict", "malformed", "malformed_any", "input"],
)
def test_iam_codes_follow_the_error_type_not_its_reason(error: BrokerError, code: str) -> None:
    """The reason is audit data: the IAM code comes from the error's type."""
    mapped = as_iam_error(error)
    assert (mapped.code, mapped.reason) == (code, error.reason)


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 3000 + b"]" * 3000,  # was a RecursionError (a 500)
        b'{"o": ' + b"[" * 40 + b"]" * 40 + b"}",
        b'{"o": 1, "o": 2}',
        b'{"o": "\xff"}',
        b'{"o": 1, "pad": "' + b"x" * 100 + b'"}',
        b'{"o": NaN}',
        b'{"o": -1}',
        b'{"o": 1.5}',
        b"[1]",
        b"",
    ],
    ids=[
        "deep",
        "nested",
        "duplicate",
        "not_utf8",
        "too_large",
        "constant",
        "negative",
        "float",
        "array",
        "empty",
    ],
)
def test_markers_are_read_within_bounds(raw: bytes) -> None:
    """A ``Marker`` is the caller's: whatever it holds, ``InvalidInput`` (botocore sends at
    most 320 characters today; the bound does not rely on that)."""
    with pytest.raises(IamInvalidInput) as e:
        page_bounds({"Marker": b64url(raw)}, 10)
    assert e.value.reason == "bad_marker"
    assert page_bounds({"Marker": b64url(b'{"o": 5}')}, 10) == (5, 105, None)


async def test_a_nested_marker_through_boto3_is_invalid_input(iam_env: IamEnv) -> None:
    iam = await iam_env.client("admin")
    with pytest.raises(ClientError) as e:
        await call(iam, "list_users", Marker=b64url(b"[" * 200 + b"]" * 200)[:320])
    assert error_code(e.value) == "InvalidInput"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


async def test_an_unexpected_exception_is_internal_failure_and_audited(
    iam_env: IamEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug behind an IAM action is AWS's 500 ``InternalFailure`` in IAM's dialect, audited
    under the action (the traceback is in the server log)."""
    iam = await iam_env.client("admin")

    async def explode(*_: object, **__: object) -> None:
        raise RuntimeError("unexpected")

    monkeypatch.setattr(iam_env.broker.broker.iam_api, "call", explode)
    with pytest.raises(ClientError) as e:
        await call(iam, "list_users")
    assert error_code(e.value) == "InternalFailure"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    request_id = e.value.response["ResponseMetadata"]["RequestId"]
    events = await iam_env.broker.broker.store.list_audit(limit=20, action="iam.ListUsers")
    assert [(e.outcome, e.reason) for e in events if e.details["request_id"] == request_id] == [
        ("failure", "internal_failure:RuntimeError")
    ]


async def test_broken_forms_from_iam_clients_get_iam_errors_and_change_nothing(
    iam_env: IamEnv,
) -> None:
    bodies = [
        b"Action=CreateUser&Version=2010-05-08&UserName=\xff\xfe",
        b"Action=CreateUser&Version=2010-05-08&UserName=a&UserName=b",
    ]
    async with aiohttp.ClientSession() as s:
        for body in bodies:
            async with s.post(
                iam_env.url + "/",
                data=body,
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            ) as r:
                text = await r.text()
                assert r.status == 400, text
                assert "https://iam.amazonaws.com/doc/2010-05-08/" in text
                assert "<Code>InvalidInput</Code>" in text
    assert not await iam_env.broker.broker.store.find_users_by_name("a")


async def test_aws_cli_auto_paginates_past_one_hundred_users(iam_env: IamEnv) -> None:
    store = iam_env.broker.broker.store
    for i in range(130):
        await store.create_user(
            User(id=str(uuid.uuid4()), provider="local", subject=f"p{i:03d}", name=f"p{i:03d}")
        )
    creds = await iam_env.credentials("admin")
    code, out, err = await iam_env.aws(creds, "iam", "list-users")
    assert code == 0, err
    names = [u["UserName"] for u in out["Users"]]
    assert [n for n in names if n.startswith("p")] == [f"p{i:03d}" for i in range(130)]
    assert len(names) == len(set(names))
