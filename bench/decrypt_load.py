"""Reading a whole stream back, decrypted, in process (no HTTP).

A fresh SQLite vault holds one citizen's energy stream written as equal chunks through the real
chunk store; the benchmark times ``OwnRecords.load_all`` (select the chunks, open the stream key,
decrypt every chunk, decode its Parquet, concatenate) against ``pl.read_parquet`` of the same records
stored once as one plaintext Parquet file (zstd). Both are warmed up once, then timed alternately
(baseline, vault, baseline, vault...) ``runs`` times; the best run of each is reported and the
medians are kept in the JSON file. The frame read back must equal the frame written.
"""

from __future__ import annotations

import gc
import time
import uuid
from collections.abc import Callable

import polars as pl

from bench.core import BenchmarkInvalid, Context, Metric, Target, benchmark, best_and_median

STREAM_TYPE = "energy.consumption"


READING_INTERVAL_MINUTES = 15


def readings(chunks: int, per_chunk: int) -> pl.DataFrame:
    """``chunks * per_chunk`` energy readings with the catalogue's schema (ts, kwh), in time order.

    One smart meter read every 15 minutes (1,000,000 readings span about 28 years), so every
    timestamp is distinct: a stream holds one household's readings, and repeating timestamps would
    flatter the plaintext baseline (Parquet would dictionary-encode them). The kWh values come from
    the demo city's model (``vault.demo_city.generate_readings``), or are random without it.
    """
    n = chunks * per_chunk
    try:
        from vault.demo_city import generate_readings

        kwh = generate_readings(chunks, per_chunk).get_column("kwh")
    except ImportError:  # pragma: no cover - the demo city is part of the vault today
        import numpy as np

        kwh = pl.Series("kwh", np.random.default_rng(7).uniform(0.0, 50.0, n).round(3))
    end = pl.datetime(2026, 1, 1, time_zone="UTC")
    step = pl.duration(minutes=READING_INTERVAL_MINUTES)
    return pl.select(
        ts=(end - step * (n - pl.int_range(n))).cast(pl.Datetime("us", "UTC")),
        kwh=kwh.cast(pl.Float64),
    )


def _timed(fn: Callable[[], pl.DataFrame]) -> tuple[pl.DataFrame, float]:
    gc.collect()
    started = time.perf_counter()
    frame = fn()
    return frame, time.perf_counter() - started


@benchmark()
def decrypt_load_1m(ctx: Context) -> list[Metric]:
    """Decrypt and load a whole stream (1,000,000 records in 100 chunks; quick: 200,000 in 20)
    with OwnRecords.load_all; baseline: pl.read_parquet of the same records as one plaintext
    zstd Parquet file."""
    from server.migrate import upgrade_to_head
    from vault.crypto.passphrase_wrap import KdfCost
    from vault.runtime import VaultRuntime
    from vault.settings import Settings

    chunks = ctx.pick(full=100, quick=20, smoke=4)
    per_chunk = ctx.pick(full=10_000, quick=10_000, smoke=5_000)
    runs = ctx.pick(full=5, quick=5, smoke=2)
    budget_s = ctx.pick(full=240.0, quick=45.0, smoke=10.0)  # for the timed runs
    total = chunks * per_chunk

    workdir = ctx.workdir("decrypt-load")
    settings = Settings(data_dir=workdir, kdf_profile="min", demo_citizens=0)
    upgrade_to_head(settings.resolved_database_url)
    rt = VaultRuntime.build(settings)
    try:
        expected = readings(chunks, per_chunk)
        handle = f"bench-{uuid.uuid4().hex[:12]}"
        passphrase = f"bench passphrase {uuid.uuid4().hex}"
        with rt.unit_of_work() as session:
            rt.accounts.register(session, handle, passphrase, cost=KdfCost.profile("min"))
        with rt.unit_of_work() as session:
            citizen, root = rt.accounts.unlock(session, handle, passphrase, "127.0.0.1")
            stream_id = rt.streams.create(session, citizen.id, STREAM_TYPE).id
        citizen_id = citizen.id

        ctx.log(f"  writing {total:,} records as {chunks} encrypted chunks")
        started = time.perf_counter()
        for i in range(chunks):
            with rt.unit_of_work() as session:
                stream = rt.streams.get_owned(session, citizen_id, stream_id, for_update=True)
                rt.chunks.write(session, stream, expected.slice(i * per_chunk, per_chunk))
        write_s = time.perf_counter() - started

        plain = workdir / "plain.parquet"
        expected.write_parquet(plain, compression="zstd")

        def load_vault() -> pl.DataFrame:
            with rt.unit_of_work() as session:
                stream = rt.streams.get_owned(session, citizen_id, stream_id)
                return rt.records.load_all(session, stream, root)

        def load_plain() -> pl.DataFrame:
            return pl.read_parquet(plain)

        # Warm-up, and the check that both read back exactly what was written.
        for label, fn in (("baseline", load_plain), ("vault", load_vault)):
            frame, _ = _timed(fn)
            if not frame.equals(expected):
                raise BenchmarkInvalid(
                    f"{label} read back {frame.height} rows that differ from the "
                    f"{expected.height} written (schema {frame.schema} vs {expected.schema})"
                )

        vault_s: list[float] = []
        plain_s: list[float] = []
        deadline = time.perf_counter() + budget_s
        for _ in range(runs):
            plain_s.append(_timed(load_plain)[1])
            vault_s.append(_timed(load_vault)[1])
            if time.perf_counter() > deadline:
                break
        ctx.log(
            f"  vault {min(vault_s) * 1000:.1f} ms, baseline {min(plain_s) * 1000:.1f} ms "
            f"(best of {len(vault_s)})"
        )
    finally:
        rt.engine.dispose()

    vault_best, vault_median = best_and_median(vault_s)
    plain_best, plain_median = best_and_median(plain_s)
    ctx.params.update(
        {
            "records": total,
            "chunks": chunks,
            "records_per_chunk": per_chunk,
            "timed_runs": len(vault_s),
            "selection": "best of the timed runs (after one warm-up each), alternating",
            "vault_ms_runs": [round(s * 1000, 2) for s in vault_s],
            "baseline_ms_runs": [round(s * 1000, 2) for s in plain_s],
            "vault_median_ms": round(vault_median * 1000, 2),
            "baseline_median_ms": round(plain_median * 1000, 2),
            "plain_parquet_bytes": plain.stat().st_size,
            "write_s": round(write_s, 3),
            "write_records_per_s": round(total / write_s),
        }
    )
    return [
        Metric(
            "load_all",
            vault_best * 1000,
            "ms",
            baseline=plain_best * 1000,
            target=Target("ratio", "<=", 3),
            note=f"{total:,} records in {chunks} chunks",
        ),
    ]
