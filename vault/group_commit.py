"""Group commit: small writes from many requests share one transaction and one disk flush.

A one-record append does a few hundred microseconds of database work, and a transaction of its own
costs as much again (``BEGIN IMMEDIATE``, the commit and its flush) while it holds SQLite's one write
lock. :class:`GroupCommitter` runs such writes together: every job that arrives while the previous
group is being written joins the next group, which runs in one transaction, commits once, and only
then answers each of its jobs.

Where the groups run:

- **On the event loop itself** (SQLite, when the write lock is free): the jobs that reached the
  write step in one turn of the loop are written at the start of the next, and only the commit
  (which waits for the disk) is handed to a thread, once per group; the jobs arriving meanwhile
  form the next group. On a busy server, handing each request's work to a thread and back costs
  more CPU (the interpreter lock changing hands) than the write itself.
- **On one writer thread** otherwise (PostgreSQL; SQLite while another writer holds the lock, so
  the loop never waits for it; and jobs submitted from threads).

Properties:

- **Nothing acknowledged is lost.** A job is answered only after the transaction holding its
  writes has committed (with the durability of the database's commit; ``vault/db.py``).
- **One job's failure is its own.** If any job of a group fails, or the commit fails, the whole
  group is rolled back and every job runs again alone, in a transaction of its own (on the writer
  thread), so each gets the answer, result or error, it would have had without grouping.
- **Jobs are plain functions of a session** that write nothing outside it (they may run twice, the
  first run rolled back). A group runs them in the order of their ``order`` keys, so groups take
  row locks in one order (fewer deadlocks between processes on PostgreSQL).
- A job whose caller has gone away before its group starts is not run.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from sqlmodel import Session

from vault.db import WriterBusy

T = TypeVar("T")

log = logging.getLogger(__name__)

#: At most this many jobs share a transaction (bounds the time the write lock is held).
MAX_GROUP = 64

OpenUnit = Callable[[], AbstractContextManager[Session]]


@dataclass(order=True)
class _Job(Generic[T]):
    order: tuple[str, ...]
    run: Callable[[Session], T] = field(compare=False)
    future: Future[T] = field(compare=False, default_factory=Future)


@dataclass(order=True)
class _LoopJob(Generic[T]):
    order: tuple[str, ...]
    run: Callable[[Session], T] = field(compare=False)
    future: asyncio.Future[T] = field(compare=False)


class _GroupFailed(Exception):
    """Raised inside a group's transaction so that it is rolled back whole, whatever the error."""


def _run_all(session: Session, runs: list[Callable[[Session], Any]]) -> list[Any]:
    results = []
    for run in runs:
        try:
            results.append(run(session))
        except BaseException as exc:
            raise _GroupFailed from exc
    return results


