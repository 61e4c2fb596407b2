"""Appending a batch of records to a stream.

Properties: a batch is validated whole before anything is written (one bad row rejects it and the
store is left exactly as it was); one batch becomes one encrypted chunk; a batch sent again with the
same ``Idempotency-Key`` lands once and gets the first answer again.

Work is split in two steps so that the write transaction (which on SQLite holds the one write lock)
does only the writing: :meth:`BatchIngest.prepare` parses, validates and encodes (reading only the
stream's type, remembered after the first time); :meth:`BatchIngest.commit` takes the next sequence
number, encrypts and stores. ``commit`` is a plain function of the session, so small batches from
many requests can share one transaction (``vault/group_commit.py``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

from sqlmodel import Session

from consent.canonical import canonical_json
from vault.batch_parsing import parse_batch
from vault.batch_validation import validate_batch
from vault.catalogue import Catalogue
from vault.chunk_codec import ChunkPlaintext, encode_frame, encode_rows
from vault.clock import utcnow
from vault.errors import InvalidInput, NotFound
from vault.models import IdempotentBatch
from vault.repositories import idempotency as idempotency_repo
from vault.repositories import write_path
from vault.services.audit_log import AuditLog
from vault.services.chunk_store import ChunkStore
from vault.services.streams import StreamRegistry
from vault.small_batch import accept_small_batch

MAX_IDEMPOTENCY_KEY = 255

#: How many (citizen, stream) -> stream type answers are remembered (a stream's owner and type never
#: change; a deleted stream is caught by the write itself, which finds no stream to write to).
STREAM_TYPE_MEMO = 100_000


@dataclass(frozen=True)
class IngestResult:
    stream_id: str
    chunk_id: str
    count: int
    replayed: bool = False


@dataclass(frozen=True)
class PreparedBatch:
    """A validated, encoded batch, not yet written."""

    stream_id: str
    stream_type: str
    plaintext: ChunkPlaintext
    body_digest: str  # of the body and what it was sent to, with an Idempotency-Key ("" without)
    key_digest: str | None = None


def _key_digest(idempotency_key: str) -> str:
    if not 1 <= len(idempotency_key) <= MAX_IDEMPOTENCY_KEY:
        raise InvalidInput(
            f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} characters",
            details=[{"field": "Idempotency-Key", "reason": "wrong length"}],
        )
    return hashlib.sha256(idempotency_key.encode("utf-8")).hexdigest()


class BatchIngest:
    def __init__(
        self,
        catalogue: Catalogue,
        streams: StreamRegistry,
        chunks: ChunkStore,
        audit: AuditLog,
        max_records: int,
    ) -> None:
        self._catalogue = catalogue
        self._streams = streams
        self._chunks = chunks
        self._audit = audit
        self._max_records = max_records
        self._stream_types: dict[tuple[str, str], str] = {}

    def stream_type(self, session: Session, citizen_id: str, stream_id: str) -> str:
        """The type of a stream the citizen owns (``NotFound`` otherwise), remembered."""
        known = self.known_stream_type(citizen_id, stream_id)
        if known is not None:
            return known
        stream_type = write_path.owned_stream_type(session, citizen_id, stream_id)
        if stream_type is None:
            raise NotFound(f"no stream {stream_id!r} in your vault")
        if len(self._stream_types) >= STREAM_TYPE_MEMO:
            self._stream_types.clear()
        self._stream_types[(citizen_id, stream_id)] = stream_type
        return stream_type

    def known_stream_type(self, citizen_id: str, stream_id: str) -> str | None:
        """The remembered type of the citizen's stream, without asking the database (or ``None``)."""
        return self._stream_types.get((citizen_id, stream_id))

    def prepare(
        self,
        session: Session,
        citizen_id: str,
        stream_id: str,
        body: bytes,
        content_type: str | None,
        idempotency_key: str | None = None,
    ) -> PreparedBatch:
        """Parse, validate and encode (raises ``InvalidBatch`` etc.; writes nothing)."""
        stream_type = self.stream_type(session, citizen_id, stream_id)
        return self.prepare_for_type(stream_type, stream_id, body, content_type, idempotency_key)

    def prepare_for_type(
        self,
        stream_type: str,
        stream_id: str,
        body: bytes,
        content_type: str | None,
        idempotency_key: str | None = None,
    ) -> PreparedBatch:
        """:meth:`prepare` for a stream whose type is known (no database; pure work on ``body``)."""
        key_digest = None if idempotency_key is None else _key_digest(idempotency_key)
        spec = self._catalogue.get(stream_type)
        rows = parse_batch(body, content_type, spec)
        small = accept_small_batch(rows, spec)
        if small is not None:
            plaintext = encode_rows(spec.field_names, small)
        else:
            plaintext = encode_frame(validate_batch(rows, spec, self._max_records))
        # What a retry with the same key must repeat exactly (only needed with a key).
        digest = (
            ""
            if key_digest is None
            else hashlib.sha256(canonical_json([stream_id, content_type or ""]) + body).hexdigest()
        )
        return PreparedBatch(stream_id, stream_type, plaintext, digest, key_digest)

    def commit(
        self,
        session: Session,
        citizen_id: str,
        batch: PreparedBatch,
        actor: str = "citizen",
    ) -> IngestResult:
        """Write a prepared batch as the stream's next chunk (or replay an idempotent answer)."""
        key_digest = batch.key_digest
        if key_digest is not None:
            earlier = idempotency_repo.find(session, citizen_id, key_digest)
            if earlier is not None:
                if earlier.body_digest != batch.body_digest or earlier.stream_id != batch.stream_id:
                    raise InvalidInput(
                        "this Idempotency-Key was already used for a different batch",
                        details=[
                            {"field": "Idempotency-Key", "reason": "reused with other content"}
                        ],
                    )
                return IngestResult(**{**json.loads(earlier.response), "replayed": True})
        written = self._chunks.write_plaintext(
            session, citizen_id, batch.stream_id, batch.plaintext
        )
        result = IngestResult(batch.stream_id, written.chunk_id, written.record_count)
        if key_digest is not None:
            stored = {k: v for k, v in asdict(result).items() if k != "replayed"}
            session.add(
                IdempotentBatch(
                    citizen_id=citizen_id,
                    key_digest=key_digest,
                    stream_id=batch.stream_id,
                    body_digest=batch.body_digest,
                    response=json.dumps(stored),
                    created_at=utcnow(),
                )
            )
        self._audit.append(
            session,
            citizen_id,
            actor,
            "records.appended",
            {"stream": batch.stream_id, "chunk": written.chunk_id, "count": written.record_count},
        )
        return result

    def append(
        self,
        session: Session,
        citizen_id: str,
        stream_id: str,
        body: bytes,
        content_type: str | None,
        idempotency_key: str | None = None,
        actor: str = "citizen",
    ) -> IngestResult:
        """Prepare and commit in one transaction (for callers that already hold one)."""
        batch = self.prepare(session, citizen_id, stream_id, body, content_type, idempotency_key)
        return self.commit(session, citizen_id, batch, actor)
