"""Export a signed bundle, verify it offline (library and CLI), import it into another vault."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

from fastapi.testclient import TestClient

from server.app import create_app
from tests.conftest import Citizen, register
from vault.bundle import verify_bundle
from vault.settings import Settings

ENERGY = [{"ts": f"2026-03-{d:02d}T00:00:00Z", "kwh": d / 4} for d in range(1, 11)]
TRIPS = [{"ts": "2026-03-01T08:00:00Z", "mode": "bike", "km": 3.5, "minutes": 15.0}]


def exported(alice: Citizen) -> bytes:
    assert alice.append("energy.consumption", ENERGY).status_code == 201
    assert alice.append("mobility.trip", TRIPS).status_code == 201
    r = alice.client.get("/v1/me/export", headers=alice.auth)
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/zip"
    assert "attachment" in r.headers["content-disposition"]
    return r.content


def test_bundle_holds_data_in_open_formats_and_verifies(alice: Citizen) -> None:
    bundle = exported(alice)
    report = verify_bundle(bundle)
    assert report.ok, report.problems
    with zipfile.ZipFile(io.BytesIO(bundle)) as z:
        names = set(z.namelist())
        manifest = json.loads(z.read("manifest.json"))
        assert {"manifest.json", "manifest.sig", "audit.json", "README.txt"} <= names
        energy = next(s for s in manifest["streams"] if s["stream_type"] == "energy.consumption")
        assert energy["records"] == 10
        csv = z.read(energy["csv"]).decode()
        assert csv.splitlines()[0] == "ts,kwh" and "2.5" in csv
    assert manifest["citizen"]["id"] == alice.citizen_id


def test_any_change_to_the_bundle_is_detected(alice: Citizen) -> None:
    bundle = exported(alice)
    src = zipfile.ZipFile(io.BytesIO(bundle))

    def rebuilt(change) -> bytes:  # type: ignore[no-untyped-def]
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as z:
            for name in src.namelist():
                data = change(name, src.read(name))
                if data is not None:
                    z.writestr(name, data)
        return out.getvalue()

    csv_name = next(n for n in src.namelist() if n.endswith(".csv") and b"kwh" in src.read(n))
    edited_csv = rebuilt(lambda n, d: d.replace(b"2.5", b"9.5") if n == csv_name else d)
    assert any("changed" in p for p in verify_bundle(edited_csv).problems)

    def drop_audit_entry(name: str, data: bytes) -> bytes:
        if name != "audit.json":
            return data
        doc = json.loads(data)
        del doc["entries"][1]
        return json.dumps(doc).encode()

    assert not verify_bundle(rebuilt(drop_audit_entry)).ok

    def widen_manifest(name: str, data: bytes) -> bytes:
        if name != "manifest.json":
            return data
        doc = json.loads(data)
        doc["streams"][0]["records"] = 99
        return json.dumps(doc).encode()

    assert any("signature" in p for p in verify_bundle(rebuilt(widen_manifest)).problems)
    assert not verify_bundle(rebuilt(lambda n, d: None if n == "manifest.sig" else d)).ok
    assert not verify_bundle(b"not a zip").ok


def test_cli_verify_bundle(alice: Citizen, tmp_path: Path) -> None:
    path = tmp_path / "bundle.zip"
    path.write_bytes(exported(alice))
    good = subprocess.run(
        [sys.executable, "-m", "clients.python.cli", "verify-bundle", str(path), "--json"],
        capture_output=True,
        text=True,
    )
    assert good.returncode == 0, good.stderr
    assert json.loads(good.stdout)["ok"] is True
    path.write_bytes(path.read_bytes()[:-40])
    bad = subprocess.run(
        [sys.executable, "-m", "clients.python.cli", "verify-bundle", str(path)],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 1
    assert "NOT" in bad.stdout or "not" in bad.stdout


def test_import_into_another_vault_restores_the_data(
    alice: Citizen, tmp_path: Path, database_url: str
) -> None:
    bundle = exported(alice)
    other = Settings(
        data_dir=tmp_path / "other-vault",
        database_url=f"sqlite:///{tmp_path}/other.db",
        kdf_profile="min",
    )
    from server.migrate import upgrade_to_head

    upgrade_to_head(other.resolved_database_url)
    with TestClient(create_app(other), base_url="https://testserver") as second:
        newcomer = register(second, "alice.moved")
        r = second.post(
            "/v1/me/import",
            content=bundle,
            headers={**newcomer.auth, "content-type": "application/zip"},
        )
        assert r.status_code == 201, r.text
        assert r.json()["records"] == 11 and r.json()["source_citizen"] == alice.citizen_id
        streams = {
            s["stream_type"]: s
            for s in second.get("/v1/me/streams", headers=newcomer.auth).json()["streams"]
        }
        recs = second.get(
            f"/v1/me/streams/{streams['energy.consumption']['id']}/records", headers=newcomer.auth
        ).json()
        assert [r["kwh"] for r in recs["records"]] == [e["kwh"] for e in ENERGY]
        audit = second.get("/v1/me/audit", headers=newcomer.auth).json()
        assert "bundle.imported" in [e["action"] for e in audit["entries"]]
        tampered = io.BytesIO()
        with zipfile.ZipFile(io.BytesIO(bundle)) as src, zipfile.ZipFile(tampered, "w") as dst:
            for name in src.namelist():
                data = src.read(name)
                dst.writestr(name, data.replace(b"2.5", b"2.6") if name.endswith(".csv") else data)
        tampered = tampered.getvalue()
        r = second.post(
            "/v1/me/import",
            content=tampered,
            headers={**newcomer.auth, "content-type": "application/zip"},
        )
        assert r.status_code == 422 and r.json()["code"] == "bundle_invalid"
        assert len(second.get("/v1/me/streams", headers=newcomer.auth).json()["streams"]) == 2
