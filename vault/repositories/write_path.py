"""The statements that run on every write (and every token check), as plain parameterised SQL.

Through the ORM each of these costs about 130 µs of Python; as ``text()`` on the connection about
25 µs (measured here), once the ``text()`` clause itself is built: parsing the statement costs as
much again, so each clause is built once (:func:`_sql`). On SQLite they go straight to the
driver's connection of the session's transaction (:func:`_execute`), about 4 µs each: these six
statements are the whole database work of a one-record append, which the event loop runs for
every request (docs/performance.md). They are kept here, small and boring, and covered by the same
tests as everything else (SQLite and PostgreSQL).
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import TextClause, text
from sqlalchemy.engine import Dialect
from sqlmodel import Session

from vault.db import LocalReader
from vault.models import Chunk
from vault.repositories import driver_sql


@dataclass(frozen=True)
class StreamForWrite:
    id: str
    citizen_id: str
    schema_version: int
    current_key_id: str
    public_key: bytes
    next_seq: int


_STREAM = (
    "SELECT s.id, s.citizen_id, s.schema_version, s.current_key_id, k.public_key, s.next_seq "
    "FROM streams s JOIN stream_keys k ON k.id = s.current_key_id "
    "WHERE s.id = :stream AND s.citizen_id = :citizen"
)
_STREAM_LOCKED = (
    "SELECT s.id, s.citizen_id, s.schema_version, s.current_key_id, k.public_key, s.next_seq "
    "FROM streams s JOIN stream_keys k ON k.id = s.current_key_id "
    "WHERE s.id = :stream AND s.citizen_id = :citizen FOR UPDATE OF s"
)
_HEAD = "SELECT seq, entry_hash FROM audit_heads WHERE citizen_id = :c"
_HEAD_LOCKED = "SELECT seq, entry_hash FROM audit_heads WHERE citizen_id = :c FOR UPDATE"


@functools.cache
def _sql(statement: str) -> TextClause:
    """The clause for ``statement``, built once (the set of statements here is fixed)."""
    return text(statement)


@functools.lru_cache(maxsize=8)
def _chunk_time(dialect: Dialect) -> Callable[[Any], Any]:
    """A chunk's ``created_at`` as the ORM hands it to this dialect's driver (its column type's
    bind processing, found once): the stored form stays the ORM's own, and SQLite's deprecated
    default datetime adapter is never used."""
    process = driver_sql.bind_processing(dialect, Chunk.__table__.c.created_at)  # type: ignore[attr-defined]
    return process if process is not None else (lambda value: value)


def _locks(session: Session) -> bool:
    """SQLite has no row locks; its writers are already serialised (``vault/db.py``)."""
    return session.get_bind().dialect.name != "sqlite"


_DRIVER = "write_path.sqlite_driver"


def _execute(session: Session, statement: str, params: Mapping[str, Any]) -> Any:
    """Run ``statement`` in the session's transaction; the cursor (``fetchone()``) comes back.

    On SQLite the statement goes to the driver connection the transaction holds, skipping
    SQLAlchemy's compile-and-bind machinery (about 20 µs a statement): values reach SQLite exactly
    as ``text()`` passes them (it binds these untyped parameters as they are), and driver errors
    are mapped to HTTP by the same handler as before (``vault/api/errors.py``).
    """
    transaction = session.get_transaction()
    cached = session.info.get(_DRIVER)
    if cached is not None and transaction is not None and cached[0] is transaction:
        return cached[1].execute(statement, params)
    connection = session.connection()
    if connection.dialect.name != "sqlite":
        return connection.execute(_sql(statement), params)
    driver: sqlite3.Connection = connection.connection.driver_connection  # type: ignore[assignment]
    # Kept for the rest of this transaction only (a later transaction may hold another connection).
    session.info[_DRIVER] = (session.get_transaction(), driver)
    return driver.execute(statement, params)


def stream_for_write(session: Session, citizen_id: str, stream_id: str) -> StreamForWrite | None:
    """The stream with its current public key, locked for this transaction; only if owned."""
    row = _execute(
        session,
        _STREAM_LOCKED if _locks(session) else _STREAM,
        {"stream": stream_id, "citizen": citizen_id},
    ).fetchone()
    if row is None:
        return None
    return StreamForWrite(row[0], row[1], row[2], row[3], bytes(row[4]), row[5])


def insert_chunk(
    session: Session,
    *,
    chunk_id: str,
    stream: StreamForWrite,
    seq: int,
    chunk_format: str,
    record_count: int,
    ciphertext: bytes,
    sealed_key: bytes,
    created_at: datetime,
) -> None:
    _execute(
        session,
        "INSERT INTO chunks (id, stream_id, seq, stream_key_id, schema_version, format, "
        "record_count, ciphertext, sealed_key, created_at) VALUES (:id, :stream, :seq, :key, "
        ":schema, :format, :count, :ciphertext, :sealed, :created)",
        {
            "id": chunk_id,
            "stream": stream.id,
            "seq": seq,
            "key": stream.current_key_id,
            "schema": stream.schema_version,
            "format": chunk_format,
            "count": record_count,
            "ciphertext": ciphertext,
            "sealed": sealed_key,
            "created": _chunk_time(session.get_bind().dialect)(created_at),
        },
    )
    _execute(
        session,
        "UPDATE streams SET next_seq = :next WHERE id = :stream",
        {"next": seq + 1, "stream": stream.id},
    )


def audit_head_for_update(session: Session, citizen_id: str) -> tuple[int, str] | None:
    row = _execute(
        session, _HEAD_LOCKED if _locks(session) else _HEAD, {"c": citizen_id}
    ).fetchone()
    return None if row is None else (int(row[0]), str(row[1]))


def append_audit_entry(
    session: Session,
    *,
    citizen_id: str,
    seq: int,
    at: str,
    actor: str,
    action: str,
    details: str,
    prev_hash: str,
    entry_hash: str,
    signature: bytes,
    first: bool,
) -> None:
    _execute(
        session,
        "INSERT INTO audit_entries (citizen_id, seq, at, actor, action, details, prev_hash, "
        "entry_hash) VALUES (:c, :seq, :at, :actor, :action, :details, :prev, :hash)",
        {
            "c": citizen_id,
            "seq": seq,
            "at": at,
            "actor": actor,
            "action": action,
            "details": details,
            "prev": prev_hash,
            "hash": entry_hash,
        },
    )
    head = (
        "INSERT INTO audit_heads (citizen_id, seq, entry_hash, signature) "
        "VALUES (:c, :seq, :hash, :sig)"
        if first
        else "UPDATE audit_heads SET seq = :seq, entry_hash = :hash, signature = :sig "
        "WHERE citizen_id = :c"
    )
    _execute(session, head, {"c": citizen_id, "seq": seq, "hash": entry_hash, "sig": signature})


def owned_stream_type(session: Session, citizen_id: str, stream_id: str) -> str | None:
    """The stream's type, only if ``citizen_id`` owns it."""
    row = (
        session.connection()
        .execute(
            _sql("SELECT stream_type FROM streams WHERE id = :stream AND citizen_id = :citizen"),
            {"stream": stream_id, "citizen": citizen_id},
        )
        .first()
    )
    return None if row is None else str(row[0])


