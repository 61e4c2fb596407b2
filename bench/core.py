"""The harness: the benchmark registry, targets, results, the printed table and the JSON file.

A benchmark is a function ``(ctx: Context) -> list[Metric]`` registered with :func:`benchmark`.
It measures its own baseline in the same run and returns one :class:`Metric` per figure; a metric
with a :class:`Target` is judged PASS or FAIL, one without is information only. A benchmark that
raises is reported as ERROR (the run then exits non-zero); a missed target is only a FAIL.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

Mode = Literal["full", "quick", "smoke"]
MODES: tuple[Mode, ...] = ("full", "quick", "smoke")
Op = Literal[">=", "<=", ">", "<"]
T = TypeVar("T")

RESULTS_SCHEMA_VERSION = 1


# --------------------------------------------------------------------------------------------------
# Targets and metrics
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A goal on a metric's absolute ``value`` or on its ``ratio`` to the baseline."""

    on: Literal["value", "ratio"]
    op: Op
    threshold: float

    def met(self, value: float, ratio: float | None) -> bool:
        subject = value if self.on == "value" else ratio
        if subject is None or math.isnan(subject):
            return False
        if self.op == ">=":
            return subject >= self.threshold
        if self.op == "<=":
            return subject <= self.threshold
        if self.op == ">":
            return subject > self.threshold
        return subject < self.threshold

    def describe(self, unit: str) -> str:
        threshold = fmt_threshold(self.threshold)
        if self.on == "ratio":
            return f"ratio {self.op} {threshold}"
        return f"{self.op} {threshold} {unit}"

    def to_json(self, unit: str) -> dict[str, Any]:
        return {
            "on": self.on,
            "op": self.op,
            "threshold": self.threshold,
            "text": self.describe(unit),
        }


@dataclass
class Metric:
    """One measured figure; ``ratio`` is ``value / baseline`` (both measured in this run)."""

    name: str
    value: float
    unit: str
    baseline: float | None = None
    target: Target | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or self.baseline == 0:
            return None
        return self.value / self.baseline

    @property
    def passed(self) -> bool | None:
        """True/False when there is a target; None for an information-only figure."""
        if self.target is None:
            return None
        return self.target.met(self.value, self.ratio)

    @property
    def verdict(self) -> str:
        passed = self.passed
        return "-" if passed is None else ("PASS" if passed else "FAIL")

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": self.value,
            "unit": self.unit,
            "baseline": self.baseline,
            "ratio": self.ratio,
            "target": self.target.to_json(self.unit) if self.target else None,
            "passed": self.passed,
            "note": self.note,
        }


class BenchmarkInvalid(RuntimeError):
    """The measurement cannot be trusted (wrong answers from the server, wrong data read back)."""


# --------------------------------------------------------------------------------------------------
# Context given to each benchmark
# --------------------------------------------------------------------------------------------------


class Context:
    """What a benchmark gets: the mode, a private temporary folder, shared resources and a log."""

    def __init__(self, mode: Mode, tmp: Path, stack: ExitStack, started: float) -> None:
        self.mode: Mode = mode
        self.tmp = tmp
        self._stack = stack
        self._resources: dict[str, Any] = {}
        self._started = started
        #: Parameters the current benchmark reports with its result (durations, sizes, runs).
        self.params: dict[str, Any] = {}

    def pick(self, *, full: T, quick: T, smoke: T) -> T:
        """The value of a setting for the current mode."""
        return {"full": full, "quick": quick, "smoke": smoke}[self.mode]

    def resource(self, key: str, factory: Callable[[], AbstractContextManager[T]]) -> T:
        """A resource shared by every benchmark of this run (a server, say), entered on first use
        and exited when the whole run ends, even if a benchmark crashes."""
        if key not in self._resources:
            self._resources[key] = self._stack.enter_context(factory())
        value: T = self._resources[key]
        return value

    def workdir(self, name: str) -> Path:
        path = self.tmp / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def log(self, message: str) -> None:
        elapsed = time.perf_counter() - self._started
        print(f"[{elapsed:6.1f}s] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------------

BenchFn = Callable[[Context], list[Metric]]


@dataclass(frozen=True)
class Benchmark:
    name: str
    description: str
    fn: BenchFn


REGISTRY: dict[str, Benchmark] = {}


def benchmark(name: str | None = None, *, description: str = "") -> Callable[[BenchFn], BenchFn]:
    """Register a benchmark; ``name`` defaults to the function's name."""

    def register(fn: BenchFn) -> BenchFn:
        key = name or fn.__name__
        if key in REGISTRY and REGISTRY[key].fn is not fn:
            raise ValueError(f"two benchmarks are called {key!r}")
        doc = (fn.__doc__ or "").strip().split("\n\n")[0]
        REGISTRY[key] = Benchmark(key, description or " ".join(doc.split()), fn)
        return fn

    return register


def load_benchmarks() -> dict[str, Benchmark]:
    from bench import BENCHMARK_MODULES

    for module in BENCHMARK_MODULES:
        importlib.import_module(module)
    return REGISTRY


# --------------------------------------------------------------------------------------------------
# Running and reporting
# --------------------------------------------------------------------------------------------------


@dataclass
class BenchResult:
    name: str
    description: str
    status: Literal["ok", "error"] = "ok"
    metrics: list[Metric] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    error: str | None = None
    traceback: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "status": self.status,
            "seconds": round(self.seconds, 3),
            "params": self.params,
            "metrics": [m.to_json() for m in self.metrics],
            "error": self.error,
            "traceback": self.traceback,
        }


