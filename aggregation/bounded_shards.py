"""Bounded frames of shards already decrypted and bounded, remembered between queries (warm path).

:func:`aggregation.contributions.decrypt_and_bound` is a pure, deterministic function of a shard's
sealed material, the aggregation service's key and the query's :class:`BoundSpec`: equal inputs give
byte-identical frames. A dashboard that asks the same question again over the same citizens makes
the same shards again; :class:`BoundedShards` remembers each shard's frame under a digest of all of
those inputs and hands it back instead of decrypting, decoding and bounding the shard once more.

Properties (tests: ``tests/test_bounded_shards.py``):

* **A hit is exactly what the stage would compute.** The digest (BLAKE2b) covers, length-prefixed,
  every byte the stage reads: each citizen's and consent's id, every chunk's id, stream, sequence,
  schema version, format, key id, ciphertext and sealed key, every grant, the service's public key
  and the whole spec (fields, bounds, time window, dimensions, filters, records per citizen). A
  changed byte anywhere is another digest, computed afresh.
* **It decides nothing.** Which citizens a shard holds is decided before, at every query, by the
  consent gate and the ledger; a withdrawn consent, a spent budget or a new record changes the
  shard and so its digest. Only shards whose inputs are unchanged are reused.
* **Bounded in time and size.** These frames are derived from citizens' records (bounded and
  clipped, not noised), so they are as sensitive as the records the process decrypts for every
  query anyway. Each is dropped at most ``max_age_seconds`` after it was made
  (``CIVIC_AGGREGATION_FRAME_MEMO_SECONDS``; 0 turns the memo off); beyond ``max_rows`` rows the
  oldest go first; erasing a citizen empties the memo at once (an erasure hook).

Shards are made by :func:`shard_by_citizen`: a citizen's shard depends on their own id only (a
hash), so a citizen joining or leaving changes one shard, not every shard after them.

Safe to share between threads.
"""

from __future__ import annotations

import hashlib
import math
import struct
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

import polars as pl

from aggregation.contributions import BoundSpec
from aggregation.sealed_material import SealedCitizen
from vault.crypto.sealing import public_key_of

#: Rows kept at most, over all remembered frames (about 60 bytes a row: ~600 MB).
MAX_ROWS = 10_000_000
_DIGEST_VERSION = b"civic-bounded-shard-v1"


class OfCitizen(Protocol):
    @property
    def citizen_id(self) -> str: ...


C = TypeVar("C", bound=OfCitizen)


def shard_by_citizen(citizens: Sequence[C], size: int) -> list[list[C]]:
    """Shards of about ``size`` citizens, a citizen's shard chosen by a hash of their id (a
    power-of-two number of shards, so it stays the same while the population is about the same
    size); each shard keeps the input's order. Empty shards are left out."""
    count = len(citizens)
    if count == 0:
        return []
    buckets = 1 << max(0, round(math.log2(max(1.0, count / max(1, size)))))
    if buckets == 1:
        return [list(citizens)]
    shards: list[list[C]] = [[] for _ in range(buckets)]
    for citizen in citizens:
        h = hashlib.blake2b(citizen.citizen_id.encode(), digest_size=8).digest()
        shards[int.from_bytes(h, "little") % buckets].append(citizen)
    return [s for s in shards if s]


def _citizen(parts: list[bytes], citizen: SealedCitizen) -> None:
    """One citizen's material as a header of numbers (counts, sequence numbers, schema versions
    and the length of every field) followed by the fields: unambiguous, and one ``pack`` a
    citizen (this runs for every citizen of every query)."""
    numbers: list[int] = [len(citizen.records), len(citizen.profile), len(citizen.grants)]
    fields: list[bytes] = [citizen.citizen_id.encode(), citizen.consent_id.encode()]
    for chunk in (*citizen.records, *citizen.profile):
        numbers += (chunk.seq, chunk.schema_version)
        fields += (
            chunk.chunk_id.encode(),
            chunk.stream_id.encode(),
            chunk.format.encode(),
            chunk.stream_key_id.encode(),
            chunk.ciphertext,
            chunk.sealed_key,
        )
    for key_id, sealed, public in citizen.grants:
        fields += (key_id.encode(), sealed, public)
    numbers += map(len, fields)
    parts.append(struct.pack(f"<{len(numbers)}q", *numbers))
    parts.extend(fields)


