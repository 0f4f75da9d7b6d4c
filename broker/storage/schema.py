"""The SQL schema behind ``SqlStore``, as SQLAlchemy Core metadata (SQLite and PostgreSQL).

This is the *current* shape of the database. The migrations in ``migrations/versions`` build it
step by step and never import this module; ``tests/storage/test_migrations.py`` checks that the
two agree (alembic autogenerate reports no difference).

Conventions: times are float seconds since the epoch (``Double``); lists and documents are
``JSON``; identifiers are ``String`` without a length (``VARCHAR`` on PostgreSQL).
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# an autoincrementing 64-bit id; on SQLite a plain INTEGER PRIMARY KEY (the rowid alias)
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.String(), primary_key=True),
    sa.Column("provider", sa.String(), nullable=False),
    sa.Column("subject", sa.String(), nullable=False),
    sa.Column("name", sa.String(), nullable=False, index=True),  # not unique across providers
    sa.Column("email", sa.String(), nullable=False),
    sa.Column("groups", sa.JSON(), nullable=False),
    sa.Column("created_at", sa.Double(), nullable=False),
    sa.Column("first_login_at", sa.Double(), nullable=True),
    sa.Column("last_login_at", sa.Double(), nullable=True),
    sa.Column("password_hash", sa.Text(), nullable=True),
    sa.Column("must_change_password", sa.Boolean(), nullable=False),
    sa.Column("disabled", sa.Boolean(), nullable=False),
    sa.Column("password_changed_at", sa.Double(), nullable=True),
    sa.UniqueConstraint("provider", "subject"),
)

login_states = sa.Table(
    "login_states",
    metadata,
    sa.Column("state", sa.String(), primary_key=True),
    sa.Column("provider", sa.String(), nullable=False),
    sa.Column("browser_binding", sa.String(), nullable=False),
    sa.Column("nonce", sa.String(), nullable=False),
    sa.Column("code_verifier", sa.String(), nullable=False),
    sa.Column("redirect_after", sa.Text(), nullable=False),
    sa.Column("role", sa.String(), nullable=True),
    sa.Column("created_at", sa.Double(), nullable=False),
    sa.Column("expires_at", sa.Double(), nullable=False, index=True),
)

single_use = sa.Table(
    "single_use",
    metadata,
    sa.Column("kind", sa.String(), nullable=False),  # the namespace: one kind of flow value
    sa.Column("key", sa.String(), nullable=False),  # SHA-256 of the value, never the value
    sa.Column("binding", sa.String(), nullable=False, index=True),  # the browser's, or ""
    sa.Column("payload", sa.JSON(), nullable=False),
    sa.Column("created_at", sa.Double(), nullable=False),
    sa.Column("expires_at", sa.Double(), nullable=False, index=True),
    sa.PrimaryKeyConstraint("kind", "key"),
)

provider_logouts = sa.Table(
    "provider_logouts",
    metadata,
    sa.Column("provider", sa.String(), nullable=False),
    sa.Column("kind", sa.String(), nullable=False),  # "sid" | "sub"
    sa.Column("value", sa.String(), nullable=False),  # the provider's session id or subject
    sa.Column("logged_out_at", sa.Double(), nullable=False),
    sa.Column("expires_at", sa.Double(), nullable=False, index=True),
    sa.PrimaryKeyConstraint("provider", "kind", "value"),
)

login_failures = sa.Table(
    "login_failures",
    metadata,
    sa.Column("key", sa.String(), primary_key=True),  # a hash of the user name or address
    sa.Column("failures", sa.Integer(), nullable=False),
    sa.Column("window_end", sa.Double(), nullable=False, index=True),
)

sessions = sa.Table(
    "sessions",
    metadata,
    sa.Column("id", sa.String(), primary_key=True),
    # no foreign key to users: sessions may come from principals without a user record
    sa.Column("user_id", sa.String(), nullable=False, index=True),
    sa.Column("provider", sa.String(), nullable=False),
    sa.Column("subject", sa.String(), nullable=False),
    sa.Column("role_arn", sa.String(), nullable=False),
    sa.Column("email", sa.String(), nullable=False),
    sa.Column("groups", sa.JSON(), nullable=False),
    sa.Column("mfa", sa.Boolean(), nullable=False),
    sa.Column("tags", sa.JSON(), nullable=False),
    sa.Column("created_at", sa.Double(), nullable=False),
    sa.Column("expires_at", sa.Double(), nullable=False, index=True),
    sa.Column("idle_timeout", sa.Double(), nullable=False),
    sa.Column("last_seen_at", sa.Double(), nullable=False),
    sa.Column("revoked_at", sa.Double(), nullable=True),
    sa.Column("revoked_reason", sa.Text(), nullable=False),
    # the provider's session (ID token ``sid``) it came from, for back-channel logout
    sa.Column("provider_sid", sa.String(), nullable=True, index=True),
    # when the holder last proved a second factor (None without MFA): aws:MultiFactorAuthAge
    sa.Column("mfa_authenticated_at", sa.Double(), nullable=True),
)

revocations = sa.Table(
    "revocations",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(), nullable=False),
    sa.Column("target", sa.String(), nullable=False),
    # ``before`` in ``Revocation``; BEFORE is an SQL keyword
    sa.Column("issued_before", sa.Double(), nullable=False),
    sa.Column("created_at", sa.Double(), nullable=False),
)

signing_keys = sa.Table(
    "signing_keys",
    metadata,
    sa.Column("kid", sa.String(), primary_key=True),
    sa.Column("algorithm", sa.String(), nullable=False),
    sa.Column("private_key", sa.LargeBinary(), nullable=False),
    sa.Column("public_jwk", sa.JSON(), nullable=False),
    sa.Column("created_at", sa.Double(), nullable=False),
    sa.Column("retired_at", sa.Double(), nullable=True),
    sa.Column("expires_at", sa.Double(), nullable=True),
)

roles = sa.Table(
    "roles",
    metadata,
    sa.Column("name", sa.String(), primary_key=True),
    sa.Column("description", sa.Text(), nullable=False),
    sa.Column("trust_policy", sa.JSON(), nullable=False),
    sa.Column("policies", sa.JSON(), nullable=False),
    sa.Column("permissions_boundary", sa.JSON(none_as_null=True), nullable=True),
    sa.Column("max_session_duration", sa.Double(), nullable=False),
    sa.Column("source", sa.String(), nullable=False),
    sa.Column("created_at", sa.Double(), nullable=False),
    sa.Column("updated_at", sa.Double(), nullable=False),
)

# --- IAM: managed policies, groups and what is attached to users, groups and roles ---------
#
# No foreign keys: a principal is a user id, a group name or a role name (one column, three
# tables), and the store keeps the references itself. Deleting a policy, group or role
# deletes its row first (which locks it) and then its dependants, in one transaction; writers
# that add a reference read the referenced row ``FOR SHARE`` first (PostgreSQL; SQLite
# serialises writers). ``principal_type`` is "user" | "group" | "role".

managed_policies = sa.Table(
    "managed_policies",
    metadata,
    sa.Column("name", sa.String(), primary_key=True),
    sa.Column("description", sa.Text(), nullable=False),
    sa.Column("document", sa.JSON(), nullable=False),
    sa.Column("source", sa.String(), nullable=False),
    sa.Column("created_at", sa.Double(), nullable=False),
    sa.Column("updated_at", sa.Double(), nullable=False),
    # the version in force (its document is ``document``), and the next version's number
    sa.Column("default_version", sa.String(), nullable=False, server_default="v1"),
    sa.Column("next_version", sa.Integer(), nullable=False, server_default="2"),
)

# every version of a managed policy (IAM keeps at most five); the default one's document is
# also the policy's ``document``, which is what the authorizer compiles
policy_versions = sa.Table(
    "policy_versions",
    metadata,
    sa.Column("policy_name", sa.String(), primary_key=True),
    sa.Column("version_id", sa.String(), primary_key=True),
    sa.Column("document", sa.JSON(), nullable=False),
    sa.Column("created_at", sa.Double(), nullable=False),
)

groups = sa.Table(
    "groups",
    metadata,
    sa.Column("name", sa.String(), primary_key=True),
    sa.Column("description", sa.Text(), nullable=False),
    sa.Column("created_at", sa.Double(), nullable=False),
)

group_members = sa.Table(
    "group_members",
    metadata,
    sa.Column("group_name", sa.String(), primary_key=True),
    sa.Column("user_id", sa.String(), primary_key=True, index=True),
)

# managed policies attached to a principal
policy_attachments = sa.Table(
    "policy_attachments",
    metadata,
    sa.Column("principal_type", sa.String(), primary_key=True),
    sa.Column("principal", sa.String(), primary_key=True),
    sa.Column("policy_name", sa.String(), primary_key=True, index=True),
)

inline_policies = sa.Table(
    "inline_policies",
    metadata,
    sa.Column("principal_type", sa.String(), primary_key=True),
    sa.Column("principal", sa.String(), primary_key=True),
    sa.Column("name", sa.String(), primary_key=True),
    sa.Column("document", sa.JSON(), nullable=False),
)

# at most one managed policy per principal, used as its permissions boundary
permissions_boundaries = sa.Table(
    "permissions_boundaries",
    metadata,
    sa.Column("principal_type", sa.String(), primary_key=True),
    sa.Column("principal", sa.String(), primary_key=True),
    sa.Column("policy_name", sa.String(), nullable=False, index=True),
)

audit_events = sa.Table(
    "audit_events",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("time", sa.Double(), nullable=False, index=True),
    sa.Column("action", sa.String(), nullable=False, index=True),
    sa.Column("outcome", sa.String(), nullable=False),
    sa.Column("request_id", sa.String(), nullable=False),
    sa.Column("principal", sa.String(), nullable=False),
    sa.Column("reason", sa.Text(), nullable=False),
    sa.Column("source_ip", sa.String(), nullable=False),
    sa.Column("details", sa.JSON(), nullable=False),
    # the hash chain (``broker.domain.audit_chain``); empty on rows older than the chain
    sa.Column("prev_hash", sa.String(), nullable=True),
    sa.Column("hash", sa.String(), nullable=True),
)

# signed claims that the chain's row ``last_id`` had ``hash`` (``token``: the broker's JWS)
audit_checkpoints = sa.Table(
    "audit_checkpoints",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("last_id", sa.BigInteger(), nullable=False, index=True),
    sa.Column("hash", sa.String(), nullable=False),
    sa.Column("created_at", sa.Double(), nullable=False),
    sa.Column("token", sa.Text(), nullable=False),
)

# Tags on users (principal: the user's id) and roles (principal: the role's name), as IAM's.
tags = sa.Table(
    "tags",
    metadata,
    sa.Column("kind", sa.String(), nullable=False),
    sa.Column("principal", sa.String(), nullable=False),
    sa.Column("key", sa.String(), nullable=False),
    sa.Column("value", sa.String(), nullable=False),
    sa.PrimaryKeyConstraint("kind", "principal", "key"),
)

# OpenID Connect providers registered through the IAM API (config providers are not stored)
oidc_providers = sa.Table(
    "oidc_providers",
    metadata,
    sa.Column("name", sa.String(), primary_key=True),
    sa.Column("url", sa.String(), nullable=False, unique=True),
    sa.Column("client_ids", sa.JSON(), nullable=False),
    sa.Column("thumbprints", sa.JSON(), nullable=False),
    sa.Column("tags", sa.JSON(), nullable=False),
    sa.Column("created_at", sa.Double(), nullable=False),
    sa.Column("updated_at", sa.Double(), nullable=False),
)

# IAM users' long-lived access keys (``AKIA...``); the secret sealed under the KEK, since SigV4
# verification needs it as the HMAC key. At most two per user (IAM's limit).
access_keys = sa.Table(
    "access_keys",
    metadata,
    sa.Column("access_key_id", sa.String(), primary_key=True),
    sa.Column("user_id", sa.String(), nullable=False, index=True),
    sa.Column("secret_sealed", sa.LargeBinary(), nullable=False),
    sa.Column("seal_kid", sa.String(), nullable=False),
    sa.Column("status", sa.String(), nullable=False),  # "Active" | "Inactive"
    sa.Column("created_at", sa.Double(), nullable=False),
    sa.Column("last_used_at", sa.Double(), nullable=True),
    sa.Column("last_used_region", sa.String(), nullable=True),
    sa.Column("last_used_service", sa.String(), nullable=True),
)

# Virtual MFA (TOTP) devices. ``user_id`` is NULL until enabled for a user; ``last_step`` is the
# last accepted TOTP time step: a code is accepted once, by a compare-and-set on it.
mfa_devices = sa.Table(
    "mfa_devices",
    metadata,
    sa.Column("serial_number", sa.String(), primary_key=True),
    sa.Column("name", sa.String(), nullable=False),
    sa.Column("path", sa.String(), nullable=False),
    # unique: at most one enabled device per user (NULLs, unassigned devices, do not clash)
    sa.Column("user_id", sa.String(), nullable=True, index=True, unique=True),
    sa.Column("seed_sealed", sa.LargeBinary(), nullable=False),
    sa.Column("seal_kid", sa.String(), nullable=False),
    sa.Column("created_at", sa.Double(), nullable=False),
    sa.Column("enabled_at", sa.Double(), nullable=True),
    sa.Column("last_step", sa.BigInteger(), nullable=False, server_default="0"),
)

# What each principal (user or role ARN) was allowed to do, aggregated per (action, resource):
# last-accessed reports, unused-access review and policy generation read it.
access_activity = sa.Table(
    "access_activity",
    metadata,
    sa.Column("principal_arn", sa.String(), nullable=False),
    sa.Column("action", sa.String(), nullable=False),
    sa.Column("resource", sa.String(), nullable=False),
    sa.Column("first_at", sa.Double(), nullable=False),
    sa.Column("last_at", sa.Double(), nullable=False, index=True),
    sa.Column("count", sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint("principal_arn", "action", "resource"),
)

# Generated reports (credential report, service last accessed details): kind, what it is about
# (an ARN, or "" for the account), status, and the content once complete.
report_jobs = sa.Table(
    "report_jobs",
    metadata,
    sa.Column("job_id", sa.String(), primary_key=True),
    sa.Column("kind", sa.String(), nullable=False),
    sa.Column("subject", sa.String(), nullable=False),
    sa.Column("status", sa.String(), nullable=False),
    sa.Column("created_at", sa.Double(), nullable=False),
    sa.Column("completed_at", sa.Double(), nullable=True),
    sa.Column("content", sa.LargeBinary(), nullable=True),
    sa.Index(None, "kind", "subject"),
)

meta = sa.Table(
    "meta",
    metadata,
    sa.Column("key", sa.String(), primary_key=True),
    sa.Column("value", sa.Text(), nullable=False),
)