def run_one(bench: Benchmark, ctx: Context) -> BenchResult:
    result = BenchResult(bench.name, bench.description)
    ctx.params = {}
    ctx.log(f"{bench.name}: start")
    started = time.perf_counter()
    try:
        result.metrics = bench.fn(ctx)
    except KeyboardInterrupt:
        raise
    except Exception as exc:
        result.status = "error"
        result.error = f"{type(exc).__name__}: {exc}"
        # An error that explains itself (a missing tool, say) needs no traceback.
        result.traceback = (
            None if getattr(exc, "explains_itself", False) else traceback.format_exc()
        )
        ctx.log(f"{bench.name}: ERROR {result.error}")
    result.seconds = time.perf_counter() - started
    result.params = dict(ctx.params)
    ctx.log(f"{bench.name}: done in {result.seconds:.1f} s")
    return result


def summary_counts(results: list[BenchResult]) -> dict[str, int]:
    metrics = [m for r in results for m in r.metrics]
    return {
        "pass": sum(1 for m in metrics if m.passed is True),
        "fail": sum(1 for m in metrics if m.passed is False),
        "info": sum(1 for m in metrics if m.passed is None),
        "errors": sum(1 for r in results if r.status == "error"),
    }


def results_document(
    results: list[BenchResult], mode: Mode, machine: dict[str, Any], started_at: datetime
) -> dict[str, Any]:
    return {
        "schema_version": RESULTS_SCHEMA_VERSION,
        "timestamp": started_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "finished": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "mode": mode,
        "machine": machine,
        "benchmarks": {r.name: r.to_json() for r in results},
        "summary": summary_counts(results),
    }


def write_json(path: Path, document: dict[str, Any]) -> None:
    """Write atomically (``<path>.tmp`` then rename), so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(document, indent=2, allow_nan=False, default=str) + "\n")
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------------------
# Formatting
# --------------------------------------------------------------------------------------------------


def fmt_number(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    magnitude = abs(value)
    if magnitude >= 10_000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:,.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    if magnitude == 0:
        return "0"
    return f"{value:.3g}"


def fmt_threshold(value: float) -> str:
    return f"{int(value):,}" if float(value).is_integer() else f"{value:g}"


def fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}x"


def table(results: list[BenchResult]) -> str:
    header = ("benchmark", "metric", "value", "unit", "baseline", "ratio", "target", "result")
    rows: list[tuple[str, ...]] = []
    for r in results:
        if r.status == "error":
            rows.append((r.name, "-", "-", "-", "-", "-", "-", "ERROR"))
            continue
        for m in r.metrics:
            rows.append(
                (
                    r.name,
                    m.name,
                    fmt_number(m.value),
                    m.unit,
                    fmt_number(m.baseline),
                    fmt_ratio(m.ratio),
                    m.target.describe(m.unit) if m.target else "-",
                    m.verdict,
                )
            )
    widths = [
        max(len(h), *(len(row[i]) for row in rows)) if rows else len(h)
        for i, h in enumerate(header)
    ]
    numeric = {2, 4, 5}

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(
            c.rjust(w) if i in numeric else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    out = [line(header), line(tuple("-" * w for w in widths))]
    out.extend(line(row) for row in rows)
    return "\n".join(out)


def machine_lines(machine: dict[str, Any]) -> list[str]:
    cpu = machine.get("cpu", {})
    versions = machine.get("versions", {})
    load = machine.get("loadavg_start")
    lines = [
        f"machine: {cpu.get('cores')} cores ({cpu.get('usable_cores')} usable), {cpu.get('model')}; "
        f"{machine.get('platform')}",
        "versions: "
        + ", ".join(f"{name} {version}" for name, version in versions.items() if version),
        f"http stack: {machine.get('http_stack')}; temp files on {machine.get('tmp_filesystem')}",
    ]
    if load:
        lines.append(
            "load average at start: "
            + " ".join(f"{x:.2f}" for x in load)
            + (
                f"; at end: {' '.join(f'{x:.2f}' for x in machine['loadavg_end'])}"
                if machine.get("loadavg_end")
                else ""
            )
        )
    return lines


def describe_params(result: BenchResult) -> str:
    parts = [f"{key}={value}" for key, value in result.params.items()]
    return f"{result.name}: " + (", ".join(parts) if parts else "(no parameters)")


def best_and_median(samples: list[float]) -> tuple[float, float]:
    return min(samples), statistics.median(samples)
