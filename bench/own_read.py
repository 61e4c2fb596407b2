"""A citizen reading their own records back over HTTP, decrypted: the real server against a
plaintext server, both driven by wrk.

The vault server (shared with the other HTTP benchmarks) gets a new citizen and an energy stream
holding ``chunks`` batches of 1,000 readings, each POSTed over HTTP as one JSON batch (so each is one
encrypted chunk, none small enough to be compacted on read). The request is what a citizen's app
sends to fetch the whole stream in one page: ``GET /v1/me/streams/{id}/records?limit=10000`` with
the citizen's session token and ``Accept: application/json``. (One page for the whole stream
because the vault decrypts every chunk of the stream for any page, whatever its size, then sorts
and slices: reading it in pages of the default 1,000 would cost about five times as much, and the
figure would be about pagination rather than reading.) On the vault that is: the token
checked and the citizen's root key unwrapped from it, the stream row locked, the stream key opened,
every chunk decrypted and decoded, the page sorted and cut, an entry appended to the citizen's audit
chain, the page rendered as JSON.

**Baseline**: the same GET, same path and query, same headers sent, on the bare FastAPI app of
:mod:`bench.baseline_app` under the same uvicorn settings. It reads the same records from a plaintext
Parquet file (zstd) with polars on every request and renders them the cheapest way polars allows
into exactly the bytes and headers the vault sends (checked once, byte for byte). That is what a
server keeping the same data in clear would do for the same answer: a precomputed body would leave
out reading and rendering, which any server answering this request pays, so the ratio would charge
the vault for work that is not the price of encryption. The ratio is thus the share of a plaintext
server's read throughput the vault keeps with its protections (authentication, keys, decryption,
audit) and its own rendering.

Before measuring, one GET on each side must answer 200 with every record written (compared value by
value with what was POSTed) and the two bodies must be identical. During the runs, every answer must
be 200 with a body of exactly that length; anything else makes the benchmark an ERROR. Rounds and
selection are those of :mod:`bench.http_ingest` (best round by requests/s, with its latencies). No
target is set by the issues: the figures are information only.
"""

from __future__ import annotations

import json

import polars as pl

from bench import wrk
from bench.core import BenchmarkInvalid, Context, Metric, benchmark
from bench.http_ingest import (
    STREAM_TYPE,
    Side,
    baseline_server,
    default_load,
    energy_readings,
    json_body,
    latency,
    new_citizen_stream,
    run_rounds,
    vault_server,
)
from bench.loopback import call_json, request

RECORDS_PER_CHUNK = 1000
PAGE_LIMIT = 10_000  # the API's largest page: the whole stream in one answer
#: The vault's text form of timestamps in JSON answers.
TS_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def _expected_records(frame: pl.DataFrame) -> list[dict[str, object]]:
    return [
        {"ts": row["ts"].strftime(TS_FORMAT), "kwh": row["kwh"]}
        for row in frame.iter_rows(named=True)
    ]


def _get(port: int, path: str, token: str) -> tuple[int, bytes]:
    return request(port, "GET", path, token=token)


