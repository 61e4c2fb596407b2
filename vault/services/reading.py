"""A citizen reading back their own records, decrypted, filtered by time and paginated.

Small chunks (many single-record writes) are merged while the citizen's key is open, so that later
reads pay one key opening per large chunk instead of one per record (see ``compact``).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime

import polars as pl
from sqlmodel import Session

from vault.catalogue import Catalogue, StreamType
from vault.crypto.root_keys import RootKeys
from vault.errors import InvalidInput
from vault.models import Stream
from vault.repositories import streams as stream_repo
from vault.services.audit_log import AuditLog
from vault.services.chunk_store import ChunkStore, KeyOpener, owner_key_opener
from vault.services.streams import StreamRegistry

MAX_PAGE = 10_000


@dataclass(frozen=True)
class RecordPage:
    stream_id: str
    stream_type: StreamType
    frame: pl.DataFrame
    next_cursor: str | None
    total: int


def _decode_cursor(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        offset = json.loads(base64.urlsafe_b64decode(cursor.encode("ascii") + b"==="))["offset"]
        if not isinstance(offset, int) or offset < 0:
            raise ValueError
        return offset
    except (ValueError, KeyError, TypeError, UnicodeEncodeError) as exc:
        raise InvalidInput(
            "cursor is not one this service gave out",
            details=[{"field": "cursor", "reason": "unrecognised cursor"}],
        ) from exc


def _encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode().rstrip("=")


class OwnRecords:
    def __init__(
        self,
        catalogue: Catalogue,
        streams: StreamRegistry,
        chunks: ChunkStore,
        audit: AuditLog,
        compact_min_chunks: int,
        small_chunk_records: int,
    ) -> None:
        self._catalogue = catalogue
        self._streams = streams
        self._chunks = chunks
        self._audit = audit
        self._compact_min = compact_min_chunks
        self._small = small_chunk_records

    def load_all(self, session: Session, stream: Stream, root: RootKeys) -> pl.DataFrame:
        spec = self._catalogue.get(stream.stream_type)
        return self._chunks.read(
            session, stream, owner_key_opener(root.box_key), spec.polars_schema()
        )

    def page(
        self,
        session: Session,
        citizen_id: str,
        stream_id: str,
        root: RootKeys,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 1000,
        cursor: str | None = None,
        actor: str = "citizen",
    ) -> RecordPage:
        """The owner's page: small chunks are compacted first, while the owner's key is open."""
        stream = self._streams.get_owned(session, citizen_id, stream_id, for_update=True)
        self.compact(session, stream, root, actor)
        return self.page_with(
            session, stream, owner_key_opener(root.box_key), since=since, until=until,
            limit=limit, cursor=cursor, actor=actor,
        )  # fmt: skip

    def page_with(
        self,
        session: Session,
        stream: Stream,
        open_key: KeyOpener,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 1000,
        cursor: str | None = None,
        actor: str = "citizen",
    ) -> RecordPage:
        """A page of records decrypted with ``open_key`` (the owner's, or a grant's)."""
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidInput(
                f"limit must be between 1 and {MAX_PAGE}",
                details=[{"field": "limit", "reason": f"between 1 and {MAX_PAGE}"}],
            )
        if since and until and since >= until:
            raise InvalidInput(
                "'from' must be before 'to'",
                details=[{"field": "from", "reason": "must be before 'to'"}],
            )
        offset = _decode_cursor(cursor)
        spec = self._catalogue.get(stream.stream_type)
        frame = self._chunks.read(session, stream, open_key, spec.polars_schema())
        if since is not None:
            frame = frame.filter(pl.col("ts") >= since)
        if until is not None:
            frame = frame.filter(pl.col("ts") < until)
        frame = frame.sort("ts", maintain_order=True)
        total = frame.height
        page = frame.slice(offset, limit)
        next_cursor = _encode_cursor(offset + limit) if offset + limit < total else None
        self._audit.append(
            session,
            stream.citizen_id,
            actor,
            "records.read",
            {"stream": stream.id, "count": page.height},
        )
        return RecordPage(stream.id, spec, page, next_cursor, total)

    def compact(self, session: Session, stream: Stream, root: RootKeys, actor: str) -> int:
        """Merge the stream's small chunks into one; returns how many were merged (0 if none).

        Property: the merged chunk holds exactly the records of the chunks it replaces, in order,
        and is written in the same transaction that deletes them, so a crash loses nothing.
        """
        if stream_repo.count_small_chunks(session, stream.id, self._small) < self._compact_min:
            return 0  # the usual case, known without loading any chunk
        small = [
            c
            for c in stream_repo.chunks_of_stream(session, stream.id)
            if c.record_count < self._small
        ]
        if len(small) < self._compact_min:
            return 0
        schema = self._catalogue.get(stream.stream_type).polars_schema()
        frame = self._chunks.read(
            session, stream, owner_key_opener(root.box_key), schema, chunks=small
        )
        written = self._chunks.write(session, stream, frame)
        stream_repo.delete_chunks(session, [c.id for c in small])
        self._audit.append(
            session,
            stream.citizen_id,
            actor,
            "chunks.compacted",
            {"stream": stream.id, "merged": len(small), "into": written.chunk_id},
        )
        return len(small)
