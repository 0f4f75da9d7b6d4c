"""The pure STS rules (``broker.domain.sts``) and SigV4 (``broker.domain.sigv4``), table-driven."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from unittest import mock

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from broker.domain import sigv4, sts
from broker.errors import (
    StsAccessDenied,
    StsError,
    StsIDPRejectedClaim,
    StsIncompleteSignature,
    StsInvalidParameterValue,
    StsPackedPolicyTooLarge,
    StsSignatureDoesNotMatch,
    StsValidationError,
)

ACCOUNT = "000000000000"


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("build-42", True),
        ("a.b@c=d,e+f_g", True),
        ("ab", True),
        ("a" * 64, True),
        ("a", False),
        ("a" * 65, False),
        ("has space", False),
        ("slash/no", False),
        ("ünicode", False),
    ],
)
def test_session_name(name: str, ok: bool) -> None:
    if ok:
        assert sts.check_session_name(name) == name
    else:
        with pytest.raises(StsValidationError):
            sts.check_session_name(name)


@pytest.mark.parametrize(
    ("raw", "role_max", "chained", "expected"),
    [
        (None, 3600, False, 3600),
        (None, 900, False, 900),
        (None, 14400, True, 3600),
        ("900", 3600, False, 900),
        ("3600", 3600, True, 3600),
        ("899", 3600, False, StsValidationError),
        ("43201", 86400, False, StsValidationError),
        ("7200", 3600, False, StsValidationError),
        ("7200", 14400, True, StsValidationError),
        ("1h", 3600, False, StsInvalidParameterValue),
        ("-5", 3600, False, StsInvalidParameterValue),
    ],
)
def test_duration(raw: str | None, role_max: float, chained: bool, expected: object) -> None:
    if isinstance(expected, int):
        assert sts.session_duration(raw, role_max=role_max, chained=chained) == expected
    else:
        assert isinstance(expected, type)
        with pytest.raises(expected):
            sts.session_duration(raw, role_max=role_max, chained=chained)


def test_chaining_message_is_awss() -> None:
    with pytest.raises(StsValidationError) as e:
        sts.session_duration("7200", role_max=14400, chained=True)
    assert e.value.public_message == (
        "The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by "
        "role chaining."
    )


@pytest.mark.parametrize(
    ("arn", "expected"),
    [
        ("arn:broker:iam::000000000000:role/ci", "ci"),
        ("arn:aws:iam::000000000000:role/ci", "ci"),
        ("arn:broker:iam::000000000000:role/path/to/ci", "ci"),
        ("arn:broker:iam::111111111111:role/ci", StsAccessDenied),
        ("arn:broker:iam::000000000000:user/ci", StsValidationError),
        ("arn:broker:iam::000000000000:role/", StsValidationError),
        ("short", StsValidationError),
        ("arn:broker:iam::000000000000:role/bad name", StsValidationError),
    ],
)
def test_role_arn(arn: str, expected: object) -> None:
    if isinstance(expected, str):
        assert sts.parse_role_arn(arn, ACCOUNT) == expected
    else:
        assert isinstance(expected, type)
        with pytest.raises(expected):
            sts.parse_role_arn(arn, ACCOUNT)


def test_names() -> None:
    assert (
        sts.assumed_role_arn(ACCOUNT, "ci", "b") == "arn:broker:sts::000000000000:assumed-role/ci/b"
    )
    rid = sts.role_id(ACCOUNT, "ci")
    assert rid.startswith("AROA")
    assert len(rid) == 21
    assert rid == sts.role_id(ACCOUNT, "ci") != sts.role_id(ACCOUNT, "cd")
    keys = {sts.new_access_key_id() for _ in range(100)}
    assert len(keys) == 100
    assert all(sts.is_access_key_id(k) for k in keys)
    assert not sts.is_access_key_id("AKIA" + "A" * 16)


@pytest.mark.parametrize(
    ("pairs", "transitive", "inherited", "expected"),
    [
        ([("team", "ci")], ["team"], None, {"team": "ci"}),
        ([("team", "ci"), ("TEAM", "x")], [], None, StsInvalidParameterValue),
        ([("team", "ci")], ["env"], None, StsInvalidParameterValue),
        ([("", "x")], [], None, StsValidationError),
        ([("k", "v" * 257)], [], None, StsValidationError),
        ([(f"k{i}", "v") for i in range(51)], [], None, StsValidationError),
        (
            [("env", "prod")],
            [],
            sts.SessionTags({"team": "ci"}, ("team",)),
            {"env": "prod", "team": "ci"},
        ),
        ([("Team", "x")], [], sts.SessionTags({"team": "ci"}, ("team",)), StsInvalidParameterValue),
    ],
    ids=[
        "ok",
        "duplicate",
        "transitive-not-tagged",
        "empty-key",
        "long-value",
        "51",
        "inherit",
        "override",
    ],
)
def test_session_tags(
    pairs: list[tuple[str, str]],
    transitive: list[str],
    inherited: sts.SessionTags | None,
    expected: object,
) -> None:
    if isinstance(expected, dict):
        assert dict(sts.session_tags(pairs, transitive, inherited=inherited).tags) == expected
    else:
        assert isinstance(expected, type)
        with pytest.raises(expected):
            sts.session_tags(pairs, transitive, inherited=inherited)


@pytest.mark.parametrize(
    "claim",
    [
        "x",
        {"principal_tags": []},
        {"principal_tags": {"a": ["1", "2"]}},
        {"transitive_tag_keys": [1]},
    ],
)
def test_bad_tags_claim(claim: object) -> None:
    with pytest.raises(StsIDPRejectedClaim):
        sts.tags_from_claim(claim)


def test_packed_policy_size() -> None:
    assert 1 <= sts.packed_policy_size(['{"Statement":[]}'], {}, []) <= 5
    with pytest.raises(StsPackedPolicyTooLarge):
        sts.packed_policy_size(
            [], {f"k{i}": hashlib.sha512(str(i).encode()).hexdigest() * 2 for i in range(50)}, []
        )


def test_member_lists() -> None:
    params = {"Tags.member.1.Key": "a", "Tags.member.1.Value": "1", "Tags.member.2.Key": "b"}
    assert sts.tag_pairs(params) == [("a", "1"), ("b", "")]
    with pytest.raises(StsInvalidParameterValue):
        sts.member_list({"X.member.2": "a"}, "X")


# --- SigV4 ----------------------------------------------------------------------------------


def test_signing_key_matches_the_aws_documentation_example() -> None:
    # "Examples of how to derive a signing key for Signature Version 4" (AWS General Reference)
    key = sigv4.signing_key(
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "20120215", "us-east-1", "iam"
    )
    assert key.hex() == "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"


def botocore_signed(
    body: str,
    *,
    when: datetime,
    secret: str = "s" * 40,
    token: str = "tok",
    region: str = "us-east-1",
) -> AWSRequest:
    req = AWSRequest(
        method="POST",
        url="http://127.0.0.1:8000/",
        data=body,
        headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
    )
    with mock.patch("botocore.auth.get_current_datetime", return_value=when):
        SigV4Auth(Credentials("ASIAAAAAAAAAAAAAAAAA", secret, token), "sts", region).add_auth(req)
    req.headers["Host"] = "127.0.0.1:8000"
    return req


def check(req: AWSRequest, body: bytes, now: float, secret: str = "s" * 40) -> None:
    headers: dict[str, list[str]] = {}
    for k, v in req.headers.items():
        headers.setdefault(k.lower(), []).append(v)
    signed = sigv4.parse_authorization(headers["authorization"][0], headers["x-amz-date"][0])
    sigv4.check_scope(signed, now=now, sent_headers=list(headers))
    sigv4.verify(
        signed, secret, method="POST", raw_path="/", raw_query="", headers=headers, body=body
    )


NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def test_botocore_signature_verifies() -> None:
    body = "Action=GetCallerIdentity&Version=2011-06-15"
    check(botocore_signed(body, when=NOW), body.encode(), NOW.timestamp())
    check(
        botocore_signed(body, when=NOW, region="ap-south-2"), body.encode(), NOW.timestamp() + 299
    )


@pytest.mark.parametrize(
    ("mutate", "error"),
    [
        (lambda r, b, n: (r, b + b"&x=1", n), StsSignatureDoesNotMatch),
        (lambda r, b, n: (r, b, n + 301), StsSignatureDoesNotMatch),
        (lambda r, b, n: (r, b, n - 301), StsSignatureDoesNotMatch),
    ],
    ids=["body", "late", "early"],
)
def test_tampering(mutate: object, error: type[StsError]) -> None:
    body = "Action=GetCallerIdentity&Version=2011-06-15"
    req, raw, now = mutate(botocore_signed(body, when=NOW), body.encode(), NOW.timestamp())  # type: ignore[operator]
    with pytest.raises(error):
        check(req, raw, now)


def test_wrong_secret() -> None:
    body = "Action=GetCallerIdentity&Version=2011-06-15"
    with pytest.raises(StsSignatureDoesNotMatch):
        check(botocore_signed(body, when=NOW), body.encode(), NOW.timestamp(), secret="t" * 40)


@pytest.mark.parametrize(
    "auth",
    [
        "AWS4-HMAC-SHA1 Credential=a/b/c/d/e, SignedHeaders=host, Signature=" + "0" * 64,
        "AWS4-HMAC-SHA256 SignedHeaders=host, Signature=" + "0" * 64,
        "AWS4-HMAC-SHA256 Credential=a/b, SignedHeaders=host, Signature=" + "0" * 64,
        "AWS4-HMAC-SHA256 Credential=a/b/c/d/e, Credential=a/b/c/d/e, SignedHeaders=host",
        "AWS4-HMAC-SHA256 Credential=a/b/c/d/e, SignedHeaders=Host, Signature=" + "0" * 64,
    ],
)
def test_incomplete(auth: str) -> None:
    with pytest.raises(StsIncompleteSignature):
        sigv4.parse_authorization(auth, "20240501T120000Z")


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [("/", "/"), ("", "/"), ("/a/./b/../c", "/a/c"), ("/a%20b", "/a%2520b")],
)
def test_canonical_uri(raw: str, canonical: str) -> None:
    assert sigv4.canonical_uri(raw or "/") == canonical


def test_canonical_query_sorts_and_encodes() -> None:
    assert sigv4.canonical_query("b=2&a=1&a=0&c=x%20y") == "a=0&a=1&b=2&c=x%20y"
