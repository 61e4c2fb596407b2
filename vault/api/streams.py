"""Routes: the citizen's streams, appending batches, reading records back."""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from vault.api.body import read_body
from vault.api.deps import (
    Runtime,
    admit_request,
    bearer_security,
    citizen_with_keys,
    require,
    stream_citizen_id,
)
from vault.api.record_formats import PARQUET_TYPES, choose, render
from vault.api.schemas import (
    ErrorOut,
    IngestOut,
    RecordsPagePublic,
    StreamIn,
    StreamList,
)
from vault.errors import NotFound
from vault.oauth.enforcement import require_authorization_details, visible_stream_types
from vault.principal import Principal
from vault.runtime import VaultRuntime
from vault.services.ingest import MAX_IDEMPOTENCY_KEY, PreparedBatch
from vault.services.streams import StreamSummary

router = APIRouter(tags=["streams"])

_APPEND_SCOPES = frozenset({"vault:append"})

#: Bodies up to this size for a stream whose type is known are prepared on the event loop.
INLINE_PREPARE_BYTES = 4096

_BATCH_BODY = {
    "content": {
        "application/json": {"schema": {"type": "array", "items": {"type": "object"}}},
        "application/x-ndjson": {"schema": {"type": "string"}},
        "text/csv": {"schema": {"type": "string"}},
    },
    "required": True,
}
_IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "Send the same key again to retry a batch safely: it is stored once.",
    "schema": {"type": "string", "minLength": 1, "maxLength": MAX_IDEMPOTENCY_KEY},
}


@router.post("/v1/me/streams", status_code=201, response_model=StreamSummary)
def create_stream(
    body: StreamIn, rt: Runtime, principal: Annotated[Principal, Depends(require("vault:append"))]
) -> StreamSummary:
    citizen_id = stream_citizen_id(principal)
    require_authorization_details(principal, body.stream_type, "append")
    with rt.unit_of_work() as session:
        summary = rt.streams.create(
            session, citizen_id, body.stream_type, body.label, principal.actor
        )
    return summary


@router.get("/v1/me/streams", response_model=StreamList)
def list_streams(
    rt: Runtime, principal: Annotated[Principal, Depends(require("vault:read"))]
) -> StreamList:
    citizen_id = stream_citizen_id(principal)
    visible = visible_stream_types(principal)
    with rt.reading() as session:
        summaries = rt.streams.list(session, citizen_id)
    return StreamList(streams=[s for s in summaries if visible is None or s.stream_type in visible])


@router.get("/v1/me/streams/{stream_id}", response_model=StreamSummary)
def get_stream(
    stream_id: str, rt: Runtime, principal: Annotated[Principal, Depends(require("vault:read"))]
) -> StreamSummary:
    citizen_id = stream_citizen_id(principal)
    with rt.reading() as session:
        stream = rt.streams.get_owned(session, citizen_id, stream_id)
        visible = visible_stream_types(principal)
        if visible is not None and stream.stream_type not in visible:
            raise NotFound(f"no stream {stream_id!r} in your vault")
        return rt.streams.summary(session, stream)


@router.post(
    "/v1/me/streams/{stream_id}/records",
    status_code=201,
    response_model=IngestOut,
    openapi_extra={
        "requestBody": _BATCH_BODY,
        "parameters": [_IDEMPOTENCY_KEY],
        "security": bearer_security(_APPEND_SCOPES),
    },
    responses={
        401: {"model": ErrorOut},
        403: {"model": ErrorOut},
        413: {"model": ErrorOut},
        415: {"model": ErrorOut},
        422: {"model": ErrorOut},
    },
)
async def append_records(stream_id: str, request: Request) -> Response:
    """Append a batch (JSON array, NDJSON or CSV). One bad row rejects the whole batch with 422."""
    # The token, the runtime and the Idempotency-Key header are read off the request rather than
    # declared as dependencies, and the answer is serialised here: on the busiest route FastAPI's
    # dependency resolution and response validation cost the event loop more than the token check
    # itself (docs/performance.md). The token goes through the same check as every route
    # (deps.admit); the OpenAPI operation still declares the bearer token and the header.
    principal = await admit_request(request, _APPEND_SCOPES)
    rt: VaultRuntime = request.app.state.vault
    idempotency_key = request.headers.get("idempotency-key")
    citizen_id = stream_citizen_id(principal)
    body = await read_body(request, rt.settings.max_body_bytes)
    content_type = request.headers.get("content-type")
    stream_type = rt.ingest.known_stream_type(citizen_id, stream_id)
    if stream_type is not None and len(body) <= INLINE_PREPARE_BYTES:
        # A reading or two from a known stream: cheaper here than a trip to a worker thread.
        prepared = rt.ingest.prepare_for_type(
            stream_type, stream_id, body, content_type, idempotency_key
        )
    else:

        def _prepare() -> PreparedBatch:
            # Validate and encode outside the write transaction.
            with rt.reading() as session:
                return rt.ingest.prepare(
                    session, citizen_id, stream_id, body, content_type, idempotency_key
                )

        prepared = await run_in_threadpool(_prepare)
    require_authorization_details(principal, prepared.stream_type, "append")
    # Shares a transaction (and its disk flush) with the other writes queued meanwhile; answered
    # only once committed.
    result = await rt.writes.run(
        functools.partial(
            rt.ingest.commit, citizen_id=citizen_id, batch=prepared, actor=principal.actor
        ),
        order=(citizen_id, stream_id),
    )
    out = IngestOut(**result.__dict__)
    return Response(out.model_dump_json().encode(), 201, media_type="application/json")


@router.get(
    "/v1/me/streams/{stream_id}/records",
    response_model=RecordsPagePublic,
    responses={
        200: {
            "content": {
                "text/csv": {"schema": {"type": "string"}},
                "application/x-ndjson": {"schema": {"type": "string"}},
                PARQUET_TYPES[0]: {"schema": {"type": "string", "format": "binary"}},
            }
        },
        406: {"model": ErrorOut},
    },
)
def read_records(
    stream_id: str,
    rt: Runtime,
    principal: Annotated[Principal, Depends(require("vault:read"))],
    since: Annotated[datetime | None, Query(alias="from", description="inclusive")] = None,
    until: Annotated[datetime | None, Query(alias="to", description="exclusive")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    format: Annotated[str | None, Query(description="json, csv, ndjson or parquet")] = None,
    accept: Annotated[str | None, Header()] = None,
) -> Response:
    media = choose(accept, format)
    if principal.kind == "app":
        # An app reads through the grant its consent names, never with the citizen's own key.
        with rt.unit_of_work() as session:
            stream = rt.streams.get_owned(session, stream_citizen_id(principal), stream_id)
            require_authorization_details(principal, stream.stream_type, "read")
            opener = rt.app_consents.read_opener(session, principal, stream.stream_type)
            app_page = rt.records.page_with(
                session, stream, opener, since=_aware(since), until=_aware(until),
                limit=limit, cursor=cursor, actor=principal.actor,
            )  # fmt: skip
        return render(app_page, media)
    citizen_id, root = citizen_with_keys(principal)
    with rt.unit_of_work() as session:
        page = rt.records.page(
            session,
            citizen_id,
            stream_id,
            root,
            since=_aware(since),
            until=_aware(until),
            limit=limit,
            cursor=cursor,
            actor=principal.actor,
        )
    return render(page, media)


def _aware(moment: datetime | None) -> datetime | None:
    """Query times without a zone are read as UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)
