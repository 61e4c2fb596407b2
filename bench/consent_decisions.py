"""Consent decisions: how fast the consent gate of a query judges a city's stored signed consents.

A city of ``N`` bulk citizens (``vault.demo_bulk.seed_bulk_city``: real accounts, real terms signed
with each citizen's Ed25519 key, real signed ``given`` events, as ``ConsentRegistry.give_terms``
writes them), every one of whom accepts the shipped ``energy-monthly-totals`` request (a fifth of
them with half its epsilon), is seeded once into a SQLite vault under ``bench/.cache/`` (reused by
later runs; seeding 100,000 takes minutes) or, in smoke mode, under the run's temporary folder.

The query is the DP benchmark's (energy, ``energy-planning``, count/sum/mean/median/histogram of
``kwh`` by district, epsilon 0.5), which every consent allows; a run that admits anything but the
``N`` consents is an ERROR. One decision is one stored consent judged for the query. Measured, each
as decisions per second (consents judged / seconds), in two rounds that alternate baselines and gate
(each round: the Ed25519 floor, the plain filter, one cold run on a fresh runtime, two warm runs on
it; the worker judge in the first round only); the best run of each is reported, every run is in
the JSON file:

* **cold**: ``aggregation.consent_gate.admit`` (how the in-process aggregation service calls the
  gate: candidate rows, the citizens' keys and the signed histories read in a few queries, every
  consent parsed and verified by ``verify_stored_consent``, then ``consent.decision.decide``, one
  consent per citizen) on a fresh ``VaultRuntime``, so its ``ConsentRegistry`` has memoised nothing:
  two Ed25519 verifications per consent (the terms and their ``given`` event).
  **Baseline: the cryptographic floor**, libsodium's Ed25519 verification alone
  (``crypto_sign_open``) of the same two signatures over the same stored bytes, nothing else. The
  ratio is the share of the floor the gate reaches; 1 would mean everything but the signatures is
  free.
* **warm**: the same call again on the same runtime (the registry's memos of parsed terms, events
  and verified signatures in place, as in a service that answered a query before; status, validity
  and the decision are still worked out afresh, and the rows are still read from the database).
  **Baseline: the same predicate without signatures**, the cheapest honest way: the same terms as a
  plain table (one row per consent, lists for purposes, recipients, covered fields, statistics and
  dimensions) in a Parquet file, scanned and filtered by polars (status, validity window,
  recipient, purpose, stream type and fields, operation, statistics, grouping, epsilon), one consent
  per citizen. It must admit the same consents.
* **worker judge**: ``aggregation.consent_gate.judge`` on the evidence read once (how each Dask
  worker judges its shard: pure, no database, no memos, so always cold), on at most 20,000
  consents of it (it judges each consent alone, so the rate does not depend on how many; all
  100,000 would add a minute and a half to a full run). Baseline: the cryptographic floor.
"""

from __future__ import annotations

import functools
import gc
import json
import shutil
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import nacl.bindings
import polars as pl

from bench.core import BenchmarkInvalid, Context, Metric, benchmark, best_and_median
from bench.dp_query import QUERY

CACHE = Path(__file__).resolve().parent / ".cache"
#: The worker judge's rate is measured on at most this many consents (see below).
JUDGE_SAMPLE = 20_000
#: Cities this large are cached under ``bench/.cache`` (smaller ones take under a few seconds).
CACHE_FROM = 5_000


# --------------------------------------------------------------------------------------------------
# The city
# --------------------------------------------------------------------------------------------------


def _settings(home: Path) -> Any:
    from vault.settings import Settings

    return Settings(data_dir=home, kdf_profile="min", demo_citizens=0)


def _candidates(home: Path, at: datetime) -> int:
    from aggregation import repository
    from vault.runtime import VaultRuntime

    rt = VaultRuntime.build(_settings(home))
    try:
        with rt.reading() as session:
            return len(repository.candidate_consents(session, QUERY["department"], at))
    finally:
        rt.engine.dispose()


