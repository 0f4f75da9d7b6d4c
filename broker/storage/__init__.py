"""Storage: the ``Store`` protocol (``base.py``) and its SQL backends (SQLite, PostgreSQL).

May import ``broker.errors``, ``broker.clock`` and ``broker.storage.base``; nothing above.

Entry points: ``open_store(url)`` returns a ``Store`` (``sql.SqlStore``) for ``sqlite:///PATH`` or
``postgresql://...``; ``await migrate(url)`` brings the schema to the newest revision and must run
first (``broker migrate`` and start-up both call it). Both take an optional ``schema=``
(PostgreSQL only: the tables live in that schema). ``schema.py`` is the current table layout,
``migrations/`` the alembic revisions that build it.
"""

from broker.storage.base import Store
from broker.storage.migrate import current_revision, head_revision, migrate
from broker.storage.sql import SqlStore, open_store

__all__ = ["SqlStore", "Store", "current_revision", "head_revision", "migrate", "open_store"]
