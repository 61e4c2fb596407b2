"""The benchmark results as a Markdown page: ``python -m bench.report RESULTS.json [...] -o PAGE``.

``make bench`` writes ``docs/bench-latest.md`` with it (the page the README links). Several result
files can go on one page (for example a full run and a separately run 1,000,000-citizen query):
each keeps its own heading with its mode, time, machine and load, so figures measured under
different conditions are never mixed in one table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from bench.core import fmt_number, fmt_ratio, machine_lines


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _verdict(metric: dict[str, Any]) -> str:
    passed = metric.get("passed")
    return "-" if passed is None else "PASS" if passed else "FAIL"


def section(document: dict[str, Any], source: str) -> list[str]:
    """One results document as Markdown lines."""
    lines = [
        f"## {document.get('mode', '?')} run of {document.get('timestamp', '?')}",
        "",
        f"From `{source}`.",
        "",
    ]
    lines += [f"- {line}" for line in machine_lines(document.get("machine", {}))]
    lines += [
        "",
        "| benchmark | metric | value | unit | baseline | ratio | target | result |",
        "| --- | --- | ---: | --- | ---: | ---: | --- | --- |",
    ]
    benchmarks: dict[str, dict[str, Any]] = document.get("benchmarks", {})
    for name, result in benchmarks.items():
        if result.get("status") != "ok":
            lines.append(
                f"| {name} | - | - | - | - | - | - | ERROR: {_cell(result.get('error') or '')} |"
            )
            continue
        for m in result.get("metrics", []):
            target = m.get("target") or {}
            lines.append(
                "| "
                + " | ".join(
                    _cell(c)
                    for c in (
                        name,
                        m["name"],
                        fmt_number(m.get("value")),
                        m.get("unit", ""),
                        fmt_number(m.get("baseline")),
                        fmt_ratio(m.get("ratio")),
                        target.get("text", "-"),
                        _verdict(m),
                    )
                )
                + " |"
            )
    lines += ["", "Parameters:", ""]
    for name, result in benchmarks.items():
        params = result.get("params") or {}
        described = ", ".join(f"{k}={v}" for k, v in params.items()) or "(none)"
        lines.append(f"- `{name}` ({result.get('seconds', 0):.0f} s): {_cell(described)}")
    summary = document.get("summary", {})
    lines += [
        "",
        f"{summary.get('pass', 0)} PASS, {summary.get('fail', 0)} FAIL, "
        f"{summary.get('errors', 0)} ERROR, {summary.get('info', 0)} information-only figures.",
        "",
    ]
    return lines


def render(paths: list[Path], note: str = "") -> str:
    lines = [
        "# Latest benchmark results",
        "",
        "Written by `python -m bench.report` from the results of `make bench` (see",
        "[performance.md](performance.md) for what each benchmark measures and why). Every figure is",
        "a ratio against a baseline measured in the same run on the same machine.",
        "",
    ]
    if note:
        lines += [note, ""]
    for path in paths:
        lines += section(json.loads(path.read_text()), path.name)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__)
    parser.add_argument("results", type=Path, nargs="+", help="results JSON files (bench --json)")
    parser.add_argument("-o", "--output", type=Path, help="write here instead of printing")
    parser.add_argument("--note", default="", help="a paragraph to put above the results")
    args = parser.parse_args(argv)
    page = render(args.results, args.note)
    if args.output is None:
        print(page)
    else:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(page)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
