"""Sealed keys this process has opened, remembered across queries (the warm path).

A release opens, for every contributing citizen, the grants of their streams (stream private keys
sealed to the aggregation service) and the key of every chunk it reads (sealed to the stream key):
four sealed-box opens per citizen for a district grouping, about 33 µs of public-key work each.
A second query over the same citizens opens the same sealed bytes again; :class:`OpenedKeys`
remembers what each opened to.

Properties (tests: ``tests/test_opened_keys.py``):

* **A hit returns exactly what opening would return.** Opening is a pure function of the opener's
  key pair and the sealed bytes, and an entry is found only by the opener's public key and the
  sealed bytes, in full: sealed bytes altered in the database are another entry, opened (and
  refused) afresh. A failed open is never remembered.
* **It decides nothing.** Which sealed material a release reads is decided before, by the consent
  gate and :func:`aggregation.sealed_material.gather_sealed` (only grants of consents that passed
  the gate, made for exactly the verified terms). A withdrawn consent's grants are deleted and its
  stream key rotated, so its entries are never asked for again.
* **Bounded in time and size.** The memo holds secret keys in this process's memory, which
  already holds the service's private key (the key that opens every grant), so it exposes nothing
  more to someone inside the process. Still, every entry is dropped at most ``max_age_seconds``
  after it was made (the memo starts afresh; ``CIVIC_AGGREGATION_KEY_MEMO_SECONDS``, 0 turns it
  off), and at ``max_entries`` the memo starts afresh too. Erasing a citizen empties this
  process's memo at once (``AggregationRuntime`` registers :meth:`OpenedKeys.forget` as an
  erasure hook); Dask workers' memos are left to expire.

Safe to share between threads: a lost insert only costs an open.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from vault.crypto.sealing import open_sealed_with

#: About 250 MB of keys and their entries; a city of 250,000 citizens' four keys each.
MAX_ENTRIES = 1_000_000


class OpenedKeys:
    """What sealed boxes opened to, by (opener's public key, sealed bytes). See the module."""

    def __init__(
        self,
        max_age_seconds: float,
        max_entries: int = MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_age = max_age_seconds
        self._max_entries = max_entries
        self._clock = clock
        self._opened: dict[bytes, bytes] = {}
        self._born = clock()

    def __len__(self) -> int:
        return len(self._opened)

    def forget(self) -> None:
        """Drop every entry (a citizen was erased: their keys leave memory with their rows)."""
        self._opened = {}
        self._born = self._clock()

    def open(self, public: bytes, private: bytes, sealed: bytes) -> bytes:
        """:func:`vault.crypto.sealing.open_sealed_with`, remembered. Raises as it does."""
        if self._max_age <= 0:
            return open_sealed_with(public, private, sealed)
        if self._clock() - self._born > self._max_age or len(self._opened) >= self._max_entries:
            self._opened = {}
            self._born = self._clock()
        entry = public + sealed
        opened = self._opened.get(entry)
        if opened is None:
            opened = open_sealed_with(public, private, sealed)
            self._opened[entry] = opened
        return opened
