"""The two-level privacy ledger under concurrency (50 queries at once), on SQLite and PostgreSQL:
neither a department nor a citizen is ever overspent, every charge is backed by a recorded release
(or a refused one's size check), and a crash's reservation is cancelled and refunded."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from aggregation.errors import DepartmentBudgetExceeded, TooFewContributors
from aggregation.query_spec import QueryRequest
from aggregation.tables import ConsentBudget, DepartmentBudget, DPRelease, ReleaseContribution
from tests.aggregation_support import QUERY, Resident, aggregation_settings, populate, publish_city
from vault.clock import utcnow
from vault.principal import AGGREGATION_AUDIENCE, Principal
from vault.settings import Settings

ANALYST = Principal(
    kind="analyst",
    token_digest="test",
    scopes=frozenset({"aggregate:query"}),
    audience=AGGREGATION_AUDIENCE,
    client_id="energy-analyst",
    department_id="energy",
)


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return aggregation_settings(tmp_path, database_url)


def test_fifty_concurrent_queries_never_overspend(client: TestClient) -> None:
    publish_city(client, releases=10)
    people: list[Resident] = populate(client, 8)
    agg = client.app.state.aggregation  # type: ignore[attr-defined]
    with agg.vault.unit_of_work() as session:
        agg.ledger.set_department_limit(session, "energy", 200.0, "dpo", utcnow())
    body = QueryRequest.model_validate({**QUERY, "epsilon": 2.0})

    def one(_: int) -> str:
        try:
            agg.queries.run(ANALYST, body)
            return "released"
        except DepartmentBudgetExceeded:
            return "over department budget"
        except TooFewContributors:
            return "too few"

    with ThreadPoolExecutor(max_workers=50) as pool:
        outcomes = Counter(pool.map(one, range(50)))
    # Each citizen's consent allows 8 per month: four releases of 2, then they are left out.
    assert outcomes["released"] == 4, outcomes
    with agg.vault.reading() as s:
        dept = s.exec(select(DepartmentBudget)).one()
        releases = s.exec(select(DPRelease)).all()
        budgets = s.exec(select(ConsentBudget)).all()
        contributions = s.exec(select(ReleaseContribution)).all()
    assert dept.epsilon_spent <= dept.epsilon_limit + 1e-9
    assert dept.epsilon_spent == pytest.approx(sum(r.epsilon_charged for r in releases))
    assert {r.status for r in releases} <= {"released", "refused"}
    assert len(budgets) == len(people)
    for b in budgets:
        assert b.epsilon_spent <= b.epsilon_limit + 1e-9
        mine = [c for c in contributions if c.consent_id == b.consent_id]
        assert b.epsilon_spent == pytest.approx(sum(c.epsilon for c in mine))
        assert b.releases == sum(
            1
            for c in mine
            if next(r for r in releases if r.id == c.release_id).status == "released"
        )


def _reserve(client: TestClient) -> tuple[Any, Any, datetime]:
    """A reservation of the standard query for every admitted consent, left running:
    (the aggregation runtime, the reservation, its time)."""
    from aggregation import consent_gate

    agg = client.app.state.aggregation  # type: ignore[attr-defined]
    prepared = agg.queries.prepare(QueryRequest.model_validate(QUERY))
    at = utcnow()
    with agg.vault.reading() as s:
        admitted = consent_gate.admit(s, agg.vault.consents, prepared.query, at)
    with agg.vault.unit_of_work() as s:
        reservation = agg.ledger.reserve(
            s,
            department_id="energy",
            purpose="energy-planning",
            dataset="energy.consumption",
            query={},
            epsilon=4.0,
            size_check_epsilon=2.0,
            admitted=admitted,
            requested_by="test",
            at=at,
        )
    return agg, reservation, at


def test_a_crashed_reservation_is_cancelled_and_refunded(client: TestClient) -> None:
    publish_city(client)
    populate(client, 4)
    agg, reservation, at = _reserve(client)
    assert len(reservation.charged) == 4
    with agg.vault.unit_of_work() as s:  # the process died here, an hour ago
        row = s.get(DPRelease, reservation.release_id)
        row.created_at = at - timedelta(hours=1)
        s.add(row)
    # The process died here. The upkeep cancels what is older than any query can run.
    assert agg.cancel_stale_reservations() == 1
    with agg.vault.reading() as s:
        row = s.get(DPRelease, reservation.release_id)
        assert row is not None and row.status == "cancelled" and row.epsilon_charged == 0
        assert all(b.epsilon_spent == 0 and b.releases == 0 for b in s.exec(select(ConsentBudget)))
        assert s.exec(select(DepartmentBudget)).one().epsilon_spent == 0
        assert s.exec(select(ReleaseContribution)).all() == []


def test_citizens_are_told_only_once_their_release_is_settled(client: TestClient) -> None:
    """While a release runs, its contributions wait; once released, each citizen is told once."""
    publish_city(client)
    populate(client, 3)
    agg, reservation, _ = _reserve(client)
    assert len(reservation.charged) == 3
    assert agg.deliver_notices() == 0  # still running: nothing is told
    with agg.vault.unit_of_work() as s:
        agg.ledger.settle(
            s,
            reservation.release_id,
            outcome="released",
            at=utcnow(),
        )
    assert agg.deliver_notices() == 3
    assert agg.deliver_notices() == 0
    with agg.vault.reading() as s:
        assert all(c.noticed for c in s.exec(select(ReleaseContribution)))


def test_consents_left_out_by_their_group_size_keep_only_the_size_check(
    client: TestClient,
) -> None:
    publish_city(client)
    populate(client, 4)
    agg, reservation, _ = _reserve(client)
    charged = sorted(c.consent.consent_id for c in reservation.charged)
    assert len(charged) == 4
    left_out = dict.fromkeys(charged[:1], "group_size")
    with agg.vault.unit_of_work() as s:
        agg.ledger.settle(
            s, reservation.release_id, outcome="released", left_out=left_out, at=utcnow()
        )
    with agg.vault.reading() as s:
        budgets = {b.consent_id: b for b in s.exec(select(ConsentBudget))}
        contributions = {c.consent_id: c for c in s.exec(select(ReleaseContribution))}
        row = s.get(DPRelease, reservation.release_id)
        dept = s.exec(select(DepartmentBudget)).one()
    assert row is not None and row.status == "released" and row.epsilon_charged == 4.0
    assert dept.epsilon_spent == 4.0 and dept.releases == 1
    for consent in charged:
        paid = 2.0 if consent in left_out else 4.0  # the size check only, or the whole query
        assert budgets[consent].epsilon_spent == pytest.approx(paid)
        assert budgets[consent].releases == (0 if consent in left_out else 1)
        assert contributions[consent].epsilon == pytest.approx(paid)
    # Each is told what happened: the one left out was only counted by the size check.
    assert agg.deliver_notices() == 4
    with agg.vault.reading() as s:
        citizen_of = {c.consent_id: c.citizen_id for c in s.exec(select(ReleaseContribution))}
    for consent in charged:
        with agg.vault.reading() as s:
            entries = agg.vault.audit.read(s, citizen_of[consent]).entries
        told = [e for e in entries if e.action.startswith("data.")]
        used = "data.counted_in_size_check" if consent in left_out else "data.used_in_release"
        assert [e.action for e in told] == [used], (consent, told)
        assert told[0].details.get("left_out") == left_out.get(consent)  # why, when left out


def test_settling_refuses_a_reason_it_does_not_know(client: TestClient) -> None:
    """A consent left out for a reason the notices cannot word would be refunded yet told it was
    used: the ledger refuses it, and the reservation stands as it was."""
    publish_city(client)
    populate(client, 2)
    agg, reservation, _ = _reserve(client)
    consent = reservation.charged[0].consent.consent_id
    with pytest.raises(ValueError, match="unknown reasons"), agg.vault.unit_of_work() as s:
        agg.ledger.settle(
            s,
            reservation.release_id,
            outcome="released",
            left_out={consent: "bored"},  # type: ignore[dict-item]
            at=utcnow(),
        )
    with pytest.raises(ValueError, match="only a released query"), agg.vault.unit_of_work() as s:
        agg.ledger.settle(
            s,
            reservation.release_id,
            outcome="refused",
            left_out={consent: "group_size"},
            at=utcnow(),
        )
    with agg.vault.reading() as s:
        row = s.get(DPRelease, reservation.release_id)
    assert row is not None and row.status == "reserved"


def test_a_consent_withdrawn_after_the_gate_is_left_out_refunded_and_told_why(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Withdrawal excludes at once, even from a query already past its gate: the reader judges
    again the consents that changed since, in the snapshot it reads the data from. The withdrawn
    consent's data is not read, it keeps only the size check's charge (the size check did count
    it), and its citizen is told why."""
    publish_city(client)
    people: list[Resident] = populate(client, 8)
    agg = client.app.state.aggregation  # type: ignore[attr-defined]
    queries = agg.queries
    quitter = people[3]
    frames: list[Any] = []
    read = queries.bounded_frame

    def withdraw_then_read(prepared: Any, contributing: Any, *args: Any) -> Any:
        # Past the gate and the reservation, before the reader: the citizen withdraws.
        assert quitter.consent_id in {c.consent_id for c in contributing}
        r = client.post(
            f"/v1/me/consents/{quitter.consent_id}/withdraw", headers=quitter.citizen.auth
        )
        assert r.status_code == 200, r.text
        frames.append(read(prepared, contributing, *args))
        return frames[-1]

    monkeypatch.setattr(queries, "bounded_frame", withdraw_then_read)
    view = queries.run(ANALYST, QueryRequest.model_validate(QUERY))
    assert view["status"] == "released"
    assert frames[0].lapsed == {quitter.consent_id}
    assert quitter.citizen.citizen_id not in set(frames[0].frame["citizen"].unique())
    others = {p.citizen.citizen_id for p in people} - {quitter.citizen.citizen_id}
    assert others <= set(frames[0].frame["citizen"].unique())  # every other one was read
    check, whole = view["epsilon_size_check"], view["epsilon_spent"]
    with agg.vault.reading() as s:
        budgets = {b.consent_id: b for b in s.exec(select(ConsentBudget))}
        contributions = {c.consent_id: c for c in s.exec(select(ReleaseContribution))}
    for person in people:
        consent = person.consent_id
        assert consent is not None
        quit_ = person is quitter
        assert budgets[consent].epsilon_spent == pytest.approx(check if quit_ else whole)
        assert budgets[consent].releases == (0 if quit_ else 1)
        assert contributions[consent].left_out == ("consent_changed" if quit_ else None)
    assert agg.deliver_notices() == 8
    with agg.vault.reading() as s:
        entries = agg.vault.audit.read(s, quitter.citizen.citizen_id).entries
    told = [e for e in entries if e.action.startswith("data.")]
    assert [e.action for e in told] == ["data.counted_in_size_check"]
    assert told[0].details["status"] == "released"
    assert told[0].details["left_out"] == "consent_changed"