class GroupCommitter:
    """Commits write jobs in groups (see the module). Threads are started on first use."""

    def __init__(
        self,
        open_unit: OpenUnit,
        open_unit_now: OpenUnit | None = None,
        max_group: int = MAX_GROUP,
    ) -> None:
        """``open_unit`` opens a write transaction; ``open_unit_now`` one that begins at once or
        raises :class:`~vault.db.WriterBusy` on entry instead of waiting for the write lock
        (``None``: groups never run on the event loop)."""
        self._open_unit = open_unit
        self._open_unit_now = open_unit_now
        self._max_group = max_group
        self._queue: queue.SimpleQueue[_Job[Any] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._lock = threading.Lock()
        self._loop_jobs: list[_LoopJob[Any]] = []
        self._drain_task: asyncio.Task[None] | None = None
        #: Sizes of the recent groups committed (for the benchmarks and tests).
        self.group_sizes: list[int] = []

    # -- submitting --------------------------------------------------------------------------------

    def submit(self, run: Callable[[Session], T], order: tuple[str, ...] = ()) -> Future[T]:
        """Queue ``run`` for the writer thread; the future holds its result once its transaction
        has committed, or the error it raised when run alone."""
        job: _Job[T] = _Job(order, run)
        with self._lock:
            if self._closed:
                raise RuntimeError("the group committer is closed")
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._work, name="civic-group-commit", daemon=True
                )
                self._thread.start()
            self._queue.put(job)
        return job.future

    async def run(self, run: Callable[[Session], T], order: tuple[str, ...] = ()) -> T:
        """Run ``run`` in a group and return its result once committed (from async code; no
        thread is held while waiting)."""
        loop = asyncio.get_running_loop()
        draining = self._drain_task
        if (
            self._open_unit_now is None
            or self._closed
            or (draining is not None and draining.get_loop() is not loop)
        ):
            return await asyncio.wrap_future(self.submit(run, order))
        job: _LoopJob[T] = _LoopJob(order, run, loop.create_future())
        self._loop_jobs.append(job)
        if draining is None:
            self._drain_task = loop.create_task(self._drain())
        return await job.future

    def close(self, timeout: float = 10.0) -> None:
        """Finish the jobs already queued, then stop the writer thread."""
        with self._lock:
            self._closed = True
            thread = self._thread
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout)

    def _record(self, size: int) -> None:
        self.group_sizes.append(size)
        if len(self.group_sizes) > 2000:
            del self.group_sizes[:1000]

    # -- groups on the event loop ------------------------------------------------------------------

    async def _drain(self) -> None:
        try:
            while self._loop_jobs:
                jobs = self._loop_jobs[: self._max_group]
                del self._loop_jobs[: self._max_group]
                live = sorted(job for job in jobs if not job.future.done())  # done: caller left
                if live:
                    await self._commit_on_loop(live)
        finally:
            self._drain_task = None

    async def _commit_on_loop(self, jobs: list[_LoopJob[Any]]) -> None:
        assert self._open_unit_now is not None
        unit = self._open_unit_now()
        try:
            session = unit.__enter__()  # takes the write lock now, or raises WriterBusy
        except WriterBusy:
            # Another writer holds the lock, and the loop never waits for it.
            self._hand_to_thread(jobs)
            return
        try:
            results = _run_all(session, [job.run for job in jobs])
        except BaseException as exc:
            unit.__exit__(type(exc), exc, exc.__traceback__)  # rolls back
            self._hand_to_thread(jobs, alone=True)
            return
        try:
            # The commit waits for the disk: in a thread, so the loop serves other requests
            # meanwhile (the jobs arriving now form the next group).
            await asyncio.get_running_loop().run_in_executor(None, unit.__exit__, None, None, None)
        except BaseException:  # the commit failed: each job alone will say why
            self._hand_to_thread(jobs, alone=True)
            return
        self._record(len(jobs))
        for job, result in zip(jobs, results, strict=True):
            if not job.future.done():
                job.future.set_result(result)

    def _hand_to_thread(self, jobs: list[_LoopJob[Any]], *, alone: bool = False) -> None:
        loop = asyncio.get_running_loop()
        for job in jobs:
            threaded = self.submit(_Alone(job.run) if alone else job.run, job.order)
            threaded.add_done_callback(_relay_to(loop, job.future))

    # -- groups on the writer thread ---------------------------------------------------------------

    def _work(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                return
            jobs = [first]
            while len(jobs) < self._max_group:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stopping = True
                    break
                jobs.append(nxt)
            live = [job for job in jobs if job.future.set_running_or_notify_cancel()]
            if live:
                try:
                    self._commit(sorted(live))
                except BaseException:  # never let the writer thread die with jobs waiting
                    log.exception("group commit failed unexpectedly")
                    for job in live:
                        if not job.future.done():
                            job.future.set_exception(RuntimeError("the write was not completed"))

    def _commit(self, jobs: list[_Job[Any]]) -> None:
        alone = [job for job in jobs if isinstance(job.run, _Alone)]
        grouped = [job for job in jobs if not isinstance(job.run, _Alone)]
        if len(grouped) == 1:
            alone += grouped
            grouped = []
        if grouped:
            try:
                with self._open_unit() as session:
                    results = _run_all(session, [job.run for job in grouped])
            except BaseException:
                alone += grouped  # rolled back whole: each again on its own
            else:
                self._record(len(grouped))
                for job, result in zip(grouped, results, strict=True):
                    job.future.set_result(result)
        for job in alone:
            self._commit_alone(job)

    def _commit_alone(self, job: _Job[Any]) -> None:
        try:
            with self._open_unit() as session:
                result = job.run(session)
        except BaseException as exc:
            job.future.set_exception(exc)
            return
        self._record(1)
        job.future.set_result(result)


@dataclass(frozen=True)
class _Alone(Generic[T]):
    """A job that already failed in a group: run it in a transaction of its own."""

    run: Callable[[Session], T]

    def __call__(self, session: Session) -> T:
        return self.run(session)


def _relay_to(
    loop: asyncio.AbstractEventLoop, target: asyncio.Future[T]
) -> Callable[[Future[T]], None]:
    """A callback copying a thread future's outcome into an event-loop future."""

    def _copy(done: Future[T]) -> None:
        def _set() -> None:
            if target.done():
                return
            exc = done.exception()
            if exc is not None:
                target.set_exception(exc)
            else:
                target.set_result(done.result())

        loop.call_soon_threadsafe(_set)

    return _copy
