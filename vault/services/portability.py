"""GDPR Art. 15/20: export everything as a signed bundle; import a bundle into this vault."""

from __future__ import annotations

import io
import json
import uuid
import zipfile
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session

from consent.canonical import canonical_json
from consent.errors import SignatureInvalid
from consent.signing import SignedEvent, SignedTerms, verify_signed_terms
from consent.terms import ConsentTerms
from vault.batch_parsing import parse_batch
from vault.batch_validation import validate_batch
from vault.bundle import BundleWriter, b64, sha256_hex, unb64, verify_bundle
from vault.catalogue import Catalogue
from vault.clock import iso, utcnow
from vault.crypto.root_keys import RootKeys
from vault.errors import BundleInvalid, NotFound
from vault.repositories import citizens as citizen_repo
from vault.repositories import streams as stream_repo
from vault.services.audit_log import AuditLog
from vault.services.chunk_store import ChunkStore
from vault.services.consent_registry import ConsentRegistry
from vault.services.reading import OwnRecords
from vault.services.streams import StreamRegistry

#: Imported streams are written in chunks of at most this many records.
IMPORT_CHUNK_RECORDS = 100_000


@dataclass(frozen=True)
class ImportResult:
    streams: list[dict[str, object]]
    records: int
    source_citizen: str | None
    consents: list[dict[str, object]]


class Portability:
    def __init__(
        self,
        catalogue: Catalogue,
        streams: StreamRegistry,
        records: OwnRecords,
        chunks: ChunkStore,
        audit: AuditLog,
        consents: ConsentRegistry,
        max_records: int,
    ) -> None:
        self._catalogue = catalogue
        self._streams = streams
        self._records = records
        self._chunks = chunks
        self._audit = audit
        self._consents = consents
        self._max_records = max_records

    def export(self, session: Session, citizen_id: str, root: RootKeys) -> bytes:
        citizen = citizen_repo.by_id(session, citizen_id)
        if citizen is None:
            raise NotFound("citizen not found")
        # Record the export first, so the bundle's own audit log shows it.
        self._audit.append(session, citizen_id, "citizen", "export.created", {})
        writer = BundleWriter(
            manifest={
                "created_at": iso(utcnow()),
                "citizen": {
                    "id": citizen.id,
                    "box_public": b64(citizen.box_public),
                    "verify_key": b64(citizen.verify_key),
                },
                "vault": {"audit_verify_key": b64(self._audit.verify_key)},
                "streams": [],
                "consents": [],
            }
        )
        for stream in stream_repo.for_citizen(session, citizen_id):
            frame = self._records.load_all(session, stream, root).sort("ts", maintain_order=True)
            parquet_path, csv_path = f"data/{stream.id}.parquet", f"data/{stream.id}.csv"
            buffer = io.BytesIO()
            frame.write_parquet(buffer, compression="zstd")
            writer.add(parquet_path, buffer.getvalue())
            writer.add(csv_path, frame.write_csv(datetime_format="%Y-%m-%dT%H:%M:%S%.fZ").encode())
            writer.manifest["streams"].append(
                {
                    "id": stream.id,
                    "stream_type": stream.stream_type,
                    "schema_version": stream.schema_version,
                    "label": stream.label,
                    "records": frame.height,
                    "data": parquet_path,
                    "csv": csv_path,
                }
            )
        for document in self._consents.signed_documents(session, citizen_id):
            path = f"consents/{document['consent_id']}.json"
            writer.add(path, json.dumps(document, indent=1, ensure_ascii=False).encode())
            writer.manifest["consents"].append(
                {"id": document["consent_id"], "file": path, "status": document["status"]}
            )
        view = self._audit.read(session, citizen_id)
        audit_doc = {
            "entries": [e.to_dict() for e in view.entries],
            "head": None
            if view.head is None
            else {
                "citizen_id": view.head.citizen_id,
                "seq": view.head.seq,
                "entry_hash": view.head.entry_hash,
                "signature": b64(view.head.signature),
            },
        }
        writer.add("audit.json", json.dumps(audit_doc, indent=1, ensure_ascii=False).encode())
        writer.manifest["audit_entries"] = len(view.entries)
        return writer.build(root.signing_key)

    def import_bundle(
        self, session: Session, citizen_id: str, root: RootKeys, data: bytes
    ) -> ImportResult:
        """Verify ``data`` completely, then add its streams to this citizen's vault in one go, and
        carry over the consents still in force (re-signed by the citizen's key in this vault)."""
        report = verify_bundle(data)
        if not report.ok:
            raise BundleInvalid(
                "the bundle did not verify; nothing was imported",
                details=[{"field": "bundle", "reason": p} for p in report.problems],
            )
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            imported: list[dict[str, object]] = []
            total = 0
            for entry in report.manifest.get("streams", []):
                spec = self._catalogue.get(entry["stream_type"])
                csv_bytes = archive.read(entry["csv"])
                summary = self._streams.create(
                    session, citizen_id, spec.name, label=str(entry.get("label", "")), root=root
                )
                stream = self._streams.get_owned(session, citizen_id, summary.id, for_update=True)
                count = 0
                if int(entry["records"]) > 0:
                    frame = validate_batch(
                        parse_batch(csv_bytes, "text/csv", spec),
                        spec,
                        max(self._max_records, int(entry["records"])),
                    )
                    for start in range(0, frame.height, IMPORT_CHUNK_RECORDS):
                        self._chunks.write(
                            session, stream, frame.slice(start, IMPORT_CHUNK_RECORDS)
                        )
                    count = frame.height
                total += count
                imported.append(
                    {
                        "from_stream": entry["id"],
                        "stream_id": stream.id,
                        "type": spec.name,
                        "records": count,
                    }
                )
            carried = self._carry_consents(session, citizen_id, root, report.manifest, archive)
        self._audit.append(
            session,
            citizen_id,
            "citizen",
            "bundle.imported",
            {
                "manifest_sha256": sha256_hex(canonical_json(report.manifest)),
                "streams": len(imported),
                "records": total,
                "consents": carried,
            },
        )
        return ImportResult(imported, total, report.citizen_id, carried)

    def _carry_consents(
        self,
        session: Session,
        citizen_id: str,
        root: RootKeys,
        manifest: dict[str, Any],
        archive: zipfile.ZipFile,
    ) -> list[dict[str, object]]:
        """Consents still in force in the bundle stay in force here: the same terms, with this
        vault's subject id, signed again by the citizen (who is signed in and importing)."""
        old_key = unb64(manifest["citizen"]["verify_key"])
        now = utcnow()
        carried: list[dict[str, object]] = []
        for entry in manifest.get("consents", []):
            document = json.loads(archive.read(entry["file"]))
            signed = SignedTerms.model_validate(document["signed_terms"])
            events = [SignedEvent.model_validate(e) for e in document["events"]]
            try:
                verified = verify_signed_terms(signed, old_key, now, events)
            except SignatureInvalid as exc:
                carried.append({"terms": signed.terms.id, "carried": False, "reason": exc.reason})
                continue
            recipients = [r for r in verified.terms.recipients if r.kind == "department"]
            if not all(self._consents.department_exists(session, r.id) for r in recipients):
                carried.append(
                    {"terms": signed.terms.id, "carried": False, "reason": "unknown department"}
                )
                continue
            data = verified.terms.model_dump(by_alias=True)
            data.update(id=uuid.uuid4().hex, version=1, supersedes=None, subject=citizen_id)
            record = self._consents.give_terms(
                session, citizen_id, root, ConsentTerms.model_validate(data), now
            )
            carried.append({"terms": signed.terms.id, "carried": True, "consent_id": record.id})
        return carried
