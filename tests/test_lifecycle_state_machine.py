"""A Hypothesis state machine over the citizen's whole lifecycle, on SQLite and on PostgreSQL.

Rules (random order, random choices): register, ingest a batch (JSON, NDJSON or CSV, with or
without an ``Idempotency-Key``), replay the last batch with its key, send a batch with one bad row,
accept the small-groups energy request, withdraw it, run a statistics query (an analyst),
export a bundle, import a bundle into a citizen of a second vault, delete the account.

Invariants, checked after every step:

* **no plaintext at rest**: no value ever ingested (as text, as a little-endian double, and hex
  encoded as ``pg_dump`` prints bytea) is in either vault's database copy (the SQLite file with
  its WAL, or every row of the PostgreSQL schema in ``pg_dump``'s COPY text), while the handles
  stored in clear are (the control that the copy is complete);
* **consent never bypassed**: every contribution to every release (released or refused) is from a
  consent that was given and not withdrawn when the query ran; each contributing citizen is told
  exactly once (``data.used_in_release`` / ``data.counted_in_size_check``) and nobody else is;
* **budgets never overspent**: the department and every consent spent at most their limit, and
  exactly the sum of what was charged for them (releases, ``release_contributions``);
* **audit chains intact**: ``GET /v1/me/audit`` verifies for every living citizen of both vaults;
* **nothing acknowledged is lost**: every batch answered 201 reads back exactly once (replays
  and refused batches add nothing), imported records included.

The vaults live for the whole test: each Hypothesis example continues the same city (so the
DP measurement is built once) and the invariants hold over everything done so far. After the
random walk a fixed tour takes every step at least once, in lifecycle order. Bounded by
``EXAMPLES`` x ``STEPS`` plus the tour. A failure reports the steps of its example that led to it.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import struct
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import psycopg
import psycopg.sql
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy.engine import make_url
from sqlmodel import select

from aggregation.tables import ConsentBudget, DepartmentBudget, DPRelease, ReleaseContribution
from server.app import create_app
from server.migrate import upgrade_to_head
from tests.aggregation_support import SMALL, aggregation_settings, publish_city, staff_token
from tests.conftest import DEFAULT_PASSPHRASE, _libpq_url, fresh_postgres_schema
from tests.test_at_rest import database_copy
from vault.clock import utcnow

T = TypeVar("T")

EXAMPLES = 5
STEPS = 15
MAX_CITIZENS = 5  # living citizens of the first vault at once
ENERGY = "energy.consumption"
QUERY = {
    "department": "energy",
    "purpose": "energy-planning",
    "dataset": ENERGY,
    "select": [{"stat": "count"}, {"stat": "sum", "field": "kwh"}],
    "group_by": ["district"],
    "epsilon": 4.0,
}
RATE_LIMITS_OFF = {
    name: "off"
    for name in (
        "CIVIC_RATE_LIMIT_LOGIN",
        "CIVIC_RATE_LIMIT_REGISTRATION",
        "CIVIC_RATE_LIMIT_TOKEN",
        "CIVIC_RATE_LIMIT_QUERY",
        "CIVIC_RATE_LIMIT_QUERY_DEPARTMENT",
    )
}


@dataclass
class Vault:
    name: str
    http: TestClient
    database_url: str
    data_dir: Path

    @property
    def app(self) -> Any:
        return self.http.app


@dataclass
class Person:
    vault: Vault
    handle: str
    citizen_id: str
    token: str
    stream: str | None = None
    #: every energy value acknowledged in this person's vault (kwh -> times)
    values: Counter[float] = field(default_factory=Counter)
    consent_id: str | None = None
    #: (Idempotency-Key, body, content type, values) of the last keyed batch acknowledged
    last_keyed: tuple[str, bytes, str, list[float]] | None = None
    deleted: bool = False

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class World:
    """What outlives one Hypothesis example: the two vaults and what the database-wide invariants
    need to know. Nothing here steers the choices of an example (Hypothesis replays them)."""

    a: Vault
    b: Vault
    analyst: dict[str, str]
    #: consents given and not withdrawn (by the citizens of every example so far)
    given: set[str] = field(default_factory=set)
    #: release id -> the consents given when its query ran
    eligible: dict[str, frozenset[str]] = field(default_factory=dict)
    #: every value ever ingested anywhere (what must never be in a database copy)
    ingested: set[float] = field(default_factory=set)
    people: list[Person] = field(default_factory=list)
    #: the first failure, with the steps that led to it (see ``_noted``)
    failure: str | None = None
    #: how many times each step ran
    ran: Counter[str] = field(default_factory=Counter)
    serial: int = 0

    def next(self) -> int:
        self.serial += 1
        return self.serial


def _vault(stack: ExitStack, name: str, tmp_path: Path, url: str) -> Vault:
    settings = aggregation_settings(tmp_path / name, url)
    settings = dataclasses.replace(settings, extra={**settings.extra, **RATE_LIMITS_OFF})
    http = stack.enter_context(TestClient(create_app(settings), base_url="https://testserver"))
    publish_city(http)
    return Vault(name, http, url, settings.data_dir)


@pytest.fixture
def world(request: pytest.FixtureRequest, tmp_path: Path, database_url: str) -> Iterator[World]:
    with ExitStack() as stack:
        if database_url.startswith("sqlite"):
            second = f"sqlite:///{(tmp_path / 'second.db').as_posix()}"
        else:
            base = request.getfixturevalue("postgres_base_url")
            second = stack.enter_context(fresh_postgres_schema(base))
        upgrade_to_head(second)
        a = _vault(stack, "a", tmp_path, database_url)
        b = _vault(stack, "b", tmp_path, second)
        agg = a.app.state.aggregation
        with agg.vault.unit_of_work() as session:
            agg.ledger.set_department_limit(session, "energy", 1000.0, "dpo", utcnow())
        yield World(a, b, staff_token(a.http))


def _copy(vault: Vault) -> bytes:
    """What a thief of the database gets: the SQLite file with its WAL (``test_at_rest``), or on
    PostgreSQL every row of the schema as ``pg_dump`` writes it (its data is ``COPY`` text, bytea as
    hex), read over one connection because a ``pg_dump`` process per step is slow."""
    if vault.database_url.startswith("sqlite"):
        whole: bytes = database_copy(vault.database_url, vault.data_dir)
        return whole
    options = make_url(vault.database_url).query["options"]
    assert isinstance(options, str)
    schema = options.split("search_path=")[1].split()[0]
    parts: list[bytes] = []
    with psycopg.connect(_libpq_url(vault.database_url)) as conn:
        tables = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY tablename", (schema,)
        ).fetchall()
        for (table,) in tables:
            name = psycopg.sql.Identifier(schema, table)
            with conn.cursor().copy(psycopg.sql.SQL("COPY {} TO STDOUT").format(name)) as copy:
                parts.extend(bytes(chunk) for chunk in copy)
    assert len(tables) > 10 and parts  # the copy really holds the tables
    return b"".join(parts)


# --------------------------------------------------------------------------------------------------
# The machine
# --------------------------------------------------------------------------------------------------


def _describe(arg: object) -> str:
    if isinstance(arg, Person):
        return arg.handle
    if isinstance(arg, Vault):
        return f"vault {arg.name}"
    if isinstance(arg, tuple):
        return "a bundle"
    return repr(arg)


def _noted(step: Callable[..., T]) -> Callable[..., T]:
    """Log each step; keep the first failure with the steps before it. (The city outlives the
    example, so when Hypothesis replays a failing example it may fail elsewhere and report only
    that the replay differed: the test then reports this first failure.)"""

    @functools.wraps(step)
    def noted(self: Lifecycle, *args: Any, **kwargs: Any) -> T:
        if not step.__name__.startswith(("no_", "consent_", "budgets_", "audit_", "nothing_")):
            self.log.append(f"{step.__name__}({', '.join(map(_describe, args))})")
        try:
            return step(self, *args, **kwargs)
        except Exception:
            if self.world.failure is None:
                steps = "\n  ".join(self.log)
                self.world.failure = f"steps:\n  {steps}\n{traceback.format_exc()}"
            raise

    return noted


FRACTIONS = st.integers(10**8, 10**9 - 1)
STEP_NAMES = {
    "register", "ingest", "replay", "ingest_bad", "accept", "withdraw", "query", "export",
    "import", "delete",
}  # fmt: skip


class Lifecycle(RuleBasedStateMachine):
    world: ClassVar[World]

    def __init__(self) -> None:
        super().__init__()
        #: this example's citizens (the choices of an example depend only on its own state)
        self.people: list[Person] = []
        #: export bundles: (zip, the exporter's energy values then)
        self.exports: list[tuple[bytes, Counter[float]]] = []
        #: the steps of this example so far, to report a failure
        self.log: list[str] = []

    def living(self, vault: Vault) -> list[Person]:
        return [p for p in self.people if p.vault is vault and not p.deleted]

    # --- helpers ----------------------------------------------------------------------------------

    def _pick(self, data: st.DataObject, people: list[Person]) -> Person:
        return people[data.draw(st.integers(0, len(people) - 1), label="who")]

    @_noted
    def do_register(self, vault: Vault) -> Person:
        w = self.world
        handle = f"{vault.name}.c{w.next():04d}"
        r = vault.http.post(
            "/v1/citizens", json={"handle": handle, "passphrase": DEFAULT_PASSPHRASE}
        )
        assert r.status_code == 201, r.text
        s = vault.http.post(
            "/v1/session", json={"handle": handle, "passphrase": DEFAULT_PASSPHRASE}
        )
        assert s.status_code == 200, s.text
        person = Person(vault, handle, r.json()["citizen_id"], s.json()["access_token"])
        profile = vault.http.post(
            "/v1/me/streams", json={"stream_type": "profile"}, headers=person.auth
        )
        assert profile.status_code == 201, profile.text
        row = {"ts": "2025-01-01", "district": "Old Town", "age_band": "30-44", "household_size": 2}
        r = vault.http.post(
            f"/v1/me/streams/{profile.json()['id']}/records", json=[row], headers=person.auth
        )
        assert r.status_code == 201, r.text
        self.people.append(person)
        w.people.append(person)
        return person

    def _energy_stream(self, person: Person) -> str:
        if person.stream is None:
            r = person.vault.http.post(
                "/v1/me/streams", json={"stream_type": ENERGY}, headers=person.auth
            )
            assert r.status_code == 201, r.text
            person.stream = r.json()["id"]
        return person.stream

    def _values(self, whole: list[int], fractions: list[int]) -> list[float]:
        """Values nobody could write by chance, never used before: nine decimals, the last one not
        a zero (4.1 could be anywhere; 4.100000001 only where a value leaked)."""
        out: list[float] = []
        for i, f in zip(whole, fractions, strict=True):
            while True:
                f += f % 10 == 0
                value = i + f / 1e9
                if value not in self.world.ingested and value not in out:
                    break
                f += 1
            out.append(value)
        return out

    def _batch(self, values: list[float], fmt: str) -> tuple[bytes, str]:
        start = datetime(2026, 3, 1, tzinfo=UTC) + timedelta(hours=self.world.next())
        rows = [
            {"ts": (start + timedelta(minutes=i)).isoformat(), "kwh": v}
            for i, v in enumerate(values)
        ]
        if fmt == "csv":
            text = "ts,kwh\n" + "".join(f"{r['ts']},{r['kwh']!r}\n" for r in rows)
            return text.encode(), "text/csv"
        if fmt == "ndjson":
            return "".join(json.dumps(r) + "\n" for r in rows).encode(), "application/x-ndjson"
        return json.dumps(rows).encode(), "application/json"

    # --- steps (the rules below choose; the tour at the end calls them directly) ------------------

    @_noted
    def do_ingest(self, person: Person, values: list[float], fmt: str, keyed: bool) -> None:
        self.world.ingested.update(values)
        body, content_type = self._batch(values, fmt)
        headers = {**person.auth, "content-type": content_type}
        key = f"batch-{self.world.next()}"
        if keyed:
            headers["Idempotency-Key"] = key
        stream = self._energy_stream(person)
        r = person.vault.http.post(
            f"/v1/me/streams/{stream}/records", content=body, headers=headers
        )
        assert r.status_code == 201, r.text
        assert r.json()["count"] == len(values) and not r.json()["replayed"]
        person.values.update(values)
        if keyed:
            person.last_keyed = (key, body, content_type, values)

    @_noted
    def do_replay(self, person: Person) -> None:
        assert person.last_keyed is not None and person.stream is not None
        key, body, content_type, values = person.last_keyed
        headers = {**person.auth, "content-type": content_type, "Idempotency-Key": key}
        r = person.vault.http.post(
            f"/v1/me/streams/{person.stream}/records", content=body, headers=headers
        )
        assert r.status_code == 201, r.text
        assert r.json()["replayed"] and r.json()["count"] == len(values)

    @_noted
    def do_ingest_bad(self, person: Person, values: list[float], bad_at: int) -> None:
        self.world.ingested.update(values)
        values = [51.0 if i == bad_at else v for i, v in enumerate(values)]  # over the bound
        body, content_type = self._batch(values, "json")
        stream = self._energy_stream(person)
        r = person.vault.http.post(
            f"/v1/me/streams/{stream}/records",
            content=body,
            headers={**person.auth, "content-type": content_type},
        )
        assert r.status_code == 422 and r.json()["code"] == "invalid_batch", r.text

    @_noted
    def do_accept(self, person: Person) -> None:
        r = person.vault.http.post(f"/v1/me/requests/{SMALL}/accept", headers=person.auth)
        if person.consent_id is not None:
            assert r.status_code == 409, r.text
            return
        assert r.status_code == 201, r.text
        person.consent_id = r.json()["id"]
        self.world.given.add(person.consent_id)

    @_noted
    def do_withdraw(self, person: Person) -> None:
        r = person.vault.http.post(
            f"/v1/me/consents/{person.consent_id}/withdraw", headers=person.auth
        )
        assert r.status_code == 200, r.text
        self.world.given.discard(person.consent_id or "")
        person.consent_id = None

    @_noted
    def do_query(self) -> None:
        w = self.world
        given = frozenset(w.given)
        before = set(self._release_ids())
        r = w.a.http.post("/v1/queries", json=QUERY, headers=w.analyst)
        # 403: too few contributors (judged on a noisy count); 409: the department's month.
        assert r.status_code in (201, 403, 409), r.text
        for release_id in set(self._release_ids()) - before:
            w.eligible[release_id] = given

    @_noted
    def do_export(self, person: Person) -> None:
        r = person.vault.http.get("/v1/me/export", headers=person.auth)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "application/zip"
        self.exports.append((r.content, Counter(person.values)))

    @_noted
    def do_import(self, bundle: tuple[bytes, Counter[float]], person: Person) -> None:
        data, values = bundle
        r = person.vault.http.post(
            "/v1/me/import",
            content=data,
            headers={**person.auth, "content-type": "application/zip"},
        )
        assert r.status_code == 201, r.text
        assert r.json()["records"] >= sum(values.values())
        person.values.update(values)

    @_noted
    def do_delete(self, person: Person) -> None:
        http = person.vault.http
        r = http.request(
            "DELETE", "/v1/me", json={"passphrase": DEFAULT_PASSPHRASE}, headers=person.auth
        )
        assert r.status_code == 200 and r.json()["deleted"], r.text
        person.deleted = True
        self.world.given.discard(person.consent_id or "")
        assert http.get("/v1/me", headers=person.auth).status_code == 401

    # --- rules ------------------------------------------------------------------------------------

    @initialize()
    def two_citizens(self) -> None:
        """Each example starts with two citizens, so that every rule has someone to act on."""
        for _ in range(2):
            self.do_register(self.world.a)

    def _in_a(self, data: st.DataObject, where: str = "") -> Person:
        people = self.living(self.world.a)
        if where == "keyed":
            people = [p for p in people if p.last_keyed]
        elif where == "consented":
            people = [p for p in people if p.consent_id]
        return self._pick(data, people)

    @precondition(lambda self: len(self.living(self.world.a)) < MAX_CITIZENS)
    @rule()
    def register(self) -> None:
        self.do_register(self.world.a)
        self.world.ran["register"] += 1

    @precondition(lambda self: self.living(self.world.a))
    @rule(
        data=st.data(),
        whole=st.lists(st.integers(1, 48), min_size=1, max_size=4),
        fmt=st.sampled_from(["json", "csv", "ndjson"]),
        keyed=st.booleans(),
    )
    def ingest(self, data: st.DataObject, whole: list[int], fmt: str, keyed: bool) -> None:
        person = self._in_a(data)
        fractions = data.draw(st.lists(FRACTIONS, min_size=len(whole), max_size=len(whole)))
        self.do_ingest(person, self._values(whole, fractions), fmt, keyed)
        self.world.ran["ingest"] += 1

    @precondition(lambda self: any(p.last_keyed for p in self.living(self.world.a)))
    @rule(data=st.data())
    def replay_last_batch(self, data: st.DataObject) -> None:
        self.do_replay(self._in_a(data, "keyed"))
        self.world.ran["replay"] += 1

    @precondition(lambda self: self.living(self.world.a))
    @rule(data=st.data(), bad_at=st.integers(0, 2))
    def ingest_a_bad_batch(self, data: st.DataObject, bad_at: int) -> None:
        person = self._in_a(data)
        fractions = data.draw(st.lists(FRACTIONS, min_size=3, max_size=3))
        self.do_ingest_bad(person, self._values([3, 4, 5], fractions), bad_at)
        self.world.ran["ingest_bad"] += 1

    @precondition(lambda self: self.living(self.world.a))
    @rule(data=st.data())
    def accept(self, data: st.DataObject) -> None:
        self.do_accept(self._in_a(data))
        self.world.ran["accept"] += 1

    @precondition(lambda self: any(p.consent_id for p in self.living(self.world.a)))
    @rule(data=st.data())
    def withdraw(self, data: st.DataObject) -> None:
        self.do_withdraw(self._in_a(data, "consented"))
        self.world.ran["withdraw"] += 1

    @rule()
    def query(self) -> None:
        self.do_query()
        self.world.ran["query"] += 1

    @precondition(lambda self: self.living(self.world.a))
    @rule(data=st.data())
    def export(self, data: st.DataObject) -> None:
        self.do_export(self._in_a(data))
        self.world.ran["export"] += 1

    @precondition(lambda self: self.exports)
    @rule(data=st.data(), new_person=st.booleans())
    def import_into_the_second_vault(self, data: st.DataObject, new_person: bool) -> None:
        bundle = self.exports[data.draw(st.integers(0, len(self.exports) - 1))]
        people = self.living(self.world.b)
        person = self._pick(data, people) if people and not new_person else None
        self.do_import(bundle, person or self.do_register(self.world.b))
        self.world.ran["import"] += 1

    @precondition(lambda self: self.living(self.world.a))
    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        self.do_delete(self._in_a(data))
        self.world.ran["delete"] += 1

    # --- a fixed tour through every step, whatever the random walk did -----------------------------

    def _tour_ingest(self, people: list[Person], i: int, values: list[float], fmt: str) -> None:
        self.do_ingest(people[i % 2], values, fmt, True)

    def tour(self) -> None:
        """Every step at least once, in the lifecycle's order, with every invariant after each."""
        a, b = self.world.a, self.world.b
        steps: list[tuple[str, Callable[[], object]]] = []
        people: list[Person] = []
        steps.append(
            ("register", lambda: people.extend([self.do_register(a), self.do_register(a)]))
        )
        for i, fmt in enumerate(("json", "csv", "ndjson")):
            values = self._values([7 + i, 8], [123456789 + i, 987654321])
            steps.append(("ingest", functools.partial(self._tour_ingest, people, i, values, fmt)))
        steps += [
            ("replay", lambda: self.do_replay(people[0])),
            ("ingest_bad", lambda: self.do_ingest_bad(people[1], self._values([1, 2], [1, 2]), 1)),
            ("accept", lambda: self.do_accept(people[0])),
            ("accept", lambda: self.do_accept(people[1])),
            ("query", self.do_query),
            ("withdraw", lambda: self.do_withdraw(people[1])),
            ("query", self.do_query),
            ("export", lambda: self.do_export(people[0])),
            ("import", lambda: self.do_import(self.exports[-1], self.do_register(b))),
            ("delete", lambda: self.do_delete(people[0])),
            ("query", self.do_query),
        ]
        for name, step in steps:
            step()
            self.world.ran[name] += 1
            for check in (
                self.no_plaintext_at_rest,
                self.consent_never_bypassed,
                self.budgets_never_overspent,
                self.audit_chains_intact,
                self.nothing_acknowledged_is_lost,
            ):
                check()

    # --- invariants -------------------------------------------------------------------------------

    def _release_ids(self) -> list[str]:
        with self.world.a.app.state.vault.reading() as session:
            return list(session.exec(select(DPRelease.id)).all())

    @invariant()
    @_noted
    def no_plaintext_at_rest(self) -> None:
        needles: dict[bytes, float] = {}
        for value in self.world.ingested:
            for form in (repr(value).encode(), struct.pack("<d", value)):
                needles[form] = value
                needles[form.hex().encode()] = value  # bytea, as pg_dump prints it
        for vault in (self.world.a, self.world.b):
            copy = _copy(vault)
            # The control: what is stored in clear (sign-in handles) is found in the copy.
            handles = [p.handle for p in self.world.people if p.vault is vault and not p.deleted]
            assert all(h.encode() in copy for h in handles), f"vault {vault.name}: copy incomplete"
            found = sorted({v for form, v in needles.items() if form in copy})
            assert not found, f"vault {vault.name}: values in clear in the database: {found}"

    @invariant()
    @_noted
    def consent_never_bypassed(self) -> None:
        w = self.world
        agg = w.a.app.state.aggregation
        agg.deliver_notices()  # what the answer's background task and the upkeep loop do
        with agg.vault.reading() as session:
            contributions = list(session.exec(select(ReleaseContribution)).all())
            releases = {r.id: r for r in session.exec(select(DPRelease)).all()}
            status = {rid: r.status for rid, r in releases.items()}
        for c in contributions:
            assert c.consent_id in w.eligible[c.release_id], (
                f"release {c.release_id} used consent {c.consent_id}, not given when it ran"
            )
        for person in self.living(w.a):
            told: Counter[tuple[str, str]] = Counter()
            audit = w.a.http.get("/v1/me/audit", headers=person.auth).json()
            for entry in audit["entries"]:
                if entry["action"] in ("data.used_in_release", "data.counted_in_size_check"):
                    told[(entry["action"], entry["details"]["release_id"])] += 1
            expected = Counter(
                (
                    # Left out of a release by their minimum group size: only counted.
                    "data.used_in_release"
                    if status[c.release_id] == "released"
                    and c.epsilon > releases[c.release_id].size_check_epsilon + 1e-9
                    else "data.counted_in_size_check",
                    c.release_id,
                )
                for c in contributions
                if c.citizen_id == person.citizen_id
            )
            assert told == expected, (person.handle, told, expected)

    @invariant()
    @_noted
    def budgets_never_overspent(self) -> None:
        with self.world.a.app.state.vault.reading() as session:
            departments = list(session.exec(select(DepartmentBudget)).all())
            consents = list(session.exec(select(ConsentBudget)).all())
            releases = list(session.exec(select(DPRelease)).all())
            contributions = list(session.exec(select(ReleaseContribution)).all())
        for d in departments:
            charged = sum(
                r.epsilon_charged
                for r in releases
                if r.department_id == d.department_id
                and d.period_start <= r.created_at < d.period_end
            )
            assert d.epsilon_spent <= d.epsilon_limit + 1e-9, d
            assert d.epsilon_spent == pytest.approx(charged), (d, charged)
        for b in consents:
            mine = [
                c.epsilon
                for c in contributions
                if c.consent_id == b.consent_id and c.period_start == b.period_start
            ]
            assert b.epsilon_spent <= b.epsilon_limit + 1e-9, b
            assert b.releases <= b.releases_limit, b
            assert b.epsilon_spent == pytest.approx(sum(mine)), (b, mine)

    @invariant()
    @_noted
    def audit_chains_intact(self) -> None:
        for person in self.living(self.world.a) + self.living(self.world.b):
            r = person.vault.http.get("/v1/me/audit", headers=person.auth)
            assert r.status_code == 200, r.text
            assert r.json()["intact"] and not r.json()["problems"], (person.handle, r.json())

    @invariant()
    @_noted
    def nothing_acknowledged_is_lost(self) -> None:
        for person in self.living(self.world.a) + self.living(self.world.b):
            http = person.vault.http
            streams = http.get("/v1/me/streams", headers=person.auth).json()["streams"]
            read: Counter[float] = Counter()
            for s in streams:
                if s["stream_type"] != ENERGY:
                    continue
                r = http.get(
                    f"/v1/me/streams/{s['id']}/records",
                    params={"limit": 10_000},
                    headers=person.auth,
                )
                assert r.status_code == 200, r.text
                read.update(rec["kwh"] for rec in r.json()["records"])
            assert read == person.values, (
                person.handle,
                read - person.values,
                person.values - read,
            )


def test_citizen_lifecycle_keeps_every_invariant(world: World) -> None:
    Lifecycle.world = world
    try:
        run_state_machine_as_test(
            Lifecycle,
            settings=settings(
                max_examples=EXAMPLES,
                stateful_step_count=STEPS,
                deadline=None,
                database=None,
                print_blob=True,
                phases=[Phase.generate],  # the city lives on between examples: nothing to shrink to
                suppress_health_check=list(HealthCheck),
            ),
        )
    except BaseException as exc:
        if world.failure is not None:
            raise AssertionError(f"the first failure: {world.failure}") from exc
        raise
    walked = Counter(world.ran)
    Lifecycle().tour()
    assert set(world.ran) == STEP_NAMES, world.ran
    print(f"\nlifecycle: random walk {dict(walked)}; with the tour {dict(world.ran)}")
