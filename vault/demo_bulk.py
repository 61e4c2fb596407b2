"""Benchmark cities: 100,000 or 1,000,000 citizens, stored exactly as the services store them.

:func:`vault.demo_city.seed_demo_city` registers each citizen through the services (ORM, pydantic,
Argon2id, one audit entry per step): about 24 ms a citizen, 40 minutes for 100,000. The
aggregation benchmarks need far bigger cities, so :func:`seed_bulk_city` writes the same rows
directly: what each service would write, built with the same primitives, inserted with SQLAlchemy
Core ``executemany`` in batches of citizens (one transaction each), with the per-citizen
cryptography done in worker processes.

What a bulk citizen (``bulk-0000001``, ...) gets, row for row as the services write it:

* an account (:class:`~vault.models.Citizen`): a fresh root key pair; the root secret wrapped with
  :func:`~vault.crypto.passphrase_wrap.wrap_secret` under a random passphrase and under a random
  recovery code, both thrown away at once (like the ``demo-*`` citizens, nobody can sign in);
* two streams, each with its first key generation (private half sealed to the citizen's root key):
  ``energy.consumption`` holding ``records_per_citizen`` readings and ``profile`` holding one
  record (district, age band, household size), each as ONE ``arrow-ipc`` chunk
  (:func:`~vault.chunk_codec.encode_frame`), encrypted with :func:`~vault.crypto.chunk_cipher.
  encrypt_chunk` under the associated data :func:`~vault.chunk_codec.associated_data` of sequence 0;
  the values come from :func:`vault.demo_city.generate_readings` (the same population in both);
* an answer to the shipped request ``energy-monthly-totals`` (the stored one, as
  :meth:`ConsentRegistry.accept <vault.services.consent_registry.ConsentRegistry.accept>` reads
  it): most accept (some with half the epsilon), the others decline. An acceptance is what
  :meth:`~vault.services.consent_registry.ConsentRegistry.give_terms` writes: the terms as the
  citizen-signed canonical JSON, the signed ``given`` event, and grants sealing the private keys
  of both streams (grouping by district reads the profile stream) to the aggregation service's
  public key, each carrying the SHA-256 of the signed terms. A decline is a ``request_declines`` row;
* one audit entry (actor :data:`~vault.demo_city.DEMO_ACTOR`, action
  :data:`~vault.demo_city.DEMO_AUDIT_ACTION`) listing the streams, chunks and the answer, with a
  head signed by the vault's audit key: the chain verifies like any other. (The worker processes
  receive that key's seed through their pipe to sign the heads; it is never written anywhere.)

Terms are built cheaply but not differently: two templates (plain and narrowed) are made once by
the request's own ``terms_for`` (and checked by ``validate_terms``); a citizen's signed body is the
template's ``signable_dict()`` with its own ``id`` and ``subject``, encoded by the project's one
``canonical_json``. Those bytes are exactly what ``give`` signs for the same terms
(``tests/test_demo_bulk.py`` rebuilds some through ``terms_for`` and compares them, and every
consent passes ``ConsentRegistry.usable_consents``).

Rerunning skips the citizens whose handle exists (each batch commits whole), so an interrupted
seeding completes; the skipped keep whatever they were seeded with. Nothing runs at import time.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import secrets
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import nacl.signing
import numpy as np
import polars as pl
from sqlalchemy import Executable, Table, insert
from sqlmodel import col, select

from consent.canonical import canonical_json
from consent.terms import ConsentEvent, Narrowing, validate_terms
from vault.audit_chain import GENESIS, entry_hash, sign_head
from vault.chunk_codec import associated_data, encode_frame
from vault.clock import iso, utcnow
from vault.consent_models import ConsentEventRow, ConsentRecord, KeyGrant, RequestDecline
from vault.crypto.chunk_cipher import encrypt_chunk
from vault.crypto.passphrase_wrap import KdfCost, wrap_secret
from vault.crypto.recovery_code import new_recovery_code, normalise_recovery_code
from vault.crypto.root_keys import RootKeys
from vault.crypto.sealing import generate_box_key, seal_to
from vault.demo_city import (
    DEMO_ACTOR,
    DEMO_AUDIT_ACTION,
    ENERGY,
    PROFILE,
    DemoCityError,
    generate_readings,
    seed_departments,
)
from vault.models import AuditEntry, AuditHead, Chunk, Citizen, Stream, StreamKey
from vault.repositories import consents as consent_repo

if TYPE_CHECKING:
    from vault.runtime import VaultRuntime

BULK_HANDLE_PREFIX = "bulk-"
#: The shipped request every bulk citizen answers.
BULK_REQUEST_ID = "energy-monthly-totals"
#: The grantee of a statistics-only consent (see ``ConsentRegistry.give_terms``).
GRANTEE = "aggregation"
#: Citizens per transaction (and per task of a worker): a hundredth of the city, within these.
MIN_BATCH = 2000
MAX_BATCH = 10000
#: Worker processes for the per-citizen cryptography (0: all in this process).
DEFAULT_WORKERS = 2
#: Share of the citizens who accept; the others decline.
DEFAULT_ACCEPT_SHARE = 0.85
#: Share of those who accept who narrow the epsilon per period to half the request's.
DEFAULT_NARROW_SHARE = 0.2

#: The order in which a batch's rows are inserted (every foreign key points backwards).
_TABLES: tuple[str, ...] = (
    "citizens",
    "streams",
    "stream_keys",
    "chunks",
    "consents",
    "consent_events",
    "key_grants",
    "request_declines",
    "audit_entries",
    "audit_heads",
)
#: A citizen's answer to the request: decline, accept, accept with half the epsilon.
_DECLINE = 0
_ACCEPT = 1
_NARROW = 2
#: Stand-ins for the id and subject of the terms templates (replaced for every citizen).
_TEMPLATE_ID = "0" * 32


class BulkSeedError(DemoCityError):
    """The bulk city cannot be seeded as asked (bad argument, or the request is not open)."""


def bulk_handle(citizen: int) -> str:
    """The handle of bulk citizen number ``citizen`` (0-based): ``bulk-0000001`` and on."""
    return f"{BULK_HANDLE_PREFIX}{citizen + 1:07d}"


@dataclass(frozen=True)
class BulkSeedReport:
    """What :func:`seed_bulk_city` did: ``citizens`` seeded now (``accepted`` of them gave the
    consent, ``narrowed`` of those with half the epsilon, ``declined`` declined), ``skipped``
    already there; ``records``, ``chunks`` and ``grants`` written now."""

    citizens: int
    skipped: int
    accepted: int
    narrowed: int
    declined: int
    records: int
    chunks: int
    grants: int
    seconds: float
    workers: int

    @property
    def citizens_per_second(self) -> float:
        return self.citizens / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class _StreamPlan:
    stream_type: str
    schema_version: int
    label: str


@dataclass(frozen=True)
class _Plan:
    """Everything a worker needs that is the same for every citizen of the run."""

    now: datetime
    streams: tuple[_StreamPlan, _StreamPlan]  # energy, profile
    request_id: str
    department: str
    terms_version: int
    not_after: datetime
    epsilon: tuple[float, float]  # as requested, narrowed
    terms: tuple[dict[str, Any], dict[str, Any]]  # signable dicts: as requested, narrowed
    given_event: dict[str, Any]  # the signable dict of a ``given`` event at ``now``
    aggregation_public_key: bytes
    audit_key_seed: bytes = field(repr=False)


@dataclass(frozen=True)
class _Batch:
    """Citizens ``numbers`` with their answers; ``energy`` holds ``records_per_citizen`` rows per
    citizen and ``profile`` one, in the order of ``numbers`` (without the ``citizen`` column)."""

    numbers: tuple[int, ...]
    answers: tuple[int, ...]
    records_per_citizen: int
    energy: pl.DataFrame
    profile: pl.DataFrame


@dataclass
class _Rows:
    """A batch's rows, by table, ready for ``executemany``; and what they hold."""

    tables: dict[str, list[dict[str, Any]]]
    citizens: int = 0
    accepted: int = 0
    narrowed: int = 0
    declined: int = 0
    records: int = 0
    chunks: int = 0
    grants: int = 0

    def add(self, other: _Rows) -> None:
        self.citizens += other.citizens
        self.accepted += other.accepted
        self.narrowed += other.narrowed
        self.declined += other.declined
        self.records += other.records
        self.chunks += other.chunks
        self.grants += other.grants


