"""The HTTP baseline: a bare FastAPI app that does the least each benchmarked endpoint can do.

* ``POST /v1/me/streams/{stream_id}/records`` (ingest): reads the whole body, ``json.loads`` it and
  answers 201 ``{"count": n}``: no authentication, validation, encryption or storage. The ratio of
  the vault's throughput to this one's is the share of the machine's HTTP capacity the vault keeps.
* ``GET /v1/me/streams/{stream_id}/records`` (own-data read): a plaintext server doing the same
  job as the vault's read route. It reads the stream's records from a plaintext Parquet file with
  polars on every request (as the vault reads its chunks from the database on every request), takes
  the page (``limit`` and the vault's ``cursor``) and answers exactly the bytes and headers the
  vault's JSON answer has, rendered the cheapest way (``DataFrame.write_json``): no
  authentication, no key to open, no decryption, no audit entry. Like the vault's, the route is a
  plain ``def`` (run on FastAPI's thread pool). The benchmark checks once that both answers are byte
  for byte the same.
* ``PUT /bench/plaintext/{stream_id}`` tells the app where the plaintext copy of a stream is
  (``{"path": ..., "stream_type": ...}``); only the benchmark calls it, on 127.0.0.1.
"""

from __future__ import annotations

import base64
import binascii
import json
from pathlib import Path
from typing import Annotated

import polars as pl
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response

#: The vault's text form of timestamps in JSON answers (``vault.api.record_formats.TS_FORMAT``).
TS_FORMAT = "%Y-%m-%dT%H:%M:%S%.6fZ"
MAX_PAGE = 10_000


def _offset(cursor: str | None) -> int:
    """The vault's cursor (urlsafe base64 of ``{"offset": n}``, unpadded) read back."""
    if not cursor:
        return 0
    try:
        offset = json.loads(base64.urlsafe_b64decode(cursor.encode("ascii") + b"==="))["offset"]
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise HTTPException(400, "bad cursor") from exc
    if not isinstance(offset, int) or offset < 0:
        raise HTTPException(400, "bad cursor")
    return offset


def _cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode().rstrip("=")


def _dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def create_baseline_app() -> FastAPI:
    app = FastAPI(title="bench baseline", docs_url=None, redoc_url=None, openapi_url=None)
    plaintext: dict[str, tuple[Path, str]] = {}  # stream id -> (Parquet file, stream type)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/me/streams/{stream_id}/records", status_code=201)
    async def ingest(stream_id: str, request: Request) -> JSONResponse:
        records = json.loads(await request.body())
        return JSONResponse({"count": len(records)}, status_code=201)

    @app.put("/bench/plaintext/{stream_id}", status_code=204)
    async def register_plaintext(stream_id: str, request: Request) -> Response:
        spec = json.loads(await request.body())
        plaintext[stream_id] = (Path(spec["path"]), str(spec["stream_type"]))
        return Response(status_code=204)

    @app.get("/v1/me/streams/{stream_id}/records")
    def read(
        stream_id: str,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1000,
        cursor: Annotated[str | None, Query(max_length=200)] = None,
    ) -> Response:
        if stream_id not in plaintext:
            raise HTTPException(404, f"no plaintext copy of stream {stream_id!r}")
        path, stream_type = plaintext[stream_id]
        frame = pl.read_parquet(path)
        offset = _offset(cursor)
        total = frame.height
        page = frame.slice(offset, limit)
        next_cursor = _cursor(offset + limit) if offset + limit < total else None
        if "ts" in page.columns:
            page = page.with_columns(pl.col("ts").dt.strftime(TS_FORMAT))
        body = (
            f'{{"stream_id":{_dumps(stream_id)},"stream_type":{_dumps(stream_type)},'
            f'"count":{page.height},"total":{total},"next_cursor":{_dumps(next_cursor)},'
            f'"records":{page.write_json()}}}'
        )
        headers = {"X-Total-Count": str(total), "Cache-Control": "no-store"}
        if next_cursor:
            headers["X-Next-Cursor"] = next_cursor
        return Response(body, media_type="application/json", headers=headers)

    return app
