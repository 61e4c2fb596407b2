"""A copy of the database (the SQLite file with its WAL, or pg_dump) reveals no ingested value or
field name, and no usable token or key."""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url

from tests.conftest import Citizen

# Values chosen so that they cannot appear by chance; each is checked as text, as little-endian
# binary (how Parquet stores it) and, for pg_dump, hex-encoded as bytea is printed.
KWH = 37.918273645
MINUTES = 123.456789
NOISE = 97.31415926
QUESTIONS = "q-transit"
DISTRICT = "Greenbelt"
FIELD_NAMES = ["kwh", "household_size", "age_band", "minutes", "question", "answer"]


def ingest_everything(c: Citizen) -> None:
    assert (
        c.append("energy.consumption", [{"ts": "2026-02-01T00:00:00Z", "kwh": KWH}]).status_code
        == 201
    )
    assert (
        c.append(
            "mobility.trip",
            [{"ts": "2026-02-01T08:00:00Z", "mode": "metro", "km": 12.5, "minutes": MINUTES}],
        ).status_code
        == 201
    )
    assert (
        c.append("noise.exposure", [{"ts": "2026-02-01T00:00:00Z", "db": NOISE}]).status_code == 201
    )
    assert (
        c.append(
            "survey.response", [{"ts": "2026-02-01T00:00:00Z", "question": QUESTIONS, "answer": 4}]
        ).status_code
        == 201
    )
    assert (
        c.append(
            "profile",
            [
                {
                    "ts": "2026-02-01T00:00:00Z",
                    "district": DISTRICT,
                    "age_band": "30-44",
                    "household_size": 3,
                }
            ],
        ).status_code
        == 201
    )
    # Read once too: reads must not leave plaintext behind either.
    c.client.get(f"/v1/me/streams/{c.stream('energy.consumption')}/records", headers=c.auth)


def needles(citizen: Citizen) -> dict[str, list[bytes]]:
    out: dict[str, list[bytes]] = {}
    for value in (KWH, MINUTES, NOISE):
        out[f"value {value}"] = [repr(value).encode(), struct.pack("<d", value)]
    out["category Greenbelt"] = [DISTRICT.encode()]
    out["category q-transit"] = [QUESTIONS.encode()]
    for name in FIELD_NAMES:
        out[f"field name {name}"] = [
            f'"{name}"'.encode(),
            name.encode() + b"\x00",
            b"\x00" + name.encode(),
        ]
    out["passphrase"] = [citizen.passphrase.encode()]
    out["access token"] = [citizen.token.encode()]
    out["recovery code"] = [citizen.recovery_code.encode()]
    return out


def database_copy(database_url: str, data_dir: Path) -> bytes:
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        db = Path(url.database or "")
        parts = [db.read_bytes()]
        for suffix in ("-wal", "-journal"):
            side = db.with_name(db.name + suffix)
            if side.exists():
                parts.append(side.read_bytes())
        return b"".join(parts)
    schema = url.query["options"].split("search_path=")[1].split()[0]
    plain = url.set(drivername="postgresql").difference_update_query(["options"])
    dump = subprocess.run(
        ["pg_dump", "--no-owner", "-n", schema, plain.render_as_string(hide_password=False)],
        check=True,
        capture_output=True,
    ).stdout
    assert b"CREATE TABLE" in dump and b"chunks" in dump  # the dump really holds the tables
    return dump


def test_database_copy_reveals_no_ingested_value_or_field_name(
    client: TestClient, alice: Citizen, database_url: str, settings
) -> None:
    ingest_everything(alice)
    copy = database_copy(database_url, settings.data_dir)
    leaks = []
    for label, forms in needles(alice).items():
        for form in forms:
            # pg_dump prints bytea as hex, so a plaintext inside a bytea shows as its hex.
            if form in copy or (len(form) >= 4 and form.hex().encode() in copy):
                leaks.append(label)
    assert not leaks, f"found in the database copy: {sorted(set(leaks))}"


def test_service_keys_live_in_files_with_mode_0600_not_in_the_database(
    client: TestClient, alice: Citizen, database_url: str, settings
) -> None:
    ingest_everything(alice)
    keys_dir = settings.data_dir / "keys"
    files = sorted(keys_dir.iterdir())
    assert {"aggregation.x25519", "app-access.x25519", "audit.ed25519"} <= {f.name for f in files}
    copy = database_copy(database_url, settings.data_dir)
    for f in files:
        assert f.stat().st_mode & 0o777 == 0o600
        assert f.read_bytes() not in copy
        assert f.read_bytes().hex().encode() not in copy
