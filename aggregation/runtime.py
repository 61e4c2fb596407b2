"""The aggregation service assembled from the vault's runtime and its own settings.

Built by the composition root when the process starts, never at import time. Holds the things that
live as long as the process: the privacy ledger, the resolved-measurement cache and the shard
runner (threads, or a Dask client).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from aggregation import repository
from aggregation.bounded_shards import BoundedShards
from aggregation.dp_measurements import MeasurementCache
from aggregation.ledger import PrivacyLedger
from aggregation.query_service import QueryService
from aggregation.release_notices import deliver_pending
from aggregation.scale_out import DaskShardRunner, ShardRunner, ThreadShardRunner
from aggregation.settings import AggregationSettings
from vault.clock import utcnow
from vault.runtime import VaultRuntime


@dataclass
class AggregationRuntime:
    vault: VaultRuntime
    settings: AggregationSettings
    ledger: PrivacyLedger
    runner: ShardRunner
    queries: QueryService

    @classmethod
    def build(
        cls, vault: VaultRuntime, settings: AggregationSettings | None = None
    ) -> AggregationRuntime:
        settings = settings or AggregationSettings.from_env(vault.settings.extra)
        runner: ShardRunner = (
            DaskShardRunner(settings.dask_scheduler, settings.workers, settings.key_memo_seconds)
            if settings.executor == "dask"
            else ThreadShardRunner(settings.workers, settings.key_memo_seconds)
        )
        ledger = PrivacyLedger(settings.department_epsilon_per_month)
        vault.erasure.add_hook(repository.delete_for_citizen)
        vault.erasure.add_hook(lambda _session, _citizen_id: runner.forget_opened_keys())
        frames = BoundedShards(settings.frame_memo_seconds)
        cache = MeasurementCache(settings.measurement_cache_size)
        queries = QueryService(vault, settings, ledger, runner, cache, frames)

        def forget_memos(_session: object, _citizen_id: str) -> None:
            frames.forget()
            queries.material.forget()
            queries.admissions.forget()

        vault.erasure.add_hook(forget_memos)
        return cls(vault, settings, ledger, runner, queries)

    def deliver_notices(self) -> int:
        """Write the pending "your data was used" entries into citizens' audit chains."""
        return deliver_pending(self.vault.unit_of_work, self.vault.audit)

    def cancel_stale_reservations(self) -> int:
        now = utcnow()
        with self.vault.unit_of_work() as session:
            return self.ledger.cancel_stale(
                session, now - timedelta(seconds=self.settings.reservation_timeout_seconds), now
            )

    def close(self) -> None:
        self.runner.close()
