"""Content negotiation for record downloads: JSON (default), CSV, NDJSON or Parquet."""

from __future__ import annotations

import io
import json

import polars as pl
from fastapi import Response

from vault.errors import NotAcceptable
from vault.services.reading import RecordPage

PARQUET_TYPES = ("application/vnd.apache.parquet", "application/x-parquet")
_FORMAT_ALIASES = {
    "json": "application/json",
    "csv": "text/csv",
    "ndjson": "application/x-ndjson",
    "parquet": PARQUET_TYPES[0],
}
TS_FORMAT = "%Y-%m-%dT%H:%M:%S%.6fZ"


def choose(accept: str | None, format_param: str | None) -> str:
    if format_param:
        if format_param not in _FORMAT_ALIASES:
            raise NotAcceptable(
                f"format must be one of {', '.join(_FORMAT_ALIASES)}",
                details=[{"field": "format", "reason": "unknown format"}],
            )
        return _FORMAT_ALIASES[format_param]
    if not accept:
        return "application/json"
    for part in accept.split(","):
        media = part.split(";")[0].strip().lower()
        if media in ("application/json", "*/*", "application/*"):
            return "application/json"
        if media in ("text/csv", "text/*"):
            return "text/csv"
        if media in ("application/x-ndjson", "application/ndjson"):
            return "application/x-ndjson"
        if media in PARQUET_TYPES:
            return PARQUET_TYPES[0]
    raise NotAcceptable(
        "records can be sent as application/json, text/csv, application/x-ndjson or "
        "application/vnd.apache.parquet",
        details=[{"field": "Accept", "reason": "no supported media type"}],
    )


def _text_frame(frame: pl.DataFrame) -> pl.DataFrame:
    if "ts" in frame.columns:
        return frame.with_columns(pl.col("ts").dt.strftime(TS_FORMAT))
    return frame


def render(page: RecordPage, media: str) -> Response:
    headers = {"X-Total-Count": str(page.total), "Cache-Control": "no-store"}
    if page.next_cursor:
        headers["X-Next-Cursor"] = page.next_cursor
    if media == "text/csv":
        body = page.frame.write_csv(datetime_format=TS_FORMAT)
        return Response(body, media_type="text/csv; charset=utf-8", headers=headers)
    if media == "application/x-ndjson":
        return Response(
            _text_frame(page.frame).write_ndjson(),
            media_type="application/x-ndjson",
            headers=headers,
        )
    if media == PARQUET_TYPES[0]:
        buffer = io.BytesIO()
        page.frame.write_parquet(buffer, compression="zstd")
        return Response(buffer.getvalue(), media_type=media, headers=headers)
    records = _text_frame(page.frame).to_dicts()
    body = json.dumps(
        {
            "stream_id": page.stream_id,
            "stream_type": page.stream_type.name,
            "count": page.frame.height,
            "total": page.total,
            "next_cursor": page.next_cursor,
            "records": records,
        },
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return Response(body, media_type="application/json", headers=headers)
