"""The storage protocol: what the broker keeps, independent of the database behind it.

Backends (``broker.storage.sql`` on SQLite and PostgreSQL) implement ``Store``. Every method is
atomic on its own. Times are float seconds since the epoch (UTC). Missing records raise
``RecordNotFound``; unique clashes raise ``AlreadyExists``; any other database failure is
raised as ``StoreError`` so that callers can deny instead of guessing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from broker.domain.audit_chain import ChainRow


@dataclass(frozen=True)
class User:
    """A person or program known to the broker, keyed by (provider, subject) — never by email."""

    id: str
    provider: str
    subject: str
    name: str  # display / IAM user name; for local users the login name
    email: str = ""
    groups: tuple[str, ...] = ()
    created_at: float = 0.0
    first_login_at: float | None = None
    last_login_at: float | None = None
    password_hash: str | None = None  # local provider only; an argon2 hash
    must_change_password: bool = False
    disabled: bool = False
    password_changed_at: float | None = None


@dataclass(frozen=True)
class AccessKeyRecord:
    """An IAM user's long-lived access key. ``secret_sealed``: the secret sealed under the KEK
    (``broker.kek.seal``, associated data ``seal_kid``); never in the clear at rest."""

    access_key_id: str
    user_id: str
    secret_sealed: bytes = field(repr=False)
    seal_kid: str
    status: str  # "Active" | "Inactive"
    created_at: float
    last_used_at: float | None = None
    last_used_region: str | None = None
    last_used_service: str | None = None


@dataclass(frozen=True)
class AccessKeyUse:
    """One access key's latest use, as batched for ``record_access_key_use``."""

    at: float
    region: str
    service: str


@dataclass(frozen=True)
class LoginState:
    """One pending authorization-code flow (single-use, expiring, bound to one browser)."""

    state: str
    provider: str
    browser_binding: str  # a hash of the browser's login cookie value
    nonce: str
    code_verifier: str
    redirect_after: str
    role: str | None
    created_at: float
    expires_at: float


@dataclass(frozen=True)
class SingleUse:
    """A single-use value of a login flow (a pending role choice, a password-change ticket, a
    provider's logout-token ``jti``, ...). The browser holds the value; the store holds only its
    hash (``key``), namespaced by ``kind``, with the hash of the browser-binding cookie
    (``binding``; ``""`` for values that no browser holds) and what the value stands for."""

    kind: str
    key: str
    binding: str
    payload: Mapping[str, Any]
    created_at: float
    expires_at: float


@dataclass(frozen=True)
class ProviderLogout:
    """A provider's back-channel logout, remembered while a login it must stop could still be
    pending (a tombstone): the provider session ``sid`` ended (``kind`` ``"sid"``), or every
    session of the provider's user ``sub`` up to ``logged_out_at`` (``kind`` ``"sub"``)."""

    provider: str
    kind: str  # "sid" | "sub"
    value: str  # the provider's session id, or its subject
    logged_out_at: float
    expires_at: float


@dataclass(frozen=True)
class LoginFailures:
    """Failed logins counted against one key (a hashed user name or address) in a fixed
    window that starts at its first failure and ends at ``window_end``."""

    key: str
    count: int
    window_end: float


@dataclass(frozen=True)
class Session:
    """A server-side session; the cookie's JWT names it by ``id`` (the ``sid`` claim)."""

    id: str
    user_id: str
    provider: str
    subject: str
    role_arn: str
    email: str = ""
    groups: tuple[str, ...] = ()
    mfa: bool = False
    tags: Mapping[str, str] = field(default_factory=dict)
    created_at: float = 0.0
    expires_at: float = 0.0  # absolute end
    idle_timeout: float = 3600.0
    last_seen_at: float = 0.0
    revoked_at: float | None = None
    revoked_reason: str = ""
    provider_sid: str = ""  # the provider's session it came from (ID token ``sid``), or ""
    # when the holder last proved a second factor (None without MFA): aws:MultiFactorAuthAge
    mfa_authenticated_at: float | None = None


@dataclass(frozen=True)
class MfaDevice:
    """A virtual (TOTP) MFA device. ``seed_sealed`` is the Base32 seed sealed under the KEK
    (bound to ``seal_kid``), never plain; ``user_id`` is None until the device is enabled for a
    user; ``last_step`` is the last TOTP time step accepted (a code is accepted once)."""

    serial_number: str
    name: str
    path: str
    seed_sealed: bytes
    seal_kid: str
    created_at: float
    user_id: str | None = None
    enabled_at: float | None = None
    last_step: int = 0


