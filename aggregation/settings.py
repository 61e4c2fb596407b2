"""The aggregation service's settings, from ``CIVIC_AGGREGATION_*`` variables (documented in
``docs/configuration.md``), read when asked for (never at import time)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from vault.settings import SettingsError

EXECUTORS = ("threads", "dask")


def _number(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise SettingsError(f"{name}={raw!r}: expected a number") from exc
    if not math.isfinite(value) or not low <= value <= high:
        raise SettingsError(f"{name}={raw!r}: must be between {low:g} and {high:g}")
    return value


@dataclass(frozen=True)
class AggregationSettings:
    #: Monthly epsilon of a department whose budget the data protection officer has not set.
    department_epsilon_per_month: float = 10.0
    #: Share of a query's epsilon spent on the noisy count of contributors (size check).
    size_check_share: float = 0.1
    #: Where decrypt-and-bound runs: ``threads`` (in-process) or ``dask``.
    executor: str = "threads"
    #: Dask scheduler address (``tcp://host:8786``) or ``local`` (a LocalCluster started here).
    dask_scheduler: str = "local"
    workers: int = 2
    shard_citizens: int = 2000
    #: Resolved OpenDP measurements kept (each costs seconds to build).
    measurement_cache_size: int = 64
    #: A reservation older than this was left by a crash and is cancelled (seconds).
    reservation_timeout_seconds: int = 900
    #: How long opened stream and chunk keys are remembered between queries (seconds; 0: not at
    #: all). See ``aggregation/opened_keys.py``.
    key_memo_seconds: float = 900.0
    #: How long bounded frames of shards are remembered between queries (seconds; 0: not at
    #: all). See ``aggregation/bounded_shards.py``.
    frame_memo_seconds: float = 900.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> AggregationSettings:
        executor = env.get("CIVIC_AGGREGATION_EXECUTOR", "threads") or "threads"
        if executor not in EXECUTORS:
            raise SettingsError(
                f"CIVIC_AGGREGATION_EXECUTOR={executor!r}: expected one of {', '.join(EXECUTORS)}"
            )
        return cls(
            department_epsilon_per_month=_number(
                env, "CIVIC_AGGREGATION_DEPARTMENT_EPSILON", 10.0, 0.0, 1000.0
            ),
            size_check_share=_number(env, "CIVIC_AGGREGATION_SIZE_CHECK_SHARE", 0.1, 0.01, 0.5),
            executor=executor,
            dask_scheduler=env.get("CIVIC_AGGREGATION_DASK_SCHEDULER") or "local",
            workers=int(_number(env, "CIVIC_AGGREGATION_WORKERS", 2, 1, 256)),
            shard_citizens=int(_number(env, "CIVIC_AGGREGATION_SHARD_CITIZENS", 2000, 1, 1e6)),
            measurement_cache_size=int(
                _number(env, "CIVIC_AGGREGATION_MEASUREMENT_CACHE", 64, 0, 10_000)
            ),
            reservation_timeout_seconds=int(
                _number(env, "CIVIC_AGGREGATION_RESERVATION_TIMEOUT", 900, 10, 86_400)
            ),
            key_memo_seconds=_number(env, "CIVIC_AGGREGATION_KEY_MEMO_SECONDS", 900, 0, 86_400),
            frame_memo_seconds=_number(env, "CIVIC_AGGREGATION_FRAME_MEMO_SECONDS", 900, 0, 86_400),
        )
