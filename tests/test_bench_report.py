"""bench/report.py: the Markdown page the README links, built from results documents."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from bench.core import BenchResult, Metric, Target, results_document
from bench.report import main


def _document(mode: str, value: float) -> dict[str, object]:
    ok = BenchResult(
        "ingest_single_http",
        "one record per POST",
        metrics=[
            Metric(
                "requests/s",
                value,
                "requests/s",
                baseline=4000.0,
                target=Target("ratio", ">=", 0.25),
            ),
            Metric("p50 latency", 3.0, "ms", baseline=1.0, note="a | pipe"),
        ],
        params={"wrk": "-t2 -c16"},
        seconds=12.0,
    )
    broken = BenchResult("dp_query", "statistics", status="error", error="no wrk | here")
    machine = {"cpu": {"cores": 2, "usable_cores": 2, "model": "test cpu"}, "versions": {}}
    return results_document([ok, broken], mode, machine, datetime(2026, 11, 21, tzinfo=UTC))  # type: ignore[arg-type]


def test_each_results_file_gets_its_own_section_with_verdicts(tmp_path: Path) -> None:
    full, quick = tmp_path / "full.json", tmp_path / "quick.json"
    full.write_text(json.dumps(_document("full", 1200.0)))
    quick.write_text(json.dumps(_document("quick", 800.0)))
    page_path = tmp_path / "page.md"
    assert main([str(full), str(quick), "-o", str(page_path)]) == 0
    page = page_path.read_text()
    assert page.count("## full run of 2026-11-21") == 1
    assert page.count("## quick run of 2026-11-21") == 1
    rows = [
        line for line in page.splitlines() if line.startswith("| ingest_single_http | requests/s")
    ]
    assert len(rows) == 2
    assert "| 0.3x | ratio >= 0.25 | PASS |" in rows[0]  # 1200 / 4000
    assert "| 0.2x | ratio >= 0.25 | FAIL |" in rows[1]  # 800 / 4000
    assert "| dp_query | - | - | - | - | - | - | ERROR: no wrk \\| here |" in page
    assert "- `ingest_single_http` (12 s): wrk=-t2 -c16" in page
