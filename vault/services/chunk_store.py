"""The one place that writes and reads encrypted chunks.

Writing needs only the stream's public key: a writer can append but cannot read. Reading needs the
stream's private key, opened from a seal (the owner's root key here; a grant elsewhere).

Property: every chunk is sealed to the stream's current key generation and bound to (citizen,
stream, seq, schema version); a chunk that fails verification is reported with its id and never
returned in part.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import nacl.public
import polars as pl
from sqlmodel import Session

from vault.chunk_codec import (
    ChunkPlaintext,
    Decoded,
    assemble,
    associated_data,
    decode_part,
    encode_frame,
)
from vault.chunk_write_keys import WriterChunkKeys
from vault.clock import utcnow
from vault.crypto.chunk_cipher import (
    ChunkIntegrityError,
    decrypt_with_key,
    encrypt_chunk_under,
    open_chunk_key,
)
from vault.crypto.sealing import SealedOpenError, open_sealed
from vault.errors import IntegrityFailure, NotFound
from vault.models import Chunk, Stream, StreamKey
from vault.repositories import streams as stream_repo
from vault.repositories import write_path
from vault.repositories.write_path import StoredChunk

KeyOpener = Callable[[StreamKey], nacl.public.PrivateKey]


@dataclass(frozen=True)
class WrittenChunk:
    chunk_id: str
    seq: int
    record_count: int


def owner_key_opener(root_box_key: nacl.public.PrivateKey) -> KeyOpener:
    """Opens stream keys with the citizen's root key (the owner's path)."""

    def _open(key: StreamKey) -> nacl.public.PrivateKey:
        if key.sealed_to_owner is None:
            raise IntegrityFailure(f"stream key {key.id} has been destroyed")
        try:
            return nacl.public.PrivateKey(open_sealed(root_box_key, key.sealed_to_owner))
        except SealedOpenError as exc:
            raise IntegrityFailure(
                f"stream key {key.id} failed its integrity check; it may have been tampered with"
            ) from exc

    return _open


class ChunkStore:
    def __init__(self, writer_keys: WriterChunkKeys | None = None, workers: int = 2) -> None:
        self._workers = workers
        #: Chunk keys reused for a stream's consecutive chunks (None: a key per chunk).
        self.writer_keys = writer_keys if writer_keys is not None else WriterChunkKeys(0)

    def write(self, session: Session, stream: Stream, frame: pl.DataFrame) -> WrittenChunk:
        """Encrypt ``frame`` as the stream's next chunk."""
        return self.write_plaintext(session, stream.citizen_id, stream.id, encode_frame(frame))

    def write_plaintext(
        self, session: Session, citizen_id: str, stream_id: str, plaintext: ChunkPlaintext
    ) -> WrittenChunk:
        """Encrypt an encoded chunk as the stream's next one. Locks the stream row (PostgreSQL)
        for the rest of the transaction, so sequence numbers are never taken twice."""
        stream = write_path.stream_for_write(session, citizen_id, stream_id)
        if stream is None:
            raise NotFound(f"no stream {stream_id!r} in your vault")
        seq = stream.next_seq
        ad = associated_data(
            stream.citizen_id, stream.id, seq, stream.schema_version, plaintext.format
        )
        chunk_key = self.writer_keys.key_for(stream.citizen_id, stream.id, stream.public_key)
        sealed = encrypt_chunk_under(plaintext.data, ad, chunk_key)
        chunk_id = uuid.uuid4().hex
        write_path.insert_chunk(
            session,
            chunk_id=chunk_id,
            stream=stream,
            seq=seq,
            chunk_format=plaintext.format,
            record_count=plaintext.record_count,
            ciphertext=sealed.ciphertext,
            sealed_key=sealed.sealed_key,
            created_at=utcnow(),
        )
        return WrittenChunk(chunk_id, seq, plaintext.record_count)

    def read(
        self,
        session: Session,
        stream: Stream,
        open_key: KeyOpener,
        schema: pl.Schema,
        chunks: Sequence[Chunk | StoredChunk] | None = None,
        columns: Sequence[str] | None = None,
    ) -> pl.DataFrame:
        """Decrypt and decode chunks (all of the stream's by default), in sequence order.

        Chunks are decrypted and decoded on a small thread pool while the next rows are read
        (libsodium, SQLite and polars all release the GIL)."""
        rows: Iterable[Chunk | StoredChunk] = (
            chunks if chunks is not None else write_path.stored_chunks(session, stream.id)
        )
        keys: dict[str, nacl.public.PrivateKey] = {}

        def _key(row: Chunk | StoredChunk) -> nacl.public.PrivateKey:
            if row.stream_key_id not in keys:
                key = stream_repo.key(session, row.stream_key_id)
                if key is None or key.stream_id != stream.id:
                    raise IntegrityFailure(f"chunk {row.id} names a key that is not its stream's")
                keys[row.stream_key_id] = open_key(key)
            return keys[row.stream_key_id]

        # Chunks a writer wrote under one key share its sealed bytes: open each once per read and
        # stream key (threads may race on an insert; that only costs an open).
        opened: dict[tuple[str, bytes], bytes] = {}

        def _chunk_key(row: Chunk | StoredChunk, key: nacl.public.PrivateKey) -> bytes:
            entry = (row.stream_key_id, bytes(row.sealed_key))
            found = opened.get(entry)
            if found is None:
                found = opened[entry] = open_chunk_key(key, entry[1])
            return found

        def _one(row: Chunk | StoredChunk, key: nacl.public.PrivateKey) -> Decoded:
            ad = associated_data(
                stream.citizen_id, row.stream_id, row.seq, row.schema_version, row.format
            )
            try:
                plain = decrypt_with_key(_chunk_key(row, key), row.ciphertext, ad)
            except ChunkIntegrityError as exc:
                raise IntegrityFailure(
                    f"chunk {row.id} of stream {stream.id} failed its integrity check; "
                    "it may have been tampered with",
                    details=[{"chunk_id": row.id, "seq": row.seq}],
                ) from exc
            return decode_part(plain, row.format, schema, columns)

        with ThreadPoolExecutor(max_workers=self._workers) as pool:
            pending = [pool.submit(_one, row, _key(row)) for row in rows]
            parts = [f.result() for f in pending]
        if not parts:
            return pl.DataFrame(schema=schema).select(list(columns) if columns else schema.names())
        return assemble(parts)
