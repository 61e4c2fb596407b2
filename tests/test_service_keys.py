"""Service key files (vault/service_keys.py) when several server processes start at once."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from vault.service_keys import load_or_create_key_file


def _load(args: tuple[str, int]) -> bytes:
    keys_dir, _ = args
    return load_or_create_key_file(Path(keys_dir) / "aggregation.x25519")


def test_processes_starting_together_all_read_one_whole_key(tmp_path: Path) -> None:
    """Before keys were linked into place whole, some of 400 racing starts read an empty file."""
    context = multiprocessing.get_context("fork")
    for round_no in range(20):
        keys_dir = tmp_path / f"round-{round_no}" / "keys"
        with context.Pool(8) as pool:
            keys = pool.map(_load, [(str(keys_dir), i) for i in range(16)])
        assert len(set(keys)) == 1
        assert len(keys[0]) == 32
        assert [p.name for p in keys_dir.iterdir()] == ["aggregation.x25519"]  # no drafts left
        assert (keys_dir / "aggregation.x25519").stat().st_mode & 0o777 == 0o600
