"""The privacy ledger: the single place that spends (and refunds) privacy budget.

Two levels, both persistent:

* the **department**: per calendar month, at most the epsilon the data protection officer set
  (``department_budget_limits``; the service default when unset);
* each **citizen's consent**: per period of its own terms, at most ``epsilon_per_period`` and at
  most ``max_releases_per_period`` releases.

A release runs in three steps. :meth:`PrivacyLedger.reserve` (one transaction) locks the
department's row, refuses when the query's epsilon is more than the department has left, locks the
admitted consents' rows in a fixed order, drops the consents whose budget cannot cover the query,
and charges the query's whole epsilon to the department and to every remaining consent, recording
a ``reserved`` release. The release is then computed outside any transaction. :meth:`settle`
(another transaction) records the outcome: ``released`` keeps the charges; ``refused`` (too few
citizens) and the consents a release left out (by their minimum group size, or because they were
withdrawn or changed before their data was read) are refunded all but the size check, which
counted them; ``cancelled`` (nothing left the service) is refunded entirely. A reservation left behind by
a crash is cancelled by :meth:`cancel_stale` once it is older than any query can run.

Properties (tests: ``tests/test_aggregation_ledger.py``, with 50 concurrent queries on PostgreSQL):
concurrent releases never overspend either level (rows are locked on PostgreSQL; SQLite takes one
writer at a time); the charge is data-independent (every admitted consent whose budget covers the
query pays the same epsilon, whatever its records); a release is ``released`` if and only if its
charges stand.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session

from aggregation import repository
from aggregation.consent_gate import AdmittedConsent
from aggregation.errors import DepartmentBudgetExceeded, ReservationLost
from aggregation.periods import ConsentPeriods, calendar_month
from aggregation.tables import (
    ConsentBudget,
    DepartmentBudget,
    DepartmentBudgetLimit,
    DPRelease,
)
from vault.errors import InvalidInput, NotFound

#: Budgets and charges are compared with a little slack so that 0.1 + 0.2 may spend a budget of
#: 0.3 (they are sums and differences of floats).
EPSILON_SLACK = 1e-9

#: Why a released query left out the data of a consent its size check counted: the consent's
#: minimum group size was above the noisy count, or the citizen withdrew or changed the consent
#: between the gate and the reading of the data.
LeftOut = Literal["group_size", "consent_changed"]
LEFT_OUT_REASONS: tuple[LeftOut, ...] = ("group_size", "consent_changed")


@dataclass(frozen=True, slots=True)
class DepartmentStatus:
    department_id: str
    period_start: datetime
    period_end: datetime
    epsilon_limit: float
    epsilon_spent: float
    releases: int

    @property
    def epsilon_left(self) -> float:
        return max(0.0, self.epsilon_limit - self.epsilon_spent)


@dataclass(frozen=True, slots=True)
class Charged:
    """A consent the reservation charged, with its period."""

    consent: AdmittedConsent
    period_start: datetime
    period_end: datetime


@dataclass(frozen=True, slots=True)
class Reservation:
    release_id: str
    department: DepartmentStatus
    charged: tuple[Charged, ...]


def _insert_ignore(session: Session, table: type, rows: list[dict[str, object]]) -> None:
    """Insert rows, skipping those whose primary key exists (a concurrent reservation made it)."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    # On the table, not the ORM entity: SQLAlchemy's ORM bulk insert spends Python per row.
    stmt = insert(table.__table__).on_conflict_do_nothing()  # type: ignore[attr-defined]
    connection = session.connection()
    for first in range(0, len(rows), 5000):
        connection.execute(stmt, rows[first : first + 5000])


