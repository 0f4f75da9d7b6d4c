"""Verified broker tokens as the rest of the broker sees them: one record (``Credential``) and
one decoder of verified claims (``credential_from_claims``), for session and access tokens
alike. Pure: it checks the form of claims whose signature, issuer, audience and times
``KeyRing.verify`` has already checked; revocation is the caller's.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

from broker import jose
from broker.domain import tokens
from broker.errors import Unauthenticated
from broker.policy import Policy, PolicyError
from broker.service.authorize import Principal, is_user_arn

SESSION = "session"  # Credential.kind of a session token (browser sessions, session bearers)
ACCESS = "access"  # Credential.kind of an access token (STS / token exchange, GetSessionToken)
# Credential.kind of a request signed with an IAM user's long-lived access key (``AKIA...``): no
# token; ``role_arn`` is the user's ARN, ``session_id`` ``key-<access key id>``.
USER_KEY = "access-key"

_NONE: Mapping[str, Any] = MappingProxyType({})


class Credential(NamedTuple):
    """A verified broker credential, whatever token type carried it (session or access token):
    what ``credential_from_claims`` makes of its claims, and all the broker sees of it.

    Immutable. A named tuple rather than a frozen dataclass: forward-auth makes one for every
    token it has not seen, and a frozen dataclass's ``__init__`` (one ``object.__setattr__`` per
    field) cost three times what building the tuple does."""

    kind: str  # "session" (browser sessions) | "access" (STS / token exchange) | "access-key"
    session_id: str
    user_id: str
    provider: str
    subject: str
    role_arn: str
    email: str
    groups: tuple[str, ...]
    mfa: bool
    issued_at: float
    expires_at: float
    tags: Mapping[str, str] = _NONE
    session_policies: tuple[Policy, ...] = ()
    session_name: str = ""
    source_identity: str = ""
    claims: Mapping[str, Any] = _NONE
    session_expires_at: float = 0.0  # when the session (or the parent session) ends
    # The broker session this credential is or was derived from (a session token: its own
    # ``session_id``; an access token: its ``origin_sid`` claim, "" when no session was at its
    # start, e.g. AssumeRoleWithWebIdentity). An ``origin`` revocation of it voids the credential.
    origin_session_id: str = ""
    mfa_authenticated_at: float | None = None  # the ``mfa_at`` claim: aws:MultiFactorAuthAge

    @property
    def role_name(self) -> str:
        return self.role_arn.rsplit("/", 1)[-1]

    @property
    def principal_arn(self) -> str:
        """The principal's ARN: a role's, or (``is_user``) an IAM user's."""
        return self.role_arn

    @property
    def is_user(self) -> bool:
        """An IAM user's credential: its long-lived access key (``kind`` ``access-key``) or
        temporary credentials from ``GetSessionToken`` (``kind`` ``access``)."""
        return is_user_arn(self.role_arn)

    @property
    def principal(self) -> Principal:
        return Principal(
            role_arn=self.role_arn,
            user_id=self.user_id,
            username=self.subject,
            provider=self.provider,
            subject=self.subject,
            mfa=self.mfa,
            mfa_authenticated_at=self.mfa_authenticated_at,
            tags=self.tags,
            issued_at=self.issued_at,
            session_name=self.session_name,
            source_identity=self.source_identity,
        )


class TokenClaims(Mapping[str, Any]):
    """The claims of a verified token, decoded again from the token when first read.

    A cached credential keeps its token anyway (it is the cache's key), and the parsed claims
    (a dict, its keys, its values) were most of what an entry held besides: forward-auth caches
    an entry for every token it has not seen and never reads them. Only for a token whose
    signature and claims were checked: this decodes it again without checking anything."""

    __slots__ = ("_claims", "_token")

    def __init__(self, token: str) -> None:
        self._token = token
        self._claims: dict[str, Any] | None = None

    def _parsed(self) -> dict[str, Any]:
        if self._claims is None:
            segment = self._token.split(".", 2)[1]
            self._claims = jose.parse_payload(jose.b64url_decode(segment))  # as verify did
        return self._claims

    def __getitem__(self, name: str) -> Any:
        return self._parsed()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._parsed())

    def __len__(self) -> int:
        return len(self._parsed())

    def __repr__(self) -> str:
        return repr(self._parsed())


