"""Role assumption: STS (AssumeRoleWithWebIdentity, AssumeRole, GetCallerIdentity), RFC 8693 token
exchange, RFC 7662 introspection and RFC 7009 revocation of broker tokens.

One pipeline issues every role credential (``_assume``): find the role, check the parameters
(``broker.domain.sts``), parse session policies, evaluate the trust policy with the caller's
claims or session as condition keys, and, for a chained request, the caller's own permissions;
then sign the SessionToken and audit. Every refusal raises an ``StsError`` with a specific
``reason`` and is audited with it; nothing is issued on a refusal. Issuance and refusal events
go through the auditor's batch (``Auditor.record_batched``): a credential does not wait for a
database commit, and every event is still written (see ``Auditor`` for the crash window).

Credentials. ``AccessKeyId`` is ``ASIA`` + 16 random base32 characters. ``SecretAccessKey`` is
*derived*, never stored: ``base64(HMAC-SHA256(K, AccessKeyId))[:40]`` with ``K`` derived from the
KEK (HKDF, purpose ``broker/sts-secret``). SigV4 verification needs the secret itself as the HMAC
key, so the server recomputes it from the AccessKeyId named in the signed request, after the
request's SessionToken (a broker JWT, ``typ`` ``broker-access+jwt``) has verified and names that
same AccessKeyId. Nothing secret is written anywhere; a KEK rotation voids every outstanding STS
secret, as it voids the signing keys. The SessionToken carries the role, the session name, the
source identity, the session tags and transitive tag keys, the session policies (compact JSON,
parsed once per distinct document and cached by hash), the chained flag and ``akid``.

Revocation. A credential's ``sid`` is ``sts-<uuid>``; RFC 7009 revocation records a ``session``
revocation for it, which the in-memory ``RevocationState`` applies at once here and within the
poll interval elsewhere. User and role revocations apply too (tokens carry ``sub`` = the user id
when the subject has signed in before, and the role ARN). A credential derived from a broker
session (AssumeRole signed with credentials that were, token exchange of a session or access
token) carries that session's id as ``origin_sid`` (``tokens.CLAIM_ORIGIN_SID``): the first
session of the chain, never an intermediate credential's ``sid``; one from an ID token alone
carries none. An ``origin`` revocation of the session (back-channel logout) voids it; a plain
logout (a ``session`` revocation) does not: like AWS STS credentials, it outlives the console
session it was taken from.

Restricted credentials never mint broader ones: a chained request must be allowed
``sts:AssumeRole`` by the caller's effective permissions (identity policies, boundary and session
policies), and the caller's session policies carry over to the new session unchanged. A
restricted caller cannot add a new session policy, since ``evaluate`` treats several session
policies as a union and the carried-over restriction must keep holding.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import secrets
import uuid
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from broker.clock import Clock
from broker.config import ProviderConfig, Settings
from broker.domain import sigv4, sts, tokens
from broker.domain.claims import (
    ContextValue,
    amr_auth_time,
    amr_shows_mfa,
    claims_to_context,
    federated_principal,
    global_context,
)
from broker.domain.tokens import (
    CLAIM_AKID,
    CLAIM_SESSION_NAME,
    CLAIM_SESSION_POLICIES,
    CLAIM_SOURCE_IDENTITY,
)
from broker.errors import (
    BrokerError,
    ExpiredIdToken,
    InvalidIdToken,
    ProviderUnavailable,
    RateLimited,
    RevocationStateStale,
    StoreError,
    StsAccessDenied,
    StsExpiredToken,
    StsExpiredTokenException,
    StsIDPCommunicationError,
    StsIDPRejectedClaim,
    StsInvalidClientTokenId,
    StsInvalidIdentityToken,
    StsInvalidParameterValue,
    StsMalformedPolicyDocument,
    StsMissingAuthenticationToken,
    StsServiceUnavailable,
    StsValidationError,
    TokenExpired,
    Unauthenticated,
)
from broker.idp import OIDCClient
from broker.idp.client import accepted_issuers
from broker.idp.id_token import parse_jws
from broker.keyring import KeyRing
from broker.policy import Policy, PolicyError, evaluate_trust, parse_policy
from broker.service.access_keys import AccessKeyService, KnownKey
from broker.service.activity import ActivityLog
from broker.service.audit import Auditor, RequestInfo
from broker.service.authorize import Authorizer
from broker.service.credentials import CredentialVerifier, peek_typ
from broker.service.mfa import MfaProof, MfaService, is_serial_number
from broker.service.policy_sets import PolicyCompiler
from broker.service.providers import RegisteredProviders
from broker.service.revocation import RevocationState
from broker.service.sessions import verified_claims
from broker.service.verified import ACCESS, USER_KEY, Credential, credential_from_claims
from broker.storage.base import Revocation, RoleRecord, Store

log = logging.getLogger(__name__)

WEB_IDENTITY_ACTION = "sts:AssumeRoleWithWebIdentity"
ASSUME_ROLE_ACTION = "sts:AssumeRole"
TAG_SESSION_ACTION = "sts:TagSession"
SET_SOURCE_IDENTITY_ACTION = "sts:SetSourceIdentity"
GET_SESSION_TOKEN_ACTION = "sts:GetSessionToken"
INTROSPECT_ACTION = "sts:IntrospectToken"
SOURCE_IDENTITY_CLAIM = "https://aws.amazon.com/source_identity"
MAX_WEB_IDENTITY_TOKEN = 20000
ROLE_REFRESH_COOLDOWN = 1.0
POLICY_CACHE_ENTRIES = 4096
USER_CACHE_SECONDS = 60.0
# AWS's message when an MFA code is refused (the reason goes to the audit log only)
MFA_FAILED = "MultiFactorAuthentication failed with invalid MFA one time pass code."
USER_CACHE_ENTRIES = 10_000
BROKER_TYPS = frozenset(
    t.lower() for t in (tokens.SESSION_TYP, tokens.ACCESS_TYP, tokens.ASSERTION_TYP)
)

# SessionToken claims (beyond tokens.CLAIM_*, where those every decoder reads are)
CLAIM_TRANSITIVE = "tt"
CLAIM_CHAINED = "ch"
CLAIM_ASSUMED_ROLE = "arn"
CLAIM_WEB_AUDIENCE = "waud"

_SESSION_NAME_CHARS = re.compile(r"[^\w+=,.@-]", re.ASCII)


@dataclass(frozen=True)
class IssuedCredentials:
    """One issued role credential and what the STS result elements say about it."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str = field(repr=False)
    issued_at: float
    expiration: float
    role_arn: str
    assumed_role_arn: str
    assumed_role_id: str
    session_name: str
    source_identity: str
    packed_policy_size: int | None
    subject: str = ""
    provider: str = ""
    audience: str = ""


