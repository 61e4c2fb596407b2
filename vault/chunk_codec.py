"""A chunk's plaintext: one polars frame as Parquet (zstd), and the associated data that binds it.

Parquet is columnar, compressed before encryption, and lets a reader decode only the columns it needs.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import polars as pl

from consent.canonical import canonical_json

CHUNK_FORMAT = "parquet-zstd"


def encode_frame(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_parquet(buffer, compression="zstd", compression_level=3, statistics=False)
    return buffer.getvalue()


def decode_frame(data: bytes, columns: Sequence[str] | None = None) -> pl.DataFrame:
    return pl.read_parquet(io.BytesIO(data), columns=list(columns) if columns else None)


def associated_data(citizen_id: str, stream_id: str, seq: int, schema_version: int) -> bytes:
    """What a chunk's ciphertext is bound to: moving it to another citizen, stream or position, or
    relabelling its schema version, makes decryption fail."""
    return canonical_json(
        {
            "chunk": {
                "citizen": citizen_id,
                "stream": stream_id,
                "seq": seq,
                "schema_version": schema_version,
                "format": CHUNK_FORMAT,
            }
        }
    )
