"""API latency under load, with one and with two uvicorn worker processes (wrk, keep-alive).

What is measured: p50 and p99 latency and requests/s of read calls a client makes all the time,
each answered with a JSON body, on the real server (``server.cli.serve``, what ``make run`` runs;
SQLite in a temporary folder, ``CIVIC_KDF_PROFILE=min``), first with ``CIVIC_WORKERS=1``, then
with ``CIVIC_WORKERS=2`` (a fresh server and data folder each), driven by ``wrk -t2 -c4``:

* ``GET /v1/me/streams`` with a citizen's bearer token (every mode): the citizen app asks for it on
  every dashboard; the token is checked and the stream list read from the database. The citizen
  has one stream of each of the catalogue's five types, as a demo citizen has, and 30 readings;
* ``GET /v1/stream-types`` (full mode only): the public catalogue, about 6 KB, no token, no
  database.

Baseline, for each worker count: :mod:`bench.latency_baseline_app`, a bare FastAPI app answering
the same paths with the vault's own answer, byte for byte (captured just before), served by the
same code (``server.cli.run_uvicorn``) with the same number of workers, uvicorn settings and socket
options, and measured in turn with the vault in every round. The ratio is what the vault costs per
request over a bare FastAPI endpoint; whatever the server configuration costs (workers, sockets)
is on both sides, so it cancels out of that ratio and is judged by two more figures:

* the bare app's p50 with two workers against its p50 with one (target: at most 3x). With uvicorn's
  own ``--workers`` socket every keep-alive response waited ~40 ms for the client's delayed ACK
  (Nagle's algorithm left on, uvicorn issue #3149; see ``server.cli.listening_socket``), which made
  this ratio about 50x (44 ms against 0.8 ms here);
* for information, the bare app served by plain ``uvicorn.run(..., workers=2)`` (uvicorn binds the
  socket) against the same app on our socket: the 40 ms this server avoids while #3149 is open, or
  about 1x once uvicorn has fixed it (then the socket workaround can go).

4 connections keep both workers busy while leaving latency mostly the server's work rather than
waiting behind other requests (wrk is closed-loop: latency is about connections / throughput).
wrk opens them all at once and keeps them (keep-alive, which is also what #3149 slows down); the
kernel gives each to whichever worker accepts first, so they may end up 4+0 rather than 2+2, and
a run then measures one worker. Each run's split, looked at mid-run in ``/proc``, is in the
parameters. For each side the round with the most requests/s is reported with its latencies
(best-of, as in :mod:`bench.http_ingest`). Any answer other than 200 with a body of the expected
length, or any socket error, makes the run invalid (an ERROR, not a number).
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path

from bench import wrk
from bench.core import BenchmarkInvalid, Context, Metric, Target, benchmark
from bench.http_ingest import check_wrk_result
from bench.latency_baseline_app import BODIES_VARIABLE, write_bodies
from bench.loopback import call_json, request
from bench.server_process import ServerProcess

ENERGY = "energy.consumption"
READINGS = 30
#: wrk's open connections: enough to keep two workers busy, few enough that a request's latency is
#: not mostly its wait behind the others (wrk is closed-loop: latency ~ connections / throughput).
CONNECTIONS = 4


@dataclass(frozen=True)
class Endpoint:
    path: str
    authenticated: bool

    @property
    def name(self) -> str:
        return f"GET {self.path}"


STREAMS = Endpoint("/v1/me/streams", authenticated=True)
CATALOGUE = Endpoint("/v1/stream-types", authenticated=False)


@dataclass(frozen=True)
class Load:
    threads: int
    connections: int
    seconds: int
    warmup_seconds: int
    rounds: int

    @property
    def wrk_args(self) -> str:
        return f"-t{self.threads} -c{self.connections} -d{self.seconds}s"


@dataclass
class Side:
    label: str
    server: ServerProcess
    url: str
    script: Path
    runs: list[wrk.WrkResult] = field(default_factory=list)
    spread: list[list[int]] = field(default_factory=list)  # per run: connections held per worker

    @property
    def best(self) -> wrk.WrkResult:
        return max(self.runs, key=lambda r: r.requests_per_s)

    def describe_runs(self) -> list[str]:
        out = []
        for i, run in enumerate(self.runs):
            text = (
                f"{run.requests_per_s:,.0f}/s p50 {run.latency_ms[50]:.2f} "
                f"p99 {run.latency_ms[99]:.2f} ms"
            )
            if i < len(self.spread) and self.spread[i]:
                text += " connections per worker " + "+".join(map(str, self.spread[i]))
            out.append(text)
        return out


# --------------------------------------------------------------------------------------------------
# Which worker holds which connection (Linux /proc; for the parameters, not for any figure)
# --------------------------------------------------------------------------------------------------


def _worker_pids(leader: int) -> list[int]:
    """The uvicorn worker processes of the server whose process group is ``leader``."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if int(stat[2]) == leader and b"spawn_main" in cmdline:
            pids.append(int(entry))
    return pids