@dataclass(frozen=True)
class SigningKey:
    """A broker signing key. ``private_key`` is the KEK-encrypted private key, never plain."""

    kid: str
    algorithm: str
    private_key: bytes
    public_jwk: Mapping[str, Any]
    # Signs from this time on (its activation). A rotation stores the key ahead of it, so that
    # every instance has it, and the JWKS shows it, before anyone signs with it.
    created_at: float
    retired_at: float | None = None  # no longer signs after this time
    expires_at: float | None = None  # removed from the JWKS after this time


@dataclass(frozen=True)
class RoleRecord:
    name: str
    description: str
    trust_policy: Mapping[str, Any]
    policies: Sequence[Mapping[str, Any]]
    permissions_boundary: Mapping[str, Any] | None
    max_session_duration: float
    source: str = "api"  # "config" roles are reconciled at start-up and read-only through the API
    created_at: float = 0.0
    updated_at: float = 0.0


@dataclass(frozen=True)
class ManagedPolicyRecord:
    """A named (managed) policy, attachable to users, groups and roles by name."""

    name: str
    document: Mapping[str, Any]
    description: str = ""
    source: str = "api"  # "config" policies are reconciled at start-up and read-only via the API
    created_at: float = 0.0
    updated_at: float = 0.0  # bumped whenever ``document`` changes (compiled roles recompile)
    default_version: str = "v1"  # the version whose document is ``document``


@dataclass(frozen=True)
class PolicyVersion:
    """One version of a managed policy (``v1``, ``v2``, ...; numbers are never reused)."""

    policy_name: str
    version_id: str
    document: Mapping[str, Any]
    created_at: float
    is_default: bool = False


@dataclass(frozen=True)
class PolicyUseCount:
    """How many principals a managed policy is attached to, and bounds."""

    attachments: int = 0
    boundaries: int = 0


@dataclass(frozen=True)
class OidcProviderRecord:
    """An OpenID Connect provider registered through the IAM API (``CreateOpenIDConnectProvider``).

    ``name`` is the URL's host (lower case, with its port if any) and path, without the scheme
    and a trailing ``/``: the ARN's resource (``oidc-provider/<name>``), the ``Federated``
    principal and the prefix of its claims' condition keys (``<name>:sub``), as in AWS.
    ``url`` is the issuer exactly as registered (ID tokens' ``iss`` must equal it)."""

    name: str
    url: str
    client_ids: tuple[str, ...] = ()
    thumbprints: tuple[str, ...] = ()
    tags: tuple[tuple[str, str], ...] = ()
    created_at: float = 0.0
    updated_at: float = 0.0


@dataclass(frozen=True)
class Group:
    """A set of users sharing policies (IAM groups: broker-managed, not the provider's claims)."""

    name: str
    description: str = ""
    created_at: float = 0.0


TagTarget = Literal["user", "role"]
"""What carries tags: the principal is the user's *id* or the role's name."""

PrincipalType = Literal["user", "group", "role"]
"""Whom a policy is attached to. The principal is the user's *id*, the group's or role's name."""


@dataclass(frozen=True)
class AttachedPolicies:
    """What is attached to one user, group or role (a role's own documents live in its record).

    ``managed``: managed policy names, sorted; ``inline``: inline policy name -> document;
    ``boundary``: the managed policy name used as permissions boundary (users and roles)."""

    managed: tuple[str, ...] = ()
    inline: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    boundary: str | None = None


@dataclass(frozen=True)
class PolicyUse:
    """One place a managed policy is used (``ListEntitiesForPolicy``)."""

    principal_type: PrincipalType
    principal: str
    as_boundary: bool = False


@dataclass(frozen=True)
class AuditEvent:
    time: float
    action: str  # e.g. "login", "login.failure", "role.choose", "logout", "keys.rotate"
    outcome: str  # "success" | "failure" | "denied"
    request_id: str = ""
    principal: str = ""  # an ARN or provider/subject
    reason: str = ""
    source_ip: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)
    id: int | None = None  # set by the store


@dataclass(frozen=True)
class AuditCheckpoint:
    """A signed claim that audit row ``last_id`` had hash ``hash`` (``token``: the broker's JWS
    over both; see ``broker.service.audit_chain``)."""

    last_id: int
    hash: str
    created_at: float
    token: str
    id: int | None = None  # set by the store


