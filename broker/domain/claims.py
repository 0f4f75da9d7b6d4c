"""Identity claims as IAM condition keys (contract C2) and the principal of a federated login."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from broker.config import RESERVED_PROVIDER_NAMES, reserved_provider_reason

#: Key namespaces only the broker writes: the global keys (``aws:``/``broker:``) and the
#: namespaces of its own actions and keys (``sts:``, ``iam:``, ``http:``).
RESERVED_NAMESPACES = frozenset(RESERVED_PROVIDER_NAMES)

ContextValue = str | list[str]


@dataclass(frozen=True)
class Identity:
    """Who signed in: verified by a provider (or the local password store), not yet a role."""

    provider: str
    subject: str
    name: str
    email: str = ""
    groups: tuple[str, ...] = ()
    claims: Mapping[str, Any] = field(default_factory=dict)
    mfa: bool = False
    user_id: str = ""
    provider_sid: str = ""  # the provider's session (ID token ``sid``), for back-channel logout
    mfa_authenticated_at: float | None = None  # when the second factor was proved (with ``mfa``)
    # when the broker verified it (the login's callback or password check; a session's start):
    # a provider's ``sub``-only back-channel logout at or after this time ends it. 0: unknown.
    verified_at: float = 0.0


def _scalar(v: Any) -> str | None:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return v
    if isinstance(v, int | float):
        return str(v)
    return None


def is_reserved_namespace(provider: str) -> bool:
    """Whether ``<provider>:<claim>`` keys would fall in a namespace only the broker writes
    (in any case: condition keys match case-insensitively)."""
    return reserved_provider_reason(provider) is not None


def claims_to_context(provider: str, claims: Mapping[str, Any]) -> dict[str, ContextValue]:
    """``{"hd": "example.com", "groups": ["a"]}`` -> ``{"google:hd": "example.com", ...}``.

    Scalars become strings (booleans ``"true"``/``"false"``), arrays of scalars become lists;
    nested objects are left out (there is no IAM operator to compare them with). A provider
    whose name is a reserved namespace (:func:`is_reserved_namespace`) yields no keys at all.
    """
    out: dict[str, ContextValue] = {}
    if is_reserved_namespace(provider):
        # The config refuses such names; this holds even if one gets here another way: a
        # provider's claims must never become global keys (aws:MultiFactorAuthPresent, ...).
        return out
    for name, value in claims.items():
        key = f"{provider}:{name}"
        if isinstance(value, list):
            items = [s for s in (_scalar(v) for v in value) if s is not None]
            out[key] = items
        else:
            s = _scalar(value)
            if s is not None:
                out[key] = s
    return out


# RFC 8176 §2 authentication method references, by the factor each proves (knowledge,
# possession, inherence). ``mfa`` itself says several factors were used.
_AMR_FACTORS: Mapping[str, str] = {
    "pwd": "knowledge",
    "pin": "knowledge",
    "kba": "knowledge",
    "otp": "possession",
    "hwk": "possession",
    "swk": "possession",
    "sc": "possession",
    "sms": "possession",
    "tel": "possession",
    "fpt": "inherence",
    "face": "inherence",
    "iris": "inherence",
    "retina": "inherence",
    "vbm": "inherence",
}


def amr_shows_mfa(amr: Any) -> bool:
    """Whether an ID token's ``amr`` (RFC 8176) shows multi-factor authentication: it contains
    ``mfa``, or methods of at least two different factors (e.g. ``pwd`` + ``otp``). One
    possession method alone (``otp``, ``hwk``, ``swk``: a passwordless login) is one factor."""
    if not isinstance(amr, list):
        return False
    methods = {m for m in amr if isinstance(m, str)}
    if "mfa" in methods:
        return True
    return len({_AMR_FACTORS[m] for m in methods if m in _AMR_FACTORS}) >= 2


def amr_auth_time(claims: Mapping[str, Any]) -> float | None:
    """When the end-user authenticated: the ID token's ``auth_time``, else its ``iat``."""
    for name in ("auth_time", "iat"):
        value = claims.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
            return float(value)
    return None


def global_context(
    *,
    now: float,
    source_ip: str,
    mfa: bool = False,
    token_issued_at: float | None = None,
    mfa_authenticated_at: float | None = None,
) -> dict[str, ContextValue]:
    """The global condition keys every request has (``broker:`` names; ``aws:`` are aliases).

    ``MultiFactorAuthAge`` (seconds since the second factor was proved) is present only with
    MFA and a known time, as in AWS; never negative (a clock a little ahead of ours)."""
    ctx: dict[str, ContextValue] = {
        "broker:CurrentTime": datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "broker:EpochTime": str(int(now)),
        "broker:MultiFactorAuthPresent": "true" if mfa else "false",
        "broker:SecureTransport": "true",
    }
    if mfa and mfa_authenticated_at is not None:
        ctx["broker:MultiFactorAuthAge"] = str(max(0, int(now - mfa_authenticated_at)))
    if source_ip:
        ctx["broker:SourceIp"] = source_ip
    if token_issued_at is not None:
        ctx["broker:TokenIssueTime"] = datetime.fromtimestamp(token_issued_at, UTC).strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        )
    return ctx


def federated_principal(provider: str, account_id: str) -> dict[str, list[str]]:
    """A federated principal may be written as the provider name or its ARN in trust policies."""
    return {
        "Federated": [provider, f"arn:broker:iam::{account_id}:oidc-provider/{provider}"],
    }


def role_arn(account_id: str, role: str) -> str:
    return f"arn:broker:iam::{account_id}:role/{role}"


def role_name_from_arn(arn: str) -> str:
    return arn.rsplit("/", 1)[-1]
