"""Bulk statements straight on the database driver, for the city-wide steps of a release.

A release reads and writes a few rows per contributing citizen: hundreds of thousands of rows
for a city. Through SQLAlchemy each row costs about 10 µs of Python (parameter processing, ``Row``
objects, type conversion on every value); handed to the driver as tuples, about 1 µs (measured at
100,000 citizens: docs/performance.md). The statements still run in the session's transaction,
on the connection it holds.

Values cross in the column types' own form: :func:`binder` and :func:`reader` apply the type's
SQLAlchemy processors (memoised per value, for the few distinct times a release holds), so that
what is stored and compared is exactly what the ORM stores. Statements are written with ``?``
placeholders and hold no other ``?`` or ``%``; PostgreSQL's driver gets ``%s``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from sqlalchemy import Column
from sqlalchemy.engine import Dialect
from sqlmodel import Session


def _driver(session: Session) -> tuple[str, Any]:
    # What the ORM would flush before a query of its own (autoflush): rows added in this
    # transaction must be seen, and written before, by these statements too.
    session.flush()
    connection = session.connection()
    return connection.dialect.name, connection.connection.driver_connection


def _for(dialect: str, statement: str) -> str:
    return statement if dialect == "sqlite" else statement.replace("?", "%s")


def locks_rows(session: Session) -> bool:
    """Whether ``FOR UPDATE`` means anything (SQLite has no row locks; its writers are already
    serialised by ``vault/db.py``)."""
    return session.get_bind().dialect.name != "sqlite"


def placeholders(count: int) -> str:
    """``?, ?, ...``: the placeholders of an IN list of ``count`` values."""
    return ", ".join("?" * count)


def run_many(session: Session, statement: str, rows: Iterable[Sequence[Any]]) -> None:
    """Run ``statement`` once per row of ``rows`` (executemany) in the session's transaction."""
    dialect, driver = _driver(session)
    cursor = driver.cursor()
    try:
        cursor.executemany(_for(dialect, statement), rows)
    finally:
        cursor.close()


def execute(session: Session, statement: str, params: Sequence[Any] = ()) -> int:
    """Run one statement that returns no rows; the number of rows it changed."""
    dialect, driver = _driver(session)
    cursor = driver.cursor()
    try:
        cursor.execute(_for(dialect, statement), tuple(params))
        return int(cursor.rowcount)
    finally:
        cursor.close()


def fetch_all(
    session: Session, statement: str, params: Sequence[Any] = ()
) -> list[tuple[Any, ...]]:
    """The rows of ``statement`` as plain tuples of the driver's values."""
    dialect, driver = _driver(session)
    cursor = driver.cursor()
    try:
        cursor.execute(_for(dialect, statement), tuple(params))
        return [tuple(row) for row in cursor.fetchall()]
    finally:
        cursor.close()


def _memoised(process: Callable[[Any], Any] | None) -> Callable[[Any], Any]:
    if process is None:
        return lambda value: value
    seen: dict[Any, Any] = {}

    def convert(value: Any) -> Any:
        try:
            return seen[value]
        except KeyError:
            converted = seen[value] = process(value)
            return converted

    return convert


def bind_processing(dialect: Dialect, column: Column[Any]) -> Callable[[Any], Any] | None:
    """How ``column``'s type turns a value into what ``dialect``'s driver receives (``None``: as
    it is); :func:`binder` memoises it per value, the write path caches it per dialect."""
    return column.type.dialect_impl(dialect).bind_processor(dialect)


def binder(session: Session, column: Column[Any]) -> Callable[[Any], Any]:
    """A value of ``column`` as the driver must receive it (the type's bind processing)."""
    return _memoised(bind_processing(session.get_bind().dialect, column))


def reader(session: Session, column: Column[Any]) -> Callable[[Any], Any]:
    """A driver value of ``column`` as the ORM would hand it back (the type's result
    processing)."""
    dialect = session.get_bind().dialect
    return _memoised(column.type.dialect_impl(dialect).result_processor(dialect, None))
