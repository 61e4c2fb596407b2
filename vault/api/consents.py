"""Routes: department data requests, the citizen's decisions, consents and their renderings."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Query
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from consent.errors import TermsInvalid
from consent.terms import DataCategory, DataRequest, Narrowing, problems_from_validation
from vault.api.deps import Runtime, citizen_id_of, citizen_with_keys, require
from vault.api.schemas import ErrorOut
from vault.clock import utcnow
from vault.errors import Forbidden
from vault.principal import Principal
from vault.services.consent_registry import ConsentView, RequestView
from vault.services.departments import ProcessingRecord

router = APIRouter(tags=["consent"])
Language = Annotated[Literal["en", "es"], Query(description="language of the plain summaries")]


class RequestPublic(BaseModel):
    id: str
    department_id: str
    department_name: str
    title: str
    summary: str
    purpose: str
    stream_types: list[str]
    epsilon_per_period: float | None
    duration: str
    notice_url: str


class RequestList(BaseModel):
    requests: list[RequestPublic]


class AcceptIn(BaseModel):
    """Accept as asked (empty body), or with tighter limits: each field may only narrow."""

    model_config = ConfigDict(extra="forbid")
    epsilon_per_period: float | None = Field(default=None, gt=0)
    not_after: datetime | None = None
    fields: dict[str, list[str]] | None = Field(
        default=None, description="stream type -> the fields you agree to share"
    )
    statistics: list[str] | None = None
    group_by: list[str] | None = None
    min_group_size: int | None = Field(default=None, ge=1)
    max_releases_per_period: int | None = Field(default=None, ge=1)

    def narrowing(self) -> Narrowing | None:
        values = self.model_dump(exclude_none=True)
        if not values:
            return None
        if "fields" in values:
            values["data_categories"] = tuple(
                DataCategory(stream_type=k, fields=tuple(v))
                for k, v in values.pop("fields").items()
            )
        if self.not_after is not None and self.not_after.tzinfo is None:
            values["not_after"] = self.not_after.replace(tzinfo=UTC)
        try:
            return Narrowing.model_validate(values)
        except ValidationError as exc:
            raise TermsInvalid(problems_from_validation(exc)) from None


class ConsentList(BaseModel):
    consents: list[ConsentView]


class ProcessingRecords(BaseModel):
    department_id: str
    records: list[ProcessingRecord]


def _request(view: RequestView) -> RequestPublic:
    return RequestPublic(**{k: v for k, v in view.__dict__.items() if k != "request"})


def _own_department(principal: Principal, department_id: str) -> None:
    if principal.department_id != department_id:
        raise Forbidden("this token acts for another department")


_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorOut},
    409: {"model": ErrorOut},
    422: {"model": ErrorOut},
}


@router.get("/v1/me/requests", response_model=RequestList)
def my_requests(
    rt: Runtime,
    principal: Annotated[Principal, Depends(require("consent:read"))],
    lang: Language = "en",
) -> RequestList:
    """Open requests from city departments that you have not answered yet, in plain words."""
    citizen_id = citizen_id_of(principal)
    with rt.reading() as session:
        views = rt.consents.open_requests(session, citizen_id, lang)
    return RequestList(requests=[_request(v) for v in views])


@router.post(
    "/v1/me/requests/{request_id}/accept",
    status_code=201,
    response_model=ConsentView,
    responses=_ERRORS,
)
def accept_request(
    request_id: str,
    rt: Runtime,
    principal: Annotated[Principal, Depends(require("consent:manage"))],
    body: Annotated[AcceptIn | None, Body()] = None,
) -> ConsentView:
    """Accept a request, optionally with tighter limits. Signs the terms with your key."""
    citizen_id, root = citizen_with_keys(principal)
    narrowing = body.narrowing() if body is not None else None
    with rt.unit_of_work() as session:
        view = rt.consents.accept(session, citizen_id, root, request_id, narrowing, utcnow())
    return view


@router.post("/v1/me/requests/{request_id}/decline", status_code=204, responses=_ERRORS)
def decline_request(
    request_id: str,
    rt: Runtime,
    principal: Annotated[Principal, Depends(require("consent:manage"))],
) -> None:
    citizen_id = citizen_id_of(principal)
    with rt.unit_of_work() as session:
        rt.consents.decline(session, citizen_id, request_id, utcnow())


@router.get("/v1/me/consents", response_model=ConsentList)
def my_consents(
    rt: Runtime,
    principal: Annotated[Principal, Depends(require("consent:read"))],
    lang: Language = "en",
) -> ConsentList:
    citizen_id = citizen_id_of(principal)
    with rt.reading() as session:
        views = rt.consents.list_for(session, citizen_id, lang)
    return ConsentList(consents=views)


@router.get(
    "/v1/me/consents/{consent_id}",
    responses={200: {"content": {"application/json": {}}}, **_ERRORS},
)
def my_consent(
    consent_id: str,
    rt: Runtime,
    principal: Annotated[Principal, Depends(require("consent:read"))],
    format: Annotated[
        Literal["json", "odrl", "iso27560", "kantara"], Query(description="rendering")
    ] = "json",
    lang: Language = "en",
) -> dict[str, Any]:
    """One consent: ours (`json`), or as an ODRL 2.2 Agreement, an ISO/IEC TS 27560 record or a
    Kantara Consent Receipt 1.1."""
    citizen_id = citizen_id_of(principal)
    with rt.reading() as session:
        record = rt.consents.get(session, citizen_id, consent_id)
        if format == "json":
            view = rt.consents.view(session, record, utcnow(), lang)
            rendered: dict[str, Any] = TypeAdapter(ConsentView).dump_python(view, mode="json")
            return rendered
        return rt.consents.render(session, record, format)


@router.post("/v1/me/consents/{consent_id}/withdraw", response_model=ConsentView, responses=_ERRORS)
def withdraw_consent(
    consent_id: str,
    rt: Runtime,
    principal: Annotated[Principal, Depends(require("consent:manage"))],
) -> ConsentView:
    """Withdraw at once: grants are destroyed and the stream keys rotated."""
    citizen_id, root = citizen_with_keys(principal)
    with rt.unit_of_work() as session:
        view = rt.consents.withdraw(session, citizen_id, root, consent_id, utcnow())
    return view


@router.post(
    "/v1/departments/{department_id}/requests",
    status_code=201,
    response_model=RequestPublic,
    responses=_ERRORS,
)
def publish_request(
    department_id: str,
    rt: Runtime,
    principal: Annotated[Principal, Depends(require("department:admin"))],
    body: Annotated[dict[str, Any], Body(description="a data request (see docs/consent.md)")],
) -> RequestPublic:
    _own_department(principal, department_id)
    try:
        request = DataRequest.model_validate(body)
    except ValidationError as exc:
        raise TermsInvalid(problems_from_validation(exc)) from None
    with rt.unit_of_work() as session:
        view = rt.departments.publish(session, department_id, request, utcnow())
    return _request(view)


@router.get(
    "/v1/departments/{department_id}/requests", response_model=RequestList, responses=_ERRORS
)
def department_requests(
    department_id: str,
    rt: Runtime,
    principal: Annotated[Principal, Depends(require("department:admin"))],
    lang: Language = "en",
) -> RequestList:
    _own_department(principal, department_id)
    with rt.reading() as session:
        views = rt.departments.requests(session, department_id, lang)
    return RequestList(requests=[_request(v) for v in views])


@router.get(
    "/v1/departments/{department_id}/processing-records",
    response_model=ProcessingRecords,
    responses=_ERRORS,
)
def processing_records(
    department_id: str,
    rt: Runtime,
    principal: Annotated[Principal, Depends(require("department:admin"))],
) -> ProcessingRecords:
    """GDPR Art. 30 records of processing, generated from the terms in force."""
    _own_department(principal, department_id)
    with rt.reading() as session:
        records: list[ProcessingRecord] = rt.departments.processing_records(session, department_id)
    return ProcessingRecords(
        department_id=department_id,
        records=records,
    )
