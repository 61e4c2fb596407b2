"""Differentially private queries on a benchmark city (in process, no HTTP).

A city of ``N`` bulk citizens with 10 energy readings each (``vault.demo_bulk``: real encrypted
chunks, real signed consents and grants; most accept the energy request) is seeded once into a
SQLite vault under ``bench/.cache/`` (reused by later runs: seeding 100,000 takes minutes). The
query is the issue's example: count, sum, mean, median and a histogram of kWh per district.

* **baseline**: OpenDP run directly on the same plaintext records (everyone's, unbounded), as a
  Parquet scan, through the same release engine; warm (its measurement resolved) and cold. The
  citizens are numbered in the file, as the service numbers them before OpenDP sees them.
* **warm**: the whole pipeline (consent gate, ledger, decrypt, bound, release, settle) with the
  resolved measurement cached; target within 2x of the warm baseline.
* **cold**: a fresh aggregation runtime (no cache of any kind in the process); target 5 s.
* **cold, Dask**: the same on a ``LocalCluster`` of 2 worker processes (started before the clock,
  as a running service's would be); target: faster than the cold in-process query.

The ledger is reset before each timed query (a new month, as far as budgets go): the citizens'
budgets allow a few releases a month and the runs must all see the same population.
"""

from __future__ import annotations

import gc
import os
import shutil
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from bench.core import Context, Metric, Target, benchmark

CACHE = Path(__file__).resolve().parent / ".cache"
#: The cities' readings end here, so that a city seeded on one day and its plaintext copy made on
#: another hold the same records.
END = datetime(2026, 11, 1, tzinfo=UTC)
QUERY: dict[str, Any] = {
    "department": "energy",
    "purpose": "energy-planning",
    "dataset": "energy.consumption",
    "select": [
        {"stat": "count"},
        {"stat": "sum", "field": "kwh"},
        {"stat": "mean", "field": "kwh"},
        {"stat": "quantile", "field": "kwh", "q": 0.5},
        {"stat": "histogram", "field": "kwh", "edges": [0, 1, 2, 5, 10, 50]},
    ],
    "group_by": ["district"],
    "epsilon": 0.5,
}


def _city(ctx: Context, citizens: int) -> Path:
    """The data dir of a seeded city of ``citizens`` (seeded now if not cached)."""
    from server.migrate import upgrade_to_head
    from vault.demo_bulk import seed_bulk_city
    from vault.demo_city import seed_departments
    from vault.runtime import VaultRuntime
    from vault.settings import Settings

    home = CACHE / f"city-{citizens}-{END.date().isoformat()}"
    if (home / "seeded").exists():
        return home
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    settings = Settings(data_dir=home, kdf_profile="min", demo_citizens=0)
    upgrade_to_head(settings.resolved_database_url)
    rt = VaultRuntime.build(settings)
    try:
        seed_departments(rt)
        started = time.perf_counter()
        last = [0.0]

        def progress(done: int, total: int) -> None:
            if time.perf_counter() - last[0] > 15:
                last[0] = time.perf_counter()
                ctx.log(f"  seeding {done:,}/{total:,} citizens")

        report = seed_bulk_city(rt, citizens, 10, progress=progress, end=END)
        ctx.log(f"  seeded {report.citizens:,} citizens in {time.perf_counter() - started:.0f} s")
    finally:
        rt.engine.dispose()
    (home / "seeded").write_text("ok\n")
    return home


def _plaintext(citizens: int, path: Path) -> None:
    """The same records in clear, with each citizen's district, as one Parquet file."""
    from vault.demo_city import generate_readings

    energy = generate_readings(citizens, 10, "energy.consumption", end=END)
    profile = generate_readings(citizens, 1, "profile", end=END).select("citizen", "district")
    # Citizens as the generator numbers them: the service hands OpenDP numbers too
    # (dp_release.numbered_citizens), and numbers are the cheaper form for the baseline as well.
    energy.join(profile, on="citizen").write_parquet(path)


class _PeakMemory:
    """Peak resident memory of this process and its children, sampled every 50 ms."""

    def __init__(self) -> None:
        import psutil

        self._proc = psutil.Process()
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> int:
        total = self._proc.memory_info().rss
        for child in self._proc.children(recursive=True):
            try:
                total += child.memory_info().rss
            except Exception:
                continue
        return int(total)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._sample())
            self._stop.wait(0.05)

    def __enter__(self) -> _PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def _reset_ledger(vault: Any) -> None:
    from sqlalchemy import text

    with vault.unit_of_work() as session:
        for table in (
            "release_contributions",
            "consent_budgets",
            "dp_releases",
            "department_budgets",
        ):
            session.execute(text(f"DELETE FROM {table}"))


