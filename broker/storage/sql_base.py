"""``SqlBase``: engines, URLs, error mapping and transactions under ``SqlStore`` (SQLite and
PostgreSQL); each aggregate's SQL is a mixin on it (``sql_tags``, ...) that ``SqlStore`` joins.

One implementation serves both databases; where they differ (upserts, locking) the code says so.

URLs are the configuration's form:

- ``sqlite:///absolute/path/broker.db`` (driver ``aiosqlite``). Every connection runs with
  ``journal_mode=WAL``, ``busy_timeout``, ``foreign_keys=ON``. Write transactions start with
  ``BEGIN IMMEDIATE`` (so two writers queue on the busy timeout instead of failing half-way),
  read transactions with a plain deferred ``BEGIN``. SQLite ≥ 3.35 is required (``RETURNING``).
  In-memory databases are refused: every pooled connection would see a different database.
- ``postgresql://user:password@host:5432/db`` (driver ``asyncpg``; ``postgres://`` is accepted
  too). Extra query parameters go to ``asyncpg.connect`` (``sslmode=`` is passed as ``ssl=``).

**Schemas (PostgreSQL only).** ``open_store(url, schema="name")`` — or ``?schema=name`` in the
URL — sets the connections' ``search_path`` to that schema, so every table lives there;
``broker.storage.migrate`` creates the schema if it is missing. Several brokers (or test runs)
can share one database this way.

Errors: unique clashes raise ``AlreadyExists``, missing rows ``RecordNotFound``, and every other
database failure (unreachable server, locked file, bad credentials) ``StoreError`` whose reason
names the operation and the driver's message — never the password or the statement parameters.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import asyncpg
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from broker.errors import AlreadyExists, BrokerError, RecordNotFound, StoreError

__all__ = [
    "SqlBase",
    "StoreUrl",
    "create_engine",
    "map_errors",
    "parse_store_url",
    "sqlite_enable_wal",
]

MIN_SQLITE_VERSION: Final = (3, 35, 0)  # DELETE/INSERT ... RETURNING
SQLITE_BUSY_TIMEOUT_MS: Final = 10_000
PG_CONNECT_TIMEOUT: Final = 10.0
PG_COMMAND_TIMEOUT: Final = 60.0

# connection execution option: this connection only reads (SQLite: deferred BEGIN)
_READ_ONLY: Final = "broker_read_only"

_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")

# SQLite (extended) result codes (sqlite3.Error.sqlite_errorcode)
_SQLITE_BUSY: Final = 5
_SQLITE_LOCKED: Final = 6
_SQLITE_CONSTRAINT_FOREIGNKEY: Final = 787
_SQLITE_CONSTRAINT_PRIMARYKEY: Final = 1555
_SQLITE_CONSTRAINT_UNIQUE: Final = 2067
# PostgreSQL SQLSTATEs
_PG_UNIQUE_VIOLATION: Final = "23505"
_PG_FOREIGN_KEY_VIOLATION: Final = "23503"

_DB_ERRORS: Final[tuple[type[BaseException], ...]] = (
    sa_exc.SQLAlchemyError,
    sqlite3.Error,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    OSError,  # connection refused, unreachable host, missing directory
    TimeoutError,
)


# --- URLs and engines ----------------------------------------------------------------------


@dataclass(frozen=True)
class StoreUrl:
    """A store URL resolved to its async driver."""

    url: URL  # with the async driver, e.g. ``sqlite+aiosqlite`` / ``postgresql+asyncpg``
    dialect: str  # "sqlite" | "postgresql"
    schema: str | None  # PostgreSQL search_path schema, or None for the default

    @property
    def display(self) -> str:
        """The URL with its password masked, for messages and logs."""
        return self.url.render_as_string(hide_password=True)


def parse_store_url(url: str, *, schema: str | None = None) -> StoreUrl:
    """Resolve a configuration URL (``sqlite:///...`` or ``postgresql://...``) to its driver."""
    try:
        parsed = make_url(url)
    except (sa_exc.ArgumentError, ValueError):
        # the text may hold a password: do not echo it
        raise StoreError(
            "store url is not a database URL (expected sqlite:///PATH or postgresql://...)"
        ) from None
    backend, _, driver = parsed.drivername.partition("+")
    query = dict(parsed.query)
    url_schema = query.pop("schema", None)
    if isinstance(url_schema, tuple):
        raise StoreError("store url: give ?schema= at most once")
    if schema is not None and url_schema is not None and schema != url_schema:
        raise StoreError("store url: ?schema= and the schema argument disagree")
    schema = schema if schema is not None else url_schema

    if backend == "sqlite":
        if driver not in ("", "pysqlite", "aiosqlite"):
            raise StoreError(f"store url: unsupported SQLite driver {driver!r}")
        database = parsed.database or ""
        if database in ("", ":memory:") or database.startswith("file::memory:"):
            raise StoreError("store url: in-memory SQLite is not supported; give a file path")
        if schema is not None:
            raise StoreError("store url: a schema is only supported on PostgreSQL")
        if sqlite3.sqlite_version_info < MIN_SQLITE_VERSION:
            raise StoreError(
                f"SQLite {sqlite3.sqlite_version} is too old; the store needs 3.35 or newer"
            )
        resolved = parsed.set(drivername="sqlite+aiosqlite", query=query)
        return StoreUrl(url=resolved, dialect="sqlite", schema=None)

    if backend in ("postgresql", "postgres"):
        if driver not in ("", "asyncpg", "psycopg2", "psycopg"):
            raise StoreError(f"store url: unsupported PostgreSQL driver {driver!r}")
        if schema is not None and not _SCHEMA_NAME.fullmatch(schema):
            raise StoreError(f"store url: schema {schema!r} is not a plain SQL identifier")
        if "sslmode" in query and "ssl" not in query:
            query["ssl"] = query.pop("sslmode")
        resolved = parsed.set(drivername="postgresql+asyncpg", query=query)
        return StoreUrl(url=resolved, dialect="postgresql", schema=schema)

    raise StoreError(
        f"store url: unsupported database {backend!r} (expected sqlite:/// or postgresql://)"
    )


def create_engine(target: StoreUrl, *, pooled: bool = True) -> AsyncEngine:
    """An async engine for ``target`` with the broker's connection settings.

    ``pooled=False`` gives a ``NullPool`` engine for one-off work (migrations)."""
    kwargs: dict[str, Any] = {"hide_parameters": True}
    if not pooled:
        kwargs["poolclass"] = NullPool
    if target.dialect == "sqlite":
        if pooled:
            kwargs.update(pool_size=5, max_overflow=10, pool_timeout=30)
        engine = create_async_engine(target.url, **kwargs)
        event.listen(engine.sync_engine, "do_connect", _sqlite_check_directory(target))
        event.listen(engine.sync_engine, "connect", _sqlite_on_connect)
        event.listen(engine.sync_engine, "begin", _sqlite_on_begin)
        return engine
    server_settings = {"application_name": "broker"}
    if target.schema is not None:
        server_settings["search_path"] = target.schema
    kwargs["connect_args"] = {
        "timeout": PG_CONNECT_TIMEOUT,
        "command_timeout": PG_COMMAND_TIMEOUT,
        "server_settings": server_settings,
    }
    if pooled:
        kwargs.update(
            pool_size=10, max_overflow=10, pool_timeout=30, pool_recycle=1800, pool_pre_ping=True
        )
    return create_async_engine(target.url, **kwargs)


def _sqlite_check_directory(target: StoreUrl) -> Callable[..., None]:
    """A ``do_connect`` hook: refuse a database whose directory is missing with a clear message
    (and before aiosqlite starts a worker thread for a connection that cannot open)."""
    database = target.url.database or ""
    directory = None if database.startswith("file:") else Path(database).parent

    def check(*_args: Any) -> None:
        if directory is not None and not directory.is_dir():
            raise sqlite3.OperationalError(
                f"unable to open database file: directory {directory} does not exist"
            )

    return check


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Take transaction control away from the sqlite3 module; ``_sqlite_on_begin`` emits BEGIN.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        # WAL is a property of the database file: once set (by ``migrate``, which retries
        # until it succeeds) every connection uses it. Switching needs an exclusive lock and
        # SQLite answers "database is locked" at once (no busy wait) while another connection
        # holds one, so here a failed switch is left to ``migrate`` instead of failing.
        cursor.execute("PRAGMA journal_mode")
        row = cursor.fetchone()
        if row is None or str(row[0]).lower() != "wal":
            try:
                cursor.execute("PRAGMA journal_mode = WAL")
            except Exception as e:
                if not _sqlite_busy(e):
                    raise
    finally:
        cursor.close()


def _sqlite_busy(error: BaseException) -> bool:
    code = getattr(error, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED)


async def sqlite_enable_wal(conn: AsyncConnection) -> None:
    """Switch the SQLite database to WAL (outside any transaction), waiting out other writers."""
    raw = await conn.get_raw_connection()
    driver: Any = raw.driver_connection  # an aiosqlite.Connection
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor = await driver.execute("PRAGMA journal_mode = WAL")
            await cursor.close()
            return
        except sqlite3.OperationalError as e:
            if not _sqlite_busy(e) or loop.time() > deadline:
                raise
        await asyncio.sleep(0.02)


def _sqlite_on_begin(connection: Connection) -> None:
    # IMMEDIATE takes the write lock up front (waiting up to busy_timeout) so that a
    # read-then-write transaction cannot fail half-way with SQLITE_BUSY_SNAPSHOT.
    read_only = connection.get_execution_options().get(_READ_ONLY, False)
    connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


# --- errors --------------------------------------------------------------------------------


def _describe(error: BaseException, secret: str | None) -> str:
    """A one-line description of a driver error, without statement, parameters or password."""
    inner: BaseException = error
    if isinstance(error, sa_exc.DBAPIError) and error.orig is not None:
        inner = error.orig
        if inner.__cause__ is not None:  # asyncpg errors come wrapped by SQLAlchemy's adapter
            inner = inner.__cause__
    message = str(inner).strip().splitlines()[0] if str(inner).strip() else ""
    if secret:
        message = message.replace(secret, "***")
    name = type(inner).__name__
    return f"{name}: {message}" if message else name


def _integrity_kind(error: sa_exc.IntegrityError) -> str:
    """ "unique", "foreign_key" or "other", from the driver's error code (never its text)."""
    orig: Any = error.orig
    code = getattr(orig, "sqlite_errorcode", None)
    if code is not None:
        if code in (_SQLITE_CONSTRAINT_UNIQUE, _SQLITE_CONSTRAINT_PRIMARYKEY):
            return "unique"
        return "foreign_key" if code == _SQLITE_CONSTRAINT_FOREIGNKEY else "other"
    state = getattr(orig, "sqlstate", None) or getattr(orig.__cause__, "sqlstate", None)
    if state == _PG_UNIQUE_VIOLATION:
        return "unique"
    return "foreign_key" if state == _PG_FOREIGN_KEY_VIOLATION else "other"


@contextlib.contextmanager
def map_errors(what: str, *, secret: str | None = None) -> Iterator[None]:
    """Turn database exceptions raised inside into the broker's ``StoreError`` family."""
    try:
        yield
    except BrokerError:
        raise
    except sa_exc.IntegrityError as e:
        kind = _integrity_kind(e)
        if kind == "unique":
            raise AlreadyExists(f"{what}: already exists") from e
        if kind == "foreign_key":
            raise RecordNotFound(f"{what}: a referenced record does not exist") from e
        raise StoreError(f"{what}: {_describe(e, secret)}") from e
    except _DB_ERRORS as e:
        raise StoreError(f"{what} failed: {_describe(e, secret)}") from e


# --- the base of every aggregate's SQL --------------------------------------------------------


class SqlBase:
    """One SQLAlchemy async engine and the transaction helpers every aggregate uses."""

    def __init__(self, target: StoreUrl, engine: AsyncEngine) -> None:
        self._target = target
        self._engine = engine
        self._secret = target.url.password

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self._target.dialect

    @property
    def url(self) -> str:
        """The store's URL with the password masked."""
        return self._target.display

    def __repr__(self) -> str:
        return f"SqlStore({self.url!r})"

    # -- plumbing

    @contextlib.asynccontextmanager
    async def _write(self, what: str) -> AsyncIterator[AsyncConnection]:
        """One write transaction; commits when the block ends normally."""
        with map_errors(what, secret=self._secret):
            async with self._engine.begin() as conn:
                yield conn

    @contextlib.asynccontextmanager
    async def _read(self, what: str, *, snapshot: bool = False) -> AsyncIterator[AsyncConnection]:
        """One read-only transaction (rolled back at the end). ``snapshot``: every statement
        sees the same snapshot (PostgreSQL: ``REPEATABLE READ``, which never fails a read-only
        transaction; a SQLite read transaction always does) — for reads of several tables."""
        options: dict[str, Any] = {_READ_ONLY: True}
        if snapshot and self._target.dialect == "postgresql":
            options["isolation_level"] = "REPEATABLE READ"
        with map_errors(what, secret=self._secret):
            async with self._engine.connect() as conn:
                await conn.execution_options(**options)
                yield conn

    def _upsert(
        self,
        table: sa.Table,
        values: Mapping[str, Any],
        *,
        key: Sequence[str],
        update: Mapping[str, Any] | None = None,
    ) -> sa.Insert:
        """``INSERT ... ON CONFLICT (key) DO UPDATE``. ``update`` maps a column to a value or to
        a function of the ``excluded`` (proposed) row; by default every non-key column takes
        the proposed value (replace)."""
        stmt: pg_dialect.Insert | sqlite_dialect.Insert
        if self._target.dialect == "postgresql":
            stmt = pg_dialect.insert(table).values(**values)
        else:
            stmt = sqlite_dialect.insert(table).values(**values)
        if update is None:
            update = {c: stmt.excluded[c] for c in values if c not in key}
        else:
            update = {c: (v(stmt.excluded) if callable(v) else v) for c, v in update.items()}
        return stmt.on_conflict_do_update(index_elements=list(key), set_=dict(update))

    def _insert_ignore(self, table: sa.Table, rows: Sequence[Mapping[str, Any]]) -> sa.Insert:
        """``INSERT ... ON CONFLICT DO NOTHING``: rows whose key is taken are skipped."""
        stmt: pg_dialect.Insert | sqlite_dialect.Insert
        if self._target.dialect == "postgresql":
            stmt = pg_dialect.insert(table).values([dict(r) for r in rows])
        else:
            stmt = sqlite_dialect.insert(table).values([dict(r) for r in rows])
        return stmt.on_conflict_do_nothing()

    async def _require(
        self, conn: AsyncConnection, column: sa.Column[Any], value: str, what: str
    ) -> None:
        """``RecordNotFound`` unless a row has ``column == value`` (its key). On PostgreSQL the
        row stays locked ``FOR KEY SHARE`` until the transaction ends, so that it cannot be
        deleted before the reference the caller adds is committed (the deleter, which removes
        the row first and its dependants after, then sees and removes that reference)."""
        stmt = sa.select(column).where(column == value).with_for_update(read=True, key_share=True)
        if (await conn.execute(stmt)).first() is None:
            raise RecordNotFound(f"{what} {value!r} not found")
