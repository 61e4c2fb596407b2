"""Content negotiation for record downloads: JSON (default), CSV, NDJSON or Parquet.

The JSON answer is ``{"stream_id", "stream_type", "count", "total", "next_cursor", "records"}``,
exactly as ``json.dumps(..., ensure_ascii=False, separators=(",", ":"))`` writes it, with each record
an object of the page's columns in order (timestamps ``ts`` as ``TS_FORMAT`` text). Polars writes
the records (ten times faster) whenever its JSON is provably those same bytes, which covers every
valid frame of every catalogue stream type; Python's ``json`` writes them otherwise (see
:func:`_polars_json_is_pythons`; proved in ``tests/test_record_rendering.py``).
"""

from __future__ import annotations

import functools
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


_US_PER_DAY = 86_400_000_000


@functools.cache
def _ts_pieces() -> tuple[pl.Series, pl.Series, pl.Series, pl.Series]:
    """Fixed-width text, by index: years ``0000``-``9999``; ``-MM-DD`` at ``32 * month + day``;
    ``THH:MM:SS.`` at the second of the day; ``000``-``999``. Built once (about 1 MB)."""
    return (
        pl.Series([f"{y:04d}" for y in range(10_000)]),
        pl.Series([f"-{m:02d}-{d:02d}" for m in range(13) for d in range(32)]),
        pl.Series(
            [f"T{h:02d}:{m:02d}:{s:02d}." for h in range(24) for m in range(60) for s in range(60)]
        ),
        pl.Series([f"{n:03d}" for n in range(1000)]),
    )


def _ts_text(ts: pl.Series) -> pl.Series:
    """``ts.dt.strftime(TS_FORMAT)``, byte for byte, in about half the time.

    Polars formats each value through chrono (about 0.4 µs a value); here the fields are integers
    cut from the timestamp (``dt.year/month/day`` and microseconds of the day) that pick pieces of
    fixed-width text from tables, joined once. Only for non-null UTC microsecond timestamps of years
    1 to 9999 (every valid record's); anything else goes to ``strftime``."""
    if ts.dtype != pl.Datetime("us", "UTC") or ts.is_empty() or ts.null_count():
        return ts.dt.strftime(TS_FORMAT)
    years = ts.dt.year()
    low, high = years.min(), years.max()
    if not (isinstance(low, int) and isinstance(high, int) and low >= 1 and high <= 9999):
        return ts.dt.strftime(TS_FORMAT)
    year_text, month_day, time_of_day, three_digits = _ts_pieces()
    micros = ts.dt.epoch("us") % _US_PER_DAY  # floored: 0 <= micros < a day, before 1970 too
    fraction = micros % 1_000_000
    pieces = [
        year_text.gather(years),
        month_day.gather(ts.dt.month().cast(pl.Int64) * 32 + ts.dt.day()),
        time_of_day.gather(micros // 1_000_000),
        three_digits.gather(fraction // 1000),
        three_digits.gather(fraction % 1000),
    ]
    return pl.select(pl.concat_str([*pieces, pl.lit("Z")])).to_series().alias(ts.name)


def _text_frame(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with ``ts`` as ``TS_FORMAT`` text (what JSON and NDJSON answers hold)."""
    if "ts" in frame.columns:
        return frame.with_columns(_ts_text(frame["ts"]))
    return frame


# Polars (ryu) and Python (``repr``) write the same shortest round-trip digits for a float, but not
# always the same notation: Python uses an exponent below 1e-4 and from 1e16 on (``1e-05``,
# ``1e+16``) where ryu writes ``0.00001`` and ``1e16``; NaN and infinities are ``null`` in polars.
# Zero and finite magnitudes in [1e-4, 1e16) are plain decimals in both ("0.0", "-0.0", "7.25",
# "1000000000000000.0").
_FLOAT_PLAIN_MIN = 1e-4
_FLOAT_PLAIN_END = 1e16


def _polars_json_is_pythons(frame: pl.DataFrame) -> bool:
    """True when ``frame.write_json()`` is exactly what ``json.dumps(frame.to_dicts(),
    ensure_ascii=False, separators=(",", ":"))`` writes.

    That holds when every column is text, a 64-bit integer or a 64-bit float whose values are all
    null, zero or finite of magnitude in [1e-4, 1e16). Text is escaped the same way by both
    (quote and backslash escaped, short escapes for backspace, form feed, newline, carriage return
    and tab, four lower-case hex digits for the other control characters below U+0020,
    everything else as UTF-8, column names included), integers are plain digits, nulls ``null``,
    and objects keep the column order. Any other column type (a timestamp other than ``ts``, a
    32-bit float, ...) answers False, and the caller writes the JSON with Python."""
    checks: list[pl.Expr] = []
    for name, dtype in frame.schema.items():
        if dtype == pl.Float64:
            value = pl.col(name)
            magnitude = value.abs()
            plain = (value == 0) | (
                value.is_finite() & (magnitude >= _FLOAT_PLAIN_MIN) & (magnitude < _FLOAT_PLAIN_END)
            )
            checks.append((value.is_null() | plain).all())
        elif dtype != pl.String and dtype != pl.Int64:
            return False
    if not checks or frame.height == 0:
        return True
    return bool(frame.select(pl.all_horizontal(checks)).item())


def _records_json(frame: pl.DataFrame) -> bytes:
    """The page's records as a JSON array, UTF-8.

    Property: byte-identical to ``json.dumps(_text_frame(frame).to_dicts(), ensure_ascii=False,
    separators=(",", ":")).encode()`` for every frame (polars writes it when
    :func:`_polars_json_is_pythons` holds, about ten times faster; Python otherwise)."""
    text = _text_frame(frame)
    if _polars_json_is_pythons(text):
        buffer = io.BytesIO()
        text.write_json(buffer)
        return buffer.getvalue()
    return json.dumps(text.to_dicts(), ensure_ascii=False, separators=(",", ":")).encode()


def _json_body(page: RecordPage) -> bytes:
    """The JSON answer for ``page``.

    Property: byte-identical to ``json.dumps({"stream_id": ..., "stream_type": ..., "count": ...,
    "total": ..., "next_cursor": ..., "records": <the records as dicts>}, ensure_ascii=False,
    separators=(",", ":")).encode()``: the envelope is that call without ``records`` (``json.dumps``
    writes a dict's items in order, so dropping its closing brace leaves the same prefix), then
    ``,"records":``, the records (:func:`_records_json`) and the closing brace."""
    head = json.dumps(
        {
            "stream_id": page.stream_id,
            "stream_type": page.stream_type.name,
            "count": page.frame.height,
            "total": page.total,
            "next_cursor": page.next_cursor,
        },
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return b"".join((head[:-1].encode(), b',"records":', _records_json(page.frame), b"}"))


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
    return Response(_json_body(page), media_type="application/json", headers=headers)
