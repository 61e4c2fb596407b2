"""Queries on departments, data requests, declines, consents and their events."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import delete
from sqlmodel import Session, col, select

from vault.consent_models import (
    ConsentEventRow,
    ConsentRecord,
    DataRequestRow,
    Department,
    RequestDecline,
    StoredConsentEvent,
)
from vault.repositories import driver_sql


def department(session: Session, department_id: str) -> Department | None:
    return session.get(Department, department_id)


def departments(session: Session) -> Sequence[Department]:
    return session.exec(select(Department).order_by(col(Department.id))).all()


def request(session: Session, request_id: str) -> DataRequestRow | None:
    return session.get(DataRequestRow, request_id)


def requests_of_department(session: Session, department_id: str) -> Sequence[DataRequestRow]:
    return session.exec(
        select(DataRequestRow)
        .where(DataRequestRow.department_id == department_id)
        .order_by(col(DataRequestRow.created_at))
    ).all()


def open_requests(session: Session) -> Sequence[DataRequestRow]:
    return session.exec(
        select(DataRequestRow)
        .where(DataRequestRow.status == "open")
        .order_by(col(DataRequestRow.created_at))
    ).all()


def declined_request_ids(session: Session, citizen_id: str) -> set[str]:
    rows = session.exec(select(RequestDecline).where(RequestDecline.citizen_id == citizen_id)).all()
    return {r.request_id for r in rows}


def consent(
    session: Session, consent_id: str, *, citizen_id: str | None = None, for_update: bool = False
) -> ConsentRecord | None:
    stmt = select(ConsentRecord).where(ConsentRecord.id == consent_id)
    if citizen_id is not None:
        stmt = stmt.where(ConsentRecord.citizen_id == citizen_id)
    if for_update:
        stmt = stmt.with_for_update()
    return session.exec(stmt).first()


def consents_of_citizen(session: Session, citizen_id: str) -> Sequence[ConsentRecord]:
    return session.exec(
        select(ConsentRecord)
        .where(ConsentRecord.citizen_id == citizen_id)
        .order_by(col(ConsentRecord.created_at))
    ).all()


def active_consents_of_citizen(session: Session, citizen_id: str) -> Sequence[ConsentRecord]:
    return session.exec(
        select(ConsentRecord).where(
            ConsentRecord.citizen_id == citizen_id,
            col(ConsentRecord.status).in_(["given", "renewed"]),
        )
    ).all()


def active_consents_of_department(session: Session, department_id: str) -> Sequence[ConsentRecord]:
    return session.exec(
        select(ConsentRecord).where(
            ConsentRecord.department_id == department_id,
            col(ConsentRecord.status).in_(["given", "renewed"]),
        )
    ).all()


def active_consents_of_client(
    session: Session, citizen_id: str, client_id: str
) -> Sequence[ConsentRecord]:
    return session.exec(
        select(ConsentRecord).where(
            ConsentRecord.citizen_id == citizen_id,
            ConsentRecord.client_id == client_id,
            col(ConsentRecord.status).in_(["given", "renewed"]),
        )
    ).all()


def due_to_expire(session: Session, now: datetime) -> Sequence[ConsentRecord]:
    """Consents whose time is up, locked (PostgreSQL) so a withdrawal at the same moment waits;
    rows another transaction holds are left for the next sweep."""
    return session.exec(
        select(ConsentRecord)
        .where(
            col(ConsentRecord.status).in_(["given", "renewed"]), col(ConsentRecord.not_after) <= now
        )
        .with_for_update(skip_locked=True)
    ).all()


#: Ids per ``IN (...)`` list: well under SQLite's and PostgreSQL's limits on bound parameters.
IN_LIST_SIZE = 5000


def _slices(ids: Sequence[str]) -> list[list[str]]:
    return [list(ids[i : i + IN_LIST_SIZE]) for i in range(0, len(ids), IN_LIST_SIZE)]


class StoredEvent(NamedTuple):
    """What verifying a history reads of a stored event (a :class:`StoredConsentEvent`)."""

    consent_id: str
    event_json: str
    signature: bytes | None


def events(session: Session, consent_ids: Sequence[str]) -> list[StoredConsentEvent]:
    """The events of these consents, oldest first (read in bulk on the driver: a city-wide
    statistic reads one or more per citizen)."""
    at = driver_sql.reader(session, ConsentEventRow.__table__.c.at)  # type: ignore[attr-defined]
    rows: list[tuple[Any, ...]] = []
    for part in _slices(list(consent_ids)):
        rows.extend(
            driver_sql.fetch_all(
                session,
                "SELECT at, id, consent_id, event_json, signature FROM consent_events "  # noqa: S608
                f"WHERE consent_id IN ({driver_sql.placeholders(len(part))})",
                part,
            )
        )
    rows.sort(key=lambda r: (at(r[0]), r[1]))
    return [
        StoredEvent(consent, text, None if signature is None else bytes(signature))
        for _, _, consent, text, signature in rows
    ]


def versions_of_terms(session: Session, terms_ids: Iterable[str]) -> list[tuple[str, str, str]]:
    """(consent id, citizen id, terms id) of every stored version of these terms (a status needs
    the whole history)."""
    out: list[tuple[str, str, str]] = []
    for part in _slices(sorted(set(terms_ids))):
        out.extend(
            (a, b, c)
            for a, b, c in driver_sql.fetch_all(
                session,
                "SELECT id, citizen_id, terms_id FROM consents "  # noqa: S608
                f"WHERE terms_id IN ({driver_sql.placeholders(len(part))})",
                part,
            )
        )
    return out


def delete_for_citizen(session: Session, citizen_id: str) -> None:
    ids = [c.id for c in consents_of_citizen(session, citizen_id)]
    if ids:
        session.execute(delete(ConsentEventRow).where(col(ConsentEventRow.consent_id).in_(ids)))
        session.execute(delete(ConsentRecord).where(col(ConsentRecord.id).in_(ids)))
    session.execute(delete(RequestDecline).where(col(RequestDecline.citizen_id) == citizen_id))
