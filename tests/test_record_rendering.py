"""Record downloads render exactly the bytes they always did, now mostly written by polars.

``vault.api.record_formats`` writes a JSON page's records with ``DataFrame.write_json`` (and the
timestamps with lookup tables) instead of ``to_dicts`` + ``json.dumps`` (and ``strftime``) whenever
that is provably the same bytes. The renderer it replaced is kept here, unchanged, as the oracle;
Hypothesis compares the two on random valid pages of every catalogue stream type, and of made-up
stream types holding every field type (optional fields, unbounded numbers, free text), byte for
byte and as parsed JSON. The lemmas the fast path rests on are checked on their own: polars' JSON
is Python's for any frame the guard lets through (whatever floats or text it holds), and the
timestamp text is ``strftime``'s for every microsecond of years 1 to 9999.

A tampered chunk among many fails only the read that meets it.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
import pytest
from fastapi import Response
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlmodel import Session

from tests.conftest import Citizen
from vault.api.record_formats import (
    PARQUET_TYPES,
    TS_FORMAT,
    _polars_json_is_pythons,
    _ts_text,
    render,
)
from vault.catalogue import FieldSpec, StreamType, default_catalogue
from vault.services.reading import RecordPage, _encode_cursor

JSON = "application/json"
NDJSON = "application/x-ndjson"
CSV = "text/csv"
FIRST = datetime(1, 1, 1, tzinfo=UTC)
LAST = datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)
I64 = (-(2**63), 2**63 - 1)

# --------------------------------------------------------------------------------------------------
# The oracle: the renderer as it was before polars wrote the JSON (copied, not imported)
# --------------------------------------------------------------------------------------------------


def _old_text_frame(frame: pl.DataFrame) -> pl.DataFrame:
    if "ts" in frame.columns:
        return frame.with_columns(pl.col("ts").dt.strftime(TS_FORMAT))
    return frame


def old_render(page: RecordPage, media: str) -> Response:
    import io

    headers = {"X-Total-Count": str(page.total), "Cache-Control": "no-store"}
    if page.next_cursor:
        headers["X-Next-Cursor"] = page.next_cursor
    if media == "text/csv":
        body = page.frame.write_csv(datetime_format=TS_FORMAT)
        return Response(body, media_type="text/csv; charset=utf-8", headers=headers)
    if media == "application/x-ndjson":
        return Response(
            _old_text_frame(page.frame).write_ndjson(),
            media_type="application/x-ndjson",
            headers=headers,
        )
    if media == PARQUET_TYPES[0]:
        buffer = io.BytesIO()
        page.frame.write_parquet(buffer, compression="zstd")
        return Response(buffer.getvalue(), media_type=media, headers=headers)
    records = _old_text_frame(page.frame).to_dicts()
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


def assert_same_answer(page: RecordPage, media: str) -> None:
    new, old = render(page, media), old_render(page, media)
    assert new.body == old.body
    assert new.headers.items() == old.headers.items()
    assert new.media_type == old.media_type
    if media == JSON:
        assert json.loads(new.body) == json.loads(old.body)


# --------------------------------------------------------------------------------------------------
# Random valid pages
# --------------------------------------------------------------------------------------------------

# A stream type beyond the catalogue: every field type, optional fields, unbounded numbers, text.
EVERYTHING = StreamType(
    name="test.everything",
    schema_version=1,
    title="Everything",
    description="Every field type, some optional.",
    fields=(
        FieldSpec("ts", "timestamp", "when"),
        FieldSpec("level", "float", "unbounded", required=False),
        FieldSpec("share", "float", "bounded", min=-1, max=1),
        FieldSpec("steps", "int", "unbounded", required=False),
        FieldSpec("kind", "category", "kind", categories=("a b", "é", 'q"uote', "back\\slash")),
        FieldSpec("note", "string", "free text", required=False),
        FieldSpec("tag", "string", "free text"),
    ),
)
STREAM_TYPES = (*default_catalogue().stream_types, EVERYTHING)

timestamps = st.datetimes(
    min_value=FIRST.replace(tzinfo=None),
    max_value=LAST.replace(tzinfo=None),
    timezones=st.just(UTC),
)


def field_values(spec: FieldSpec) -> st.SearchStrategy[Any]:
    """A valid value for the field, as ``vault.batch_validation`` defines valid."""
    values: st.SearchStrategy[Any]
    if spec.type == "timestamp":
        values = timestamps
    elif spec.type == "float":
        low = None if spec.min is None else float(spec.min)
        high = None if spec.max is None else float(spec.max)
        values = st.floats(low, high, allow_nan=False, allow_infinity=False)
        if (low is None or low <= 0) and (high is None or high >= 0):
            values = values | st.just(-0.0)  # valid wherever 0 is (-0.0 >= 0)
        # Readings as people send them: a few decimals, the fast path's usual case.
        values = values | st.decimals(
            low if low is not None else -1e6, high if high is not None else 1e6, places=3
        ).map(float)
    elif spec.type == "int":
        values = st.integers(
            I64[0] if spec.min is None else int(spec.min),
            I64[1] if spec.max is None else int(spec.max),
        )
    elif spec.type == "category":
        values = st.sampled_from(spec.categories)
    else:
        values = st.text(min_size=1)
    return values if spec.required else values | st.none()


@st.composite
def pages(draw: st.DrawFn, stream_types: tuple[StreamType, ...] = STREAM_TYPES) -> RecordPage:
    spec = draw(st.sampled_from(stream_types))
    rows = draw(
        st.lists(st.tuples(*(field_values(f) for f in spec.fields)), min_size=0, max_size=25)
    )
    frame = pl.DataFrame(rows, schema=spec.polars_schema(), orient="row")
    total = frame.height + draw(st.integers(0, 50_000))
    next_cursor = draw(st.none() | st.integers(1, total + 1).map(_encode_cursor))
    stream_id = draw(st.uuids().map(lambda u: u.hex) | st.text(max_size=40))
    return RecordPage(stream_id, spec, frame, next_cursor, total)


# --------------------------------------------------------------------------------------------------
# JSON (the default answer): new rendering == old rendering, byte for byte
# --------------------------------------------------------------------------------------------------


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pages())
def test_json_answer_is_byte_identical_for_every_stream_type(page: RecordPage) -> None:
    assert_same_answer(page, JSON)


@pytest.mark.parametrize("stream_type", STREAM_TYPES, ids=lambda t: t.name)
def test_every_stream_type_takes_the_polars_path_for_ordinary_readings(
    stream_type: StreamType,
) -> None:
    """The fast path is really taken (the byte-identity test alone would pass if it never were)."""
    values: dict[str, list[Any]] = {}
    for spec in stream_type.fields:
        if spec.type == "timestamp":
            values[spec.name] = [FIRST, datetime(2026, 3, 1, 12, 30, 5, 250, tzinfo=UTC), LAST]
        elif spec.type == "float":
            low = -1e6 if spec.min is None else float(spec.min)
            high = 1e6 if spec.max is None else float(spec.max)
            values[spec.name] = [low, (low + high) / 3, high]
        elif spec.type == "int":
            values[spec.name] = [spec.min or 0, 3, spec.max or 10**12]
        elif spec.type == "category":
            values[spec.name] = [spec.categories[0], spec.categories[-1], spec.categories[0]]
        else:
            values[spec.name] = ["plain", "ünïcødé 😀", 'quote " and \\ and \n\t\x01']
    frame = pl.DataFrame(values, schema=stream_type.polars_schema())
    text = frame.with_columns(_ts_text(frame["ts"]))
    assert _polars_json_is_pythons(text)
    assert_same_answer(RecordPage("s", stream_type, frame, None, 3), JSON)


@pytest.mark.parametrize(
    "value",
    [1e-05, 9.999999999999999e-05, 5e-324, 2.5e-07, 1e16, 1.2345678901234568e16, 1.7e308, -1e-5],
)
def test_floats_polars_would_write_differently_are_written_by_python(value: float) -> None:
    """Below 1e-4 and from 1e16 on, ryu and Python disagree on notation: Python writes them."""
    frame = pl.DataFrame({"ts": [FIRST], "level": [value]})
    text = frame.with_columns(_ts_text(frame["ts"]))
    assert not _polars_json_is_pythons(text)
    page = RecordPage("s", EVERYTHING, frame, None, 1)
    assert json.loads(render(page, JSON).body)["records"][0]["level"] == value
    assert_same_answer(page, JSON)


def test_pages_the_guard_refuses_still_answer_the_old_bytes() -> None:
    ts = [FIRST, LAST]
    for frame in (
        pl.DataFrame(
            {"ts": ts, "x": [1.5, 2.5]}, schema={"ts": pl.Datetime("us", "UTC"), "x": pl.Float32}
        ),
        pl.DataFrame(
            {"ts": ts, "x": [1, 2]}, schema={"ts": pl.Datetime("us", "UTC"), "x": pl.Int32}
        ),
        pl.DataFrame({"ts": ts, "x": [True, None]}),
        pl.DataFrame({"ts": ts, "x": [0.5, 1e-7]}),
    ):
        assert_same_answer(RecordPage("s", EVERYTHING, frame, None, 2), JSON)
    # A second timestamp column is not JSON: both renderers refuse it the same way.
    frame = pl.DataFrame({"ts": ts, "until": ts})
    with pytest.raises(TypeError):
        old_render(RecordPage("s", EVERYTHING, frame, None, 2), JSON)
    with pytest.raises(TypeError):
        render(RecordPage("s", EVERYTHING, frame, None, 2), JSON)


# --------------------------------------------------------------------------------------------------
# The lemmas: polars' JSON is Python's where the guard says so; the timestamp text is strftime's
# --------------------------------------------------------------------------------------------------


def python_json(frame: pl.DataFrame) -> str:
    return json.dumps(frame.to_dicts(), ensure_ascii=False, separators=(",", ":"))


@settings(max_examples=500, deadline=None)
@given(
    st.lists(st.floats() | st.none(), max_size=30),
    st.lists(st.integers(*I64) | st.none(), max_size=30),
    st.lists(st.text() | st.none(), max_size=30),
    st.text(min_size=1).filter(lambda n: n not in ("f", "i")),  # the other two columns' names
)
@example([0.0, -0.0, 1e-4, 9999999999999998.0, 1e15, 0.1 + 0.2], [], [], "x")
@example([], [], ['\x00\x1f\x7f\u2028\u2029\ud7ff\ue000\U0010ffff"\\/\b\f\n\r\t'], 'k"\\\n')
def test_polars_json_is_pythons_wherever_the_guard_lets_it_through(
    floats: list[float | None], ints: list[int | None], texts: list[str | None], name: str
) -> None:
    height = max(len(floats), len(ints), len(texts))
    frame = pl.DataFrame(
        [
            pl.Series("f", floats + [None] * (height - len(floats)), dtype=pl.Float64),
            pl.Series("i", ints + [None] * (height - len(ints)), dtype=pl.Int64),
            pl.Series(name, texts + [None] * (height - len(texts)), dtype=pl.String),
        ]
    )
    plain = all(v is None or v == 0 or (math.isfinite(v) and 1e-4 <= abs(v) < 1e16) for v in floats)
    assert _polars_json_is_pythons(frame) == plain
    if plain:
        assert frame.write_json() == python_json(frame)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=50))
def test_every_float_in_the_plain_range_is_written_alike(values: list[float]) -> None:
    values = [v for v in values if v == 0 or 1e-4 <= abs(v) < 1e16] or [0.0]
    frame = pl.DataFrame({"x": values}, schema={"x": pl.Float64})
    assert frame.write_json() == python_json(frame)


def test_floats_at_the_edges_of_the_plain_range() -> None:
    edges = [1e-4, math.nextafter(1e-4, 1.0), 9999999999999998.0, math.nextafter(1e16, 0.0)]
    binades = [math.ldexp(1.0, e) for e in range(-13, 54)]  # every power of two in the range
    values = edges + binades + [math.nextafter(b, 0.0) for b in binades[1:]]
    values += [-v for v in values]
    frame = pl.DataFrame({"x": values}, schema={"x": pl.Float64})
    assert _polars_json_is_pythons(frame)
    assert frame.write_json() == python_json(frame)


@settings(max_examples=300, deadline=None)
@given(st.lists(timestamps, min_size=1, max_size=40))
@example([FIRST, LAST, datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)])
@example([datetime(2000, 2, 29, tzinfo=UTC), datetime(1900, 3, 1, 0, 0, 0, 1, tzinfo=UTC)])
def test_timestamp_text_is_strftimes(moments: list[datetime]) -> None:
    ts = pl.Series("ts", moments, dtype=pl.Datetime("us", "UTC"))
    assert _ts_text(ts).to_list() == ts.dt.strftime(TS_FORMAT).to_list()
    assert _ts_text(ts).name == "ts"


def test_timestamp_text_every_second_of_a_day_and_every_day_of_four_centuries() -> None:
    """The lookup tables, exhaustively: each second of the day, each day of 1600-2000 (a whole
    Gregorian cycle, leap rules and all), each microsecond digit position."""
    start = datetime(1600, 1, 1, tzinfo=UTC)
    days = pl.Series("ts", [start + timedelta(days=d) for d in range(146_097)])
    seconds = pl.Series("ts", [start + timedelta(seconds=s) for s in range(86_400)])
    micros = pl.Series("ts", [start + timedelta(microseconds=m * 7_919) for m in range(1000)])
    years = pl.Series(
        "ts", [datetime(y, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC) for y in range(1, 10_000)]
    )
    for ts in (days, seconds, micros, years):
        ts = ts.cast(pl.Datetime("us", "UTC"))
        assert _ts_text(ts).to_list() == ts.dt.strftime(TS_FORMAT).to_list()


def test_timestamps_the_tables_do_not_cover_go_to_strftime() -> None:
    naive = pl.Series("ts", [datetime(2026, 3, 1, 12)], dtype=pl.Datetime("us"))
    nanos = pl.Series("ts", [datetime(2026, 3, 1, 12, tzinfo=UTC)], dtype=pl.Datetime("ns", "UTC"))
    paris = pl.Series("ts", [datetime(2026, 3, 1, 12, tzinfo=UTC)]).dt.convert_time_zone(
        "Europe/Paris"
    )
    nulls = pl.Series("ts", [datetime(2026, 3, 1, 12, tzinfo=UTC), None])
    empty = pl.Series("ts", [], dtype=pl.Datetime("us", "UTC"))
    for ts in (naive, nanos, paris, nulls, empty):
        assert _ts_text(ts).to_list() == ts.dt.strftime(TS_FORMAT).to_list()


# --------------------------------------------------------------------------------------------------
# The other formats: NDJSON shares the timestamp text; CSV and Parquet are unchanged
# --------------------------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pages(), st.sampled_from([NDJSON, CSV, PARQUET_TYPES[0]]))
def test_other_formats_are_byte_identical(page: RecordPage, media: str) -> None:
    assert_same_answer(page, media)


# --------------------------------------------------------------------------------------------------
# Through the API
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [0, 6])
def test_a_tampered_chunk_among_many_fails_only_that_read(
    client: TestClient, alice: Citizen, bad: int
) -> None:
    """A bad chunk early (found while later ones are being decrypted) or late fails the read,
    naming it; the next reads are unaffected."""
    for day in range(1, 9):
        rows = [{"ts": f"2026-04-{day:02d}T{h:02d}:00:00Z", "kwh": 1.5} for h in range(3)]
        assert alice.append("energy.consumption", rows).status_code == 201
    assert alice.append("noise.exposure", [{"ts": "2026-04-01", "db": 50.0}]).status_code == 201
    target = alice.stream("energy.consumption")
    engine = client.app.state.vault.engine  # type: ignore[attr-defined]
    with Session(engine) as session:
        chunk_id, ciphertext = session.execute(
            text("SELECT id, ciphertext FROM chunks WHERE stream_id = :s ORDER BY seq"),
            {"s": target},
        ).all()[bad]
        flipped = bytes([ciphertext[0] ^ 1]) + bytes(ciphertext[1:])
        session.execute(
            text("UPDATE chunks SET ciphertext = :v WHERE id = :id"), {"v": flipped, "id": chunk_id}
        )
        session.commit()
    r = alice.client.get(f"/v1/me/streams/{target}/records", headers=alice.auth)
    assert r.status_code == 500 and r.json()["code"] == "integrity_error"
    assert chunk_id in r.json()["message"]
    other = alice.client.get(
        f"/v1/me/streams/{alice.stream('noise.exposure')}/records", headers=alice.auth
    )
    assert other.status_code == 200 and other.json()["records"][0]["db"] == 50.0
