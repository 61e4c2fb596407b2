"""Fixtures shared by the whole suite, and the CI rule that a skipped test is a failed run.

Sections:
1. CI guard: with ``CI`` set, any skipped test turns the run red (a skipped PostgreSQL or browser
   suite must never pass as green).
2. PostgreSQL: ``postgres_url`` (one schema for the session) and ``fresh_postgres_schema`` (the
   helper behind per-test schemas), both reading ``CIVIC_TEST_POSTGRES_URL``.
3. Databases: ``database_url``, a migrated database on SQLite and on PostgreSQL.

Add new fixtures to the section they belong to, or start a new numbered section.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

from server.migrate import upgrade_to_head

POSTGRES_URL_ENV = "CIVIC_TEST_POSTGRES_URL"


def in_ci() -> bool:
    """True when the run is CI's (``CI`` set to anything but empty, ``0`` or ``false``)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


# --------------------------------------------------------------------------------------------------
# 1. CI guard: no skips in CI
# --------------------------------------------------------------------------------------------------

# What was skipped in this session, as "nodeid: reason" (the report hooks receive no config).
_skipped: list[str] = []


def pytest_sessionstart(session: pytest.Session) -> None:
    _skipped.clear()


def _note_skip(report: pytest.TestReport | pytest.CollectReport) -> None:
    if not report.skipped or hasattr(report, "wasxfail"):  # an xfail is not a skip
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    _skipped.append(f"{report.nodeid}: {reason}")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _note_skip(report)


def pytest_collectreport(report: pytest.CollectReport) -> None:
    _note_skip(report)  # a module skipped whole (importorskip, skip(allow_module_level=True))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if (
        in_ci()
        and _skipped
        and exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED)
    ):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if in_ci() and _skipped:
        terminalreporter.section("CI: skipped tests fail the run", sep="=", red=True, bold=True)
        for line in _skipped:
            terminalreporter.line(f"SKIPPED {line}", red=True)
        terminalreporter.line(
            f"{len(_skipped)} skipped with CI set: every suite must run in CI "
            f"(is {POSTGRES_URL_ENV} set? is the browser installed?)",
            red=True,
        )


# --------------------------------------------------------------------------------------------------
# 2. PostgreSQL
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_base_url() -> str:
    """``CIVIC_TEST_POSTGRES_URL`` as given. Skips without it; in CI a missing URL fails."""
    url = os.environ.get(POSTGRES_URL_ENV, "").strip()
    if not url:
        message = f"{POSTGRES_URL_ENV} is not set (e.g. postgresql://postgres@127.0.0.1:5432/test)"
        if in_ci():
            pytest.fail(f"{message}: the PostgreSQL suite must run in CI", pytrace=False)
        pytest.skip(message)
    return url


def _libpq_url(url: str) -> str:
    """The same URL as psycopg's own ``connect`` wants it (no ``+driver`` in the scheme)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _url_with_search_path(url: str, schema: str) -> str:
    """``url`` with libpq's ``options=-csearch_path=<schema>``, keeping any other options."""
    parsed = make_url(url)
    options = f"{parsed.query.get('options', '')} -csearch_path={schema}".strip()
    return parsed.update_query_dict({"options": options}).render_as_string(hide_password=False)


@contextmanager
def fresh_postgres_schema(base_url: str) -> Iterator[str]:
    """Create an empty schema ``cv_test_<random>``; yield a URL whose connections use it (their
    ``search_path`` is that schema alone); drop it with everything in it afterwards."""
    schema = f"cv_test_{secrets.token_hex(6)}"
    name = sql.Identifier(schema)
    with psycopg.connect(_libpq_url(base_url), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(name))
    try:
        yield _url_with_search_path(base_url, schema)
    finally:
        with psycopg.connect(_libpq_url(base_url), autocommit=True) as conn:
            # An engine a test forgot to dispose of may hold a lock; fail loudly, never hang.
            conn.execute("SET lock_timeout = '15s'")
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(name))


@pytest.fixture(scope="session")
def postgres_url(postgres_base_url: str) -> Iterator[str]:
    """One empty schema for the whole session (not migrated). Tests that need isolation from each
    other use ``database_url`` or ``fresh_postgres_schema`` instead."""
    with fresh_postgres_schema(postgres_base_url) as url:
        yield url


# --------------------------------------------------------------------------------------------------
# 3. Databases
# --------------------------------------------------------------------------------------------------


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database migrated to head, new for each test: a file in ``tmp_path`` on SQLite, a schema
    of its own on PostgreSQL. Pass it to ``vault.db.make_engine``."""
    if request.param == "sqlite":
        url = f"sqlite:///{(tmp_path / 'civic.db').as_posix()}"
        upgrade_to_head(url)
        yield url
        return
    base_url = request.getfixturevalue("postgres_base_url")
    with fresh_postgres_schema(base_url) as url:
        upgrade_to_head(url)
        yield url


# --------------------------------------------------------------------------------------------------
# 4. The service in-process: settings, runtime, an HTTP client, signed-in citizens
# --------------------------------------------------------------------------------------------------

from dataclasses import dataclass, field  # noqa: E402

from fastapi.testclient import TestClient  # noqa: E402

from vault.settings import Settings  # noqa: E402

DEFAULT_PASSPHRASE = "correct horse battery staple"


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    """Test settings: cheapest key derivation, data under ``tmp_path``, the migrated database."""
    return Settings(data_dir=tmp_path / "data", database_url=database_url, kdf_profile="min")


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    from server.app import create_app

    app = create_app(settings)
    with TestClient(app, base_url="https://testserver") as test_client:
        yield test_client


@dataclass
class Citizen:
    """A registered, signed-in citizen as a test sees it."""

    client: TestClient
    handle: str
    passphrase: str
    citizen_id: str
    recovery_code: str
    token: str
    streams: dict[str, str] = field(default_factory=dict)

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def stream(self, stream_type: str) -> str:
        if stream_type not in self.streams:
            r = self.client.post(
                "/v1/me/streams", json={"stream_type": stream_type}, headers=self.auth
            )
            assert r.status_code == 201, r.text
            self.streams[stream_type] = r.json()["id"]
        return self.streams[stream_type]

    def append(self, stream_type: str, rows: list[dict[str, object]], **headers: str):  # type: ignore[no-untyped-def]
        return self.client.post(
            f"/v1/me/streams/{self.stream(stream_type)}/records",
            json=rows,
            headers={**self.auth, **headers},
        )


def register(client: TestClient, handle: str, passphrase: str = DEFAULT_PASSPHRASE) -> Citizen:
    r = client.post("/v1/citizens", json={"handle": handle, "passphrase": passphrase})
    assert r.status_code == 201, r.text
    body = r.json()
    s = client.post("/v1/session", json={"handle": handle, "passphrase": passphrase})
    assert s.status_code == 200, s.text
    return Citizen(
        client,
        handle,
        passphrase,
        body["citizen_id"],
        body["recovery_code"],
        s.json()["access_token"],
    )


@pytest.fixture
def alice(client: TestClient) -> Citizen:
    return register(client, "alice")


@pytest.fixture
def bob(client: TestClient) -> Citizen:
    return register(client, "bob.b")