def _city(ctx: Context, citizens: int) -> Path:
    """The data dir of a city of ``citizens`` who all gave the energy consent (seeded now if not
    cached, or if the cached consents are no longer all in force: they run for a year)."""
    from server.migrate import upgrade_to_head
    from vault.demo_bulk import seed_bulk_city
    from vault.runtime import VaultRuntime

    cached = citizens >= CACHE_FROM
    home = CACHE / f"consents-{citizens}" if cached else ctx.workdir("consent-city")
    if (home / "seeded").exists():
        upgrade_to_head(_settings(home).resolved_database_url)
        if _candidates(home, datetime.now(UTC) + timedelta(hours=1)) == citizens:
            return home
        ctx.log("  the cached city's consents have run out: seeding it again")
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    settings = _settings(home)
    upgrade_to_head(settings.resolved_database_url)
    rt = VaultRuntime.build(settings)
    try:
        started = time.perf_counter()
        last = [started]

        def progress(done: int, total: int) -> None:
            if time.perf_counter() - last[0] > 15:
                last[0] = time.perf_counter()
                ctx.log(f"  seeding {done:,}/{total:,} citizens")

        seed_bulk_city(
            rt,
            citizens,
            1,
            accept_share=1.0,
            progress=progress,
            workers=2 if citizens >= CACHE_FROM else 0,
        )
        ctx.log(f"  seeded {citizens:,} citizens in {time.perf_counter() - started:.0f} s")
    finally:
        rt.engine.dispose()
    (home / "seeded").write_text("ok\n")
    return home


# --------------------------------------------------------------------------------------------------
# Baselines: the Ed25519 floor and the plain polars filter
# --------------------------------------------------------------------------------------------------


def _signed_messages(evidence: Sequence[Any]) -> list[tuple[bytes, bytes]]:
    """(signature + message, public key) pairs as ``crypto_sign_open`` takes them, for every
    signature the gate verifies: each candidate consent's terms and each of its signed events,
    as stored (the stored terms and events are the exact signed bytes)."""
    out: list[tuple[bytes, bytes]] = []
    for ev in evidence:
        out.append((ev.signature + ev.terms_json.encode("utf-8"), ev.signing_key))
        for text, signature in ev.events:
            if signature is not None:
                out.append((signature + text.encode("utf-8"), ev.signing_key))
    return out


def _verify_all(signed: list[tuple[bytes, bytes]]) -> None:
    """Ed25519 verification of each pair (raises ``BadSignatureError`` on any that fails)."""
    for signed_message, public in signed:
        nacl.bindings.crypto_sign_open(signed_message, public)


def _plain_table(home: Path, path: Path) -> None:
    """The department's stored consents as a plain table (no signature, no history) in Parquet:
    what a store that trusts its rows would keep. Made once, before the clock."""
    from sqlalchemy import select

    from vault.consent_models import ConsentRecord
    from vault.runtime import VaultRuntime

    table = ConsentRecord.__table__  # type: ignore[attr-defined]
    rt = VaultRuntime.build(_settings(home))
    try:
        with rt.reading() as session:
            rows = session.execute(
                select(table.c.id, table.c.citizen_id, table.c.status, table.c.terms_json).where(
                    table.c.department_id == QUERY["department"]
                )
            ).all()
    finally:
        rt.engine.dispose()
    records = []
    for row in rows:
        terms = json.loads(row.terms_json)
        limits = terms.get("dp_limits") or {}
        records.append(
            {
                "consent_id": row.id,
                "citizen_id": row.citizen_id,
                "status": row.status,
                "not_before": datetime.fromisoformat(terms["validity"]["not_before"]),
                "not_after": datetime.fromisoformat(terms["validity"]["not_after"]),
                "recipients": [f"{r['kind']}:{r['id']}" for r in terms["recipients"]],
                "purposes": [p["id"] for p in terms["purposes"]],
                "covered": [
                    f"{c['stream_type']}/{f}" for c in terms["data_categories"] for f in c["fields"]
                ],
                "mode": terms["processing"]["mode"],
                "statistics": terms["statistics"],
                "group_by": terms["group_by"],
                "epsilon_per_period": float(limits.get("epsilon_per_period", 0.0)),
            }
        )
    schema: dict[str, Any] = {
        "consent_id": pl.String,
        "citizen_id": pl.String,
        "status": pl.String,
        "not_before": pl.Datetime("us", "UTC"),
        "not_after": pl.Datetime("us", "UTC"),
        "recipients": pl.List(pl.String),
        "purposes": pl.List(pl.String),
        "covered": pl.List(pl.String),
        "mode": pl.String,
        "statistics": pl.List(pl.String),
        "group_by": pl.List(pl.String),
        "epsilon_per_period": pl.Float64,
    }
    pl.DataFrame(records, schema=schema).write_parquet(path)


