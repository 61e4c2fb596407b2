"""Flipping one byte of any stored ciphertext or associated data makes that read fail with a clear
integrity error; nothing else is affected."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlmodel import Session

from tests.conftest import Citizen

ROWS = [{"ts": "2026-03-01T00:00:00Z", "kwh": 7.5}, {"ts": "2026-03-02T00:00:00Z", "kwh": 8.0}]


def _flip(blob: bytes, index: int) -> bytes:
    index %= len(blob)
    return blob[:index] + bytes([blob[index] ^ 0x80]) + blob[index + 1 :]


TAMPERINGS = {
    "ciphertext first byte (nonce)": (
        "UPDATE chunks SET ciphertext = :v WHERE id = :id",
        "ciphertext",
        0,
    ),
    "ciphertext middle byte": (
        "UPDATE chunks SET ciphertext = :v WHERE id = :id",
        "ciphertext",
        60,
    ),
    "ciphertext last byte (tag)": (
        "UPDATE chunks SET ciphertext = :v WHERE id = :id",
        "ciphertext",
        -1,
    ),
    "sealed chunk key": ("UPDATE chunks SET sealed_key = :v WHERE id = :id", "sealed_key", 5),
    "associated data: sequence": ("UPDATE chunks SET seq = seq + 100 WHERE id = :id", None, 0),
    "associated data: schema version": (
        "UPDATE chunks SET schema_version = 2 WHERE id = :id",
        None,
        0,
    ),
}


@pytest.mark.parametrize("what", list(TAMPERINGS))
def test_a_flipped_byte_fails_that_read_only(
    client: TestClient, alice: Citizen, bob: Citizen, what: str
) -> None:
    alice.append("energy.consumption", ROWS)
    alice.append("noise.exposure", [{"ts": "2026-03-01T00:00:00Z", "db": 55.0}])
    bob.append("energy.consumption", ROWS)
    target = alice.stream("energy.consumption")
    engine = client.app.state.vault.engine  # type: ignore[attr-defined]
    statement, column, index = TAMPERINGS[what]
    with Session(engine) as session:
        chunk_id, ciphertext, sealed = session.execute(
            text("SELECT id, ciphertext, sealed_key FROM chunks WHERE stream_id = :s"),
            {"s": target},
        ).one()
        value = {"ciphertext": ciphertext, "sealed_key": sealed}.get(column or "", b"")
        session.execute(
            text(statement), {"id": chunk_id, "v": _flip(value, index) if column else None}
        )
        session.commit()

    r = client.get(f"/v1/me/streams/{target}/records", headers=alice.auth)
    assert r.status_code == 500
    body = r.json()
    assert body["code"] == "integrity_error"
    assert chunk_id in body["message"] and "tampered" in body["message"]
    # Nothing else is affected: Alice's other stream and Bob's stream still read.
    other = client.get(
        f"/v1/me/streams/{alice.stream('noise.exposure')}/records", headers=alice.auth
    )
    assert other.status_code == 200 and other.json()["records"][0]["db"] == 55.0
    bobs = client.get(
        f"/v1/me/streams/{bob.stream('energy.consumption')}/records", headers=bob.auth
    )
    assert bobs.status_code == 200 and len(bobs.json()["records"]) == 2


def test_a_chunk_moved_to_another_stream_does_not_open(client: TestClient, alice: Citizen) -> None:
    alice.append("energy.consumption", ROWS)
    alice.append("noise.exposure", [{"ts": "2026-03-01T00:00:00Z", "db": 55.0}])
    engine = client.app.state.vault.engine  # type: ignore[attr-defined]
    energy, noise = alice.stream("energy.consumption"), alice.stream("noise.exposure")
    with Session(engine) as session:
        # Re-point the noise chunk at the energy stream, keeping its key reference.
        session.execute(
            text("UPDATE chunks SET stream_id = :e, seq = 99 WHERE stream_id = :n"),
            {"e": energy, "n": noise},
        )
        session.commit()
    r = client.get(f"/v1/me/streams/{energy}/records", headers=alice.auth)
    assert r.status_code == 500 and r.json()["code"] == "integrity_error"