def shard_digest(shard: Sequence[SealedCitizen], service_public: bytes, spec: BoundSpec) -> bytes:
    """The digest of every input of ``decrypt_and_bound(shard, key, spec)`` (see the module)."""
    head = (_DIGEST_VERSION, service_public, repr(spec).encode())
    parts: list[bytes] = [struct.pack("<4q", len(shard), *map(len, head)), *head]
    for citizen in shard:
        _citizen(parts, citizen)
    return hashlib.blake2b(b"".join(parts), digest_size=32).digest()


#: A runner's ``run``: shards, the service key and the spec in; one bounded frame per shard out.
ShardRun = Callable[[list[list[SealedCitizen]], bytes, BoundSpec], list[pl.DataFrame]]


def bound_shards(
    shards: list[list[SealedCitizen]],
    service_key: bytes,
    spec: BoundSpec,
    run: ShardRun,
    memo: BoundedShards,
) -> list[pl.DataFrame]:
    """Each shard's bounded frame, in order: the remembered ones from ``memo``, the others made by
    ``run`` in one call (threads or Dask workers) and then remembered."""
    return bound_shards_digested(shards, service_key, spec, run, memo)[0]


def bound_shards_digested(
    shards: list[list[SealedCitizen]],
    service_key: bytes,
    spec: BoundSpec,
    run: ShardRun,
    memo: BoundedShards,
) -> tuple[list[pl.DataFrame], list[bytes]]:
    """:func:`bound_shards`, with each shard's :func:`shard_digest` (none when the memo is off)."""
    parts: list[pl.DataFrame | None] = [None] * len(shards)
    digests: list[bytes] = []
    if memo.enabled:
        service_public = public_key_of(service_key)
        digests = [shard_digest(s, service_public, spec) for s in shards]
        parts = [memo.get(d) for d in digests]
    todo = [i for i, part in enumerate(parts) if part is None]
    for i, made in zip(todo, run([shards[i] for i in todo], service_key, spec), strict=True):
        parts[i] = made
        if digests:
            memo.put(digests[i], made)
    return [p for p in parts if p is not None], digests


class BoundedShards:
    """Bounded frames by :func:`shard_digest`. See the module."""

    def __init__(
        self,
        max_age_seconds: float,
        max_rows: int = MAX_ROWS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_age = max_age_seconds
        self._max_rows = max_rows
        self._clock = clock
        self._frames: dict[bytes, tuple[float, pl.DataFrame]] = {}  # oldest first
        self._rows = 0
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self._max_age > 0

    def __len__(self) -> int:
        return len(self._frames)

    def get(self, digest: bytes) -> pl.DataFrame | None:
        if not self.enabled:
            return None
        with self._lock:
            self._expire(self._clock())
            entry = self._frames.get(digest)
            return None if entry is None else entry[1]

    def put(self, digest: bytes, frame: pl.DataFrame) -> None:
        if not self.enabled or frame.height > self._max_rows:
            return
        with self._lock:
            now = self._clock()
            self._expire(now)
            old = self._frames.pop(digest, None)
            if old is not None:
                self._rows -= old[1].height
            while self._frames and self._rows + frame.height > self._max_rows:
                self._drop_oldest()
            self._frames[digest] = (now, frame)
            self._rows += frame.height

    def forget(self) -> None:
        """Drop every frame (a citizen was erased)."""
        with self._lock:
            self._frames = {}
            self._rows = 0

    def _drop_oldest(self) -> None:
        digest = next(iter(self._frames))
        self._rows -= self._frames.pop(digest)[1].height

    def _expire(self, now: float) -> None:
        while self._frames:
            born, _ = next(iter(self._frames.values()))
            if now - born <= self._max_age:
                return
            self._drop_oldest()