class PrivacyLedger:
    def __init__(self, default_department_epsilon: float) -> None:
        self._default = default_department_epsilon
        self._periods = ConsentPeriods()

    # -- department level ----------------------------------------------------------------------

    def department_limit(self, session: Session, department_id: str) -> float:
        row = repository.department_limit(session, department_id)
        return self._default if row is None else row.epsilon_per_month

    def set_department_limit(
        self, session: Session, department_id: str, epsilon: float, by: str, at: datetime
    ) -> DepartmentStatus:
        """The DPO sets the monthly budget; it applies to the current month at once."""
        if not 0 <= epsilon <= 1000:
            raise InvalidInput(
                "epsilon_per_month must be between 0 and 1000",
                details=[{"field": "epsilon_per_month", "reason": "between 0 and 1000"}],
            )
        row = repository.department_limit(session, department_id)
        if row is None:
            row = DepartmentBudgetLimit(
                department_id=department_id, epsilon_per_month=epsilon, set_by=by, set_at=at
            )
        else:
            row.epsilon_per_month, row.set_by, row.set_at = epsilon, by, at
        session.add(row)
        start, _ = calendar_month(at)
        budget = repository.department_budget(session, department_id, start, for_update=True)
        if budget is not None:
            budget.epsilon_limit = epsilon
            session.add(budget)
        session.flush()
        return self.department_status(session, department_id, at)

    def department_status(
        self, session: Session, department_id: str, at: datetime
    ) -> DepartmentStatus:
        start, end = calendar_month(at)
        row = repository.department_budget(session, department_id, start)
        if row is None:
            return DepartmentStatus(
                department_id, start, end, self.department_limit(session, department_id), 0.0, 0
            )
        return DepartmentStatus(
            department_id, start, end, row.epsilon_limit, row.epsilon_spent, row.releases
        )

    def _lock_department(
        self, session: Session, department_id: str, at: datetime
    ) -> DepartmentBudget:
        start, end = calendar_month(at)
        _insert_ignore(
            session,
            DepartmentBudget,
            [
                {
                    "department_id": department_id,
                    "period_start": start,
                    "period_end": end,
                    "epsilon_limit": self.department_limit(session, department_id),
                    "epsilon_spent": 0.0,
                    "releases": 0,
                }
            ],
        )
        row = repository.department_budget(session, department_id, start, for_update=True)
        assert row is not None
        return row

    # -- releases ------------------------------------------------------------------------------

    def reserve(
        self,
        session: Session,
        *,
        department_id: str,
        purpose: str,
        dataset: str,
        query: dict[str, object],
        epsilon: float,
        size_check_epsilon: float,
        admitted: Sequence[AdmittedConsent],
        requested_by: str,
        at: datetime,
    ) -> Reservation:
        """Charge ``epsilon`` to the department and to every admitted consent that can pay it;
        raises :class:`DepartmentBudgetExceeded` (nothing charged) when the department cannot."""
        dept = self._lock_department(session, department_id, at)
        left = dept.epsilon_limit - dept.epsilon_spent
        if epsilon > left + EPSILON_SLACK:
            raise DepartmentBudgetExceeded(
                f"epsilon {epsilon:g} is more than the {max(0.0, left):g} the {department_id} "
                f"department has left until {dept.period_end.date().isoformat()}",
                details=[
                    {
                        "field": "epsilon",
                        "reason": "more than the department's budget left",
                        "epsilon_left": max(0.0, left),
                        "period_end": dept.period_end.isoformat(),
                    }
                ],
            )
        periods = {
            a.consent_id: self._periods.period(a.not_before, a.limits.period, at) for a in admitted
        }
        # The charges are staged, checked and made by a few set statements in this transaction
        # (a city-wide release charges a row per citizen); the rule is this module's.
        repository.stage_charges(
            session,
            department_id,
            (
                (
                    a.consent_id,
                    *periods[a.consent_id],
                    a.citizen_id,
                    a.limits.epsilon_per_period,
                    a.limits.max_releases_per_period,
                )
                for a in admitted
            ),
        )
        repository.lock_staged_budgets(session)
        release_id = uuid.uuid4().hex
        dept.epsilon_spent += epsilon
        dept.releases += 1
        session.add(dept)
        session.add(
            DPRelease(
                id=release_id,
                department_id=department_id,
                purpose=purpose,
                dataset=dataset,
                query_json=json.dumps(query, sort_keys=True),
                epsilon=epsilon,
                size_check_epsilon=size_check_epsilon,
                epsilon_charged=epsilon,
                status="reserved",
                requested_by=requested_by,
                created_at=at,
            )
        )
        session.flush()
        # A consent pays only if its budget row can: spent + epsilon within its limit (with
        # EPSILON_SLACK), and fewer releases than its limit; the others are left out.
        paid = repository.charge_staged(session, release_id, epsilon, EPSILON_SLACK)
        charged = [Charged(a, *periods[a.consent_id]) for a in admitted if a.consent_id in paid]
        session.expire_all()  # budget rows loaded before now are stale
        status = DepartmentStatus(
            department_id,
            dept.period_start,
            dept.period_end,
            dept.epsilon_limit,
            dept.epsilon_spent,
            dept.releases,
        )
        return Reservation(release_id, status, tuple(charged))

    @staticmethod
    def _add_to_consents(
        session: Session, keys: Sequence[tuple[str, datetime]], epsilon: float, releases: int
    ) -> None:
        if not keys:
            return
        repository.add_to_consent_budgets(session, keys, epsilon, releases)
        session.expire_all()  # rows loaded before now are stale

    def settle(
        self,
        session: Session,
        release_id: str,
        *,
        outcome: str,
        left_out: Mapping[str, LeftOut] | None = None,
        mechanism: str = "",
        result: dict[str, object] | None = None,
        at: datetime,
    ) -> DPRelease:
        """Record the outcome of a reserved release (see the module docstring).

        Works from the stored contributions, not from memory, so that a crash between the steps
        is settled the same way. ``left_out`` (``released`` only): the charged consents whose
        data did not go into the statistics, each with its reason; they keep only the size
        check's charge, and the reason is stored for the citizen's notice. A city-wide release
        reads back only those.
        """
        if outcome not in ("released", "refused", "cancelled"):
            raise ValueError(f"unknown outcome {outcome!r}")
        left_out = left_out or {}
        if outcome != "released" and left_out:
            raise ValueError("only a released query leaves consents out of its statistics")
        unknown = set(left_out.values()) - set(LEFT_OUT_REASONS)
        if unknown:  # it would be refunded yet recorded as used
            raise ValueError(f"unknown reasons for leaving consents out: {sorted(unknown)}")
        row = repository.release(session, release_id, for_update=True)
        if row is None:
            raise NotFound(f"no reserved release {release_id}")
        if row.status != "reserved":
            raise ReservationLost(
                "this query ran longer than its budget reservation lasts "
                f"({row.status} by the upkeep); nothing was released or charged: run it again",
                headers={"Retry-After": "1"},
            )
        refund_all = outcome == "cancelled"
        refund = row.epsilon if refund_all else row.epsilon - row.size_check_epsilon
        if outcome != "released":
            partial = repository.contribution_keys(session, release_id)
        elif left_out:
            partial = repository.contribution_keys(session, release_id, only=left_out)
        else:
            partial = []
        # Locks in the order reserve() takes them (department, then consents), so that a refund
        # and a reservation running at once cannot deadlock on PostgreSQL.
        if outcome != "released":
            dept = self._lock_department(session, row.department_id, row.created_at)
            dept.epsilon_spent = max(0.0, dept.epsilon_spent - refund)
            dept.releases = max(0, dept.releases - 1)
            session.add(dept)
            session.flush()
        self._add_to_consents(session, partial, -refund, -1)
        if refund_all:
            repository.delete_contributions(session, release_id)
        elif outcome == "refused":
            repository.set_contribution_epsilon(
                session, release_id, [c[0] for c in partial], row.epsilon - refund
            )
        else:
            for reason in LEFT_OUT_REASONS:
                repository.set_contribution_epsilon(
                    session,
                    release_id,
                    [c[0] for c in partial if left_out.get(c[0]) == reason],
                    row.epsilon - refund,
                    left_out=reason,
                )
        row.status = outcome
        row.epsilon_charged = {
            "released": row.epsilon,
            "refused": row.size_check_epsilon,
            "cancelled": 0.0,
        }[outcome]
        row.mechanism = mechanism
        row.finished_at = at
        row.result_json = None if result is None else json.dumps(result, sort_keys=True)
        session.add(row)
        session.flush()
        return row

    def cancel_stale(self, session: Session, older_than: datetime, at: datetime) -> int:
        """Cancel reservations a crash left behind (nothing of them was ever released)."""
        stale = repository.stale_reservations(session, older_than)
        for row in stale:
            self.settle(session, row.id, outcome="cancelled", at=at)
        return len(stale)

    # -- citizens ------------------------------------------------------------------------------

    @staticmethod
    def budgets_of_citizen(session: Session, citizen_id: str) -> Sequence[ConsentBudget]:
        return repository.budgets_of_citizen(session, citizen_id)
