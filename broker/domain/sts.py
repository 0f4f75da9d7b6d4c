"""STS rules (pure): parameter constraints, names and ARNs, session tags, chaining caps.

Mirrors the constraints of the AWS STS API (version 2011-06-15) so that SDKs and the CLI see the
same errors they would from AWS: ``RoleSessionName`` 2-64 of ``[\\w+=,.@-]``, ``DurationSeconds``
900-43200 and at most the role's maximum, ``Policy`` at most 2048 characters, at most 50 session
tags, ``ExternalId`` 2-1224 characters, ``SourceIdentity`` 2-64 characters, one hour for a
chained session. Each violation raises the ``StsError`` AWS would answer with (``ValidationError``
for a constraint, ``InvalidParameterValue`` for a bad value, ``MissingParameter``), with AWS's
message: these messages describe the caller's own input, so they may be shown.

Imports only the standard library and ``broker.errors``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import secrets
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from broker.errors import (
    StsAccessDenied,
    StsIDPRejectedClaim,
    StsInvalidParameterValue,
    StsMissingParameter,
    StsPackedPolicyTooLarge,
    StsValidationError,
)

API_VERSION = "2011-06-15"
NAMESPACE = "https://sts.amazonaws.com/doc/2011-06-15/"

MIN_DURATION = 900
MAX_DURATION = 43200
DEFAULT_DURATION = 3600
CHAINED_MAX_DURATION = 3600
MAX_POLICY_LENGTH = 2048
MAX_POLICY_ARNS = 10
MAX_TAGS = 50
MAX_TAG_KEY = 128
MAX_TAG_VALUE = 256
PACKED_LIMIT = 2048  # bytes of the packed (deflated) session policies + tags = 100 %
TAGS_CLAIM = "https://aws.amazon.com/tags"

ACCESS_KEY_PREFIX = "ASIA"
ROLE_ID_PREFIX = "AROA"
_BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
ACCESS_KEY_ID = re.compile(r"ASIA[A-Z2-7]{16}")
USER_ACCESS_KEY_PREFIX = "AKIA"  # an IAM user's long-lived access key
USER_ACCESS_KEY_ID = re.compile(r"AKIA[A-Z2-7]{16}")
USER_SESSION_DEFAULT = 43200  # GetSessionToken's default and maximum DurationSeconds
USER_SESSION_MAX = 129600

_SESSION_NAME = re.compile(r"[\w+=,.@-]*", re.ASCII)
_EXTERNAL_ID = re.compile(r"[\w+=,.@:/-]*", re.ASCII)
_ROLE_NAME = re.compile(r"[\w+=,.@-]{1,64}", re.ASCII)
_TAG_KEY = re.compile(r"[\w\s.:/=+\-@]+")
_TAG_VALUE = re.compile(r"[\w\s.:/=+\-@]*")
_POLICY_CHARS = re.compile(r"[\u0009\u000a\u000d\u0020-\u00ff]*")
_ROLE_ARN = re.compile(r"arn:(broker|aws):iam::(\d{12}):role/(?:[\w+=,.@-]+/)*([^/]*)", re.ASCII)
_POLICY_ARN = re.compile(r"arn:(broker|aws):iam::(\d{12}):policy/(?:[\w+=,.@-]+/)*([^/]*)")

CHAINING_MESSAGE = (
    "The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by "
    "role chaining."
)
MAX_SESSION_MESSAGE = (
    "The requested DurationSeconds exceeds the MaxSessionDuration set for this role."
)


def _constraint(value: object, member: str, constraint: str) -> StsValidationError:
    shown = value if isinstance(value, str) and len(value) <= 64 else "..."
    return StsValidationError(
        f"constraint:{member}",
        public_message=(
            f"1 validation error detected: Value '{shown}' at '{member}' failed to satisfy "
            f"constraint: {constraint}"
        ),
    )


def require(params: Mapping[str, str], name: str) -> str:
    """A required parameter of the request, or ``MissingParameter``."""
    value = params.get(name)
    if value is None or value == "":
        raise StsMissingParameter(
            f"missing:{name}",
            public_message=f"The request must contain the parameter {name}",
        )
    return value


# --- names and identifiers ----------------------------------------------------------------------


def check_session_name(name: str, member: str = "roleSessionName") -> str:
    """``RoleSessionName``: 2-64 characters of ``[\\w+=,.@-]`` (ASCII word characters)."""
    if len(name) < 2:
        raise _constraint(name, member, "Member must have length greater than or equal to 2")
    if len(name) > 64:
        raise _constraint(name, member, "Member must have length less than or equal to 64")
    if not _SESSION_NAME.fullmatch(name):
        raise _constraint(
            name, member, "Member must satisfy regular expression pattern: [\\w+=,.@-]*"
        )
    return name


def check_source_identity(value: str) -> str:
    check_session_name(value, "sourceIdentity")
    if value.lower().startswith("aws:"):
        raise _constraint(value, "sourceIdentity", "Member must not start with 'aws:'")
    return value


def check_external_id(value: str) -> str:
    if len(value) < 2:
        raise _constraint(value, "externalId", "Member must have length greater than or equal to 2")
    if len(value) > 1224:
        raise _constraint(value, "externalId", "Member must have length less than or equal to 1224")
    if not _EXTERNAL_ID.fullmatch(value):
        raise _constraint(
            value, "externalId", "Member must satisfy regular expression pattern: [\\w+=,.@:\\/-]*"
        )
    return value


def parse_role_arn(arn: str, account_id: str) -> str:
    """The role name of ``arn:broker:iam::<account>:role/[path/]<name>`` (``arn:aws:`` accepted).

    A malformed ARN is a ``ValidationError``; a role of another account is ``AccessDenied``
    (there is no such role here, and the answer must not say more)."""
    if len(arn) < 20 or len(arn) > 2048:
        raise _constraint(arn, "roleArn", "Member must have length between 20 and 2048")
    m = _ROLE_ARN.fullmatch(arn)
    if m is None or not _ROLE_NAME.fullmatch(m.group(3)):
        raise StsValidationError("bad_role_arn", public_message=f"{arn} is invalid")
    if m.group(2) != account_id:
        raise StsAccessDenied("role_of_another_account")
    return m.group(3)


def parse_policy_arn(arn: str, account_id: str) -> str:
    """The policy name of ``arn:broker:iam::<account>:policy/<name>``."""
    m = _POLICY_ARN.fullmatch(arn)
    if m is None or m.group(2) != account_id or not _ROLE_NAME.fullmatch(m.group(3)):
        raise StsInvalidParameterValue(
            "bad_policy_arn", public_message=f"Policy {arn[:200]} does not exist or is not valid."
        )
    return m.group(3)


def role_arn(account_id: str, role: str) -> str:
    return f"arn:broker:iam::{account_id}:role/{role}"


def assumed_role_arn(account_id: str, role: str, session_name: str) -> str:
    """C2: ``arn:broker:sts::<account>:assumed-role/<role>/<session name>``."""
    return f"arn:broker:sts::{account_id}:assumed-role/{role}/{session_name}"


def role_id(account_id: str, role: str) -> str:
    """A stable unique id for a role (``AROA`` + 17 characters), as AWS shows in AssumedRoleId."""
    digest = hashlib.sha256(f"{account_id}:{role}".encode()).digest()
    return ROLE_ID_PREFIX + base64.b32encode(digest).decode("ascii")[:17]


def new_access_key_id() -> str:
    """``ASIA`` + 16 random characters of the base32 alphabet (80 bits)."""
    # 10 random bytes are exactly 16 base32 characters, each uniform over ``_BASE32``
    return ACCESS_KEY_PREFIX + base64.b32encode(secrets.token_bytes(10)).decode("ascii")


def is_access_key_id(value: str) -> bool:
    return ACCESS_KEY_ID.fullmatch(value) is not None


def new_user_access_key_id() -> str:
    """An IAM user's long-lived key id: ``AKIA`` + 16 random base32 characters (80 bits)."""
    return USER_ACCESS_KEY_PREFIX + base64.b32encode(secrets.token_bytes(10)).decode("ascii")


