"""The one place that writes and reads encrypted chunks.

Writing needs only the stream's public key: a writer can append but cannot read. Reading needs the
stream's private key, opened from a seal (the owner's root key here; a grant elsewhere).

Property: every chunk is sealed to the stream's current key generation and bound to (citizen,
stream, seq, schema version); a chunk that fails verification is reported with its id and never
returned in part.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import nacl.public
import polars as pl
from sqlmodel import Session

from vault.chunk_codec import associated_data, decode_frame, encode_frame
from vault.clock import utcnow
from vault.crypto.chunk_cipher import (
    ChunkIntegrityError,
    EncryptedChunk,
    decrypt_chunk,
    encrypt_chunk,
)
from vault.crypto.sealing import SealedOpenError, open_sealed
from vault.errors import IntegrityFailure
from vault.models import Chunk, Stream, StreamKey
from vault.repositories import streams as stream_repo

#: Below this many chunks, decrypting in the calling thread is faster than handing work to a pool.
_PARALLEL_FROM = 4

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
    def __init__(self, workers: int = 2) -> None:
        self._workers = workers

    def write(self, session: Session, stream: Stream, frame: pl.DataFrame) -> WrittenChunk:
        """Encrypt ``frame`` as the stream's next chunk. The caller holds the stream row (locked)."""
        key = stream_repo.key(session, stream.current_key_id)
        if key is None:
            raise IntegrityFailure(f"stream {stream.id} has no current key")
        seq = stream.next_seq
        stream.next_seq = seq + 1
        ad = associated_data(stream.citizen_id, stream.id, seq, stream.schema_version)
        sealed = encrypt_chunk(encode_frame(frame), ad, key.public_key)
        chunk = Chunk(
            id=uuid.uuid4().hex,
            stream_id=stream.id,
            seq=seq,
            stream_key_id=key.id,
            schema_version=stream.schema_version,
            record_count=frame.height,
            ciphertext=sealed.ciphertext,
            sealed_key=sealed.sealed_key,
            created_at=utcnow(),
        )
        session.add(stream)
        session.add(chunk)
        session.flush()
        return WrittenChunk(chunk.id, seq, frame.height)

    def read(
        self,
        session: Session,
        stream: Stream,
        open_key: KeyOpener,
        chunks: Sequence[Chunk] | None = None,
        columns: Sequence[str] | None = None,
    ) -> pl.DataFrame:
        """Decrypt and decode chunks (all of the stream's by default), in sequence order."""
        rows = (
            list(chunks)
            if chunks is not None
            else list(stream_repo.chunks_of_stream(session, stream.id))
        )
        keys: dict[str, nacl.public.PrivateKey] = {}
        for row in rows:
            if row.stream_key_id not in keys:
                key = stream_repo.key(session, row.stream_key_id)
                if key is None or key.stream_id != stream.id:
                    raise IntegrityFailure(f"chunk {row.id} names a key that is not its stream's")
                keys[row.stream_key_id] = open_key(key)

        def _one(row: Chunk) -> pl.DataFrame:
            ad = associated_data(stream.citizen_id, row.stream_id, row.seq, row.schema_version)
            try:
                plain = decrypt_chunk(
                    keys[row.stream_key_id], EncryptedChunk(row.ciphertext, row.sealed_key), ad
                )
            except ChunkIntegrityError as exc:
                raise IntegrityFailure(
                    f"chunk {row.id} of stream {stream.id} failed its integrity check; "
                    "it may have been tampered with",
                    details=[{"chunk_id": row.id, "seq": row.seq}],
                ) from exc
            return decode_frame(plain, columns)

        if len(rows) >= _PARALLEL_FROM and self._workers > 1:
            with ThreadPoolExecutor(max_workers=self._workers) as pool:
                frames = list(pool.map(_one, rows))
        else:
            frames = [_one(row) for row in rows]
        if not frames:
            return pl.DataFrame()
        return pl.concat(frames, how="vertical_relaxed", rechunk=False)