_intern = sys.intern


def _mfa_at(c: Mapping[str, Any]) -> float | None:
    """The ``mfa_at`` claim (only meaningful with ``mfa``): a number, or None."""
    if c.get(tokens.CLAIM_MFA) is not True:
        return None
    value = c.get(tokens.CLAIM_MFA_AT)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(tokens.CLAIM_MFA_AT)
    return float(value)


def credential_from_claims(
    c: Mapping[str, Any],
    token: str | None = None,
    *,
    kind: str = SESSION,
    session_policy: Callable[[str], Policy] | None = None,
) -> Credential:
    """A verified broker token's claims as a ``Credential``: the one decoder of verified claims.

    ``kind`` ``"session"`` (a session token) or ``"access"`` (an STS / token-exchange access
    token, which also carries its session name, source identity, access key id and session
    policies, each parsed by ``session_policy``). A claim that is missing or of the wrong form
    is ``Unauthenticated("invalid_token:missing_claim")``. With ``token`` (the one ``c`` came
    from), the credential keeps ``TokenClaims`` instead of ``c`` (forward-auth makes one for
    every token it has not seen and rarely reads them). ``origin_session_id``: a session token's
    own ``sid``; an access token's ``origin_sid`` claim (a string), or "" without one.
    """
    try:
        raw_tags = c.get(tokens.CLAIM_TAGS, {})
        session_expires_at = float(c.get("session_exp", c["exp"]))
        policies: tuple[Policy, ...] = ()
        session_name = source_identity = ""
        sid = _intern(str(c[tokens.CLAIM_SID]))
        origin = sid
        if kind != SESSION:
            raw_origin = c.get(tokens.CLAIM_ORIGIN_SID, "")
            if not isinstance(raw_origin, str):
                raise TypeError(tokens.CLAIM_ORIGIN_SID)
            origin = _intern(raw_origin)
            texts = c.get(tokens.CLAIM_SESSION_POLICIES, [])
            if not isinstance(texts, list) or (texts and session_policy is None):
                raise TypeError(tokens.CLAIM_SESSION_POLICIES)
            if texts and session_policy is not None:
                policies = tuple(session_policy(str(t)) for t in texts)
            session_name = str(c[tokens.CLAIM_SESSION_NAME])
            source_identity = str(c.get(tokens.CLAIM_SOURCE_IDENTITY, ""))
            str(c[tokens.CLAIM_AKID])
        # Interned: every token of a session repeats these, so the cache keeps one copy of each
        # (not one per token), and their hashes, used as keys downstream, are computed once.
        return Credential(
            kind,
            sid,
            _intern(str(c["sub"])),
            _intern(str(c[tokens.CLAIM_PROVIDER])),
            _intern(str(c[tokens.CLAIM_SUBJECT])),
            _intern(str(c[tokens.CLAIM_ROLE])),
            _intern(str(c.get(tokens.CLAIM_EMAIL, ""))),
            tuple(map(str, c.get(tokens.CLAIM_GROUPS, []))),
            bool(c.get(tokens.CLAIM_MFA, False)),
            float(c["iat"]),
            float(c["exp"]),
            {str(k): str(v) for k, v in dict(raw_tags).items()}
            if raw_tags or type(raw_tags) is not dict
            else {},
            policies,
            session_name,
            source_identity,
            c if token is None else TokenClaims(token),
            session_expires_at,
            origin,
            _mfa_at(c),
        )
    except (KeyError, TypeError, ValueError, PolicyError) as e:
        raise Unauthenticated("invalid_token:missing_claim") from e
