"""Change revisions (migration 0005) and the warm path that trusts them.

* Every write a release reads raises a revision, on SQLite and PostgreSQL: the citizen's
  ``consent_revision`` for their consents, consent events, key grants and verify key; the
  stream's ``chunk_revision`` for its chunks and its keys' public halves. Writes made through the
  service and raw SQL alike (the triggers are the database's, not the application's), and only the
  owner's counters move.
* The admission memo and the material fingerprints change nothing: after any sequence of
  withdrawals, new consents, narrowed terms and new records, the warm gate admits exactly what a
  fresh gate admits, at any time, and the warm frame is byte-identical to a frame made without any
  memo.
* Their bounds: refused judgments are judged again, shapes are bounded, fingerprints cover every
  part, erasure empties both.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from aggregation import consent_gate
from aggregation.admission_memo import AdmissionMemo, Judgment
from aggregation.bounded_shards import BoundedShards
from aggregation.contributions import CITIZEN
from aggregation.material_revisions import MaterialDigests, shard_fingerprint
from aggregation.query_service import QueryService
from aggregation.query_spec import QueryRequest
from aggregation.repository import CandidateRevision
from aggregation.sealed_material import ContributingConsent
from consent.decision import AccessRequest
from consent.terms import DPLimits
from server.migrate import upgrade_to_head
from tests.aggregation_support import (
    DISTRICTS,
    QUERY,
    SMALL,
    aggregation_settings,
    energy_rows,
    populate,
    publish_city,
    resident,
)
from tests.conftest import DEFAULT_PASSPHRASE, Citizen
from tests.test_aggregation_bounding import spec
from vault.clock import utcnow

# -- the triggers -------------------------------------------------------------------------------


@pytest.fixture
def city(tmp_path: Path, database_url: str) -> Iterator[tuple[TestClient, list[Any]]]:
    from server.app import create_app

    upgrade_to_head(database_url)
    app = create_app(aggregation_settings(tmp_path, database_url))
    with TestClient(app, base_url="https://testserver") as client:
        publish_city(client)
        yield client, populate(client, 2)


def _revisions(client: TestClient, citizen_id: str) -> tuple[int, dict[str, int]]:
    rt = client.app.state.vault  # type: ignore[attr-defined]
    with rt.reading() as session:
        consent = session.execute(
            text("SELECT consent_revision FROM citizens WHERE id = :c"), {"c": citizen_id}
        ).scalar_one()
        streams = session.execute(
            text("SELECT stream_type, chunk_revision FROM streams WHERE citizen_id = :c"),
            {"c": citizen_id},
        ).all()
    return int(consent), {t: int(r) for t, r in streams}


def _raw(client: TestClient, statement: str, **params: Any) -> None:
    rt = client.app.state.vault  # type: ignore[attr-defined]
    with rt.unit_of_work() as session:
        assert session.execute(text(statement), params).rowcount >= 1  # type: ignore[attr-defined]


def test_every_write_a_release_reads_raises_a_revision(
    city: tuple[TestClient, list[Any]],
) -> None:
    client, (alice, bob) = city
    me = alice.citizen.citizen_id
    energy = "energy.consumption"

    def consent_rises(action: Any) -> None:
        before, bob_before = _revisions(client, me), _revisions(client, bob.citizen.citizen_id)
        action()
        after = _revisions(client, me)
        assert after[0] > before[0], action
        assert after[1] == before[1], action  # chunks did not change
        assert _revisions(client, bob.citizen.citizen_id) == bob_before  # only the owner's

    def chunks_rise(action: Any) -> None:
        before, bob_before = _revisions(client, me), _revisions(client, bob.citizen.citizen_id)
        action()
        after = _revisions(client, me)
        assert after[1][energy] > before[1][energy], action
        assert after[1]["profile"] == before[1]["profile"]
        assert _revisions(client, bob.citizen.citizen_id) == bob_before

    # Through the service.
    chunks_rise(lambda: alice.citizen.append(energy, energy_rows([5.0])))
    consent_rises(
        lambda: client.post(
            f"/v1/me/consents/{alice.consent_id}/withdraw", headers=alice.citizen.auth
        ).raise_for_status()
    )
    consent_rises(
        lambda: client.post(
            f"/v1/me/requests/{SMALL}/accept", headers=alice.citizen.auth
        ).raise_for_status()
    )
    # Raw SQL: no write path, however written, can leave a counter behind.
    consent_id = alice.consent_id
    consent_rises(
        lambda: _raw(client, "UPDATE consents SET status = status WHERE citizen_id = :c", c=me)
    )
    consent_rises(
        lambda: _raw(
            client,
            "UPDATE consent_events SET event_json = event_json WHERE consent_id = :c",
            c=consent_id,
        )
    )
    consent_rises(
        lambda: _raw(
            client,
            "UPDATE key_grants SET sealed_key = sealed_key WHERE consent_id IN "
            "(SELECT id FROM consents WHERE citizen_id = :c)",
            c=me,
        )
    )
    consent_rises(
        lambda: _raw(
            client,
            "DELETE FROM key_grants WHERE consent_id IN "
            "(SELECT id FROM consents WHERE citizen_id = :c)",
            c=me,
        )
    )
    consent_rises(
        lambda: _raw(client, "DELETE FROM consent_events WHERE consent_id = :c", c=consent_id)
    )
    consent_rises(
        lambda: _raw(client, "UPDATE citizens SET verify_key = :k WHERE id = :c", k=b"x" * 32, c=me)
    )
    stream = f"(SELECT id FROM streams WHERE citizen_id = '{me}' AND stream_type = '{energy}')"
    chunks_rise(
        lambda: _raw(
            client, f"UPDATE chunks SET ciphertext = ciphertext WHERE stream_id = {stream}"
        )  # noqa: S608
    )
    chunks_rise(
        lambda: _raw(
            client,
            f"UPDATE stream_keys SET public_key = :k WHERE stream_id = {stream}",  # noqa: S608
            k=b"y" * 32,
        )
    )
    chunks_rise(lambda: _raw(client, f"DELETE FROM chunks WHERE stream_id = {stream}"))  # noqa: S608
    # A failed login writes the citizen's row but none of what a release reads.
    before = _revisions(client, me)
    _raw(client, "UPDATE citizens SET failed_logins = failed_logins + 1 WHERE id = :c", c=me)
    assert _revisions(client, me) == before


# -- the warm path changes nothing --------------------------------------------------------------


def _town(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, list[Any]]]:
    from server.app import create_app

    tmp: Path = tmp_path_factory.mktemp("revisions")
    url = f"sqlite:///{(tmp / 'civic.db').as_posix()}"
    upgrade_to_head(url)
    app = create_app(aggregation_settings(tmp, url))
    with TestClient(app, base_url="https://testserver") as client:
        publish_city(client)
        yield client, populate(client, 8, seed=5)


@pytest.fixture(scope="module")
def town(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, list[Any]]]:
    yield from _town(tmp_path_factory)


@pytest.fixture(scope="module")
def lapse_town(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, list[Any]]]:
    """A town of its own for the re-judging test (the changes above are never undone)."""
    yield from _town(tmp_path_factory)


def _fresh_queries(client: TestClient) -> QueryService:
    """A query service with no memo of any kind (what a cold process computes)."""
    agg = client.app.state.aggregation  # type: ignore[attr-defined]
    live: QueryService = agg.queries
    return QueryService(
        agg.vault, agg.settings, agg.ledger, agg.runner, live._cache, BoundedShards(0)
    )


def _gate_and_frame(
    client: TestClient, queries: QueryService, at_offset: timedelta
) -> tuple[list[Any], bytes]:
    agg = client.app.state.aggregation  # type: ignore[attr-defined]
    # Every record counts (no bound below what a citizen holds), so any new record shows.
    body = QUERY | {"max_records_per_citizen": 1000}
    prepared = queries.prepare(QueryRequest.model_validate(body))
    at = utcnow() + at_offset
    with agg.vault.reading() as session:
        admitted = consent_gate.admit(
            session, agg.vault.consents, prepared.query, at, queries.admissions
        )
    frame = queries.bounded_frame(
        prepared,
        [ContributingConsent(a.consent_id, a.citizen_id, a.terms_sha256) for a in admitted],
    ).frame
    return admitted, frame.write_ipc(None).getvalue()


ACTIONS = st.lists(
    st.tuples(
        st.sampled_from(
            [
                "withdraw",
                "accept",
                "narrow",
                "record",
                "profile",
                "tamper",
                "rekey",
                "touch",
                "nothing",
            ]
        ),
        st.integers(0, 7),
    ),
    min_size=1,
    max_size=4,
)


def _apply(client: TestClient, people: list[Any], actions: list[tuple[str, int]]) -> None:
    """Make the changes ``actions`` name, through the service or past it."""
    for action, who in actions:
        person = people[who]
        c: Citizen = person.citizen
        if action in ("withdraw", "narrow") and person.consent_id:
            r = client.post(f"/v1/me/consents/{person.consent_id}/withdraw", headers=c.auth)
            assert r.status_code < 500, r.text  # a tampered consent may not be withdrawable
            if r.status_code in (200, 204):
                person.consent_id = None
        if action in ("accept", "narrow") and not person.consent_id:
            # Narrowed terms refuse the query's statistics: a refusal the memo keeps.
            narrowing = {"statistics": ["count", "sum"]} if action == "narrow" else None
            r = client.post(f"/v1/me/requests/{SMALL}/accept", json=narrowing, headers=c.auth)
            assert r.status_code < 500, r.text
            if r.status_code in (200, 201):
                person.consent_id = r.json()["id"]
        elif action == "tamper" and person.consent_id:
            # Written past the service: the stored event no longer verifies, the status column
            # still says given. Only the revision tells the memo.
            _raw(
                client,
                "UPDATE consent_events SET event_json = replace(event_json, '\"given\"', "
                "'\"withdrawn\"') WHERE consent_id = :c",
                c=person.consent_id,
            )
        elif action == "touch" and person.consent_id:
            # The revision moves, nothing the gate reads changes.
            _raw(
                client,
                "UPDATE consents SET status = status WHERE id = :c",
                c=person.consent_id,
            )
        elif action == "rekey":
            _raw(
                client,
                "UPDATE citizens SET verify_key = :k WHERE id = :c",
                k=bytes(32),
                c=c.citizen_id,
            )
        elif action == "record":
            assert (
                c.append("energy.consumption", energy_rows([float(who) + 0.25])).status_code == 201
            )
        elif action == "profile":
            row = {
                "ts": utcnow().isoformat().replace("+00:00", "Z"),
                "district": DISTRICTS[(who + 1) % 3],
                "age_band": "30-44",
                "household_size": 3,
            }
            assert c.append("profile", [row]).status_code == 201


@given(actions=ACTIONS, offset_days=st.sampled_from([0, 0, 3, -400, 800]))
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_the_warm_gate_and_frame_equal_a_fresh_one_after_any_changes(
    town: tuple[TestClient, list[Any]], actions: list[tuple[str, int]], offset_days: int
) -> None:
    client, people = town
    live = client.app.state.aggregation.queries  # type: ignore[attr-defined]
    offset = timedelta(days=offset_days)
    _gate_and_frame(client, live, offset)  # the memos hold this state now
    _apply(client, people, actions)
    warm_admitted, warm_frame = _gate_and_frame(client, live, offset)
    fresh_admitted, fresh_frame = _gate_and_frame(client, _fresh_queries(client), offset)
    assert warm_admitted == fresh_admitted
    assert warm_frame == fresh_frame
    if offset_days in (-400, 800):  # before the consents start, after they end
        assert warm_admitted == []


def _admitted_now(client: TestClient, queries: QueryService) -> tuple[Any, list[Any]]:
    agg = client.app.state.aggregation  # type: ignore[attr-defined]
    prepared = queries.prepare(
        QueryRequest.model_validate(QUERY | {"max_records_per_citizen": 1000})
    )
    with agg.vault.reading() as session:
        admitted = consent_gate.admit(
            session, agg.vault.consents, prepared.query, utcnow(), queries.admissions
        )
    contributing = [
        ContributingConsent(a.consent_id, a.citizen_id, a.terms_sha256, a.revision)
        for a in admitted
    ]
    return prepared, contributing


@given(actions=ACTIONS)
@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_consents_changed_after_the_gate_are_judged_again_before_their_data_is_read(
    lapse_town: tuple[TestClient, list[Any]], actions: list[tuple[str, int]]
) -> None:
    """Withdrawal excludes at once, even from a query past its gate: whatever changes land
    between the gate and the reader, the reader leaves out exactly the admitted consents that a
    judgment made now no longer allows with the same terms (``lapsed``), and its frame is the
    frame of the others, byte for byte, as a service with no memo reads it."""
    client, people = lapse_town
    agg = client.app.state.aggregation  # type: ignore[attr-defined]
    live: QueryService = agg.queries
    prepared, contributing = _admitted_now(client, live)
    _apply(client, people, actions)
    got = live.bounded_frame(prepared, contributing)
    # An independent judgment of every stored consent, now (no memo, no revisions).
    now = utcnow()
    with agg.vault.reading() as session:
        evidence = consent_gate.gather_evidence(session, agg.vault.consents, "energy", now)
    allowed = {
        (a.consent_id, a.terms_sha256)
        for a in consent_gate.judge(evidence, consent_gate.access_request(prepared.query, now))
    }
    kept = [c for c in contributing if (c.consent_id, c.terms_sha256) in allowed]
    event(f"lapsed: {'some' if got.lapsed else 'none'}")
    assert got.lapsed == {c.consent_id for c in contributing} - {c.consent_id for c in kept}
    fresh = _fresh_queries(client).bounded_frame(
        prepared, [dataclasses.replace(c, revision=None) for c in kept]
    )
    assert fresh.lapsed == frozenset()
    assert got.frame.write_ipc(None).getvalue() == fresh.frame.write_ipc(None).getvalue()


def test_a_consent_whose_revision_moved_but_that_still_allows_the_query_is_read(
    town: tuple[TestClient, list[Any]],
) -> None:
    """Judging again must not over-exclude: a write that raises the citizen's revision without
    changing what the gate decides on leaves the consent in, and its data is read."""
    client, _ = town
    live = client.app.state.aggregation.queries  # type: ignore[attr-defined]
    person = resident(client, "touched", DISTRICTS[0], [3.0, 5.0])
    prepared, contributing = _admitted_now(client, live)
    assert person.consent_id in {c.consent_id for c in contributing}
    before = _revisions(client, person.citizen.citizen_id)[0]
    _raw(client, "UPDATE consents SET status = status WHERE id = :c", c=person.consent_id)
    assert _revisions(client, person.citizen.citizen_id)[0] > before  # it will be judged again
    got = live.bounded_frame(prepared, contributing)
    assert got.lapsed == frozenset()
    assert person.citizen.citizen_id in set(got.frame[CITIZEN].unique())


def test_a_consent_that_no_longer_verifies_is_left_out_though_its_grants_still_open(
    town: tuple[TestClient, list[Any]],
) -> None:
    """The grants alone do not decide: a consent whose stored history was altered after the gate
    (its grants untouched, so its chunks would still open) is judged again, refused, and none
    of its data is read."""
    client, _ = town
    live = client.app.state.aggregation.queries  # type: ignore[attr-defined]
    person = resident(client, "altered", DISTRICTS[1], [4.0, 7.0])
    prepared, contributing = _admitted_now(client, live)
    assert person.consent_id in {c.consent_id for c in contributing}
    _raw(
        client,
        "UPDATE consent_events SET event_json = replace(event_json, '\"given\"', "
        "'\"withdrawn\"') WHERE consent_id = :c",
        c=person.consent_id,
    )
    got = live.bounded_frame(prepared, contributing)
    assert got.lapsed == {person.consent_id}
    assert person.citizen.citizen_id not in set(got.frame[CITIZEN].unique())
    # Without the revisions (nothing judged again) its data would have been read.
    blind = [dataclasses.replace(c, revision=None) for c in contributing]
    assert person.citizen.citizen_id in set(
        live.bounded_frame(prepared, blind).frame[CITIZEN].unique()
    )


def test_the_check_above_can_fail_a_stale_revision_would_show(
    town: tuple[TestClient, list[Any]],
) -> None:
    """If a write did not raise the revision, the warm path would keep the old frame: the
    equality above depends on the triggers. Simulated by undoing a revision after a write."""
    client, _ = town
    live = client.app.state.aggregation.queries  # type: ignore[attr-defined]
    person = resident(client, "stale", DISTRICTS[1], [2.0, 3.0])
    _gate_and_frame(client, live, timedelta(0))
    admitted, before = _gate_and_frame(client, live, timedelta(0))
    assert person.citizen.citizen_id in {a.citizen_id for a in admitted}
    stream = "(SELECT id FROM streams WHERE citizen_id = :c AND stream_type = 'energy.consumption')"
    with client.app.state.vault.reading() as session:  # type: ignore[attr-defined]
        revision = session.execute(
            text(f"SELECT chunk_revision FROM streams WHERE id = {stream}"),  # noqa: S608
            {"c": person.citizen.citizen_id},
        ).scalar_one()
    assert person.citizen.append("energy.consumption", energy_rows([49.0])).status_code == 201
    _raw(
        client,
        f"UPDATE streams SET chunk_revision = :r WHERE id = {stream}",  # noqa: S608
        r=revision,
        c=person.citizen.citizen_id,
    )
    stale = _gate_and_frame(client, live, timedelta(0))[1]
    fresh = _gate_and_frame(client, _fresh_queries(client), timedelta(0))[1]
    assert stale == before != fresh


def test_the_reader_sees_changes_committed_after_the_gate(
    town: tuple[TestClient, list[Any]],
) -> None:
    """The material's revisions are read by the reader itself, not taken from the gate: a grant
    that stops opening between the gate and the reader leaves that citizen out, as a fresh read
    does, instead of reusing the remembered frame."""
    client, _ = town
    live = client.app.state.aggregation.queries  # type: ignore[attr-defined]
    person = resident(client, "late", DISTRICTS[2], [4.0, 6.0])
    _gate_and_frame(client, live, timedelta(0))
    agg = client.app.state.aggregation  # type: ignore[attr-defined]
    body = QUERY | {"max_records_per_citizen": 1000}
    prepared = live.prepare(QueryRequest.model_validate(body))
    with agg.vault.reading() as session:
        admitted = consent_gate.admit(
            session, agg.vault.consents, prepared.query, utcnow(), live.admissions
        )
    contributing = [
        ContributingConsent(a.consent_id, a.citizen_id, a.terms_sha256) for a in admitted
    ]
    assert person.citizen.citizen_id in {c.citizen_id for c in contributing}
    before = live.bounded_frame(prepared, contributing).frame
    _raw(  # after the gate, before the reader: the grants no longer open
        client,
        "UPDATE key_grants SET sealed_key = :k WHERE consent_id = :c",
        k=bytes(80),
        c=person.consent_id,
    )
    after = live.bounded_frame(prepared, contributing).frame
    fresh = _fresh_queries(client).bounded_frame(prepared, contributing).frame
    assert after.equals(fresh)
    assert person.citizen.citizen_id in set(before[CITIZEN].unique())
    assert person.citizen.citizen_id not in set(after[CITIZEN].unique())


# -- bounds -------------------------------------------------------------------------------------


def _request(at_day: int = 0, epsilon: float = 1.0) -> AccessRequest:
    return AccessRequest(
        recipient_kind="department",
        recipient_id="energy",
        purpose="energy-planning",
        stream_type="energy.consumption",
        fields=("kwh",),
        operation="dp_aggregate",
        statistics=("count",),
        group_by=(),
        epsilon=epsilon,
        at=utcnow() + timedelta(days=at_day),
    )


def _admitted(consent_id: str, revision: int) -> consent_gate.AdmittedConsent:
    now = utcnow()
    return consent_gate.AdmittedConsent(
        consent_id=consent_id,
        citizen_id="c-" + consent_id,
        terms_sha256="0" * 64,
        not_before=now - timedelta(days=1),
        not_after=now + timedelta(days=10),
        limits=DPLimits(
            epsilon_per_period=1.0, period="P1M", min_group_size=1, max_releases_per_period=5
        ),
        revision=revision,
    )


def test_the_memo_recalls_only_what_holds() -> None:
    memo = AdmissionMemo(max_shapes=2)
    ok = _admitted("a", 3)
    window = (ok.not_before, ok.not_after)
    memo.remember(_request(), {"a": Judgment(3, ok, *window), "b": Judgment(1, None, *window)})
    candidates = [CandidateRevision("a", "c-a", 3), CandidateRevision("b", "c-b", 1)]
    admitted, unknown, holding = memo.recall(_request(), candidates)
    assert admitted == [ok] and unknown == [] and set(holding) == {"a", "b"}
    # Another revision, another time outside the window, another shape: judged again.
    moved = [CandidateRevision("a", "c-a", 4), CandidateRevision("b", "c-b", 1)]
    assert memo.recall(_request(), moved)[1] == [moved[0]]
    assert memo.recall(_request(at_day=20), candidates)[1] == candidates
    assert memo.recall(_request(at_day=-2), candidates)[1] == candidates
    assert memo.recall(_request(epsilon=0.5), candidates)[1] == candidates
    # Bounded in shapes, least recently used out; forgotten on demand.
    memo.remember(_request(epsilon=0.5), {})
    memo.remember(_request(epsilon=0.25), {})
    assert memo.recall(_request(), candidates)[1] == candidates
    memo.remember(_request(), {"a": Judgment(3, ok, *window)})
    # Bounded in judgments too, beyond the newest shape.
    small = AdmissionMemo(max_judgments=1)
    small.remember(_request(), {"a": Judgment(3, ok, *window)})
    small.remember(_request(epsilon=0.5), {"a": Judgment(3, ok, *window)})
    assert len(small) == 1 and small.recall(_request(), candidates)[1] == candidates
    memo.forget()
    assert len(memo) == 0 and memo.recall(_request(), candidates)[1] == candidates


def test_a_fingerprint_covers_every_part() -> None:
    shard = [ContributingConsent("cons1", "cit1", "d" * 64)]
    revisions = {"cit1": 2}
    stream = ("s1", "energy.consumption", 5, "k1")
    streams = {"cit1": [stream]}

    def fingerprint(**changed: Any) -> bytes:
        given = {
            "shard": shard,
            "revisions": revisions,
            "streams": streams,
            "service_public": b"p" * 32,
            "spec": spec(3),
        } | changed
        return shard_fingerprint(**given)

    base = fingerprint()
    variants = [
        fingerprint(shard=[dataclasses.replace(shard[0], **{f: v})])
        for f, v in [("consent_id", "cons2"), ("citizen_id", "cit2"), ("terms_sha256", "e" * 64)]
    ]
    variants += [fingerprint(revisions={"cit1": 3}), fingerprint(revisions={})]
    variants += [
        fingerprint(streams={"cit1": [changed]})
        for changed in [
            ("s2", "energy.consumption", 5, "k1"),
            ("s1", "profile", 5, "k1"),
            ("s1", "energy.consumption", 6, "k1"),
            ("s1", "energy.consumption", 5, "k2"),
        ]
    ]
    variants += [
        fingerprint(streams={}),
        fingerprint(streams={"cit1": [stream, stream]}),
        fingerprint(service_public=b"q" * 32),
        fingerprint(spec=spec(4)),
        fingerprint(shard=shard * 2),
    ]
    assert base == fingerprint(shard=list(shard), streams=dict(streams))
    assert len({base, *variants}) == len(variants) + 1


def test_material_digests_are_bounded() -> None:
    digests = MaterialDigests(max_entries=2)
    for n in range(3):
        digests.put(bytes([n]), b"digest-%d" % n)
    assert len(digests) == 2 and digests.get(b"\x00") is None
    assert digests.get(b"\x02") == b"digest-2"
    digests.forget()
    assert len(digests) == 0


def test_erasing_a_citizen_empties_the_warm_memos(
    town: tuple[TestClient, list[Any]],
) -> None:
    client, _ = town
    live = client.app.state.aggregation.queries  # type: ignore[attr-defined]
    leaving = resident(client, "leaving", DISTRICTS[0], [3.0])
    _gate_and_frame(client, live, timedelta(0))
    assert len(live.admissions) > 0 and len(live.material) > 0
    r = client.request(
        "DELETE", "/v1/me", json={"passphrase": DEFAULT_PASSPHRASE}, headers=leaving.citizen.auth
    )
    assert r.status_code == 200, r.text
    assert len(live.admissions) == 0 and len(live.material) == 0
    admitted, _ = _gate_and_frame(client, live, timedelta(0))
    assert leaving.citizen.citizen_id not in {a.citizen_id for a in admitted}
