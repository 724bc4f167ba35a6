"""The engine and sessions. Reads and writes take separate entry points so that SQLite
writers queue up front (BEGIN IMMEDIATE) instead of failing to upgrade a read lock midway."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Session
from sqlalchemy.pool import PoolProxiedConnection

# How long a SQLite writer waits for another process's write transaction before failing.
_SQLITE_BUSY_TIMEOUT_MS = 30_000
_ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+psycopg"}
_SYNC_DRIVERS = {"sqlite": "sqlite", "postgresql": "postgresql+psycopg"}


def _with_driver(url: str, drivers: Mapping[str, str]) -> str:
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend not in drivers:
        raise ValueError(f"unsupported database {backend!r}: use sqlite or postgresql")
    return parsed.set(drivername=drivers[backend]).render_as_string(hide_password=False)


def async_url(url: str) -> str:
    return _with_driver(url, _ASYNC_DRIVERS)


def sync_url(url: str) -> str:
    """The same database for synchronous tools (Alembic, the CLI)."""
    return _with_driver(url, _SYNC_DRIVERS)


class Database:
    def __init__(self, url: str, *, echo: bool = False, pool_size: int = 10) -> None:
        self.url = async_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        kwargs: dict[str, Any] = {"echo": echo, "pool_pre_ping": not self.is_sqlite}
        if not self.is_sqlite:
            # The stores rely on READ COMMITTED, whatever the server's default: each statement
            # sees what committed before it, so after INSERT ... ON CONFLICT DO NOTHING waited
            # for a concurrent insert, the next SELECT finds that row; and a compare-and-set
            # UPDATE re-checks its WHERE on the row a concurrent writer left (docs/uploads.md).
            kwargs.update(
                pool_size=pool_size, max_overflow=pool_size, isolation_level="READ COMMITTED"
            )
        self.engine: AsyncEngine = create_async_engine(self.url, **kwargs)
        self._inline_engine: Engine | None = None
        self._inline_writer: Engine | None = None
        self._read_connections: _ReadConnections | None = None
        # Made on first use, in the loop that uses it (_sqlite_write_lock).
        self._write_lock: asyncio.Lock | None = None
        self._write_lock_loop: asyncio.AbstractEventLoop | None = None
        if self.is_sqlite:
            _sqlite_pragmas(self.engine.sync_engine)
            # Reads and writes run inline on the event loop (see _InlineSession); writers
            # fail at once rather than wait in SQLite's busy handler (see write()).
            self._inline_engine = _inline_sqlite_engine(url, echo, pool_size=10)
            self._inline_writer = _inline_sqlite_engine(url, echo, pool_size=2, write=True)
            self._read_connections = _ReadConnections(self._inline_engine)
        self._reader = async_sessionmaker(self.engine, expire_on_commit=False)
        self._writer = async_sessionmaker(
            self.engine.execution_options(berth_write=True), expire_on_commit=False
        )

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        if self._inline_engine is not None:
            # Plain SQL runs in autocommit: each statement sees what committed before it, as on
            # PostgreSQL (READ COMMITTED), and no BEGIN/ROLLBACK pair is paid per lookup. ORM
            # statements run on a connection of their own, in a transaction of their own.
            connections = self._read_connections
            assert connections is not None
            pooled = connections.take()
            inline = _InlineSession(
                self._inline_engine,
                pooled,
                separate_orm=True,
                release=lambda: connections.give(pooled),
            )
            try:
                yield inline  # type: ignore[misc]
            finally:
                inline.close()
            return
        async with self._reader() as session:
            yield session

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """A transaction committed when the block ends, rolled back if it raises."""
        if self._inline_writer is None:
            async with self._writer() as session, session.begin():
                yield session
            return
        # SQLite has one writer at a time. Connections of this process would contend for it
        # in SQLite's busy handler, which sleeps in steps of up to 100 ms; queue them here
        # instead, where the next one starts the moment the last one commits.
        async with self._sqlite_write_lock():
            inline = await self._begin_inline_write()
            # The transaction runs inline: a few statements of tens of microseconds each,
            # where aiosqlite spent milliseconds handing each to its thread and back.
            try:
                yield inline  # type: ignore[misc]
                inline.end(commit=True)
            except BaseException:
                inline.end(commit=False)
                raise
            finally:
                inline.close()

    async def _begin_inline_write(self) -> _InlineSession:
        """A session holding SQLite's write lock (BEGIN IMMEDIATE).

        While another process holds the lock, wait for it with short sleeps on the event loop,
        which stays free for other requests meanwhile; SQLite's own busy handler would block
        the loop, or, in aiosqlite's thread, sleep in steps of up to 100 ms.
        """
        engine = self._inline_writer
        assert engine is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _SQLITE_BUSY_TIMEOUT_MS / 1000
        delay = 0.0002
        while True:
            inline = _InlineSession(engine, engine.raw_connection())
            try:
                # On the driver: SQLAlchemy's begin() costs ~0.1 ms here. busy_timeout 0
                # makes it fail at once while another process writes.
                inline.driver.execute("BEGIN IMMEDIATE")
                return inline
            except sqlite3.OperationalError as exc:
                inline.close()
                if "locked" not in str(exc) or loop.time() > deadline:
                    raise _wrapped("BEGIN IMMEDIATE", None, exc) from exc
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.001)

    def _sqlite_write_lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if self._write_lock is None or self._write_lock_loop is not loop:
            # A lock belongs to the loop it was made in.
            self._write_lock, self._write_lock_loop = asyncio.Lock(), loop
        return self._write_lock

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self._read_connections is not None:
            self._read_connections.dispose()
        for inline in (self._inline_engine, self._inline_writer):
            if inline is not None:
                inline.dispose()


class _ReadConnections:
    """Idle SQLite connections for plain-SQL reads, kept outside SQLAlchemy's pool.

    Checking a connection out of that pool and back in (locks, weak references, a reset)
    was an eighth of a token request's time. Reads run on the event loop one after another,
    so a handful of connections serve a worker; each comes from the engine (its pragmas
    applied) and is then detached from its pool.
    """

    _KEEP = 8

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._idle: list[PoolProxiedConnection] = []

    def take(self) -> PoolProxiedConnection:
        if self._idle:
            return self._idle.pop()
        pooled = self._engine.raw_connection()
        pooled.detach()
        return pooled

    def give(self, pooled: PoolProxiedConnection) -> None:
        driver = pooled.dbapi_connection  # pysqlite: the sqlite3 connection itself
        assert isinstance(driver, sqlite3.Connection)
        if driver.in_transaction:
            driver.rollback()
        if len(self._idle) < self._KEEP:
            self._idle.append(pooled)
        else:
            pooled.close()

    def dispose(self) -> None:
        while self._idle:
            self._idle.pop().close()


class _InlineSession:
    """The part of AsyncSession the stores use, run inline over one pooled SQLite connection.

    For SQLite only. An indexed lookup there takes tens of microseconds, far less than
    aiosqlite's hand-off to its thread and back, which the profiles showed dominating. In
    WAL mode a reader never waits for a writer, so reads run on the loop safely; writes do
    once they hold the write lock (Database.write). ``fetch`` and ``run`` (see
    ``fetch_rows``) go to the driver directly; ORM statements go through a Session made on
    first use: in a write, bound to the same connection, so both see the same transaction;
    in a read (``separate_orm``), on a connection of the engine's own.
    """

    def __init__(
        self,
        engine: Engine,
        pooled: PoolProxiedConnection,
        *,
        separate_orm: bool = False,
        release: Callable[[], None] | None = None,
    ) -> None:
        self._engine = engine
        self._pooled = pooled
        driver = pooled.dbapi_connection  # pysqlite: the sqlite3 connection itself
        assert isinstance(driver, sqlite3.Connection)
        self.driver = driver
        self._separate_orm = separate_orm
        self._release = release if release is not None else pooled.close
        self._connection: Connection | None = None
        self._orm: Session | None = None

    @property
    def _session(self) -> Session:
        if self._orm is None:
            if self._separate_orm:
                self._orm = Session(self._engine, expire_on_commit=False)
            else:
                self._connection = Connection(self._engine, connection=self._pooled)
                self._orm = Session(bind=self._connection, expire_on_commit=False)
        return self._orm

    @property
    def bind(self) -> Any:
        return self._engine

    def fetch(self, sql: str, params: Mapping[str, Any]) -> list[Any]:
        return self._run(sql, params).fetchall()

    def run(self, sql: str, params: Mapping[str, Any]) -> int:
        return int(self._run(sql, params).rowcount)

    def _run(self, sql: str, params: Mapping[str, Any]) -> sqlite3.Cursor:
        values = {k: _sqlite_value(v) for k, v in params.items()}
        try:
            return self.driver.execute(sql, values)
        except sqlite3.Error as exc:
            raise _wrapped(sql, values, exc) from exc

    def end(self, *, commit: bool) -> None:
        """Commit or roll back the write transaction begun on the driver (Database.write)."""
        if self._orm is not None:
            # The Session took the transaction over; committing it flushes what is pending.
            if commit:
                self._orm.commit()
            else:
                self._orm.rollback()
            return
        try:
            if commit:
                self.driver.commit()
            else:
                self.driver.rollback()
        except sqlite3.Error as exc:
            raise _wrapped("COMMIT" if commit else "ROLLBACK", None, exc) from exc

    async def execute(self, statement: Any, params: Any = None, **kw: Any) -> Any:
        return self._session.execute(statement, params, **kw)

    async def scalar(self, statement: Any, params: Any = None, **kw: Any) -> Any:
        return self._session.scalar(statement, params, **kw)

    async def scalars(self, statement: Any, params: Any = None, **kw: Any) -> Any:
        return self._session.scalars(statement, params, **kw)

    async def get(self, entity: Any, ident: Any, **kw: Any) -> Any:
        return self._session.get(entity, ident, **kw)

    def add(self, instance: object) -> None:
        self._session.add(instance)

    async def flush(self) -> None:
        self._session.flush()

    @asynccontextmanager
    async def begin_nested(self) -> AsyncIterator[None]:
        with self._session.begin_nested():
            yield

    def close(self) -> None:
        """Back to the pool, which rolls back whatever is still open."""
        if self._orm is not None:
            self._orm.close()
        if self._connection is not None:
            self._connection.close()  # returns the pooled connection it wrapped
        else:
            self._release()


async def fetch_rows(session: AsyncSession, sql: str, params: Mapping[str, Any]) -> list[Any]:
    """The rows of one plain SQL query with ``:name`` parameters, on either database.

    For the hot paths (token issue, manifest and blob reads, uploads): on SQLite it runs on
    the driver directly, where SQLAlchemy's per-statement work costs 20-50 times the indexed
    lookup itself (0.2-0.6 ms against 10 us, benchmarks/README.md). Values come back as the
    driver gives them: SQLite's booleans are 0/1, its datetimes text (``as_datetime``) and
    its JSON text (``as_json``).
    """
    if isinstance(session, _InlineSession):
        return session.fetch(sql, params)
    return list((await session.execute(text(sql), params)).all())


async def fetch_one(session: AsyncSession, sql: str, params: Mapping[str, Any]) -> Any | None:
    rows = await fetch_rows(session, sql, params)
    return rows[0] if rows else None


async def execute_sql(session: AsyncSession, sql: str, params: Mapping[str, Any]) -> int:
    """Run one plain SQL INSERT, UPDATE or DELETE as ``fetch_rows`` does; the rows it touched.

    Datetime parameters are stored as SQLAlchemy stores them, so both kinds of statement
    read and compare each other's values. Columns with Python-side defaults get no default
    here: name every column.
    """
    if isinstance(session, _InlineSession):
        return session.run(sql, params)
    result: Any = await session.execute(text(sql), params)
    return int(result.rowcount)


def as_datetime(value: datetime | str | None) -> datetime | None:
    """A datetime column's value from ``fetch_rows`` (SQLite returns its text form)."""
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def as_json(value: Any) -> Any:
    """A JSON column's value from ``fetch_rows`` (SQLite returns its text form)."""
    return json.loads(value) if isinstance(value, str | bytes) else value


