"""Running a query: the pipeline of the aggregation service, step by step.

1. **Validate** the query against the datasets (422 naming each bad field).
2. **Consent gate** (:mod:`aggregation.consent_gate`): the citizens whose verified terms allow it.
3. **Reserve** (:mod:`aggregation.ledger`, one transaction): the department's budget (409 when it
   cannot pay), then every admitted consent whose own budget covers the query is charged.
4. **Size check**: a noisy count of the charged citizens (a share of the epsilon); citizens whose
   minimum group size is above it are left out; if nobody is left, 403 and only the size check
   stays charged.
5. **Decrypt and bound** (:mod:`aggregation.contributions`) on threads or Dask workers.
6. **Release** with OpenDP (:mod:`aggregation.dp_release`), noise added once.
7. **Settle** (one transaction): the release and its result are recorded with the charges; any
   failure before this point cancels the reservation (nothing left the service).
8. **Tell** the contributing citizens (:mod:`aggregation.release_notices`), after the commit.

This module owns the order of the transactions (each step's services never commit).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import polars as pl
from sqlmodel import Session

from aggregation import consent_gate, repository
from aggregation.admission_memo import AdmissionMemo, Judgment
from aggregation.bounded_shards import BoundedShards, bound_shards_digested, shard_by_citizen
from aggregation.collector_pause import collector_paused
from aggregation.contributions import BoundSpec, combine
from aggregation.datasets import PROFILE, Dataset, datasets
from aggregation.dp_measurements import MeasurementCache
from aggregation.dp_plan import ReleasePlan, StatisticSpec
from aggregation.dp_release import (
    GroupRow,
    NoisyCount,
    ReleaseResult,
    expected_accuracy,
    noisy_count,
    release,
)
from aggregation.errors import TooFewContributors
from aggregation.ledger import Charged, LeftOut, PrivacyLedger
from aggregation.material_revisions import MaterialDigests, shard_fingerprint
from aggregation.query_spec import QueryRequest, ValidatedQuery, query_json, validate_query
from aggregation.scale_out import ShardRunner
from aggregation.sealed_material import (
    ContributingConsent,
    SealedCitizen,
    gather_sealed,
    stream_types,
)
from aggregation.settings import AggregationSettings
from aggregation.tables import DPRelease
from vault.clock import utcnow
from vault.crypto.sealing import public_key_of
from vault.errors import Forbidden, NotFound
from vault.principal import Principal
from vault.runtime import VaultRuntime

CONFIDENCE = 0.95
STAFF_KINDS = ("analyst", "department")


@dataclass(frozen=True, slots=True)
class BoundedFrame:
    """The frame handed to OpenDP, and the contributing consents left out of it because they
    were withdrawn or changed after the gate (none of their data was read)."""

    frame: pl.DataFrame
    lapsed: frozenset[str]


@dataclass(frozen=True, slots=True)
class Prepared:
    """A validated query with what the later steps derive from it."""

    query: ValidatedQuery
    spec: BoundSpec
    size_check_epsilon: float
    statistics_epsilon: float


def department_of(principal: Principal, department_id: str | None = None) -> str:
    """The department a staff token acts for; 403 for any other token or department."""
    if principal.kind not in STAFF_KINDS or not principal.department_id:
        raise Forbidden("only a department's analysts and services may use statistics")
    if department_id is not None and department_id != principal.department_id:
        raise Forbidden(
            f"this token acts for the {principal.department_id} department, not {department_id}",
            details=[{"field": "department", "reason": "not the token's department"}],
        )
    return principal.department_id


class _StageClock:
    """Seconds spent in each step of a query (for the benchmarks and the operator's log)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def done(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] = now - self._last
        self._last = now


class QueryService:
    def __init__(
        self,
        vault: VaultRuntime,
        settings: AggregationSettings,
        ledger: PrivacyLedger,
        runner: ShardRunner,
        cache: MeasurementCache,
        frames: BoundedShards | None = None,
    ) -> None:
        self._vault = vault
        self._settings = settings
        self._ledger = ledger
        self._runner = runner
        self._cache = cache
        #: Bounded frames of shards seen before (``aggregation.bounded_shards``), found by the
        #: revisions of their material (``aggregation.material_revisions``).
        self.frames = frames if frames is not None else BoundedShards(0)
        self.material = MaterialDigests()
        #: Consent judgments of earlier queries (``aggregation.admission_memo``).
        self.admissions = AdmissionMemo()
        self._datasets: dict[str, Dataset] | None = None
        #: The steps of the last released query and their seconds (read by the benchmarks).
        self.last_stages: dict[str, float] = {}

    @property
    def datasets(self) -> dict[str, Dataset]:
        if self._datasets is None:
            self._datasets = {d.name: d for d in datasets(self._vault.catalogue)}
        return self._datasets

    @property
    def runner_name(self) -> str:
        return self._runner.name

    # -- preparing -----------------------------------------------------------------------------

    def prepare(self, request: QueryRequest) -> Prepared:
        query = validate_query(request, self.datasets)
        check = query.epsilon * self._settings.size_check_share
        return Prepared(query, bound_spec(query, self._vault), check, query.epsilon - check)

    def preview(self, principal: Principal, request: QueryRequest) -> dict[str, Any]:
        """Expected accuracy for this epsilon; spends nothing and reads no citizen's data."""
        prepared = self.prepare(request)
        department_of(principal, request.department)
        plan = release_plan(prepared)
        accuracy = expected_accuracy(plan, cache=self._cache)
        with self._vault.reading() as session:
            status = self._ledger.department_status(session, request.department, utcnow())
        return {
            "dataset": request.dataset,
            "epsilon": prepared.query.epsilon,
            "epsilon_statistics": prepared.statistics_epsilon,
            "epsilon_size_check": prepared.size_check_epsilon,
            "records_per_citizen": prepared.query.records_per_citizen,
            "confidence": CONFIDENCE,
            "accuracy": [_plain(a) for a in accuracy],
            "department_epsilon_left": status.epsilon_left,
            "spends": 0.0,
        }

    # -- running -------------------------------------------------------------------------------

    def run(self, principal: Principal, request: QueryRequest) -> dict[str, Any]:
        """Run ``request`` through the pipeline (module docstring) and return the release."""
        with collector_paused():  # millions of live objects at city scale (collector_pause)
            return self._run(principal, request)

    def _run(self, principal: Principal, request: QueryRequest) -> dict[str, Any]:
        prepared = self.prepare(request)
        department = department_of(principal, request.department)
        query = prepared.query
        at = utcnow()
        clock = _StageClock()
        admitted = self._admit(query, at)
        clock.done("consent gate")
        with self._vault.unit_of_work() as session:
            reservation = self._ledger.reserve(
                session,
                department_id=department,
                purpose=request.purpose,
                dataset=request.dataset,
                query=query_json(request),
                epsilon=query.epsilon,
                size_check_epsilon=prepared.size_check_epsilon,
                admitted=admitted,
                requested_by=principal.actor,
                at=at,
            )
        clock.done("reserve")
        try:
            contributors = noisy_count(len(reservation.charged), prepared.size_check_epsilon)
            kept: list[Charged] = []
            left_out: dict[str, LeftOut] = {}
            for c in reservation.charged:
                if c.consent.limits.min_group_size <= contributors.value:
                    kept.append(c)
                else:
                    left_out[c.consent.consent_id] = "group_size"
            if not kept:
                with self._vault.unit_of_work() as session:
                    self._ledger.settle(
                        session, reservation.release_id, outcome="refused", at=utcnow()
                    )
                raise TooFewContributors(
                    "too few citizens allow this query for the minimum group size their terms "
                    "ask for (judged on a noisy count); the query's budget was not spent, only "
                    f"the size check's epsilon {prepared.size_check_epsilon:g}",
                    details=[{"field": "query", "reason": "too few contributing citizens"}],
                )
            bounded = self.bounded_frame(
                prepared,
                [
                    ContributingConsent(
                        c.consent.consent_id,
                        c.consent.citizen_id,
                        c.consent.terms_sha256,
                        c.consent.revision,
                    )
                    for c in kept
                ],
                clock,
            )
            left_out.update(dict.fromkeys(bounded.lapsed, "consent_changed"))
            result = release(bounded.frame, release_plan(prepared), self._cache)
            clock.done("release")
            view = release_view(reservation.release_id, request, prepared, result, contributors, at)
            with self._vault.unit_of_work() as session:
                self._ledger.settle(
                    session,
                    reservation.release_id,
                    outcome="released",
                    left_out=left_out,
                    mechanism=str(view["mechanism"]),
                    result=view,
                    at=utcnow(),
                )
            clock.done("settle")
            self.last_stages = clock.seconds
        except TooFewContributors:
            raise
        except BaseException:
            with self._vault.unit_of_work() as session:
                self._ledger.settle(
                    session, reservation.release_id, outcome="cancelled", at=utcnow()
                )
            raise
        return view

    def _admit(self, query: ValidatedQuery, at: datetime) -> list[consent_gate.AdmittedConsent]:
        """The consent gate: judged here (with the registry's memos), or on the workers when
        they run Python in parallel (Dask)."""
        if not self._runner.judges_remotely:
            with self._vault.reading() as session:
                return consent_gate.admit(
                    session,
                    self._vault.consents,
                    query,
                    at,
                    self.admissions,
                    threads=self._settings.workers,
                )
        department = query.request.department
        request = consent_gate.access_request(query, at)
        with self._vault.reading() as session:
            # The revisions before the evidence (aggregation.admission_memo).
            candidates = repository.candidate_revisions(session, department, at)
            known, unknown, holding = self.admissions.recall(request, candidates)
            # Read a shard at a time while the workers judge the shards already sent.
            shards = consent_gate.evidence_in_shards(
                session,
                self._vault.consents,
                department,
                at,
                only=unknown,
                size=self._settings.shard_citizens,
            )
            judged = self._runner.judge(shards, request)
        # Workers return only the admitted; the refused are judged again next time.
        self.admissions.remember(
            request,
            holding
            | {a.consent_id: Judgment(a.revision, a, a.not_before, a.not_after) for a in judged},
        )
        return consent_gate.one_per_citizen(known + judged)

    def bounded_frame(
        self,
        prepared: Prepared,
        contributing: Sequence[ContributingConsent],
        clock: _StageClock | None = None,
    ) -> BoundedFrame:
        """Decrypt and bound the contributing consents' records: the frame handed to OpenDP.

        A consent whose citizen's consent revision moved since the gate judged it (its
        ``revision``) is judged again, in the snapshot the material is read from: if it no longer
        allows the query (withdrawn, changed, erased) it is left out, and none of its data is
        read (``BoundedFrame.lapsed``)."""
        clock = clock or _StageClock()
        spec = prepared.spec
        dataset = prepared.query.dataset.name
        with_profile = spec.profile_schema is not None
        service_key = bytes(self._vault.consents.grantee_private_key("aggregation"))
        prints: list[bytes] = []
        # One snapshot (vault.db.read_only): the revisions before the material they stand for
        # (aggregation.material_revisions), and the re-judged consents of the same moment.
        with self._vault.reading() as session:
            revisions = repository.consent_revisions(session, {c.citizen_id for c in contributing})
            lapsed = self._lapsed(session, prepared, contributing, revisions)
            if lapsed:
                contributing = [c for c in contributing if c.consent_id not in lapsed]
            shards = shard_by_citizen(contributing, self._settings.shard_citizens)
            parts: list[pl.DataFrame | None] = [None] * len(shards)
            if self.frames.enabled:
                streams = repository.stream_revisions(
                    session,
                    {c.citizen_id for c in contributing},
                    stream_types(dataset, with_profile),
                )
                service_public = public_key_of(service_key)
                prints = [
                    shard_fingerprint(s, revisions, streams, service_public, spec) for s in shards
                ]
                parts = [self._remembered_frame(p) for p in prints]
            todo = [i for i, part in enumerate(parts) if part is None]
            sealed = gather_sealed(
                session, [c for i in todo for c in shards[i]], dataset, with_profile
            )
        clock.done("read sealed chunks")
        sealed_shards: list[list[SealedCitizen]] = []
        first = 0
        for i in todo:  # gather_sealed keeps the order it was given: shard after shard
            sealed_shards.append(sealed[first : first + len(shards[i])])
            first += len(shards[i])
        made, digests = bound_shards_digested(
            sealed_shards, service_key, spec, self._runner.run, self.frames
        )
        for n, i in enumerate(todo):
            parts[i] = made[n]
            if prints and digests:
                self.material.put(prints[i], digests[n])
        frame = combine([p for p in parts if p is not None], spec)
        clock.done("decrypt and bound")
        return BoundedFrame(frame, lapsed)

    def _lapsed(
        self,
        session: Session,
        prepared: Prepared,
        contributing: Sequence[ContributingConsent],
        revisions: Mapping[str, int],
    ) -> frozenset[str]:
        """The contributing consents that changed since the gate and no longer allow the query."""
        moved = [
            (c.consent_id, c.terms_sha256)
            for c in contributing
            if c.revision is not None and revisions.get(c.citizen_id) != c.revision
        ]
        if not moved:
            return frozenset()
        allowed = consent_gate.still_allowed(
            session, self._vault.consents, prepared.query, moved, utcnow()
        )
        return frozenset(consent for consent, _ in moved if consent not in allowed)

    def _remembered_frame(self, fingerprint: bytes) -> pl.DataFrame | None:
        digest = self.material.get(fingerprint)
        return None if digest is None else self.frames.get(digest)

    # -- reading releases ----------------------------------------------------------------------

    def get(self, principal: Principal, release_id: str) -> dict[str, Any]:
        """A release again, at no cost, for the department that ran it."""
        department = department_of(principal)
        with self._vault.reading() as session:
            row = repository.release(session, release_id)
        if row is None or row.department_id != department or row.result_json is None:
            raise NotFound(f"no release {release_id!r} of your department")
        return dict(json.loads(row.result_json))

    def public_record(self, release_id: str) -> dict[str, Any]:
        with self._vault.reading() as session:
            row = repository.release(session, release_id)
        if row is None or row.status != "released" or row.result_json is None:
            raise NotFound(f"no published release {release_id!r}")
        return dict(json.loads(row.result_json))

    def public_log(
        self, department: str | None, limit: int, before: datetime | None
    ) -> list[dict[str, Any]]:
        with self._vault.reading() as session:
            rows = repository.releases(
                session,
                department_id=department,
                statuses=("released", "refused"),
                limit=limit,
                before=before,
            )
        return [log_entry(r) for r in rows]


def log_entry(row: DPRelease) -> dict[str, Any]:
    """A release as the public log shows it: who, why, what was asked, the privacy loss; no data."""
    return {
        "release_id": row.id,
        "status": row.status,
        "department": row.department_id,
        "purpose": row.purpose,
        "dataset": row.dataset,
        "query": json.loads(row.query_json),
        "epsilon": row.epsilon_charged,
        "mechanism": row.mechanism,
        "created_at": row.created_at.isoformat(),
    }


# -- pure helpers -------------------------------------------------------------------------------


def bound_spec(query: ValidatedQuery, vault: VaultRuntime) -> BoundSpec:
    dataset = query.dataset
    fields = tuple(dict.fromkeys(s.field for s in query.statistics if s.field is not None))
    numeric = []
    for name in fields:
        spec = dataset.numeric_field(name)
        if spec is not None:
            numeric.append((name, spec.lower, spec.upper))
    used = [dataset.dimension(n) for n in query.dimensions_used]
    record_dims = tuple((d.name, d.domain) for d in used if d is not None and not d.per_citizen)
    citizen_dims = tuple((d.name, d.domain) for d in used if d is not None and d.per_citizen)
    return BoundSpec(
        dataset_schema=dataset.stream.polars_schema(),
        profile_schema=vault.catalogue.get(PROFILE).polars_schema() if citizen_dims else None,
        time_field=dataset.time_field,
        time_from=query.time_from,
        time_to=query.time_to,
        numeric_bounds=tuple(numeric),
        record_dimensions=record_dims,
        citizen_dimensions=citizen_dims,
        group_by=tuple(d.name for d in query.group_by),
        filters=query.dimension_filters,
        records_per_citizen=query.records_per_citizen,
    )


def release_plan(prepared: Prepared) -> ReleasePlan:
    query = prepared.query
    per_record = [d for d in query.group_by if not d.per_citizen]
    groups = math.prod(len(d.domain) for d in per_record) if per_record else 1
    return ReleasePlan(
        statistics=tuple(
            StatisticSpec(stat=s.stat, field=s.field, q=s.q, edges=s.edges)  # type: ignore[arg-type]
            for s in query.statistics
        ),
        group_by=tuple(d.name for d in query.group_by),
        group_domains={d.name: d.domain for d in query.group_by},
        bounds={name: (low, high) for name, low, high in prepared.spec.numeric_bounds},
        max_records_per_citizen=query.records_per_citizen,
        max_groups_per_citizen=groups,
        epsilon=prepared.statistics_epsilon,
    )


def _plain(value: Any) -> Any:
    """Dataclasses of the release engine as JSON-ready dicts."""
    if hasattr(value, "__dataclass_fields__"):
        return {k: _plain(getattr(value, k)) for k in value.__dataclass_fields__}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def release_view(
    release_id: str,
    request: QueryRequest,
    prepared: Prepared,
    result: ReleaseResult,
    contributors: NoisyCount,
    at: datetime,
) -> dict[str, Any]:
    """The release as answered, stored and published (everything in it is DP output)."""
    return {
        "release_id": release_id,
        "status": "released",
        "department": request.department,
        "purpose": request.purpose,
        "dataset": request.dataset,
        "query": query_json(request),
        "created_at": at.isoformat(),
        "epsilon_spent": prepared.query.epsilon,
        "epsilon_statistics": prepared.statistics_epsilon,
        "epsilon_size_check": prepared.size_check_epsilon,
        "mechanism": result.mechanism,
        "confidence": CONFIDENCE,
        "records_per_citizen": prepared.query.records_per_citizen,
        "contributors": _plain(contributors),
        "group_by": [d.name for d in prepared.query.group_by],
        "statistics": [s.label for s in prepared.query.statistics],
        "rows": [_row_view(row) for row in result.rows],
        "methods": dict(result.methods),
        "epsilon_per_statistic": dict(result.epsilon_per_statistic),
        "noise_scale_per_statistic": dict(result.noise_scale_per_statistic),
        "privacy_unit": result.privacy_unit,
    }


def _row_view(row: GroupRow) -> dict[str, Any]:
    """One group: its key, and each statistic's value with its interval (a histogram: one entry
    per bin)."""
    values: dict[str, Any] = {label: _plain(v) for label, v in row.values.items()}
    for label, bins in row.histograms.items():
        values[label] = [
            {
                "bin": b.label,
                "lower_edge": b.lower_edge,
                "upper_edge": b.upper_edge,
                **_plain(b.count),
            }
            for b in bins
        ]
    return {"group": dict(row.key), "values": values}