@benchmark()
def own_read_http(ctx: Context) -> list[Metric]:
    """A citizen reads their whole energy stream (5,000 records in 5 encrypted chunks; smoke: 2,000)
    as one JSON page from the real server (wrk -t2 -c4); baseline: a bare FastAPI endpoint
    answering the same bytes from a plaintext Parquet file read with polars."""
    wrk.wrk_executable()  # fail early, with the install hint, before starting anything
    chunks = ctx.pick(full=5, quick=5, smoke=2)
    total = chunks * RECORDS_PER_CHUNK
    load = default_load(ctx, 4)
    vault = vault_server(ctx)
    baseline = baseline_server(ctx)

    # The stream, written over HTTP one batch (one chunk) at a time.
    who = new_citizen_stream(vault.port)
    frame = energy_readings(total)
    for i in range(chunks):
        body = json_body(frame.slice(i * RECORDS_PER_CHUNK, RECORDS_PER_CHUNK))
        status, answer = request(vault.port, "POST", who.records_path, body, token=who.token)
        if status != 201 or json.loads(answer).get("count") != RECORDS_PER_CHUNK:
            raise BenchmarkInvalid(f"the vault refused batch {i}: {status} {answer[:500]!r}")
    summary = call_json(vault.port, "GET", f"/v1/me/streams/{who.stream_id}", token=who.token)
    if (summary["record_count"], summary["chunk_count"]) != (total, chunks):
        raise BenchmarkInvalid(
            f"the stream holds {summary['record_count']} records in {summary['chunk_count']} "
            f"chunks; expected {total} in {chunks}"
        )

    # The same records in clear, for the baseline.
    plain = ctx.workdir("own-read") / f"{who.stream_id}.parquet"
    frame.write_parquet(plain, compression="zstd")
    call_json(
        baseline.port,
        "PUT",
        f"/bench/plaintext/{who.stream_id}",
        {"path": str(plain), "stream_type": STREAM_TYPE},
        expect=204,
    )

    # One GET on each side: every record, the same bytes.
    path = f"{who.records_path}?limit={PAGE_LIMIT}"
    answers: dict[str, bytes] = {}
    for label, server in (("baseline", baseline), ("vault", vault)):
        status, answer = _get(server.port, path, who.token)
        if status != 200:
            raise BenchmarkInvalid(f"{label} answered {status} to GET {path}: {answer[:500]!r}")
        answers[label] = answer
    page = json.loads(answers["vault"])
    if (page["count"], page["total"], page["next_cursor"]) != (total, total, None):
        raise BenchmarkInvalid(
            f"the vault answered {page['count']} of {page['total']} records "
            f"(next cursor {page['next_cursor']!r}); expected all {total} in one page"
        )
    if page["records"] != _expected_records(frame):
        raise BenchmarkInvalid("the records the vault answered differ from those written")
    if answers["baseline"] != answers["vault"]:
        raise BenchmarkInvalid(
            f"the baseline's answer ({len(answers['baseline'])} bytes) differs from the vault's "
            f"({len(answers['vault'])} bytes): {answers['baseline'][:200]!r} vs "
            f"{answers['vault'][:200]!r}"
        )
    body_bytes = len(answers["vault"])

    scripts = ctx.workdir("wrk-own-read")
    headers = {"Accept": "application/json", "Authorization": f"Bearer {who.token}"}
    sides = [
        Side(
            label,
            server,
            path,
            wrk.write_script(
                scripts / f"{label}.lua",
                method="GET",
                body=None,
                headers=headers,
                expected_status=200,
                expected_body_bytes=body_bytes,
            ),
        )
        for label, server in (("baseline", baseline), ("vault", vault))
    ]
    run_rounds(ctx, sides, load, 200)
    if not vault.alive():
        raise BenchmarkInvalid("the vault server died during the benchmark")

    base_side, vault_side = sides
    b, v = base_side.best, vault_side.best
    ctx.params.update(
        {
            "wrk": f"-t{load.threads} -c{load.connections} -d{load.seconds}s",
            "rounds": load.rounds,
            "warmup_s": load.warmup_seconds,
            "records_per_request": total,
            "chunks": chunks,
            "records_per_chunk": RECORDS_PER_CHUNK,
            "request": f"GET {path.replace(who.stream_id, '{id}')}",
            "body_bytes": body_bytes,
            "plain_parquet_bytes": plain.stat().st_size,
            "selection": "best round by requests/s (its latencies reported)",
            "baseline_requests_per_s": [round(r.requests_per_s, 1) for r in base_side.runs],
            "vault_requests_per_s": [round(r.requests_per_s, 1) for r in vault_side.runs],
            "vault_reads": vault_side.acknowledged,
        }
    )
    note = f"{total:,} records ({body_bytes:,} bytes of JSON) per answer"
    return [
        Metric("requests/s", v.requests_per_s, "requests/s", baseline=b.requests_per_s, note=note),
        Metric(
            "records/s",
            v.requests_per_s * total,
            "records/s",
            baseline=b.requests_per_s * total,
        ),
        Metric("p50 latency", latency(v, 50), "ms", baseline=latency(b, 50)),
        Metric("p99 latency", latency(v, 99), "ms", baseline=latency(b, 99)),
    ]
