"""Routes: export everything as a signed bundle; import a bundle; the audit log."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool

from vault.api.body import read_body
from vault.api.deps import Runtime, citizen_id_of, citizen_with_keys, require
from vault.api.schemas import AuditEntryPublic, AuditPublic, ErrorOut, ImportOut
from vault.clock import utcnow
from vault.principal import Principal

router = APIRouter(tags=["portability"])


@router.get(
    "/v1/me/export",
    responses={
        200: {"content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}}}
    },
    response_class=Response,
)
def export(
    rt: Runtime, principal: Annotated[Principal, Depends(require("vault:read"))]
) -> Response:
    """Everything the vault holds about you, as one signed zip (see docs/portability.md)."""
    citizen_id, root = citizen_with_keys(principal)
    with rt.unit_of_work() as session:
        bundle = rt.portability.export(session, citizen_id, root)
    name = f"civic-vault-export-{utcnow().strftime('%Y%m%d-%H%M%S')}.zip"
    return Response(
        bundle,
        media_type="application/zip",
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "Cache-Control": "no-store",
        },
    )


@router.post(
    "/v1/me/import",
    status_code=201,
    response_model=ImportOut,
    openapi_extra={
        "requestBody": {
            "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
            "required": True,
        }
    },
    responses={422: {"model": ErrorOut}, 413: {"model": ErrorOut}},
)
async def import_bundle(
    request: Request,
    rt: Runtime,
    principal: Annotated[Principal, Depends(require("vault:append", "consent:manage"))],
) -> ImportOut:
    """Verify a bundle exported by a Civic Vault and add its streams to your vault."""
    citizen_id, root = citizen_with_keys(principal)
    body = await read_body(request, rt.settings.max_body_bytes)

    def _import() -> ImportOut:
        with rt.unit_of_work() as session:
            result = rt.portability.import_bundle(session, citizen_id, root, body)
        return ImportOut(
            records=result.records,
            source_citizen=result.source_citizen,
            streams=result.streams,
            consents=result.consents,
        )

    return await run_in_threadpool(_import)


@router.get("/v1/me/audit", response_model=AuditPublic)
def audit(
    rt: Runtime, principal: Annotated[Principal, Depends(require("vault:read"))]
) -> AuditPublic:
    """Every read, write, export and grant that touched your data, with a check of the chain."""
    citizen_id = citizen_id_of(principal)
    with rt.unit_of_work() as session:
        view = rt.audit.read(session, citizen_id)
    return AuditPublic(
        citizen_id=citizen_id,
        intact=view.intact,
        problems=view.problems,
        head_hash=view.head.entry_hash if view.head else None,
        entries=[
            AuditEntryPublic(
                seq=e.seq,
                at=e.at,
                actor=e.actor,
                action=e.action,
                details=e.details,
                entry_hash=e.entry_hash,
                prev_hash=e.prev_hash,
            )
            for e in view.entries
        ],
    )
