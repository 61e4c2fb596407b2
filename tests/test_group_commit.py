"""Group commit (vault/group_commit.py) and the event loop's own reads (vault/db.py LocalReader),
on a real SQLite file and a real PostgreSQL schema.

Properties checked: every job is answered only after its writes are committed; jobs really share
transactions; one failing job fails alone and leaves nothing behind while the others of its group
are kept; on SQLite, a write lock held elsewhere sends the group to the writer thread instead of
stalling the event loop; a job whose caller went away is not run; the local reader can never write.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import Session

from vault.errors import DatabaseUnavailable, InvalidInput
from vault.runtime import VaultRuntime
from vault.settings import Settings


@pytest.fixture
def rt(tmp_path: Path, database_url: str) -> Iterator[VaultRuntime]:
    runtime = VaultRuntime.build(
        Settings(data_dir=tmp_path / "data", database_url=database_url, kdf_profile="min")
    )
    yield runtime
    runtime.close()


def _citizen(rt: VaultRuntime, handle: str) -> str:
    with rt.unit_of_work() as session:
        return rt.accounts.register(session, handle, "correct horse battery staple").citizen_id


def _note(rt: VaultRuntime, citizen_id: str, i: int, *, fail: bool = False):  # type: ignore[no-untyped-def]
    """A job: one audit entry (a real write of the vault: chain, head and signature)."""

    def job(session: Session) -> int:
        entry = rt.audit.append(session, citizen_id, "test", "test.note", {"i": i})
        if fail:
            raise InvalidInput(f"job {i} refuses")
        return entry.seq

    return job


def _notes(rt: VaultRuntime, citizen_id: str) -> list[int]:
    with rt.reading() as session:
        view = rt.audit.read(session, citizen_id)
    assert view.intact, view.problems
    return [int(e.details["i"]) for e in view.entries if e.action == "test.note"]


def test_concurrent_jobs_share_transactions_and_all_land(rt: VaultRuntime) -> None:
    citizens = [_citizen(rt, f"group{k}") for k in range(4)]

    async def main() -> list[int]:
        return await asyncio.gather(
            *(
                rt.writes.run(_note(rt, citizens[i % 4], i), order=(citizens[i % 4],))
                for i in range(200)
            )
        )

    seqs = asyncio.run(main())
    assert len(seqs) == 200
    landed = sorted(i for c in citizens for i in _notes(rt, c))
    assert landed == list(range(200))
    assert max(rt.writes.group_sizes) > 1, "no two jobs ever shared a transaction"
    # Each citizen's chain numbers its entries without gaps or repeats (account.created is 1).
    for c in citizens:
        with rt.reading() as session:
            entries = rt.audit.read(session, c).entries
        assert [e.seq for e in entries] == list(range(1, len(entries) + 1))


def test_a_failing_job_fails_alone_and_leaves_nothing(rt: VaultRuntime) -> None:
    citizen = _citizen(rt, "failing")

    async def main() -> list[int | BaseException]:
        return await asyncio.gather(
            *(rt.writes.run(_note(rt, citizen, i, fail=(i == 7))) for i in range(20)),
            return_exceptions=True,
        )

    outcomes = asyncio.run(main())
    assert isinstance(outcomes[7], InvalidInput)
    assert "job 7 refuses" in str(outcomes[7])
    assert all(isinstance(o, int) for k, o in enumerate(outcomes) if k != 7)
    assert sorted(_notes(rt, citizen)) == [i for i in range(20) if i != 7]


def test_jobs_submitted_from_threads_are_grouped_too(rt: VaultRuntime) -> None:
    citizen = _citizen(rt, "threads")
    futures = [rt.writes.submit(_note(rt, citizen, i)) for i in range(100)]
    assert [f.result(timeout=60) for f in futures]
    assert sorted(_notes(rt, citizen)) == list(range(100))
    assert max(rt.writes.group_sizes) > 1


def test_a_failing_job_from_a_thread_gets_its_own_error(rt: VaultRuntime) -> None:
    citizen = _citizen(rt, "threadfail")
    futures = [rt.writes.submit(_note(rt, citizen, i, fail=(i == 3))) for i in range(10)]
    with pytest.raises(InvalidInput):
        futures[3].result(timeout=60)
    assert all(f.result(timeout=60) for k, f in enumerate(futures) if k != 3)
    assert sorted(_notes(rt, citizen)) == [i for i in range(10) if i != 3]


def test_a_busy_write_lock_never_stalls_the_event_loop(rt: VaultRuntime) -> None:
    """While another thread holds the write transaction, loop jobs go to the writer thread and the
    loop keeps running; they land once the other writer is done."""
    citizen = _citizen(rt, "busy")
    holding = threading.Event()
    release = threading.Event()

    def hold_the_lock() -> None:
        with rt.unit_of_work() as session:
            rt.audit.append(session, citizen, "test", "test.holder", {})
            holding.set()
            release.wait(30)

    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    assert holding.wait(30)

    async def main() -> tuple[list[int], int]:
        jobs = asyncio.gather(*(rt.writes.run(_note(rt, citizen, i)) for i in range(5)))
        ticks = 0
        started = time.monotonic()
        while time.monotonic() - started < 0.3:  # the loop keeps turning while the lock is held
            await asyncio.sleep(0.01)
            ticks += 1
        assert not jobs.done()
        release.set()
        return await jobs, ticks

    seqs, ticks = asyncio.run(main())
    holder.join(30)
    assert ticks >= 10
    assert len(seqs) == 5
    assert sorted(_notes(rt, citizen)) == list(range(5))


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_job_whose_caller_left_is_not_run(rt: VaultRuntime) -> None:
    """(SQLite: groups run on the loop, so the moment is exact; a writer thread could already
    have started the job.)"""
    citizen = _citizen(rt, "left")

    async def main() -> None:
        gone = asyncio.ensure_future(rt.writes.run(_note(rt, citizen, 1)))
        kept = asyncio.ensure_future(rt.writes.run(_note(rt, citizen, 2)))
        await asyncio.sleep(0)  # both queued, the group not yet written
        gone.cancel()
        await kept

    asyncio.run(main())
    assert _notes(rt, citizen) == [2]


def test_closing_finishes_queued_work(rt: VaultRuntime) -> None:
    citizen = _citizen(rt, "closing")
    futures = [rt.writes.submit(_note(rt, citizen, i)) for i in range(30)]
    rt.writes.close()
    assert all(f.done() and f.exception() is None for f in futures)
    assert sorted(_notes(rt, citizen)) == list(range(30))
    with pytest.raises(RuntimeError):
        rt.writes.submit(_note(rt, citizen, 99))


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_local_reader_reads_fresh_rows_and_cannot_write(rt: VaultRuntime) -> None:
    reader = rt.local_reads
    assert reader is not None
    citizen = _citizen(rt, "reader")
    assert reader.first("SELECT handle FROM citizens WHERE id = :id", {"id": citizen}) == (
        "reader",
    )
    with rt.unit_of_work() as session:  # a write after the reader's first read is seen at once
        rt.accounts.register(session, "second", "correct horse battery staple")
    assert reader.first("SELECT count(*) FROM citizens", {}) == (2,)
    with pytest.raises(DatabaseUnavailable) as refused:
        reader.first("DELETE FROM citizens RETURNING id", {})
    assert isinstance(refused.value.__cause__, sqlite3.OperationalError)
    assert _count_citizens(rt) == 2


def _count_citizens(rt: VaultRuntime) -> int:
    reader = rt.local_reads
    assert reader is not None
    row = reader.first("SELECT count(*) FROM citizens", {})
    assert row is not None
    return int(str(row[0]))


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_log_is_checkpointed_in_the_background(rt: VaultRuntime) -> None:
    """The runtime's checkpointer copies the write-ahead log into the database file on its own
    thread (so no commit pays for it), and nothing written is lost by it."""
    checkpoints = rt.checkpoints
    assert checkpoints is not None
    citizen = _citizen(rt, "checkpoints")
    futures = [rt.writes.submit(_note(rt, citizen, i)) for i in range(300)]
    assert all(f.result(timeout=60) for f in futures)
    deadline = time.monotonic() + 10
    runs = checkpoints.runs
    while checkpoints.runs < runs + 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert checkpoints.runs >= runs + 2
    # Everything is in the database file itself now: a copy of the file alone (no log) holds it.
    database = rt.engine.url.database
    assert database is not None
    copy = Path(database).with_name("copy.db")
    copy.write_bytes(Path(database).read_bytes())
    with sqlite3.connect(copy) as conn:
        (count,) = conn.execute(
            "SELECT count(*) FROM audit_entries WHERE citizen_id = ? AND action = 'test.note'",
            (citizen,),
        ).fetchone()
    assert count == 300
    assert sorted(_notes(rt, citizen)) == list(range(300))


def test_one_idempotency_key_sent_at_once_lands_once_in_a_group(rt: VaultRuntime) -> None:
    """Retries of one batch that arrive together share a group: the first stores the chunk, the
    others see it in the same transaction and replay its answer (nothing is stored twice)."""
    citizen = _citizen(rt, "retries")
    with rt.unit_of_work() as session:
        stream = rt.streams.create(session, citizen, "energy.consumption", "", "citizen")
    body = b'[{"ts": "2026-03-01T00:00:00Z", "kwh": 2.5}]'
    batch = rt.ingest.prepare_for_type(
        "energy.consumption", stream.id, body, "application/json", "retry-1"
    )

    def append(session: Session):  # type: ignore[no-untyped-def]
        return rt.ingest.commit(session, citizen, batch)

    async def main() -> list[object]:
        return await asyncio.gather(*(rt.writes.run(append) for _ in range(6)))

    results = asyncio.run(main())
    assert max(rt.writes.group_sizes) > 1
    assert len({r.chunk_id for r in results}) == 1  # type: ignore[attr-defined]
    assert sorted(r.replayed for r in results) == [False] + [True] * 5  # type: ignore[attr-defined]
    with rt.reading() as session:
        assert (
            rt.streams.summary(
                session, rt.streams.get_owned(session, citizen, stream.id)
            ).record_count
            == 1
        )
