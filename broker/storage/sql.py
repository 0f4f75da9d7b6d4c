"""``SqlStore``: the ``Store`` protocol on SQLAlchemy Core (asyncio), for SQLite and PostgreSQL.

One implementation serves both databases; where they differ (upserts, locking) the code says so.

**Where each aggregate's SQL lives.** ``SqlStore`` joins one mixin per aggregate, each on
``broker.storage.sql_base.SqlBase`` (engine, transactions, upserts, error mapping):

- this module: users (create, find, federated upsert, logins), roles (``put_role``...), groups
  and their members, policy attachments, meta;
- ``sql_users``: user administration (rename, delete, conditional password writes);
- ``sql_groups``: renaming a group;
- ``sql_policies``: managed policies and their versions;
- ``sql_roles``: roles created and changed through the IAM API;
- ``sql_tags``: tags on users and roles;
- ``sql_providers``: OpenID Connect providers;
- ``sql_audit``: the hash-chained audit log and its checkpoints;
- ``sql_keys``: the token-signing keys and their rotation;
- ``sql_sessions``: browser sessions and revocations;
- ``sql_logins``: login states, other single-use values, back-channel logouts pending logins
  must see, and failed-login counts;
- ``sql_reports``: the credentials report's reads and ``report_jobs``.
- ``sql_activity``: access activity, the unused-access review's pages and report jobs.
- ``sql_access_keys``: IAM users' access keys (sealed secrets, last-used times).
- ``sql_mfa``: virtual MFA devices and the single use of their codes.

URLs are the configuration's form:

- ``sqlite:///absolute/path/broker.db`` (driver ``aiosqlite``). Every connection runs with
  ``journal_mode=WAL``, ``busy_timeout``, ``foreign_keys=ON``. Write transactions start with
  ``BEGIN IMMEDIATE`` (so two writers queue on the busy timeout instead of failing half-way),
  read transactions with a plain deferred ``BEGIN``. SQLite ≥ 3.35 is required (``RETURNING``).
  In-memory databases are refused: every pooled connection would see a different database.
- ``postgresql://user:password@host:5432/db`` (driver ``asyncpg``; ``postgres://`` is accepted
  too). Extra query parameters go to ``asyncpg.connect`` (``sslmode=`` is passed as ``ssl=``).

**Schemas (PostgreSQL only).** ``open_store(url, schema="name")`` — or ``?schema=name`` in the
URL — sets the connections' ``search_path`` to that schema, so every table lives there;
``broker.storage.migrate`` creates the schema if it is missing. Several brokers (or test runs)
can share one database this way.

Errors: unique clashes raise ``AlreadyExists``, missing rows ``RecordNotFound``, and every other
database failure (unreachable server, locked file, bad credentials) ``StoreError`` whose reason
names the operation and the driver's message — never the password or the statement parameters.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from broker.errors import RecordNotFound
from broker.storage import schema as t
from broker.storage.base import (
    AttachedPolicies,
    Group,
    PrincipalType,
    RoleRecord,
    User,
)
from broker.storage.sql_access_keys import AccessKeysSql
from broker.storage.sql_activity import ActivitySql
from broker.storage.sql_audit import AuditSql
from broker.storage.sql_base import (
    SqlBase,
    StoreUrl,
    create_engine,
    map_errors,
    parse_store_url,
    sqlite_enable_wal,
)
from broker.storage.sql_groups import GroupsAdminMixin
from broker.storage.sql_keys import SigningKeysSql
from broker.storage.sql_logins import LoginsSql
from broker.storage.sql_mfa import MfaSql
from broker.storage.sql_policies import ManagedPoliciesSql
from broker.storage.sql_providers import OidcProvidersMixin
from broker.storage.sql_reports import ReportsSql
from broker.storage.sql_roles import RolesMixin
from broker.storage.sql_roles import role_from_row as _role
from broker.storage.sql_sessions import SessionsSql
from broker.storage.sql_tags import TagsMixin
from broker.storage.sql_users import UsersAdminMixin, user_from_row, user_values

__all__ = [
    "SqlStore",
    "StoreUrl",
    "create_engine",
    "map_errors",
    "open_store",
    "parse_store_url",
    "sqlite_enable_wal",
]

# Class of the (transaction-scoped, two-key) PostgreSQL locks that serialise
# ``set_attached_policies`` per principal; the second key is a hash of the principal.
_ATTACHMENTS_LOCK: Final = 0x62720003

# --- rows ----------------------------------------------------------------------------------


def _group(row: sa.Row[Any]) -> Group:
    m = row._mapping
    return Group(name=m["name"], description=m["description"], created_at=m["created_at"])


def _principal_is(
    table: sa.Table, kind: PrincipalType, principal: str | None
) -> list[sa.ColumnElement[bool]]:
    """WHERE clauses: rows of that principal type and (unless None) that principal."""
    clauses = [table.c.principal_type == kind]
    if principal is not None:
        clauses.append(table.c.principal == principal)
    return clauses


def _attached_policies(
    managed: Sequence[sa.Row[Any]], inline: Sequence[sa.Row[Any]], boundaries: Sequence[sa.Row[Any]]
) -> dict[str, AttachedPolicies]:
    """Rows of ``policy_attachments``, ``inline_policies`` and ``permissions_boundaries``
    (one principal type) grouped by principal."""
    names: dict[str, list[str]] = {}
    documents: dict[str, dict[str, Mapping[str, Any]]] = {}
    boundary: dict[str, str] = {}
    for row in managed:
        m = row._mapping
        names.setdefault(m["principal"], []).append(m["policy_name"])
    for row in inline:
        m = row._mapping
        documents.setdefault(m["principal"], {})[m["name"]] = dict(m["document"])
    for row in boundaries:
        m = row._mapping
        boundary[m["principal"]] = m["policy_name"]
    return {
        p: AttachedPolicies(
            managed=tuple(sorted(names.get(p, ()))),
            inline=documents.get(p, {}),
            boundary=boundary.get(p),
        )
        for p in sorted(names.keys() | documents.keys() | boundary.keys())
    }


# --- the store -----------------------------------------------------------------------------


class SqlStore(
    UsersAdminMixin,
    AccessKeysSql,
    GroupsAdminMixin,
    ManagedPoliciesSql,
    RolesMixin,
    TagsMixin,
    OidcProvidersMixin,
    AuditSql,
    SigningKeysSql,
    SessionsSql,
    LoginsSql,
    ReportsSql,
    ActivitySql,
    MfaSql,
    SqlBase,
):
    """The ``Store`` protocol on one SQLAlchemy async engine (SQLite or PostgreSQL).

    Open it with ``open_store(url)`` after ``broker.storage.migrate(url)``; ``close()`` disposes
    of the connection pool. Safe to share between tasks; several instances (processes, broker
    replicas) may use the same database at once.
    """

    async def _lock_principal(
        self, conn: AsyncConnection, kind: PrincipalType, principal: str
    ) -> None:
        """Serialise replacements of one principal's attachments on PostgreSQL (SQLite
        serialises every writer). A hash collision only makes two principals wait."""
        if self._target.dialect == "postgresql":
            digest = hashlib.blake2b(f"{kind}\0{principal}".encode(), digest_size=4).digest()
            key = int.from_bytes(digest, "big", signed=True)
            await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_ATTACHMENTS_LOCK, key)))

    async def _delete_principal_policies(
        self, conn: AsyncConnection, kind: PrincipalType, principal: str
    ) -> None:
        """Delete every attachment, inline policy and boundary of the principal."""
        for table in (t.policy_attachments, t.inline_policies, t.permissions_boundaries):
            await conn.execute(sa.delete(table).where(*_principal_is(table, kind, principal)))

    # -- lifecycle

    async def close(self) -> None:
        await self._engine.dispose()

    async def ping(self) -> None:
        async with self._read("ping") as conn:
            await conn.execute(sa.select(sa.literal(1)))

    # -- users

    async def create_user(self, user: User) -> User:
        async with self._write(f"create user {user.id!r}") as conn:
            await conn.execute(sa.insert(t.users).values(**user_values(user)))
        return user

    async def get_user(self, user_id: str) -> User:
        async with self._read("get user") as conn:
            row = (await conn.execute(sa.select(t.users).where(t.users.c.id == user_id))).first()
        if row is None:
            raise RecordNotFound(f"user {user_id!r} not found")
        return user_from_row(row)

    async def find_user(self, provider: str, subject: str) -> User | None:
        async with self._read("find user") as conn:
            row = (
                await conn.execute(
                    sa.select(t.users).where(
                        t.users.c.provider == provider, t.users.c.subject == subject
                    )
                )
            ).first()
        return user_from_row(row) if row is not None else None

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
        """Create the user on first login (new id, ``first_login_at = now``) or update email,
        groups and ``last_login_at`` (the name and id of an existing user are kept)."""
        values = {
            "id": str(uuid.uuid4()),
            "provider": provider,
            "subject": subject,
            "name": name,
            "email": email,
            "groups": list(groups),
            "created_at": now,
            "first_login_at": now,
            "last_login_at": now,
            "password_hash": None,
            "must_change_password": False,
            "disabled": False,
        }
        stmt = self._upsert(
            t.users,
            values,
            key=("provider", "subject"),
            update={
                "email": lambda x: x.email,
                "groups": lambda x: x.groups,
                "last_login_at": lambda x: x.last_login_at,
                "first_login_at": lambda x: sa.func.coalesce(
                    t.users.c.first_login_at, x.first_login_at
                ),
            },
        ).returning(*t.users.c)
        async with self._write("upsert federated user") as conn:
            row = (await conn.execute(stmt)).one()
        return user_from_row(row)

    async def record_login(self, user_id: str, now: float) -> None:
        async with self._write("record login") as conn:
            result = await conn.execute(
                sa.update(t.users)
                .where(t.users.c.id == user_id)
                .values(
                    last_login_at=now,
                    first_login_at=sa.func.coalesce(t.users.c.first_login_at, now),
                )
            )
            if result.rowcount == 0:
                raise RecordNotFound(f"user {user_id!r} not found")

    async def set_password(
        self, user_id: str, password_hash: str, *, must_change: bool, now: float
    ) -> None:
        async with self._write("set password") as conn:
            result = await conn.execute(
                sa.update(t.users)
                .where(t.users.c.id == user_id)
                .values(
                    password_hash=password_hash,
                    must_change_password=must_change,
                    password_changed_at=now,
                )
            )
            if result.rowcount == 0:
                raise RecordNotFound(f"user {user_id!r} not found")

    async def set_user_disabled(self, user_id: str, disabled: bool) -> None:
        async with self._write("set user disabled") as conn:
            result = await conn.execute(
                sa.update(t.users).where(t.users.c.id == user_id).values(disabled=disabled)
            )
            if result.rowcount == 0:
                raise RecordNotFound(f"user {user_id!r} not found")

    async def count_users(self) -> int:
        async with self._read("count users") as conn:
            result = await conn.execute(sa.select(sa.func.count()).select_from(t.users))
            return int(result.scalar_one())

    async def list_users(self) -> list[User]:
        async with self._read("list users") as conn:
            rows = await conn.execute(
                sa.select(t.users).order_by(t.users.c.created_at, t.users.c.id)
            )
            return [user_from_row(r) for r in rows]

    async def find_users_by_name(self, name: str) -> list[User]:
        """Users whose ``name`` is exactly ``name``, oldest first (names are not unique)."""
        async with self._read("find users by name") as conn:
            rows = await conn.execute(
                sa.select(t.users)
                .where(t.users.c.name == name)
                .order_by(t.users.c.created_at, t.users.c.id)
            )
            return [user_from_row(r) for r in rows]

    # -- roles

    async def put_role(self, role: RoleRecord) -> None:
        """Create or replace (every field, including ``created_at``) the role of that name."""
        values = {
            "name": role.name,
            "description": role.description,
            "trust_policy": dict(role.trust_policy),
            "policies": [dict(p) for p in role.policies],
            "permissions_boundary": (
                dict(role.permissions_boundary) if role.permissions_boundary is not None else None
            ),
            "max_session_duration": role.max_session_duration,
            "source": role.source,
            "created_at": role.created_at,
            "updated_at": role.updated_at,
        }
        async with self._write(f"put role {role.name!r}") as conn:
            await conn.execute(self._upsert(t.roles, values, key=("name",)))

    async def get_role(self, name: str) -> RoleRecord | None:
        async with self._read("get role") as conn:
            row = (await conn.execute(sa.select(t.roles).where(t.roles.c.name == name))).first()
        return _role(row) if row is not None else None

    async def list_roles(self) -> list[RoleRecord]:
        """By name."""
        async with self._read("list roles") as conn:
            rows = await conn.execute(sa.select(t.roles).order_by(t.roles.c.name))
            return [_role(r) for r in rows]

    async def delete_role(self, name: str) -> None:
        """Delete the role with its managed attachments, inline policies, boundary and tags."""
        async with self._write("delete role") as conn:
            result = await conn.execute(sa.delete(t.roles).where(t.roles.c.name == name))
            if result.rowcount == 0:
                raise RecordNotFound(f"role {name!r} not found")
            await self._delete_principal_policies(conn, "role", name)
            await conn.execute(
                sa.delete(t.tags).where(t.tags.c.kind == "role", t.tags.c.principal == name)
            )

    # -- groups

    async def create_group(self, group: Group) -> None:
        """``AlreadyExists`` if the name is taken. A new group starts empty: anything left
        under its name (attached while an earlier group of that name was being deleted) goes."""
        async with self._write(f"create group {group.name!r}") as conn:
            await conn.execute(
                sa.insert(t.groups).values(
                    name=group.name, description=group.description, created_at=group.created_at
                )
            )
            await self._delete_principal_policies(conn, "group", group.name)
            gm = t.group_members
            await conn.execute(sa.delete(gm).where(gm.c.group_name == group.name))

    async def get_group(self, name: str) -> Group | None:
        async with self._read("get group") as conn:
            row = (await conn.execute(sa.select(t.groups).where(t.groups.c.name == name))).first()
        return _group(row) if row is not None else None

    async def list_groups(self) -> list[Group]:
        """By name."""
        async with self._read("list groups") as conn:
            rows = await conn.execute(sa.select(t.groups).order_by(t.groups.c.name))
            return [_group(r) for r in rows]

    async def delete_group(self, name: str) -> None:
        """``RecordNotFound`` if missing; its members, attachments and inline policies go with
        it."""
        async with self._write("delete group") as conn:
            result = await conn.execute(sa.delete(t.groups).where(t.groups.c.name == name))
            if result.rowcount == 0:
                raise RecordNotFound(f"group {name!r} not found")
            await conn.execute(
                sa.delete(t.group_members).where(t.group_members.c.group_name == name)
            )
            await self._delete_principal_policies(conn, "group", name)

    async def add_group_member(self, group: str, user_id: str) -> None:
        """Idempotent; ``RecordNotFound`` if the group or the user (by id) does not exist."""
        async with self._write("add group member") as conn:
            await self._require(conn, t.groups.c.name, group, "group")
            await self._require(conn, t.users.c.id, user_id, "user")
            await conn.execute(
                self._insert_ignore(t.group_members, [{"group_name": group, "user_id": user_id}])
            )

    async def remove_group_member(self, group: str, user_id: str) -> bool:
        """True if the user was a member."""
        m = t.group_members
        async with self._write("remove group member") as conn:
            result = await conn.execute(
                sa.delete(m).where(m.c.group_name == group, m.c.user_id == user_id)
            )
            return result.rowcount > 0

    async def group_members(self, group: str) -> list[str]:
        """User ids, sorted (empty for an unknown group)."""
        m = t.group_members
        async with self._read("list group members") as conn:
            rows = await conn.execute(sa.select(m.c.user_id).where(m.c.group_name == group))
            return sorted(rows.scalars())

    async def user_groups(self, user_id: str) -> list[str]:
        """Group names, sorted (empty for an unknown user)."""
        m = t.group_members
        async with self._read("list user groups") as conn:
            rows = await conn.execute(sa.select(m.c.group_name).where(m.c.user_id == user_id))
            return sorted(rows.scalars())

    # -- policy attachments (users by id, groups and roles by name)

    async def attach_policy(self, kind: PrincipalType, principal: str, policy: str) -> None:
        """Idempotent; ``RecordNotFound`` if the managed policy does not exist (the principal
        is not checked)."""
        row = {"principal_type": kind, "principal": principal, "policy_name": policy}
        async with self._write("attach policy") as conn:
            await self._require(conn, t.managed_policies.c.name, policy, "managed policy")
            await conn.execute(self._insert_ignore(t.policy_attachments, [row]))

    async def detach_policy(self, kind: PrincipalType, principal: str, policy: str) -> bool:
        """True if it was attached."""
        a = t.policy_attachments
        async with self._write("detach policy") as conn:
            result = await conn.execute(
                sa.delete(a).where(
                    a.c.principal_type == kind,
                    a.c.principal == principal,
                    a.c.policy_name == policy,
                )
            )
            return result.rowcount > 0

    async def set_attached_policies(
        self, kind: PrincipalType, principal: str, policies: Sequence[str]
    ) -> None:
        """Replace every managed attachment of the principal in one transaction (repeated
        names count once); ``RecordNotFound`` and nothing changed if a policy does not exist.
        Concurrent replacements of one principal's attachments serialise: one set wins."""
        a = t.policy_attachments
        names = sorted(set(policies))
        async with self._write("set attached policies") as conn:
            await self._lock_principal(conn, kind, principal)
            if names:
                found = await conn.execute(
                    sa.select(t.managed_policies.c.name)
                    .where(t.managed_policies.c.name.in_(names))
                    .order_by(t.managed_policies.c.name)
                    .with_for_update(read=True, key_share=True)
                )
                missing = sorted(set(names) - set(found.scalars()))
                if missing:
                    raise RecordNotFound(
                        f"managed policies not found: {', '.join(repr(n) for n in missing)}"
                    )
            await conn.execute(sa.delete(a).where(*_principal_is(a, kind, principal)))
            if names:
                rows = [
                    {"principal_type": kind, "principal": principal, "policy_name": n}
                    for n in names
                ]
                await conn.execute(self._insert_ignore(a, rows))

    async def put_inline_policy(
        self, kind: PrincipalType, principal: str, name: str, document: Mapping[str, Any]
    ) -> None:
        """Create or replace the principal's inline policy of that name."""
        values = {
            "principal_type": kind,
            "principal": principal,
            "name": name,
            "document": dict(document),
        }
        async with self._write("put inline policy") as conn:
            await conn.execute(
                self._upsert(t.inline_policies, values, key=("principal_type", "principal", "name"))
            )

    async def delete_inline_policy(self, kind: PrincipalType, principal: str, name: str) -> bool:
        """True if it existed."""
        i = t.inline_policies
        async with self._write("delete inline policy") as conn:
            result = await conn.execute(
                sa.delete(i).where(
                    i.c.principal_type == kind, i.c.principal == principal, i.c.name == name
                )
            )
            return result.rowcount > 0

    async def set_boundary(self, kind: PrincipalType, principal: str, policy: str | None) -> None:
        """Set (or, with None, clear) the principal's permissions boundary; ``RecordNotFound``
        if the managed policy does not exist (the principal is not checked)."""
        b = t.permissions_boundaries
        async with self._write("set permissions boundary") as conn:
            if policy is None:
                await conn.execute(sa.delete(b).where(*_principal_is(b, kind, principal)))
                return
            await self._require(conn, t.managed_policies.c.name, policy, "managed policy")
            values = {"principal_type": kind, "principal": principal, "policy_name": policy}
            await conn.execute(self._upsert(b, values, key=("principal_type", "principal")))

    async def attached_policies(self, kind: PrincipalType, principal: str) -> AttachedPolicies:
        """Everything attached to the principal (empty if nothing, or no such principal)."""
        found = await self._read_attachments("list attached policies", kind, principal)
        return found.get(principal, AttachedPolicies())

    async def all_attachments(self, kind: PrincipalType) -> dict[str, AttachedPolicies]:
        """``attached_policies`` of every principal of that type with anything attached: three
        queries on one snapshot, whatever the number of principals."""
        return await self._read_attachments("list all attachments", kind, None)

    async def _read_attachments(
        self, what: str, kind: PrincipalType, principal: str | None
    ) -> dict[str, AttachedPolicies]:
        """Attachments of one principal, or of all of that type (``principal=None``)."""
        rows: list[Sequence[sa.Row[Any]]] = []
        async with self._read(what, snapshot=True) as conn:
            for table in (t.policy_attachments, t.inline_policies, t.permissions_boundaries):
                stmt = sa.select(table).where(*_principal_is(table, kind, principal))
                rows.append((await conn.execute(stmt)).all())
        managed, inline, boundaries = rows
        return _attached_policies(managed, inline, boundaries)

    # -- meta

    async def get_meta(self, key: str) -> str | None:
        async with self._read("get meta") as conn:
            result = await conn.execute(sa.select(t.meta.c.value).where(t.meta.c.key == key))
            value = result.scalar_one_or_none()
        return str(value) if value is not None else None

    async def set_meta(self, key: str, value: str) -> None:
        async with self._write("set meta") as conn:
            await conn.execute(self._upsert(t.meta, {"key": key, "value": value}, key=("key",)))


def open_store(url: str, *, schema: str | None = None) -> SqlStore:
    """Open the store at ``url`` (``sqlite:///PATH`` or ``postgresql://...``).

    Connects lazily: a bad URL raises ``StoreError`` here, an unreachable database on first use
    (call ``ping()`` to find out at start-up). Does not migrate: run
    ``broker.storage.migrate(url)`` first. ``schema`` (PostgreSQL only) — see the module doc."""
    target = parse_store_url(url, schema=schema)
    return SqlStore(target, create_engine(target))
