"""A rejected batch leaves the store exactly as it was; an accepted one adds exactly its rows
(Hypothesis: random mixtures of valid and invalid rows, through the API, on SQLite and PostgreSQL)."""

from __future__ import annotations

import hashlib
from typing import Any

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlmodel import Session

from tests.conftest import Citizen

TABLES = [
    "citizens",
    "streams",
    "stream_keys",
    "chunks",
    "idempotent_batches",
    "audit_entries",
    "audit_heads",
]

valid_row = st.fixed_dictionaries(
    {
        "ts": st.datetimes(
            min_value=__import__("datetime").datetime(2020, 1, 1),
            max_value=__import__("datetime").datetime(2030, 1, 1),
        ).map(lambda d: d.strftime("%Y-%m-%dT%H:%M:%SZ")),
        "mode": st.sampled_from(["walk", "bike", "bus", "metro", "car", "other"]),
        "km": st.floats(min_value=0, max_value=100, allow_nan=False),
        "minutes": st.floats(min_value=0, max_value=240, allow_nan=False),
    }
)
bad_row = st.one_of(
    valid_row.map(lambda r: {**r, "km": 100.5}),
    valid_row.map(lambda r: {**r, "minutes": -1}),
    valid_row.map(lambda r: {**r, "mode": "teleport"}),
    valid_row.map(lambda r: {**r, "ts": "yesterday"}),
    valid_row.map(lambda r: {k: v for k, v in r.items() if k != "km"}),
    valid_row.map(lambda r: {**r, "colour": "red"}),
    valid_row.map(lambda r: {**r, "km": "far"}),
)
batches = st.lists(st.tuples(st.booleans(), valid_row, bad_row), min_size=1, max_size=30)


def snapshot(session: Session) -> dict[str, str]:
    """A fingerprint of every row of every vault table."""
    out = {}
    for table in TABLES:
        rows = session.execute(text(f"SELECT * FROM {table}")).all()
        out[table] = hashlib.sha256(repr(sorted(map(repr, rows))).encode()).hexdigest()
    return out


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batch=batches, idempotency=st.booleans())
def test_a_rejected_batch_changes_nothing(
    client: TestClient, alice: Citizen, batch: list[Any], idempotency: bool
) -> None:
    sid = alice.stream("mobility.trip")
    rows = [good if ok else bad for ok, good, bad in batch]
    invalid = [i for i, (ok, _, _) in enumerate(batch) if not ok]
    engine = client.app.state.vault.engine  # type: ignore[attr-defined]
    with Session(engine) as session:
        before = snapshot(session)
        records_before = session.execute(
            text("SELECT COALESCE(SUM(record_count), 0) FROM chunks")
        ).scalar_one()
    headers = {
        **alice.auth,
        **(
            {"Idempotency-Key": hashlib.md5(repr(rows).encode()).hexdigest()} if idempotency else {}
        ),
    }  # noqa: S324
    r = client.post(f"/v1/me/streams/{sid}/records", json=rows, headers=headers)
    with Session(engine) as session:
        after = snapshot(session)
        records_after = session.execute(
            text("SELECT COALESCE(SUM(record_count), 0) FROM chunks")
        ).scalar_one()
    if invalid:
        assert r.status_code == 422, r.text
        assert {d["row"] for d in r.json()["details"]} == set(invalid)
        assert after == before
    else:
        assert r.status_code == 201, r.text
        if not r.json()["replayed"]:
            assert records_after == records_before + len(rows)
