"""Which sealed material a shard held, remembered by the database's change revisions (warm path).

A remembered bounded frame (:mod:`aggregation.bounded_shards`) is found by the digest of every byte
of its shard's sealed material, so the warm path used to read all that material (a few rows per
citizen: about 3 s at 100,000 citizens) only to learn that nothing had changed. The database says
so more cheaply: its triggers (migration 0005) raise

* ``citizens.consent_revision`` with every insert, update or delete of the citizen's consents,
  consent events and key grants (the grants open the stream keys), and
* ``streams.chunk_revision`` with every insert, update or delete of the stream's chunks and any
  change of a stream key's public half; a new key generation changes ``streams.current_key_id``;
  a stream created or deleted appears in, or disappears from, the citizen's list of streams.

:func:`shard_fingerprint` covers, for each citizen of a shard, the citizen and consent ids, the
verified terms' digest, the consent revision and every stream of the types read (id, type, chunk
revision, current key), with the service's public key and the whole spec. :class:`MaterialDigests`
maps a fingerprint to the :func:`~aggregation.bounded_shards.shard_digest` of the material read
after the fingerprint's revisions were read.

Properties (tests: ``tests/test_change_revisions.py``):

* **A hit names exactly the material a fresh read would return.** Any change of a shard's material
  committed after its revisions were read raises a revision in the fingerprint, so the fingerprint
  differs and the material is read again. Material read after the revisions can only be as new or
  newer than they say: if it was newer, the next fingerprint differs too (a miss, never a wrong
  hit).
* **It decides nothing.** Which citizens and consents a shard holds comes from the consent gate and
  the ledger at every query; the fingerprint only stands in for reading their material.
* **Bounded.** At most :data:`MAX_ENTRIES` fingerprints, oldest first out; erasing a citizen
  empties it (an erasure hook); off when the frame memo is off.

Safe to share between threads.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Mapping, Sequence

from aggregation.contributions import BoundSpec
from aggregation.repository import StreamRevision
from aggregation.sealed_material import ContributingConsent

#: Fingerprints remembered at most (one per shard of each recent query shape).
MAX_ENTRIES = 100_000
_FINGERPRINT_VERSION = b"civic-material-revisions-v1"


def shard_fingerprint(
    shard: Sequence[ContributingConsent],
    revisions: Mapping[str, int],
    streams: Mapping[str, Sequence[StreamRevision]],
    service_public: bytes,
    spec: BoundSpec,
) -> bytes:
    """The fingerprint of ``shard``'s sealed material (see the module); ``revisions``: each
    citizen's consent revision, ``streams``: their streams of the types the query reads, in a
    fixed order, both read just before the material would be
    (:func:`aggregation.repository.consent_revisions`, :func:`~aggregation.repository.stream_revisions`).
    ``repr`` of tuples of strings and numbers is unambiguous (strings are quoted and escaped), and
    cheap."""
    described = repr(
        (
            _FINGERPRINT_VERSION,
            service_public,
            repr(spec),
            [
                (
                    c.citizen_id,
                    c.consent_id,
                    c.terms_sha256,
                    revisions.get(c.citizen_id),
                    streams.get(c.citizen_id),
                )
                for c in shard
            ],
        )
    )
    return hashlib.blake2b(described.encode(), digest_size=32).digest()


class MaterialDigests:
    """Shard digests by :func:`shard_fingerprint`. See the module."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self._max = max_entries
        self._digests: dict[bytes, bytes] = {}  # oldest first
        self._lock = threading.Lock()

    def get(self, fingerprint: bytes) -> bytes | None:
        with self._lock:
            return self._digests.get(fingerprint)

    def put(self, fingerprint: bytes, digest: bytes) -> None:
        with self._lock:
            self._digests.pop(fingerprint, None)
            self._digests[fingerprint] = digest
            while len(self._digests) > self._max:
                del self._digests[next(iter(self._digests))]

    def forget(self) -> None:
        """Drop every fingerprint (a citizen was erased)."""
        with self._lock:
            self._digests = {}

    def __len__(self) -> int:
        with self._lock:
            return len(self._digests)
