"""PostgreSQL stopped and restarted under load, against the real server (uvicorn in a child
process): every request is answered, either as usual or with 503 ``database_unavailable`` (the
API's error body, ``Retry-After``); never a 500 or a dropped connection; and the same server process
recovers on its own once PostgreSQL is back (no restart), with every acknowledged batch stored once.

Also, without a server: which database errors become a 503 (or a 507 when the disk is full) and
which stay a 500 (bugs, such as a broken constraint).

The load test stops and restarts the machine's PostgreSQL cluster (``pg_ctlcluster``); whatever happens,
the cluster is running again when it ends. SQLite has no server to lose: its failures are the disk
tests' (``tests/test_faults_disk.py``) and the crash tests' (``tests/test_faults_crash.py``).
"""

from __future__ import annotations

import itertools
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from conftest import fresh_postgres_schema
from fastapi.testclient import TestClient
from sqlalchemy.exc import IntegrityError, OperationalError

from server.migrate import upgrade_to_head
from tests.fault_support import (
    Account,
    Batch,
    VaultServer,
    assert_error_body,
    assert_exactly_once,
    energy_batch,
    pg_ctl,
    pg_left_running,
    pg_ready,
    read_all,
    send,
    sign_up,
    wait_until,
)
from vault.db import database_failure

ENERGY = "energy.consumption"
UNAVAILABLE = {"database_unavailable", "database_busy"}


@pytest.fixture
def postgres_database(postgres_base_url: str) -> Iterator[str]:
    with fresh_postgres_schema(postgres_base_url) as url:
        upgrade_to_head(url)
        yield url


class Load:
    """Threads that write batches (each retried with its Idempotency-Key until acknowledged),
    read them back and sign in, recording every answer."""

    def __init__(self, base_url: str, accounts: list[Account]) -> None:
        self.base_url = base_url
        self.accounts = accounts
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.answers: Counter[str] = Counter()  # "201", "503 database_unavailable", ...
        self.last_ok = time.monotonic()
        self.bad: list[str] = []  # anything but success or a clean 503
        self.acked: dict[str, list[Batch]] = {a.handle: [] for a in accounts}
        self.retry_after: set[str] = set()
        self._minutes = itertools.count(0, 10)
        self._threads = [
            threading.Thread(target=self._writer, args=(a,), daemon=True) for a in accounts
        ] + [threading.Thread(target=self._reader, args=(accounts[0],), daemon=True)]

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self._threads:
            t.join(120)
        assert not any(t.is_alive() for t in self._threads), "a load thread hung"

    def _note(self, r: httpx.Response | None, error: Exception | None = None) -> bool:
        """Record an answer; True when it was a success."""
        with self.lock:
            if error is not None:
                self.bad.append(f"no answer: {error!r}")
                return False
            assert r is not None
            if r.status_code < 300:
                self.answers[str(r.status_code)] += 1
                self.last_ok = time.monotonic()
                return True
            try:
                body = r.json()
                assert_error_body(body)
                code = body["code"]
            except Exception:
                self.bad.append(f"{r.status_code} {r.text[:200]}")
                return False
            self.answers[f"{r.status_code} {code}"] += 1
            if r.status_code != 503 or code not in UNAVAILABLE:
                self.bad.append(f"{r.status_code} {r.text[:200]}")
            elif "retry-after" not in r.headers or int(r.headers["retry-after"]) < 1:
                self.bad.append(f"503 without Retry-After: {r.headers}")
            else:
                self.retry_after.add(r.headers["retry-after"])
            return False

    def _writer(self, account: Account) -> None:
        stream = account.streams[ENERGY]
        with httpx.Client(base_url=self.base_url, timeout=60) as client:
            while not self.stop.is_set():
                first = next(self._minutes)
                batch = energy_batch(stream, f"{account.handle}-{first}", first, [1.5] * 10)
                while True:  # the same batch until it is acknowledged
                    try:
                        r = send(client, account, batch)
                    except httpx.HTTPError as exc:
                        self._note(None, exc)
                        r = None
                    if r is not None and self._note(r):
                        with self.lock:
                            self.acked[account.handle].append(batch)
                        break
                    if self.stop.is_set() and r is not None and r.status_code != 503:
                        break
                    time.sleep(0.1)

    def _reader(self, account: Account) -> None:
        with httpx.Client(base_url=self.base_url, timeout=60) as client:
            while not self.stop.is_set():
                try:
                    self._note(client.get("/v1/me", headers=account.auth))
                    self._note(client.get("/v1/me/streams", headers=account.auth))
                except httpx.HTTPError as exc:
                    self._note(None, exc)
                time.sleep(0.05)


