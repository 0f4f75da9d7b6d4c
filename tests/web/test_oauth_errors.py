"""OAuth error responses (RFC 6749 §5.2) as authlib renders them for our error tree."""

from __future__ import annotations

import json

import pytest

from broker.errors import BrokerError, InvalidClient, InvalidGrant, InvalidRequest, InvalidTarget
from broker.web.oauth import oauth_error


@pytest.mark.parametrize(
    ("err", "status", "code"),
    [
        (InvalidRequest("x", public_message="Missing subject_token."), 400, "invalid_request"),
        (InvalidGrant("x"), 400, "invalid_grant"),
        (InvalidTarget("x"), 400, "invalid_target"),
        (InvalidClient("x"), 401, "invalid_client"),
    ],
    ids=["invalid_request", "invalid_grant", "invalid_target", "invalid_client"],
)
def test_errors_are_rfc6749_json_and_never_cached(err: BrokerError, status: int, code: str) -> None:
    resp = oauth_error(err)
    assert resp.status == status
    assert resp.headers["Cache-Control"] == "no-store"
    assert resp.headers["Pragma"] == "no-cache"
    assert resp.content_type == "application/json"
    assert resp.text is not None
    body = json.loads(resp.text)
    assert body == {"error": code, "error_description": err.public_message}
    assert ("WWW-Authenticate" in resp.headers) == (status == 401)


def test_the_description_keeps_only_the_characters_rfc6749_allows() -> None:
    # §5.2: error_description is %x20-21 / %x23-5B / %x5D-7E (no '"', no '\\', ASCII only).
    err = InvalidRequest("x", public_message='The role "dév\\ops" is unknown.\n')
    resp = oauth_error(err)
    assert resp.text is not None
    assert json.loads(resp.text)["error_description"] == "The role dvops is unknown."
