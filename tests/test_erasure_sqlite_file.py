"""On SQLite, erased key material is gone from the database file and its WAL, not only from rows
(secure_delete plus a WAL checkpoint). PostgreSQL is covered by the row checks in test_erasure.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from server.migrate import upgrade_to_head
from tests.conftest import DEFAULT_PASSPHRASE, Citizen
from tests.test_erasure import rows_of
from vault.models import Citizen as CitizenRow


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str]:
    """This module is about the SQLite file itself, so it runs on SQLite only."""
    url = f"sqlite:///{(tmp_path / 'civic.db').as_posix()}"
    upgrade_to_head(url)
    yield url


def test_sqlite_file_keeps_no_trace_of_erased_key_material(
    client: TestClient, alice: Citizen, database_url: str
) -> None:
    if not database_url.startswith("sqlite"):
        pytest.skip(
            "the on-disk check is for SQLite files; PostgreSQL is covered by the row checks"
        )  # noqa
    from pathlib import Path

    alice.append("energy.consumption", [{"ts": "2026-01-01T00:00:00Z", "kwh": 9.5}])
    engine = client.app.state.vault.engine  # type: ignore[attr-defined]
    with Session(engine) as session:
        row = session.exec(select(CitizenRow).where(CitizenRow.id == alice.citizen_id)).one()
        blobs = [row.root_by_passphrase, row.root_by_recovery]
        blobs += [k.sealed_to_owner for k in rows_of(session, alice.citizen_id)["keys"]]
        session.rollback()
    r = client.request(
        "DELETE", "/v1/me", json={"passphrase": DEFAULT_PASSPHRASE}, headers=alice.auth
    )
    assert r.status_code == 200
    db = Path(database_url.removeprefix("sqlite:///"))
    disk = db.read_bytes() + (
        db.with_name(db.name + "-wal").read_bytes()
        if db.with_name(db.name + "-wal").exists()
        else b""
    )
    for blob in blobs:
        assert blob and blob[-32:] not in disk
