"""HTTP routes of the aggregation service. They parse, authorize, call a service and shape the
response; nothing else. The token gate is the vault's one ``require`` dependency, handed in by the
composition root (this package must not import the vault's web layer).

* analysts and department services (aggregation audience, ``aggregate:query``):
  ``GET /v1/datasets``, ``POST /v1/queries:preview``, ``POST /v1/queries``,
  ``GET /v1/queries/{release_id}``, ``GET /v1/departments/{department_id}/budget``;
* the data protection officer (``department:admin``): ``PUT /v1/departments/{id}/budget``;
* anyone: the public release log ``GET /v1/releases`` and ``GET /v1/releases/{release_id}``;
* citizens (vault audience, ``consent:read``): ``GET /v1/me/budget``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Depends, Query, Request, status
from pydantic import BaseModel, Field

from aggregation.query_spec import QueryRequest
from aggregation.runtime import AggregationRuntime
from aggregation.views import (
    BudgetPublic,
    CitizenBudgetList,
    DatasetList,
    PreviewPublic,
    ReleaseLog,
    ReleasePublic,
    citizen_budgets,
    dataset_list,
    department_budget,
)
from vault.clock import utcnow
from vault.principal import AGGREGATION_AUDIENCE, VAULT_AUDIENCE, Principal

Require = Callable[..., Callable[..., Awaitable[Principal]]]


class BudgetLimitIn(BaseModel):
    epsilon_per_month: float = Field(description="the department's epsilon per calendar month")


async def _runtime(request: Request) -> AggregationRuntime:
    value: AggregationRuntime = request.app.state.aggregation
    return value


Runtime = Annotated[AggregationRuntime, Depends(_runtime)]


def build_router(require: Require, citizen_id_of: Callable[[Principal], str]) -> APIRouter:
    """The routes, with the vault's token gate (``require``) and its citizen check."""
    router = APIRouter(tags=["statistics"])
    # Dependencies as default values: annotations are strings here (PEP 563) and FastAPI resolves
    # them in the module's globals, where these per-router gates do not live.
    analyst = Depends(require("aggregate:query", audience=AGGREGATION_AUDIENCE))
    officer = Depends(require("department:admin", audience=AGGREGATION_AUDIENCE))
    citizen_reader = Depends(require("consent:read", audience=VAULT_AUDIENCE))

    @router.get("/v1/datasets", response_model=DatasetList)
    def list_datasets(rt: Runtime, principal: Principal = analyst) -> dict[str, Any]:
        """What can be asked: datasets, numeric fields with units and bounds, public grouping
        dimensions, the latest published DP count of contributors, the department's budget."""
        return dataset_list(rt, principal)

    @router.post("/v1/queries:preview", response_model=PreviewPublic)
    def preview_query(
        body: QueryRequest, rt: Runtime, principal: Principal = analyst
    ) -> dict[str, Any]:
        """Expected accuracy of each statistic for this epsilon. Spends nothing."""
        return rt.queries.preview(principal, body)

    @router.post("/v1/queries", response_model=ReleasePublic, status_code=status.HTTP_201_CREATED)
    def run_query(
        body: QueryRequest,
        rt: Runtime,
        background: BackgroundTasks,
        principal: Principal = analyst,
    ) -> dict[str, Any]:
        """Release differentially private statistics under the citizens' terms; spends epsilon."""
        view = rt.queries.run(principal, body)
        # The contributors' activity entries are written after the answer is sent (and by the
        # upkeep loop if this process stops first): thousands of chains need not delay it.
        background.add_task(rt.deliver_notices)
        return view

    @router.get("/v1/queries/{release_id}", response_model=ReleasePublic)
    def get_query(release_id: str, rt: Runtime, principal: Principal = analyst) -> dict[str, Any]:
        """A release of your department again, at no cost."""
        return rt.queries.get(principal, release_id)

    @router.get("/v1/departments/{department_id}/budget", response_model=BudgetPublic)
    def get_budget(
        department_id: str, rt: Runtime, principal: Principal = analyst
    ) -> dict[str, Any]:
        return department_budget(rt, principal, department_id, None)

    @router.put("/v1/departments/{department_id}/budget", response_model=BudgetPublic)
    def set_budget(
        department_id: str, body: BudgetLimitIn, rt: Runtime, principal: Principal = officer
    ) -> dict[str, Any]:
        """Set the department's monthly budget (the data protection officer)."""
        return department_budget(rt, principal, department_id, body.epsilon_per_month)

    @router.get("/v1/releases", response_model=ReleaseLog)
    def release_log(
        rt: Runtime,
        department: Annotated[str | None, Query(max_length=64)] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
        before: datetime | None = None,
    ) -> dict[str, Any]:
        """The public log of releases: who, for what, what was asked, the privacy loss; no data."""
        return {"releases": rt.queries.public_log(department, limit, before)}

    @router.get("/v1/releases/{release_id}", response_model=ReleasePublic)
    def release_record(release_id: str, rt: Runtime) -> dict[str, Any]:
        """A published release with its statistics (differentially private output only)."""
        return rt.queries.public_record(release_id)

    @router.get("/v1/me/budget", response_model=CitizenBudgetList)
    def my_budget(rt: Runtime, principal: Principal = citizen_reader) -> dict[str, Any]:
        """Your privacy budget: spent and left per consent and period, and who used it."""
        return citizen_budgets(rt, citizen_id_of(principal), utcnow())

    return router
