"""Request and response schemas of the vault API (table models are never returned as they are)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from vault.services.streams import StreamSummary


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RegistrationIn(_In):
    handle: str = Field(min_length=1, max_length=64, examples=["ana.garcia"])
    passphrase: str = Field(min_length=1, max_length=1024)


class RegistrationOut(BaseModel):
    citizen_id: str
    handle: str
    recovery_code: str = Field(description="Shown once. Keep it safe: it is the only way back in.")
    box_public_key: str
    signing_public_key: str


class SessionIn(_In):
    handle: str = Field(min_length=1, max_length=64)
    passphrase: str = Field(min_length=1, max_length=1024)


class SessionOut(BaseModel):
    access_token: str
    token_type: str = "bearer"  # noqa: S105 - the OAuth token type, not a secret
    expires_in: int


class RecoverIn(_In):
    handle: str = Field(min_length=1, max_length=64)
    recovery_code: str = Field(min_length=1, max_length=128)
    new_passphrase: str = Field(min_length=1, max_length=1024)


class RecoverOut(BaseModel):
    recovery_code: str = Field(
        description="A new one-time recovery code; the old one no longer works."
    )


class PassphraseChangeIn(_In):
    current_passphrase: str = Field(min_length=1, max_length=1024)
    new_passphrase: str = Field(min_length=1, max_length=1024)


class DeleteMeIn(_In):
    passphrase: str = Field(min_length=1, max_length=1024)


class DeletedOut(BaseModel):
    deleted: bool
    tombstone_id: str
    message: str


class MeOut(BaseModel):
    citizen_id: str
    handle: str
    box_public_key: str
    signing_public_key: str
    created_at: datetime


class StreamIn(_In):
    stream_type: str = Field(min_length=1, max_length=64, examples=["energy.consumption"])
    label: str = Field(default="", max_length=200)


class StreamList(BaseModel):
    streams: list[StreamSummary]


class IngestOut(BaseModel):
    stream_id: str
    chunk_id: str
    count: int
    replayed: bool = False


class RecordsPagePublic(BaseModel):
    stream_id: str
    stream_type: str
    count: int
    total: int
    next_cursor: str | None
    records: list[dict[str, Any]]


class AuditEntryPublic(BaseModel):
    seq: int
    at: str
    actor: str
    action: str
    details: dict[str, Any]
    entry_hash: str
    prev_hash: str


class AuditPublic(BaseModel):
    citizen_id: str
    intact: bool
    problems: list[str]
    head_hash: str | None
    entries: list[AuditEntryPublic]


class ImportOut(BaseModel):
    records: int
    source_citizen: str | None
    streams: list[dict[str, Any]]
    consents: list[dict[str, Any]] = []


class ErrorOut(BaseModel):
    code: str
    message: str
    details: list[dict[str, Any]] = []