def _established_inodes(port: int) -> set[str]:
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":
                inodes.add(fields[9])
    return inodes


def connections_per_worker(server: ServerProcess) -> list[int]:
    """How many established connections each worker of ``server`` holds, most first; empty with
    one worker or where ``/proc`` cannot tell. The kernel gives a new connection to whichever
    worker accepts first, and wrk opens all of its connections at once and keeps them: one worker
    may hold all of them, and the run then measures one worker."""
    if server.workers == 1 or server.pid is None or not Path("/proc/net/tcp").exists():
        return []
    inodes = _established_inodes(server.port)
    counts = []
    for pid in _worker_pids(server.pid):
        held = 0
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    link = os.readlink(f"/proc/{pid}/fd/{fd}")
                except OSError:
                    continue
                held += link.startswith("socket:[") and link[8:-1] in inodes
        except OSError:
            continue
        counts.append(held)
    return sorted(counts, reverse=True)


# --------------------------------------------------------------------------------------------------
# Setting up and checking, over HTTP
# --------------------------------------------------------------------------------------------------


def new_citizen(port: int) -> str:
    """Register a citizen with one stream of each catalogue type and a few energy readings; return
    a bearer token."""
    credentials = {
        "handle": f"bench-{uuid.uuid4().hex[:12]}",
        "passphrase": f"bench passphrase {uuid.uuid4().hex}",
    }
    call_json(port, "POST", "/v1/citizens", credentials, expect=201)
    token: str = call_json(port, "POST", "/v1/session", credentials)["access_token"]
    catalogue = call_json(port, "GET", "/v1/stream-types")["stream_types"]
    for spec in catalogue:
        stream = call_json(
            port,
            "POST",
            "/v1/me/streams",
            {"stream_type": spec["name"], "label": spec.get("title", "")},
            token=token,
            expect=201,
        )
        if spec["name"] == ENERGY:
            from bench.http_ingest import json_batch

            body = json_batch(READINGS)
            status, answer = request(
                port, "POST", f"/v1/me/streams/{stream['id']}/records", body, token=token
            )
            if status != 201:
                raise BenchmarkInvalid(
                    f"the vault refused {READINGS} readings: {status} {answer!r}"
                )
    return token


def get_body(port: int, endpoint: Endpoint, token: str | None) -> bytes:
    status, body = request(port, "GET", endpoint.path, token=token)
    if status != 200:
        raise BenchmarkInvalid(f"{endpoint.name} answered {status}: {body[:500]!r}")
    return body


def check_streams_body(body: bytes) -> None:
    streams = json.loads(body)["streams"]
    if len(streams) != 5 or not any(s["record_count"] == READINGS for s in streams):
        raise BenchmarkInvalid(f"unexpected stream list: {body[:500]!r}")


# --------------------------------------------------------------------------------------------------
# Driving one side with wrk
# --------------------------------------------------------------------------------------------------


def _drive(ctx: Context, side: Side, load: Load, seconds: int, spread: list[int]) -> wrk.WrkResult:
    """One wrk run; ``spread`` receives the connections held per worker, looked at mid-run."""
    sampler = threading.Timer(
        seconds / 2, lambda: spread.extend(connections_per_worker(side.server))
    )
    sampler.start()
    try:
        result = wrk.run(
            side.url,
            side.script,
            threads=load.threads,
            connections=load.connections,
            seconds=seconds,
        )
    finally:
        sampler.cancel()
        sampler.join()
    check_wrk_result(side.label, result, "200 with the expected body")
    for pct in (50, 99):
        if pct not in result.latency_ms:
            raise BenchmarkInvalid(f"wrk reported no {pct}th percentile:\n{result.output}")
    ctx.log(
        f"  {side.label}: {result.requests_per_s:,.1f} requests/s, "
        f"p50 {result.latency_ms[50]:.2f} ms, p99 {result.latency_ms[99]:.2f} ms ({seconds} s)"
        + (f", connections per worker {'+'.join(map(str, spread))}" if spread else "")
    )
    return result