def _table(model: Any) -> Table:
    table: Table = model.__table__
    return table


def _statements() -> dict[str, Executable]:
    """One insert per table, through the ORM's column types, as the services store them (the
    write path's plain SQL for chunks binds their time through the same type)."""
    models = (
        Citizen,
        Stream,
        StreamKey,
        Chunk,
        ConsentRecord,
        ConsentEventRow,
        KeyGrant,
        RequestDecline,
    )
    return {t.name: insert(t) for t in (_table(m) for m in (*models, AuditEntry, AuditHead))}


def default_batch(citizens: int) -> int:
    """Citizens per transaction: 2,000, or a hundredth of a big city (at most 10,000). Ids are
    random, so every commit rewrites nearly one page of every index per row it adds; fewer, bigger
    commits share pages. Measured here, adding 20,000 citizens to a SQLite city of 1,000,000:
    batches of 10,000 wrote 3.8 GB and spent 27-31 s inserting; batches of 2,000 wrote 5.4 GB and
    spent 43-47 s."""
    return min(MAX_BATCH, max(MIN_BATCH, citizens // 100))


def _plan(rt: VaultRuntime, now: datetime) -> _Plan:
    """The stored request's terms, as requested and narrowed, made and checked the real way."""
    with rt.reading() as session:
        row = consent_repo.request(session, BULK_REQUEST_ID)
    if row is None or row.status != "open":
        raise BulkSeedError(f"the request {BULK_REQUEST_ID!r} is not published and open")
    request = rt.consents.request_model(row.request_json)
    if request.dp_limits is None:
        raise BulkSeedError(f"the request {BULK_REQUEST_ID!r} has no privacy limits to narrow")
    epsilon = request.dp_limits.epsilon_per_period
    plain = request.terms_for(_TEMPLATE_ID, now, terms_id=_TEMPLATE_ID)
    narrowed = request.terms_for(
        _TEMPLATE_ID, now, Narrowing(epsilon_per_period=epsilon / 2), terms_id=_TEMPLATE_ID
    )
    for terms in (plain, narrowed):
        validate_terms(terms, rt.consents.catalogue)
    if plain.processing.mode != "dp_aggregate" or not plain.group_by:
        raise BulkSeedError(f"{BULK_REQUEST_ID!r} is no longer grouped statistics")
    department = next((r.id for r in plain.recipients if r.kind == "department"), None)
    if department is None:
        raise BulkSeedError(f"{BULK_REQUEST_ID!r} names no department")
    energy, profile = rt.catalogue.get(ENERGY), rt.catalogue.get(PROFILE)
    return _Plan(
        now=now,
        streams=(
            _StreamPlan(energy.name, energy.schema_version, energy.title),
            _StreamPlan(profile.name, profile.schema_version, profile.title),
        ),
        request_id=BULK_REQUEST_ID,
        department=department,
        terms_version=plain.version,
        not_after=plain.validity.not_after,
        epsilon=(epsilon, epsilon / 2),
        terms=(plain.signable_dict(), narrowed.signable_dict()),
        given_event=ConsentEvent.for_terms(plain, "given", now).signable_dict(),
        aggregation_public_key=bytes(rt.keys.aggregation.public_key),
        audit_key_seed=bytes(rt.keys.audit_signing),
    )


def _answers(citizens: int, seed: int, accept_share: float, narrow_share: float) -> list[int]:
    """Each citizen's answer, deterministic for ``seed`` (a draw of its own, apart from the data)."""
    draw = np.random.default_rng([seed, 0xB01C]).random(citizens)
    answers = np.where(draw < accept_share, _ACCEPT, _DECLINE)
    answers[draw < accept_share * narrow_share] = _NARROW
    return [int(a) for a in answers]


def _build_rows(plan: _Plan, batch: _Batch) -> _Rows:
    """Every row of a batch's citizens (runs in a worker process; no database)."""
    out = _Rows({name: [] for name in _TABLES})
    t = out.tables
    now = plan.now
    cost = KdfCost.profile("min")
    audit_key = nacl.signing.SigningKey(plan.audit_key_seed)
    r = batch.records_per_citizen
    for offset, (number, answer) in enumerate(zip(batch.numbers, batch.answers, strict=True)):
        root = RootKeys.generate()
        cid = uuid.uuid4().hex
        t["citizens"].append(
            {
                "id": cid,
                "handle": bulk_handle(number),
                "box_public": root.box_public,
                "verify_key": root.verify_key,
                "root_by_passphrase": wrap_secret(root.secret, secrets.token_urlsafe(24), cost),
                "root_by_recovery": wrap_secret(
                    root.secret, normalise_recovery_code(new_recovery_code()), cost
                ),
                "created_at": now,
                "failed_logins": 0,
                "locked_until": None,
            }
        )
        frames = (batch.energy.slice(offset * r, r), batch.profile.slice(offset, 1))
        stream_keys: list[tuple[str, str, bytes]] = []  # stream id, key id, private key
        written: list[dict[str, Any]] = []
        for spec, frame in zip(plan.streams, frames, strict=True):
            sid, kid, chunk_id = uuid.uuid4().hex, uuid.uuid4().hex, uuid.uuid4().hex
            private = generate_box_key()
            public = bytes(private.public_key)
            stream_keys.append((sid, kid, bytes(private)))
            t["streams"].append(
                {
                    "id": sid,
                    "citizen_id": cid,
                    "stream_type": spec.stream_type,
                    "schema_version": spec.schema_version,
                    "label": spec.label,
                    "current_key_id": kid,
                    "next_seq": 1,
                    "created_at": now,
                }
            )
            t["stream_keys"].append(
                {
                    "id": kid,
                    "stream_id": sid,
                    "generation": 1,
                    "public_key": public,
                    "sealed_to_owner": seal_to(root.box_public, bytes(private)),
                    "created_at": now,
                    "retired_at": None,
                }
            )
            plain = encode_frame(frame)
            ad = associated_data(cid, sid, 0, spec.schema_version, plain.format)
            sealed = encrypt_chunk(plain.data, ad, public)
            t["chunks"].append(
                {
                    "id": chunk_id,
                    "stream_id": sid,
                    "seq": 0,
                    "stream_key_id": kid,
                    "schema_version": spec.schema_version,
                    "format": plain.format,
                    "record_count": plain.record_count,
                    "ciphertext": sealed.ciphertext,
                    "sealed_key": sealed.sealed_key,
                    "created_at": now,
                }
            )
            written.append(
                {"type": spec.stream_type, "stream": sid, "chunk": chunk_id, "count": frame.height}
            )
            out.records += frame.height
            out.chunks += 1
        details: dict[str, Any] = {"bulk": True, "chunks": written}
        if answer == _DECLINE:
            t["request_declines"].append(
                {"citizen_id": cid, "request_id": plan.request_id, "declined_at": now}
            )
            details["declined"] = {"request": plan.request_id}
            out.declined += 1
        else:
            narrow = answer == _NARROW
            consent_id = _consent_rows(t, plan, root, cid, narrow, stream_keys)
            details["consent"] = {
                "consent": consent_id,
                "request": plan.request_id,
                "epsilon_per_period": plan.epsilon[narrow],
            }
            out.accepted += 1
            out.narrowed += narrow
            out.grants += len(stream_keys)
        at = iso(now)
        digest = entry_hash(cid, 1, at, DEMO_ACTOR, DEMO_AUDIT_ACTION, details, GENESIS)
        t["audit_entries"].append(
            {
                "citizen_id": cid,
                "seq": 1,
                "at": at,
                "actor": DEMO_ACTOR,
                "action": DEMO_AUDIT_ACTION,
                "details": canonical_json(details).decode("utf-8"),
                "prev_hash": GENESIS,
                "entry_hash": digest,
            }
        )
        t["audit_heads"].append(
            {
                "citizen_id": cid,
                "seq": 1,
                "entry_hash": digest,
                "signature": sign_head(audit_key, cid, 1, digest),
            }
        )
        out.citizens += 1
    return out


def _consent_rows(
    t: dict[str, list[dict[str, Any]]],
    plan: _Plan,
    root: RootKeys,
    cid: str,
    narrow: bool,
    stream_keys: list[tuple[str, str, bytes]],
) -> str:
    """The signed terms, the signed ``given`` event and the grants (as ``give_terms`` writes
    them); returns the consent's id."""
    consent_id, terms_id = uuid.uuid4().hex, uuid.uuid4().hex
    message = canonical_json({**plan.terms[narrow], "id": terms_id, "subject": cid})
    digest = hashlib.sha256(message).hexdigest()
    event = canonical_json(
        {**plan.given_event, "terms_id": terms_id, "terms_digest": f"sha256:{digest}"}
    )
    t["consents"].append(
        {
            "id": consent_id,
            "terms_id": terms_id,
            "version": plan.terms_version,
            "citizen_id": cid,
            "department_id": plan.department,
            "client_id": None,
            "request_id": plan.request_id,
            "terms_json": message.decode("utf-8"),
            "signature": bytes(root.signing_key.sign(message).signature),
            "signing_key": root.verify_key,
            "status": "given",
            "not_after": plan.not_after,
            "created_at": plan.now,
        }
    )
    t["consent_events"].append(
        {
            "id": uuid.uuid4().hex,
            "consent_id": consent_id,
            "kind": "given",
            "at": plan.now,
            "event_json": event.decode("utf-8"),
            "signature": bytes(root.signing_key.sign(event).signature),
        }
    )
    for sid, kid, private in stream_keys:
        t["key_grants"].append(
            {
                "id": uuid.uuid4().hex,
                "consent_id": consent_id,
                "stream_id": sid,
                "stream_key_id": kid,
                "grantee": GRANTEE,
                "sealed_key": seal_to(plan.aggregation_public_key, private),
                "terms_sha256": digest,
                "created_at": plan.now,
            }
        )
    return consent_id


def _batches(
    todo: list[int],
    answers: list[int],
    energy: pl.DataFrame,
    profile: pl.DataFrame,
    records_per_citizen: int,
    batch_size: int,
) -> Iterator[_Batch]:
    """``todo`` in batches, each with its citizens' rows (a slice when they are consecutive)."""
    r = records_per_citizen
    for start in range(0, len(todo), batch_size):
        numbers = todo[start : start + batch_size]
        first, span = numbers[0], numbers[-1] - numbers[0] + 1
        if span == len(numbers):
            mine_energy, mine_profile = (
                energy.slice(first * r, span * r),
                profile.slice(first, span),
            )
        else:  # a resumed run: some of the span exist already
            picked = np.asarray(numbers, dtype=np.int64)
            rows = (picked[:, None] * r + np.arange(r, dtype=np.int64)).ravel()
            mine_energy, mine_profile = energy[rows], profile[picked]
        yield _Batch(
            numbers=tuple(numbers),
            answers=tuple(answers[i] for i in numbers),
            records_per_citizen=r,
            energy=mine_energy,
            profile=mine_profile,
        )


def _existing_bulk_handles(rt: VaultRuntime) -> set[str]:
    with rt.reading() as session:
        query = select(Citizen.handle).where(col(Citizen.handle).startswith(BULK_HANDLE_PREFIX))
        return set(session.exec(query))


def _insert(rt: VaultRuntime, statements: Mapping[str, Executable], rows: _Rows) -> None:
    """One batch, one transaction: every table in foreign-key order, one ``executemany`` each."""
    with rt.unit_of_work() as session:
        conn = session.connection()
        for name in _TABLES:
            if rows.tables[name]:
                conn.execute(statements[name], rows.tables[name])


def _worker_started() -> None:
    """Each worker process encodes one small frame at a time: polars' own thread pool would only
    add switching (one thread encodes a 10-row chunk about 20 % faster, measured here)."""
    os.environ["POLARS_MAX_THREADS"] = "1"


def _pool(workers: int) -> ProcessPoolExecutor:
    # spawn, not fork: this process already runs polars' and SQLAlchemy's threads.
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_worker_started,
    )


def _results(plan: _Plan, batches: Iterator[_Batch], workers: int) -> Iterator[_Rows]:
    """The batches' rows in order, built by ``workers`` processes (a few batches ahead)."""
    if workers == 0:
        for batch in batches:
            yield _build_rows(plan, batch)
        return
    with _pool(workers) as pool:
        pending: deque[Future[_Rows]] = deque()
        for batch in batches:
            pending.append(pool.submit(_build_rows, plan, batch))
            if len(pending) > workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def seed_bulk_city(
    rt: VaultRuntime,
    citizens: int,
    records_per_citizen: int = 10,
    seed: int = 7,
    *,
    accept_share: float = DEFAULT_ACCEPT_SHARE,
    narrow_share: float = DEFAULT_NARROW_SHARE,
    progress: Callable[[int, int], None] | None = None,
    batch_size: int | None = None,
    workers: int = DEFAULT_WORKERS,
    end: datetime | None = None,
) -> BulkSeedReport:
    """Seed ``citizens`` bulk citizens (``bulk-0000001`` ...) as described in the module docstring.

    Data: citizen ``i`` (0-based) holds rows ``i`` of ``generate_readings(citizens,
    records_per_citizen, "energy.consumption", seed, end)`` and of ``generate_readings(citizens, 1,
    "profile", seed, end)``. A share ``accept_share`` of the citizens accepts
    ``energy-monthly-totals`` (``narrow_share`` of those with half its epsilon per period), the
    others decline; who does is a deterministic draw from ``seed``.

    ``batch_size`` citizens (default: :func:`default_batch`) commit together; their cryptography
    runs in ``workers`` processes (0: in this one), started with ``spawn``, so a script calling
    this needs the usual ``if __name__ == "__main__":`` guard. Handles that exist are skipped, so a
    second run adds nothing and an interrupted one completes. ``progress(done, citizens)`` is
    called after each batch. The database must be migrated; the departments and their requests
    are published here if they are not yet (``seed_departments``).
    """
    batch = default_batch(citizens) if batch_size is None else batch_size
    if citizens < 0 or records_per_citizen < 1 or batch < 1 or workers < 0:
        raise BulkSeedError(
            "citizens must be 0 or more, records_per_citizen and batch_size 1 or more, workers "
            f"0 or more; got {citizens}, {records_per_citizen}, {batch}, {workers}"
        )
    if not (0.0 <= accept_share <= 1.0 and 0.0 <= narrow_share <= 1.0):
        raise BulkSeedError(
            f"accept_share and narrow_share must be between 0 and 1; got {accept_share}, "
            f"{narrow_share}"
        )
    started = time.perf_counter()
    seed_departments(rt)
    plan = _plan(rt, utcnow())
    existing = _existing_bulk_handles(rt)
    todo = [i for i in range(citizens) if bulk_handle(i) not in existing]
    totals = _Rows({})
    if todo:
        energy = generate_readings(citizens, records_per_citizen, ENERGY, seed, end)
        profile = generate_readings(citizens, 1, PROFILE, seed, end)
        answers = _answers(citizens, seed, accept_share, narrow_share)
        batches = _batches(
            todo,
            answers,
            energy.drop("citizen"),
            profile.drop("citizen"),
            records_per_citizen,
            batch,
        )
        statements = _statements()
        for rows in _results(plan, batches, workers):
            _insert(rt, statements, rows)
            totals.add(rows)
            if progress is not None:
                progress(citizens - len(todo) + totals.citizens, citizens)
    elif progress is not None:
        progress(citizens, citizens)
    return BulkSeedReport(
        citizens=totals.citizens,
        skipped=citizens - len(todo),
        accepted=totals.accepted,
        narrowed=totals.narrowed,
        declined=totals.declined,
        records=totals.records,
        chunks=totals.chunks,
        grants=totals.grants,
        seconds=time.perf_counter() - started,
        workers=workers,
    )
