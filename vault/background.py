"""Work the vault does on its own, on a timer: ending consents whose validity has run out."""

from __future__ import annotations

import asyncio
import logging

from starlette.concurrency import run_in_threadpool

from vault.clock import utcnow
from vault.runtime import VaultRuntime

log = logging.getLogger("civic_vault.background")


def expire_consents_now(rt: VaultRuntime) -> int:
    with rt.unit_of_work() as session:
        return rt.consents.expire_due(session, utcnow())


async def expire_consents_forever(rt: VaultRuntime, interval_seconds: float) -> None:
    """End expired consents every ``interval_seconds`` (grants deleted, keys rotated, audited).

    Errors are logged and retried on the next tick: expiry is also enforced at every use, so a
    missed tick delays only the clean-up, never the refusal.
    """
    while True:
        try:
            ended = await run_in_threadpool(expire_consents_now, rt)
            if ended:
                log.info("ended %d expired consent(s)", ended)
        except Exception:
            log.exception("consent expiry failed; retrying at the next tick")
        await asyncio.sleep(interval_seconds)
