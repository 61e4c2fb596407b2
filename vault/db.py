"""Engines and the unit of work. The request owns the transaction: services add and flush, never commit.

SQLite: WAL journal, ``synchronous=FULL`` (an acknowledged write survives a crash of the process and
of the machine), ``BEGIN IMMEDIATE`` for every writing transaction (a read-then-write never fails
half way), and a process-wide lock so that threads queue fairly instead of sleeping in SQLite's
busy handler (which backs off up to 100 ms and wrecks tail latency); a read-only transaction is a
plain ``BEGIN``: one WAL snapshot, no lock.
PostgreSQL: read committed, with row locks (``SELECT ... FOR UPDATE``) where a counter or a chain
is advanced; read-only transactions are ``REPEATABLE READ READ ONLY`` (one snapshot).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import psycopg
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlmodel import Session, create_engine

from vault.errors import DatabaseBusy, DatabaseUnavailable, DomainError, StorageFull

log = logging.getLogger(__name__)

#: How long a writer waits for the process's SQLite write lock before giving up with 503.
LOCK_TIMEOUT_SECONDS = 30.0

#: Execution option marking a read-only transaction (no write lock on SQLite).
READ_ONLY_OPTION = "civic_read_only"

#: Execution option marking a write transaction that must not wait for the write lock (SQLite).
NO_WAIT_OPTION = "civic_no_wait"

_BUSY_TIMEOUT_MS = 30_000
_AUTOCHECKPOINT_PAGES = 4_000


class WriterBusy(Exception):
    """A no-wait transaction found the write lock taken (nothing was done; try another way)."""


#: SQLite result codes (primary) meaning the database cannot be written right now.
_SQLITE_UNAVAILABLE = {
    sqlite3.SQLITE_READONLY,
    sqlite3.SQLITE_IOERR,
    sqlite3.SQLITE_CANTOPEN,
    sqlite3.SQLITE_PROTOCOL,
}
_SQLITE_BUSY = {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED}
_BUSY_MESSAGE = "the database is busy; try again shortly"
_UNAVAILABLE_MESSAGE = (
    "the database is not available right now; try again shortly (a batch sent again with the same "
    "Idempotency-Key lands once)"
)
_FULL_MESSAGE = "the vault's storage is full, so nothing of this request was saved; try again later"


def database_failure(exc: BaseException) -> DomainError | None:
    """The domain error for a database that failed under us (connection lost, server restarting,
    disk full, files read-only), or ``None`` for anything else (a bug: it stays a 500)."""
    if isinstance(exc, PoolTimeout):
        return DatabaseBusy(_BUSY_MESSAGE)
    orig = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return DatabaseUnavailable(_UNAVAILABLE_MESSAGE)
    if isinstance(orig, psycopg.errors.DiskFull):
        return StorageFull(_FULL_MESSAGE)
    sqlstate = (orig.sqlstate or "") if isinstance(orig, psycopg.Error) else ""
    if sqlstate.startswith("40") or sqlstate == "55P03":
        # A deadlock's loser or a serialization failure (rolled back whole), a lock not available.
        return DatabaseBusy(_BUSY_MESSAGE)
    if isinstance(orig, psycopg.OperationalError | psycopg.errors.ReadOnlySqlTransaction):
        return DatabaseUnavailable(_UNAVAILABLE_MESSAGE)
    if isinstance(orig, sqlite3.DatabaseError):
        primary = getattr(orig, "sqlite_errorcode", -1) & 0xFF
        if primary == sqlite3.SQLITE_FULL:
            return StorageFull(_FULL_MESSAGE)
        if primary in _SQLITE_BUSY:
            return DatabaseBusy(_BUSY_MESSAGE)
        if primary in _SQLITE_UNAVAILABLE:
            return DatabaseUnavailable(_UNAVAILABLE_MESSAGE)
    return None


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def make_engine(url: str, *, echo: bool = False) -> Engine:
    if url.startswith("sqlite"):
        return _sqlite_engine(url, echo=echo)
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return create_engine(url, echo=echo, pool_pre_ping=True, pool_size=10, max_overflow=20)


def _sqlite_engine(url: str, *, echo: bool) -> Engine:
    engine = create_engine(
        url,
        echo=echo,
        connect_args={"check_same_thread": False, "timeout": 30, "isolation_level": None},
        # More than the worker threads (40) can hold, so that the event loop's own writes never
        # wait for a connection.
        pool_size=16,
        max_overflow=48,
    )
    write_lock = threading.Lock()

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA secure_delete=ON")  # erased keys must not linger in free pages
        cur.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
        # Commit-time checkpoints only as a backstop (see WalCheckpointer): 16 MiB of log.
        cur.execute(f"PRAGMA wal_autocheckpoint={_AUTOCHECKPOINT_PAGES}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        options = conn.get_execution_options()
        if options.get(READ_ONLY_OPTION):
            # A reader sees a consistent snapshot (WAL) and never waits for writers.
            conn.exec_driver_sql("BEGIN")
            return
        if options.get(NO_WAIT_OPTION):
            _begin_now(conn)
            return
        if not write_lock.acquire(timeout=LOCK_TIMEOUT_SECONDS):
            raise DatabaseBusy(_BUSY_MESSAGE)
        conn.info["holds_write_lock"] = True
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            conn.info.pop("holds_write_lock", None)
            write_lock.release()
            raise

    def _begin_now(conn: Any) -> None:
        # For the event loop's own writes: take the lock only if it is free, in this process and
        # in SQLite (another process may hold it), and never sleep in SQLite's busy handler.
        if not write_lock.acquire(blocking=False):
            raise WriterBusy()
        conn.info["holds_write_lock"] = True
        dbapi = conn.connection.dbapi_connection
        try:
            dbapi.execute("PRAGMA busy_timeout=0")
            conn.info["busy_timeout_lowered"] = True
            dbapi.execute("BEGIN IMMEDIATE")
        except BaseException as exc:
            _restore_busy_timeout(conn)
            conn.info.pop("holds_write_lock", None)
            write_lock.release()
            failure = database_failure(exc) if isinstance(exc, sqlite3.Error) else None
            if isinstance(failure, DatabaseBusy):  # another process is writing
                raise WriterBusy() from exc
            raise

    def _restore_busy_timeout(conn: Any) -> None:
        if conn.info.pop("busy_timeout_lowered", False):
            dbapi = conn.connection.dbapi_connection
            if dbapi is not None:
                dbapi.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")

    def _finish(conn: Any, statement: str) -> None:
        # Finish the transaction ourselves so the lock is released only after SQLite is done;
        # SQLAlchemy's own commit/rollback that follows finds no open transaction and does nothing.
        try:
            dbapi = conn.connection.dbapi_connection
            if dbapi is not None and dbapi.in_transaction:
                dbapi.execute(statement)
        finally:
            try:
                _restore_busy_timeout(conn)
            finally:
                if conn.info.pop("holds_write_lock", False):
                    write_lock.release()

    @event.listens_for(engine, "commit")
    def _commit(conn: Any) -> None:
        _finish(conn, "COMMIT")

    @event.listens_for(engine, "rollback")
    def _rollback(conn: Any) -> None:
        _finish(conn, "ROLLBACK")

    return engine


@contextmanager
def unit_of_work(engine: Engine, *, no_wait: bool = False) -> Iterator[Session]:
    """One transaction: commit when the block ends cleanly, roll back on any exception (except a
    domain error that asks to keep what was written, such as a counted failed sign-in).

    ``no_wait`` (SQLite): begin at once, or raise :class:`WriterBusy` if another writer holds the
    write lock, instead of waiting for it."""
    session = Session(engine, expire_on_commit=False)
    try:
        if no_wait:
            session.connection(execution_options={NO_WAIT_OPTION: True})
        yield session
        session.commit()
    except DomainError as exc:
        if exc.keep_changes:
            session.commit()
        else:
            session.rollback()
        raise
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def read_only_engine(engine: Engine) -> Engine:
    """The same engine, marked for read-only transactions (make it once: it is not free).

    Every statement of a read-only transaction sees one snapshot of the database, on both
    databases: SQLite's WAL gives it to a deferred transaction, PostgreSQL to ``REPEATABLE READ
    READ ONLY`` (such a transaction never fails to serialise, and a write through it fails
    loudly). A release relies on it: the consents it re-checks and the material it reads are of
    the same moment. The snapshot is held for the transaction's length: keep reads short."""
    if is_sqlite(engine):
        return engine.execution_options(**{READ_ONLY_OPTION: True})
    return engine.execution_options(
        **{READ_ONLY_OPTION: True}, isolation_level="REPEATABLE READ", postgresql_readonly=True
    )


