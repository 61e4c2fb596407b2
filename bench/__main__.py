"""``python -m bench [--quick | --smoke] [--only NAME[,NAME]] [--json PATH]``

Runs the benchmarks, prints a table (value, baseline measured in the same run, ratio, target,
PASS/FAIL) and writes the same figures to a JSON file. Exits 0 even when a target is missed; exits
1 when a benchmark crashed (or could not produce a trustworthy number), 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

from bench.core import (
    BenchResult,
    Context,
    Mode,
    describe_params,
    fmt_number,
    load_benchmarks,
    machine_lines,
    results_document,
    run_one,
    summary_counts,
    table,
    write_json,
)
from bench.machine import loadavg, machine_info
from bench.wrk import INSTALL_HINT

DEFAULT_JSON = Path(__file__).resolve().parent / "results.json"


def parse_args(argv: list[str] | None, names: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Civic Vault benchmarks, as ratios against baselines measured in the same run.",
        epilog="benchmarks: " + ", ".join(names),
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="short runs (under two minutes)")
    size.add_argument(
        "--smoke",
        action="store_true",
        help="tiny runs that only prove the harness works end to end (the numbers mean nothing)",
    )
    parser.add_argument("--only", metavar="NAME[,NAME]", help="run only these benchmarks")
    parser.add_argument(
        "--json",
        type=Path,
        default=DEFAULT_JSON,
        metavar="PATH",
        help="where to write the results (default: bench/results.json)",
    )
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = parser.parse_args(argv)
    if args.only:
        wanted = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in wanted if n not in names]
        if unknown or not wanted:
            parser.error(
                f"unknown benchmark(s): {', '.join(unknown) or '(none given)'}; "
                f"known: {', '.join(names)}"
            )
        args.only = wanted
    return args


def _terminate(signum: int, _frame: FrameType | None) -> None:
    # Turn SIGTERM into an exception so that every server is stopped on the way out.
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    registry = load_benchmarks()
    args = parse_args(argv, list(registry))
    if args.list:
        for bench in registry.values():
            print(f"{bench.name}: {bench.description}")
        return 0
    mode: Mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    selected = [registry[n] for n in (args.only or registry)]
    signal.signal(signal.SIGTERM, _terminate)

    started_at = datetime.now(UTC)
    started = time.perf_counter()
    results: list[BenchResult] = []
    with tempfile.TemporaryDirectory(prefix="civic-bench-") as tmp_name:
        tmp = Path(tmp_name)
        machine = machine_info(tmp)
        if machine["versions"].get("wrk") is None:
            print(
                f"NOTE: wrk is not installed, so the HTTP benchmarks cannot run. "
                f"Install it with: {INSTALL_HINT}",
                file=sys.stderr,
            )
        with ExitStack() as stack:
            ctx = Context(mode, tmp, stack, started)
            ctx.log(
                f"mode {mode}: {', '.join(b.name for b in selected)} (temporary files in {tmp})"
            )
            for bench in selected:
                results.append(run_one(bench, ctx))
            ctx.log("stopping servers")
        machine["loadavg_end"] = loadavg()

    document = results_document(results, mode, machine, started_at)
    write_json(args.json, document)
    print_report(results, document, args.json, time.perf_counter() - started)
    return 1 if any(r.status == "error" for r in results) else 0


def print_report(
    results: list[BenchResult], document: dict[str, object], json_path: Path, seconds: float
) -> None:
    machine = document["machine"]
    assert isinstance(machine, dict)
    print()
    print(f"Civic Vault benchmarks, {document['mode']} mode, {document['timestamp']}")
    for line in machine_lines(machine):
        print(line)
    print()
    print(table(results))
    print()
    for result in results:
        if result.status == "ok":
            print(describe_params(result))
    counts = summary_counts(results)
    failed = [(r, m) for r in results for m in r.metrics if m.passed is False]
    errors = [r for r in results if r.status == "error"]
    print()
    for r, m in failed:
        target = m.target.describe(m.unit) if m.target else ""
        ratio = f" (ratio {m.ratio:.3g}x)" if m.ratio is not None else ""
        print(f"FAIL  {r.name} {m.name}: {fmt_number(m.value)} {m.unit}{ratio}; target {target}")
    for r in errors:
        print(f"ERROR {r.name}: {r.error}")
        if r.traceback:
            print(r.traceback, file=sys.stderr)
    print(
        f"{counts['pass']} PASS, {counts['fail']} FAIL, {counts['errors']} ERROR "
        f"({counts['info']} information-only figures) in {seconds:.0f} s; "
        f"results in {json_path}"
    )


if __name__ == "__main__":
    raise SystemExit(main())
