"""The bulk reads and writes of a release, on the database driver (aggregation.repository with
vault.repositories.driver_sql), on SQLite and PostgreSQL.

* Reading a release's sealed material by one scan of the tables gives exactly what the
  per-citizen lookups give, and only the citizens asked for, whatever the subset.
* Both give exactly the stored chunks and grants, byte for byte, as the ORM reads them.
* Budget rows and contributions written on the driver are the rows the ORM finds under the same
  keys (the stored form of a time is the ORM's own), and read back as the ORM reads them.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text as sql_text
from sqlmodel import select

from aggregation import repository
from aggregation.tables import ConsentBudget, ReleaseContribution
from server.migrate import upgrade_to_head
from tests.aggregation_support import aggregation_settings, populate, publish_city, resident
from vault.consent_models import KeyGrant
from vault.models import Chunk, Stream
from vault.repositories import driver_sql

TYPES = ["energy.consumption", "profile"]


@pytest.fixture
def city(tmp_path: Path, database_url: str) -> Iterator[tuple[TestClient, list[str], list[str]]]:
    """A small city: six citizens who consented, one who did not; (client, citizens, consents)."""
    from server.app import create_app

    upgrade_to_head(database_url)
    app = create_app(aggregation_settings(tmp_path, database_url))
    with TestClient(app, base_url="https://testserver") as client:
        publish_city(client)
        people = populate(client, 6)
        outsider = resident(client, "outsider", "Harbour", [3.0, 4.0], accept=False)
        citizens = [p.citizen.citizen_id for p in people] + [outsider.citizen.citizen_id]
        consents = [p.consent_id for p in people if p.consent_id is not None]
        yield client, citizens, consents


def _vault(client: TestClient):  # type: ignore[no-untyped-def]
    return client.app.state.vault  # type: ignore[attr-defined]


def _stored_chunks(client: TestClient, citizens: list[str]) -> list[tuple[object, ...]]:
    """The same chunks through the ORM, in the repository's tuple form."""
    with _vault(client).reading() as session:
        rows = session.exec(
            select(Stream, Chunk)
            .join(Chunk, Chunk.stream_id == Stream.id)  # type: ignore[arg-type]
            .where(Stream.citizen_id.in_(citizens))  # type: ignore[attr-defined]
            .where(Stream.stream_type.in_(TYPES))  # type: ignore[attr-defined]
        ).all()
        return sorted(
            (
                s.citizen_id,
                s.stream_type,
                c.id,
                c.stream_id,
                c.seq,
                c.schema_version,
                c.format,
                c.stream_key_id,
                bytes(c.ciphertext),
                bytes(c.sealed_key),
            )
            for s, c in rows
        )


def test_a_scan_reads_exactly_what_lookups_read_for_any_subset(
    city: tuple[TestClient, list[str], list[str]],
) -> None:
    client, citizens, _ = city
    subsets = [citizens, citizens[:1], citizens[2:5], [citizens[-1]], ["no-such-citizen"], []]
    for subset in subsets:
        with _vault(client).reading() as session:
            scanned = repository.chunks_of_citizens(session, subset, TYPES, scan=True)
            looked_up = repository.chunks_of_citizens(session, subset, TYPES, scan=False)
        as_stored = _stored_chunks(client, subset)
        norm = sorted(
            tuple(bytes(v) if isinstance(v, memoryview) else v for v in r) for r in scanned
        )
        assert norm == sorted(
            tuple(bytes(v) if isinstance(v, memoryview) else v for v in r) for r in looked_up
        )
        assert norm == as_stored
        assert {r[0] for r in norm} <= set(subset)
        # The revisions a warm release reads instead go the same two ways, for the same citizens.
        with _vault(client).reading() as session:
            streams = [
                repository.stream_revisions(session, subset, TYPES, scan=way)
                for way in (True, False)
            ]
            revisions = [
                repository.consent_revisions(session, subset, scan=way) for way in (True, False)
            ]
        assert streams[0] == streams[1] and set(streams[0]) == set(subset) - {"no-such-citizen"}
        assert all(len(mine) == 2 for mine in streams[0].values())
        assert revisions[0] == revisions[1] and set(revisions[0]) == set(streams[0])
    # Every citizen of the city has a profile and an energy stream, one chunk each.
    with _vault(client).reading() as session:
        everyone = repository.chunks_of_citizens(session, citizens, TYPES, scan=True)
    assert len(everyone) == 2 * len(citizens)