def _rounds(ctx: Context, sides: list[Side], load: Load) -> None:
    """Warm each side up, then ``load.rounds`` rounds with the sides in turn (a disturbance of the
    shared machine then hits every side rather than one)."""
    if load.warmup_seconds:
        for side in sides:
            _drive(ctx, side, load, load.warmup_seconds, [])
    for round_no in range(load.rounds):
        ctx.log(f"  round {round_no + 1} of {load.rounds}")
        for side in sides:
            spread: list[int] = []
            side.runs.append(_drive(ctx, side, load, load.seconds, spread))
            side.spread.append(spread)


def _side(label: str, server: ServerProcess, endpoint: Endpoint, token: str, body: bytes) -> Side:
    headers = {"Accept": "application/json"}
    if endpoint.authenticated:
        headers["Authorization"] = f"Bearer {token}"
    script = server.log_path.parent / f"wrk-{label.replace(' ', '-').replace('/', '_')}.lua"
    wrk.write_script(
        script,
        method="GET",
        body=None,
        headers=headers,
        expected_status=200,
        expected_body_bytes=len(body),
    )
    return Side(label, server, server.url + endpoint.path, script)


# --------------------------------------------------------------------------------------------------
# One worker count
# --------------------------------------------------------------------------------------------------


@dataclass
class WorkerResult:
    workers: int
    bare: dict[str, Side]  # endpoint path -> side
    vault: dict[str, Side]
    body_bytes: dict[str, int]
    reference: Side | None = None  # the bare app on uvicorn's own --workers socket


def measure(
    ctx: Context, workers: int, endpoints: tuple[Endpoint, ...], load: Load, *, reference: bool
) -> WorkerResult:
    """Start the vault and the bare app with ``workers`` workers, set up, check, then measure."""
    logs = ctx.workdir(f"api-latency-{workers}w")
    env = {
        "CIVIC_DATA_DIR": str(ctx.workdir(f"api-latency-vault-{workers}w")),
        "CIVIC_KDF_PROFILE": "min",
        "CIVIC_DEMO_CITIZENS": "0",
    }
    ctx.log(f"  starting the vault and the bare app with {workers} worker(s)")
    with ServerProcess("vault", env, logs, workers=workers) as vault:
        token = new_citizen(vault.port)
        bodies = {e.path: get_body(vault.port, e, token) for e in endpoints}
        if STREAMS.path in bodies:
            check_streams_body(bodies[STREAMS.path])
        bare_env = {BODIES_VARIABLE: str(write_bodies(logs / "bodies.json", bodies))}
        with ServerProcess("latency-baseline", bare_env, logs, workers=workers) as bare:
            for e in endpoints:
                if get_body(bare.port, e, None) != bodies[e.path]:
                    raise BenchmarkInvalid(f"the bare app's {e.name} is not the vault's answer")
            result = WorkerResult(workers, {}, {}, {p: len(b) for p, b in bodies.items()})
            for e in endpoints:
                ctx.log(f"  {e.name}, {workers} worker(s), wrk {load.wrk_args}")
                pair = [
                    _side(f"bare {workers}w {e.path}", bare, e, token, bodies[e.path]),
                    _side(f"vault {workers}w {e.path}", vault, e, token, bodies[e.path]),
                ]
                _rounds(ctx, pair, load)
                result.bare[e.path], result.vault[e.path] = pair
            if reference:
                result.reference = _measure_reference(ctx, logs, bare_env, workers, load, bodies)
        if not vault.alive():
            raise BenchmarkInvalid("the vault server died during the benchmark")
    return result


