"""A citizen's data streams: creating them (with their first key pair) and listing them."""

from __future__ import annotations

import unicodedata
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import nacl.public
from sqlmodel import Session

from vault.catalogue import Catalogue
from vault.clock import utcnow
from vault.crypto.sealing import generate_box_key, seal_to
from vault.errors import InvalidInput, NotFound
from vault.models import Citizen, Stream, StreamKey
from vault.repositories import citizens as citizen_repo
from vault.repositories import streams as stream_repo
from vault.services.audit_log import AuditLog

MAX_LABEL = 200
#: Unicode's explicit direction embeddings, overrides and isolates (U+202A-202E, U+2066-2069).
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


@dataclass(frozen=True)
class StreamSummary:
    id: str
    stream_type: str
    schema_version: int
    label: str
    created_at: datetime
    chunk_count: int
    record_count: int
    key_generation: int


def new_key_generation(
    stream: Stream,
    owner: Citizen,
    generation: int,
    private: nacl.public.PrivateKey | None = None,
) -> StreamKey:
    """A fresh X25519 key pair for ``stream``; the private half is kept only sealed to the owner."""
    private = private or generate_box_key()
    return StreamKey(
        id=uuid.uuid4().hex,
        stream_id=stream.id,
        generation=generation,
        public_key=bytes(private.public_key),
        sealed_to_owner=seal_to(owner.box_public, bytes(private)),
        created_at=utcnow(),
    )


#: Called with a new stream and its first private key (to extend the consents that cover it).
StreamCreatedHook = Callable[[Session, Citizen, Stream, nacl.public.PrivateKey], None]


class StreamRegistry:
    def __init__(
        self, catalogue: Catalogue, audit: AuditLog, on_created: StreamCreatedHook | None = None
    ) -> None:
        self._catalogue = catalogue
        self._audit = audit
        self._on_created = on_created

    def create(
        self,
        session: Session,
        citizen_id: str,
        stream_type: str,
        label: str = "",
        actor: str = "citizen",
    ) -> StreamSummary:
        """A new stream with its first key pair; consents already given for its type are extended
        to it (see ``StreamCreatedHook``)."""
        try:
            spec = self._catalogue.get(stream_type)
        except NotFound as exc:
            raise InvalidInput(exc.message, details=exc.details) from None
        if len(label) > MAX_LABEL:
            raise InvalidInput(
                f"label is longer than {MAX_LABEL} characters",
                details=[{"field": "label", "reason": f"at most {MAX_LABEL} characters"}],
            )
        if any(unicodedata.category(c) in ("Cc", "Cs") or c in BIDI_CONTROLS for c in label):
            # NUL cannot be stored (PostgreSQL refuses it) and direction overrides can disguise text.
            raise InvalidInput(
                "label must not contain control characters",
                details=[{"field": "label", "reason": "control or text-direction characters"}],
            )
        owner = citizen_repo.by_id(session, citizen_id)
        if owner is None:
            raise NotFound("citizen not found")
        stream = Stream(
            id=uuid.uuid4().hex,
            citizen_id=citizen_id,
            stream_type=spec.name,
            schema_version=spec.schema_version,
            label=label,
            current_key_id="",
            created_at=utcnow(),
        )
        private = generate_box_key()
        key = new_key_generation(stream, owner, 1, private)
        stream.current_key_id = key.id
        session.add(stream)
        session.flush()
        session.add(key)
        session.flush()
        self._audit.append(
            session, citizen_id, actor, "stream.created", {"stream": stream.id, "type": spec.name}
        )
        if self._on_created is not None:
            self._on_created(session, owner, stream, private)
        return _summary(stream, key.generation, 0, 0)

    def summary(self, session: Session, stream: Stream) -> StreamSummary:
        chunks, records = stream_repo.chunk_stats(session, stream.id)
        key = stream_repo.key(session, stream.current_key_id)
        return _summary(stream, key.generation if key else 0, chunks, records)

    def list(self, session: Session, citizen_id: str) -> list[StreamSummary]:
        return [
            _summary(stream, generation, chunks, records)
            for stream, generation, chunks, records in stream_repo.summaries_for_citizen(
                session, citizen_id
            )
        ]

    def get_owned(
        self, session: Session, citizen_id: str, stream_id: str, *, for_update: bool = False
    ) -> Stream:
        """The stream if the citizen owns it; otherwise 404 (never says whose it is)."""
        stream = stream_repo.owned(session, citizen_id, stream_id, for_update=for_update)
        if stream is None:
            raise NotFound(f"no stream {stream_id!r} in your vault")
        return stream


def _summary(stream: Stream, key_generation: int, chunks: int, records: int) -> StreamSummary:
    return StreamSummary(
        id=stream.id,
        stream_type=stream.stream_type,
        schema_version=stream.schema_version,
        label=stream.label,
        created_at=stream.created_at,
        chunk_count=chunks,
        record_count=records,
        key_generation=key_generation,
    )