@dataclass(frozen=True)
class CallerIdentity:
    arn: str
    user_id: str
    account: str


@dataclass(frozen=True)
class _Role:
    record: RoleRecord
    arn: str
    trust: Policy | None  # None: the trust policy does not parse (it admits nobody)


@dataclass(frozen=True)
class _Caller:
    """Who asks for role credentials, as the trust policy sees them."""

    principal: Mapping[str, Sequence[str]]
    context: Mapping[str, ContextValue]
    action: str
    user_id: str
    provider: str
    subject: str
    email: str = ""
    groups: tuple[str, ...] = ()
    mfa: bool = False
    mfa_authenticated_at: float | None = None
    chained: bool = False
    parent: Credential | None = None
    source_identity: str = ""
    inherited_tags: sts.SessionTags | None = None
    web_audience: str = ""
    origin_session_id: str = ""  # the broker session at the start of the chain, if any


@dataclass(frozen=True)
class AssumeParams:
    """The role-shaping parameters of a request, unvalidated (strings as received)."""

    role_arn: str
    session_name: str
    duration: str | None = None
    policy: str | None = None
    policy_arns: tuple[str, ...] = ()
    tags: tuple[tuple[str, str], ...] = ()
    transitive_tag_keys: tuple[str, ...] = ()
    external_id: str | None = None
    source_identity: str | None = None
    serial_number: str | None = None  # the caller's MFA device (AssumeRole)
    token_code: str | None = None  # a current code of it


def derive_secret(key: bytes, access_key_id: str) -> str:
    """The SecretAccessKey of an AccessKeyId (40 characters of base64, 240 bits)."""
    mac = hmac.new(key, access_key_id.encode("ascii"), hashlib.sha256).digest()
    return base64.b64encode(mac).decode("ascii")[:40]


def strip_token(token: str) -> str:
    """A compact JWT without the ASCII whitespace around it (it cannot hold any itself)."""
    return token.strip(" \t\r\n")


def session_identity_claims(session: Credential) -> dict[str, Any]:
    """The identity claims a session keeps (``sub``, ``email``, ``groups``): what trust
    policies see for a session's person. A condition on any other claim of the provider's ID
    token does not match (it is not kept), so such a role is refused: fail closed."""
    claims: dict[str, Any] = {"sub": session.subject}
    if session.email:
        claims["email"] = session.email
    if session.groups:
        claims["groups"] = list(session.groups)
    return claims


def session_name_for(subject: str) -> str:
    """A RoleSessionName derived from a subject, for token exchange (which names none)."""
    name = _SESSION_NAME_CHARS.sub("-", subject)[:64]
    return name if len(name) >= 2 else "token-exchange"


