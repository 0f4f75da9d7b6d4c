"""Alembic migrations for the SQL store (SQLite and PostgreSQL), run by ``broker.storage.migrate``.

``env.py`` takes an open connection from ``config.attributes["connection"]``; there is no
``alembic.ini``. Revisions in ``versions/`` are numbered (``0001``, ``0002``, ...), each chained to
the one before, and never import ``broker.storage.schema`` (a migration is frozen in time).
"""
