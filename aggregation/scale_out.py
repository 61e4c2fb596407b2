"""Where the decrypt-and-bound stage runs: threads in this process, or Dask distributed workers.

Both run :func:`aggregation.contributions.decrypt_and_bound` on shards of whole citizens and hand
back bounded frames; noise is added once, afterwards, by the release step in this process. The
frames are combined in a canonical order, so the frame handed to OpenDP is byte-identical whichever
path made it (``tests/test_aggregation_dask.py`` runs a real ``LocalCluster``).

Dask workers receive the sealed shards and the aggregation service's private key: run them only on
machines the city trusts with that key (see ``docs/aggregation.md``, "Running on a cluster").
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

import polars as pl

from aggregation.collector_pause import collector_paused
from aggregation.consent_gate import AdmittedConsent, ConsentEvidence, judge
from aggregation.contributions import BoundSpec, decrypt_and_bound
from aggregation.opened_keys import OpenedKeys
from aggregation.sealed_material import SealedCitizen
from consent.decision import AccessRequest
from consent.signing import SignatureMemo

#: Shards each Dask worker holds at once (one running, one queued so it never waits for data).
IN_FLIGHT_PER_WORKER = 2


class ShardRunner(Protocol):
    name: str
    #: True when the consent gate's verification is worth sending to the workers too (their
    #: processes run Python in parallel; threads here would share one interpreter lock).
    judges_remotely: bool

    def judge(
        self, shards: Iterable[Sequence[ConsentEvidence]], request: AccessRequest
    ) -> list[AdmittedConsent]: ...

    def run(
        self, shards: Sequence[Sequence[SealedCitizen]], service_key: bytes, spec: BoundSpec
    ) -> list[pl.DataFrame]: ...

    def forget_opened_keys(self) -> None:
        """Drop the keys this runner remembers in this process (see ``aggregation.opened_keys``)."""
        ...

    def close(self) -> None: ...


class ThreadShardRunner:
    """In-process: a few threads (libsodium, polars and most of the decoding release the GIL)."""

    name = "in-process"
    judges_remotely = False

    def __init__(self, workers: int, key_memo_seconds: float = 0.0) -> None:
        self._workers = max(1, workers)
        self.opened = OpenedKeys(key_memo_seconds)

    def judge(
        self, shards: Iterable[Sequence[ConsentEvidence]], request: AccessRequest
    ) -> list[AdmittedConsent]:
        return [a for s in shards for a in judge(s, request)]

    def run(
        self, shards: Sequence[Sequence[SealedCitizen]], service_key: bytes, spec: BoundSpec
    ) -> list[pl.DataFrame]:
        opened = self.opened
        if len(shards) <= 1 or self._workers == 1:
            return [decrypt_and_bound(s, service_key, spec, opened) for s in shards]
        with ThreadPoolExecutor(max_workers=self._workers) as pool:
            return list(pool.map(lambda s: decrypt_and_bound(s, service_key, spec, opened), shards))

    def forget_opened_keys(self) -> None:
        self.opened.forget()

    def close(self) -> None:
        return None


class DaskShardRunner:
    """Dask distributed: ``address`` of a running scheduler, or ``local`` to start a
    ``LocalCluster`` of ``workers`` processes (one thread each) on first use."""

    name = "dask"
    judges_remotely = True

    def __init__(self, address: str, workers: int, key_memo_seconds: float = 0.0) -> None:
        self._address = address
        self._workers = max(1, workers)
        self._key_memo_seconds = key_memo_seconds
        self._client: Any = None
        self._cluster: Any = None
        self._lock = threading.Lock()

    def _connect(self) -> Any:
        with self._lock:
            if self._client is None:
                from distributed import Client, LocalCluster  # imported only when Dask is used

                if self._address == "local":
                    self._cluster = LocalCluster(  # type: ignore[no-untyped-call]
                        n_workers=self._workers,
                        threads_per_worker=1,
                        processes=True,
                        dashboard_address=None,
                        host="127.0.0.1",
                    )
                    self._client = Client(self._cluster)  # type: ignore[no-untyped-call]
                else:
                    self._client = Client(self._address)  # type: ignore[no-untyped-call]
                # Load the libraries on every worker now, not inside the first query.
                self._client.run(_load_worker_libraries)
            return self._client

    def judge(
        self, shards: Iterable[Sequence[ConsentEvidence]], request: AccessRequest
    ) -> list[AdmittedConsent]:
        client = self._connect()
        parts = self._stream(client, judge_on_worker, shards, request=request)
        return [a for part in parts for a in part]

    def run(
        self, shards: Sequence[Sequence[SealedCitizen]], service_key: bytes, spec: BoundSpec
    ) -> list[pl.DataFrame]:
        client = self._connect()
        key = client.scatter(service_key, broadcast=True)
        spec_future = client.scatter(spec, broadcast=True)
        return self._stream(
            client,
            bound_on_worker,
            shards,
            service_key=key,
            spec=spec_future,
            key_memo_seconds=self._key_memo_seconds,
        )

    def _stream(
        self, client: Any, fn: Callable[..., R], shards: Iterable[Any], **kwargs: Any
    ) -> list[R]:
        """``fn(shard, **kwargs)`` for every shard on the workers, results in shard order.
        ``shards`` may be an iterator that reads each shard when it is asked for.

        The shards go to the workers as data, not inside the task graph (which the scheduler
        would serialise whole), and a few at a time (:data:`IN_FLIGHT_PER_WORKER` per worker):
        scattering a whole city at once held every shard twice, in this process and on the
        workers (20.6 GB at 1,000,000 citizens)."""
        from distributed import as_completed  # imported only when Dask is used

        results: dict[int, R] = {}
        pending: dict[Any, int] = {}
        window = max(1, IN_FLIGHT_PER_WORKER * self._workers)
        todo = iter(enumerate(shards))
        done = as_completed()  # type: ignore[no-untyped-call]

        def submit_next() -> None:
            for index, part in todo:
                # hash=False: Dask would otherwise tokenize each shard to name it, which costs
                # ten times pickling it (3.4 s against 0.26 s for 17,000 citizens' material).
                [data] = client.scatter([part], hash=False)
                future = client.submit(fn, data, pure=False, **kwargs)
                pending[future] = index
                done.add(future)  # type: ignore[no-untyped-call]
                return

        for _ in range(window):
            submit_next()
        for future in done:
            results[pending.pop(future)] = future.result()
            future.release()
            submit_next()
        return [results[i] for i in range(len(results))]

    def forget_opened_keys(self) -> None:
        # The workers' memos are in their processes; they expire (key_memo_seconds). Reaching
        # every worker from inside an erasure's transaction could stall it on a slow cluster.
        return None

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
            if self._cluster is not None:
                self._cluster.close()
            self._client = self._cluster = None


def _load_worker_libraries() -> None:
    import aggregation.consent_gate
    import aggregation.contributions  # noqa: F401


#: Signatures a worker process has verified, kept across queries (a hit means these exact bytes
#: verified before, so a second query over the same consents skips Ed25519; see
#: ``consent.signing.SignatureMemo``). Made on a worker's first judgment, never at import.
_worker_memo: list[SignatureMemo] = []


def judge_on_worker(
    evidence: Sequence[ConsentEvidence], request: AccessRequest
) -> list[AdmittedConsent]:
    """:func:`aggregation.consent_gate.judge` with this worker process's signature memo."""
    if not _worker_memo:
        _worker_memo.append(SignatureMemo())
    with collector_paused():
        return judge(evidence, request, _worker_memo[0])


#: Keys a worker process has opened, kept across queries (``aggregation.opened_keys``). Made on a
#: worker's first shard, never at import.
_worker_opened: list[OpenedKeys] = []


def bound_on_worker(
    shard: Sequence[SealedCitizen], service_key: bytes, spec: BoundSpec, key_memo_seconds: float
) -> pl.DataFrame:
    """:func:`aggregation.contributions.decrypt_and_bound` on a worker, with this worker process's
    opened keys, collector paused."""
    if not _worker_opened:
        _worker_opened.append(OpenedKeys(key_memo_seconds))
    with collector_paused():
        return decrypt_and_bound(shard, service_key, spec, _worker_opened[0])


T = TypeVar("T")
R = TypeVar("R")


def shard(items: Sequence[T], size: int) -> list[list[T]]:
    """Consecutive shards of ``size`` items, whole citizens each (the same split whatever the
    runner)."""
    return [list(items[i : i + size]) for i in range(0, len(items), size)]
