"""Appending a batch of records to a stream.

Properties: a batch is validated whole before anything is written (one bad row rejects it and the
store is left exactly as it was); one batch becomes one encrypted chunk; a batch sent again with the
same ``Idempotency-Key`` lands once and gets the first answer again.
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
from vault.clock import utcnow
from vault.errors import InvalidInput
from vault.models import IdempotentBatch
from vault.repositories import idempotency as idempotency_repo
from vault.services.audit_log import AuditLog
from vault.services.chunk_store import ChunkStore
from vault.services.streams import StreamRegistry

MAX_IDEMPOTENCY_KEY = 255


@dataclass(frozen=True)
class IngestResult:
    stream_id: str
    chunk_id: str
    count: int
    replayed: bool = False


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
        stream = self._streams.get_owned(session, citizen_id, stream_id, for_update=True)
        spec = self._catalogue.get(stream.stream_type)
        key_digest = body_digest = None
        if idempotency_key is not None:
            if not 1 <= len(idempotency_key) <= MAX_IDEMPOTENCY_KEY:
                raise InvalidInput(
                    f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} characters",
                    details=[{"field": "Idempotency-Key", "reason": "wrong length"}],
                )
            key_digest = hashlib.sha256(idempotency_key.encode("utf-8")).hexdigest()
            body_digest = hashlib.sha256(
                canonical_json([stream_id, content_type or ""]) + body
            ).hexdigest()
            earlier = idempotency_repo.find(session, citizen_id, key_digest)
            if earlier is not None:
                if earlier.body_digest != body_digest or earlier.stream_id != stream_id:
                    raise InvalidInput(
                        "this Idempotency-Key was already used for a different batch",
                        details=[
                            {"field": "Idempotency-Key", "reason": "reused with other content"}
                        ],
                    )
                return IngestResult(**{**json.loads(earlier.response), "replayed": True})

        frame = validate_batch(parse_batch(body, content_type, spec), spec, self._max_records)
        written = self._chunks.write(session, stream, frame)
        result = IngestResult(stream.id, written.chunk_id, written.record_count)
        if key_digest is not None and body_digest is not None:
            stored = {k: v for k, v in asdict(result).items() if k != "replayed"}
            session.add(
                IdempotentBatch(
                    citizen_id=citizen_id,
                    key_digest=key_digest,
                    stream_id=stream.id,
                    body_digest=body_digest,
                    response=json.dumps(stored),
                    created_at=utcnow(),
                )
            )
        self._audit.append(
            session,
            citizen_id,
            actor,
            "records.appended",
            {"stream": stream.id, "chunk": written.chunk_id, "count": written.record_count},
        )
        return result
