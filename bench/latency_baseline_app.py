"""The baseline of ``api_latency``: a bare FastAPI app that answers GET routes with fixed bytes.

The file named by ``BENCH_LATENCY_BODIES`` maps each path to the exact JSON body the vault gave for
it (``{"/v1/me/streams": "{...}", ...}``); the benchmark writes it after asking the vault once. Each
route answers 200 with those bytes as ``application/json``: no token check, database, validation
or serialisation. The response the client reads is byte for byte the vault's, so the difference
between the two is what the vault does per request, and whatever the server configuration costs
(uvicorn, its workers, the socket options) is paid by both sides alike.
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import Response

BODIES_VARIABLE = "BENCH_LATENCY_BODIES"


def write_bodies(path: Path, bodies: dict[str, bytes]) -> Path:
    """Write the file the app reads (``bodies``: path -> the vault's exact answer, UTF-8 JSON)."""
    path.write_text(json.dumps({route: body.decode("utf-8") for route, body in bodies.items()}))
    return path


def _answer(body: bytes) -> Callable[[], Awaitable[Response]]:
    async def answer() -> Response:
        return Response(content=body, media_type="application/json")

    return answer


def create_latency_baseline_app() -> FastAPI:
    app = FastAPI(title="bench latency baseline", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    bodies: dict[str, str] = json.loads(Path(os.environ[BODIES_VARIABLE]).read_text())
    for route, body in bodies.items():
        app.add_api_route(route, _answer(body.encode("utf-8")), methods=["GET"])
    return app
