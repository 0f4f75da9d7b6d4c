"""Managed policy versions: ``policy_versions`` (IAM's at most five versions per policy), and
the default version and next version number on ``managed_policies``.

Every existing policy gets its document as version ``v1``, the default.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision: str | None = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "managed_policies",
        sa.Column("default_version", sa.String(), nullable=False, server_default="v1"),
    )
    op.add_column(
        "managed_policies",
        sa.Column("next_version", sa.Integer(), nullable=False, server_default="2"),
    )
    op.create_table(
        "policy_versions",
        sa.Column("policy_name", sa.String(), nullable=False),
        sa.Column("version_id", sa.String(), nullable=False),
        sa.Column("document", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("policy_name", "version_id", name="pk_policy_versions"),
    )
    op.execute(
        "INSERT INTO policy_versions (policy_name, version_id, document, created_at) "
        "SELECT name, 'v1', document, created_at FROM managed_policies"
    )


def downgrade() -> None:
    op.drop_table("policy_versions")
    with op.batch_alter_table("managed_policies") as batch:
        batch.drop_column("next_version")
        batch.drop_column("default_version")
