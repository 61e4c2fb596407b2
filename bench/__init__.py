"""Civic Vault benchmarks: ``python -m bench`` (``make bench``, ``make bench-quick``).

Every speed goal is checked here, and only here, as a ratio against a baseline measured in the same
run on the same machine (see ``docs/performance.md``). Timed unit tests are not used for speed.

Adding a benchmark is one function: decorate it with :func:`bench.core.benchmark` in one of the
modules listed in :data:`BENCHMARK_MODULES` (or in a new module added to that list). It receives a
:class:`bench.core.Context` and returns a list of :class:`bench.core.Metric`.
"""

from __future__ import annotations

#: Modules whose ``@benchmark`` functions make up the suite, in the order they run.
BENCHMARK_MODULES = (
    "bench.http_ingest",
    "bench.decrypt_load",
    "bench.dp_query",
    "bench.own_read",
    "bench.consent_decisions",
    "bench.api_latency",
)
