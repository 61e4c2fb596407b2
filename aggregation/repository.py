"""Queries of the aggregation service: candidate consents, the sealed material a release needs
(streams, chunks, grants), and the ledger rows (locked on PostgreSQL while a release reserves).

Everything here reads or writes rows; no decision is taken here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, update
from sqlmodel import Session, col, select

from aggregation.tables import (
    ConsentBudget,
    DepartmentBudget,
    DepartmentBudgetLimit,
    DPRelease,
    ReleaseContribution,
)
from vault.consent_models import ConsentRecord, KeyGrant, StoredConsent
from vault.models import Chunk, Stream, StreamKey

IN_LIST_SIZE = 5000


def _slices(ids: Iterable[str]) -> list[list[str]]:
    values = sorted(set(ids))
    return [values[i : i + IN_LIST_SIZE] for i in range(0, len(values), IN_LIST_SIZE)]


# -- consents -----------------------------------------------------------------------------------


def candidate_consents(session: Session, department_id: str, at: datetime) -> list[StoredConsent]:
    """The department's consents whose copy columns say they may still be in force, as plain
    rows. Only a pre-filter: every one of them is verified and decided before anything is used."""
    table = ConsentRecord.__table__  # type: ignore[attr-defined]
    return list(
        session.execute(
            select(table)
            .where(
                table.c.department_id == department_id,
                table.c.status.in_(["given", "renewed"]),
                table.c.not_after > at,
            )
            .order_by(table.c.citizen_id, table.c.id)
        ).all()
    )


# -- sealed material ----------------------------------------------------------------------------


def chunks_of_citizens(
    session: Session, citizen_ids: Iterable[str], stream_types: Sequence[str]
) -> list[Any]:
    """The chunks of the citizens' streams of these types, with each stream's citizen and type:
    plain rows (citizen_id, stream_type, id, stream_id, seq, schema_version, format,
    stream_key_id, ciphertext, sealed_key), in no particular order. One joined query per slice
    of citizens, no ORM: a city-wide release reads every chunk of the city."""
    chunks = Chunk.__table__  # type: ignore[attr-defined]
    streams = Stream.__table__  # type: ignore[attr-defined]
    columns = [
        streams.c.citizen_id,
        streams.c.stream_type,
        *(
            chunks.c[name]
            for name in (
                "id",
                "stream_id",
                "seq",
                "schema_version",
                "format",
                "stream_key_id",
                "ciphertext",
                "sealed_key",
            )
        ),
    ]
    connection = session.connection()
    out: list[Any] = []
    for part in _slices(citizen_ids):
        out.extend(
            connection.execute(
                select(*columns)
                .select_from(chunks.join(streams, streams.c.id == chunks.c.stream_id))
                # No ORDER BY: SQLite would then walk the whole chunks index in order for every
                # slice (a full scan each time, measured at 100,000 citizens); callers sort.
                .where(streams.c.citizen_id.in_(part), streams.c.stream_type.in_(stream_types))
            ).all()
        )
    return out


def grants_with_public_keys(
    session: Session, grantee: str, consent_ids: Iterable[str]
) -> list[tuple[str, str, bytes, str, bytes]]:
    """(consent id, stream key id, sealed key, terms digest, the stream key's public half) of
    ``grantee``'s grants for these consents (one joined query per slice, no ORM)."""
    grants = KeyGrant.__table__  # type: ignore[attr-defined]
    keys = StreamKey.__table__  # type: ignore[attr-defined]
    columns = [
        grants.c.consent_id,
        grants.c.stream_key_id,
        grants.c.sealed_key,
        grants.c.terms_sha256,
        keys.c.public_key,
    ]
    connection = session.connection()
    out: list[tuple[str, str, bytes, str, bytes]] = []
    for part in _slices(consent_ids):
        rows = connection.execute(
            select(*columns)
            .select_from(grants.join(keys, keys.c.id == grants.c.stream_key_id))
            .where(grants.c.grantee == grantee, grants.c.consent_id.in_(part))
        ).all()
        out.extend((a, b, bytes(c), d, bytes(e)) for a, b, c, d, e in rows)
    return out


# -- ledger -------------------------------------------------------------------------------------


def department_limit(session: Session, department_id: str) -> DepartmentBudgetLimit | None:
    return session.get(DepartmentBudgetLimit, department_id)


def department_budget(
    session: Session, department_id: str, period_start: datetime, *, for_update: bool = False
) -> DepartmentBudget | None:
    stmt = select(DepartmentBudget).where(
        DepartmentBudget.department_id == department_id,
        DepartmentBudget.period_start == period_start,
    )
    if for_update:
        stmt = stmt.with_for_update()
    return session.exec(stmt).first()


def consent_budgets(
    session: Session, keys: Iterable[tuple[str, datetime]], *, for_update: bool = False
) -> dict[tuple[str, datetime], Any]:
    """The budget rows (plain rows of ``consent_budgets``) of these (consent, period start) pairs
    that exist, locked in a fixed order (by consent id) on PostgreSQL so that concurrent releases
    cannot deadlock."""
    table = ConsentBudget.__table__  # type: ignore[attr-defined]
    wanted = set(keys)
    out: dict[tuple[str, datetime], Any] = {}
    for part in _slices(k[0] for k in wanted):
        stmt = (
            select(table)
            .where(table.c.consent_id.in_(part))
            .order_by(table.c.consent_id, table.c.period_start)
        )
        if for_update:
            stmt = stmt.with_for_update()
        for row in session.execute(stmt).all():
            period = row.period_start
            if period.tzinfo is None:  # SQLite hands back naive UTC for this column type
                period = period.replace(tzinfo=UTC)
            key = (row.consent_id, period)
            if key in wanted:
                out[key] = row
    return out


def budgets_of_citizen(session: Session, citizen_id: str) -> Sequence[ConsentBudget]:
    return session.exec(
        select(ConsentBudget)
        .where(ConsentBudget.citizen_id == citizen_id)
        .order_by(col(ConsentBudget.period_start).desc())
    ).all()


def contribution_keys(session: Session, release_id: str) -> list[tuple[str, datetime]]:
    """(consent id, period start) of every contribution of a release: plain columns, not ORM
    objects (a city-wide release has one per contributing citizen)."""
    table = ReleaseContribution.__table__  # type: ignore[attr-defined]
    rows = session.execute(
        select(table.c.consent_id, table.c.period_start).where(table.c.release_id == release_id)
    ).all()
    return [(r[0], r[1] if r[1].tzinfo is not None else r[1].replace(tzinfo=UTC)) for r in rows]


def unnoticed_contributions(session: Session, limit: int) -> Sequence[ReleaseContribution]:
    return session.exec(
        select(ReleaseContribution)
        .where(col(ReleaseContribution.noticed).is_(False))
        .order_by(col(ReleaseContribution.release_id), col(ReleaseContribution.citizen_id))
        .limit(limit)
        # Two deliveries at once (two queries, or a query and the upkeep loop) must not both
        # write the same entry: on PostgreSQL each takes rows the other has not locked.
        .with_for_update(skip_locked=True)
    ).all()


# The bulk updates below skip the session's own bookkeeping (synchronize_session=False): by
# default SQLAlchemy evaluates the criteria against every contribution loaded in the session, one
# Python call per row (minutes at 1,000,000 contributors), and no caller reads those rows again in
# the same session.


def mark_noticed(session: Session, release_id: str, consent_ids: Sequence[str]) -> None:
    for part in _slices(consent_ids):
        session.execute(
            update(ReleaseContribution)
            .where(
                col(ReleaseContribution.release_id) == release_id,
                col(ReleaseContribution.consent_id).in_(part),
            )
            .values(noticed=True)
            .execution_options(synchronize_session=False)
        )


def delete_contributions(session: Session, release_id: str) -> None:
    session.execute(
        delete(ReleaseContribution).where(col(ReleaseContribution.release_id) == release_id)
    )


def set_contribution_epsilon(
    session: Session, release_id: str, consent_ids: Sequence[str], epsilon: float
) -> None:
    for part in _slices(consent_ids):
        session.execute(
            update(ReleaseContribution)
            .where(
                col(ReleaseContribution.release_id) == release_id,
                col(ReleaseContribution.consent_id).in_(part),
            )
            .values(epsilon=epsilon)
            .execution_options(synchronize_session=False)
        )


def mark_unnoticed(session: Session, release_id: str) -> None:
    """The release is settled: its contributors' audit chains may now be told."""
    session.execute(
        update(ReleaseContribution)
        .where(col(ReleaseContribution.release_id) == release_id)
        .values(noticed=False)
        .execution_options(synchronize_session=False)
    )


def release(session: Session, release_id: str, *, for_update: bool = False) -> DPRelease | None:
    if "\x00" in release_id:  # no id holds one, and PostgreSQL fails on NUL instead of a miss
        return None
    stmt = select(DPRelease).where(DPRelease.id == release_id)
    if for_update:
        stmt = stmt.with_for_update()
    return session.exec(stmt).first()


def releases(
    session: Session,
    *,
    department_id: str | None = None,
    statuses: Sequence[str] = ("released",),
    limit: int = 100,
    before: datetime | None = None,
) -> Sequence[DPRelease]:
    if department_id is not None and "\x00" in department_id:
        return []  # no department's id holds a NUL (PostgreSQL would fail on it)
    stmt = select(DPRelease).where(col(DPRelease.status).in_(list(statuses)))
    if department_id is not None:
        stmt = stmt.where(DPRelease.department_id == department_id)
    if before is not None:
        stmt = stmt.where(col(DPRelease.created_at) < before)
    return session.exec(stmt.order_by(col(DPRelease.created_at).desc()).limit(limit)).all()


def stale_reservations(session: Session, older_than: datetime) -> Sequence[DPRelease]:
    return session.exec(
        select(DPRelease)
        .where(DPRelease.status == "reserved", col(DPRelease.created_at) < older_than)
        .with_for_update(skip_locked=True)
    ).all()


def last_contributor_count(session: Session, department_id: str, dataset: str) -> str | None:
    """The result of the department's latest release on ``dataset`` (for the catalogue's DP
    count of contributors: reusing a published number costs no privacy)."""
    row = session.exec(
        select(DPRelease.result_json)
        .where(
            DPRelease.department_id == department_id,
            DPRelease.dataset == dataset,
            DPRelease.status == "released",
        )
        .order_by(col(DPRelease.created_at).desc())
        .limit(1)
    ).first()
    return row


def release_count(session: Session) -> int:
    return int(session.exec(select(func.count()).select_from(DPRelease)).one())


def delete_for_citizen(session: Session, citizen_id: str) -> None:
    """Erasure: the citizen's budgets and their part in releases (the releases stay: they hold
    only differentially private output)."""
    session.execute(delete(ConsentBudget).where(col(ConsentBudget.citizen_id) == citizen_id))
    session.execute(
        delete(ReleaseContribution).where(col(ReleaseContribution.citizen_id) == citizen_id)
    )
