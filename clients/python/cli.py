"""``civic-vault``: the command line. ``verify-bundle`` checks an export offline; the analysts'
commands (query, preview, releases, budget) come with the aggregation service."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def _print_report(summary: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    if summary["ok"]:
        print("OK: this bundle is intact and signed by the citizen's key.")
    else:
        print("NOT VALID: this bundle failed verification:")
        for problem in summary["problems"]:
            print(f"  - {problem}")
    if summary.get("citizen_id"):
        print(f"citizen: {summary['citizen_id']}   exported: {summary.get('created_at')}")
    for stream in summary.get("streams", []):
        print(f"  stream {stream['stream_type']:<20} {stream['records']:>9} records")
    if summary.get("audit_entries") is not None:
        print(f"  audit log: {summary['audit_entries']} entries")


def verify_bundle_command(path: Path, as_json: bool) -> int:
    # Offline verification shares the vault's one verifier (pure; no database, no network).
    from vault.bundle import verify_bundle

    try:
        data = path.read_bytes()
    except OSError as exc:
        print(f"cannot read {path}: {exc.strerror}", file=sys.stderr)
        return 2
    report = verify_bundle(data)
    _print_report(report.summary(), as_json)
    return 0 if report.ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="civic-vault", description="Civic Vault command line")
    sub = parser.add_subparsers(dest="command", required=True)
    verify = sub.add_parser("verify-bundle", help="check an export bundle offline")
    verify.add_argument("file", type=Path)
    verify.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    if args.command == "verify-bundle":
        return verify_bundle_command(args.file, args.json)
    return 2  # pragma: no cover - argparse refuses unknown commands


if __name__ == "__main__":
    raise SystemExit(main())