@dataclass(frozen=True)
class Revocation:
    """A revocation the hot path must know about: one session, one user, or a role before T."""

    kind: str  # "session" | "origin" (a session and what was derived from it) | "user" | "role"
    target: str  # session id (session, origin), user id or role ARN
    before: float  # tokens issued before this time are void (for sessions: revocation time)
    created_at: float
    id: int | None = None


@dataclass(frozen=True)
class KeyUse:
    """One access key as the credentials report shows it (never its secret)."""

    status: str  # "Active" | "Inactive"
    created_at: float
    last_used_at: float | None = None
    last_used_region: str | None = None
    last_used_service: str | None = None


@dataclass(frozen=True)
class CredentialRecord:
    """One user's credentials as the credentials report needs them: whether it has a
    password (never the hash), its access keys (oldest first) and whether an MFA device is
    enabled for it."""

    name: str
    created_at: float
    has_password: bool = False
    last_login_at: float | None = None
    password_changed_at: float | None = None
    mfa_active: bool = False
    keys: tuple[KeyUse, ...] = ()


@dataclass(frozen=True)
class ActivityRow:
    """What ``principal_arn`` was allowed to do: ``count`` allowed decisions of ``action`` on
    ``resource`` between ``first_at`` and ``last_at`` (table ``access_activity``)."""

    principal_arn: str
    action: str
    resource: str
    first_at: float
    last_at: float
    count: int


@dataclass(frozen=True)
class AccessKeyReview:
    """An access key as the unused-access review sees it (never its secret)."""

    access_key_id: str
    user_id: str
    user_name: str  # "" if the user is gone
    status: str
    created_at: float
    last_used_at: float | None


@dataclass(frozen=True)
class ReportJob:
    """A generated report (``report_jobs``): ``kind`` (``credential_report``,
    ``service_last_accessed``), ``subject`` what it is about (an ARN, or "" for the account),
    ``status`` ``INPROGRESS``, ``COMPLETE`` (with ``content``) or ``FAILED``."""

    job_id: str
    kind: str
    subject: str
    status: str
    created_at: float
    completed_at: float | None = None
    content: bytes | None = None