def _plain_admit(path: Path, request: Any) -> pl.DataFrame:
    """The decision's predicate for ``request`` as one polars filter, one consent per citizen
    (the most generous), as the gate chooses."""
    everything = pl.lit(True)
    for name in request.fields:
        everything = everything & pl.col("covered").list.contains(f"{request.stream_type}/{name}")
    for stat in request.statistics:
        everything = everything & pl.col("statistics").list.contains(stat)
    for dim in request.group_by:
        everything = everything & pl.col("group_by").list.contains(dim)
    at = request.at.astimezone(UTC)
    return (
        pl.scan_parquet(path)
        .filter(
            pl.col("status").is_in(["given", "renewed"]),
            pl.col("not_before") <= at,
            pl.col("not_after") > at,
            pl.col("recipients").list.contains(f"{request.recipient_kind}:{request.recipient_id}"),
            pl.col("purposes").list.contains(request.purpose),
            pl.col("mode") == request.operation,
            everything,
            pl.col("epsilon_per_period") >= request.epsilon,
        )
        .sort("citizen_id", "epsilon_per_period", "consent_id")
        .unique("citizen_id", keep="last", maintain_order=True)
        .select("consent_id", "citizen_id")
        .collect()
    )


# --------------------------------------------------------------------------------------------------
# The benchmark
# --------------------------------------------------------------------------------------------------


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    gc.collect()
    started = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - started