@contextmanager
def read_only(read_engine: Engine) -> Iterator[Session]:
    """A transaction that only reads (``read_engine`` from :func:`read_only_engine`), on one
    snapshot: on SQLite it takes no write lock and never waits for writers.

    Writing through it is a bug (SQLite would refuse or serialise it late); use ``unit_of_work``.
    """
    session = Session(read_engine, expire_on_commit=False)
    try:
        yield session
    finally:
        session.close()  # ends the transaction; loaded objects stay readable (detached)


class LocalReader:
    """One-row reads of a SQLite file on the calling thread, for the event loop's own use.

    Why: handing a 20 µs read to a worker thread costs more than a millisecond of CPU under load
    (the hand-offs of the interpreter lock between busy threads), more than all the other work of a
    one-record write. SQLite readers in WAL mode do not wait for writers, so a read here does not
    stall the event loop; a read that finds the database busy gives up after a second (503).

    Each thread gets its own connection (``query_only``: it can never write), opened on first use
    and closed by :meth:`close`. Only for statements that read one row by key.
    """

    def __init__(self, path: str) -> None:
        self._path = path
        self._local = threading.local()
        self._opened: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self._path, timeout=1.0, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA query_only=ON")
            with self._lock:
                self._opened.append(conn)
            self._local.conn = conn
        return conn

    def first(self, sql: str, params: Mapping[str, object]) -> tuple[object, ...] | None:
        """The first row of ``sql`` (named ``:parameters``), or ``None``."""
        try:
            cursor = self._connection().execute(sql, dict(params))
            try:
                row: tuple[object, ...] | None = cursor.fetchone()
            finally:
                cursor.close()  # ends the read (an open statement would pin an old snapshot)
        except sqlite3.Error as exc:
            failure = database_failure(exc)
            raise (failure or exc) from exc
        return row

    def close(self) -> None:
        with self._lock:
            opened, self._opened = self._opened, []
        for conn in opened:
            conn.close()


