"""Routes: health and the catalogue of stream types (public, no token needed)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlalchemy import text

from vault.api.deps import Runtime

router = APIRouter(tags=["catalogue"])


@router.get("/healthz")
def healthz(rt: Runtime) -> dict[str, str]:
    with rt.engine.connect() as conn:
        conn.execute(text("SELECT 1"))
        conn.rollback()
    return {"status": "ok"}


@router.get("/v1/stream-types")
def stream_types(rt: Runtime) -> dict[str, Any]:
    return rt.catalogue.to_public_dict()