def _runtime(home: Path, executor: str) -> Any:
    from aggregation.runtime import AggregationRuntime
    from vault.runtime import VaultRuntime
    from vault.settings import Settings

    settings = Settings(
        data_dir=home,
        kdf_profile="min",
        demo_citizens=0,
        extra={
            "CIVIC_AGGREGATION_EXECUTOR": executor,
            "CIVIC_AGGREGATION_WORKERS": "2",
            "CIVIC_AGGREGATION_DEPARTMENT_EPSILON": "1000",
        },
    )
    return AggregationRuntime.build(VaultRuntime.build(settings))


def _timed_query(agg: Any) -> tuple[float, dict[str, Any], dict[str, float]]:
    from aggregation.query_spec import QueryRequest
    from vault.principal import AGGREGATION_AUDIENCE, Principal

    analyst = Principal(
        kind="analyst",
        token_digest="bench",
        scopes=frozenset({"aggregate:query"}),
        audience=AGGREGATION_AUDIENCE,
        client_id="bench",
        department_id="energy",
    )
    _reset_ledger(agg.vault)
    gc.collect()
    started = time.perf_counter()
    view = agg.queries.run(analyst, QueryRequest.model_validate(QUERY))
    return time.perf_counter() - started, view, dict(agg.queries.last_stages)


def _baseline(path: Path, cached: bool) -> float:
    from aggregation.dp_measurements import MeasurementCache
    from aggregation.dp_plan import ReleasePlan, StatisticSpec
    from aggregation.dp_release import release

    plan = ReleasePlan(
        statistics=(
            StatisticSpec("count"),
            StatisticSpec("sum", "kwh"),
            StatisticSpec("mean", "kwh"),
            StatisticSpec("quantile", "kwh", q=0.5),
            StatisticSpec("histogram", "kwh", edges=(0, 1, 2, 5, 10, 50)),
        ),
        group_by=("district",),
        group_domains={
            "district": (
                "Old Town",
                "Riverside",
                "Harbour",
                "North Hill",
                "Westgate",
                "Eastfield",
                "University",
                "Greenbelt",
            )
        },
        bounds={"kwh": (0.0, 50.0)},
        max_records_per_citizen=31,
        max_groups_per_citizen=1,
        epsilon=0.45,
    )
    cache = _BASELINE_CACHE if cached else MeasurementCache(0)
    if cached:
        release(pl.scan_parquet(path).select("citizen", "district", "kwh"), plan, cache)
    gc.collect()
    started = time.perf_counter()
    release(pl.scan_parquet(path).select("citizen", "district", "kwh"), plan, cache)
    return time.perf_counter() - started


_BASELINE_CACHE: Any = None


@benchmark()
def dp_query(ctx: Context) -> list[Metric]:
    """DP query (count, sum, mean, median, histogram of kWh per district) on 100,000 citizens x 10
    readings (quick: 5,000): warm and cold, in-process and on Dask (2 workers), against OpenDP on
    the same plaintext as a Parquet scan."""
    global _BASELINE_CACHE
    from aggregation.dp_measurements import MeasurementCache

    _BASELINE_CACHE = MeasurementCache(8)
    citizens = ctx.pick(full=100_000, quick=5_000, smoke=500)
    home = _city(ctx, citizens)
    plain = ctx.workdir("dp-query") / "plain.parquet"
    _plaintext(citizens, plain)

    base_cold = _baseline(plain, cached=False)
    base_warm = min(_baseline(plain, cached=True) for _ in range(3))
    ctx.log(f"  baseline OpenDP on plaintext: cold {base_cold:.2f} s, warm {base_warm:.3f} s")

    agg = _runtime(home, "threads")
    try:
        cold, view, cold_stages = _timed_query(agg)
        warm_runs = [_timed_query(agg) for _ in range(2)]
    finally:
        agg.close()
        agg.vault.engine.dispose()
    warm, _, warm_stages = min(warm_runs, key=lambda r: r[0])
    ctx.log(f"  cold {cold:.2f} s {_stages(cold_stages)}")
    ctx.log(f"  warm {warm:.2f} s {_stages(warm_stages)}")

    dask = _runtime(home, "dask")
    try:
        dask.runner._connect()  # the cluster is up before the clock starts, as in a service
        with _PeakMemory() as memory:
            dask_cold, _, dask_stages = _timed_query(dask)
        dask_warm, _, dask_warm_stages = _timed_query(dask)
    finally:
        dask.close()
        dask.vault.engine.dispose()
    ctx.log(
        f"  cold on Dask {dask_cold:.2f} s {_stages(dask_stages)}, peak {memory.peak / 2**20:.0f} MiB"
    )
    ctx.log(f"  warm on Dask {dask_warm:.2f} s {_stages(dask_warm_stages)}")

    ctx.params.update(
        {
            "citizens": citizens,
            "records_per_citizen": 10,
            "contributors_dp": view["contributors"]["value"],
            "epsilon": QUERY["epsilon"],
            "cold_stages_s": {k: round(v, 3) for k, v in cold_stages.items()},
            "warm_stages_s": {k: round(v, 3) for k, v in warm_stages.items()},
            "dask_stages_s": {k: round(v, 3) for k, v in dask_stages.items()},
            "dask_warm_stages_s": {k: round(v, 3) for k, v in dask_warm_stages.items()},
            "dask_peak_rss_mib": round(memory.peak / 2**20),
            "cpus": os.cpu_count(),
        }
    )
    return [
        Metric("query_warm", warm, "s", baseline=base_warm, target=Target("ratio", "<=", 2)),
        Metric("query_cold", cold, "s", baseline=base_cold, target=Target("value", "<=", 5)),
        Metric(
            "query_cold_dask",
            dask_cold,
            "s",
            baseline=cold,
            target=Target("ratio", "<", 1),
            note="baseline: the cold in-process query",
        ),
        Metric(
            "query_warm_dask",
            dask_warm,
            "s",
            baseline=warm,
            note="the second query on the same cluster; baseline: the warm in-process query",
        ),
    ]


