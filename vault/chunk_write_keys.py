"""Chunk keys a writer reuses for a stream's consecutive chunks (per-writer-session keys).

Sealing a fresh chunk key to the stream's public key is an X25519 operation (~50 µs): for a sensor
sending one reading per request it was the largest single cost of an append, and every reader paid
one more sealed-box open per chunk. :class:`WriterChunkKeys` lets this process's writer seal one key
per stream and use it for that stream's next chunks, within limits.

Properties (tests: ``tests/test_chunk_write_keys.py``):

* **A key serves one stream and one stream key.** An entry is found by stream id and used only
  while the stream's public key is the one it was sealed to: after the stream key changes (a
  consent withdrawn rotates it), the next chunk gets a new key, sealed to the new public key, so
  the old stream key never opens a chunk written after the change.
* **Nothing weaker on disk.** Every chunk row still holds its sealed key and its own ciphertext,
  encrypted with XChaCha20-Poly1305 under a fresh random 192-bit nonce and the chunk's own
  associated data (citizen, stream, sequence, schema version, format). Readers are unchanged;
  chunks that share a key share identical sealed bytes, so a reader opens them once.
* **Bounded.** A key is used for at most ``max_uses`` chunks and for at most ``max_age_seconds``
  after it was made (``CIVIC_CHUNK_KEY_REUSE_SECONDS``; 0 gives every chunk a key of its own, as
  before); expired keys leave memory at the next write after at most ``SWEEP_SECONDS`` more. Someone who reads this process's memory meanwhile learns keys to the chunks written
  under them: the same process saw those chunks' plaintext when they were appended.
* **Erasure forgets.** :meth:`forget_citizen` (an erasure hook) drops the citizen's keys from this
  process at once. Other server processes (``CIVIC_WORKERS`` > 1) drop theirs when they expire.

Safe to share between threads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from vault.crypto.chunk_cipher import ChunkKey, new_chunk_key

#: Chunks one key may encrypt before the writer seals a new one.
MAX_USES = 10_000
#: How often (at most) expired keys are looked for and dropped from memory.
SWEEP_SECONDS = 30.0
#: Streams remembered at once; beyond this the memory starts afresh (a burst of new writers).
MAX_STREAMS = 100_000


@dataclass(slots=True)
class _Entry:
    citizen_id: str
    public_key: bytes
    key: ChunkKey
    born: float
    uses: int


class WriterChunkKeys:
    """The chunk key this process's writer uses next for each stream. See the module."""

    def __init__(
        self,
        max_age_seconds: float,
        max_uses: int = MAX_USES,
        max_streams: int = MAX_STREAMS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_age = max_age_seconds
        self._max_uses = max_uses
        self._max_streams = max_streams
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()
        self._swept = clock()

    def __len__(self) -> int:
        return len(self._entries)

    def key_for(self, citizen_id: str, stream_id: str, stream_public_key: bytes) -> ChunkKey:
        """The key to encrypt this stream's next chunk with (sealed to ``stream_public_key``)."""
        if self._max_age <= 0 or self._max_uses <= 1:
            return new_chunk_key(stream_public_key)
        now = self._clock()
        with self._lock:
            if now - self._swept > min(self._max_age, SWEEP_SECONDS):
                self._drop_expired(now)
            entry = self._entries.get(stream_id)
            if (
                entry is not None
                and entry.public_key == stream_public_key
                and entry.citizen_id == citizen_id
                and entry.uses < self._max_uses
                and now - entry.born <= self._max_age
            ):
                entry.uses += 1
                return entry.key
        key = new_chunk_key(stream_public_key)  # outside the lock: ~50 µs of X25519
        with self._lock:
            if len(self._entries) >= self._max_streams:
                self._drop_expired(now)
                if len(self._entries) >= self._max_streams:
                    self._entries = {}
            self._entries[stream_id] = _Entry(citizen_id, bytes(stream_public_key), key, now, 1)
        return key

    def forget_citizen(self, citizen_id: str) -> None:
        """Drop every key of ``citizen_id``'s streams (the citizen is being erased)."""
        with self._lock:
            self._entries = {
                sid: e for sid, e in self._entries.items() if e.citizen_id != citizen_id
            }

    def forget(self) -> None:
        """Drop every key."""
        with self._lock:
            self._entries = {}

    def _drop_expired(self, now: float) -> None:
        self._swept = now
        self._entries = {
            sid: e
            for sid, e in self._entries.items()
            if now - e.born <= self._max_age and e.uses < self._max_uses
        }
