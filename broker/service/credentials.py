"""Bearer credentials on the hot path: broker tokens verified once, then served from a bounded
cache that still honours expiry and revocation on every hit.

A cache hit is a dict lookup plus the in-memory revocation check: no signature verification,
no key parsing, no database. Forward-auth and ``/v1/authorize`` use this. A session token's entry
is kept small (its claims decoded again only if read, the strings a session's tokens share held
once).

A token is cached the second time it is verified, not the first: tokens presented once (a
script that takes new STS credentials for every call, a burst of one-off tokens) would otherwise
each take an entry and push out the entries of sessions in use, which then pay a signature check
again. The price is one more verification of each token that does repeat. The first sighting is
remembered as the token's hash only, in a bounded set.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

from broker import jose
from broker.clock import Clock
from broker.domain import json_input, tokens
from broker.errors import TokenExpired, Unauthenticated
from broker.policy import Policy
from broker.service.authorize import Principal
from broker.service.revocation import RevocationState
from broker.service.sessions import SessionService

DEFAULT_CACHE_ENTRIES = 50_000


_NONE: Mapping[str, Any] = MappingProxyType({})


class Credential(NamedTuple):
    """A verified broker credential, whatever token type carried it.

    Immutable. A named tuple rather than a frozen dataclass: forward-auth makes one for every
    token it has not seen, and a frozen dataclass's ``__init__`` (one ``object.__setattr__`` per
    field) cost three times what building the tuple does."""

    kind: str  # "session" (browser sessions) | "access" (STS / token exchange)
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

    @property
    def role_name(self) -> str:
        return self.role_arn.rsplit("/", 1)[-1]

    @property
    def principal(self) -> Principal:
        return Principal(
            role_arn=self.role_arn,
            user_id=self.user_id,
            username=self.subject,
            provider=self.provider,
            subject=self.subject,
            mfa=self.mfa,
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


def credential_from_claims(c: Mapping[str, Any], token: str | None = None) -> Credential:
    """A verified session token's claims as a ``Credential``: the same fields, conversions and
    refusals as ``sessions._context(c)`` gives a ``SessionContext``, without one in between
    (forward-auth makes one for every token it has not seen). Same conversions, same refusal
    (``invalid_token:missing_claim``) of a claim that is missing or of the wrong form. With
    ``token`` (the one ``c`` came from), the credential keeps ``TokenClaims`` instead of ``c``.
    """
    try:
        raw_tags = c.get(tokens.CLAIM_TAGS, {})
        float(c.get("session_exp", c["exp"]))  # not kept, but a session token must have it right
        # Interned: every token of a session repeats these, so the cache keeps one copy of each
        # (not one per token), and their hashes, used as keys downstream, are computed once.
        return Credential(
            "session",
            _intern(str(c[tokens.CLAIM_SID])),
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
            claims=c if token is None else TokenClaims(token),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise Unauthenticated("invalid_token:missing_claim") from e


_TYP_BY_HEADER: dict[str, str] = {}  # tokens of one key and type share one header segment


def peek_typ(token: str) -> str:
    """The ``typ`` of a compact JWS header, unverified (only to pick the verifier)."""
    dot = token.find(".")  # not split: that would copy the rest of the token too
    head = token if dot < 0 else token[:dot]
    hit = _TYP_BY_HEADER.get(head)
    if hit is not None:
        return hit
    if not head or len(head) > 1024:
        return ""
    try:
        header = json_input.loads_object(jose.b64url_decode(head), max_bytes=1024)
    except ValueError:  # bad base64url, JsonInputError
        return ""
    typ = header.get("typ")
    found = typ.lower() if isinstance(typ, str) else ""
    if len(_TYP_BY_HEADER) >= 1024:  # made-up headers cannot grow it without bound
        _TYP_BY_HEADER.clear()
    _TYP_BY_HEADER[head] = found
    return found


class CredentialVerifier:
    def __init__(
        self,
        sessions: SessionService,
        revocations: RevocationState,
        clock: Clock,
        *,
        max_entries: int = DEFAULT_CACHE_ENTRIES,
    ) -> None:
        self._sessions = sessions
        self._ring = sessions.keyring
        self._revocations = revocations
        self._clock = clock
        self._max = max_entries
        self._cache: OrderedDict[str, Credential] = OrderedDict()
        self._seen_once: set[int] = set()  # hashes of tokens verified once (see the module doc)
        # Other token types (STS access tokens) register their verifier here.
        self.verifiers: dict[str, Any] = {tokens.SESSION_TYP: self._verify_session}

    def _verify_session(self, token: str) -> Credential:
        return self._sessions.verify_as(token, lambda c: credential_from_claims(c, token))

    def still_valid(self, cred: Credential, now: float) -> bool:
        """Not expired and not revoked: what a cache hit must re-check every time."""
        return now < cred.expires_at and not self._revocations.is_revoked(
            session_id=cred.session_id,
            user_id=cred.user_id,
            role_arn=cred.role_arn,
            issued_at=cred.issued_at,
        )

    def note_seen(self, cred: Credential, now: float) -> None:
        self._sessions.note_seen(cred.session_id, now)

    async def learn_keys(self, tokens_: Iterable[str]) -> None:
        """Before ``verify`` of tokens another instance may have signed with a key this one has
        not read yet: one shared, rate-limited key-ring refresh (cached tokens need none)."""
        ring = self._ring
        for token in tokens_:
            if token not in self._cache:
                kid = ring.unknown_kid(token)  # no I/O; the usual answer is None
                if kid is not None:
                    await ring.refresh_for_kid(kid)

    async def verify_fresh(self, token: str) -> Credential:
        """``verify`` after ``learn_keys``: what every asynchronous caller uses."""
        await self.learn_keys((token,))
        return self.verify(token)

    def verify(self, token: str) -> Credential:
        """Raises ``Unauthenticated`` with the failed check as its reason. Knows only the keys
        the ring has read: call ``learn_keys`` first (or use ``verify_fresh``)."""
        now = self._clock.now()
        hit = self._cache.get(token)
        if hit is not None:
            if now >= hit.expires_at:
                del self._cache[token]
                raise TokenExpired("token_expired")
            if self._revocations.is_revoked(
                session_id=hit.session_id,
                user_id=hit.user_id,
                role_arn=hit.role_arn,
                issued_at=hit.issued_at,
            ):
                del self._cache[token]
                raise Unauthenticated("session_revoked")
            self._cache.move_to_end(token)
            self._sessions.note_seen(hit.session_id, now)
            return hit
        verify = self.verifiers.get(peek_typ(token))
        if verify is None:
            raise Unauthenticated("invalid_token:typ_mismatch")
        cred: Credential = verify(token)
        key = hash(token)  # already computed by the lookup above: str caches its hash
        if key in self._seen_once:
            self._seen_once.discard(key)
            self._cache[token] = cred
            if len(self._cache) > self._max:
                self._cache.popitem(last=False)
        else:
            if len(self._seen_once) >= self._max:
                self._seen_once.clear()
            self._seen_once.add(key)
        return cred

    def __len__(self) -> int:
        return len(self._cache)

    def __contains__(self, token: object) -> bool:
        """Whether ``token`` verified before (cached, or seen once); ``verify`` still re-checks
        it."""
        return token in self._cache or (isinstance(token, str) and hash(token) in self._seen_once)
