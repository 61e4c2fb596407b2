"""Queries of the aggregation service: candidate consents, the sealed material a release needs
(streams, chunks, grants), and the ledger rows (locked on PostgreSQL while a release reserves).

Everything here reads or writes rows; no decision is taken here.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import delete, func, update
from sqlmodel import Session, col, select

from aggregation.tables import (
    ConsentBudget,
    DepartmentBudget,
    DepartmentBudgetLimit,
    DPRelease,
    ReleaseContribution,
)
from vault.consent_models import ConsentRecord
from vault.repositories import driver_sql

IN_LIST_SIZE = 5000


def _slices(ids: Iterable[str]) -> list[list[str]]:
    values = sorted(set(ids))
    return [values[i : i + IN_LIST_SIZE] for i in range(0, len(values), IN_LIST_SIZE)]


# -- consents -----------------------------------------------------------------------------------


class CandidateConsent(NamedTuple):
    """The columns of a stored consent that verifying and deciding it read (a
    :class:`vault.consent_models.StoredConsent`)."""

    id: str
    terms_id: str
    citizen_id: str
    terms_json: str
    signature: bytes
    signing_key: bytes


#: Which consents a department's query considers (the copy columns' pre-filter, on ``consents c``).
_CANDIDATES = (
    "c.department_id = ? AND c.status IN ('given', 'renewed') AND c.not_after > ? "
    "ORDER BY c.citizen_id, c.id"
)


def _candidate_params(session: Session, department_id: str, at: datetime) -> list[Any]:
    after = driver_sql.binder(session, ConsentRecord.__table__.c.not_after)  # type: ignore[attr-defined]
    return [department_id, after(at)]


def candidate_consents(
    session: Session, department_id: str, at: datetime
) -> list[CandidateConsent]:
    """The department's consents whose copy columns say they may still be in force, by citizen,
    read on the driver. Only a pre-filter: every one of them is verified and decided before
    anything is used."""
    return [
        CandidateConsent(a, b, c, d, bytes(e), bytes(f))
        for a, b, c, d, e, f in driver_sql.fetch_all(
            session,
            "SELECT c.id, c.terms_id, c.citizen_id, c.terms_json, c.signature, c.signing_key "
            "FROM consents c WHERE " + _CANDIDATES,
            _candidate_params(session, department_id, at),
        )
    ]


class CandidateRevision(NamedTuple):
    """A candidate consent and its citizen's ``consent_revision`` (raised by the database with
    every change of what verifying and deciding the consent reads: migration 0005)."""

    consent_id: str
    citizen_id: str
    revision: int


def candidate_revisions(
    session: Session, department_id: str, at: datetime
) -> list[CandidateRevision]:
    """The ids of :func:`candidate_consents` with their citizens' consent revisions, by citizen:
    what the admission memo needs to know which consents changed, without their terms."""
    return [
        CandidateRevision(a, b, int(c))
        for a, b, c in driver_sql.fetch_all(
            session,
            "SELECT c.id, c.citizen_id, z.consent_revision FROM consents c "  # noqa: S608
            "JOIN citizens z ON z.id = c.citizen_id WHERE " + _CANDIDATES,
            _candidate_params(session, department_id, at),
        )
    ]


def candidates_by_id(
    session: Session, department_id: str, at: datetime, consent_ids: Iterable[str]
) -> list[CandidateConsent]:
    """:func:`candidate_consents` among these ids only (by citizen): the same pre-filter, so a
    consent whose copy columns changed since the ids were read is left out as it would be."""
    out: list[CandidateConsent] = []
    params = _candidate_params(session, department_id, at)
    for part in _slices(consent_ids):
        out.extend(
            CandidateConsent(a, b, c, d, bytes(e), bytes(f))
            for a, b, c, d, e, f in driver_sql.fetch_all(
                session,
                "SELECT c.id, c.terms_id, c.citizen_id, c.terms_json, c.signature, "  # noqa: S608
                f"c.signing_key FROM consents c WHERE c.id IN ({driver_sql.placeholders(len(part))}) "
                "AND " + _CANDIDATES,
                [*part, *params],
            )
        )
    out.sort(key=lambda r: (r.citizen_id, r.id))
    return out


# -- sealed material ----------------------------------------------------------------------------


#: Above this share of the city's citizens, a release's sealed material is read by scanning the
#: tables once rather than by looking citizens up: at 100,000 citizens the scan reads the chunks in
#: 1.0 s, the lookups (random B-tree walks over uuid keys) in 1.45 s (SQLite, measured).
SCAN_SHARE = 0.25
#: Below this many citizens, lookups always win (and the city is not counted).
SCAN_MIN_CITIZENS = 1000

_CHUNK_COLUMNS = (
    "s.citizen_id, s.stream_type, c.id, c.stream_id, c.seq, c.schema_version, c.format, "
    "c.stream_key_id, c.ciphertext, c.sealed_key"
)
_GRANT_COLUMNS = "g.consent_id, g.stream_key_id, g.sealed_key, g.terms_sha256, k.public_key"


def _scan_wins(session: Session, citizens: int, scan: bool | None) -> bool:
    """Whether ``citizens`` is enough of the city for one scan to beat per-citizen lookups
    (``scan``: the caller's choice instead, for tests that read both ways)."""
    if scan is not None:
        return scan
    if citizens < SCAN_MIN_CITIZENS:
        return False
    total = int(driver_sql.fetch_all(session, "SELECT count(*) FROM citizens")[0][0])
    return citizens >= SCAN_SHARE * total


def _rows_keyed_by(
    session: Session,
    select_where: str,
    params: Sequence[Any],
    key_column: str,
    wanted: set[str],
    scan: bool | None,
) -> list[tuple[Any, ...]]:
    """The rows of ``select_where`` (a SELECT ending in its WHERE condition, with ``params``) whose
    first column, ``key_column``, is in ``wanted``: by one scan filtered here when ``wanted`` is a
    large share of the city (:func:`_scan_wins`), else by one query per slice of ``wanted``."""
    if _scan_wins(session, len(wanted), scan):
        return [r for r in driver_sql.fetch_all(session, select_where, params) if r[0] in wanted]
    out: list[tuple[Any, ...]] = []
    for part in _slices(wanted):
        out.extend(
            driver_sql.fetch_all(
                session,
                f"{select_where} AND {key_column} IN ({driver_sql.placeholders(len(part))})",
                [*params, *part],
            )
        )
    return out


def chunks_of_citizens(
    session: Session,
    citizen_ids: Iterable[str],
    stream_types: Sequence[str],
    *,
    scan: bool | None = None,
) -> list[tuple[Any, ...]]:
    """The chunks of the citizens' streams of these types, with each stream's citizen and type:
    plain tuples (citizen_id, stream_type, id, stream_id, seq, schema_version, format,
    stream_key_id, ciphertext, sealed_key), in no particular order.

    A city-wide release reads every chunk of the city: on the driver, without ORM objects, and by
    one scan when the citizens are a large share of the city (:data:`SCAN_SHARE`). No ORDER BY:
    SQLite would then walk the whole chunks index in order for every slice; callers sort."""
    types = list(stream_types)
    # Built of constants and placeholders only (S608: no value is ever formatted into SQL).
    joined = (
        f"SELECT {_CHUNK_COLUMNS} FROM chunks c JOIN streams s ON s.id = c.stream_id "  # noqa: S608
        f"WHERE s.stream_type IN ({driver_sql.placeholders(len(types))})"
    )
    return _rows_keyed_by(session, joined, types, "s.citizen_id", set(citizen_ids), scan)


#: One stream a release may read, as its revision: (citizen id, stream id, stream type, chunk
#: revision, current key id), as the driver returns the row. The database raises
#: ``chunk_revision`` with every change of the stream's chunks (migration 0005); a new key
#: generation changes the current key id.
StreamRevision = tuple[str, str, str, int, str]


def stream_revisions(
    session: Session,
    citizen_ids: Iterable[str],
    stream_types: Sequence[str],
    *,
    scan: bool | None = None,
) -> dict[str, tuple[StreamRevision, ...]]:
    """Each of these citizens' streams of these types, as :data:`StreamRevision` sorted by
    stream id, by citizen (citizens without such streams are left out); one scan when the
    citizens are a large share of the city, as :func:`chunks_of_citizens`. The rows are kept as
    the driver returns them: a city-wide release reads one per citizen and stream."""
    types = list(stream_types)
    select = (
        "SELECT citizen_id, id, stream_type, chunk_revision, current_key_id FROM streams "  # noqa: S608
        f"WHERE stream_type IN ({driver_sql.placeholders(len(types))})"
    )
    out: dict[str, tuple[StreamRevision, ...]] = {}
    mine = out.get
    for row in _rows_keyed_by(session, select, types, "citizen_id", set(citizen_ids), scan):
        citizen = row[0]
        found = mine(citizen)
        out[citizen] = (row,) if found is None else tuple(sorted((*found, row)))
    return out


def consent_revisions(
    session: Session, citizen_ids: Iterable[str], *, scan: bool | None = None
) -> dict[str, int]:
    """Each of these citizens' ``consent_revision`` (migration 0005), by citizen id (one scan
    when they are a large share of the city)."""
    rows = _rows_keyed_by(
        session,
        "SELECT id, consent_revision FROM citizens WHERE true",
        [],
        "id",
        set(citizen_ids),
        scan,
    )
    return {citizen: int(revision) for citizen, revision in rows}


def grants_with_public_keys(
    session: Session, grantee: str, consent_ids: Iterable[str], *, scan: bool | None = None
) -> list[tuple[str, str, bytes, str, bytes]]:
    """(consent id, stream key id, sealed key, terms digest, the stream key's public half) of
    ``grantee``'s grants for these consents (on the driver; one scan of the grantee's grants
    when the consents are a large share of the city, else one joined query per slice)."""
    joined = (
        f"SELECT {_GRANT_COLUMNS} FROM key_grants g JOIN stream_keys k ON k.id = g.stream_key_id "  # noqa: S608
        "WHERE g.grantee = ?"
    )
    rows = _rows_keyed_by(session, joined, [grantee], "g.consent_id", set(consent_ids), scan)
    return [(a, b, bytes(c), d, bytes(e)) for a, b, c, d, e in rows]


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


class BudgetState(NamedTuple):
    """A consent's budget row in one period (plain values, read on the driver)."""

    consent_id: str
    period_start: datetime
    period_end: datetime
    epsilon_limit: float
    epsilon_spent: float
    releases: int
    releases_limit: int


def _budget_table() -> Any:
    return ConsentBudget.__table__  # type: ignore[attr-defined]


#: A reservation's charges, staged in a temporary table of the transaction's connection so that
#: the budget rows are created, checked and charged by a few set statements, not one per consent.
_STAGE_TABLE = {
    "sqlite": "CREATE TEMP TABLE IF NOT EXISTS release_charges (consent_id TEXT NOT NULL, "
    "period_start TEXT NOT NULL, period_end TEXT NOT NULL, citizen_id TEXT NOT NULL, "
    "epsilon_limit REAL NOT NULL, releases_limit INTEGER NOT NULL)",
    "postgresql": "CREATE TEMP TABLE IF NOT EXISTS release_charges (consent_id TEXT NOT NULL, "
    "period_start TIMESTAMPTZ NOT NULL, period_end TIMESTAMPTZ NOT NULL, "
    "citizen_id TEXT NOT NULL, epsilon_limit DOUBLE PRECISION NOT NULL, "
    "releases_limit INTEGER NOT NULL) ON COMMIT DELETE ROWS",
}


def stage_charges(
    session: Session,
    department_id: str,
    rows: Iterable[tuple[str, datetime, datetime, str, float, int]],
) -> None:
    """Stage the charges of a reservation, (consent id, period start, period end, citizen id,
    epsilon limit, releases limit), replacing any staged before in this connection, and create
    the budget rows that do not exist yet, nothing spent (an existing row, made by an earlier or
    a concurrent reservation, is left as it is)."""
    table = _budget_table()
    start, end = (
        driver_sql.binder(session, table.c.period_start),
        driver_sql.binder(session, table.c.period_end),
    )
    dialect = session.get_bind().dialect.name
    driver_sql.execute(session, _STAGE_TABLE["postgresql" if dialect == "postgresql" else "sqlite"])
    driver_sql.execute(session, "DELETE FROM release_charges")
    driver_sql.run_many(
        session,
        "INSERT INTO release_charges (consent_id, period_start, period_end, citizen_id, "
        "epsilon_limit, releases_limit) VALUES (?, ?, ?, ?, ?, ?)",
        (
            (consent, start(first), end(last), citizen, epsilon, releases)
            for consent, first, last, citizen, epsilon, releases in rows
        ),
    )
    driver_sql.execute(
        session,
        "INSERT INTO consent_budgets (consent_id, period_start, period_end, citizen_id, "
        "epsilon_limit, releases_limit, department_id, epsilon_spent, releases) "
        "SELECT consent_id, period_start, period_end, citizen_id, epsilon_limit, releases_limit, "
        "?, 0, 0 FROM release_charges WHERE true ORDER BY consent_id ON CONFLICT DO NOTHING",
        [department_id],
    )


def lock_staged_budgets(session: Session) -> None:
    """Lock the staged consents' budget rows, in a fixed order (by consent id) so that concurrent
    releases cannot deadlock (PostgreSQL; SQLite has one writer at a time)."""
    if driver_sql.locks_rows(session):
        driver_sql.fetch_all(
            session,
            "SELECT consent_id FROM consent_budgets WHERE (consent_id, period_start) IN "
            "(SELECT consent_id, period_start FROM release_charges) "
            "ORDER BY consent_id, period_start FOR UPDATE",
        )


def charge_staged(session: Session, release_id: str, epsilon: float, slack: float) -> set[str]:
    """Charge ``epsilon`` and one release to every staged consent whose budget row can pay it
    (spent + epsilon within its limit plus ``slack``, and fewer releases than its limit), record
    each of them as a contribution of ``release_id``, and return them.

    Deciding and charging are one statement, so no row changes between the two (the rows are
    also locked on PostgreSQL). The staged consents that cannot pay are dropped from the stage
    first, so they get no contribution (not yet noticed: :func:`unnoticed_contributions` takes
    them once the release is settled)."""
    charged = {
        consent
        for (consent,) in driver_sql.fetch_all(
            session,
            # The staged columns renamed: RETURNING may name only the updated table's.
            "UPDATE consent_budgets AS b SET epsilon_spent = b.epsilon_spent + ?, "
            "releases = b.releases + 1 FROM (SELECT consent_id AS staged_consent, "
            "period_start AS staged_start FROM release_charges) AS k "
            "WHERE b.consent_id = k.staged_consent AND b.period_start = k.staged_start "
            "AND b.epsilon_spent + ? <= b.epsilon_limit + ? AND b.releases < b.releases_limit "
            "RETURNING consent_id",
            [epsilon, epsilon, slack],
        )
    }
    staged = driver_sql.fetch_all(session, "SELECT count(*) FROM release_charges")[0][0]
    if len(charged) < staged:  # rare: someone's budget is spent
        short = [
            consent
            for (consent,) in driver_sql.fetch_all(
                session, "SELECT consent_id FROM release_charges"
            )
            if consent not in charged
        ]
        for part in _slices(short):
            driver_sql.execute(
                session,
                "DELETE FROM release_charges "  # noqa: S608
                f"WHERE consent_id IN ({driver_sql.placeholders(len(part))})",
                part,
            )
    driver_sql.execute(
        session,
        "INSERT INTO release_contributions (release_id, consent_id, citizen_id, period_start, "
        "epsilon, noticed) SELECT ?, consent_id, citizen_id, period_start, ?, ? "
        "FROM release_charges WHERE true ORDER BY consent_id ON CONFLICT DO NOTHING",
        [release_id, epsilon, False],
    )
    # The staged ids are not kept past the reservation (SQLite's temporary tables outlive it).
    driver_sql.execute(session, "DELETE FROM release_charges")
    return charged


def consent_budgets(
    session: Session, keys: Iterable[tuple[str, datetime]], *, for_update: bool = False
) -> dict[tuple[str, datetime], BudgetState]:
    """The budget rows of these (consent, period start) pairs that exist, locked in a fixed order
    (by consent id) on PostgreSQL so that concurrent releases cannot deadlock."""
    table = _budget_table()
    start, end = (
        driver_sql.reader(session, table.c.period_start),
        driver_sql.reader(session, table.c.period_end),
    )
    lock = " FOR UPDATE" if for_update and driver_sql.locks_rows(session) else ""
    wanted = set(keys)
    out: dict[tuple[str, datetime], BudgetState] = {}
    for part in _slices(k[0] for k in wanted):
        for consent, first, last, limit, spent, releases, releases_limit in driver_sql.fetch_all(
            session,
            "SELECT consent_id, period_start, period_end, epsilon_limit, epsilon_spent, "  # noqa: S608
            "releases, releases_limit FROM consent_budgets "
            f"WHERE consent_id IN ({driver_sql.placeholders(len(part))}) "
            f"ORDER BY consent_id, period_start{lock}",
            part,
        ):
            key = (consent, start(first))
            if key in wanted:
                out[key] = BudgetState(
                    consent, key[1], end(last), limit, spent, releases, releases_limit
                )
    return out


def add_to_consent_budgets(
    session: Session, keys: Sequence[tuple[str, datetime]], epsilon: float, releases: int
) -> None:
    """Add ``epsilon`` and ``releases`` (negative: a refund) to these budget rows."""
    start = driver_sql.binder(session, _budget_table().c.period_start)
    driver_sql.run_many(
        session,
        "UPDATE consent_budgets SET epsilon_spent = epsilon_spent + ?, releases = releases + ? "
        "WHERE consent_id = ? AND period_start = ?",
        ((epsilon, releases, consent, start(period)) for consent, period in keys),
    )


def budgets_of_citizen(session: Session, citizen_id: str) -> Sequence[ConsentBudget]:
    return session.exec(
        select(ConsentBudget)
        .where(ConsentBudget.citizen_id == citizen_id)
        .order_by(col(ConsentBudget.period_start).desc())
    ).all()


def contribution_keys(
    session: Session, release_id: str, *, only: Collection[str] | None = None
) -> list[tuple[str, datetime]]:
    """(consent id, period start) of every contribution of a release, or of those of the
    consents ``only``: plain values read on the driver (a city-wide release has one per
    contributing citizen)."""
    start = driver_sql.reader(
        session,
        ReleaseContribution.__table__.c.period_start,  # type: ignore[attr-defined]
    )
    select = "SELECT consent_id, period_start FROM release_contributions WHERE release_id = ?"
    rows = (
        driver_sql.fetch_all(session, select, [release_id])
        if only is None
        else _rows_keyed_by(session, select, [release_id], "consent_id", set(only), scan=False)
    )
    return [(consent, start(period)) for consent, period in rows]


def unnoticed_contributions(session: Session, limit: int) -> Sequence[ReleaseContribution]:
    """Contributions of settled releases (released, or refused after the size check) whose
    citizens have not been told yet; those of a release still running wait for it."""
    settled = select(DPRelease.id).where(col(DPRelease.status).in_(("released", "refused")))
    return session.exec(
        select(ReleaseContribution)
        .where(col(ReleaseContribution.noticed).is_(False))
        .where(col(ReleaseContribution.release_id).in_(settled))
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
    session: Session,
    release_id: str,
    consent_ids: Sequence[str],
    epsilon: float,
    left_out: str | None = None,
) -> None:
    """What these contributions of a release were finally charged, and why their data was left
    out of its statistics (``None``: it was not, or nothing was published)."""
    for part in _slices(consent_ids):
        session.execute(
            update(ReleaseContribution)
            .where(
                col(ReleaseContribution.release_id) == release_id,
                col(ReleaseContribution.consent_id).in_(part),
            )
            .values(epsilon=epsilon, left_out=left_out)
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
