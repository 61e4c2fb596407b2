"""The benchmark harness works end to end: ``python -m bench --smoke`` starts the servers, drives
them with wrk, decrypts a small stream, prints the table and writes a results file with the expected
keys.

Nothing here checks speed: speed goals are checked only by ``make bench`` / ``make bench-quick``, as
ratios against baselines measured in the same run (docs/performance.md). The smoke run's numbers
mean nothing and are not looked at beyond being numbers.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.core import load_benchmarks
from bench.wrk import lua_string, parse_output

REPO = Path(__file__).resolve().parent.parent

METRIC_KEYS = {"name", "value", "unit", "baseline", "ratio", "target", "passed", "note"}
BENCH_KEYS = {"name", "description", "status", "seconds", "params", "metrics", "error", "traceback"}


def _require_wrk() -> None:
    # Not a skip: CI turns skips into failures anyway, and a missing tool should say how to fix it.
    if shutil.which("wrk") is None:
        pytest.fail(
            "wrk is not installed, and the HTTP benchmarks need it. "
            "Install it with: apt-get install -y wrk"
        )


@pytest.mark.http
def test_smoke_run_prints_the_table_and_writes_valid_results(tmp_path: Path) -> None:
    _require_wrk()
    out = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--json", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, f"bench --smoke failed:\n{done.stdout}\n{done.stderr}"

    document = json.loads(out.read_text())
    assert document["mode"] == "smoke"
    assert document["timestamp"].endswith("Z")
    assert {"cpu", "versions", "platform"} <= document["machine"].keys()
    assert {"python", "polars", "opendp"} <= document["machine"]["versions"].keys()
    assert document["summary"]["errors"] == 0

    names = set(load_benchmarks())
    assert {"ingest_batched_http", "ingest_single_http", "decrypt_load_1m"} <= names
    assert set(document["benchmarks"]) == names
    for name, result in document["benchmarks"].items():
        assert result.keys() == BENCH_KEYS, name
        assert result["status"] == "ok", (name, result["error"])
        assert result["metrics"], name
        for metric in result["metrics"]:
            assert metric.keys() == METRIC_KEYS, (name, metric)
            assert math.isfinite(metric["value"]) and metric["value"] > 0, (name, metric)
            assert metric["baseline"] is not None and metric["baseline"] > 0, (name, metric)
            assert metric["ratio"] == pytest.approx(metric["value"] / metric["baseline"])
            if metric["target"] is not None:
                assert isinstance(metric["passed"], bool), (name, metric)
                assert {"on", "op", "threshold", "text"} <= metric["target"].keys()
        assert name in done.stdout  # one row of the printed table at least

    for column in ("benchmark", "value", "baseline", "ratio", "target", "result"):
        assert column in done.stdout
    assert "PASS" in done.stdout or "FAIL" in done.stdout


def test_wrk_report_is_read_with_units_and_errors() -> None:
    report = """Running 1s test @ http://127.0.0.1:8000/x
  2 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    81.30ms   10.12ms 120.00ms   70.00%
    Req/Sec    94.12     20.00   130.00     60.00%
  Latency Distribution
     50%  635.00us
     75%   12.50ms
     90%    1.20s
     99%    2.00m
  937 requests in 5.01s, 180.00KB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 3
Requests/sec:    187.04
Transfer/sec:     35.93KB
BENCH_STATUS expected=934 unexpected=3
BENCH_FIRST_UNEXPECTED 422 {"code": "invalid_batch"}
"""
    result = parse_output(report)
    assert result.requests == 937
    assert result.seconds == pytest.approx(5.01)
    assert result.requests_per_s == pytest.approx(187.04)
    assert result.latency_ms == pytest.approx({50: 0.635, 75: 12.5, 90: 1200.0, 99: 120_000.0})
    assert result.socket_errors == {"connect": 0, "read": 2, "write": 0, "timeout": 1}
    assert (result.non_2xx_3xx, result.expected_status, result.unexpected_status) == (3, 934, 3)
    assert result.first_unexpected.startswith("422")


def test_lua_long_strings_close_after_the_text() -> None:
    for text in ('[{"kwh":1.0}]', "a]]b", "]=]", "plain"):
        literal = lua_string(text)
        opening = literal[: literal.index("\n") + 1]
        closing = opening.replace("[", "]").strip()
        body = literal[len(opening) : -len(closing)]
        assert body == text
        assert literal.endswith(closing)
        assert (body + closing).find(closing) == len(body)
