"""Forward-auth (contract C3): decide a request a reverse proxy is about to forward.

``ForwardAuth.decide`` is the hot path and is synchronous: a public-route check, the credential
(``CredentialVerifier``: a cache hit is a dict lookup plus the in-memory revocation state), the
policy decision (``Authorizer``: compiled roles in memory), and identity headers with an assertion
JWT that is signed at most once per (session, role, origin) per half its lifetime (the allowed
verdict, headers included, is built then and reused as it is). No database, no key parsing, no
awaits.

Auditing without I/O on the hot path: every denial is queued with its reason and written by
``flush`` (the periodic tick); allows are counted per (session, role, origin, method) and written
as one event per key and flush; each allow is also counted in the access activity
(``ActivityLog.note``: in memory, bounded, written by the tick). The queue is bounded: past
``MAX_QUEUED_DENIALS`` further denials are folded into one summary event per reason, so a flood
cannot exhaust memory and is still on record.

Statuses: 200 (allowed or public), 401 (no valid credential; ``login_url`` carries the original
URL), 403 (signed in but not allowed, or the original request is missing, ambiguous, from an
untrusted peer or malformed). The web layer adds nothing but headers.
"""

from __future__ import annotations

import logging
import secrets
from collections import Counter, OrderedDict
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from urllib.parse import quote

from broker.clock import Clock
from broker.config import Settings
from broker.domain import tokens
from broker.domain.urls import OriginalRequest, PublicPattern, UrlRejected, public_pattern
from broker.errors import ConfigError, RevocationStateStale, Unauthenticated
from broker.keyring import KeyRing
from broker.policy import Decision
from broker.service.activity import ActivityLog
from broker.service.audit import Auditor, RequestInfo
from broker.service.authorize import Authorizer, CompiledRole, CompiledUser, Principal
from broker.service.credentials import CredentialVerifier
from broker.service.verified import Credential

log = logging.getLogger(__name__)

AUDIT_ACTION = "forward_auth"
MAX_QUEUED_DENIALS = 10_000
MAX_ALLOW_KEYS = 10_000
MAX_ASSERTIONS = 50_000
MAX_MEMO = 10_000
MAX_PUBLIC_MEMO = 4096

# Header names (C3). The web layer strips nothing: it only ever sets these.
H_USER = "X-Auth-Request-User"
H_EMAIL = "X-Auth-Request-Email"
H_GROUPS = "X-Auth-Request-Groups"
H_ROLE = "X-Auth-Request-Role"
H_SESSION = "X-Auth-Request-Session"
H_ASSERTION = "X-Auth-Request-Assertion"
H_REDIRECT = "X-Auth-Request-Redirect"
IDENTITY_HEADERS = (H_USER, H_EMAIL, H_GROUPS, H_ROLE, H_SESSION, H_ASSERTION)
# Public routes answer with the identity headers present and empty: proxies that copy the
# broker's headers only when present (Caddy 2.6 copies a literal placeholder when absent) then
# still overwrite whatever a client sent under those names.
NO_IDENTITY: Mapping[str, str] = dict.fromkeys(IDENTITY_HEADERS, "")
# How long a proxy may reuse an answer: one standard header, which nginx's cache honours (the
# hot path pays for every header it sends). Denials: never.
H_CACHE_CONTROL = "Cache-Control"
NO_STORE: Mapping[str, str] = {H_CACHE_CONTROL: "no-store"}
# nginx keeps a ``max-age=N`` answer until its whole-second clock passes ``now + N``: up to
# N + 1 s. An absolute ``X-Accel-Expires: @<second>`` (which nginx prefers) caps it at N.
H_ACCEL_EXPIRES = "X-Accel-Expires"


def cache_headers(max_age: int) -> Mapping[str, str]:
    """The answer may be reused for ``max_age`` seconds (0: not at all)."""
    if max_age <= 0:
        return NO_STORE
    return {H_CACHE_CONTROL: f"max-age={max_age}"}


_CONTROL = {c: None for c in (*range(0x20), 0x7F, *range(0x80, 0xA0), 0x2028, 0x2029)}


def header_safe(value: str, *, limit: int = 1024) -> str:
    """A header value without control characters (CR, LF, NUL, C1, line separators)."""
    if value.isascii() and value.isprintable():
        return value[:limit]
    return value.translate(_CONTROL)[:limit]


def groups_header(groups: Sequence[str]) -> str:
    """Comma-joined; a group whose name contains a comma is left out (it would read as two)."""
    return ",".join(g for g in (header_safe(g, limit=256) for g in groups) if g and "," not in g)