def sqlite_file(engine: Engine) -> str | None:
    """The database file of a SQLite engine; ``None`` for PostgreSQL or an in-memory database."""
    database = engine.url.database
    if not is_sqlite(engine) or not database or database == ":memory:":
        return None
    return database


def local_reader(engine: Engine) -> LocalReader | None:
    """A :class:`LocalReader` for a SQLite file engine; ``None`` otherwise."""
    path = sqlite_file(engine)
    return None if path is None else LocalReader(path)


class WalCheckpointer:
    """Copies SQLite's write-ahead log into the database file from a thread of its own.

    Why: otherwise SQLite checkpoints inside whichever commit crosses ``wal_autocheckpoint``
    pages, so one write in a few hundred also waits for a whole checkpoint and its flush (the p99
    of one-record ingest). ``PASSIVE`` checkpoints never wait for readers or writers. The
    commit-time checkpoint stays on as a backstop (for tools that run without this thread), at a
    size this thread keeps the log well under.
    """

    def __init__(self, path: str, interval_s: float = 0.25) -> None:
        self._path = path
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: Checkpoints run so far (for tests).
        self.runs = 0

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="civic-wal-checkpoint", daemon=True
            )
            self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        try:
            conn = sqlite3.connect(self._path, timeout=1.0, isolation_level=None)
        except sqlite3.Error:
            log.warning("cannot open %s for background checkpoints", self._path, exc_info=True)
            return
        try:
            while not self._stop.wait(self._interval_s):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    self.runs += 1
                except sqlite3.Error:  # busy, disk full, file gone: the next turn tries again
                    log.debug("background checkpoint failed", exc_info=True)
        finally:
            conn.close()


def wal_checkpointer(engine: Engine) -> WalCheckpointer | None:
    """A :class:`WalCheckpointer` for a SQLite file engine (not started); ``None`` otherwise."""
    path = sqlite_file(engine)
    return None if path is None else WalCheckpointer(path)