@benchmark()
def dp_query_1m_dask(ctx: Context) -> list[Metric]:
    """The same query on 1,000,000 citizens x 10 readings (quick: 5,000): cold and warm through
    Dask (2 worker processes), then cold and warm in process; time and peak memory (this process
    and its workers), against OpenDP run cold on the same records in clear (time and peak
    memory)."""
    citizens = ctx.pick(full=1_000_000, quick=5_000, smoke=500)
    home = _city(ctx, citizens)
    plain = ctx.workdir("dp-query-1m") / "plain.parquet"
    _plaintext(citizens, plain)
    with _PeakMemory() as base_memory:
        base_s = _baseline(plain, cached=False)
    dask = _runtime(home, "dask")
    try:
        dask.runner._connect()
        with _PeakMemory() as memory:
            seconds, view, stages = _timed_query(dask)
        ctx.log(f"  {citizens:,} citizens on Dask: {seconds:.1f} s {_stages(stages)}")
        warm_s, _, warm_stages = _timed_query(dask)
        ctx.log(f"  again on the same cluster (warm): {warm_s:.1f} s {_stages(warm_stages)}")
    finally:
        dask.close()
        dask.vault.engine.dispose()
    local = _runtime(home, "threads")
    try:
        with _PeakMemory() as local_memory:
            local_s, _, local_stages = _timed_query(local)
        ctx.log(
            f"  {citizens:,} citizens in process (cold): {local_s:.1f} s {_stages(local_stages)}"
        )
        local_warm_s, _, local_warm_stages = _timed_query(local)
        ctx.log(f"  again in process (warm): {local_warm_s:.1f} s {_stages(local_warm_stages)}")
    finally:
        local.close()
        local.vault.engine.dispose()
    ctx.params.update(
        {
            "citizens": citizens,
            "stages_s": {k: round(v, 3) for k, v in stages.items()},
            "warm_stages_s": {k: round(v, 3) for k, v in warm_stages.items()},
            "in_process_stages_s": {k: round(v, 3) for k, v in local_stages.items()},
            "in_process_warm_stages_s": {k: round(v, 3) for k, v in local_warm_stages.items()},
            "peak_rss_mib": round(memory.peak / 2**20),
            "contributors_dp": view["contributors"]["value"],
        }
    )
    return [
        Metric(
            "query_cold_dask",
            seconds,
            "s",
            baseline=base_s,
            note=f"{citizens:,} citizens, 2 workers; baseline: cold OpenDP on the plaintext",
        ),
        Metric(
            "peak_memory",
            memory.peak / 2**20,
            "MiB",
            baseline=base_memory.peak / 2**20,
            note="this process and its workers; baseline: the plaintext OpenDP run's peak",
        ),
        Metric(
            "query_warm_dask",
            warm_s,
            "s",
            baseline=base_s,
            note="the second query on the same cluster; baseline: cold OpenDP on the plaintext",
        ),
        Metric(
            "query_cold_in_process",
            local_s,
            "s",
            baseline=base_s,
            note="threads in this process; baseline: cold OpenDP on the plaintext",
        ),
        Metric(
            "query_warm_in_process",
            local_warm_s,
            "s",
            baseline=base_s,
            note="the second query in process; baseline: cold OpenDP on the plaintext",
        ),
        Metric(
            "peak_memory_in_process",
            local_memory.peak / 2**20,
            "MiB",
            baseline=base_memory.peak / 2**20,
            note="baseline: the plaintext OpenDP run's peak",
        ),
    ]


def _stages(stages: dict[str, float]) -> str:
    return "(" + ", ".join(f"{k} {v:.2f}" for k, v in stages.items()) + ")"