def user_name(cred: Credential) -> str:
    """``<provider>/<subject>``: unique across providers (two IdPs may both have an ``alice``)."""
    return f"{cred.provider}/{cred.subject}"


@dataclass(frozen=True)
class Verdict:
    status: int  # 200 | 401 | 403 only
    reason: str  # for the audit log and operators; never sent to the client
    headers: Mapping[str, str] = field(default_factory=dict)
    # An IAM user's credential whose policies are not compiled yet: the caller awaits
    # ``Authorizer.prepare(prepare)`` and decides again with ``prepared=True`` (not audited).
    prepare: Principal | None = None
    # A proxy may reuse this allow: the answer also carries ``accel_expires()``, which changes
    # every second while the verdict (and its frozen headers) lives longer.
    reusable: bool = False


HeaderFreezer = Callable[[dict[str, str]], Mapping[str, str]]
"""Makes the read-only headers object an allowed verdict keeps (the web layer passes the one its
server copies fastest; the service itself builds no HTTP types)."""

_AllowKey = tuple[str, str, str, str, str]  # session, role, origin, method, source address


class _NotCompiled(Exception):
    def __init__(self, principal: Principal) -> None:
        self.principal = principal


class _Allowed:
    """A remembered allow: what it was decided with, and how often it was served since."""

    __slots__ = ("action", "allow_key", "cred", "hits", "resource", "role", "verdict")

    def __init__(
        self,
        verdict: Verdict,
        cred: Credential,
        role: Any,
        allow_key: _AllowKey,
        action: str,
        resource: str,
    ):
        self.verdict = verdict
        self.cred = cred
        self.role = role  # the CompiledRole the decision was made with (identity, not equality)
        self.allow_key = allow_key
        self.action = action  # with ``resource``: what the access activity counts
        self.resource = resource
        self.hits = 0  # folded into the allow counts (audit, activity) when the entry is dropped


@dataclass(frozen=True)
class _Denial:
    time: float
    status: int
    reason: str
    principal: str
    method: str
    resource: str
    req: RequestInfo