class StsService:
    def __init__(
        self,
        settings: Settings,
        *,
        store: Store,
        keyring: KeyRing,
        clients: Mapping[str, OIDCClient],
        authorizer: Authorizer,
        credentials: CredentialVerifier,
        revocations: RevocationState,
        auditor: Auditor,
        clock: Clock,
        secret_key: bytes,
        registered: RegisteredProviders | None = None,
        activity: ActivityLog | None = None,
        access_keys: AccessKeyService | None = None,
        mfa: MfaService | None = None,
    ) -> None:
        self._settings = settings
        self._activity = activity
        self._mfa = mfa  # SerialNumber + TokenCode (AssumeRole, GetSessionToken)
        self._account = settings.server.account_id
        self._issuer = settings.server.public_url
        self._store = store
        self._keys = keyring
        self._clients = clients
        self._authorizer = authorizer
        self._credentials = credentials
        self._revocations = revocations
        self._audit = auditor
        self._clock = clock
        self._secret_key = secret_key
        self._registered = registered  # providers registered through the IAM API
        self._access_keys = access_keys  # IAM users' long-lived keys (None: none accepted)
        self._roles: dict[str, _Role] = {}
        self._last_role_refresh = float("-inf")
        self._policies: OrderedDict[str, Policy] = OrderedDict()
        self._managed = PolicyCompiler()  # PolicyArns documents, parsed once per version
        # (provider, subject) -> (user id, cached until, revocations' user_generation then)
        self._user_ids: OrderedDict[tuple[str, str], tuple[str, float, int]] = OrderedDict()
        self._issuers: dict[str, str] = {}  # accepted iss -> provider name
        for name, p in settings.providers.items():
            if p.type != "local":
                for iss in accepted_issuers(p):
                    self._issuers[iss] = name
        credentials.verifiers[tokens.ACCESS_TYP] = self.verify_access_token

    # --- roles (in memory, refreshed from the store) -------------------------------------------

    async def refresh(self) -> None:
        """Re-read the roles (trust policies are parsed again only when a role changed) and
        the providers registered through the IAM API."""
        self._last_role_refresh = self._clock.now()
        if self._registered is not None:
            await self._registered.refresh()
        fresh: dict[str, _Role] = {}
        for r in await self._store.list_roles():
            old = self._roles.get(r.name)
            if old is not None and old.record.updated_at == r.updated_at:
                fresh[r.name] = old
                continue
            try:
                trust = parse_policy(dict(r.trust_policy), name=f"{r.name}/trust", kind="resource")
            except PolicyError as e:
                log.error("role %s has an invalid trust policy (it admits nobody): %s", r.name, e)
                trust = None
            fresh[r.name] = _Role(r, sts.role_arn(self._account, r.name), trust)
        self._roles = fresh

    async def _role(self, name: str) -> _Role:
        role = self._roles.get(name)
        if role is None and self._clock.now() - self._last_role_refresh >= ROLE_REFRESH_COOLDOWN:
            await self.refresh()
            role = self._roles.get(name)
        if role is None:
            raise StsAccessDenied(f"no_such_role:{name}")
        return role

    async def _user_id(self, provider: str, subject: str) -> str:
        """The broker user id of a federated subject that has signed in (so that revoking the
        user's sessions voids its STS credentials too), else ``provider/subject``. Cached for
        ``USER_CACHE_SECONDS``: user ids never change, a first login is seen within that time;
        a user revocation (which disabling records) drops the cache. A disabled user is refused
        (``StsAccessDenied``), and so is everyone while the store cannot say (503)."""
        now = self._clock.now()
        key = (provider, subject)
        generation = self._revocations.user_generation
        hit = self._user_ids.get(key)
        if hit is not None and hit[1] > now and hit[2] == generation:
            return hit[0]
        try:
            user = await self._store.find_user(provider, subject)
        except StoreError as e:
            # Not a stand-in id: a credential issued under one would escape the user's
            # revocation (offboarding) for its whole lifetime.
            raise StsServiceUnavailable(f"user_lookup:{e.reason}") from e
        if user is not None and user.disabled:
            self._user_ids.pop(key, None)  # not cached either: enabling takes effect at once
            raise StsAccessDenied("user_disabled")
        user_id = user.id if user is not None else f"{provider}/{subject}"
        self._user_ids[key] = (user_id, now + USER_CACHE_SECONDS, generation)
        self._user_ids.move_to_end(key)
        if len(self._user_ids) > USER_CACHE_ENTRIES:
            self._user_ids.popitem(last=False)
        return user_id

    # --- policies ------------------------------------------------------------------------------

    def _cached_policy(self, text: str, name: str) -> Policy:
        """A session policy from its compact JSON, parsed once per distinct document."""
        key = hashlib.sha256(text.encode("utf-8")).hexdigest()
        hit = self._policies.get(key)
        if hit is not None:
            self._policies.move_to_end(key)
            return hit
        policy = parse_policy(text, name=name)
        self._remember(text, policy)
        return policy

    async def _named_policy(self, name: str) -> Policy:
        """A managed policy named by ``PolicyArns`` (config or admin-created), read from the
        store and parsed once per version (a store failure denies, as any StoreError)."""
        record = await self._store.get_managed_policy(name)
        if record is None:
            raise StsInvalidParameterValue(
                f"no_such_policy:{name}", public_message=f"Policy {name} does not exist."
            )
        try:
            return self._managed.managed(record)
        except PolicyError as e:
            raise StsMalformedPolicyDocument(f"named_policy_invalid:{name}") from e

    def _remember(self, text: str, policy: Policy) -> None:
        key = hashlib.sha256(text.encode("utf-8")).hexdigest()
        self._policies[key] = policy
        if len(self._policies) > POLICY_CACHE_ENTRIES:
            self._policies.popitem(last=False)

    async def _session_policies(self, p: AssumeParams) -> list[str]:
        """The compact documents of ``Policy`` and ``PolicyArns`` (parsed, and cached so that
        verifying the issued token parses nothing)."""
        texts: list[str] = []
        if p.policy is not None:
            sts.check_policy_text(p.policy)
            try:
                policy = parse_policy(p.policy, name="session-policy")
            except PolicyError as e:
                raise StsMalformedPolicyDocument(f"session_policy:{e.reason}"[:300]) from e
            texts.append(sts.compact_json(policy.document))
            self._remember(texts[-1], policy)
        if len(p.policy_arns) > sts.MAX_POLICY_ARNS:
            raise StsValidationError(
                "too_many_policy_arns",
                public_message="1 validation error detected: Value at 'policyArns' failed to "
                "satisfy constraint: Member must have length less than or equal to 10",
            )
        for arn in p.policy_arns:
            name = sts.parse_policy_arn(arn, self._account)
            policy = await self._named_policy(name)
            texts.append(sts.compact_json(policy.document))
            self._remember(texts[-1], policy)
        return texts

    # --- the one pipeline ------------------------------------------------------------------------

    async def _assume(self, caller: _Caller, p: AssumeParams) -> IssuedCredentials:
        session_name = sts.check_session_name(p.session_name)
        role_name = sts.parse_role_arn(p.role_arn, self._account)
        if p.external_id is not None:
            sts.check_external_id(p.external_id)
        source_identity = caller.source_identity
        setting_source_identity = False
        if p.source_identity is not None:
            sts.check_source_identity(p.source_identity)
            if source_identity and p.source_identity != source_identity:
                raise StsAccessDenied(
                    "source_identity_change",
                    public_message="The source identity of a role session cannot be changed.",
                )
            setting_source_identity = not source_identity
            source_identity = p.source_identity
        texts = await self._session_policies(p)
        parent_texts: list[str] = []
        if caller.parent is not None and caller.parent.session_policies:
            if texts:
                raise StsInvalidParameterValue(
                    "restricted_session_adds_policy",
                    public_message="This session is restricted by a session policy, which "
                    "passes to the new session; it cannot add another.",
                )
            parent_texts = [str(t) for t in caller.parent.claims.get(CLAIM_SESSION_POLICIES, [])]
        tags = sts.session_tags(p.tags, p.transitive_tag_keys, inherited=caller.inherited_tags)
        role = await self._role(role_name)
        duration = sts.session_duration(
            p.duration, role_max=role.record.max_session_duration, chained=caller.chained
        )
        all_texts = texts or parent_texts
        packed = (
            sts.packed_policy_size(all_texts, tags.tags, tags.transitive)
            if all_texts or tags
            else None
        )

        context: dict[str, ContextValue] = dict(caller.context)
        context["sts:RoleSessionName"] = session_name
        if p.external_id is not None:
            context["sts:ExternalId"] = p.external_id
        if source_identity:
            context["sts:SourceIdentity"] = source_identity
        if tags:
            for k, v in tags.tags.items():
                context[f"broker:RequestTag/{k}"] = v
            context["broker:TagKeys"] = list(tags.tags)
            if tags.transitive:
                context["sts:TransitiveTagKeys"] = list(tags.transitive)
        actions = [caller.action]
        if p.tags or (caller.inherited_tags is None and tags):
            actions.append(TAG_SESSION_ACTION)
        if setting_source_identity:
            actions.append(SET_SOURCE_IDENTITY_ACTION)
        if role.trust is None:
            raise StsAccessDenied("trust_policy_invalid")
        if caller.parent is not None:
            await self._authorizer.prepare(caller.parent.principal)
        for action in actions:
            d = evaluate_trust(
                role.trust,
                principal=caller.principal,
                action=action,
                context=context,
                resource=role.arn,
            )
            if not d.allowed:
                raise StsAccessDenied(f"trust_policy:{action}:{d.decision}")
            if caller.parent is not None:
                mine = self._authorizer.decide(
                    caller.parent.principal,
                    action=action,
                    resource=role.arn,
                    context=context,
                    session_policies=caller.parent.session_policies,
                )
                if not mine.allowed and not (
                    mine.decision == "implicitDeny"
                    and self._names_user(role, caller, action, context)
                ):
                    raise StsAccessDenied(f"caller_policy:{action}:{mine.decision}")
        return self._issue(
            caller, role, session_name, duration, all_texts, tags, source_identity, packed
        )

    def _names_user(
        self, role: _Role, caller: _Caller, action: str, context: Mapping[str, ContextValue]
    ) -> bool:
        """As AWS within one account: a trust policy that names an IAM user's ARN itself
        grants that user the role without an identity policy (one that names the account
        root does not); an explicit deny in the user's policies still refuses."""
        parent = caller.parent
        if parent is None or not parent.is_user or role.trust is None:
            return False
        compiled = self._authorizer.user(parent.role_arn, parent.user_id)
        if compiled is None or compiled.broken:  # deleted, disabled, or not known: refused
            return False
        return evaluate_trust(
            role.trust,
            principal={"AWS": [parent.role_arn]},
            action=action,
            context=context,
            resource=role.arn,
        ).allowed

    def _issue(
        self,
        caller: _Caller,
        role: _Role,
        session_name: str,
        duration: int,
        policies: list[str],
        tags: sts.SessionTags,
        source_identity: str,
        packed: int | None,
    ) -> IssuedCredentials:
        assumed = sts.assumed_role_arn(self._account, role.record.name, session_name)
        return self._sign(
            caller,
            principal_arn=role.arn,
            assumed_arn=assumed,
            assumed_id=f"{sts.role_id(self._account, role.record.name)}:{session_name}",
            session_name=session_name,
            duration=duration,
            policies=policies,
            tags=tags,
            source_identity=source_identity,
            packed=packed,
        )

    def _sign(
        self,
        caller: _Caller,
        *,
        principal_arn: str,
        assumed_arn: str,
        assumed_id: str,
        session_name: str,
        duration: int,
        policies: list[str],
        tags: sts.SessionTags,
        source_identity: str,
        packed: int | None,
    ) -> IssuedCredentials:
        """Temporary credentials for ``principal_arn`` (a role, or an IAM user's
        ``GetSessionToken``): a signed SessionToken and its derived secret."""
        now = self._clock.now()
        # ``iat`` to the millisecond (a revocation within the same second must not void what
        # is issued after it: see ``tokens.issue_time``); ``exp`` stays whole seconds.
        iat = tokens.issue_time(now)
        exp = int(now) + duration
        akid = sts.new_access_key_id()
        assumed = assumed_arn
        claims: dict[str, Any] = {
            "iss": self._issuer,
            "sub": caller.user_id,
            "aud": self._issuer,
            "iat": iat,
            "nbf": iat,
            "exp": exp,
            "jti": secrets.token_urlsafe(16),
            tokens.CLAIM_SID: f"sts-{uuid.uuid4()}",
            tokens.CLAIM_ROLE: principal_arn,
            tokens.CLAIM_PROVIDER: caller.provider,
            tokens.CLAIM_SUBJECT: caller.subject,
            tokens.CLAIM_EMAIL: caller.email,
            tokens.CLAIM_GROUPS: list(caller.groups),
            tokens.CLAIM_MFA: caller.mfa,
            tokens.CLAIM_TAGS: dict(tags.tags),
            CLAIM_AKID: akid,
            CLAIM_SESSION_NAME: session_name,
            CLAIM_ASSUMED_ROLE: assumed,
            CLAIM_CHAINED: caller.chained,
        }
        if caller.mfa and caller.mfa_authenticated_at is not None:
            claims[tokens.CLAIM_MFA_AT] = caller.mfa_authenticated_at
        if source_identity:
            claims[CLAIM_SOURCE_IDENTITY] = source_identity
        if tags.transitive:
            claims[CLAIM_TRANSITIVE] = list(tags.transitive)
        if policies:
            claims[CLAIM_SESSION_POLICIES] = list(policies)
        if caller.web_audience:
            claims[CLAIM_WEB_AUDIENCE] = caller.web_audience
        if caller.origin_session_id:
            claims[tokens.CLAIM_ORIGIN_SID] = caller.origin_session_id
        token = self._keys.sign(claims, typ=tokens.ACCESS_TYP)
        return IssuedCredentials(
            access_key_id=akid,
            secret_access_key=derive_secret(self._secret_key, akid),
            session_token=token,
            issued_at=iat,
            expiration=float(exp),
            role_arn=principal_arn,
            assumed_role_arn=assumed,
            assumed_role_id=assumed_id,
            session_name=session_name,
            source_identity=source_identity,
            packed_policy_size=packed,
            subject=caller.subject,
            provider=f"arn:broker:iam::{self._account}:oidc-provider/{caller.provider}",
            audience=caller.web_audience,
        )

    async def _audited(
        self, action: str, req: RequestInfo, principal: str, caller: _Caller, p: AssumeParams
    ) -> IssuedCredentials:
        try:
            issued = await self._assume(caller, p)
        except BrokerError as e:
            await self._refused(action, req, principal or p.role_arn[:200], e)
            raise
        # Fail-closed: the credential is handed out only once its audit row is committed.
        await self._audit.record_or_fail(
            action,
            "success",
            req=req,
            principal=issued.assumed_role_arn,
            details={
                "access_key_id": issued.access_key_id,
                "role": issued.role_arn,
                "session_name": issued.session_name,
                "source_identity": issued.source_identity,
                "provider": caller.provider,
                "subject": caller.subject,
                "chained": caller.chained,
                "caller": caller.parent.claims.get(CLAIM_ASSUMED_ROLE, caller.parent.role_arn)
                if caller.parent is not None
                else "",
                "session_policies": bool(caller.parent and caller.parent.session_policies)
                or p.policy is not None
                or bool(p.policy_arns),
                "expires_at": issued.expiration,
            },
        )
        if self._activity is not None:
            # Counted for the caller: a role session, or the provider of a web identity.
            who = (
                caller.parent.role_arn
                if caller.parent is not None
                else self._settings.arn("oidc-provider", caller.provider)
            )
            self._activity.note(who, caller.action, issued.role_arn)
        return issued

    async def _refused(self, action: str, req: RequestInfo, principal: str, e: BrokerError) -> None:
        await self._audit.record_batched(
            action, "failure", req=req, principal=principal, reason=e.reason
        )

    # --- AssumeRoleWithWebIdentity ----------------------------------------------------------------

    async def verify_web_identity(
        self, token: str
    ) -> tuple[ProviderConfig, Mapping[str, Any], str]:
        """An external ID token, verified exactly as at login (``OIDCClient.verify_id_token``)
        by the provider whose issuer is its ``iss``, with the provider's ``audiences``.

        Returns (provider, claims, the accepted audience). Whitespace around the token is
        dropped: a compact JWS holds none, and ``echo "$TOKEN" > file`` (read by the SDKs'
        ``AWS_WEB_IDENTITY_TOKEN_FILE``) adds a newline."""
        token = strip_token(token)
        if not token or len(token) > MAX_WEB_IDENTITY_TOKEN:
            raise StsValidationError(
                "web_identity_token_length",
                public_message="1 validation error detected: Value at 'webIdentityToken' failed "
                "to satisfy constraint: Member must have length between 4 and 20000",
            )
        if peek_typ(token) in BROKER_TYPS:
            raise StsInvalidIdentityToken("broker_token_as_web_identity")
        try:
            unverified = parse_jws(token)
        except InvalidIdToken as e:
            raise StsInvalidIdentityToken(f"id_token:{e.reason}") from e
        iss = unverified.claims.get("iss")
        provider = self._issuers.get(iss) if isinstance(iss, str) else None
        if provider is not None and provider in self._clients:
            client = self._clients[provider]
            config = client.config
        else:
            registered = (
                await self._registered.find(iss)
                if self._registered is not None and isinstance(iss, str)
                else None
            )
            if registered is None:
                raise StsInvalidIdentityToken("unknown_issuer")
            client, config, provider = registered.client, registered.config, registered.name
        try:
            verified = await client.verify_id_token(token, nonce=None, audiences=config.audiences)
        except ExpiredIdToken as e:
            raise StsExpiredTokenException(f"id_token:{provider}:{e.reason}") from e
        except InvalidIdToken as e:
            raise StsInvalidIdentityToken(f"id_token:{provider}:{e.reason}") from e
        except ProviderUnavailable as e:
            raise StsIDPCommunicationError(f"provider:{provider}:{e.reason}") from e
        audience = next((a for a in verified.audience if a in config.audiences), "")
        return config, verified.claims, audience

    async def _web_identity_caller(
        self, token: str, req: RequestInfo
    ) -> tuple[_Caller, str, Mapping[str, Any]]:
        """(caller, audit principal ``provider/sub``, verified claims) of a web identity token."""
        provider, claims, audience = await self.verify_web_identity(token)
        subject = str(claims["sub"])
        email = claims.get("email")
        if not isinstance(email, str) or claims.get("email_verified") is False:
            email = ""
        raw_groups = claims.get("groups")
        groups = (
            tuple(g for g in raw_groups if isinstance(g, str))
            if isinstance(raw_groups, list)
            else ()
        )
        mfa = amr_shows_mfa(claims.get("amr"))  # RFC 8176: see docs/mfa.md
        now = self._clock.now()
        mfa_at = (amr_auth_time(claims) or now) if mfa else None
        user_id = await self._user_id(provider.name, subject)
        context: dict[str, ContextValue] = {
            **global_context(
                now=now, source_ip=req.source_ip, mfa=mfa, mfa_authenticated_at=mfa_at
            ),
            **claims_to_context(provider.name, claims),
        }
        caller = _Caller(
            principal=federated_principal(provider.name, self._account),
            context=context,
            action=WEB_IDENTITY_ACTION,
            user_id=user_id,
            provider=provider.name,
            subject=subject,
            email=email,
            groups=groups,
            mfa=mfa,
            mfa_authenticated_at=mfa_at,
            web_audience=audience,
        )
        return caller, f"{provider.name}/{subject}", claims

    @staticmethod
    def _with_token_extras(p: AssumeParams, claims: Mapping[str, Any]) -> AssumeParams:
        """Session tags and source identity come from the web identity token's claims."""
        pairs, transitive = sts.tags_from_claim(claims.get(sts.TAGS_CLAIM))
        source = claims.get(SOURCE_IDENTITY_CLAIM)
        if source is not None and not isinstance(source, str):
            raise StsIDPRejectedClaim("source_identity_claim_not_string")
        return AssumeParams(
            role_arn=p.role_arn,
            session_name=p.session_name,
            duration=p.duration,
            policy=p.policy,
            policy_arns=p.policy_arns,
            tags=tuple(pairs),
            transitive_tag_keys=tuple(transitive),
            source_identity=source,
        )

    async def assume_role_with_web_identity(
        self, token: str, p: AssumeParams, req: RequestInfo
    ) -> IssuedCredentials:
        """The unsigned STS action: ``p`` holds the request's parameters (no tags: those come
        from the token)."""
        action = "sts.AssumeRoleWithWebIdentity"
        try:
            sts.check_session_name(p.session_name)
            sts.parse_role_arn(p.role_arn, self._account)
            caller, principal, claims = await self._web_identity_caller(token, req)
            params = self._with_token_extras(p, claims)
        except BrokerError as e:
            await self._refused(action, req, p.role_arn[:200], e)
            raise
        return await self._audited(action, req, principal, caller, params)

    # --- a person's session: role credentials as at browser login ---------------------------------

    async def assume_for_session(
        self,
        session: Credential,
        role_name: str,
        req: RequestInfo,
        *,
        duration: int | None = None,
        action: str = "cli.credentials",
    ) -> IssuedCredentials:
        """Role credentials for the person holding a broker *session* (the CLI's, or the
        browser's for the portal): the role's trust policy is evaluated as at browser login
        (``RoleCatalog.candidates``: the federated principal of the session's provider, the
        session's identity claims, ``sts:AssumeRoleWithWebIdentity``), not as role chaining.
        The result carries ``origin_sid`` = the session, so ending the session ends it."""
        principal = f"{session.provider}/{session.subject}"
        try:
            if session.kind != "session":
                raise StsAccessDenied("not_a_session_credential")
            arn = sts.role_arn(self._account, role_name)
            mfa_at = session.mfa_authenticated_at if session.mfa else None
            context: dict[str, ContextValue] = {
                **global_context(
                    now=self._clock.now(),
                    source_ip=req.source_ip,
                    mfa=session.mfa,
                    mfa_authenticated_at=mfa_at,
                ),
                **claims_to_context(session.provider, session_identity_claims(session)),
            }
            caller = _Caller(
                principal=federated_principal(session.provider, self._account),
                context=context,
                action=WEB_IDENTITY_ACTION,
                user_id=session.user_id,
                provider=session.provider,
                subject=session.subject,
                email=session.email,
                groups=session.groups,
                mfa=session.mfa,
                mfa_authenticated_at=mfa_at,
                origin_session_id=session.session_id,
            )
            p = AssumeParams(
                role_arn=arn,
                session_name=session_name_for(session.subject),
                duration=None if duration is None else str(duration),
            )
        except BrokerError as e:
            await self._refused(action, req, principal, e)
            raise
        return await self._audited(action, req, principal, caller, p)

    # --- signed requests (SigV4) ------------------------------------------------------------------

    async def authenticate(
        self,
        *,
        method: str,
        raw_path: str,
        raw_query: str,
        headers: Mapping[str, Sequence[str]],
        body: bytes,
        service: str = "sts",
    ) -> Credential:
        """The credential that signed this request, or the ``StsError`` AWS would give.
        ``service``: the credential scope's service (``iam`` for the IAM API).

        Temporary credentials (``ASIA...``) come with their SessionToken; an IAM user's
        long-lived key (``AKIA...``) comes without one and is looked up (``AccessKeyService``)."""
        auth = headers.get("authorization")
        if not auth:
            raise StsMissingAuthenticationToken("missing_authorization")
        amz_date = headers.get("x-amz-date")
        signed = sigv4.parse_authorization(auth[0], amz_date[0] if amz_date else None)
        token = headers.get("x-amz-security-token")
        if sts.is_user_access_key_id(signed.access_key_id):
            if token and token[0]:
                raise StsInvalidClientTokenId("security_token_with_long_term_key")
            return await self._authenticate_key(
                signed,
                method=method,
                raw_path=raw_path,
                raw_query=raw_query,
                headers=headers,
                body=body,
                service=service,
            )
        if not sts.is_access_key_id(signed.access_key_id):
            raise StsInvalidClientTokenId("access_key_id_format")
        if not token or not token[0]:
            raise StsInvalidClientTokenId("missing_security_token")
        if peek_typ(token[0]) != tokens.ACCESS_TYP:
            raise StsInvalidClientTokenId("security_token_typ")
        try:
            cred = self._credentials.verify(token[0])
        except TokenExpired as e:
            raise StsExpiredToken(f"security_token:{e.reason}") from e
        except Unauthenticated as e:
            raise StsInvalidClientTokenId(f"security_token:{e.reason}") from e
        akid = str(cred.claims.get(CLAIM_AKID, ""))
        if not hmac.compare_digest(akid.encode(), signed.access_key_id.encode()):
            raise StsInvalidClientTokenId("access_key_id_does_not_match_token")
        sigv4.check_scope(
            signed, now=self._clock.now(), sent_headers=list(headers), service=service
        )
        sigv4.verify(
            signed,
            derive_secret(self._secret_key, akid),
            method=method,
            raw_path=raw_path,
            raw_query=raw_query,
            headers=headers,
            body=body,
        )
        return cred

    async def _authenticate_key(
        self,
        signed: sigv4.SignedRequest,
        *,
        method: str,
        raw_path: str,
        raw_query: str,
        headers: Mapping[str, Sequence[str]],
        body: bytes,
        service: str,
    ) -> Credential:
        sigv4.check_scope(
            signed, now=self._clock.now(), sent_headers=list(headers), service=service
        )
        if self._access_keys is None:
            raise StsInvalidClientTokenId("access_keys_unavailable")
        try:
            known = await self._access_keys.lookup(signed.access_key_id)
        except StoreError as e:
            raise StsServiceUnavailable(f"access_key_lookup:{e.reason}") from e
        if known is None:  # unknown, Inactive, deleted, or its user disabled or deleted
            raise StsInvalidClientTokenId("access_key_not_active")
        sigv4.verify(
            signed,
            known.secret,
            method=method,
            raw_path=raw_path,
            raw_query=raw_query,
            headers=headers,
            body=body,
        )
        self._access_keys.note_use(signed.access_key_id, region=signed.region, service=service)
        return self._key_credential(known)

    def _key_credential(self, known: KnownKey) -> Credential:
        """The caller of a request signed with a long-lived key: the IAM user."""
        user = known.user
        arn = self._settings.arn("user", user.name)
        akid = known.record.access_key_id
        return Credential(
            USER_KEY,
            f"key-{akid}",
            user.id,
            user.provider,
            user.name,
            arn,
            user.email,
            (),
            False,
            known.record.created_at,
            float("inf"),
            tags=dict(known.tags),
            claims={CLAIM_ASSUMED_ROLE: arn, CLAIM_AKID: akid, CLAIM_SESSION_NAME: user.name},
            session_name=user.name,
        )

    def caller_identity(self, cred: Credential) -> CallerIdentity:
        arn = str(cred.claims.get(CLAIM_ASSUMED_ROLE, cred.role_arn))
        if cred.is_user:  # a user's key or GetSessionToken credentials: the user, as AWS
            return CallerIdentity(
                arn=cred.role_arn,
                user_id=sts.iam_user_unique_id(cred.user_id),
                account=self._account,
            )
        return CallerIdentity(
            arn=arn,
            user_id=f"{sts.role_id(self._account, cred.role_name)}:{cred.session_name}",
            account=self._account,
        )

    def _chained_caller(
        self, parent: Credential, req: RequestInfo, mfa: MfaProof | None = None
    ) -> _Caller:
        """``mfa``: a code of the caller's device accepted for this request: the new session
        (and the trust policy's context) has MFA from now, whatever the parent had."""
        principal = parent.principal
        if mfa is not None:
            principal = replace(principal, mfa=True, mfa_authenticated_at=mfa.authenticated_at)
        ctx: dict[str, ContextValue] = self._authorizer.context_for(
            principal, source_ip=req.source_ip
        )
        assumed = str(parent.claims.get(CLAIM_ASSUMED_ROLE, parent.role_arn))
        transitive = tuple(str(k) for k in parent.claims.get(CLAIM_TRANSITIVE, []))
        trusted: dict[str, list[str]] = {"AWS": [parent.role_arn, assumed]}
        if parent.is_user:  # a trust policy may name the user, or the account (its root)
            trusted = {
                "AWS": [parent.role_arn, f"arn:broker:iam::{self._account}:root", self._account]
            }
        return _Caller(
            principal=trusted,
            context=ctx,
            action=ASSUME_ROLE_ACTION,
            user_id=parent.user_id,
            provider=parent.provider,
            subject=parent.subject,
            email=parent.email,
            groups=parent.groups,
            mfa=principal.mfa,
            mfa_authenticated_at=principal.mfa_authenticated_at,
            chained=not parent.is_user,  # a user's request is not role chaining
            parent=parent,
            source_identity=parent.source_identity,
            inherited_tags=sts.SessionTags(
                tags={k: v for k, v in parent.tags.items() if k in transitive},
                transitive=transitive,
            ),
            # the parent's own origin: a session token's is itself, a chain keeps the first one
            origin_session_id=parent.origin_session_id,
        )

    async def assume_role(
        self, parent: Credential, p: AssumeParams, req: RequestInfo
    ) -> IssuedCredentials:
        assumed = str(parent.claims.get(CLAIM_ASSUMED_ROLE, parent.role_arn))
        proof = None
        if p.serial_number is not None or p.token_code is not None:
            try:
                proof = await self.check_mfa(
                    parent.user_id, p.serial_number, p.token_code, req, "sts.AssumeRole"
                )
            except BrokerError as e:
                await self._refused("sts.AssumeRole", req, assumed, e)
                raise
        caller = self._chained_caller(parent, req, proof)
        return await self._audited("sts.AssumeRole", req, assumed, caller, p)

    # --- GetSessionToken -------------------------------------------------------------------------

    async def get_session_token(
        self,
        cred: Credential,
        req: RequestInfo,
        *,
        duration: str | None = None,
        serial_number: str | None = None,
        token_code: str | None = None,
    ) -> IssuedCredentials:
        """Temporary credentials for the IAM user whose long-lived key signed the request
        (AWS refuses temporary credentials here). The SessionToken's principal is the user:
        the user's policies decide what it may do, and GetCallerIdentity names the user."""
        action = "sts.GetSessionToken"
        try:
            if cred.kind != USER_KEY:
                raise StsAccessDenied(
                    "get_session_token_needs_long_term_key",
                    public_message="Cannot call GetSessionToken with session credentials",
                )
            seconds = sts.session_token_duration(duration)
            proof = None
            if serial_number is not None or token_code is not None:
                proof = await self.check_mfa(cred.user_id, serial_number, token_code, req, action)
            mfa = proof is not None
            await self._authorizer.prepare(cred.principal)
            compiled = self._authorizer.user(cred.role_arn, cred.user_id)
            if compiled is None or compiled.broken:
                raise StsAccessDenied("user_not_usable")
        except BrokerError as e:
            await self._refused(action, req, cred.role_arn, e)
            raise
        caller = _Caller(
            principal={"AWS": [cred.role_arn]},
            context={},
            action=GET_SESSION_TOKEN_ACTION,
            user_id=cred.user_id,
            provider=cred.provider,
            subject=cred.subject,
            email=cred.email,
            mfa=mfa,
            mfa_authenticated_at=proof.authenticated_at if proof is not None else None,
        )
        issued = self._sign(
            caller,
            principal_arn=cred.role_arn,
            assumed_arn=cred.role_arn,
            assumed_id=sts.iam_user_unique_id(cred.user_id),
            session_name=cred.subject,
            duration=seconds,
            policies=[],
            tags=sts.SessionTags(tags=dict(cred.tags), transitive=()),  # the user's tags
            source_identity="",
            packed=None,
        )
        await self._audit.record_or_fail(
            action,
            "success",
            req=req,
            principal=cred.role_arn,
            details={
                "access_key_id": issued.access_key_id,
                "long_term_key": str(cred.claims.get(CLAIM_AKID, "")),
                "mfa": mfa,
                "expires_at": issued.expiration,
            },
        )
        return issued

    async def check_mfa(
        self,
        user_id: str,
        serial_number: str | None,
        token_code: str | None,
        req: RequestInfo,
        purpose: str,
    ) -> MfaProof:
        """STS's ``SerialNumber`` + ``TokenCode``: both or neither (``ValidationError``), in
        AWS's forms; a refused code (wrong, replayed, not the caller's device, rate-limited) is
        AWS's ``AccessDenied``, audited by ``MfaService`` with the reason."""
        if serial_number is None or token_code is None:
            raise StsValidationError(
                "mfa_parameters_incomplete",
                public_message="SerialNumber and TokenCode must be given together.",
            )
        if not is_serial_number(serial_number):
            raise StsValidationError(
                "mfa_serial_malformed",
                public_message="1 validation error detected: Value at 'serialNumber' failed to "
                "satisfy constraint: Member must satisfy regular expression pattern: "
                "[\\w+=/:,.@-]* and have length between 9 and 256",
            )
        if not (len(token_code) == 6 and token_code.isascii() and token_code.isdigit()):
            raise StsValidationError(
                "mfa_token_code_malformed",
                public_message="1 validation error detected: Value at 'tokenCode' failed to "
                "satisfy constraint: Member must satisfy regular expression pattern: [\\d]* "
                "and have length 6",
            )
        if self._mfa is None:
            raise StsAccessDenied("mfa_unavailable", public_message=MFA_FAILED)
        try:
            proof = await self._mfa.verify(
                user_id, serial_number, token_code, req=req, purpose=purpose
            )
        except RateLimited as e:
            raise StsAccessDenied(f"mfa:{e.reason}", public_message=MFA_FAILED) from e
        if proof is None:
            raise StsAccessDenied("mfa_code_refused", public_message=MFA_FAILED)
        return proof

    # --- the SessionToken as a bearer credential --------------------------------------------------

    def verify_access_token(self, token: str) -> Credential:
        """``CredentialVerifier`` hook for ``typ`` = ACCESS_TYP; raises ``Unauthenticated``."""
        c = verified_claims(self._keys, token, typ=tokens.ACCESS_TYP, audience=self._issuer)
        cred = credential_from_claims(
            c,
            kind=ACCESS,
            session_policy=lambda text: self._cached_policy(text, "session-policy"),
        )
        if self._revocations.is_revoked(
            session_id=cred.session_id,
            user_id=cred.user_id,
            role_arn=cred.role_arn,
            issued_at=cred.issued_at,
            origin_session_id=cred.origin_session_id,
        ):
            raise Unauthenticated("session_revoked")
        return cred

    # --- RFC 8693 token exchange ------------------------------------------------------------------

    async def exchange(
        self, subject_token: str, kind: str, role_arn: str, req: RequestInfo
    ) -> IssuedCredentials:
        """A role credential for the holder of ``subject_token``: an IdP ID token (``kind``
        ``id_token`` or ``jwt``), or a broker session/access token (``access_token`` or ``jwt``;
        this is role chaining). Raises ``StsError``; the web layer renders it as OAuth."""
        action = "oauth2.token_exchange"
        subject_token = strip_token(subject_token)
        is_broker = peek_typ(subject_token) in BROKER_TYPS
        err: BrokerError
        if kind == "access_token" and not is_broker:
            err = StsInvalidClientTokenId("subject_token:not_a_broker_token")
            await self._refused(action, req, role_arn[:200], err)
            raise err
        if is_broker:
            try:
                parent = await self._credentials.verify_fresh(subject_token)
            except Unauthenticated as e:
                err = (
                    StsExpiredToken(f"subject_token:{e.reason}")
                    if isinstance(e, TokenExpired)
                    else StsInvalidClientTokenId(f"subject_token:{e.reason}")
                )
                await self._refused(action, req, role_arn[:200], err)
                raise err from e
            except RevocationStateStale as e:
                err = StsServiceUnavailable(e.reason)
                await self._refused(action, req, role_arn[:200], err)
                raise err from e
            caller = self._chained_caller(parent, req)
            name = parent.session_name or session_name_for(parent.subject)
            p = AssumeParams(role_arn=role_arn, session_name=name)
            return await self._audited(action, req, parent.role_arn, caller, p)
        try:
            caller, principal, claims = await self._web_identity_caller(subject_token, req)
            p = self._with_token_extras(
                AssumeParams(role_arn=role_arn, session_name=session_name_for(caller.subject)),
                claims,
            )
        except BrokerError as e:
            await self._refused(action, req, role_arn[:200], e)
            raise
        return await self._audited(action, req, principal, caller, p)

    # --- RFC 7662 introspection and RFC 7009 revocation -------------------------------------------

    def introspect(self, caller: Credential, token: str) -> dict[str, Any]:
        """RFC 7662 §2.2. Active only if the token verifies (signature, expiry, revocation) and
        the caller may see it: its own token, or ``sts:IntrospectToken`` allowed on the token's
        role ARN by the caller's permissions. Otherwise ``{"active": false}``, which says nothing
        more (§2.2: "the authorization server MAY respond ... as an inactive token")."""
        try:
            target = self._credentials.verify(token)
        except Unauthenticated:
            return {"active": False}
        if caller.session_id != target.session_id:
            d = self._authorizer.decide(
                caller.principal,
                action=INTROSPECT_ACTION,
                resource=target.role_arn,
                context=self._authorizer.context_for(caller.principal, source_ip=""),
                session_policies=caller.session_policies,
            )
            if not d.allowed:
                return {"active": False}
        c = target.claims
        out: dict[str, Any] = {
            "active": True,
            "scope": f"role:{target.role_name}",
            "token_type": "Bearer",
            "exp": int(target.expires_at),
            "iat": int(target.issued_at),  # §2.2: integer timestamps (the token's to the ms)
            "nbf": int(c.get("nbf", target.issued_at)),
            "sub": target.user_id,
            "aud": c.get("aud"),
            "iss": c.get("iss"),
            "jti": c.get("jti"),
            "username": target.subject,
            "role": target.role_arn,
            "sid": target.session_id,
            "provider": target.provider,
            "broker_token_type": "access" if target.kind == "access" else "session",
        }
        if target.kind == "access":
            out["assumed_role"] = c.get(CLAIM_ASSUMED_ROLE)
            out["session_name"] = target.session_name
            out["access_key_id"] = c.get(CLAIM_AKID)
            if target.source_identity:
                out["source_identity"] = target.source_identity
            if target.tags:
                out["tags"] = dict(target.tags)
            out["restricted"] = bool(target.session_policies)
        return out

    async def revoke(self, token: str, req: RequestInfo) -> bool:
        """RFC 7009 §2.1: whoever holds a token may revoke it. Returns whether something was
        revoked; an invalid, expired or already revoked token changes nothing (§2.2: 200)."""
        try:
            target = await self._credentials.verify_fresh(token)
        except Unauthenticated as e:
            await self._audit.record("oauth2.revoke", "failure", req=req, reason=e.reason)
            return False
        except RevocationStateStale as e:
            await self._audit.record("oauth2.revoke", "failure", req=req, reason=e.reason)
            raise StsServiceUnavailable(e.reason) from e
        now = self._clock.now()
        principal = str(target.claims.get(CLAIM_ASSUMED_ROLE, target.role_arn))
        details = {"sid": target.session_id, "kind": target.kind}
        # Fail-closed (``AuditUnavailable``, 503): nothing is revoked without its audit row.
        await self._audit.record_or_fail(
            "oauth2.revoke", "success", req=req, principal=principal, details=details
        )
        try:
            if target.kind == "session":
                await self._store.revoke_session(target.session_id, now=now, reason="rfc7009")
            else:
                await self._store.add_revocation(
                    Revocation(kind="session", target=target.session_id, before=now, created_at=now)
                )
        except StoreError as e:
            await self._audit.record(
                "oauth2.revoke", "failure", req=req, principal=target.session_id, reason=e.reason
            )
            raise StsServiceUnavailable(e.reason) from e
        self._revocations.apply(
            Revocation(kind="session", target=target.session_id, before=now, created_at=now)
        )
        return True
