"""Appending batches and reading them back through the API (SQLite and PostgreSQL)."""

from __future__ import annotations

import io

import polars as pl
import pytest
from fastapi.testclient import TestClient

from tests.conftest import Citizen

ROWS = [
    {"ts": "2026-03-01T00:00:00Z", "kwh": 7.5},
    {"ts": "2026-03-02T00:00:00Z", "kwh": 8.25},
    {"ts": "2026-03-03T00:00:00Z", "kwh": 6.0},
]


def test_healthz_and_catalogue_are_public(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    types = client.get("/v1/stream-types").json()
    names = {t["name"] for t in types["stream_types"]}
    assert {
        "energy.consumption",
        "mobility.trip",
        "noise.exposure",
        "survey.response",
        "profile",
    } <= names


def test_append_json_then_read_back(alice: Citizen) -> None:
    r = alice.append("energy.consumption", ROWS)
    assert r.status_code == 201, r.text
    assert r.json()["count"] == 3 and r.json()["chunk_id"]
    page = alice.client.get(
        f"/v1/me/streams/{alice.stream('energy.consumption')}/records", headers=alice.auth
    )
    assert page.status_code == 200
    body = page.json()
    assert [rec["kwh"] for rec in body["records"]] == [7.5, 8.25, 6.0]
    assert body["records"][0]["ts"].startswith("2026-03-01T00:00:00")
    assert body["total"] == 3 and body["next_cursor"] is None


def test_append_csv_and_ndjson(alice: Citizen) -> None:
    sid = alice.stream("mobility.trip")
    csv = "ts,mode,km,minutes\n2026-03-01T08:00:00Z,bike,3.2,14\n2026-03-01T18:00:00Z,bus,5,22\n"
    r = alice.client.post(
        f"/v1/me/streams/{sid}/records",
        content=csv,
        headers={**alice.auth, "content-type": "text/csv"},
    )
    assert r.status_code == 201, r.text
    nd = '{"ts": "2026-03-02T08:00:00Z", "mode": "walk", "km": 1.0, "minutes": 12}\n'
    r = alice.client.post(
        f"/v1/me/streams/{sid}/records",
        content=nd,
        headers={**alice.auth, "content-type": "application/x-ndjson"},
    )
    assert r.status_code == 201, r.text
    records = alice.client.get(f"/v1/me/streams/{sid}/records", headers=alice.auth).json()[
        "records"
    ]
    assert [r["mode"] for r in records] == ["bike", "bus", "walk"]


def test_bad_row_rejects_the_whole_batch_naming_row_field_reason(alice: Citizen) -> None:
    rows = [*ROWS, {"ts": "2026-03-04T00:00:00Z", "kwh": 51.0}, {"ts": "nope", "kwh": 1.0}]
    r = alice.append("energy.consumption", rows)
    assert r.status_code == 422
    body = r.json()
    assert body["code"] == "invalid_batch"
    found = {(d["row"], d["field"]) for d in body["details"]}
    assert {(3, "kwh"), (4, "ts")} <= found
    assert all(d["reason"] for d in body["details"])
    listing = alice.client.get("/v1/me/streams", headers=alice.auth).json()["streams"]
    assert listing[0]["record_count"] == 0 and listing[0]["chunk_count"] == 0


def test_unknown_stream_type_is_422_naming_it(alice: Citizen) -> None:
    r = alice.client.post("/v1/me/streams", json={"stream_type": "water.use"}, headers=alice.auth)
    assert r.status_code in (404, 422)
    assert "water.use" in r.json()["message"]


def test_oversized_body_gets_413_with_the_limit(client: TestClient, alice: Citizen) -> None:
    limit = client.app.state.vault.settings.max_body_bytes  # type: ignore[attr-defined]
    sid = alice.stream("energy.consumption")
    body = b"ts,kwh\n" + b"2026-03-01T00:00:00Z,1.0\n" * (limit // 24 + 10)
    r = client.post(
        f"/v1/me/streams/{sid}/records",
        content=body,
        headers={**alice.auth, "content-type": "text/csv"},
    )
    assert r.status_code == 413
    assert str(limit) in r.json()["message"]


def test_unsupported_content_type_is_415(alice: Citizen) -> None:
    sid = alice.stream("energy.consumption")
    r = alice.client.post(
        f"/v1/me/streams/{sid}/records",
        content=b"<xml/>",
        headers={**alice.auth, "content-type": "application/xml"},
    )
    assert r.status_code == 415


def test_idempotency_key_lands_a_retried_batch_once(alice: Citizen) -> None:
    first = alice.append("energy.consumption", ROWS, **{"Idempotency-Key": "batch-1"})
    again = alice.append("energy.consumption", ROWS, **{"Idempotency-Key": "batch-1"})
    assert first.status_code == 201 and again.status_code == 201
    assert again.json()["chunk_id"] == first.json()["chunk_id"]
    assert again.json()["replayed"] is True
    other = alice.append("energy.consumption", ROWS[:1], **{"Idempotency-Key": "batch-1"})
    assert other.status_code == 422 and other.json()["details"][0]["field"] == "Idempotency-Key"
    total = alice.client.get(
        f"/v1/me/streams/{alice.stream('energy.consumption')}/records", headers=alice.auth
    ).json()["total"]
    assert total == 3


def test_time_filter_and_pagination(alice: Citizen) -> None:
    rows = [{"ts": f"2026-03-{d:02d}T12:00:00Z", "kwh": float(d)} for d in range(1, 29)]
    alice.append("energy.consumption", rows[14:])
    alice.append("energy.consumption", rows[:14])
    sid = alice.stream("energy.consumption")
    url = f"/v1/me/streams/{sid}/records"
    window = alice.client.get(
        url, params={"from": "2026-03-05", "to": "2026-03-10"}, headers=alice.auth
    ).json()
    assert [r["kwh"] for r in window["records"]] == [5.0, 6.0, 7.0, 8.0, 9.0]
    seen: list[float] = []
    cursor = None
    while True:
        params = {"limit": 10, **({"cursor": cursor} if cursor else {})}
        page = alice.client.get(url, params=params, headers=alice.auth).json()
        seen += [r["kwh"] for r in page["records"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [float(d) for d in range(1, 29)]
    bad = alice.client.get(url, params={"cursor": "garbage!"}, headers=alice.auth)
    assert bad.status_code == 422 and bad.json()["details"][0]["field"] == "cursor"


@pytest.mark.parametrize(
    "accept", ["text/csv", "application/vnd.apache.parquet", "application/x-ndjson"]
)
def test_content_negotiation(alice: Citizen, accept: str) -> None:
    alice.append("energy.consumption", ROWS)
    r = alice.client.get(
        f"/v1/me/streams/{alice.stream('energy.consumption')}/records",
        headers={**alice.auth, "accept": accept},
    )
    assert r.status_code == 200
    assert r.headers["content-type"].startswith(accept)
    if accept == "text/csv":
        frame = pl.read_csv(io.BytesIO(r.content))
    elif accept == "application/x-ndjson":
        frame = pl.read_ndjson(io.BytesIO(r.content))
    else:
        frame = pl.read_parquet(io.BytesIO(r.content))
    assert frame["kwh"].to_list() == [7.5, 8.25, 6.0]


def test_unacceptable_format_is_406(alice: Citizen) -> None:
    r = alice.client.get(
        f"/v1/me/streams/{alice.stream('energy.consumption')}/records",
        headers={**alice.auth, "accept": "image/png"},
    )
    assert r.status_code == 406


def test_many_single_record_writes_are_compacted_on_read(
    client: TestClient, alice: Citizen
) -> None:
    n = client.app.state.vault.settings.compact_min_chunks + 4  # type: ignore[attr-defined]
    for day in range(n):
        assert (
            alice.append(
                "noise.exposure", [{"ts": f"2026-04-01T{day % 24:02d}:00:00Z", "db": 40.0 + day}]
            ).status_code
            == 201
        )
    sid = alice.stream("noise.exposure")
    before = alice.client.get(f"/v1/me/streams/{sid}", headers=alice.auth).json()
    assert before["chunk_count"] == n
    records = alice.client.get(f"/v1/me/streams/{sid}/records", headers=alice.auth).json()
    after = alice.client.get(f"/v1/me/streams/{sid}", headers=alice.auth).json()
    assert after["chunk_count"] == 1 and after["record_count"] == n
    assert sorted(r["db"] for r in records["records"]) == [40.0 + d for d in range(n)]


def test_every_protected_route_needs_a_token(client: TestClient) -> None:
    for method, path in [
        ("get", "/v1/me"),
        ("get", "/v1/me/streams"),
        ("post", "/v1/me/streams"),
        ("get", "/v1/me/audit"),
        ("get", "/v1/me/export"),
        ("get", "/v1/me/streams/x/records"),
    ]:
        r = getattr(client, method)(path)
        assert r.status_code == 401, (path, r.status_code)
        assert r.headers["www-authenticate"].startswith("Bearer")


def test_audit_log_records_writes_reads_and_exports(alice: Citizen) -> None:
    alice.append("energy.consumption", ROWS)
    alice.client.get(
        f"/v1/me/streams/{alice.stream('energy.consumption')}/records", headers=alice.auth
    )
    alice.client.get("/v1/me/export", headers=alice.auth)
    audit = alice.client.get("/v1/me/audit", headers=alice.auth).json()
    actions = [e["action"] for e in audit["entries"]]
    assert audit["intact"] is True
    for action in (
        "account.created",
        "session.started",
        "stream.created",
        "records.appended",
        "records.read",
        "export.created",
    ):
        assert action in actions


def test_api_docs_are_served_without_the_internet(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    assert (
        "http://" not in page.text.replace("http://www.w3.org", "") and "https://" not in page.text
    )
    for asset in ("/static/swagger/swagger-ui-bundle.js", "/static/swagger/swagger-ui.css"):
        assert client.get(asset).status_code == 200


def test_the_stream_list_matches_each_stream_summary(alice: Citizen) -> None:
    """``GET /v1/me/streams`` (one query for all streams) says what each stream's own page says."""
    energy = alice.stream("energy.consumption")
    noise = alice.stream("noise.exposure")
    alice.stream("mobility.trip")  # empty: no chunks yet
    for day in range(1, 4):
        assert (
            alice.append(
                "energy.consumption", [{"ts": f"2026-03-0{day}T00:00:00Z", "kwh": 1.0 + day}] * day
            ).status_code
            == 201
        )
    assert (
        alice.append("noise.exposure", [{"ts": "2026-03-01T00:00:00Z", "db": 55}]).status_code
        == 201
    )
    listed = alice.client.get("/v1/me/streams", headers=alice.auth).json()["streams"]
    assert len(listed) == 3
    for item in listed:
        alone = alice.client.get(f"/v1/me/streams/{item['id']}", headers=alice.auth).json()
        assert item == alone
    by_id = {item["id"]: item for item in listed}
    assert (by_id[energy]["chunk_count"], by_id[energy]["record_count"]) == (3, 6)
    assert (by_id[noise]["chunk_count"], by_id[noise]["record_count"]) == (1, 1)


def test_a_chunk_written_on_the_driver_stores_its_time_as_the_orm_does(alice: Citizen) -> None:
    """The append path writes chunks on the driver connection (vault.repositories.write_path);
    their time must be stored exactly as the ORM would store it, so that time comparisons in
    SQL and reads through the ORM agree with rows the ORM wrote (and SQLite's deprecated default
    datetime adapter is never used)."""
    from sqlalchemy import text
    from sqlmodel import select

    from vault.models import Chunk
    from vault.repositories import driver_sql

    assert alice.append("energy.consumption", ROWS).status_code == 201
    rt = alice.client.app.state.vault  # type: ignore[attr-defined]
    with rt.reading() as session:
        stream_id = alice.stream("energy.consumption")
        chunk = session.exec(select(Chunk).where(Chunk.stream_id == stream_id)).one()
        stored = session.execute(
            text("SELECT created_at FROM chunks WHERE id = :c"), {"c": chunk.id}
        ).scalar_one()
        as_the_orm_binds = driver_sql.binder(session, Chunk.__table__.c.created_at)  # type: ignore[attr-defined]
    assert chunk.created_at.utcoffset() is not None  # read back aware, in UTC
    # SQLite: the very text the ORM writes ('YYYY-MM-DD HH:MM:SS.ffffff', no zone suffix);
    # PostgreSQL: the same instant.
    assert stored == as_the_orm_binds(chunk.created_at), stored