@pytest.mark.http
@pytest.mark.postgres
def test_postgres_restarted_under_load_fails_cleanly_and_recovers(
    postgres_database: str, tmp_path: Path
) -> None:
    env = {"CIVIC_DATA_DIR": str(tmp_path / "data"), "CIVIC_DATABASE_URL": postgres_database}
    server = VaultServer(env, tmp_path / "server.log", standby=False)
    with server, httpx.Client(base_url=server.url, timeout=60) as client:
        pid = server.pid
        accounts = [sign_up(client, f"writer{i}", ENERGY) for i in range(2)]
        with pg_left_running(), Load(server.url, accounts) as load:
            time.sleep(1.0)
            # 1. Stopped for two seconds: clean 503s.
            pg_ctl("stop")
            stopped_at = time.monotonic()
            time.sleep(2.0)
            with load.lock:
                assert any(k.startswith("503 ") for k in load.answers), load.answers
            # 2. Back: the same server process recovers on its own.
            pg_ctl("start")
            wait_until(pg_ready, 60, 0.2, "PostgreSQL to start")
            wait_until(lambda: load.last_ok > stopped_at + 2.0, 30, 0.1, "the server to recover")
            # 3. A restart in one go, under load.
            pg_ctl("restart")
            restarted_at = time.monotonic()
            wait_until(pg_ready, 60, 0.2, "PostgreSQL to restart")
            wait_until(lambda: load.last_ok > restarted_at, 30, 0.1, "the server to recover")
            time.sleep(1.0)

        assert not load.bad, f"unclean answers: {load.bad[:5]} (all: {load.answers})"
        assert load.retry_after, "no 503 was seen"
        assert server.alive() and server.pid == pid, "the server was restarted"
        assert client.get("/healthz").status_code == 200
        for account in accounts:
            batches = load.acked[account.handle]
            assert batches, "nothing was acknowledged"
            assert_exactly_once(read_all(client, account, account.streams[ENERGY]), batches)
            audit = client.get("/v1/me/audit", headers=account.auth).json()
            assert audit["intact"] is True


def _sqlite_error(message: str, code: int) -> sqlite3.Error:
    error = sqlite3.OperationalError(message)
    error.sqlite_errorcode = code  # type: ignore[attr-defined]
    return error


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (psycopg.OperationalError("connection failed: Connection refused"), "database_unavailable"),
        (psycopg.errors.AdminShutdown("terminating connection"), "database_unavailable"),
        (psycopg.errors.ReadOnlySqlTransaction("read-only transaction"), "database_unavailable"),
        (psycopg.errors.DeadlockDetected("deadlock detected"), "database_busy"),
        (psycopg.errors.SerializationFailure("could not serialize"), "database_busy"),
        (psycopg.errors.DiskFull("could not extend file"), "storage_full"),
        (psycopg.errors.UniqueViolation("duplicate key"), None),
        (psycopg.errors.UndefinedTable("no such relation"), None),
        (_sqlite_error("database or disk is full", sqlite3.SQLITE_FULL), "storage_full"),
        (_sqlite_error("attempt to write a readonly database", 1032), "database_unavailable"),
        (_sqlite_error("disk I/O error", sqlite3.SQLITE_IOERR), "database_unavailable"),
        (_sqlite_error("database is locked", sqlite3.SQLITE_BUSY), "database_busy"),
        (_sqlite_error("no such table: x", sqlite3.SQLITE_ERROR), None),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Exception) else str(v),
)
def test_which_database_failures_become_503_or_507(error: Exception, code: str | None) -> None:
    """A failing database is a clean 503 (or 507 when full); a bug (a constraint, a missing table)
    stays a 500. Raw sqlite3 errors count too: the SQLite engine commits in an event listener."""
    wrapped = (IntegrityError if code is None else OperationalError)("SQL", {}, error)
    for exc in (wrapped, error):
        mapped = database_failure(exc)
        assert (mapped.code if mapped else None) == code
    assert database_failure(ValueError("not a database error")) is None


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (psycopg.errors.DeadlockDetected("deadlock detected"), 503, "database_busy"),
        (psycopg.OperationalError("server closed the connection"), 503, "database_unavailable"),
        (_sqlite_error("database or disk is full", sqlite3.SQLITE_FULL), 507, "storage_full"),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Exception) else str(v),
)
def test_raw_driver_errors_are_answered_like_wrapped_ones(
    client: TestClient, error: Exception, status: int, code: str
) -> None:
    """A release's bulk statements run on the driver (vault/repositories/driver_sql.py), so their
    failures reach the app unwrapped by SQLAlchemy: the same answers as wrapped ones."""

    def fail() -> None:
        raise error

    client.app.add_api_route("/test-only/driver-error", fail)  # type: ignore[attr-defined]
    r = client.get("/test-only/driver-error")
    assert r.status_code == status, r.text
    assert r.json()["code"] == code