def new_user_secret() -> str:
    """A long-lived key's secret: 40 characters of base64 (240 bits), as AWS's."""
    return base64.b64encode(secrets.token_bytes(30)).decode("ascii")


def is_user_access_key_id(value: str) -> bool:
    return USER_ACCESS_KEY_ID.fullmatch(value) is not None


def iam_user_unique_id(internal_id: str) -> str:
    """An IAM user's stable unique id in AWS's form (``AIDA`` + 17 characters)."""
    digest = hashlib.sha256(internal_id.encode()).digest()
    return "AIDA" + base64.b32encode(digest).decode("ascii")[:17]


def session_token_duration(raw: str | None) -> int:
    """``GetSessionToken``'s ``DurationSeconds``: 900-129600 (36 h), 43200 when left out."""
    if raw is None or raw == "":
        return USER_SESSION_DEFAULT
    if not re.fullmatch(r"[0-9]{1,9}", raw):
        raise StsInvalidParameterValue(
            "bad_duration", public_message="Value for parameter DurationSeconds is invalid."
        )
    seconds = int(raw)
    if seconds < MIN_DURATION:
        raise _constraint(
            raw, "durationSeconds", "Member must have value greater than or equal to 900"
        )
    if seconds > USER_SESSION_MAX:
        raise _constraint(
            raw, "durationSeconds", "Member must have value less than or equal to 129600"
        )
    return seconds