class ForwardAuth:
    def __init__(
        self,
        settings: Settings,
        *,
        credentials: CredentialVerifier,
        authorizer: Authorizer,
        keyring: KeyRing,
        auditor: Auditor,
        clock: Clock,
        freeze_headers: HeaderFreezer = MappingProxyType,
        activity: ActivityLog | None = None,
    ) -> None:
        self._settings = settings
        self._activity = activity
        self._freeze_headers = freeze_headers
        self._credentials = credentials
        self._authorizer = authorizer
        self._keys = keyring
        self._auditor = auditor
        self._clock = clock
        self._issuer = settings.server.public_url
        self._login = settings.server.public_url + "/login?rd="
        self.assertion_lifetime = settings.proxy.assertion_lifetime
        self.cache_max_age = settings.proxy.auth_cache_max_age
        # immutable: one for every public answer
        self._public = Verdict(
            200,
            "public_route",
            freeze_headers({**cache_headers(self.cache_max_age), **NO_IDENTITY}),
            reusable=self.cache_max_age > 0,
        )
        self._accel_second = -1
        self._accel = ""
        self.public: tuple[PublicPattern, ...] = compile_public_routes(
            [r.url for r in settings.public_routes]
        )
        # (session, role, origin) -> the allowed verdict (headers + assertion), and when to renew
        self._assertions: OrderedDict[tuple[str, str, str], tuple[Verdict, float]] = OrderedDict()
        self._public_memo: dict[str, bool] = {}
        self._public_memo_for = self.public
        self._denials: list[_Denial] = []
        self._overflow: Counter[str] = Counter()
        self._allows: Counter[_AllowKey] = Counter()
        self._memo: dict[tuple[Hashable, int, str, str, str], tuple[Credential, Any, Decision]] = {}
        self._memo_second = 0
        # Allowed verdicts by the exact raw request (see ``cached``), for the current second.
        self._verdicts: dict[Hashable, _Allowed] = {}
        self._verdicts_second = 0
        self.cached_allows = 0  # allowed answers served from ``cached`` (for /metrics)

    # --- the hot path ---------------------------------------------------------------------

    def login_url(self, original_url: str) -> str:
        return self._login + quote(original_url, safe="")

    def is_public(self, resource: str) -> bool:
        """Remembered per resource (a pure function of the configured patterns)."""
        if self._public_memo_for is not self.public:
            self._public_memo.clear()
            self._public_memo_for = self.public
        hit = self._public_memo.get(resource)
        if hit is None:
            hit = any(p.matches(resource) for p in self.public)
            if len(self._public_memo) >= MAX_PUBLIC_MEMO:
                self._public_memo.clear()
            self._public_memo[resource] = hit
        return hit

    def accel_expires(self) -> str:
        """``X-Accel-Expires`` for a reusable allow: ``@<epoch second>``, the last whole second
        nginx may serve it from its cache, so it is reused at most ``cache_max_age`` seconds
        (``Cache-Control: max-age`` alone lets nginx keep it up to a second longer, which
        would stretch a revocation past 2 s). Made once a second."""
        second = int(self._clock.now())
        if second != self._accel_second:
            self._accel = f"@{second + self.cache_max_age - 1}"
            self._accel_second = second
        return self._accel

    def cached(self, raw: Hashable) -> Verdict | None:
        """The allowed verdict for a byte-identical request seen earlier in this clock second.

        ``raw`` is the whole request as received (peer, method, raw path, every raw header), so
        everything ``decide`` reads is the same; the decision's time inputs have one-second
        resolution, so within the second only state can differ, and that is re-checked here:
        the credential's expiry and revocation, and the role's compiled version. Denials are
        never cached (each one is audited). Last-seen was noted when the entry was made, this
        same second; allows are counted on the entry and folded into the audit counts later.
        """
        hit = self._verdicts.get(raw)
        if hit is None:
            return None
        now = self._clock.now()
        if int(now) != self._verdicts_second:  # an entry of a past second: not rolled yet
            return None
        try:
            valid = self._credentials.still_valid(hit.cred, now)
        except RevocationStateStale:
            valid = False  # ``decide`` denies it, audited
        if not valid or self._authorizer.role(hit.cred.role_arn) is not hit.role:
            self._fold(self._verdicts.pop(raw))
            return None
        hit.hits += 1
        self.cached_allows += 1
        return hit.verdict

    def _fold(self, entry: _Allowed) -> None:
        if entry.hits:
            self._allows[entry.allow_key] += entry.hits
            if self._activity is not None:
                self._activity.note(entry.cred.role_arn, entry.action, entry.resource, entry.hits)

    def _roll(self) -> None:
        """Forget remembered verdicts (a new second, or a flush), keeping their allow counts."""
        for entry in self._verdicts.values():
            self._fold(entry)
        self._verdicts.clear()

    def decide(
        self,
        original: OriginalRequest | UrlRejected,
        tokens_: Sequence[str],
        req: RequestInfo,
        *,
        raw: Hashable | None = None,
        prepared: bool = False,
    ) -> Verdict:
        """``tokens_``: the credentials presented, in order of preference (cookie, bearer).

        With ``raw`` (the request as received, see ``cached``), an allowed verdict is remembered
        for the rest of the clock second, once its token is one seen before: a token verified
        for the first time is rarely repeated byte for byte within the second, and remembering
        it would only keep its whole request in memory (the second request of a token that is
        repeated is then remembered)."""
        if isinstance(original, UrlRejected):
            return self._deny(403, original.reason, req)
        origin = original.origin  # a property: computed once here
        resource = origin + original.path
        if self.public and self.is_public(resource):
            return self._public
        cred: Credential | None = None
        why = "no_credential"
        credentials = self._credentials
        seen = False
        for token in tokens_:
            try:
                seen = token in credentials
                cred = credentials.verify(token)
                break
            except Unauthenticated as e:
                why = e.reason
            except RevocationStateStale as e:
                # Fail closed, and with a 403: a 401 would send the browser to a login that
                # cannot help (the session may be fine; this instance cannot tell).
                return self._deny(403, e.reason, req, original=original)
        if cred is None:
            return self._deny(
                401,
                why,
                req,
                original=original,
                headers={H_REDIRECT: self.login_url(original.url)},
            )
        source_ip = req.source_ip
        try:
            decision = self._decision(cred, original, origin, resource, source_ip, prepared)
        except _NotCompiled as e:  # an IAM user first seen: compiled by the caller, not audited
            return Verdict(403, "principal_not_compiled", prepare=e.principal)
        if not decision.allowed:
            sids = ",".join(m.sid or f"#{m.index}" for m in decision.matched_statements)
            reason = decision.decision + (f":{sids}" if sids else "")
            return self._deny(403, reason, req, original=original, cred=cred)
        key = (cred.session_id, cred.role_arn, origin, original.method, source_ip)
        allows = self._allows
        if key in allows or len(allows) < MAX_ALLOW_KEYS:
            allows[key] += 1
        action = "http:" + original.method
        if self._activity is not None:
            self._activity.note(cred.role_arn, action, resource)
        verdict = self._allowed(cred, origin)
        if raw is not None and seen:
            self._remember(raw, verdict, cred, key, action, resource)
        return verdict

    def _remember(
        self,
        raw: Hashable,
        verdict: Verdict,
        cred: Credential,
        allow_key: _AllowKey,
        action: str,
        resource: str,
    ) -> None:
        second = int(self._clock.now())
        if second != self._verdicts_second:
            self._roll()
            self._verdicts_second = second
        role = self._authorizer.role(cred.role_arn)
        if role is not None and len(self._verdicts) < MAX_MEMO:  # IAM users: not remembered
            self._verdicts[raw] = _Allowed(verdict, cred, role, allow_key, action, resource)

    def _decision(
        self,
        cred: Credential,
        original: OriginalRequest,
        origin: str,
        resource: str,
        source_ip: str,
        prepared: bool = False,
    ) -> Decision:
        """The policy decision, memoised within one clock second. ``_NotCompiled`` for an IAM
        user's credential whose policies are not compiled yet (unless ``prepared``).

        The request context has one-second resolution (``CurrentTime``, ``EpochTime``), so the
        same credential, role version, method, URL and source address within the same second
        always get the same decision: the memo is exact, not an approximation. It is dropped
        when the second changes.
        """
        second = int(self._clock.now())
        if second != self._memo_second:
            self._memo.clear()
            self._memo_second = second
        role: CompiledRole | CompiledUser | None = self._authorizer.role(cred.role_arn)
        if role is None:
            role = self._authorizer.user(cred.role_arn, cred.user_id)
            if role is None and not prepared and self._authorizer.needs_prepare(cred.principal):
                raise _NotCompiled(cred.principal)
        key = (_principal_key(cred), id(role), original.method, resource, source_ip)
        hit = self._memo.get(key)
        if hit is not None and hit[1] is role:
            return hit[2]
        principal = cred.principal
        context = self._authorizer.context_for(principal, source_ip=source_ip)
        action = "http:" + original.method
        decision = self._authorizer.decide(
            principal,
            action=action,
            resource=resource,
            context=context,
            session_policies=cred.session_policies,
        )
        if decision.allowed and original.path != original.path.lower():
            # Many upstreams match paths case-insensitively: an explicit Deny written in lower
            # case also applies to /ADMIN/.
            lowered = self._authorizer.decide(
                principal,
                action=action,
                resource=origin + original.path.lower(),
                context=context,
                session_policies=cred.session_policies,
            )
            if lowered.decision == "explicitDeny":
                decision = lowered
        if len(self._memo) < MAX_MEMO:
            self._memo[key] = (cred, role, decision)
        return decision

    def _allowed(self, cred: Credential, origin: str) -> Verdict:
        """The allowed verdict: identity headers and an assertion JWT (``aud`` = the origin).

        Built and signed once per (session, role, origin) and reused for half the assertion's
        lifetime, so the hot path neither signs nor re-sanitises on every request (nor copies:
        the headers are frozen once, by ``freeze_headers``).
        """
        now = self._clock.now()
        key = (cred.session_id, cred.role_arn, origin)
        hit = self._assertions.get(key)
        if hit is not None and now < hit[1]:
            return hit[0]
        exp = min(now + self.assertion_lifetime, cred.expires_at)
        iat = tokens.issue_time(now)
        claims: dict[str, Any] = {
            "iss": self._issuer,
            "sub": cred.user_id,
            "aud": origin,
            "iat": iat,
            "nbf": iat,
            "exp": int(exp),
            "jti": secrets.token_urlsafe(12),
            "user": user_name(cred),
            tokens.CLAIM_EMAIL: cred.email,
            tokens.CLAIM_GROUPS: list(cred.groups),
            tokens.CLAIM_ROLE: cred.role_arn,
            tokens.CLAIM_SID: cred.session_id,
            tokens.CLAIM_PROVIDER: cred.provider,
            tokens.CLAIM_SUBJECT: cred.subject,
        }
        if cred.origin_session_id and cred.origin_session_id != cred.session_id:
            claims[tokens.CLAIM_ORIGIN_SID] = cred.origin_session_id  # a derived credential's
        renew_at = now + (exp - now) / 2
        # The verdict is served until renew_at: a proxy may reuse it only if the credential
        # outlives renew_at by the cache lifetime (a credential about to end: never reused).
        age = self.cache_max_age if cred.expires_at - renew_at >= self.cache_max_age else 0
        headers = self._freeze_headers(
            {
                **cache_headers(age),
                H_USER: header_safe(user_name(cred)),
                H_EMAIL: header_safe(cred.email, limit=320),
                H_GROUPS: groups_header(cred.groups),
                H_ROLE: header_safe(cred.role_arn),
                H_SESSION: header_safe(cred.session_id, limit=128),
                H_ASSERTION: self._keys.sign(claims, typ=tokens.ASSERTION_TYP),
            }
        )
        verdict = Verdict(200, "allowed", headers, reusable=age > 0)
        self._assertions[key] = (verdict, renew_at)
        self._assertions.move_to_end(key)
        if len(self._assertions) > MAX_ASSERTIONS:
            self._assertions.popitem(last=False)
        return verdict

    def _deny(
        self,
        status: int,
        reason: str,
        req: RequestInfo,
        *,
        original: OriginalRequest | None = None,
        cred: Credential | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Verdict:
        self.record_denial(
            status,
            reason,
            req,
            principal=f"{cred.provider}/{cred.subject}" if cred else "",
            method=original.method if original else "",
            resource=original.resource if original else "",
        )
        return Verdict(status, reason, headers or {})

    def record_denial(
        self,
        status: int,
        reason: str,
        req: RequestInfo,
        *,
        principal: str = "",
        method: str = "",
        resource: str = "",
    ) -> None:
        """Queue a denial for the audit log (written by ``flush``); never blocks, never fails."""
        if len(self._denials) >= MAX_QUEUED_DENIALS:
            self._overflow[f"{status}:{reason}"] += 1
            return
        if not req.request_id:  # the hot path makes ids only for what it records
            req = RequestInfo(request_id=secrets.token_hex(8), source_ip=req.source_ip)
        self._denials.append(
            _Denial(self._clock.now(), status, reason, principal, method, resource[:2048], req)
        )

    # --- off the hot path -----------------------------------------------------------------

    async def flush(self) -> int:
        """Hand the queued denials and the counted allows to the auditor's batch (one
        transaction, not one per event) and wait until they are committed; returns how many
        events were handed over. If the store refuses, ``StoreError`` is raised and the auditor
        keeps the events and retries them. While the auditor is backlogged nothing is handed
        over: the events wait here, where the queue is bounded and folds a flood into summaries
        (so this never blocks the periodic tick)."""
        if self._auditor.backlogged:
            return 0
        denials, self._denials = self._denials, []
        overflow, self._overflow = self._overflow, Counter()
        self._roll()
        allows, self._allows = self._allows, Counter()
        record = self._auditor.record_batched
        for d in denials:
            await record(
                AUDIT_ACTION,
                "failure",
                req=d.req,
                principal=d.principal,
                reason=d.reason,
                details={"status": d.status, "method": d.method, "resource": d.resource},
                at=d.time,
                wait=False,
            )
        for reason, count in overflow.items():
            await record(
                AUDIT_ACTION,
                "failure",
                reason="denials_over_queue_limit",
                details={"status_reason": reason, "count": count},
                wait=False,
            )
        for (sid, role, origin, method, ip), count in allows.items():
            await record(
                AUDIT_ACTION,
                "success",
                req=RequestInfo(source_ip=ip),
                principal=role,
                details={"session": sid, "origin": origin, "method": method, "count": count},
                wait=False,
            )
        await self._auditor.flush()
        return len(denials) + len(overflow) + len(allows)


def _principal_key(cred: Credential) -> Hashable:
    """Everything about a credential that a policy decision can depend on (what
    ``Authorizer.context_for`` and ``decide`` read), so that another token of the same session
    within the same second shares the decision. Session policies are compared by identity: the
    memo entry keeps the credential, and so its policies, alive while the key is in use."""
    tags = cred.tags
    policies = cred.session_policies
    return (
        cred.role_arn,
        cred.user_id,
        cred.subject,
        cred.provider,
        cred.mfa,
        cred.mfa_authenticated_at,
        int(cred.issued_at),
        cred.source_identity,
        cred.session_name,
        tuple(sorted(tags.items())) if tags else (),
        tuple(map(id, policies)) if policies else (),
    )


def compile_public_routes(urls: Sequence[str]) -> tuple[PublicPattern, ...]:
    patterns: list[PublicPattern] = []
    problems: list[str] = []
    for i, url in enumerate(urls):
        try:
            patterns.append(public_pattern(url))
        except UrlRejected as e:
            problems.append(f"proxy.public[{i}].url: {url!r} cannot be normalised ({e.reason})")
    if problems:
        raise ConfigError(problems)
    return tuple(patterns)