def test_grants_read_by_scan_and_by_lookup_agree(
    city: tuple[TestClient, list[str], list[str]],
) -> None:
    client, _, consents = city
    with _vault(client).reading() as session:
        stored = sorted(
            (g.consent_id, g.stream_key_id, bytes(g.sealed_key), g.terms_sha256)
            for g in session.exec(select(KeyGrant).where(KeyGrant.grantee == "aggregation")).all()
        )
    assert {g[0] for g in stored} == set(consents)
    for subset in (consents, consents[:2], consents[3:4], ["no-such-consent"], []):
        with _vault(client).reading() as session:
            scanned = repository.grants_with_public_keys(session, "aggregation", subset, scan=True)
            looked_up = repository.grants_with_public_keys(
                session, "aggregation", subset, scan=False
            )
            other = repository.grants_with_public_keys(session, "app-access", subset, scan=True)
        assert sorted(scanned) == sorted(looked_up)
        assert sorted(g[:4] for g in scanned) == [g for g in stored if g[0] in subset]
        assert all(len(g[4]) == 32 for g in scanned)  # the stream key's public half
        assert other == []


def test_budget_rows_written_on_the_driver_are_the_rows_the_orm_reads(
    city: tuple[TestClient, list[str], list[str]],
) -> None:
    client, citizens, consents = city
    start = datetime(2026, 11, 1, tzinfo=UTC)
    end = datetime(2026, 12, 1, tzinfo=UTC)
    rows = [(c, start, end, citizens[i], 2.5, 4) for i, c in enumerate(consents)]
    with _vault(client).unit_of_work() as session:
        repository.stage_charges(session, "energy", rows)
        # Staging the same keys again changes no row (a concurrent reservation made them).
        repository.stage_charges(
            session, "energy", [(c, start, end, "x", 9.0, 9) for c, *_ in rows]
        )
        repository.stage_charges(session, "energy", rows)
        # 2.6 is more than any limit: nobody pays, nothing is charged or recorded.
        assert repository.charge_staged(session, "r0", 2.6, 1e-9) == set()
        assert driver_sql.fetch_all(session, "SELECT count(*) FROM release_charges") == [(0,)]
        repository.stage_charges(session, "energy", rows[:2])
        assert repository.charge_staged(session, "r1", 0.75, 1e-9) == set(consents[:2])
        # Charged 0.75 of 2.5: another 1.75 fits, 1.8 does not; the others are untouched.
        repository.stage_charges(session, "energy", rows)
        assert repository.charge_staged(session, "r2", 1.8, 1e-9) == set(consents[2:])
        repository.stage_charges(session, "energy", rows[:2])
        assert repository.charge_staged(session, "r3", 1.75, 1e-9) == set(consents[:2])
        # Spent in full (0.75 + 1.75 = 2.5): not even a hair more.
        repository.stage_charges(session, "energy", rows[:1])
        assert repository.charge_staged(session, "r4", 1e-6, 1e-9) == set()
        recorded = driver_sql.fetch_all(
            session, "SELECT release_id, consent_id FROM release_contributions"
        )
        assert sorted(recorded) == sorted(
            [("r1", c) for c in consents[:2]]
            + [("r2", c) for c in consents[2:]]
            + [("r3", c) for c in consents[:2]]
        )
        # At most 4 releases per period: the fifth is refused though budget is left.
        for n, paid in ((5, True), (6, True), (7, True), (8, False)):
            repository.stage_charges(session, "energy", rows[2:3])
            assert repository.charge_staged(session, f"r{n}", 0.1, 1e-9) == (
                {consents[2]} if paid else set()
            )
        repository.stage_charges(session, "energy", [])
        # And one row the ORM writes itself, for the same period.
        session.add(
            ConsentBudget(
                consent_id="orm-written",
                period_start=start,
                period_end=end,
                citizen_id=citizens[0],
                department_id="energy",
                epsilon_limit=1.0,
                releases_limit=1,
            )
        )
    with _vault(client).reading() as session:
        # The driver stored each time exactly as the ORM stores it (on SQLite: the same text).
        stored_forms = driver_sql.fetch_all(
            session, "SELECT DISTINCT period_start, period_end FROM consent_budgets"
        )
        assert len(stored_forms) == 1, stored_forms
        orm = {
            b.consent_id: b
            for b in session.exec(select(ConsentBudget)).all()  # the ORM's own reading
        }
        read = repository.consent_budgets(session, [(c, start) for c in consents])
        found = session.get(ConsentBudget, (consents[0], start))
        contributions = repository.contribution_keys(session, "r1")
        some = repository.contribution_keys(session, "r3", only=[consents[0], "no-such"])
        orm_contributions = session.exec(
            select(ReleaseContribution).where(ReleaseContribution.release_id == "r1")
        ).all()
    assert found is not None and found.epsilon_spent == 2.5 and found.releases == 2
    assert [orm[c].epsilon_spent for c in consents[:4]] == pytest.approx([2.5, 2.5, 2.1, 1.8])
    assert [orm[c].releases for c in consents[:4]] == [2, 2, 4, 1]
    assert some == [(consents[0], start)]
    assert set(orm) == {*consents, "orm-written"}
    for consent, first, last, citizen, limit, releases in rows:
        row = orm[consent]
        assert (row.period_start, row.period_end, row.citizen_id) == (first, last, citizen)
        assert (row.epsilon_limit, row.releases_limit, row.department_id) == (
            limit,
            releases,
            "energy",
        )
        state = read[(consent, start)]
        assert (state.period_start, state.period_end) == (first, last)
        assert (state.epsilon_spent, state.releases) == (row.epsilon_spent, row.releases)
    assert sorted(contributions) == sorted([(consents[0], start), (consents[1], start)])
    assert {(c.consent_id, c.period_start, c.epsilon, c.noticed) for c in orm_contributions} == {
        (consents[0], start, 0.75, False),
        (consents[1], start, 0.75, False),
    }


