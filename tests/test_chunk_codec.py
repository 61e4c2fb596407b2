"""Chunk plaintext formats: what is written reads back exactly, in order, whatever the mix of
formats a stream has accumulated (frames written before ``arrow-ipc-lz4`` existed included)."""

from __future__ import annotations

import io

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vault.catalogue import default_catalogue
from vault.chunk_codec import (
    ARROW_IPC,
    ARROW_IPC_LZ4,
    JSON_ROWS,
    ChunkFormatError,
    ChunkPlaintext,
    assemble,
    decode,
    decode_part,
    encode_frame,
    encode_rows,
)

TRIP = default_catalogue().get("mobility.trip")
SCHEMA = TRIP.polars_schema()

trip = st.tuples(
    st.integers(min_value=0, max_value=4_000_000_000_000_000),  # microseconds since 1970
    st.sampled_from(["walk", "bike", "bus", "metro", "car", "other"]),
    st.floats(min_value=0, max_value=100, allow_nan=False),
    st.floats(min_value=0, max_value=240, allow_nan=False),
)


def frame_of(rows: list[tuple[int, str, float, float]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "ts": pl.Series([r[0] for r in rows], dtype=pl.Int64)
            .cast(pl.Datetime("us"))
            .dt.replace_time_zone("UTC"),
            "mode": pl.Series([r[1] for r in rows], dtype=pl.String),
            "km": pl.Series([r[2] for r in rows], dtype=pl.Float64),
            "minutes": pl.Series([r[3] for r in rows], dtype=pl.Float64),
        }
    ).select(SCHEMA.names())


def legacy_ipc(frame: pl.DataFrame) -> ChunkPlaintext:
    """How frames were written before ``arrow-ipc-lz4``: Arrow's per-buffer LZ4."""
    buffer = io.BytesIO()
    frame.write_ipc(buffer, compression="lz4")
    return ChunkPlaintext(ARROW_IPC, buffer.getvalue(), frame.height)


def json_rows(frame: pl.DataFrame) -> ChunkPlaintext:
    micros = frame.with_columns(pl.col("ts").dt.epoch("us"))
    return encode_rows(SCHEMA.names(), micros.rows())


ENCODERS = {ARROW_IPC_LZ4: encode_frame, ARROW_IPC: legacy_ipc, JSON_ROWS: json_rows}


@settings(max_examples=150, deadline=None)
@given(st.lists(trip, max_size=300))
def test_a_frame_reads_back_exactly(rows: list[tuple[int, str, float, float]]) -> None:
    frame = frame_of(rows)
    plain = encode_frame(frame)
    assert plain.format == ARROW_IPC_LZ4
    assert plain.record_count == frame.height
    assert decode(plain.data, plain.format, SCHEMA).equals(frame)
    assert decode(plain.data, plain.format, SCHEMA, ["km", "ts"]).equals(frame.select("km", "ts"))


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(sorted(ENCODERS)), st.lists(trip, min_size=0, max_size=40)),
        max_size=12,
    )
)
def test_chunks_of_any_formats_assemble_in_order(
    chunks: list[tuple[str, list[tuple[int, str, float, float]]]],
) -> None:
    """A stream's chunks, whatever format each was written in, become one frame equal to their
    records in sequence order."""
    frames = [frame_of(rows) for _, rows in chunks]
    parts = []
    for (fmt, _), frame in zip(chunks, frames, strict=True):
        plain = ENCODERS[fmt](frame)
        assert plain.format == fmt
        parts.append(decode_part(plain.data, plain.format, SCHEMA))
    if not parts:
        return
    expected = pl.concat(frames, how="vertical_relaxed")
    assert assemble(parts).equals(expected)


def test_a_frame_is_compressed() -> None:
    rows = [(i * 900_000_000, "bike", 3.5, 12.0) for i in range(10_000)]
    frame = frame_of(rows)
    plain = encode_frame(frame)
    assert len(plain.data) < frame.estimated_size() / 4


def test_large_and_small_chunks_read_back_in_order() -> None:
    """Large chunks are read by Arrow, small ones by polars (vault.chunk_codec._read_lz4_ipc):
    both read back exactly, and mixed they assemble in order."""
    large = frame_of([(i * 900_000_000, "bus", i % 100 / 1.0, 30.5) for i in range(20_000)])
    small = frame_of([(5, "walk", 1.25, 3.0), (6, "metro", 2.5, 4.0)])
    parts = []
    for frame in (large, small, large, small, small, large):
        plain = encode_frame(frame)
        part = decode_part(plain.data, plain.format, SCHEMA)
        assert isinstance(part, pl.DataFrame) == (frame is small)
        parts.append(part)
    expected = pl.concat([large, small, large, small, small, large])
    assert assemble(parts).equals(expected)
    plain = encode_frame(large)
    assert decode(plain.data, plain.format, SCHEMA, ["mode"]).equals(large.select("mode"))


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"\x01\x02", "shorter than its length prefix"),
        ((1 << 40).to_bytes(8, "little") + b"x" * 20, "over the limit"),
        ((100).to_bytes(8, "little") + b"not an lz4 frame", "does not decode"),
    ],
)
def test_a_malformed_chunk_is_refused_clearly(data: bytes, reason: str) -> None:
    with pytest.raises(ChunkFormatError, match=reason):
        decode(data, ARROW_IPC_LZ4, SCHEMA)


def test_a_wrong_length_prefix_is_refused() -> None:
    good = encode_frame(frame_of([(0, "walk", 1.0, 2.0)])).data
    size = int.from_bytes(good[:8], "little")
    with pytest.raises(ChunkFormatError):
        decode((size + 1).to_bytes(8, "little") + good[8:], ARROW_IPC_LZ4, SCHEMA)
