"""MFA: when a session's holder last proved a second factor (``aws:MultiFactorAuthAge`` is
measured from it, and a refreshed session token must carry it on), and at most one enabled MFA
device per user (a unique index: several NULLs, the unassigned devices, are allowed).

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision: str | None = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("sessions", sa.Column("mfa_authenticated_at", sa.Double(), nullable=True))
    op.drop_index("ix_mfa_devices_user_id", table_name="mfa_devices")
    op.create_index("ix_mfa_devices_user_id", "mfa_devices", ["user_id"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_mfa_devices_user_id", table_name="mfa_devices")
    op.create_index("ix_mfa_devices_user_id", "mfa_devices", ["user_id"])
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("mfa_authenticated_at")
