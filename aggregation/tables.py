"""Tables of the aggregation service: the two-level privacy ledger and the release log.

* ``department_budgets``: what the city's data protection officer allows a department to spend per
  calendar month (epsilon), and how much it has spent (reserved releases included);
* ``consent_budgets``: what each citizen's consent allows per period of its own terms, and how much
  of it releases have spent;
* ``dp_releases``: every release (reserved, released, refused or cancelled), with the query, the
  epsilon charged and, once released, the published result;
* ``release_contributions``: which consents a release charged (the citizen's view of who used their
  data, and the queue of "your data was used" entries for their audit chain).

Nothing here holds record values: the result of a release is differentially private output.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from vault.db_types import utc_column


class DepartmentBudgetLimit(SQLModel, table=True):
    """The monthly epsilon a department may spend, set by the data protection officer."""

    __tablename__ = "department_budget_limits"

    department_id: str = Field(primary_key=True, max_length=64)
    epsilon_per_month: float
    set_by: str = Field(max_length=128)
    set_at: datetime = Field(sa_column=utc_column())


class DepartmentBudget(SQLModel, table=True):
    """A department's spending in one calendar month (locked while a release is reserved)."""

    __tablename__ = "department_budgets"

    department_id: str = Field(primary_key=True, max_length=64)
    period_start: datetime = Field(sa_column=utc_column(primary_key=True))
    period_end: datetime = Field(sa_column=utc_column())
    epsilon_limit: float
    epsilon_spent: float = 0.0
    releases: int = 0


class ConsentBudget(SQLModel, table=True):
    """One consent's spending in one period of its own terms (``dp_limits.period``)."""

    __tablename__ = "consent_budgets"

    consent_id: str = Field(primary_key=True, max_length=32)
    period_start: datetime = Field(sa_column=utc_column(primary_key=True))
    period_end: datetime = Field(sa_column=utc_column())
    citizen_id: str = Field(index=True, max_length=32)
    department_id: str = Field(max_length=64)
    epsilon_limit: float
    releases_limit: int
    epsilon_spent: float = 0.0
    releases: int = 0


class DPRelease(SQLModel, table=True):
    """One query's release. ``status``: ``reserved`` (budget held while it runs), ``released``
    (charged and published), ``refused`` (too few citizens: only the size check was charged) or
    ``cancelled`` (failed before anything left the service: fully refunded)."""

    __tablename__ = "dp_releases"

    id: str = Field(primary_key=True, max_length=32)
    department_id: str = Field(index=True, max_length=64)
    purpose: str = Field(max_length=64)
    dataset: str = Field(max_length=64)
    query_json: str
    epsilon: float
    size_check_epsilon: float
    epsilon_charged: float = 0.0
    mechanism: str = Field(default="", max_length=64)
    status: str = Field(max_length=16)
    requested_by: str = Field(max_length=128)
    created_at: datetime = Field(sa_column=utc_column(index=True))
    finished_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    result_json: str | None = None


class ReleaseContribution(SQLModel, table=True):
    """A consent that a release charged. ``noticed`` turns true once the citizen's audit chain
    says so (written after the release is settled, so a long query does not hold every chain;
    contributions of a release still running are not told). ``left_out``: why a released
    query's statistics did not include this consent's data although its size check counted it
    (:data:`aggregation.ledger.LEFT_OUT_REASONS`); ``None`` when they did, or nothing was
    published."""

    __tablename__ = "release_contributions"

    release_id: str = Field(primary_key=True, max_length=32)
    consent_id: str = Field(primary_key=True, max_length=32)
    citizen_id: str = Field(index=True, max_length=32)
    period_start: datetime = Field(sa_column=utc_column())
    epsilon: float
    noticed: bool = Field(default=False, index=True)
    left_out: str | None = Field(default=None, max_length=16)
