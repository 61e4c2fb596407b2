"""The HTTP baseline: a bare FastAPI app that does the least an ingest endpoint can do.

It answers the same path as the vault's ingest route, reads the whole body, ``json.loads`` it and
answers 201 ``{"count": n}``: no authentication, validation, encryption or storage. The ratio of the
vault's throughput to this one's is the share of the machine's HTTP capacity the vault keeps.
"""

from __future__ import annotations

import json

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse


def create_baseline_app() -> FastAPI:
    app = FastAPI(title="bench baseline", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/me/streams/{stream_id}/records", status_code=201)
    async def ingest(stream_id: str, request: Request) -> JSONResponse:
        records = json.loads(await request.body())
        return JSONResponse({"count": len(records)}, status_code=201)

    return app
