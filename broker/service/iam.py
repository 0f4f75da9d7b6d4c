"""IAM administration: managed policies, groups, and the policies attached to users, groups
and roles (managed, inline and a permissions boundary), and what is in force for each.

Managed policies declared in the config (``[policies.<name>]``) are reconciled into the store
at start-up and are read-only here, like config roles; so are the attachments of config roles
(``managed_policies`` in ``[roles.<name>]``). Every change is audited as ``iam.<Operation>``
with the IAM operation's name. Documents are validated before anything is written.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from broker.clock import Clock
from broker.config import Settings, managed_policy_name
from broker.errors import (
    AlreadyExists,
    Conflict,
    InvalidRequest,
    MalformedPolicy,
    NotFound,
    ReadOnlyFromConfig,
    RecordNotFound,
)
from broker.policy import PolicyError, parse_policy
from broker.service.audit import Auditor
from broker.service.policy_sets import (
    PolicyCompiler,
    PolicySet,
    compile_owners,
    user_policy_set,
)
from broker.storage.base import (
    AttachedPolicies,
    Group,
    ManagedPolicyRecord,
    PolicyUse,
    PolicyVersion,
    PrincipalType,
    RoleRecord,
    Store,
    User,
)

log = logging.getLogger(__name__)

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+=@-]{0,127}")
_USER_ARN = re.compile(r"arn:[^:]+:iam::[^:]*:user/(?:.*/)?(?P<name>[^/]+)")
_GROUP_ARN = re.compile(r"arn:[^:]+:iam::[^:]*:group/(?:.*/)?(?P<name>[^/]+)")
MAX_DOCUMENT_CHARS = 6144  # IAM's managed-policy size limit (non-whitespace characters)
# IAM's inline policy size limits (non-whitespace characters, per principal type)
INLINE_DOCUMENT_CHARS: Mapping[str, int] = {"user": 2048, "group": 5120, "role": 10240}
MAX_POLICY_VERSIONS = 5  # IAM keeps at most five versions of a managed policy


@dataclass(frozen=True)
class PolicyDetail:
    record: ManagedPolicyRecord
    uses: tuple[PolicyUse, ...]


@dataclass(frozen=True)
class PrincipalDetail:
    """A user or group as the admin sees it: what is attached, and (users) group membership."""

    kind: PrincipalType
    name: str
    arn: str
    attached: AttachedPolicies
    groups: tuple[str, ...] = ()
    members: tuple[str, ...] = ()


def check_name(name: str, what: str) -> str:
    if not NAME.fullmatch(name):
        raise InvalidRequest(
            f"bad_{what}_name",
            public_message=f"{what} names are 1-128 of letters, digits and _.+=@- "
            f"(not starting with a symbol): {name!r}",
        )
    return name


def parse_document(
    document: str | Mapping[str, Any], what: str, *, limit: int = MAX_DOCUMENT_CHARS
) -> dict[str, Any]:
    """A permission policy document from the caller, parsed and validated (any error is an
    ``InvalidRequest`` naming every problem with its JSON path); at most ``limit``
    non-whitespace characters."""
    try:
        policy = parse_policy(document, name=what)
    except PolicyError as e:
        problems = "; ".join(f"{p}: {m}" if p else m for p, m in e.errors)
        raise MalformedPolicy(
            f"malformed_policy:{e.reason}"[:300],
            public_message=f"{what} is not a valid policy: {problems}",
        ) from None
    doc = dict(policy.document)
    size = len(re.sub(r"\s", "", json.dumps(doc, ensure_ascii=False)))
    if size > limit:
        raise MalformedPolicy(
            "policy_too_large",
            public_message=f"{what} is {size} characters; a policy may have at most "
            f"{limit} (split it into several)",
        )
    return doc


def _broken(e: PolicyError) -> MalformedPolicy:
    return MalformedPolicy(
        f"broken_policy:{e.reason}"[:300],
        public_message=f"an attached policy does not parse (it allows nothing): {e}",
    )


class IamService:
    def __init__(self, settings: Settings, store: Store, auditor: Auditor, clock: Clock) -> None:
        self._settings = settings
        self._store = store
        self._auditor = auditor
        self._clock = clock
        self._compiler = PolicyCompiler()

    def arn(self, kind: str, name: str) -> str:
        return self._settings.arn(kind, name)

    # --- config reconciliation ----------------------------------------------------------

    async def reconcile(self) -> None:
        """Make the store's config-declared managed policies equal the file's (API ones are
        left alone). Runs before roles are reconciled, which attach them."""
        now = self._clock.now()
        existing = {p.name: p for p in await self._store.list_managed_policies()}
        for name, mp in self._settings.policies.items():
            old = existing.get(name)
            doc = dict(mp.document)
            if old and old.source == "config" and old.document == doc:
                continue  # unchanged: keep updated_at, so nothing recompiles
            if old and old.source != "config":
                log.warning("managed policy %s from the config replaces the API's", name)
            await self._store.put_managed_policy(
                ManagedPolicyRecord(
                    name=name,
                    document=doc,
                    source="config",
                    created_at=old.created_at if old else now,
                    updated_at=now,
                )
            )
        for name, old in existing.items():
            if old.source == "config" and name not in self._settings.policies:
                uses = await self._store.policy_uses(name)
                await self._store.delete_managed_policy(name)
                log.warning(
                    "managed policy %s was removed from the config; deleted (it was attached "
                    "to %d principals)",
                    name,
                    len(uses),
                )

    # --- managed policies ---------------------------------------------------------------

    async def list_policies(self) -> list[ManagedPolicyRecord]:
        return await self._store.list_managed_policies()

    async def get_policy(self, ref: str) -> PolicyDetail:
        record = await self._policy(ref)
        return PolicyDetail(record, tuple(await self._store.policy_uses(record.name)))

    async def create_policy(
        self, name: str, document: str | Mapping[str, Any], *, description: str = "", actor: str
    ) -> ManagedPolicyRecord:
        check_name(name, "policy")
        doc = parse_document(document, f"policy {name!r}")
        now = self._clock.now()
        if await self._store.get_managed_policy(name) is not None:
            raise AlreadyExists(
                f"policy_exists:{name}", public_message=f"a policy named {name!r} already exists"
            )
        record = ManagedPolicyRecord(
            name=name, document=doc, description=description, created_at=now, updated_at=now
        )
        await self._audit("CreatePolicy", actor, policy=name)
        try:
            await self._store.create_managed_policy(record)
        except AlreadyExists:  # a concurrent create won
            raise AlreadyExists(
                f"policy_exists:{name}", public_message=f"a policy named {name!r} already exists"
            ) from None
        return record

    async def update_policy(
        self, ref: str, document: str | Mapping[str, Any], *, actor: str
    ) -> ManagedPolicyRecord:
        """Replace the document (IAM's CreatePolicyVersion with SetAsDefault)."""
        record = self._writable(await self._policy(ref))
        doc = parse_document(document, f"policy {record.name!r}")
        new = ManagedPolicyRecord(
            name=record.name,
            document=doc,
            description=record.description,
            source=record.source,
            created_at=record.created_at,
            updated_at=max(self._clock.now(), record.updated_at + 1e-6),
        )
        await self._audit("CreatePolicyVersion", actor, policy=record.name)
        await self._store.put_managed_policy(new)
        return new

    async def delete_policy(self, ref: str, *, actor: str) -> None:
        """Refused (IAM's DeleteConflict) while it is attached or used as a boundary, or while
        it has versions other than the default one."""
        record = self._writable(await self._policy(ref))
        versions = await self._store.list_policy_versions(record.name)
        others = [v.version_id for v in versions if not v.is_default]
        if others:
            raise Conflict(
                f"policy_has_versions:{record.name}",
                public_message=f"policy {record.name!r} has non-default versions "
                f"({', '.join(others)}): delete them first",
            )
        uses = await self._store.policy_uses(record.name)
        if uses:
            where = ", ".join(
                f"{u.principal_type} {u.principal}" + (" (boundary)" if u.as_boundary else "")
                for u in uses
            )
            raise Conflict(
                f"policy_in_use:{record.name}",
                public_message=f"policy {record.name!r} is attached to {where}: detach it first",
            )
        await self._audit("DeletePolicy", actor, policy=record.name)
        await self._store.delete_managed_policy(record.name)

    # --- managed policy versions --------------------------------------------------------

    async def create_policy_version(
        self, ref: str, document: str | Mapping[str, Any], *, set_as_default: bool, actor: str
    ) -> PolicyVersion:
        """A new version (at most ``MAX_POLICY_VERSIONS``: ``LimitExceeded``); with
        ``set_as_default`` it is in force at once."""
        record = self._writable(await self._policy(ref))
        doc = parse_document(document, f"policy {record.name!r}")
        await self._audit(
            "CreatePolicyVersion",
            actor,
            policy=record.name,
            set_as_default="true" if set_as_default else "false",
        )
        return await self._store.add_policy_version(
            record.name,
            doc,
            set_as_default=set_as_default,
            now=self._clock.now(),
            limit=MAX_POLICY_VERSIONS,
        )

    async def list_policy_versions(self, ref: str) -> list[PolicyVersion]:
        record = await self._policy(ref)
        return await self._store.list_policy_versions(record.name)

    async def get_policy_version(self, ref: str, version_id: str) -> PolicyVersion:
        record = await self._policy(ref)
        version = await self._store.get_policy_version(record.name, version_id)
        if version is None:
            raise NotFound(
                f"no_such_policy_version:{record.name}:{version_id}"[:300],
                public_message=f"Policy {self.arn('policy', record.name)} version "
                f"{version_id} does not exist or is not attachable.",
            )
        return version

    async def set_default_policy_version(
        self, ref: str, version_id: str, *, actor: str
    ) -> ManagedPolicyRecord:
        record = self._writable(await self._policy(ref))
        await self.get_policy_version(record.name, version_id)
        await self._audit("SetDefaultPolicyVersion", actor, policy=record.name, version=version_id)
        try:
            return await self._store.set_default_policy_version(
                record.name, version_id, now=self._clock.now()
            )
        except RecordNotFound:  # deleted meanwhile
            raise NotFound(
                f"no_such_policy_version:{record.name}:{version_id}"[:300],
                public_message=f"Policy {self.arn('policy', record.name)} version "
                f"{version_id} does not exist.",
            ) from None

    async def delete_policy_version(self, ref: str, version_id: str, *, actor: str) -> None:
        record = self._writable(await self._policy(ref))
        version = await self.get_policy_version(record.name, version_id)
        if version.is_default:
            raise Conflict(
                f"default_version:{record.name}:{version_id}"[:300],
                public_message="Cannot delete the default version of a policy.",
            )
        await self._audit("DeletePolicyVersion", actor, policy=record.name, version=version_id)
        try:
            await self._store.delete_policy_version(record.name, version_id)
        except RecordNotFound:
            raise NotFound(
                f"no_such_policy_version:{record.name}:{version_id}"[:300],
                public_message=f"Policy {self.arn('policy', record.name)} version "
                f"{version_id} does not exist.",
            ) from None

    async def _policy(self, ref: str) -> ManagedPolicyRecord:
        name = managed_policy_name(ref.strip())
        record = await self._store.get_managed_policy(name)
        if record is None:
            raise NotFound(f"no_such_policy:{name}", public_message=f"no policy named {name!r}")
        return record

    @staticmethod
    def _writable(record: ManagedPolicyRecord) -> ManagedPolicyRecord:
        if record.source == "config":
            raise ReadOnlyFromConfig(
                f"policy_from_config:{record.name}",
                public_message=f"policy {record.name!r} is declared in the config file "
                f"([policies.{record.name}]): change it there",
            )
        return record

    # --- users and groups ---------------------------------------------------------------

    async def resolve_user(self, ref: str) -> User:
        """A user by id, name, or ARN (``arn:broker:iam::<account>:user/<name>``)."""
        text = ref.strip()
        m = _USER_ARN.fullmatch(text)
        name = m["name"] if m else text
        if not name:
            raise InvalidRequest("empty_user", public_message="the user is empty")
        if not m:
            try:
                return await self._store.get_user(name)
            except RecordNotFound:
                pass
        found = await self._store.find_users_by_name(name)
        if not found:
            raise NotFound(f"no_such_user:{name}", public_message=f"no user named {name!r}")
        if len(found) > 1:
            ids = ", ".join(f"{u.id} ({u.provider})" for u in found)
            raise InvalidRequest(
                f"ambiguous_user:{name}",
                public_message=f"{len(found)} users are named {name!r}: {ids}; give the id",
            )
        return found[0]

    async def resolve_group(self, ref: str) -> Group:
        text = ref.strip()
        m = _GROUP_ARN.fullmatch(text)
        name = m["name"] if m else text
        group = await self._store.get_group(name)
        if group is None:
            raise NotFound(f"no_such_group:{name}", public_message=f"no group named {name!r}")
        return group

    async def list_groups(self) -> list[Group]:
        return await self._store.list_groups()

    async def create_group(self, name: str, *, description: str = "", actor: str) -> Group:
        check_name(name, "group")
        group = Group(name=name, description=description, created_at=self._clock.now())
        await self._audit("CreateGroup", actor, group=name)
        try:
            await self._store.create_group(group)
        except AlreadyExists:
            raise AlreadyExists(
                f"group_exists:{name}", public_message=f"a group named {name!r} already exists"
            ) from None
        return group

    async def delete_group(self, ref: str, *, actor: str) -> None:
        """Refused while the group has members or policies, as IAM's DeleteConflict."""
        group = await self.resolve_group(ref)
        members = await self._store.group_members(group.name)
        attached = await self._store.attached_policies("group", group.name)
        if members or attached.managed or attached.inline:
            raise Conflict(
                f"group_not_empty:{group.name}",
                public_message=f"group {group.name!r} still has {len(members)} members, "
                f"{len(attached.managed)} attached and {len(attached.inline)} inline policies: "
                "remove them first",
            )
        await self._audit("DeleteGroup", actor, group=group.name)
        await self._store.delete_group(group.name)

    async def add_user_to_group(self, group_ref: str, user_ref: str, *, actor: str) -> None:
        group = await self.resolve_group(group_ref)
        user = await self.resolve_user(user_ref)
        await self._audit("AddUserToGroup", actor, group=group.name, user=user.id)
        await self._store.add_group_member(group.name, user.id)

    async def remove_user_from_group(self, group_ref: str, user_ref: str, *, actor: str) -> None:
        group = await self.resolve_group(group_ref)
        user = await self.resolve_user(user_ref)
        await self._audit("RemoveUserFromGroup", actor, group=group.name, user=user.id)
        if not await self._store.remove_group_member(group.name, user.id):
            raise NotFound(
                "not_a_member",
                public_message=f"user {user.name!r} is not in group {group.name!r}",
            )

    async def describe(self, kind: PrincipalType, ref: str) -> PrincipalDetail:
        key, label = await self._principal(kind, ref, for_write=False)
        attached = await self._store.attached_policies(kind, key)
        if kind == "user":
            return PrincipalDetail(
                kind,
                label,
                self.arn("user", label),
                attached,
                groups=tuple(await self._store.user_groups(key)),
            )
        members = tuple(await self._store.group_members(key)) if kind == "group" else ()
        return PrincipalDetail(kind, label, self.arn(kind, label), attached, members=members)

    # --- attachments --------------------------------------------------------------------

    async def attach_policy(
        self, kind: PrincipalType, ref: str, policy_ref: str, *, actor: str
    ) -> None:
        key, label = await self._principal(kind, ref)
        policy = await self._policy(policy_ref)
        await self._audit(f"Attach{kind.title()}Policy", actor, **{kind: label}, policy=policy.name)
        await self._store.attach_policy(kind, key, policy.name)

    async def detach_policy(
        self, kind: PrincipalType, ref: str, policy_ref: str, *, actor: str
    ) -> None:
        key, label = await self._principal(kind, ref)
        name = managed_policy_name(policy_ref.strip())
        await self._audit(f"Detach{kind.title()}Policy", actor, **{kind: label}, policy=name)
        if not await self._store.detach_policy(kind, key, name):
            raise NotFound(
                f"not_attached:{name}",
                public_message=f"policy {name!r} is not attached to {kind} {label!r}",
            )

    async def put_inline_policy(
        self,
        kind: PrincipalType,
        ref: str,
        name: str,
        document: str | Mapping[str, Any],
        *,
        actor: str,
    ) -> None:
        check_name(name, "policy")
        key, label = await self._principal(kind, ref)
        doc = parse_document(document, f"inline policy {name!r}", limit=INLINE_DOCUMENT_CHARS[kind])
        await self._audit(f"Put{kind.title()}Policy", actor, **{kind: label}, policy=name)
        await self._store.put_inline_policy(kind, key, name, doc)

    async def delete_inline_policy(
        self, kind: PrincipalType, ref: str, name: str, *, actor: str
    ) -> None:
        key, label = await self._principal(kind, ref)
        await self._audit(f"Delete{kind.title()}Policy", actor, **{kind: label}, policy=name)
        if not await self._store.delete_inline_policy(kind, key, name):
            raise NotFound(
                f"no_such_inline_policy:{name}",
                public_message=f"{kind} {label!r} has no inline policy {name!r}",
            )

    async def set_boundary(
        self, kind: PrincipalType, ref: str, policy_ref: str | None, *, actor: str
    ) -> None:
        """Set (or with None remove) a user's or role's permissions boundary."""
        if kind == "group":
            raise InvalidRequest(
                "group_boundary",
                public_message="groups have no permissions boundary; set one on users or roles",
            )
        key, label = await self._principal(kind, ref)
        if kind == "role":
            role = await self._store.get_role(key)
            if role is not None and role.permissions_boundary is not None:
                raise Conflict(
                    f"role_has_boundary:{key}",
                    public_message=f"role {key!r} has a boundary document of its own",
                )
        name = None if policy_ref is None else (await self._policy(policy_ref)).name
        operation = "Put" if name else "Delete"
        await self._audit(
            f"{operation}{kind.title()}PermissionsBoundary", actor, **{kind: label}, policy=name
        )
        await self._store.set_boundary(kind, key, name)

    async def principal(
        self, kind: PrincipalType, ref: str, *, for_write: bool = True
    ) -> tuple[str, str]:
        """(store key, display name) of a user (by id, name or ARN), group or role; a config
        role is a ``Conflict`` (``UnmodifiableEntity``) when ``for_write``."""
        return await self._principal(kind, ref, for_write=for_write)

    async def _principal(
        self, kind: PrincipalType, ref: str, *, for_write: bool = True
    ) -> tuple[str, str]:
        """(store key, display name): users are keyed by id, groups and roles by name.
        Config roles are read-only."""
        if kind == "user":
            user = await self.resolve_user(ref)
            return user.id, user.name
        if kind == "group":
            group = await self.resolve_group(ref)
            return group.name, group.name
        role = await self._role(ref)
        if for_write and role.source == "config":
            raise ReadOnlyFromConfig(
                f"role_from_config:{role.name}",
                public_message=f"role {role.name!r} is declared in the config file "
                f"([roles.{role.name}]): change its policies there",
            )
        return role.name, role.name

    async def _role(self, ref: str) -> RoleRecord:
        name = ref.strip().rsplit("/", 1)[-1] if ref.startswith("arn:") else ref.strip()
        role = await self._store.get_role(name)
        if role is None:
            raise NotFound(f"no_such_role:{name}", public_message=f"no role named {name!r}")
        return role

    # --- what is in force ---------------------------------------------------------------

    async def user_policies(self, user: User) -> PolicySet:
        """The user's own policies, then each of its groups', and the user's boundary."""
        try:
            return await user_policy_set(self._store, self._compiler, user)
        except PolicyError as e:
            raise _broken(e) from None

    async def group_policies(self, group: Group) -> PolicySet:
        attached = await self._store.attached_policies("group", group.name)
        try:
            return await compile_owners(
                self._store, self._compiler, [(f"group/{group.name}", attached)]
            )
        except PolicyError as e:
            raise _broken(e) from None

    async def _audit(self, operation: str, actor: str, **details: str | None) -> None:
        """Written before the change, fail-closed (``AuditUnavailable``): no change is made
        without its audit row. A change refused after it is audited again as a failure."""
        await self._auditor.record_or_fail(
            f"iam.{operation}",
            "success",
            principal=actor,
            details={k: v for k, v in details.items() if v is not None},
        )
