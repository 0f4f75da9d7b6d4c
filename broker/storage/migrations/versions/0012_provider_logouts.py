"""Back-channel logouts remembered for the logins still pending when they arrived: one row per
ended provider session (``sid``) or provider user (``sub``), until no login that began before
the logout can still turn into a session.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision: str | None = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "provider_logouts",
        sa.Column("provider", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("value", sa.String(), nullable=False),
        sa.Column("logged_out_at", sa.Double(), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("provider", "kind", "value", name="pk_provider_logouts"),
    )
    op.create_index("ix_provider_logouts_expires_at", "provider_logouts", ["expires_at"])


def downgrade() -> None:
    op.drop_table("provider_logouts")
