"""Decrypt and bound: from sealed material to the frame handed to OpenDP.

:func:`decrypt_and_bound` is pure (no database, no clock) and runs the same way on a thread here or
on a Dask worker (:mod:`aggregation.scale_out`); shards are whole citizens, so bounding per shard is
exact and the concatenation of the shards, sorted, is the same frame whichever path made it.

Properties (tests: ``tests/test_aggregation_bounding.py``):

* **Only what the gate let through.** The frame holds records of the given sealed citizens only,
  opened with grants sealed to the aggregation service; a chunk whose key has no grant, or that
  fails its integrity check, removes that citizen's whole contribution (logged for operators by
  chunk id, never shown to analysts).
* **Bounded.** At most ``records_per_citizen`` rows per citizen and group (groups: the query's
  grouping dimensions), whatever the citizen uploaded; numeric values clipped to the catalogue's
  bounds; dimension values inside their public domains (rows outside are dropped). Which rows are
  kept is a pseudo-random but deterministic choice (a seeded hash of the record), so that long
  windows are not biased to their start and equal inputs give byte-identical frames.
* **Citizen attributes** (district, age band) come from the citizen's latest profile record; a
  citizen without one is left out of queries that need them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import polars as pl

from aggregation.opened_keys import OpenedKeys
from aggregation.sealed_material import SealedChunk, SealedCitizen
from vault.chunk_codec import Decoded, assemble, associated_data, decode_part
from vault.crypto.chunk_cipher import ChunkIntegrityError, decrypt_with_key
from vault.crypto.sealing import SealedOpenError, open_sealed_with, public_key_of

log = logging.getLogger("civic.aggregation")

CITIZEN = "citizen"
_ORDER_SEED = (0x5EED, 0xC1, 0x71, 0x7E)  # fixed: the kept rows must not change between runs


@dataclass(frozen=True, slots=True)
class BoundSpec:
    """Everything the decrypt-and-bound stage needs, picklable."""

    dataset_schema: pl.Schema
    profile_schema: pl.Schema | None
    time_field: str | None
    time_from: datetime | None
    time_to: datetime | None
    numeric_bounds: tuple[tuple[str, float, float], ...]
    record_dimensions: tuple[tuple[str, tuple[str, ...]], ...]  # dims read from the records
    citizen_dimensions: tuple[tuple[str, tuple[str, ...]], ...]  # dims read from the profile
    group_by: tuple[str, ...]
    filters: tuple[tuple[str, tuple[str, ...]], ...]
    records_per_citizen: int

    @property
    def output_schema(self) -> pl.Schema:
        cols: list[tuple[str, pl.DataType]] = [(CITIZEN, pl.String())]
        cols += [(name, pl.String()) for name in self.group_by]
        cols += [(name, pl.Float64()) for name, _, _ in self.numeric_bounds]
        return pl.Schema(cols)


class _Unreadable(Exception):
    pass


# Opens a sealed box given the opener's public key, private key and the sealed bytes.
Opener = Callable[[bytes, bytes, bytes], bytes]


def _open_chunks(
    citizen: SealedCitizen,
    chunks: Sequence[SealedChunk],
    service_public: bytes,
    service_private: bytes,
    keys: dict[str, tuple[bytes, bytes]],
    open_sealed: Opener,
) -> list[tuple[bytes, str]]:
    """The plaintext of each chunk (and its format); raises :class:`_Unreadable` on any failure."""
    grants = {key_id: (sealed, public) for key_id, sealed, public in citizen.grants}
    # A writer's consecutive chunks share one sealed chunk key (vault.chunk_write_keys).
    chunk_keys: dict[tuple[str, bytes], bytes] = {}
    out = []
    for chunk in chunks:
        pair = keys.get(chunk.stream_key_id)
        if pair is None:
            grant = grants.get(chunk.stream_key_id)
            if grant is None:
                raise _Unreadable(f"no grant opens the key of chunk {chunk.chunk_id}")
            sealed, public = grant
            try:
                pair = (public, open_sealed(service_public, service_private, sealed))
            except SealedOpenError as exc:
                raise _Unreadable(f"the grant for chunk {chunk.chunk_id} does not open") from exc
            keys[chunk.stream_key_id] = pair
        ad = associated_data(
            citizen.citizen_id, chunk.stream_id, chunk.seq, chunk.schema_version, chunk.format
        )
        try:
            entry = (chunk.stream_key_id, chunk.sealed_key)
            chunk_key = chunk_keys.get(entry) or open_sealed(pair[0], pair[1], chunk.sealed_key)
            chunk_keys[entry] = chunk_key
            plain = decrypt_with_key(chunk_key, chunk.ciphertext, ad)
        except (SealedOpenError, ChunkIntegrityError) as exc:
            raise _Unreadable(f"chunk {chunk.chunk_id} failed its integrity check") from exc
        out.append((plain, chunk.format))
    return out


def _frame(opened: list[tuple[str, list[tuple[bytes, str]]]], schema: pl.Schema) -> pl.DataFrame:
    """Decode every chunk, concatenate once, and add the ``citizen`` column from row counts
    (one polars operation per shard, not per chunk: chunks are small and many)."""
    parts: list[Decoded] = []
    owners: list[str] = []
    counts: list[int] = []
    for citizen_id, chunks in opened:
        for plain, chunk_format in chunks:
            part = decode_part(plain, chunk_format, schema)
            parts.append(part)
            owners.append(citizen_id)
            counts.append(len(part))
    if not parts:
        return pl.DataFrame(schema=pl.Schema([*schema.items(), (CITIZEN, pl.String())]))
    whole = assemble(parts).rechunk().select([pl.col(n).cast(t) for n, t in schema.items()])
    citizen = pl.Series(CITIZEN, owners, dtype=pl.String).gather(
        np.repeat(np.arange(len(owners)), counts)
    )
    return whole.with_columns(citizen)


def decrypt_shard(
    shard: Sequence[SealedCitizen],
    service_key: bytes,
    spec: BoundSpec,
    opened: OpenedKeys | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """Open every chunk of the shard: (records with a ``citizen`` column, profile records or
    ``None``). A citizen whose material does not open is left out entirely. ``opened``: keys
    opened by earlier queries (:mod:`aggregation.opened_keys`); ``None``: every key is opened."""
    open_sealed: Opener = opened.open if opened is not None else open_sealed_with
    service_public = public_key_of(service_key)
    records: list[tuple[str, list[tuple[bytes, str]]]] = []
    profiles: list[tuple[str, list[tuple[bytes, str]]]] = []
    for citizen in shard:
        keys: dict[str, tuple[bytes, bytes]] = {}
        try:
            mine = _open_chunks(
                citizen, citizen.records, service_public, service_key, keys, open_sealed
            )
            theirs = (
                _open_chunks(
                    citizen, citizen.profile, service_public, service_key, keys, open_sealed
                )
                if spec.profile_schema is not None
                else []
            )
        except _Unreadable as exc:
            log.error("citizen material left out of a release: %s", exc)
            continue
        records.append((citizen.citizen_id, mine))
        profiles.append((citizen.citizen_id, theirs))
    out = _frame(records, spec.dataset_schema)
    if spec.profile_schema is None:
        return out, None
    return out, _frame(profiles, spec.profile_schema)


def bound(records: pl.DataFrame, profiles: pl.DataFrame | None, spec: BoundSpec) -> pl.DataFrame:
    """The bounded frame (see the module docstring), sorted by citizen and group, with columns
    ``citizen``, the grouping dimensions (strings) and the numeric fields (floats)."""
    frame = records.lazy()
    if spec.time_field is not None and spec.time_from is not None:
        frame = frame.filter(pl.col(spec.time_field) >= spec.time_from)
    if spec.time_field is not None and spec.time_to is not None:
        frame = frame.filter(pl.col(spec.time_field) < spec.time_to)
    if spec.citizen_dimensions:
        assert profiles is not None, "citizen dimensions need the profile records"
        names = [name for name, _ in spec.citizen_dimensions]
        latest = (
            profiles.lazy()
            .sort([CITIZEN, "ts"])
            .group_by(CITIZEN, maintain_order=True)
            .last()
            .select([CITIZEN, *names])
        )
        frame = frame.join(latest, on=CITIZEN, how="inner")
    for name, domain in (*spec.record_dimensions, *spec.citizen_dimensions):
        frame = frame.filter(pl.col(name).cast(pl.String).is_in(list(domain)))
    for name, values in spec.filters:
        frame = frame.filter(pl.col(name).cast(pl.String).is_in(list(values)))
    numeric = [name for name, _, _ in spec.numeric_bounds]
    frame = frame.drop_nulls([*numeric, *spec.group_by]) if numeric or spec.group_by else frame
    order = pl.struct(pl.all()).hash(*_ORDER_SEED)
    frame = (
        frame.with_columns(_order=order)
        .sort([CITIZEN, *spec.group_by, "_order"])
        .filter(pl.int_range(pl.len()).over([CITIZEN, *spec.group_by]) < spec.records_per_citizen)
    )
    return frame.select(
        pl.col(CITIZEN),
        *[pl.col(g).cast(pl.String) for g in spec.group_by],
        *[
            pl.col(name).cast(pl.Float64).clip(lower, upper).alias(name)
            for name, lower, upper in spec.numeric_bounds
        ],
    ).collect()


def decrypt_and_bound(
    shard: Sequence[SealedCitizen],
    service_key: bytes,
    spec: BoundSpec,
    opened: OpenedKeys | None = None,
) -> pl.DataFrame:
    """One shard of whole citizens, decrypted and bounded (runs in a thread or a Dask task)."""
    records, profiles = decrypt_shard(shard, service_key, spec, opened)
    return bound(records, profiles, spec)


def combine(parts: Sequence[pl.DataFrame], spec: BoundSpec) -> pl.DataFrame:
    """The shards' bounded frames as one, in a canonical order (same bytes whatever the path)."""
    if not parts:
        return pl.DataFrame(schema=spec.output_schema)
    frame = pl.concat(list(parts), how="vertical", rechunk=True)
    return frame.sort(frame.columns, maintain_order=True)
