"""Credentials that last, and their review: ``access_keys`` (IAM users' long-lived keys, the
secret sealed under the KEK), ``mfa_devices`` (virtual TOTP devices, the seed sealed, the last
accepted time step for single use), ``access_activity`` (what each principal was allowed to do,
aggregated, for last-accessed reports and policy generation), ``report_jobs`` (generated
credential and last-accessed reports), and when a user's password was last changed.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision: str | None = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("users", sa.Column("password_changed_at", sa.Double(), nullable=True))
    op.create_table(
        "access_keys",
        sa.Column("access_key_id", sa.String(), nullable=False),
        sa.Column("user_id", sa.String(), nullable=False),
        sa.Column("secret_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("seal_kid", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("last_used_at", sa.Double(), nullable=True),
        sa.Column("last_used_region", sa.String(), nullable=True),
        sa.Column("last_used_service", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("access_key_id", name="pk_access_keys"),
    )
    op.create_index("ix_access_keys_user_id", "access_keys", ["user_id"])
    op.create_table(
        "mfa_devices",
        sa.Column("serial_number", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("path", sa.String(), nullable=False),
        sa.Column("user_id", sa.String(), nullable=True),
        sa.Column("seed_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("seal_kid", sa.String(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("enabled_at", sa.Double(), nullable=True),
        sa.Column("last_step", sa.BigInteger(), nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("serial_number", name="pk_mfa_devices"),
    )
    op.create_index("ix_mfa_devices_user_id", "mfa_devices", ["user_id"])
    op.create_table(
        "access_activity",
        sa.Column("principal_arn", sa.String(), nullable=False),
        sa.Column("action", sa.String(), nullable=False),
        sa.Column("resource", sa.String(), nullable=False),
        sa.Column("first_at", sa.Double(), nullable=False),
        sa.Column("last_at", sa.Double(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("principal_arn", "action", "resource", name="pk_access_activity"),
    )
    op.create_index("ix_access_activity_last_at", "access_activity", ["last_at"])
    op.create_table(
        "report_jobs",
        sa.Column("job_id", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("subject", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("completed_at", sa.Double(), nullable=True),
        sa.Column("content", sa.LargeBinary(), nullable=True),
        sa.PrimaryKeyConstraint("job_id", name="pk_report_jobs"),
    )
    op.create_index("ix_report_jobs_kind_subject", "report_jobs", ["kind", "subject"])


def downgrade() -> None:
    op.drop_table("report_jobs")
    op.drop_table("access_activity")
    op.drop_table("mfa_devices")
    op.drop_table("access_keys")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("password_changed_at")