def _sqlite_value(value: Any) -> Any:
    if isinstance(value, datetime):
        # SQLAlchemy's SQLite DateTime format (UTC, as every value Berth stores).
        if value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")
    return value


def _wrapped(sql: str, params: Any, exc: sqlite3.Error) -> Exception:
    """The driver's error as SQLAlchemy raises it, which is what callers catch."""
    return DBAPIError.instance(sql, params, exc, sqlite3.Error)


def _inline_sqlite_engine(url: str, echo: bool, *, pool_size: int, write: bool = False) -> Engine:
    engine = create_engine(
        sync_url(url),
        echo=echo,
        pool_size=pool_size,
        # Unbounded: a checkout must never wait, since waiting would block the event loop.
        max_overflow=-1,
        connect_args={"check_same_thread": False},
        execution_options={"berth_write": write},
    )
    _sqlite_pragmas(engine, busy_timeout_ms=0 if write else _SQLITE_BUSY_TIMEOUT_MS)
    return engine


def _sqlite_pragmas(engine: Engine, busy_timeout_ms: int = _SQLITE_BUSY_TIMEOUT_MS) -> None:
    # pysqlite's own transaction handling defers BEGIN and cannot take IMMEDIATE; do it here.
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in (
            "journal_mode=WAL",
            "synchronous=NORMAL",
            "foreign_keys=ON",
            f"busy_timeout={busy_timeout_ms}",
        ):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(connection: Any) -> None:
        if connection.connection.driver_connection.in_transaction:
            return  # begun on the driver already (Database.write)
        write = connection.get_execution_options().get("berth_write", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def insert_ignoring_conflicts(
    session: AsyncSession, model: type[DeclarativeBase], values: dict[str, Any], keys: list[str]
) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING, for rows that concurrent requests may both add."""
    dialect = session.bind.dialect.name
    module = postgresql if dialect == "postgresql" else sqlite
    return module.insert(model).values(**values).on_conflict_do_nothing(index_elements=keys)


def upsert(
    session: AsyncSession,
    model: type[DeclarativeBase],
    values: dict[str, Any],
    keys: list[str],
    update: dict[str, Any],
) -> Any:
    dialect = session.bind.dialect.name
    module = postgresql if dialect == "postgresql" else sqlite
    return (
        module.insert(model)
        .values(**values)
        .on_conflict_do_update(index_elements=keys, set_=update)
    )