@benchmark()
def consent_decisions(ctx: Context) -> list[Metric]:
    """Consent gate decisions per second for 100,000 stored signed consents (quick: 10,000):
    cold (fresh registry, every signature verified) against Ed25519 verification alone, warm
    (memos in place) against a polars filter of the same terms in a plaintext Parquet table, and
    a Dask worker's pure judge against Ed25519 alone."""
    from aggregation import consent_gate
    from aggregation.datasets import datasets
    from aggregation.query_spec import QueryRequest, validate_query
    from vault.runtime import VaultRuntime

    citizens = ctx.pick(full=100_000, quick=5_000, smoke=200)
    rounds = 2  # each: Ed25519 floor, plain filter, cold gate, warm gate x2 (judge: first only)
    warm_runs = 2

    setup_started = time.perf_counter()
    home = _city(ctx, citizens)
    at = datetime.now(UTC)  # after the seeding: the consents start when they are given
    settings = _settings(home)

    def fresh_runtime() -> Any:
        return VaultRuntime.build(settings)

    rt = fresh_runtime()
    try:
        query = validate_query(
            QueryRequest.model_validate(QUERY), {d.name: d for d in datasets(rt.catalogue)}
        )
        with rt.reading() as session:
            evidence = consent_gate.gather_evidence(session, rt.consents, QUERY["department"], at)
    finally:
        rt.engine.dispose()
    request = consent_gate.access_request(query, at)
    signed = _signed_messages(evidence)
    plain = ctx.workdir("consent-decisions") / "terms.parquet"
    _plain_table(home, plain)
    setup_s = time.perf_counter() - setup_started

    def expect(label: str, admitted: set[str], out_of: int = citizens) -> None:
        if len(admitted) != out_of:
            raise BenchmarkInvalid(
                f"{label} admitted {len(admitted)} consents; every one of the {out_of} "
                "citizens' consents allows the query"
            )

    def admit(rt: Any) -> set[str]:
        with rt.reading() as session:
            return {a.consent_id for a in consent_gate.admit(session, rt.consents, query, at)}

    floor_s: list[float] = []
    plain_s: list[float] = []
    cold_s: list[float] = []
    warm_s: list[float] = []
    judge_s: list[float] = []
    plain_ids: set[str] = set()

    def gate(label: str, fn: Callable[[], set[str]], into: list[float]) -> None:
        ids, seconds = _timed(fn)
        expect(label, ids)
        if ids != plain_ids:
            raise BenchmarkInvalid(f"{label} and the plain filter admitted different consents")
        into.append(seconds)

    # The worker's judge is pure and judges each consent alone (no database, no memo, nothing
    # shared), so its rate is measured on a slice of the evidence: a whole 100,000 would add
    # minutes to the run and nothing to the figure.
    sample = evidence[:JUDGE_SAMPLE]

    def judge() -> set[str]:
        return {a.consent_id for a in consent_gate.judge(sample, request)}

    # Rounds alternate baselines and gate, so that a disturbance of the machine hits both.
    for round_no in range(rounds):
        floor_s.append(_timed(lambda: _verify_all(signed))[1])  # raises if one does not verify
        frame, seconds = _timed(lambda: _plain_admit(plain, request))
        plain_ids = set(frame.get_column("consent_id").to_list())
        expect("the plain filter", plain_ids)
        plain_s.append(seconds)
        # Cold: a fresh runtime, whose registry has memoised nothing; warm: the same, again.
        rt = fresh_runtime()
        try:
            gate("the cold gate", functools.partial(admit, rt), cold_s)
            for _ in range(warm_runs):
                gate("the warm gate", functools.partial(admit, rt), warm_s)
        finally:
            rt.engine.dispose()
        rt = None
        if round_no == 0:
            judged, seconds = _timed(judge)
            expect("the worker judge", judged, len(sample))
            if not judged <= plain_ids:
                raise BenchmarkInvalid("the worker judge admitted consents the filter did not")
            judge_s.append(seconds)
        ctx.log(
            f"  round {round_no + 1}: cold {cold_s[-1]:.3f} s, warm {min(warm_s[-warm_runs:]):.3f}"
            f" s; Ed25519 alone {floor_s[-1]:.3f} s, plain filter {plain_s[-1]:.3f} s"
        )

    cold, cold_median = best_and_median(cold_s)
    warm, warm_median = best_and_median(warm_s)
    judge_best, _ = best_and_median(judge_s)
    floor, _ = best_and_median(floor_s)
    plain_best, _ = best_and_median(plain_s)
    ctx.log(
        f"  {citizens:,} consents: cold {cold:.3f} s, warm {warm:.3f} s, judge "
        f"{judge_best:.3f} s ({len(sample):,}); "
        f"Ed25519 alone {floor:.3f} s, plain filter {plain_best:.3f} s"
    )

    def ms(values: list[float]) -> list[float]:
        return [round(v * 1000, 1) for v in values]

    ctx.params.update(
        {
            "consents": citizens,
            "signatures_per_consent": round(len(signed) / citizens, 2),
            "query": f"{QUERY['department']}/{QUERY['purpose']}, epsilon {QUERY['epsilon']}",
            "selection": "best of the runs (cold: each on a fresh runtime)",
            "cold_ms_runs": ms(cold_s),
            "warm_ms_runs": ms(warm_s),
            "judge_ms_runs": ms(judge_s),
            "judge_consents": len(sample),
            "ed25519_ms_runs": ms(floor_s),
            "plain_filter_ms_runs": ms(plain_s),
            "cold_median_ms": round(cold_median * 1000, 1),
            "warm_median_ms": round(warm_median * 1000, 1),
            "plain_parquet_bytes": plain.stat().st_size,
            "setup_s": round(setup_s, 1),
        }
    )
    return [
        Metric(
            "cold decisions/s",
            citizens / cold,
            "decisions/s",
            baseline=citizens / floor,
            note="fresh registry; baseline: Ed25519 verification alone (2 per consent)",
        ),
        Metric(
            "warm decisions/s",
            citizens / warm,
            "decisions/s",
            baseline=citizens / plain_best,
            note="memos in place; baseline: polars filter of the plaintext terms (Parquet)",
        ),
        Metric(
            "worker judge decisions/s",
            len(sample) / judge_best,
            "decisions/s",
            baseline=citizens / floor,
            note="Dask worker's judge (no memo); baseline: Ed25519 verification alone",
        ),
    ]
