"""Single-use flow values (pending role choice, password change, ...), namespaced by kind and
bound to the browser that started the flow.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "single_use",
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("binding", sa.String(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("kind", "key", name="pk_single_use"),
    )
    op.create_index("ix_single_use_binding", "single_use", ["binding"])
    op.create_index("ix_single_use_expires_at", "single_use", ["expires_at"])


def downgrade() -> None:
    op.drop_table("single_use")