_ACCESS_ROW_SQL = (
    "SELECT kind, citizen_id, client_id, department_id, scope, audience, authorization_details, "
    "session_key, expires_at, revoked_at FROM access_tokens WHERE digest = :digest"
)


@dataclass(frozen=True)
class TokenRow:
    kind: str
    citizen_id: str | None
    client_id: str | None
    department_id: str | None
    scope: str
    audience: str
    authorization_details: str
    session_key: bytes | None
    expires_at: datetime
    revoked: bool


def token_by_digest(session: Session, digest: str) -> TokenRow | None:
    """The token checked on every request (times come back aware, in UTC)."""
    row = session.connection().execute(_sql(_ACCESS_ROW_SQL), {"digest": digest}).first()
    return None if row is None else _token_row(tuple(row))


def token_by_digest_locally(reader: LocalReader, digest: str) -> TokenRow | None:
    """:func:`token_by_digest` through a SQLite :class:`~vault.db.LocalReader` (no session)."""
    row = reader.first(_ACCESS_ROW_SQL, {"digest": digest})
    return None if row is None else _token_row(row)


def _token_row(row: tuple[Any, ...]) -> TokenRow:
    expires = row[8]
    if isinstance(expires, str):  # SQLite through text() returns the stored text
        expires = datetime.fromisoformat(expires)
    if expires.tzinfo is None:
        expires = expires.replace(tzinfo=UTC)
    return TokenRow(
        kind=row[0],
        citizen_id=row[1],
        client_id=row[2],
        department_id=row[3],
        scope=row[4],
        audience=row[5],
        authorization_details=row[6],
        session_key=None if row[7] is None else bytes(row[7]),
        expires_at=expires,
        revoked=row[9] is not None,
    )


@dataclass(frozen=True)
class StoredChunk:
    """What reading a chunk needs (plain tuple-backed; no ORM object per megabyte of blob)."""

    id: str
    stream_id: str
    seq: int
    stream_key_id: str
    schema_version: int
    format: str
    record_count: int
    ciphertext: bytes
    sealed_key: bytes


_CHUNKS_SQL = (
    "SELECT id, stream_id, seq, stream_key_id, schema_version, format, record_count, ciphertext, "
    "sealed_key FROM chunks WHERE stream_id = :stream ORDER BY seq"
)


def stored_chunks(session: Session, stream_id: str) -> Iterator[StoredChunk]:
    """Every chunk of a stream in sequence order, as the rows arrive (the read path's one query;
    the caller can decrypt one chunk while the database reads the next)."""
    result = session.connection().execute(_sql(_CHUNKS_SQL), {"stream": stream_id})
    for r in result:
        yield StoredChunk(r[0], r[1], r[2], r[3], r[4], r[5], r[6], bytes(r[7]), bytes(r[8]))
