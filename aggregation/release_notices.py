"""Telling citizens: one entry in each contributing citizen's audit chain per settled release,
"your data was used in release X by department Y for purpose Z, epsilon E; you have F left until
DATE" (action ``data.used_in_release``), or, for a refused query and for a consent a release left
out, that a size check counted them (``data.counted_in_size_check``; ``left_out`` says why a
published release did not use their data: ``group_size`` or ``consent_changed``).

Written after the release commits, in batches, from the ``release_contributions`` rows still marked
unnoticed: a crash in between only delays the entries (the next sweep writes them), and each entry
is written once (the row is marked in the same transaction as the entry).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

from sqlmodel import Session

from aggregation import repository
from aggregation.ledger import EPSILON_SLACK
from aggregation.tables import DPRelease, ReleaseContribution
from vault.services.audit_log import AuditLog

USED_IN_RELEASE = "data.used_in_release"
COUNTED_IN_SIZE_CHECK = "data.counted_in_size_check"
ACTOR_PREFIX = "department:"


def _details(
    contribution: ReleaseContribution,
    release: DPRelease,
    budget: repository.BudgetState | None,
    used: bool,
) -> dict[str, object]:
    left = None if budget is None else max(0.0, budget.epsilon_limit - budget.epsilon_spent)
    details: dict[str, object] = {
        "release_id": contribution.release_id,
        "status": release.status,
        "department": release.department_id,
        "purpose": release.purpose,
        "dataset": release.dataset,
        "consent_id": contribution.consent_id,
        "epsilon": round(contribution.epsilon, 9),
        "epsilon_left": None if left is None else round(left, 9),
        "period_end": None if budget is None else budget.period_end.isoformat(),
    }
    if release.status == "released" and not used:
        # Published without this consent's data. Rows from before the reason was stored
        # (migration 0006) could only be left out by their group size.
        details["left_out"] = contribution.left_out or "group_size"
    return details


def deliver_pending(
    unit_of_work: Callable[[], AbstractContextManager[Session]],
    audit: AuditLog,
    batch: int = 500,
) -> int:
    """Write the pending entries, ``batch`` per transaction; returns how many were written."""
    written = 0
    while True:
        with unit_of_work() as session:
            pending = repository.unnoticed_contributions(session, batch)
            if not pending:
                return written
            releases = {r: repository.release(session, r) for r in {p.release_id for p in pending}}
            budgets = repository.consent_budgets(
                session, [(p.consent_id, p.period_start) for p in pending]
            )
            by_release: dict[str, list[str]] = {}
            for p in pending:
                row = releases[p.release_id]
                if row is None:
                    continue
                # Released, yet charged less than the release's epsilon: the consent was left out
                # (``left_out`` says why), so only the size check counted it.
                used = (
                    row.status == "released" and p.epsilon > row.size_check_epsilon + EPSILON_SLACK
                )
                audit.append(
                    session,
                    p.citizen_id,
                    ACTOR_PREFIX + row.department_id,
                    USED_IN_RELEASE if used else COUNTED_IN_SIZE_CHECK,
                    _details(p, row, budgets.get((p.consent_id, p.period_start)), used),
                )
                by_release.setdefault(p.release_id, []).append(p.consent_id)
            for release_id, consent_ids in by_release.items():
                repository.mark_noticed(session, release_id, consent_ids)
            written += len(pending)