class Store(Protocol):
    """What every backend provides. ``broker.storage.open_store(url)`` picks the backend."""

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise ``StoreError`` unless the store answers."""

    # users
    async def create_user(self, user: User) -> User: ...
    async def get_user(self, user_id: str) -> User: ...
    async def find_user(self, provider: str, subject: str) -> User | None: ...
    async def upsert_federated_user(
        self,
        provider: str,
        subject: str,
        *,
        name: str,
        email: str,
        groups: Sequence[str],
        now: float,
    ) -> User:
        """Create the user on first login or update email/groups; sets first/last login times."""

    async def record_login(self, user_id: str, now: float) -> None: ...
    async def set_password(
        self, user_id: str, password_hash: str, *, must_change: bool, now: float
    ) -> None:
        """Set the password; ``password_changed_at = now`` (the credentials report's
        ``password_last_changed``). ``RecordNotFound`` if missing."""

    async def set_user_disabled(self, user_id: str, disabled: bool) -> None:
        """``RecordNotFound`` if missing. A disabled user cannot sign in; ending what it
        already holds is ``revoke_user_sessions``."""

    async def rename_user(self, user_id: str, name: str, *, subject: str | None = None) -> User:
        """Set the user's ``name`` (and, for a local user, its login ``subject``); returns the
        user. ``RecordNotFound`` if missing, ``AlreadyExists`` if (provider, subject) is taken.
        Tags, memberships and policies are keyed by id: they stay."""

    async def create_password(
        self, user_id: str, password_hash: str, *, must_change: bool, now: float
    ) -> bool:
        """Set the password only if the user has none (IAM's CreateLoginProfile), changed at
        ``now``; False (and nothing changed) if it has one. ``RecordNotFound`` if missing."""

    async def update_password(
        self, user_id: str, password_hash: str | None, *, must_change: bool, now: float
    ) -> bool:
        """Change the password (None: keep it, and its change time) and the must-change flag,
        only if the user has a password (IAM's UpdateLoginProfile); a new password is changed
        at ``now``. False (nothing changed) if it has none, so that a concurrent removal is not
        undone. ``RecordNotFound`` if missing."""

    async def clear_password(self, user_id: str) -> bool:
        """Remove the user's password (with the must-change flag and its change time: AWS
        reports ``password_last_changed`` as N/A without a password); False if it had none.
        ``RecordNotFound`` if missing."""

    async def delete_user(self, user_id: str) -> User:
        """Delete the user, its tags and its permissions boundary, in one transaction, and
        return it. ``RecordNotFound`` if missing; ``Conflict`` (nothing deleted) while it has a
        password, group memberships, or attached or inline policies (IAM's DeleteConflict).
        Its sessions are not touched here (ending them is a revocation)."""

    async def count_users(self) -> int: ...
    async def list_users(self) -> list[User]: ...
    async def find_users_by_name(self, name: str) -> list[User]:
        """Users whose ``name`` is exactly ``name`` (names are not unique across providers)."""

    # login state (single use)
    async def put_login_state(self, state: LoginState) -> None: ...
    async def consume_login_state(
        self, state: str, *, browser_binding: str, now: float
    ) -> LoginState | None:
        """Atomically delete and return the state if it exists, matches the binding and has not
        expired; otherwise change nothing and return None. Of N concurrent callers, one wins."""

    async def purge_login_states(self, now: float) -> int: ...

    # other single-use flow values, namespaced by kind
    async def put_single_use(self, value: SingleUse) -> None:
        """``AlreadyExists`` if (kind, key) is taken (for values that must be seen only once,
        such as a logout token's ``jti``, that *is* the replay check)."""

    async def peek_single_use(
        self, kind: str, key: str, *, binding: str, now: float
    ) -> SingleUse | None:
        """The value if it exists, matches the binding and has not expired; consumes nothing."""

    async def consume_single_use(
        self, kind: str, key: str, *, binding: str, now: float
    ) -> SingleUse | None:
        """Atomically delete and return the value if it exists, matches the binding and has not
        expired; otherwise change nothing and return None. Of N concurrent callers, one wins."""

    async def forget_binding(self, binding: str) -> int:
        """Delete every single-use value and login state bound to this browser (logout)."""

    async def purge_single_use(self, now: float) -> int: ...

    # back-channel logouts that pending logins must see (tombstones)
    async def put_provider_logout(self, logout: ProviderLogout) -> None:
        """Remember a logout; of two for the same (provider, kind, value) the later
        ``logged_out_at`` and the later ``expires_at`` are kept (one row)."""

    async def provider_logouts(
        self, provider: str, *, sid: str, subject: str, now: float
    ) -> list[ProviderLogout]:
        """The unexpired logouts of the provider's session ``sid`` and of its user ``subject``
        (``""`` matches nothing), ``"sid"`` first."""
        ...

    async def purge_provider_logouts(self, now: float) -> int:
        """Delete the expired logouts; returns how many."""
        ...

    # failed-login counts, shared by every instance; one row per key, never evicted
    async def add_login_failures(
        self, keys: Sequence[str], *, now: float, window: float
    ) -> list[LoginFailures]:
        """Count one failure against each key and return the new counts, in ``keys`` order, all
        in one transaction. A key whose window has ended starts a new one (``now + window``)."""

    async def forgive_login_failures(
        self, *, clear: Sequence[str] = (), once: Sequence[str] = ()
    ) -> None:
        """Forget every failure of the ``clear`` keys, and one failure of each ``once`` key."""

    async def purge_login_failures(self, now: float) -> int:
        """Delete the counts whose window has ended."""

    # sessions
    async def create_session(self, session: Session) -> None: ...
    async def get_session(self, session_id: str) -> Session | None: ...
    async def touch_sessions(self, last_seen: Mapping[str, float]) -> None:
        """Batched last-seen bookkeeping: session id -> time."""

    async def provider_session_users(self, provider: str, provider_sid: str) -> list[str]:
        """The user ids (sorted, distinct) of the sessions the provider's session
        ``provider_sid`` started, revoked or not (Back-Channel Logout's ``sid``)."""

    async def list_user_sessions(
        self, user_id: str, *, now: float, limit: int = 200
    ) -> list[Session]:
        """The user's live sessions (not revoked, not past their absolute end, not idle for
        longer than their idle timeout at ``now``), most recently started first, at most
        ``limit`` of them (the console's list of a user's sessions)."""
        ...

    async def revoke_session(self, session_id: str, *, now: float, reason: str) -> bool: ...
    async def revoke_provider_session(
        self, provider: str, provider_sid: str, *, now: float, reason: str
    ) -> list[Revocation]:
        """End the broker sessions the provider's session ``provider_sid`` started (Back-Channel
        Logout's ``sid``) and every credential derived from them, in one transaction: each such
        session, live or already ended (what was derived from it may outlive it), gets one
        ``origin`` revocation (``before`` = ``now``); the live ones are also marked revoked with
        ``reason``. Returns the recorded revocations (with ids), by session id; [] for an unknown
        or empty ``provider_sid``."""

    async def revoke_user_sessions(self, user_id: str, *, now: float, reason: str) -> int: ...
    async def add_revocation(self, revocation: Revocation) -> Revocation: ...
    async def revocations_since(self, after_id: int) -> list[Revocation]:
        """Revocations with id > after_id, in id order (for the in-memory revocation state)."""

    async def purge_revocations(self, before: float) -> int:
        """Delete revocations whose ``before`` is earlier than ``before``: every credential they
        could void has expired by then. Returns how many were deleted."""

    async def purge_sessions(self, now: float) -> int: ...

    # virtual MFA devices (``storage.sql_mfa``)
    async def create_mfa_device(self, device: MfaDevice) -> None:
        """``AlreadyExists`` if the serial number is taken."""
        ...

    async def get_mfa_device(self, serial_number: str) -> MfaDevice | None: ...
    async def list_mfa_devices(self, *, user_id: str | None = None) -> list[MfaDevice]:
        """Every device by serial number, or (``user_id``) the one enabled for that user."""
        ...

    async def enable_mfa_device(
        self, serial_number: str, user_id: str, *, step: int, now: float
    ) -> bool:
        """Assign an unassigned device to a user whose codes up to ``step`` were just checked:
        one statement, true only if the device was unassigned, ``step`` is above its
        ``last_step``, and the user has no other enabled device."""
        ...

    async def advance_mfa_step(self, serial_number: str, user_id: str, step: int) -> bool:
        """The single-use compare-and-set: ``last_step = step`` only if the device is enabled
        for ``user_id`` and ``step > last_step``. Of concurrent callers with one code, one wins."""
        ...

    async def deactivate_mfa_device(
        self, serial_number: str, user_id: str, *, step: int | None = None
    ) -> bool:
        """Unassign the device from ``user_id`` (its ``last_step`` stays: old codes stay used).
        With ``step``: only if ``step > last_step`` too (a code proved it), recorded as used."""
        ...

    async def delete_mfa_device(self, serial_number: str) -> bool:
        """Delete an unassigned device; False if it is missing or enabled for a user."""
        ...

    async def purge_unassigned_mfa_devices(self, *, path: str, created_before: float) -> int:
        """Delete the unassigned devices under ``path`` created before the time (enrolments
        from the session page that were never confirmed)."""
        ...

    # signing keys
    async def add_signing_key(self, key: SigningKey) -> None: ...
    async def list_signing_keys(self) -> list[SigningKey]: ...
    async def update_signing_key(
        self, kid: str, *, retired_at: float | None, expires_at: float | None
    ) -> None: ...
    async def delete_signing_key(self, kid: str) -> None: ...
    async def swap_signing_key(
        self, new: SigningKey, *, replaces: Collection[str], replaced_expire_at: float
    ) -> bool:
        """Rotation as one compare-and-swap, in one transaction serialised with every other.

        If the keys with no ``retired_at`` are exactly ``replaces``, retire each of them at
        ``new.created_at`` (when ``new`` starts signing) with ``expires_at =
        replaced_expire_at``, add ``new`` and return True. Otherwise change nothing and return
        False: another instance rotated first. With ``replaces`` empty this is the first key's
        insert-if-absent: of instances starting together on an empty store, one adds its key."""

    # roles
    async def put_role(self, role: RoleRecord) -> None:
        """Create or replace the role of that name."""

    async def create_role(
        self,
        role: RoleRecord,
        *,
        boundary: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        """Create the role with its permissions boundary (a managed policy name) and tags, all
        in one transaction, or nothing: ``AlreadyExists`` if a role of that name exists in any
        case (IAM names are unique regardless of case; of two racing creators one wins),
        ``RecordNotFound`` if the boundary policy does not exist. The new role starts bare:
        attachments or tags left under its name by an earlier role are removed."""

    async def update_role(
        self,
        name: str,
        *,
        now: float,
        description: str | None = None,
        trust_policy: Mapping[str, Any] | None = None,
        max_session_duration: float | None = None,
    ) -> RoleRecord:
        """Change the given fields (None: unchanged) in one transaction and return the role;
        ``updated_at`` becomes ``now``, and always moves forward (caches key on it).
        ``RecordNotFound`` if missing (a role deleted meanwhile is not brought back)."""

    async def get_role(self, name: str) -> RoleRecord | None: ...
    async def list_roles(self) -> list[RoleRecord]: ...
    async def delete_role(self, name: str) -> None:
        """``RecordNotFound`` if missing; its attachments, inline policies, boundary and tags
        go with it."""

    # managed policies
    async def put_managed_policy(self, policy: ManagedPolicyRecord) -> None:
        """Create or replace the managed policy of that name."""

    async def get_managed_policy(self, name: str) -> ManagedPolicyRecord | None: ...
    async def list_managed_policies(self) -> list[ManagedPolicyRecord]:
        """By name."""

    async def delete_managed_policy(self, name: str) -> None:
        """``RecordNotFound`` if missing. Callers check ``policy_uses`` first (IAM refuses to
        delete an attached policy); any attachments left are removed with it."""

    async def policy_uses(self, name: str) -> list[PolicyUse]:
        """Where the managed policy is attached or used as a boundary, by (type, principal)."""

    async def policy_use_counts(self) -> dict[str, PolicyUseCount]:
        """Attachment and boundary counts of every policy used anywhere (one round trip)."""

    # managed policy versions (the policy's ``document`` is always its default version's)
    async def create_managed_policy(self, policy: ManagedPolicyRecord) -> None:
        """Create the policy with its document as version ``v1``, the default, in one
        transaction; ``AlreadyExists`` (and nothing written) if the name is taken."""

    async def add_policy_version(
        self,
        name: str,
        document: Mapping[str, Any],
        *,
        set_as_default: bool,
        now: float,
        limit: int,
    ) -> PolicyVersion:
        """Add the next version (``v<n>``, never reused); with ``set_as_default`` it becomes
        the policy's document (``updated_at`` bumped). ``RecordNotFound`` if no such policy;
        ``LimitExceeded`` (nothing written) if it already has ``limit`` versions. Concurrent
        adds to one policy serialise: of two racing for the last slot, one wins."""

    async def list_policy_versions(self, name: str) -> list[PolicyVersion]:
        """Newest first (empty for an unknown policy)."""

    async def get_policy_version(self, name: str, version_id: str) -> PolicyVersion | None: ...
    async def set_default_policy_version(
        self, name: str, version_id: str, *, now: float
    ) -> ManagedPolicyRecord:
        """Make the version the default: its document becomes the policy's, ``updated_at`` is
        bumped. ``RecordNotFound`` if the policy or the version does not exist."""

    async def delete_policy_version(self, name: str, version_id: str) -> None:
        """``RecordNotFound`` if missing; ``Conflict`` (nothing deleted) if it is the default."""

    # groups
    async def create_group(self, group: Group) -> None:
        """``AlreadyExists`` if the name is taken. The new group has no members or policies,
        whatever was left under its name by a race with an earlier group's deletion."""

    async def get_group(self, name: str) -> Group | None: ...
    async def list_groups(self) -> list[Group]:
        """By name."""

    async def rename_group(self, name: str, new_name: str) -> Group:
        """Rename a group with its members and policies, in one transaction.
        ``RecordNotFound`` if missing, ``AlreadyExists`` (nothing changed) if the name is taken."""

    async def delete_group(self, name: str) -> None:
        """``RecordNotFound`` if missing; its memberships and policies go with it."""

    async def add_group_member(self, group: str, user_id: str) -> None:
        """Idempotent; ``RecordNotFound`` if the group or the user does not exist."""

    async def remove_group_member(self, group: str, user_id: str) -> bool:
        """True if the user was a member."""

    async def group_members(self, group: str) -> list[str]:
        """User ids, sorted."""

    async def user_groups(self, user_id: str) -> list[str]:
        """Group names, sorted."""

    # policy attachments (users by id, groups and roles by name)
    async def attach_policy(self, kind: PrincipalType, principal: str, policy: str) -> None:
        """Idempotent; ``RecordNotFound`` if the managed policy does not exist."""

    async def detach_policy(self, kind: PrincipalType, principal: str, policy: str) -> bool:
        """True if it was attached."""

    async def set_attached_policies(
        self, kind: PrincipalType, principal: str, policies: Sequence[str]
    ) -> None:
        """Replace every managed attachment of the principal at once (config reconciliation);
        ``RecordNotFound`` (and nothing changed) if one of the policies does not exist."""

    async def put_inline_policy(
        self, kind: PrincipalType, principal: str, name: str, document: Mapping[str, Any]
    ) -> None:
        """Create or replace the principal's inline policy of that name."""

    async def delete_inline_policy(self, kind: PrincipalType, principal: str, name: str) -> bool:
        """True if it existed."""

    async def set_boundary(self, kind: PrincipalType, principal: str, policy: str | None) -> None:
        """Set (or, with None, clear) the principal's permissions boundary;
        ``RecordNotFound`` if the managed policy does not exist."""

    async def attached_policies(self, kind: PrincipalType, principal: str) -> AttachedPolicies:
        """Everything attached to the principal (empty if nothing, or no such principal)."""

    async def all_attachments(self, kind: PrincipalType) -> dict[str, AttachedPolicies]:
        """``attached_policies`` of every principal of that type that has anything attached
        (one round trip: the authorizer compiles every role from it)."""

    # audit (append-only, hash-chained: ``broker.domain.audit_chain``)
    async def append_audit(self, event: AuditEvent) -> None: ...
    async def append_audit_many(self, events: Sequence[AuditEvent]) -> None:
        """Append the events in order, all in one transaction: every row or none. Ids follow
        the sequence's order; an empty sequence does nothing. Every append links its rows to
        the chain's head; appends are serialised (across instances) so the chain never forks."""

    async def audit_chain(self, *, after_id: int = 0, limit: int = 1000) -> list[ChainRow]:
        """Rows with id > after_id in id order, with their chain columns (for verification)."""

    async def audit_head(self) -> ChainRow | None:
        """The row with the highest id, or None if there is none."""

    async def add_audit_checkpoint(self, checkpoint: AuditCheckpoint) -> AuditCheckpoint: ...
    async def list_audit_checkpoints(self) -> list[AuditCheckpoint]:
        """In id order."""

    async def latest_audit_checkpoint(self) -> AuditCheckpoint | None:
        """The checkpoint with the highest id."""

    async def list_audit(
        self, *, limit: int = 100, action: str | None = None, since: float | None = None
    ) -> list[AuditEvent]:
        """Newest first."""

    # tags (users and roles)
    async def list_tags(self, kind: TagTarget, principal: str) -> dict[str, str]:
        """Key -> value, by key."""

    async def tag(
        self, kind: TagTarget, principal: str, tags: Mapping[str, str], *, limit: int
    ) -> None:
        """Add or overwrite the tags in one transaction; ``LimitExceeded`` (and nothing
        changed) if the principal would then have more than ``limit``."""

    async def untag(self, kind: TagTarget, principal: str, keys: Sequence[str]) -> None:
        """Remove those keys (absent ones are ignored)."""

    async def delete_tags(self, kind: TagTarget, principal: str) -> None:
        """Remove every tag of the principal (it is being deleted)."""

    # OpenID Connect providers registered through the IAM API
    async def create_oidc_provider(self, provider: OidcProviderRecord) -> None:
        """``AlreadyExists`` if its name or URL is taken."""

    async def get_oidc_provider(self, name: str) -> OidcProviderRecord | None: ...
    async def list_oidc_providers(self) -> list[OidcProviderRecord]:
        """By name."""

    async def update_oidc_provider(
        self, name: str, change: Callable[[OidcProviderRecord], OidcProviderRecord]
    ) -> OidcProviderRecord:
        """Apply ``change`` (a pure function of the current record; it may raise, and then
        nothing changes) atomically: concurrent updates are serialised, none is lost.
        ``RecordNotFound`` if missing. The name and URL cannot change."""

    async def delete_oidc_provider(self, name: str) -> None:
        """``RecordNotFound`` if missing."""

    # reports (the credentials report; ``report_jobs``)
    def credential_records(self, *, batch: int = 1000) -> AsyncIterator[list[CredentialRecord]]:
        """Every user's ``CredentialRecord``, by name then id, ``batch`` users at a time (each
        batch its own short read): memory stays bounded however many users there are."""
        ...

    async def first_user_created_at(self) -> float | None:
        """When the oldest user was created (the account's start: the bootstrap ``admin``)."""

    async def start_report_job(
        self, job: ReportJob, *, reuse_since: float, running_since: float
    ) -> tuple[ReportJob, bool]:
        """Atomically: the newest job of ``job.kind``/``job.subject`` that is ``COMPLETE`` and
        created at or after ``reuse_since``, or ``INPROGRESS`` and created at or after
        ``running_since`` (older running jobs are taken as abandoned), returned without
        content with False; otherwise insert ``job``, delete that kind's other jobs for the
        subject, and return it with True. Of concurrent callers exactly one starts a job."""

    async def finish_report_job(self, job_id: str, *, content: bytes | None, now: float) -> None:
        """``COMPLETE`` with ``content``, or ``FAILED`` when ``content`` is None."""

    async def latest_report_job(self, kind: str, subject: str) -> ReportJob | None:
        """The newest job of that kind and subject (with its content), FAILED ones aside."""

    # small key/value settings (bootstrap done, schema facts)
    # -- access keys (IAM users' long-lived keys)
    async def create_access_key(self, key: AccessKeyRecord, *, limit: int) -> None:
        """``LimitExceeded`` if the user already has ``limit`` keys, ``RecordNotFound`` if the
        user does not exist; checked and inserted atomically."""
        ...

    async def get_access_key(self, access_key_id: str) -> AccessKeyRecord | None: ...
    async def list_access_keys(self, user_id: str) -> list[AccessKeyRecord]:
        """Oldest first."""
        ...

    async def set_access_key_status(self, access_key_id: str, user_id: str, status: str) -> None:
        """``RecordNotFound`` unless the key exists and belongs to the user."""
        ...

    async def delete_access_key(self, access_key_id: str, user_id: str) -> None:
        """``RecordNotFound`` unless the key exists and belongs to the user."""
        ...

    async def record_access_key_use(self, uses: Mapping[str, AccessKeyUse]) -> None:
        """Batched last-used updates; a later use already recorded is kept."""
        ...

    async def get_meta(self, key: str) -> str | None: ...
    async def set_meta(self, key: str, value: str) -> None: ...

    # access activity and the unused-access review (``sql_activity``); the pages are keyset
    # pages (rows after ``after``, in key order) so that a review never holds a whole table
    async def add_activity(self, rows: Sequence[ActivityRow]) -> None:
        """Upsert: counts add up, ``first_at``/``last_at`` widen (one transaction)."""

    async def activity_page(
        self, principal: str, *, since: float, after: tuple[str, str], limit: int
    ) -> list[ActivityRow]:
        """``principal``'s rows used at or after ``since``, by (action, resource), after
        ``after``."""

    async def activity_summary(
        self, principals: Sequence[str], *, since: float | None = None
    ) -> list[tuple[str, str, float]]:
        """(principal, action, last use) of ``principals``' activity (at or after ``since``)."""

    async def activity_last_used(self, principals: Sequence[str]) -> dict[str, float]:
        """The last recorded use of each of ``principals`` that has any activity."""

    async def assumed_roles(
        self, role_arns: Sequence[str], *, since: float | None = None
    ) -> dict[str, float]:
        """The last ``sts:AssumeRole*`` of each role in ``role_arns`` (at or after ``since``)."""

    async def users_page(self, *, after: str, limit: int) -> list[User]:
        """Users by id."""

    async def roles_page(self, *, after: str, limit: int) -> list[RoleRecord]:
        """Roles by name."""

    async def managed_policies_page(self, *, after: str, limit: int) -> list[ManagedPolicyRecord]:
        """Managed policies by name."""

    async def access_keys_page(self, *, after: str, limit: int) -> list[AccessKeyReview]:
        """Access keys by id."""

    async def access_keys_last_used(self, user_ids: Sequence[str]) -> dict[str, float]:
        """The last use of any access key of each user (users whose keys were used)."""

    async def user_names(self, user_ids: Sequence[str]) -> dict[str, str]:
        """id -> IAM name of those of ``user_ids`` that exist."""

    async def users_with_mfa(self, user_ids: Sequence[str]) -> set[str]:
        """Those of ``user_ids`` with an enabled MFA device."""

    async def put_report_job(self, job: ReportJob) -> None:
        """Insert or replace the job."""

    async def get_report_job(self, job_id: str) -> ReportJob | None: ...