# --- durations ----------------------------------------------------------------------------------


def session_duration(raw: str | None, *, role_max: float, chained: bool) -> int:
    """``DurationSeconds``: 900-43200, at most the role's maximum and, for a chained session,
    one hour. Left out: one hour, or the role's maximum if that is shorter."""
    limit = min(role_max, CHAINED_MAX_DURATION) if chained else role_max
    if raw is None or raw == "":
        return int(max(min(DEFAULT_DURATION, limit), MIN_DURATION))
    if not re.fullmatch(r"[0-9]{1,9}", raw):
        raise StsInvalidParameterValue(
            "bad_duration", public_message="Value for parameter DurationSeconds is invalid."
        )
    seconds = int(raw)
    if seconds < MIN_DURATION:
        raise _constraint(
            raw, "durationSeconds", "Member must have value greater than or equal to 900"
        )
    if seconds > MAX_DURATION:
        raise _constraint(
            raw, "durationSeconds", "Member must have value less than or equal to 43200"
        )
    if chained and seconds > CHAINED_MAX_DURATION:
        raise StsValidationError("chained_duration", public_message=CHAINING_MESSAGE)
    if seconds > role_max:
        raise StsValidationError("duration_over_role_max", public_message=MAX_SESSION_MESSAGE)
    return seconds


# --- session policies ---------------------------------------------------------------------------


def check_policy_text(text: str) -> str:
    """The ``Policy`` parameter before parsing: length and character set."""
    if len(text) > MAX_POLICY_LENGTH:
        raise _constraint("...", "policy", "Member must have length less than or equal to 2048")
    if not _POLICY_CHARS.fullmatch(text):
        raise _constraint(
            "...",
            "policy",
            "Member must satisfy regular expression pattern: "
            "[\\u0009\\u000A\\u000D\\u0020-\\u00FF]+",
        )
    return text


def compact_json(doc: Any) -> str:
    return json.dumps(doc, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def packed_policy_size(
    policies: Sequence[str], tags: Mapping[str, str], transitive: Sequence[str]
) -> int:
    """AWS's ``PackedPolicySize``: the deflated session policies and tags, in percent of the
    limit. Raises ``PackedPolicyTooLarge`` above 100 %."""
    blob = compact_json({"p": list(policies), "t": dict(tags), "tt": list(transitive)})
    size = len(zlib.compress(blob.encode("utf-8"), 9))
    percent = math.ceil(size * 100 / PACKED_LIMIT)
    if percent > 100:
        raise StsPackedPolicyTooLarge(f"packed_size:{percent}%")
    return percent


# --- session tags -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionTags:
    """Tags of a session and which of them pass on to chained sessions (keys as given)."""

    tags: Mapping[str, str] = field(default_factory=dict)
    transitive: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.tags)


def _check_tag(key: str, value: str, where: str) -> None:
    if not 1 <= len(key) <= MAX_TAG_KEY:
        raise _constraint(key, f"{where}.key", "Member must have length between 1 and 128")
    if not _TAG_KEY.fullmatch(key):
        raise _constraint(
            key,
            f"{where}.key",
            "Member must satisfy regular expression pattern: [\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]+",
        )
    if len(value) > MAX_TAG_VALUE:
        raise _constraint(
            "...", f"{where}.value", "Member must have length less than or equal to 256"
        )
    if not _TAG_VALUE.fullmatch(value):
        raise _constraint(
            value,
            f"{where}.value",
            "Member must satisfy regular expression pattern: [\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*",
        )