def _measure_reference(
    ctx: Context,
    logs: Path,
    bare_env: dict[str, str],
    workers: int,
    load: Load,
    bodies: dict[str, bytes],
) -> Side:
    """The bare app as ``uvicorn --workers N`` serves it when it binds the socket itself: one run,
    no warm-up (its figure is a floor of ~40 ms per response or nothing, not a fine measurement)."""
    ctx.log(f"  {STREAMS.name}, bare app on uvicorn's own {workers}-worker socket")
    with ServerProcess(
        "latency-baseline", bare_env, logs, workers=workers, uvicorn_binds=True
    ) as own:
        side = _side(f"uvicorn-own {workers}w", own, STREAMS, "", bodies[STREAMS.path])
        _rounds(ctx, [side], replace(load, warmup_seconds=0, rounds=1))
    return side


# --------------------------------------------------------------------------------------------------
# The benchmark
# --------------------------------------------------------------------------------------------------


def _figures(r: WorkerResult, endpoint: Endpoint) -> list[Metric]:
    b, v = r.bare[endpoint.path].best, r.vault[endpoint.path].best
    where = f"{endpoint.name}, {r.workers} worker{'s' if r.workers > 1 else ''}"
    return [
        Metric(f"{where}: p50", v.latency_ms[50], "ms", baseline=b.latency_ms[50]),
        Metric(f"{where}: p99", v.latency_ms[99], "ms", baseline=b.latency_ms[99]),
        Metric(f"{where}: requests/s", v.requests_per_s, "requests/s", baseline=b.requests_per_s),
    ]


@benchmark()
def api_latency(ctx: Context) -> list[Metric]:
    """p50/p99 and requests/s of GET /v1/me/streams (with a token; and, in full mode, GET
    /v1/stream-types) on the real server with 1 and with 2 uvicorn workers (wrk -t2 -c4,
    keep-alive); baseline: a bare FastAPI app giving the same bytes, served the same way with the
    same number of workers."""
    wrk.wrk_executable()  # fail early, with the install hint, before starting anything
    load = Load(
        threads=2,
        connections=CONNECTIONS,
        seconds=ctx.pick(full=5, quick=2, smoke=1),
        warmup_seconds=ctx.pick(full=1, quick=1, smoke=0),
        rounds=ctx.pick(full=3, quick=1, smoke=1),
    )
    endpoints = ctx.pick(full=(STREAMS, CATALOGUE), quick=(STREAMS,), smoke=(STREAMS,))
    one = measure(ctx, 1, endpoints, load, reference=False)
    two = measure(ctx, 2, endpoints, load, reference=True)
    assert two.reference is not None
    metrics: list[Metric] = []
    for endpoint in endpoints:
        metrics += _figures(one, endpoint) + _figures(two, endpoint)
    bare_one, bare_two = one.bare[STREAMS.path].best, two.bare[STREAMS.path].best
    vault_one, vault_two = one.vault[STREAMS.path].best, two.vault[STREAMS.path].best
    metrics += [
        Metric(
            f"{STREAMS.name} requests/s, 2 workers (baseline: 1 worker)",
            vault_two.requests_per_s,
            "requests/s",
            baseline=vault_one.requests_per_s,
            note="what a second worker process buys the vault on this machine",
        ),
        Metric(
            "bare app p50, 2 workers (baseline: 1 worker)",
            bare_two.latency_ms[50],
            "ms",
            baseline=bare_one.latency_ms[50],
            target=Target("ratio", "<=", 3),
            note="the server configuration's own cost; uvicorn #3149 (Nagle) made it ~50x",
        ),
        Metric(
            "bare app p50, uvicorn's own --workers 2 socket (baseline: ours)",
            two.reference.best.latency_ms[50],
            "ms",
            baseline=bare_two.latency_ms[50],
            note="about 1 once uvicorn #3149 is fixed upstream",
        ),
    ]
    ctx.params.update(
        {
            "wrk": load.wrk_args,
            "rounds": load.rounds,
            "warmup_s": load.warmup_seconds,
            "selection": "best round by requests/s (its latencies reported)",
            "body_bytes": one.body_bytes,
        }
    )
    for r in (one, two):
        for e in endpoints:
            for label, side in (("bare", r.bare[e.path]), ("vault", r.vault[e.path])):
                ctx.params[f"{label}_{r.workers}w {e.path}"] = side.describe_runs()
    ctx.params["uvicorn_own_2w /v1/me/streams"] = two.reference.describe_runs()
    return metrics