def test_a_read_only_transaction_reads_one_snapshot(
    city: tuple[TestClient, list[str], list[str]],
) -> None:
    """A release re-judges the consents that changed since its gate and reads their material in
    one read-only transaction; both must be of the same moment. A withdrawal committed after
    the transaction's first read is not seen by its later reads, on either database."""
    client, citizens, consents = city
    vault = _vault(client)
    with vault.reading() as session:
        before = repository.consent_revisions(session, citizens)
        with vault.unit_of_work() as writer:  # another transaction commits meanwhile
            writer.execute(
                sql_text("UPDATE consents SET status = 'withdrawn' WHERE id = :c"),
                {"c": consents[0]},
            )
            writer.execute(
                sql_text("DELETE FROM key_grants WHERE consent_id = :c"), {"c": consents[0]}
            )
        assert repository.consent_revisions(session, citizens) == before
        grants = repository.grants_with_public_keys(session, "aggregation", consents)
        assert consents[0] in {g[0] for g in grants}  # deleted since, still there in the snapshot
    with vault.reading() as session:  # a new transaction sees the commit
        after = repository.consent_revisions(session, citizens)
        grants = repository.grants_with_public_keys(session, "aggregation", consents)
    assert after != before
    assert consents[0] not in {g[0] for g in grants}


def test_a_read_only_transaction_cannot_write(
    city: tuple[TestClient, list[str], list[str]],
) -> None:
    """Writing through ``reading()`` is a bug; on PostgreSQL it fails at once, on SQLite the
    transaction ends without committing what it wrote."""
    client, citizens, _ = city
    vault = _vault(client)
    postgres = vault.engine.dialect.name == "postgresql"
    with vault.reading() as session:
        before = repository.consent_revisions(session, citizens)
    assert any(before.values())
    refused = None
    try:
        with vault.reading() as session:
            session.execute(sql_text("UPDATE citizens SET consent_revision = 0"))
    except Exception as exc:  # noqa: BLE001 - the driver's own error, whatever its class
        refused = exc
    assert (refused is not None) == postgres, refused
    if postgres:
        assert "read-only transaction" in str(refused)
    with vault.reading() as session:
        assert repository.consent_revisions(session, citizens) == before
