"""Table models of the vault. They never leave the service layer: the API returns ``*Public`` schemas.

What is stored in clear is listed in ``docs/security.md``: ids, handles, stream types, counts, times,
public keys. Every record value and every field name of ingested data lives only inside encrypted chunks.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

from vault.db_types import blob_column, utc_column


class Citizen(SQLModel, table=True):
    __tablename__ = "citizens"

    id: str = Field(primary_key=True, max_length=32)
    handle: str = Field(index=True, unique=True, max_length=64)
    box_public: bytes = Field(sa_column=blob_column())
    verify_key: bytes = Field(sa_column=blob_column())
    # The root secret, wrapped; nulled first on erasure (crypto-shredding).
    root_by_passphrase: bytes | None = Field(default=None, sa_column=blob_column(nullable=True))
    root_by_recovery: bytes | None = Field(default=None, sa_column=blob_column(nullable=True))
    created_at: datetime = Field(sa_column=utc_column())
    failed_logins: int = 0
    locked_until: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    # Raised by the database's triggers (migration 0005) with every change of the citizen's
    # consents, consent events, key grants or verify key; never written by the application.
    consent_revision: int = Field(default=0, sa_column_kwargs={"server_default": "0"})


class AccessToken(SQLModel, table=True):
    """A bearer token, stored only as a digest. ``session_key`` holds the citizen's root secret
    wrapped under a key derived from the token itself (see ``vault.crypto.token_secrets``)."""

    __tablename__ = "access_tokens"

    digest: str = Field(primary_key=True, max_length=64)
    kind: str = Field(max_length=32)
    citizen_id: str | None = Field(default=None, index=True, max_length=32)
    client_id: str | None = Field(default=None, index=True, max_length=64)
    department_id: str | None = Field(default=None, index=True, max_length=64)
    scope: str = ""
    audience: str = Field(max_length=64)
    authorization_details: str = "[]"
    session_key: bytes | None = Field(default=None, sa_column=blob_column(nullable=True))
    family_id: str | None = Field(default=None, index=True, max_length=32)
    created_at: datetime = Field(sa_column=utc_column())
    expires_at: datetime = Field(sa_column=utc_column(index=True))
    revoked_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))


class Stream(SQLModel, table=True):
    __tablename__ = "streams"

    id: str = Field(primary_key=True, max_length=32)
    citizen_id: str = Field(index=True, foreign_key="citizens.id", max_length=32)
    stream_type: str = Field(max_length=64)
    schema_version: int
    label: str = Field(default="", max_length=200)
    current_key_id: str = Field(max_length=32)
    next_seq: int = 0
    created_at: datetime = Field(sa_column=utc_column())
    # Raised by the database's triggers (migration 0005) with every change of the stream's chunks
    # or of a stream key's public key; never written by the application.
    chunk_revision: int = Field(default=0, sa_column_kwargs={"server_default": "0"})


class StreamKey(SQLModel, table=True):
    """One generation of a stream's X25519 key pair. Writers seal chunk keys to ``public_key``;
    the private key exists only sealed: to the citizen's root key here, to grantees elsewhere."""

    __tablename__ = "stream_keys"

    id: str = Field(primary_key=True, max_length=32)
    stream_id: str = Field(index=True, foreign_key="streams.id", max_length=32)
    generation: int
    public_key: bytes = Field(sa_column=blob_column())
    sealed_to_owner: bytes | None = Field(default=None, sa_column=blob_column(nullable=True))
    created_at: datetime = Field(sa_column=utc_column())
    retired_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))


class Chunk(SQLModel, table=True):
    """One ingest batch (or a compaction of several) as an encrypted Parquet blob."""

    __tablename__ = "chunks"
    __table_args__ = (UniqueConstraint("stream_id", "seq", name="uq_chunks_stream_seq"),)

    id: str = Field(primary_key=True, max_length=32)
    stream_id: str = Field(index=True, foreign_key="streams.id", max_length=32)
    seq: int
    stream_key_id: str = Field(foreign_key="stream_keys.id", max_length=32)
    schema_version: int
    format: str = Field(max_length=16)
    record_count: int
    ciphertext: bytes = Field(sa_column=blob_column())
    sealed_key: bytes = Field(sa_column=blob_column())
    created_at: datetime = Field(sa_column=utc_column())


class IdempotentBatch(SQLModel, table=True):
    """The answer given to a batch sent with an ``Idempotency-Key``, so a retry lands once."""

    __tablename__ = "idempotent_batches"

    citizen_id: str = Field(primary_key=True, max_length=32)
    key_digest: str = Field(primary_key=True, max_length=64)
    stream_id: str = Field(max_length=32)
    body_digest: str = Field(max_length=64)
    response: str
    created_at: datetime = Field(sa_column=utc_column())


class AuditEntry(SQLModel, table=True):
    """One link of a citizen's hash chain. ``at`` is kept as the exact string that was hashed."""

    __tablename__ = "audit_entries"
    __table_args__ = (UniqueConstraint("citizen_id", "seq", name="uq_audit_citizen_seq"),)

    id: int | None = Field(default=None, primary_key=True)
    citizen_id: str = Field(index=True, max_length=32)
    seq: int
    at: str = Field(max_length=32)
    actor: str = Field(max_length=128)
    action: str = Field(max_length=64)
    details: str
    prev_hash: str = Field(max_length=64)
    entry_hash: str = Field(max_length=64)


class AuditHead(SQLModel, table=True):
    """The latest link of a chain, signed by the vault's audit key so that a dropped tail is caught."""

    __tablename__ = "audit_heads"

    citizen_id: str = Field(primary_key=True, max_length=32)
    seq: int
    entry_hash: str = Field(max_length=64)
    signature: bytes = Field(sa_column=blob_column())


class ErasureTombstone(SQLModel, table=True):
    """What remains of an erased citizen: no personal data, only that an erasure happened."""

    __tablename__ = "erasure_tombstones"

    id: str = Field(primary_key=True, max_length=32)
    erased_at: datetime = Field(sa_column=utc_column())
    audit_entries: int
    audit_head_hash: str = Field(max_length=64)
