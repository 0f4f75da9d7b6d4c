"""IAM: managed policies, groups, group members, policy attachments, inline policies,
permissions boundaries; an index on users.name.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_users_name", "users", ["name"])
    op.create_table(
        "managed_policies",
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("document", sa.JSON(), nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_managed_policies"),
    )
    op.create_table(
        "groups",
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_groups"),
    )
    op.create_table(
        "group_members",
        sa.Column("group_name", sa.String(), nullable=False),
        sa.Column("user_id", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("group_name", "user_id", name="pk_group_members"),
    )
    op.create_index("ix_group_members_user_id", "group_members", ["user_id"])
    op.create_table(
        "policy_attachments",
        sa.Column("principal_type", sa.String(), nullable=False),
        sa.Column("principal", sa.String(), nullable=False),
        sa.Column("policy_name", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint(
            "principal_type", "principal", "policy_name", name="pk_policy_attachments"
        ),
    )
    op.create_index("ix_policy_attachments_policy_name", "policy_attachments", ["policy_name"])
    op.create_table(
        "inline_policies",
        sa.Column("principal_type", sa.String(), nullable=False),
        sa.Column("principal", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("document", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("principal_type", "principal", "name", name="pk_inline_policies"),
    )
    op.create_table(
        "permissions_boundaries",
        sa.Column("principal_type", sa.String(), nullable=False),
        sa.Column("principal", sa.String(), nullable=False),
        sa.Column("policy_name", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("principal_type", "principal", name="pk_permissions_boundaries"),
    )
    op.create_index(
        "ix_permissions_boundaries_policy_name", "permissions_boundaries", ["policy_name"]
    )


def downgrade() -> None:
    for table in (
        "permissions_boundaries",
        "inline_policies",
        "policy_attachments",
        "group_members",
        "groups",
        "managed_policies",
    ):
        op.drop_table(table)
    op.drop_index("ix_users_name", table_name="users")
