"""Batch parsing and validation: formats, every kind of bad value, and Hypothesis properties.

The properties compare the implementation (vectorised polars with a per-value fallback) with a
small reference checker written here, value by value in plain Python, from the rules in
``vault.batch_validation``'s docstring.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections import OrderedDict
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any, Literal

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from vault.batch_parsing import batch_format, parse_batch
from vault.batch_validation import decode_batch, validate_batch
from vault.catalogue import FieldSpec, StreamType, default_catalogue
from vault.errors import InvalidBatch, PayloadTooLarge, UnsupportedMediaType

JSON = "application/json"
NDJSON = "application/x-ndjson"
CSV = "text/csv"
LIMIT = 10_000
MISSING = object()  # a field left out of a record
EPOCH_MIN = -62_135_596_800
EPOCH_MAX = 253_402_300_799


def stream(name: str) -> StreamType:
    return default_catalogue().get(name)


STREAM_NAMES = default_catalogue().names


# --------------------------------------------------------------------------------------------------
# Encoders
# --------------------------------------------------------------------------------------------------


def json_body(rows: list[dict[str, Any]]) -> bytes:
    return json.dumps(rows).encode()


def ndjson_body(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


def csv_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)


def csv_body(
    rows: list[dict[str, Any]], columns: list[str], quoting: Literal[0, 1, 2, 3] = csv.QUOTE_MINIMAL
) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n", quoting=quoting)
    writer.writerow(columns)
    for row in rows:
        writer.writerow([csv_text(row.get(name)) for name in columns])
    return out.getvalue().encode()


def decode(body: bytes, content_type: str, name: str, limit: int = LIMIT) -> pl.DataFrame:
    return decode_batch(body, content_type, stream(name), limit)


def problems(body: bytes, content_type: str, name: str) -> list[dict[str, Any]]:
    with pytest.raises(InvalidBatch) as caught:
        decode(body, content_type, name)
    return caught.value.details


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, us: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, us, tzinfo=UTC)


# --------------------------------------------------------------------------------------------------
# Valid batches, every stream type, every format
# --------------------------------------------------------------------------------------------------

VALID: dict[str, tuple[list[dict[str, Any]], dict[str, list[Any]]]] = {
    "energy.consumption": (
        [
            {"ts": "2026-03-01T00:00:00Z", "kwh": 0.25},
            {"ts": "2026-03-01T00:15:00+01:00", "kwh": 0},
            {"ts": "2026-03-01T00:30:00.5Z", "kwh": 50},
        ],
        {
            "ts": [utc(2026, 3, 1), utc(2026, 2, 28, 23, 15), utc(2026, 3, 1, 0, 30, 0, 500_000)],
            "kwh": [0.25, 0.0, 50.0],
        },
    ),
    "mobility.trip": (
        [
            {"ts": "2026-03-01T08:00:00Z", "mode": "bike", "km": 3.2, "minutes": 14},
            {"ts": 1772352000, "mode": "metro", "km": 12, "minutes": 31.5},
        ],
        {
            "ts": [utc(2026, 3, 1, 8), utc(2026, 3, 1, 8)],
            "mode": ["bike", "metro"],
            "km": [3.2, 12.0],
            "minutes": [14.0, 31.5],
        },
    ),
    "noise.exposure": (
        [
            {"ts": "2026-03-01 22:00:00", "db": 30},
            {"ts": "2026-03-01", "db": 129.9},
        ],
        {"ts": [utc(2026, 3, 1, 22), utc(2026, 3, 1)], "db": [30.0, 129.9]},
    ),
    "survey.response": (
        [
            {"ts": "2026-03-01T10:00:00-02:30", "question": "q-parks", "answer": 5},
            {"ts": "2026-03-02T10:00:00.123456789Z", "question": "q-noise", "answer": 1},
        ],
        {
            "ts": [utc(2026, 3, 1, 12, 30), utc(2026, 3, 2, 10, 0, 0, 123456)],
            "question": ["q-parks", "q-noise"],
            "answer": [5, 1],
        },
    ),
    "profile": (
        [
            {"ts": "2026-01-01", "district": "Old Town", "age_band": "65+", "household_size": 1},
            {
                "ts": "2026-01-01",
                "district": "North Hill",
                "age_band": "18-29",
                "household_size": 8,
            },
        ],
        {
            "ts": [utc(2026, 1, 1), utc(2026, 1, 1)],
            "district": ["Old Town", "North Hill"],
            "age_band": ["65+", "18-29"],
            "household_size": [1, 8],
        },
    ),
}


def expected_frame(name: str, columns: dict[str, list[Any]]) -> pl.DataFrame:
    return pl.DataFrame(columns, schema=stream(name).polars_schema())


@pytest.mark.parametrize("name", STREAM_NAMES)
@pytest.mark.parametrize("fmt", ["json", "ndjson", "csv", "csv-quoted"])
def test_valid_batch_gives_the_typed_frame(name: str, fmt: str) -> None:
    rows, columns = VALID[name]
    fields = list(stream(name).field_names)
    body, content_type = {
        "json": (json_body(rows), JSON),
        "ndjson": (ndjson_body(rows), NDJSON),
        "csv": (csv_body(rows, fields[::-1]), CSV),  # any column order
        "csv-quoted": (csv_body(rows, fields, csv.QUOTE_ALL), CSV + "; charset=utf-8"),
    }[fmt]
    frame = decode(body, content_type, name)
    assert frame.schema == stream(name).polars_schema()
    assert_frame_equal(frame, expected_frame(name, columns))


def test_parse_then_validate_equals_decode() -> None:
    rows, _ = VALID["mobility.trip"]
    st_ = stream("mobility.trip")
    parsed = parse_batch(json_body(rows), JSON, st_)
    assert isinstance(parsed, list) and parsed == rows
    assert_frame_equal(
        validate_batch(parsed, st_, LIMIT), decode_batch(json_body(rows), JSON, st_, LIMIT)
    )
    table = parse_batch(csv_body(rows, list(st_.field_names)), CSV, st_)
    assert isinstance(table, pl.DataFrame) and table.columns == list(st_.field_names)
    assert table.dtypes == [pl.String] * 4


# --------------------------------------------------------------------------------------------------
# Each kind of bad value, with its row, field and reason
# --------------------------------------------------------------------------------------------------

GOOD_TRIP = {"ts": "2026-03-01T08:00:00Z", "mode": "bus", "km": 3.0, "minutes": 10.0}
GOOD_ANSWER = {"ts": "2026-03-01T08:00:00Z", "question": "q-parks", "answer": 3}

# (stream type, field, bad JSON value, words the reason must contain)
BAD_JSON_VALUES: list[tuple[str, str, Any, str]] = [
    ("mobility.trip", "km", "3.5", 'must be a number (got "3.5")'),
    ("mobility.trip", "km", True, "must be a number (got true)"),
    ("mobility.trip", "km", [1], "must be a number (got [1])"),
    ("mobility.trip", "km", 100.5, "must be between 0 and 100 (got 100.5)"),
    ("mobility.trip", "km", -0.1, "must be between 0 and 100 (got -0.1)"),
    ("mobility.trip", "km", float("nan"), "must be a finite number (got NaN)"),
    ("mobility.trip", "km", float("inf"), "must be a finite number (got Infinity)"),
    ("mobility.trip", "km", 10**400, "must be between 0 and 100"),
    ("mobility.trip", "minutes", 241, "must be between 0 and 240 (got 241)"),
    ("mobility.trip", "km", None, "required field is null"),
    ("mobility.trip", "km", MISSING, "required field is missing"),
    (
        "mobility.trip",
        "mode",
        "tram",
        'must be one of "walk", "bike", "bus", "metro", "car", "other"',
    ),
    ("mobility.trip", "mode", "Bus", '(got "Bus")'),
    ("mobility.trip", "mode", 2, "(got 2)"),
    ("survey.response", "answer", 2.5, "must be a whole number (got 2.5)"),
    ("survey.response", "answer", "3", 'must be a whole number (got "3")'),
    ("survey.response", "answer", False, "must be a whole number (got false)"),
    ("survey.response", "answer", 6, "must be between 1 and 5 (got 6)"),
    ("survey.response", "answer", 0.0, "must be between 1 and 5 (got 0.0)"),
    ("survey.response", "answer", 2**64, "must be between 1 and 5 (got 18446744073709551616)"),
    ("survey.response", "answer", float("nan"), "must be a whole number (got NaN)"),
    ("survey.response", "question", "q-weather", '"q-services" (got "q-weather")'),
    ("survey.response", "ts", "yesterday", "ISO 8601"),
    (
        "survey.response",
        "ts",
        "2026-02-30",
        'ISO 8601 date and time such as 2026-03-01T12:00:00Z, or whole seconds since 1970-01-01 (got "2026-02-30")',
    ),
    ("survey.response", "ts", "2026-3-1", "ISO 8601"),
    ("survey.response", "ts", "2026-03-01T24:00:00Z", "ISO 8601"),
    ("survey.response", "ts", "2026-03-01T12:00:60Z", "ISO 8601"),
    ("survey.response", "ts", "2026-03-01T12:00Z", "ISO 8601"),
    ("survey.response", "ts", "2026-03-01T12:00:00z", "ISO 8601"),
    ("survey.response", "ts", " 2026-03-01", "ISO 8601"),
    ("survey.response", "ts", "2026-03-01T12:00:00+25:00", "ISO 8601"),
    ("survey.response", "ts", "0000-01-01", "ISO 8601"),
    ("survey.response", "ts", "0001-01-01T00:30:00+01:00", "ISO 8601"),
    ("survey.response", "ts", "1772352000", "ISO 8601"),  # in JSON, seconds are a number
    ("survey.response", "ts", 1772352000.5, "(got 1772352000.5)"),
    ("survey.response", "ts", EPOCH_MAX + 1, "ISO 8601"),
    ("survey.response", "ts", True, "(got true)"),
    ("survey.response", "ts", {"at": 1}, "ISO 8601"),
]


@pytest.mark.parametrize(("name", "field", "value", "words"), BAD_JSON_VALUES)
def test_bad_json_value_is_reported_at_its_row_and_field(
    name: str, field: str, value: Any, words: str
) -> None:
    good = GOOD_TRIP if name == "mobility.trip" else GOOD_ANSWER
    bad = dict(good)
    if value is MISSING:
        del bad[field]
    else:
        bad[field] = value
    rows = [good, good, bad, good]
    for body, content_type in ((json_body(rows), JSON), (ndjson_body(rows), NDJSON)):
        with pytest.raises(InvalidBatch) as caught:
            decode(body, content_type, name)
        assert caught.value.message == "1 of 4 rows are invalid; nothing was written"
        [detail] = caught.value.details
        assert (detail["row"], detail["field"]) == (2, field)
        assert words in detail["reason"]


# (stream type, field, bad CSV cell, words the reason must contain)
BAD_CSV_CELLS: list[tuple[str, str, str, str]] = [
    ("mobility.trip", "km", "abc", 'must be a number (got "abc")'),
    ("mobility.trip", "km", "3,5", 'must be a number (got "3,5")'),
    ("mobility.trip", "km", " 3", 'must be a number (got " 3")'),
    ("mobility.trip", "km", "1_000", "must be a number"),
    ("mobility.trip", "km", "100.01", "must be between 0 and 100 (got 100.01)"),
    ("mobility.trip", "km", "NaN", "must be a finite number (got NaN)"),
    ("mobility.trip", "km", "inf", "must be a finite number (got inf)"),
    ("mobility.trip", "km", "", "required field is empty"),
    ("mobility.trip", "mode", "tram", '(got "tram")'),
    ("mobility.trip", "mode", " bus", '(got " bus")'),
    ("survey.response", "answer", "2.5", 'must be a whole number (got "2.5")'),
    ("survey.response", "answer", "three", 'must be a whole number (got "three")'),
    ("survey.response", "answer", "9", "must be between 1 and 5 (got 9)"),
    ("survey.response", "answer", "99999999999999999999", "must be between 1 and 5"),
    ("survey.response", "answer", "1e30", "must be between 1 and 5 (got 1e30)"),
    ("survey.response", "ts", "01/03/2026", "ISO 8601"),
    ("survey.response", "ts", "2026-02-29", "ISO 8601"),
    ("survey.response", "ts", "1.5", "ISO 8601"),
    ("survey.response", "ts", "", "required field is empty"),
]


@pytest.mark.parametrize(("name", "field", "cell", "words"), BAD_CSV_CELLS)
def test_bad_csv_cell_is_reported_at_its_row_and_field(
    name: str, field: str, cell: str, words: str
) -> None:
    good = GOOD_TRIP if name == "mobility.trip" else GOOD_ANSWER
    columns = list(stream(name).field_names)
    rows = [good, {**good, field: cell}, good]
    details = problems(csv_body(rows, columns), CSV, name)
    assert [(d["row"], d["field"]) for d in details] == [(1, field)]
    assert words in details[0]["reason"]


@pytest.mark.parametrize(
    ("cell", "value"),
    [("3", 3), ("3.0", 3), ("1e0", 1), ("+2", 2), ("04", 4), ("5.", 5)],
)
def test_csv_whole_numbers_may_be_written_as_decimals(cell: str, value: int) -> None:
    body = f"ts,question,answer\n2026-03-01,q-parks,{cell}\n".encode()
    assert decode(body, CSV, "survey.response")["answer"].to_list() == [value]


def test_json_whole_numbers_may_be_floats_and_floats_may_be_ints() -> None:
    rows = [{**GOOD_ANSWER, "answer": 4.0}]
    assert decode(json_body(rows), JSON, "survey.response")["answer"].to_list() == [4]
    trip = [{**GOOD_TRIP, "km": 7}]
    assert decode(json_body(trip), JSON, "mobility.trip")["km"].to_list() == [7.0]


def test_unknown_fields_are_reported_per_row() -> None:
    rows = [GOOD_TRIP, {**GOOD_TRIP, "speed": 3, "note": "x"}, {**GOOD_TRIP, "km": 500}]
    with pytest.raises(InvalidBatch) as caught:
        decode(json_body(rows), JSON, "mobility.trip")
    assert caught.value.message == "2 of 3 rows are invalid; nothing was written"
    assert [(d["row"], d["field"]) for d in caught.value.details] == [
        (1, "speed"),
        (1, "note"),
        (2, "km"),
    ]
    assert caught.value.details[0]["reason"] == "unknown field; known fields: ts, mode, km, minutes"


def test_every_bad_cell_is_listed_in_row_then_field_order() -> None:
    rows = [
        {"ts": "nope", "mode": "bus", "km": -1, "minutes": 10},
        GOOD_TRIP,
        {"mode": "x", "km": True, "minutes": None},
    ]
    details = problems(json_body(rows), JSON, "mobility.trip")
    assert [(d["row"], d["field"]) for d in details] == [
        (0, "ts"),
        (0, "km"),
        (2, "ts"),
        (2, "mode"),
        (2, "km"),
        (2, "minutes"),
    ]
    assert all(d["reason"] for d in details)


def test_details_are_capped_at_1000_and_the_message_gives_the_total() -> None:
    rows = [{**GOOD_TRIP, "km": 101, "minutes": -1}] * 600 + [GOOD_TRIP]
    with pytest.raises(InvalidBatch) as caught:
        decode(json_body(rows), JSON, "mobility.trip")
    assert len(caught.value.details) == 1000
    assert caught.value.message.startswith("600 of 601 rows are invalid; nothing was written")
    assert "1200 problems" in caught.value.message
    assert caught.value.details[-1] == {
        "row": 499,
        "field": "minutes",
        "reason": "must be between 0 and 240 (got -1)",
    }


def test_too_many_records_is_payload_too_large_naming_the_limit() -> None:
    rows = [GOOD_TRIP] * 11
    for body, content_type in ((json_body(rows), JSON), (csv_body(rows, list(GOOD_TRIP)), CSV)):
        with pytest.raises(PayloadTooLarge, match="at most 10 "):
            decode(body, content_type, "mobility.trip", limit=10)
    assert decode(json_body(rows), JSON, "mobility.trip", limit=11).height == 11


# --------------------------------------------------------------------------------------------------
# Timestamps
# --------------------------------------------------------------------------------------------------

TIMESTAMPS: list[tuple[Any, datetime]] = [
    ("2026-03-01T12:00:00Z", utc(2026, 3, 1, 12)),
    ("2026-03-01T12:00:00+02:00", utc(2026, 3, 1, 10)),
    ("2026-03-01T12:00:00-00:30", utc(2026, 3, 1, 12, 30)),
    ("2026-03-01T12:00:00", utc(2026, 3, 1, 12)),
    ("2026-03-01 12:00:00", utc(2026, 3, 1, 12)),
    ("2026-03-01 12:00:00Z", utc(2026, 3, 1, 12)),
    ("2026-03-01", utc(2026, 3, 1)),
    ("2024-02-29", utc(2024, 2, 29)),
    ("2026-03-01T12:00:00.5Z", utc(2026, 3, 1, 12, 0, 0, 500_000)),
    ("2026-03-01T12:00:00.000001Z", utc(2026, 3, 1, 12, 0, 0, 1)),
    ("2026-03-01T12:00:00.9999999Z", utc(2026, 3, 1, 12, 0, 0, 999_999)),
    ("2026-03-01T00:00:00+14:00", utc(2026, 2, 28, 10)),
    ("0001-01-01", utc(1, 1, 1)),
    ("9999-12-31T23:59:59.999999Z", datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)),
    (0, utc(1970, 1, 1)),
    (-1, utc(1969, 12, 31, 23, 59, 59)),
    (1772366400, utc(2026, 3, 1, 12)),
    (1772366400.0, utc(2026, 3, 1, 12)),
    (EPOCH_MIN, utc(1, 1, 1)),
    (EPOCH_MAX, utc(9999, 12, 31, 23, 59, 59)),
]


@pytest.mark.parametrize(("value", "moment"), TIMESTAMPS)
def test_accepted_timestamps(value: Any, moment: datetime) -> None:
    rows = [{"ts": value, "db": 50}]
    frame = decode(json_body(rows), JSON, "noise.exposure")
    assert frame["ts"].to_list() == [moment]
    if isinstance(value, str | int):
        csv_frame = decode(f"ts,db\n{value},50\n".encode(), CSV, "noise.exposure")
        assert csv_frame["ts"].to_list() == [moment]


def test_a_batch_may_mix_timestamp_shapes_and_epoch_seconds() -> None:
    values = [value for value, _ in TIMESTAMPS]
    rows = [{"ts": value, "db": 50} for value in values]
    frame = decode(json_body(rows), JSON, "noise.exposure")
    assert frame["ts"].to_list() == [moment for _, moment in TIMESTAMPS]
    text_rows = [{"ts": v, "db": 50} for v in values if not isinstance(v, float)]
    csv_frame = decode(csv_body(text_rows, ["ts", "db"]), CSV, "noise.exposure")
    assert csv_frame["ts"].to_list() == [m for v, m in TIMESTAMPS if not isinstance(v, float)]


def test_a_bad_timestamp_among_good_ones_of_another_shape() -> None:
    rows = [{"ts": "2026-03-01", "db": 50}, {"ts": "2026-13-01", "db": 50}]
    rows += [{"ts": "2026-03-01T12:00:00Z", "db": 50}, {"ts": "2026-02-30T12:00:00Z", "db": 50}]
    details = problems(json_body(rows), JSON, "noise.exposure")
    assert [(d["row"], d["field"]) for d in details] == [(1, "ts"), (3, "ts")]


# --------------------------------------------------------------------------------------------------
# Syntax, media types, empty batches
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "kind"),
    [
        ("application/json", "json"),
        ("Application/JSON; charset=UTF-8", "json"),
        ("application/x-ndjson", "ndjson"),
        ("application/ndjson; charset=utf-8", "ndjson"),
        ("text/csv; charset=utf-8; header=present", "csv"),
    ],
)
def test_media_types(content_type: str, kind: str) -> None:
    assert batch_format(content_type) == kind


@pytest.mark.parametrize(
    "content_type", [None, "", "text/plain", "application/xml", "text/csv; charset=latin-1"]
)
def test_unsupported_media_types(content_type: str | None) -> None:
    with pytest.raises(UnsupportedMediaType):
        decode_batch(b"[]", content_type, stream("noise.exposure"), LIMIT)


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"", JSON),
        (b"  \n", JSON),
        (b"[]", JSON),
        (b"", NDJSON),
        (b"\n\n  \n", NDJSON),
        (b"", CSV),
        (b"ts,db\n", CSV),
        (b"ts,db\n\n\n", CSV),
    ],
)
def test_empty_batch(body: bytes, content_type: str) -> None:
    with pytest.raises(InvalidBatch) as caught:
        decode(body, content_type, "noise.exposure")
    assert caught.value.details == [{"row": None, "field": None, "reason": "batch is empty"}]


def test_malformed_json() -> None:
    details = problems(b'[{"ts": "2026-03-01", "db": 50},\n {"ts": }]', JSON, "noise.exposure")
    assert details[0]["row"] is None and "line 2" in details[0]["reason"]
    details = problems(b'{"ts": "2026-03-01", "db": 50}', JSON, "noise.exposure")
    assert "not an array of objects" in details[0]["reason"]
    details = problems(b'[{"ts": "2026-03-01", "db": 50}, 3, []]', JSON, "noise.exposure")
    assert [(d["row"], d["field"]) for d in details] == [(1, None), (2, None)]
    assert "got a number" in details[0]["reason"] and "got an array" in details[1]["reason"]


def test_malformed_ndjson_names_the_line() -> None:
    body = b'{"ts": "2026-03-01", "db": 50}\n\n{"ts": \n[1]\n{"ts": "2026-03-01", "db": 50}\n'
    details = problems(body, NDJSON, "noise.exposure")
    assert [d["row"] for d in details] == [1, 2]
    assert details[0]["reason"].startswith("line 3: not valid JSON")
    assert details[1]["reason"] == "line 4: must be a JSON object, got an array"


@pytest.mark.parametrize(
    "lines",
    [
        # Lines that are not one object each, but join into as many objects as there are lines.
        ['{"ts": "2026-03-01", "db": 50', '"x": 1}', "{},{}"],
        ['{"a": [{}', "{}]}", "{},{}"],
        ['{"ts": "2026-03-01", "db": 50} {"ts": "2026-03-01", "db": 50}'],
    ],
)
def test_ndjson_lines_must_each_be_one_object(lines: list[str]) -> None:
    with pytest.raises(InvalidBatch):
        decode("\n".join(lines).encode(), NDJSON, "noise.exposure")


def test_ndjson_tolerates_crlf_and_blank_lines() -> None:
    body = b'{"ts": "2026-03-01", "db": 50}\r\n\r\n  {"ts": "2026-03-02", "db": 60}  \r\n'
    assert decode(body, NDJSON, "noise.exposure")["db"].to_list() == [50.0, 60.0]


def test_not_utf8() -> None:
    for content_type in (JSON, NDJSON, CSV):
        details = problems(b'[{"ts": "caf\xe9"}]', content_type, "noise.exposure")
        assert "not valid UTF-8" in details[0]["reason"]


def test_csv_ragged_rows_are_reported_with_their_row_and_line() -> None:
    body = b"ts,db\n2026-03-01,50\n2026-03-02\n2026-03-03,50,1\n2026-03-04,50\n"
    details = problems(body, CSV, "noise.exposure")
    assert [d["row"] for d in details] == [1, 2]
    assert details[0]["reason"] == "line 3: has 1 value but the header has 2 columns"
    assert details[1]["reason"] == "line 4: has 3 values but the header has 2 columns"


def test_csv_header_must_fit_the_stream_type() -> None:
    details = problems(b"ts,db,where\n2026-03-01,50,x\n", CSV, "noise.exposure")
    assert details == [
        {"row": None, "field": "where", "reason": "unknown field; known fields: ts, db"}
    ]
    details = problems(b"ts\n2026-03-01\n", CSV, "noise.exposure")
    assert [(d["row"], d["field"]) for d in details] == [(None, "db")]
    details = problems(b"ts,db,db\n2026-03-01,50,50\n", CSV, "noise.exposure")
    assert "twice" in details[0]["reason"]
    details = problems(b"ts,db,\n2026-03-01,50,\n", CSV, "noise.exposure")
    assert "no name" in details[0]["reason"]


def test_csv_dialect_details() -> None:
    body = (
        b"\xef\xbb\xbf ts , district,age_band,household_size\r\n"
        b'2026-01-01,"Old Town",65+,"2"\r\n'
        b"\r\n"
        b"2026-01-02,Harbour,30-44,3\r\n"
    )
    frame = decode(body, CSV, "profile")
    assert frame["district"].to_list() == ["Old Town", "Harbour"]
    assert frame["household_size"].to_list() == [2, 3]


def test_csv_quoted_newline_and_empty_cells() -> None:
    body = b'ts,mode,km,minutes\n2026-03-01,"bus\n",1,2\n2026-03-01,,"",2\n'
    details = problems(body, CSV, "mobility.trip")
    assert [(d["row"], d["field"], d["reason"]) for d in details] == [
        (0, "mode", 'must be one of "walk", "bike", "bus", "metro", "car", "other" (got "bus\\n")'),
        (1, "mode", "required field is empty"),
        (1, "km", "required field is empty"),
    ]


def test_bad_csv_quoting() -> None:
    with pytest.raises(InvalidBatch) as caught:
        decode(b'ts,db\n2026-03-01,"50\n', CSV, "noise.exposure")
    assert caught.value.message == "the body is not valid CSV"
    assert caught.value.details[0]["reason"].startswith("line ")


def test_validate_batch_takes_any_mapping_record() -> None:
    rows = [OrderedDict(GOOD_TRIP)]
    assert validate_batch(rows, stream("mobility.trip"), LIMIT).height == 1  # type: ignore[arg-type]


def test_validate_batch_refuses_records_that_are_not_objects() -> None:
    with pytest.raises(InvalidBatch) as caught:
        validate_batch([GOOD_TRIP, ["x"]], stream("mobility.trip"), LIMIT)  # type: ignore[list-item]
    assert [(d["row"], d["field"]) for d in caught.value.details] == [(1, None)]


# --------------------------------------------------------------------------------------------------
# The reference checker, value by value
# --------------------------------------------------------------------------------------------------

REF_ISO = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})"
    r"(?:[T ](?P<h>\d{2}):(?P<m>\d{2}):(?P<s>\d{2})(?:\.\d{1,9})?(?P<tz>Z|[+-]\d{2}:\d{2})?)?"
)
REF_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
BAD = object()  # the reference's "invalid"


def ref_iso(text: str) -> Any:
    match = REF_ISO.fullmatch(text)
    if not match:
        return BAD
    if match["h"] is not None and not (
        int(match["h"]) < 24 and int(match["m"]) < 60 and int(match["s"]) < 60
    ):
        return BAD
    tz = match["tz"]
    if tz is not None and tz != "Z" and not (int(tz[1:3]) < 24 and int(tz[4:6]) < 60):
        return BAD
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return BAD
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        return BAD


def ref_epoch(seconds: int) -> Any:
    if not EPOCH_MIN <= seconds <= EPOCH_MAX:
        return BAD
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds)


def ref_bounds(spec: FieldSpec, number: float) -> Any:
    if isinstance(number, float) and not math.isfinite(number):
        return BAD
    if spec.min is not None and number < spec.min:
        return BAD
    if spec.max is not None and number > spec.max:
        return BAD
    return number


def ref_json(spec: FieldSpec, value: Any) -> Any:
    """The converted value of a present, non-null JSON value, or BAD."""
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if spec.type == "timestamp":
        if isinstance(value, str):
            return ref_iso(value)
        if is_number and float(value).is_integer():
            return ref_epoch(int(value))
        return BAD
    if spec.type == "category":
        return value if isinstance(value, str) and value in spec.categories else BAD
    if spec.type == "string":
        return value if isinstance(value, str) else BAD
    if not is_number:
        return BAD
    if spec.type == "float":
        try:
            return ref_bounds(spec, float(value))
        except OverflowError:
            return BAD
    if isinstance(value, float) and not value.is_integer():
        return BAD
    checked = ref_bounds(spec, value)
    return BAD if checked is BAD else int(value)


def ref_text(spec: FieldSpec, text: str) -> Any:
    """The converted value of a non-empty CSV cell, or BAD."""
    if spec.type == "timestamp":
        if re.fullmatch(r"[+-]?\d+", text):
            return ref_epoch(int(text))
        return ref_iso(text)
    if spec.type in ("category", "string"):
        return ref_json(spec, text)
    if re.fullmatch(r"[+-]?\d+", text) and spec.type == "int":
        checked = ref_bounds(spec, int(text))
        return BAD if checked is BAD else int(text)
    if not REF_NUMBER.fullmatch(text):
        return BAD
    return ref_json(spec, float(text))


def ref_check(
    stream_type: StreamType, rows: list[dict[str, Any]], from_text: bool
) -> tuple[set[tuple[int, str]], dict[str, list[Any]]]:
    """The (row, field) pairs that are wrong, and the converted columns."""
    bad: set[tuple[int, str]] = set()
    columns: dict[str, list[Any]] = {name: [] for name in stream_type.field_names}
    for index, row in enumerate(rows):
        for key in row:
            if key not in columns:
                bad.add((index, key))
        for spec in stream_type.fields:
            value = row.get(spec.name)
            if value is None or (from_text and value == ""):
                converted = BAD if spec.required else None
            else:
                converted = ref_text(spec, value) if from_text else ref_json(spec, value)
            if converted is BAD:
                bad.add((index, spec.name))
            columns[spec.name].append(converted)
    return bad, columns


def reported(body: bytes, content_type: str, stream_type: StreamType) -> Any:
    try:
        return decode_batch(body, content_type, stream_type, LIMIT)
    except InvalidBatch as error:
        assert error.message.endswith("nothing was written")
        return {(d["row"], d["field"]) for d in error.details}


# --------------------------------------------------------------------------------------------------
# Hypothesis strategies
# --------------------------------------------------------------------------------------------------

offsets = st.integers(-23 * 60 - 59, 23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))


@st.composite
def iso_texts(draw: st.DrawFn) -> str:
    """Text in (or near) the timestamp grammar, for any moment in years 1 to 9999."""
    moment = draw(st.datetimes(timezones=st.none() | st.just(UTC) | offsets))
    if draw(st.booleans()):
        return moment.date().isoformat()
    text = (  # strftime("%Y") does not pad years below 1000
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"
        + draw(st.sampled_from("T "))
        + f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}"
    )
    digits = draw(st.integers(0, 9))
    if digits:
        fraction = f"{moment.microsecond:06d}" + draw(st.text("0123456789", min_size=3, max_size=3))
        text += "." + fraction[:digits]
    if moment.tzinfo is not None:
        offset = moment.utcoffset() or timedelta()
        if offset == timedelta() and draw(st.booleans()):
            text += "Z"
        else:
            minutes = int(offset.total_seconds() // 60)
            sign = "-" if minutes < 0 else "+"
            text += f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    return text


ODD_TIMESTAMPS = [
    "2026-02-30",
    "2026-13-01",
    "2026-3-1",
    "2026-03-01T24:00:00",
    "2026-03-01T12:60:00Z",
    "2026-03-01T12:00:60Z",
    "2026-03-01T12:00Z",
    "2026-03-01T12:00:00z",
    "2026-03-01T12:00:00.Z",
    "2026-03-01T12:00:00+0200",
    "2026-03-01T12:00:00+02",
    "20260301T120000Z",
    "+2026-03-01",
    "0000-01-01",
    "9999-12-31T23:00:00-01:00",
    "yesterday",
    "",
    " ",
]


def json_values(spec: FieldSpec) -> st.SearchStrategy[Any]:
    """Valid and invalid JSON values for a field (the reference tells which is which)."""
    wrong = st.sampled_from([None, True, False, "x", [], {}, "", MISSING])
    if spec.type == "timestamp":
        return st.one_of(
            iso_texts(),
            st.integers(EPOCH_MIN - 2, EPOCH_MAX + 2),
            st.sampled_from([EPOCH_MIN - 1, EPOCH_MAX + 1, 2**64, 1.0, 1.5, 1e300]),
            st.sampled_from(ODD_TIMESTAMPS),
            wrong,
        )
    if spec.type == "category":
        return st.one_of(
            st.sampled_from(spec.categories),
            st.sampled_from([c.upper() for c in spec.categories] + [" bus", 3]),
            wrong,
        )
    low = spec.min if spec.min is not None else -1e6
    high = spec.max if spec.max is not None else 1e6
    numbers = st.one_of(
        st.integers(int(low) - 2, int(high) + 2),
        st.floats(low - 1, high + 1),
        st.floats(),
        st.sampled_from([2**63, 2**64, -(2**63) - 1, 10**400, float("nan"), float("inf")]),
        st.integers(int(low), int(high)).map(float),
    )
    return st.one_of(numbers, st.sampled_from([str(low), "1"]), wrong)


def text_cells(spec: FieldSpec) -> st.SearchStrategy[str]:
    """Valid and invalid CSV cells for a field."""
    wrong = st.sampled_from(["", "x", "true", "null", " 1", "1 ", "1_0", "1,5", "--1", "0x1f"])
    if spec.type == "timestamp":
        return st.one_of(
            iso_texts(),
            st.integers(EPOCH_MIN - 2, EPOCH_MAX + 2).map(str),
            st.sampled_from(ODD_TIMESTAMPS + ["1.5", "+5", "-5", "12e3"]),
            wrong,
        )
    if spec.type == "category":
        return st.one_of(
            st.sampled_from(spec.categories), st.sampled_from(["BUS", "Old town"]), wrong
        )
    low = spec.min if spec.min is not None else -1e6
    high = spec.max if spec.max is not None else 1e6
    return st.one_of(
        st.integers(int(low) - 2, int(high) + 2).map(str),
        st.floats(low - 1, high + 1).map(repr),
        st.integers(int(low), int(high)).map(lambda n: f"{n}.0"),
        st.sampled_from(["1e0", "2E0", ".5", "5.", "+3", "-0", "inf", "-inf", "NaN", "1e400"]),
        st.sampled_from(["99999999999999999999", "1e30", "3.5"]),
        wrong,
    )


def clean_json_values(spec: FieldSpec) -> st.SearchStrategy[Any]:
    """Only valid JSON values for a field, in every accepted form."""
    if spec.type == "timestamp":
        seconds = st.integers(EPOCH_MIN, EPOCH_MAX)
        return st.one_of(valid_iso_texts(), seconds, seconds.map(float))
    if spec.type == "category":
        return st.sampled_from(spec.categories)
    whole = st.integers(math.ceil(spec.min or 0), math.floor(spec.max or 0))
    if spec.type == "int":
        return st.one_of(whole, whole.map(float))
    return st.one_of(st.floats(spec.min, spec.max), whole)


def clean_text_cells(spec: FieldSpec) -> st.SearchStrategy[str]:
    """Only valid CSV cells for a field."""
    if spec.type == "timestamp":
        return st.one_of(valid_iso_texts(), st.integers(EPOCH_MIN, EPOCH_MAX).map(str))
    if spec.type == "category":
        return st.sampled_from(spec.categories)
    whole = st.integers(math.ceil(spec.min or 0), math.floor(spec.max or 0))
    if spec.type == "int":
        return st.one_of(whole.map(str), whole.map(lambda n: f"{n}.0"))
    return st.one_of(st.floats(spec.min, spec.max).map(repr), whole.map(str))


def valid_iso_texts() -> st.SearchStrategy[str]:
    return iso_texts().filter(lambda text: ref_iso(text) is not BAD)


# How clean a generated batch is: anything goes, every value valid, or a few bad rows among many.
MIXES = st.sampled_from(["mixed", "clean", "mostly clean"])


@st.composite
def json_batches(draw: st.DrawFn) -> tuple[StreamType, list[dict[str, Any]]]:
    stream_type = stream(draw(st.sampled_from(STREAM_NAMES)))
    mix = draw(MIXES)
    rows = []
    for _ in range(draw(st.integers(1, 12))):
        clean = mix == "clean" or (mix == "mostly clean" and draw(st.integers(0, 7)) > 0)
        row = {}
        for spec in stream_type.fields:
            value = draw(clean_json_values(spec) if clean else json_values(spec))
            if value is not MISSING:
                row[spec.name] = value
        if not clean and draw(st.integers(0, 15)) == 0:
            row["extra"] = 1
        rows.append(row)
    return stream_type, rows


@st.composite
def csv_batches(draw: st.DrawFn) -> tuple[StreamType, list[dict[str, Any]]]:
    stream_type = stream(draw(st.sampled_from(STREAM_NAMES)))
    mix = draw(MIXES)
    rows = []
    for _ in range(draw(st.integers(1, 12))):
        clean = mix == "clean" or (mix == "mostly clean" and draw(st.integers(0, 7)) > 0)
        cells = clean_text_cells if clean else text_cells
        rows.append({spec.name: draw(cells(spec)) for spec in stream_type.fields})
    return stream_type, rows


@st.composite
def valid_rows(draw: st.DrawFn) -> tuple[StreamType, list[dict[str, Any]]]:
    """Rows that are valid in JSON and in CSV (timestamps as text or whole seconds)."""
    stream_type = stream(draw(st.sampled_from(STREAM_NAMES)))
    rows = []
    for _ in range(draw(st.integers(1, 12))):
        row: dict[str, Any] = {}
        for spec in stream_type.fields:
            value: Any
            if spec.type == "timestamp":
                value = draw(
                    st.one_of(
                        valid_iso_texts(),
                        st.integers(EPOCH_MIN, EPOCH_MAX),
                    )
                )
            elif spec.type == "category":
                value = draw(st.sampled_from(spec.categories))
            elif spec.type == "int":
                value = draw(st.integers(int(spec.min or 0), int(spec.max or 0)))
            else:
                value = draw(st.floats(spec.min, spec.max))
            row[spec.name] = value
        rows.append(row)
    return stream_type, rows


def expected(stream_type: StreamType, columns: dict[str, list[Any]]) -> pl.DataFrame:
    return pl.DataFrame(columns, schema=stream_type.polars_schema())


PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(json_batches(), st.sampled_from([JSON, NDJSON]))
def test_json_reports_exactly_the_rows_the_reference_finds_invalid(
    batch: tuple[StreamType, list[dict[str, Any]]], content_type: str
) -> None:
    stream_type, rows = batch
    bad, columns = ref_check(stream_type, rows, from_text=False)
    body = json_body(rows) if content_type == JSON else ndjson_body(rows)
    outcome = reported(body, content_type, stream_type)
    if bad:
        assert outcome == bad
        assert {row for row, _ in outcome} == {row for row, _ in bad}
    else:
        assert_frame_equal(outcome, expected(stream_type, columns))


@PROPERTY
@given(csv_batches())
def test_csv_reports_exactly_the_rows_the_reference_finds_invalid(
    batch: tuple[StreamType, list[dict[str, Any]]],
) -> None:
    stream_type, rows = batch
    bad, columns = ref_check(stream_type, rows, from_text=True)
    outcome = reported(csv_body(rows, list(stream_type.field_names)), CSV, stream_type)
    if bad:
        assert outcome == bad
    else:
        assert_frame_equal(outcome, expected(stream_type, columns))


@PROPERTY
@given(valid_rows())
def test_the_three_formats_give_equal_frames(
    batch: tuple[StreamType, list[dict[str, Any]]],
) -> None:
    stream_type, rows = batch
    _, columns = ref_check(stream_type, rows, from_text=False)
    want = expected(stream_type, columns)
    names = list(stream_type.field_names)
    for body, content_type in (
        (json_body(rows), JSON),
        (ndjson_body(rows), NDJSON),
        (csv_body(rows, names), CSV),
        (csv_body(rows, names[::-1], csv.QUOTE_ALL), CSV),
    ):
        assert_frame_equal(decode_batch(body, content_type, stream_type, LIMIT), want)


@PROPERTY
@given(valid_rows(), st.data())
def test_one_wrong_type_in_a_column_changes_nothing_else(
    batch: tuple[StreamType, list[dict[str, Any]]], data: st.DataObject
) -> None:
    """A value of the wrong JSON type sends its column down the per-value path; the other rows of
    that column must read exactly as on the vectorised path."""
    stream_type, rows = batch
    field = data.draw(st.sampled_from(stream_type.fields))
    index = data.draw(st.integers(0, len(rows) - 1))
    spoiled = [dict(row) for row in rows]
    spoiled[index][field.name] = [True]
    outcome = reported(json_body(spoiled), JSON, stream_type)
    assert outcome == {(index, field.name)}


def test_reference_agrees_on_the_fixed_tables() -> None:
    """The reference checker itself, against the hand-written tables above."""
    for value, moment in TIMESTAMPS:
        assert ref_json(stream("noise.exposure").field("ts"), value) == moment
    for name, field, value, _ in BAD_JSON_VALUES:
        if value is not MISSING and value is not None:
            assert ref_json(stream(name).field(field), value) is BAD, (field, value)
    for name, field, cell, _ in BAD_CSV_CELLS:
        if cell:
            assert ref_text(stream(name).field(field), cell) is BAD, (field, cell)
    assert ref_iso("2026-03-01") == datetime.combine(date(2026, 3, 1), datetime.min.time(), UTC)
