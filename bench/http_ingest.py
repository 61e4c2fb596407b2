"""HTTP ingest benchmarks: the real server against a bare FastAPI endpoint, both driven by wrk.

Both servers run in subprocesses on loopback ports under the same uvicorn settings and stay up for
the whole run (shared by every HTTP benchmark). Each benchmark registers its own citizen and stream
on the vault server, checks once that its request body is accepted (201 with the right count),
warms both servers up, then runs wrk against the baseline and the vault in turn, ``rounds`` times;
for each side the round with the highest requests/s is reported (best-of: on a shared machine the
least disturbed run is the closest to what the code can do), with that round's latencies.

Any answer that is not 201, any socket error, or fewer records stored than wrk saw acknowledged
makes the measurement invalid: the benchmark then fails as an ERROR instead of printing a number.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from bench import wrk
from bench.core import BenchmarkInvalid, Context, Metric, Target, benchmark
from bench.loopback import call_json, request
from bench.server_process import ServerProcess

STREAM_TYPE = "energy.consumption"


# --------------------------------------------------------------------------------------------------
# Servers (shared by all HTTP benchmarks of a run) and setup over HTTP
# --------------------------------------------------------------------------------------------------


def vault_server(ctx: Context) -> ServerProcess:
    env = {
        "CIVIC_DATA_DIR": str(ctx.workdir("vault-server")),
        "CIVIC_KDF_PROFILE": "min",
        "CIVIC_DEMO_CITIZENS": "0",
    }

    def start() -> ServerProcess:
        ctx.log("starting the vault server")
        return ServerProcess("vault", env, ctx.workdir("logs"))

    return ctx.resource("server:vault", start)


def baseline_server(ctx: Context) -> ServerProcess:
    def start() -> ServerProcess:
        ctx.log("starting the baseline server")
        return ServerProcess("baseline", {}, ctx.workdir("logs"))

    return ctx.resource("server:baseline", start)


@dataclass(frozen=True)
class CitizenStream:
    token: str
    stream_id: str

    @property
    def records_path(self) -> str:
        return f"/v1/me/streams/{self.stream_id}/records"


def new_citizen_stream(port: int) -> CitizenStream:
    """Register a citizen, sign in and create an energy stream, over HTTP."""
    handle = f"bench-{uuid.uuid4().hex[:12]}"
    passphrase = f"bench passphrase {uuid.uuid4().hex}"
    credentials = {"handle": handle, "passphrase": passphrase}
    call_json(port, "POST", "/v1/citizens", credentials, expect=201)
    token = call_json(port, "POST", "/v1/session", credentials)["access_token"]
    stream = call_json(
        port, "POST", "/v1/me/streams", {"stream_type": STREAM_TYPE}, token=token, expect=201
    )
    return CitizenStream(token, stream["id"])


def stored_records(port: int, who: CitizenStream) -> int:
    summary = call_json(port, "GET", f"/v1/me/streams/{who.stream_id}", token=who.token)
    return int(summary["record_count"])


def energy_readings(records: int, seed: int = 11) -> pl.DataFrame:
    """``records`` valid energy readings (``ts``, ``kwh``), one a day, from the demo city model."""
    try:
        from vault.demo_city import generate_readings
    except ImportError:  # pragma: no cover - the demo city is part of the vault today
        import numpy as np

        rng = np.random.default_rng(seed)
        start = pl.datetime(2020, 1, 1, time_zone="UTC")
        return pl.DataFrame({"i": np.arange(records)}).select(
            ts=start + pl.duration(days=pl.col("i")),
            kwh=pl.Series(rng.uniform(0.5, 20.0, records).round(3)),
        )
    return generate_readings(1, records, seed=seed).drop("citizen")


def json_body(frame: pl.DataFrame) -> bytes:
    """``frame`` (``ts``, ``kwh``) as a JSON array of objects ``{"ts": "...Z", "kwh": float}``."""
    text = frame.select(pl.col("ts").dt.strftime("%Y-%m-%dT%H:%M:%SZ"), pl.col("kwh"))
    return json.dumps(text.to_dicts(), separators=(",", ":")).encode()


def json_batch(records: int) -> bytes:
    """A JSON array of ``records`` objects ``{"ts": "...Z", "kwh": float}``."""
    return json_body(energy_readings(records))


# --------------------------------------------------------------------------------------------------
# Measuring one side (baseline or vault) with wrk
# --------------------------------------------------------------------------------------------------


@dataclass
class Side:
    label: str
    server: ServerProcess
    path: str
    script: Path
    runs: list[wrk.WrkResult] = field(default_factory=list)
    acknowledged: int = 0  # expected-status answers over every wrk run, warm-ups included

    @property
    def url(self) -> str:
        return self.server.url + self.path

    @property
    def best(self) -> wrk.WrkResult:
        return max(self.runs, key=lambda r: r.requests_per_s)


@dataclass(frozen=True)
class Load:
    threads: int
    connections: int
    seconds: int
    warmup_seconds: int
    rounds: int


def check_wrk_result(label: str, result: wrk.WrkResult, expected: str) -> None:
    """``BenchmarkInvalid`` unless wrk completed requests, all ``expected`` (e.g. "201"), with no
    socket error (the wrk script counts the answers that were not)."""
    if result.requests == 0:
        raise BenchmarkInvalid(f"{label}: wrk completed no request\n{result.output}")
    if result.unexpected_status is None:
        raise BenchmarkInvalid(f"{label}: the wrk script did not report statuses")
    if result.unexpected_status or result.non_2xx_3xx:
        raise BenchmarkInvalid(
            f"{label}: {result.unexpected_status or result.non_2xx_3xx} of "
            f"{result.requests} answers were not {expected} (first: {result.first_unexpected})"
        )
    if result.errors:
        raise BenchmarkInvalid(f"{label}: socket errors {result.socket_errors}")


def drive(ctx: Context, side: Side, load: Load, seconds: int, status: int) -> wrk.WrkResult:
    """One wrk run against ``side``; :class:`BenchmarkInvalid` unless every answer was ``status``
    (and, if the side's script checks it, of the expected length) without a socket error."""
    result = wrk.run(
        side.url, side.script, threads=load.threads, connections=load.connections, seconds=seconds
    )
    check_wrk_result(side.label, result, str(status))
    side.acknowledged += result.expected_status or 0
    ctx.log(
        f"  {side.label}: {result.requests_per_s:,.1f} requests/s, "
        f"p50 {result.latency_ms.get(50, float('nan')):.2f} ms, "
        f"p99 {result.latency_ms.get(99, float('nan')):.2f} ms ({seconds} s)"
    )
    return result


def run_rounds(ctx: Context, sides: list[Side], load: Load, status: int) -> None:
    """Warm every side up, then run ``load.rounds`` rounds, the sides in turn within each round
    (so that a disturbance of the machine hits both rather than one)."""
    if load.warmup_seconds:
        ctx.log(f"  warm-up, {load.warmup_seconds} s each")
        for side in sides:
            drive(ctx, side, load, load.warmup_seconds, status)
    for round_no in range(load.rounds):
        ctx.log(f"  round {round_no + 1} of {load.rounds}")
        for side in sides:
            side.runs.append(drive(ctx, side, load, load.seconds, status))


def compare_http(
    ctx: Context,
    *,
    name: str,
    records_per_request: int,
    load: Load,
) -> tuple[Side, Side]:
    """Set both servers up for ``name``, check the body once, warm up, then run the rounds."""
    wrk.wrk_executable()  # fail early, with the install hint, before starting anything
    body = json_batch(records_per_request)
    vault = vault_server(ctx)
    baseline = baseline_server(ctx)
    who = new_citizen_stream(vault.port)
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {who.token}"}
    scripts = ctx.workdir(f"wrk-{name}")
    sides = [
        Side(
            label,
            server,
            who.records_path,
            wrk.write_script(
                scripts / f"{label}.lua",
                method="POST",
                body=body,
                headers=headers,
                expected_status=201,
            ),
        )
        for label, server in (("baseline", baseline), ("vault", vault))
    ]
    for side in sides:  # one request by hand first: a clear message if the body is refused
        status, answer = request(side.server.port, "POST", side.path, body, token=who.token)
        if status != 201 or json.loads(answer).get("count") != records_per_request:
            raise BenchmarkInvalid(
                f"{side.label} refused the benchmark body: {status} {answer[:500]!r}"
            )
    before = stored_records(vault.port, who)
    run_rounds(ctx, sides, load, 201)
    base_side, vault_side = sides
    stored = stored_records(vault.port, who) - before
    if stored < vault_side.acknowledged * records_per_request:
        raise BenchmarkInvalid(
            f"wrk saw {vault_side.acknowledged} batches acknowledged "
            f"({vault_side.acknowledged * records_per_request} records) but the stream holds "
            f"{stored} new records"
        )
    if not vault.alive():
        raise BenchmarkInvalid("the vault server died during the benchmark")
    ctx.params.update(
        {
            "wrk": f"-t{load.threads} -c{load.connections} -d{load.seconds}s",
            "rounds": load.rounds,
            "warmup_s": load.warmup_seconds,
            "records_per_request": records_per_request,
            "body_bytes": len(body),
            "selection": "best round by requests/s (its latencies reported)",
            "baseline_requests_per_s": [round(r.requests_per_s, 1) for r in base_side.runs],
            "vault_requests_per_s": [round(r.requests_per_s, 1) for r in vault_side.runs],
            "vault_records_stored": stored,
        }
    )
    return base_side, vault_side


def latency(result: wrk.WrkResult, pct: int) -> float:
    if pct not in result.latency_ms:
        raise BenchmarkInvalid(f"wrk reported no {pct}th percentile:\n{result.output}")
    return result.latency_ms[pct]


def default_load(ctx: Context, connections: int) -> Load:
    """The HTTP benchmarks' durations for the mode, with ``connections`` open connections."""
    return Load(
        threads=2,
        connections=connections,
        seconds=ctx.pick(full=15, quick=4, smoke=1),
        warmup_seconds=ctx.pick(full=3, quick=1, smoke=0),
        rounds=ctx.pick(full=3, quick=1, smoke=1),
    )


# --------------------------------------------------------------------------------------------------
# The benchmarks
# --------------------------------------------------------------------------------------------------


@benchmark()
def ingest_batched_http(ctx: Context) -> list[Metric]:
    """JSON batches of 1,000 energy records POSTed to the real server (wrk, 4 connections);
    baseline: a bare FastAPI endpoint that only json.loads the same body."""
    n = 1000
    base, vault = compare_http(
        ctx, name="batched", records_per_request=n, load=default_load(ctx, 4)
    )
    b, v = base.best, vault.best
    return [
        Metric(
            "records/s",
            v.requests_per_s * n,
            "records/s",
            baseline=b.requests_per_s * n,
            target=Target("value", ">=", 100_000),
        ),
        Metric("p50 latency", latency(v, 50), "ms", baseline=latency(b, 50)),
        Metric("p99 latency", latency(v, 99), "ms", baseline=latency(b, 99)),
    ]


@benchmark()
def ingest_single_http(ctx: Context) -> list[Metric]:
    """One energy record per POST to the real server (wrk -t2 -c16); baseline: a bare FastAPI
    endpoint that only json.loads the same one-record body."""
    base, vault = compare_http(
        ctx, name="single", records_per_request=1, load=default_load(ctx, 16)
    )
    b, v = base.best, vault.best
    return [
        Metric(
            "requests/s",
            v.requests_per_s,
            "requests/s",
            baseline=b.requests_per_s,
            target=Target("ratio", ">=", 0.25),
        ),
        Metric("p50 latency", latency(v, 50), "ms", baseline=latency(b, 50)),
        Metric(
            "p99 latency",
            latency(v, 99),
            "ms",
            baseline=latency(b, 99),
            target=Target("value", "<", 25),
        ),
    ]