def session_tags(
    pairs: Sequence[tuple[str, str]],
    transitive: Sequence[str],
    *,
    inherited: SessionTags | None = None,
) -> SessionTags:
    """Requested tags (``Tags.member.N``) and ``TransitiveTagKeys`` checked, merged with the
    transitive tags inherited from a calling session (which may not be overridden)."""
    if len(pairs) > MAX_TAGS:
        raise _constraint("...", "tags", "Member must have length less than or equal to 50")
    tags: dict[str, str] = {}
    seen: set[str] = set()
    for i, (key, value) in enumerate(pairs, start=1):
        _check_tag(key, value, f"tags.{i}.member")
        if key.lower() in seen:
            raise StsInvalidParameterValue(
                "duplicate_tag_key",
                public_message=(
                    "Duplicate tag keys found. Please note that Tag keys are case insensitive."
                ),
            )
        seen.add(key.lower())
        tags[key] = value
    for key in transitive:
        if key.lower() not in seen:
            raise StsInvalidParameterValue(
                "transitive_key_not_tagged",
                public_message="The specified transitive tag key must be included in the "
                "requested tags.",
            )
    trans = {k.lower(): k for k in transitive}
    if inherited is not None:
        for key in inherited.transitive:
            if key.lower() in seen:
                raise StsInvalidParameterValue(
                    "transitive_tag_override",
                    public_message=(
                        "One or more of the specified tag keys conflict with a transitive tag "
                        "inherited from the calling role session."
                    ),
                )
            if key in inherited.tags:
                tags[key] = inherited.tags[key]
                trans.setdefault(key.lower(), key)
    if len(tags) > MAX_TAGS:
        raise _constraint("...", "tags", "Member must have length less than or equal to 50")
    return SessionTags(tags=tags, transitive=tuple(trans.values()))


def tags_from_claim(claim: Any) -> tuple[list[tuple[str, str]], list[str]]:
    """The ``https://aws.amazon.com/tags`` claim of a web identity token::

        {"principal_tags": {"team": ["ci"]}, "transitive_tag_keys": ["team"]}

    Malformed content is ``IDPRejectedClaim``: the token is genuine, the claim unusable."""
    if claim is None:
        return [], []
    if not isinstance(claim, dict):
        raise StsIDPRejectedClaim("tags_claim_not_object")
    principal = claim.get("principal_tags", {})
    transitive = claim.get("transitive_tag_keys", [])
    if not isinstance(principal, dict) or not isinstance(transitive, list):
        raise StsIDPRejectedClaim("tags_claim_malformed")
    pairs: list[tuple[str, str]] = []
    for key, values in principal.items():
        if isinstance(values, str):
            values = [values]
        if not isinstance(values, list) or len(values) != 1 or not isinstance(values[0], str):
            raise StsIDPRejectedClaim("tags_claim_value_not_one_string")
        pairs.append((str(key), values[0]))
    if not all(isinstance(k, str) for k in transitive):
        raise StsIDPRejectedClaim("tags_claim_transitive_not_strings")
    return pairs, [str(k) for k in transitive]


def member_list(params: Mapping[str, str], name: str, suffix: str = "") -> list[str]:
    """AWS Query list members: ``Name.member.1[.suffix]``, ``Name.member.2``... in order.

    Numbering must start at 1 without gaps; anything else is ``InvalidParameterValue``."""
    prefix = f"{name}.member."
    found: dict[int, str] = {}
    for key, value in params.items():
        if not key.startswith(prefix):
            continue
        rest = key[len(prefix) :]
        index, _, tail = rest.partition(".")
        if tail != suffix.lstrip(".") or not index.isdigit():
            continue
        found[int(index)] = value
    if sorted(found) != list(range(1, len(found) + 1)):
        raise StsInvalidParameterValue(
            f"bad_member_numbering:{name}",
            public_message=f"The members of {name} must be numbered from 1 without gaps.",
        )
    return [found[i] for i in range(1, len(found) + 1)]


def tag_pairs(params: Mapping[str, str]) -> list[tuple[str, str]]:
    keys = member_list(params, "Tags", ".Key")
    values = member_list(params, "Tags", ".Value")
    if len(values) > len(keys):
        raise StsMissingParameter(
            "tag_without_key", public_message="Every tag in Tags must have a Key."
        )
    values += [""] * (len(keys) - len(values))
    return list(zip(keys, values, strict=True))
