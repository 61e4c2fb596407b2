"""DELETE /v1/me: keys destroyed first, then rows; a copy taken before cannot be opened afterwards."""

from __future__ import annotations

import nacl.public
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlmodel import Session, select

from tests.conftest import DEFAULT_PASSPHRASE, Citizen
from vault.crypto.chunk_cipher import ChunkIntegrityError, EncryptedChunk, decrypt_chunk
from vault.crypto.passphrase_wrap import WrongPassphrase, unwrap_secret
from vault.crypto.root_keys import RootKeys
from vault.crypto.sealing import SealedOpenError, open_sealed
from vault.models import (
    AccessToken,
    AuditEntry,
    Chunk,
    ErasureTombstone,
    Stream,
    StreamKey,
)
from vault.models import (
    Citizen as CitizenRow,
)
from vault.service_keys import ServiceKeys


def rows_of(session: Session, citizen_id: str) -> dict[str, list]:
    streams = session.exec(select(Stream).where(Stream.citizen_id == citizen_id)).all()
    ids = [s.id for s in streams]
    return {
        "citizen": session.exec(select(CitizenRow).where(CitizenRow.id == citizen_id)).all(),
        "streams": streams,
        "keys": session.exec(select(StreamKey).where(StreamKey.stream_id.in_(ids))).all()
        if ids
        else [],  # type: ignore[attr-defined]
        "chunks": session.exec(select(Chunk).where(Chunk.stream_id.in_(ids))).all() if ids else [],  # type: ignore[attr-defined]
        "tokens": session.exec(
            select(AccessToken).where(AccessToken.citizen_id == citizen_id)
        ).all(),
        "audit": session.exec(select(AuditEntry).where(AuditEntry.citizen_id == citizen_id)).all(),
    }


def test_delete_needs_the_passphrase(client: TestClient, alice: Citizen) -> None:
    r = client.request(
        "DELETE", "/v1/me", json={"passphrase": "not my passphrase"}, headers=alice.auth
    )
    assert r.status_code == 401
    assert client.get("/v1/me", headers=alice.auth).status_code == 200


def test_after_erasure_no_key_remains_and_an_earlier_copy_cannot_be_opened(
    client: TestClient, alice: Citizen, bob: Citizen, database_url: str, settings
) -> None:
    for c in (alice, bob):
        assert (
            c.append("energy.consumption", [{"ts": "2026-01-01T00:00:00Z", "kwh": 9.5}]).status_code
            == 201
        )
        assert (
            c.append(
                "mobility.trip",
                [{"ts": "2026-01-01T00:00:00Z", "mode": "bike", "km": 2.0, "minutes": 9.0}],
            ).status_code
            == 201
        )
    engine = client.app.state.vault.engine  # type: ignore[attr-defined]
    with Session(engine) as session:
        before = rows_of(session, alice.citizen_id)
        # Detach plain copies: this is "a copy of the rows taken before the deletion".
        copy_citizen = before["citizen"][0].model_copy()
        copy_keys = [k.model_copy() for k in before["keys"]]
        copy_chunks = [c.model_copy() for c in before["chunks"]]
        session.rollback()
    assert copy_chunks and copy_keys and copy_citizen.root_by_passphrase

    r = client.request(
        "DELETE", "/v1/me", json={"passphrase": DEFAULT_PASSPHRASE}, headers=alice.auth
    )
    assert r.status_code == 200, r.text
    assert r.json()["deleted"] is True

    with Session(engine) as session:
        after = rows_of(session, alice.citizen_id)
        assert all(not v for v in after.values()), {k: len(v) for k, v in after.items() if v}
        tombstones = session.exec(select(ErasureTombstone)).all()
        assert len(tombstones) == 1
        assert alice.citizen_id not in str(tombstones[0].model_dump())
        assert alice.handle not in str(tombstones[0].model_dump())
        # Every blob left anywhere in the database (the other citizen's, service data) ...
        remaining_blobs: list[bytes] = []
        for table, columns in {
            "citizens": ["root_by_passphrase", "root_by_recovery"],
            "stream_keys": ["sealed_to_owner"],
            "access_tokens": ["session_key"],
        }.items():
            for col in columns:
                remaining_blobs += [
                    row[0] for row in session.execute(text(f"SELECT {col} FROM {table}")) if row[0]
                ]
    # ... and none is a copy of Alice's key material.
    for blob in [
        copy_citizen.root_by_passphrase,
        copy_citizen.root_by_recovery,
        *[k.sealed_to_owner for k in copy_keys],
    ]:
        assert blob not in remaining_blobs

    # Try every key that is left: the service keys, and the other citizen's own keys.
    service = ServiceKeys.load_or_create(settings.keys_dir)
    with Session(engine) as session:
        bob_row = session.exec(select(CitizenRow).where(CitizenRow.id == bob.citizen_id)).one()
        bob_root = RootKeys.from_secret(
            unwrap_secret(bob_row.root_by_passphrase, DEFAULT_PASSPHRASE)
        )
    candidates = [
        service.aggregation,
        service.app_access,
        bob_root.box_key,
        nacl.public.PrivateKey(bytes(service.audit_signing)),
    ]
    for key_row in copy_keys:
        for candidate in candidates:
            with pytest.raises(SealedOpenError):
                open_sealed(candidate, key_row.sealed_to_owner)
    for chunk in copy_chunks:
        for candidate in candidates:
            with pytest.raises(ChunkIntegrityError):
                decrypt_chunk(candidate, EncryptedChunk(chunk.ciphertext, chunk.sealed_key), b"")
    # The only ways in were the passphrase and the recovery code, and their rows are gone: with the
    # copy, the passphrase still opens it, which is exactly the backup caveat in docs/security.md.
    with pytest.raises(WrongPassphrase):
        unwrap_secret(copy_citizen.root_by_passphrase, "a guess of a passphrase")
