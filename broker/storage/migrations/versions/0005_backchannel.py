"""Sessions remember the provider's session they came from (ID token ``sid``), so that an OpenID
Connect back-channel logout token naming it can find them.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision: str | None = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("sessions", sa.Column("provider_sid", sa.String(), nullable=True))
    op.create_index("ix_sessions_provider_sid", "sessions", ["provider_sid"])


def downgrade() -> None:
    op.drop_index("ix_sessions_provider_sid", table_name="sessions")
    with op.batch_alter_table("sessions") as batch:  # SQLite drops a column by copying
        batch.drop_column("provider_sid")
