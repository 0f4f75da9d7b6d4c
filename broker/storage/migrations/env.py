"""Alembic environment: runs on the connection ``broker.storage.migrate`` hands over.

``broker.storage.migrate`` opens the connection, takes the cross-process lock and puts the
connection into ``config.attributes["connection"]``; this script only runs the migrations.
Each revision runs in its own transaction (on SQLite the caller may already hold an outer
``BEGIN IMMEDIATE`` transaction, in which case all pending revisions share it).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError("run migrations through broker.storage.migrate(url), not the alembic CLI")

context.configure(
    connection=connection,
    transaction_per_migration=True,
    transactional_ddl=True,
)
with context.begin_transaction():
    context.run_migrations()
