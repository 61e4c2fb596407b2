"""Checking a parsed batch against its stream type, and turning it into a typed polars frame.

What a valid batch is (every rule is applied to every cell; the first rule a cell breaks is the one
reported):

* every record's fields are fields of the stream type; a required field is present and not null
  (in CSV an empty cell is a missing value);
* ``float`` fields hold numbers (JSON integers are fine; ``true``/``false`` are not numbers), and
  ``int`` fields hold whole numbers (``3`` or ``3.0``, not ``2.5``); both must be finite and within
  the field's ``min``/``max``;
* ``category`` fields hold one of the field's categories exactly; ``string`` fields hold text;
* timestamps are ISO 8601 text, ``YYYY-MM-DD`` or ``YYYY-MM-DDTHH:MM:SS`` (``T`` or a space) with an
  optional fraction of a second (up to 9 digits, kept to the microsecond) and an optional ``Z`` or
  ``+HH:MM``/``-HH:MM`` offset; no offset means UTC and a date alone means midnight UTC. A JSON
  integer (or a CSV cell of digits) is whole seconds since 1970-01-01 UTC. Years 1 to 9999 only;
* CSV cells are text, so numbers and timestamps are read from the text as written (no spaces).

The checks run column by column on polars data, so that 100,000 records cost tens of milliseconds;
only a column holding a value of the wrong JSON type is converted value by value in Python.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from types import NoneType
from typing import Any

import polars as pl

from vault.batch_parsing import (
    MAX_DETAILS,
    ParsedBatch,
    check_csv_columns,
    check_records_are_objects,
    empty_batch,
    parse_batch,
)
from vault.catalogue import FieldSpec, StreamType
from vault.errors import InvalidBatch, PayloadTooLarge

# What is wrong with a cell, checked in this order; 0 means nothing.
_OK = 0
_INVALID = 1  # a value of the wrong type, or text that does not read as one
_ABSENT = 2  # a required field is missing, null or empty
_NOT_FINITE = 3
_OUT_OF_RANGE = 4
_NOT_ALLOWED = 5  # not one of the categories

_ISO_PATTERN = (
    r"^\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])"
    r"(?:[T ](?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d{1,9})?(?:Z|[+-](?:[01]\d|2[0-3]):[0-5]\d)?)?$"
)
# The polars format for each timestamp shape (see _iso_shape).
_ISO_FORMATS = (
    "%Y-%m-%d",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%dT%H:%M:%S%.f%#z",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.f%#z",
)
_INT_TEXT = re.compile(r"[+-]?\d+")
_FLOAT_TEXT = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_EPOCH_MIN = -62_135_596_800  # 0001-01-01T00:00:00Z, in seconds
_EPOCH_MAX = 253_402_300_799  # 9999-12-31T23:59:59Z
_US_MIN = _EPOCH_MIN * 1_000_000
_US_MAX = (_EPOCH_MAX + 1) * 1_000_000 - 1
_I64_MIN = -(2**63)
_I64_MAX = 2**63 - 1
_SHOW_LIMIT = 60

_NUMBER_KINDS = frozenset({float, int, NoneType})
_INT_KINDS = frozenset({int, NoneType})
_TEXT_KINDS = frozenset({str, NoneType})

_TIMESTAMP_HINT = (
    "must be an ISO 8601 date and time such as 2026-03-01T12:00:00Z, "
    "or whole seconds since 1970-01-01"
)


def decode_batch(
    body: bytes, content_type: str | None, stream_type: StreamType, max_records: int
) -> pl.DataFrame:
    """Parse and validate an ingest body in one call.

    Same guarantees and errors as :func:`vault.batch_parsing.parse_batch` followed by
    :func:`validate_batch`.
    """
    return validate_batch(parse_batch(body, content_type, stream_type), stream_type, max_records)


def validate_batch(rows: ParsedBatch, stream_type: StreamType, max_records: int) -> pl.DataFrame:
    """Check every record of a parsed batch and return it as a typed frame.

    ``rows`` is what :func:`vault.batch_parsing.parse_batch` returns: a list of dicts (JSON, NDJSON)
    or a frame of text cells (CSV; any other column type is read as its text).

    Returns a frame with exactly the stream type's fields as columns, in catalogue order, typed as
    :meth:`StreamType.polars_schema` says, one row per record in order; an optional field with no
    value is null. Nothing is returned unless every record is valid.

    Raises :class:`PayloadTooLarge` for more than ``max_records`` records (saying the limit);
    :class:`InvalidBatch` for an empty batch, and ``"N of M rows are invalid; nothing was written"`` with
    one ``{"row", "field", "reason"}`` detail per bad cell or unknown field (rows numbered from 0,
    ordered by row then catalogue field order; at most 1000 details, the message then gives the
    total).
    """
    count = rows.height if isinstance(rows, pl.DataFrame) else len(rows)
    if count > max_records:
        raise PayloadTooLarge(
            f"the batch has {count} records; at most {max_records} are allowed in one batch",
            details=[{"row": None, "field": None, "reason": f"more than {max_records} records"}],
        )
    if count == 0:
        raise empty_batch()
    if isinstance(rows, pl.DataFrame):
        checker = _from_text(rows, stream_type)
    else:
        checker = _from_records(rows, stream_type)
    return checker.result()


# --------------------------------------------------------------------------------------------------
# The checked columns and the report
# --------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Column:
    """A field's values converted to its polars type (null where absent or unreadable).

    ``invalid`` marks cells that held something that is not a value of the field's type.
    """

    spec: FieldSpec
    values: pl.Series
    invalid: pl.Series | None = None


@dataclass(slots=True)
class _Checker:
    stream_type: StreamType
    columns: list[_Column]
    # (state, raw value) of one cell, for wording a reason: state is "present", "missing", "null"
    # or "empty"; raw is the JSON value or the CSV text.
    cell: Callable[[list[int]], dict[tuple[int, str], tuple[str, object]]]
    from_text: bool
    unknown: dict[int, list[str]]

    def result(self) -> pl.DataFrame:
        frame = pl.DataFrame(
            [c.values for c in self.columns]
            + [
                c.invalid.alias(_invalid_name(c.spec.name))
                for c in self.columns
                if c.invalid is not None
            ]
        )
        codes, sums = _checks(self.stream_type, tuple(c.invalid is not None for c in self.columns))
        counts = frame.select(sums).row(0)
        if not any(counts) and not self.unknown:
            return frame.select(self.stream_type.field_names)
        raise self._report(frame, codes, sum(counts))

    def _report(
        self, frame: pl.DataFrame, codes: tuple[pl.Expr, ...], cell_problems: int
    ) -> InvalidBatch:
        names = self.stream_type.field_names
        unknown = pl.Series("__unknown__", [False] * frame.height, dtype=pl.Boolean)
        if self.unknown:
            unknown = unknown.scatter(list(self.unknown), True)
        bad = (
            frame.with_columns(unknown)
            .select(
                pl.int_range(pl.len(), dtype=pl.Int64).alias("__row__"),
                *codes,
                pl.col("__unknown__"),
            )
            .filter(
                pl.any_horizontal(
                    *[pl.col(_code_name(n)) != _OK for n in names], pl.col("__unknown__")
                )
            )
        )
        bad_rows = bad.height
        total = cell_problems + sum(len(extra) for extra in self.unknown.values())
        first = bad.head(MAX_DETAILS)
        cells = self.cell(first["__row__"].to_list())
        known = ", ".join(names)
        details: list[dict[str, Any]] = []
        for record in first.iter_rows(named=True):
            row = record["__row__"]
            for column in self.columns:
                name = column.spec.name
                code = record[_code_name(name)]
                if code != _OK:
                    state, raw = cells.get((row, name), ("missing", None))
                    reason = _reason(column.spec, code, state, raw, self.from_text)
                    details.append({"row": row, "field": name, "reason": reason})
            for extra in self.unknown.get(row, ()):
                details.append(
                    {"row": row, "field": extra, "reason": f"unknown field; known fields: {known}"}
                )
            if len(details) >= MAX_DETAILS:
                break
        message = (
            f"{bad_rows} of {frame.height} {'row is' if frame.height == 1 else 'rows are'} invalid; "
            "nothing was written"
        )
        if total > MAX_DETAILS:
            message += f" ({total} problems in all; the first {MAX_DETAILS} are listed)"
        return InvalidBatch(message, details=details[:MAX_DETAILS])


def _invalid_name(name: str) -> str:
    return f"__invalid__{name}"


def _code_name(name: str) -> str:
    return f"__code__{name}"


@functools.lru_cache(maxsize=64)
def _checks(
    stream_type: StreamType, has_invalid: tuple[bool, ...]
) -> tuple[tuple[pl.Expr, ...], tuple[pl.Expr, ...]]:
    """Per field: the failure-code expression, and the count of failing cells (built once)."""
    codes = tuple(
        _code_expr(spec, invalid).alias(_code_name(spec.name))
        for spec, invalid in zip(stream_type.fields, has_invalid, strict=True)
    )
    sums = tuple((code != _OK).sum() for code in codes)
    return codes, sums


def _code_expr(spec: FieldSpec, has_invalid: bool) -> pl.Expr:
    """What is wrong with each cell of a field's column (0 for nothing), as a UInt8 expression."""
    value = pl.col(spec.name)
    checks: list[tuple[pl.Expr, int]] = []
    if has_invalid:
        checks.append((pl.col(_invalid_name(spec.name)), _INVALID))
    if spec.required:
        checks.append((value.is_null(), _ABSENT))
    if spec.type == "float":
        checks.append((~value.is_finite(), _NOT_FINITE))
    if spec.is_numeric and spec.min is not None and spec.max is not None:
        checks.append((~value.is_between(spec.min, spec.max), _OUT_OF_RANGE))
    elif spec.is_numeric and spec.min is not None:
        checks.append((value < spec.min, _OUT_OF_RANGE))
    elif spec.is_numeric and spec.max is not None:
        checks.append((value > spec.max, _OUT_OF_RANGE))
    if spec.type == "category":
        checks.append((~value.is_in(list(spec.categories)), _NOT_ALLOWED))
    code = pl.lit(_OK, dtype=pl.UInt8)
    for condition, failure in reversed(checks):
        code = pl.when(condition).then(pl.lit(failure, dtype=pl.UInt8)).otherwise(code)
    return code


# --------------------------------------------------------------------------------------------------
# JSON and NDJSON records
# --------------------------------------------------------------------------------------------------


def _from_records(rows: list[dict[str, Any]], stream_type: StreamType) -> _Checker:
    check_records_are_objects(rows)
    known = frozenset(stream_type.field_names)
    unknown: dict[int, list[str]] = {}
    if not known.issuperset(set().union(*rows)):
        for index, row in enumerate(rows):
            extra = [key for key in row if key not in known]
            if extra:
                unknown[index] = extra
    columns = [
        _convert_values(spec, [row.get(spec.name) for row in rows]) for spec in stream_type.fields
    ]

    def cell(indices: list[int]) -> dict[tuple[int, str], tuple[str, object]]:
        found: dict[tuple[int, str], tuple[str, object]] = {}
        for index in indices:
            row = rows[index]
            for name in stream_type.field_names:
                if name not in row:
                    found[index, name] = ("missing", None)
                elif row[name] is None:
                    found[index, name] = ("null", None)
                else:
                    found[index, name] = ("present", row[name])
        return found

    return _Checker(stream_type, columns, cell, from_text=False, unknown=unknown)


def _convert_values(spec: FieldSpec, values: list[Any]) -> _Column:
    """Convert one field's JSON values; vectorised unless a value has an unexpected JSON type."""
    kinds = set(map(type, values))
    dtype = spec.polars_dtype()
    if spec.type == "timestamp":
        return _timestamps_from_values(spec, values, kinds)
    fast = {"float": _NUMBER_KINDS, "int": _INT_KINDS}.get(spec.type, _TEXT_KINDS)
    if kinds <= fast:
        try:
            return _Column(spec, pl.Series(spec.name, values, dtype=dtype, strict=True))
        except (TypeError, ValueError, OverflowError, pl.exceptions.PolarsError):
            pass  # an int beyond 64 bits: read value by value below
    if spec.type == "float":
        converted: list[Any] = [_as_float(v) for v in values]
    elif spec.type == "int":
        converted = [_as_int(v) for v in values]
    else:
        converted = [v if type(v) is str else None for v in values]
    series = pl.Series(spec.name, converted, dtype=dtype, strict=True)
    return _Column(spec, series, _present(values) & series.is_null())


def _timestamps_from_values(spec: FieldSpec, values: list[Any], kinds: set[type]) -> _Column:
    if kinds <= _TEXT_KINDS:
        text = pl.Series(spec.name, values, dtype=pl.String)
        parsed, complete = _parse_iso(text)
        return _Column(spec, parsed, None if complete else text.is_not_null() & parsed.is_null())
    if kinds <= _INT_KINDS:
        try:
            seconds = pl.Series(spec.name, values, dtype=pl.Int64, strict=True)
        except (TypeError, ValueError, OverflowError, pl.exceptions.PolarsError):
            pass
        else:
            parsed = _from_epoch(seconds)
            return _Column(spec, parsed, seconds.is_not_null() & parsed.is_null())
    text = pl.Series(spec.name, [v if type(v) is str else None for v in values], dtype=pl.String)
    seconds = pl.Series(spec.name, [_as_int(v) for v in values], dtype=pl.Int64)
    parsed = _parse_iso(text)[0].fill_null(_from_epoch(seconds))
    return _Column(spec, parsed, _present(values) & parsed.is_null())


def _present(values: list[Any]) -> pl.Series:
    return pl.Series([v is not None for v in values], dtype=pl.Boolean)


def _as_float(value: object) -> float | None:
    """A JSON number as a float; None for anything else, or an integer too large for a float."""
    if type(value) is float:
        return value
    if type(value) is int:
        try:
            return float(value)
        except OverflowError:
            return None
    return None


def _as_int(value: object) -> int | None:
    """A JSON whole number (``3`` or ``3.0``) within 64 bits; None for anything else."""
    if type(value) is float and value.is_integer():
        value = int(value)
    if type(value) is int and _I64_MIN <= value <= _I64_MAX:
        return value
    return None


# --------------------------------------------------------------------------------------------------
# CSV text
# --------------------------------------------------------------------------------------------------


def _from_text(table: pl.DataFrame, stream_type: StreamType) -> _Checker:
    check_csv_columns(table.columns, stream_type)
    given = [spec for spec in stream_type.fields if spec.name in table.columns]
    exprs: list[pl.Expr] = []
    for spec in given:
        text = pl.col(spec.name).cast(pl.String)
        text = pl.when(text != "").then(text)  # an empty cell is a missing value
        if spec.type == "timestamp":
            exprs.append(text.alias(spec.name))  # read below, with a Python-chosen format
            continue
        value = _text_value(spec, text)
        exprs.append(value.alias(spec.name))
        exprs.append((text.is_not_null() & value.is_null()).alias(_invalid_name(spec.name)))
    converted = table.select(exprs)

    columns: list[_Column] = []
    for spec in stream_type.fields:
        if spec.name not in table.columns:
            empty = pl.Series(spec.name, [None] * table.height, dtype=spec.polars_dtype())
            columns.append(_Column(spec, empty))
        elif spec.type == "timestamp":
            columns.append(_timestamps_from_text(spec, converted[spec.name]))
        else:
            columns.append(_Column(spec, converted[spec.name], converted[_invalid_name(spec.name)]))

    def cell(indices: list[int]) -> dict[tuple[int, str], tuple[str, object]]:
        found: dict[tuple[int, str], tuple[str, object]] = {}
        picked = table.select(pl.col(spec.name).cast(pl.String).gather(indices) for spec in given)
        for index, record in zip(indices, picked.iter_rows(named=True), strict=True):
            for name, raw in record.items():
                found[index, name] = ("empty", None) if raw in (None, "") else ("present", raw)
        return found

    return _Checker(stream_type, columns, cell, from_text=True, unknown={})


def _text_value(spec: FieldSpec, cell: pl.Expr) -> pl.Expr:
    """A CSV cell's text as the field's type (not for timestamps); null where unreadable."""
    if spec.type == "float":
        return cell.cast(pl.Float64, strict=False)
    if spec.type == "int":
        number = cell.cast(pl.Float64, strict=False)  # "3.0" and "1e3" are whole numbers too
        whole = (
            number.is_finite()
            & (number == number.floor())
            & number.is_between(float(_I64_MIN), float(2**63), closed="left")
        )
        return pl.coalesce(
            cell.cast(pl.Int64, strict=False),
            pl.when(whole).then(number.cast(pl.Int64, strict=False)),
        )
    return cell


def _timestamps_from_text(spec: FieldSpec, cells: pl.Series) -> _Column:
    parsed, complete = _parse_iso(cells)
    if complete:
        return _Column(spec, parsed)
    parsed = parsed.fill_null(_from_epoch(cells.cast(pl.Int64, strict=False)))
    return _Column(spec, parsed, cells.is_not_null() & parsed.is_null())


# --------------------------------------------------------------------------------------------------
# Timestamps
# --------------------------------------------------------------------------------------------------


def _parse_iso(text: pl.Series) -> tuple[pl.Series, bool]:
    """ISO 8601 text (the grammar in the module docstring) as ``Datetime("us", "UTC")``.

    Returns the parsed column, null where the text is null, does not match the grammar, names no
    real date (``2026-02-30``) or falls outside years 1 to 9999; and whether every non-null text
    was read. Each shape of text (date only, with or without offset, ``T`` or space) is parsed with
    its own exact format: first the shape of the first value for the whole column (one pass for
    the usual batch), then, if that left matching text unread, shape by shape.
    """
    t = pl.col("t")
    sample = next((v for v in text.head(16).to_list() if v is not None), "")
    fmt = _ISO_FORMATS[_sample_shape(sample)]
    # The two costly steps run once each (and side by side); the rest is cheap logic on them.
    read = (
        text.rename("t")
        .to_frame()
        .select(
            t.str.contains(_ISO_PATTERN).alias("matches"),
            t.str.to_datetime(
                fmt, time_unit="us", time_zone="UTC", strict=False, cache=False
            ).alias("guessed"),
        )
    )
    matches, guessed = pl.col("matches"), pl.col("guessed")
    parsed = pl.when(matches).then(guessed)
    in_range = parsed.dt.epoch("us").is_between(_US_MIN, _US_MAX).fill_null(False)
    first = read.select(
        parsed.alias("t"),
        (matches.is_null() | in_range).all().alias("complete"),
        (matches & guessed.is_null()).any().alias("unread"),
    )
    result = first["t"]
    if first["complete"][0]:
        return result.rename(text.name), True
    if first["unread"][0]:
        result = _parse_iso_by_shape(text.rename("t"))
    r = pl.col("t")
    checked = result.to_frame().select(
        pl.when(r.dt.epoch("us").is_between(_US_MIN, _US_MAX)).then(r)
    )
    return checked.to_series().rename(text.name), False


def _parse_iso_by_shape(text: pl.Series) -> pl.Series:
    t = pl.col("t")
    shapes = text.to_frame().select(pl.when(t.str.contains(_ISO_PATTERN)).then(_iso_shape(t)))
    shape_of = shapes.to_series()
    result = pl.Series("t", [None] * len(text), dtype=pl.Datetime("us", "UTC"))
    for shape in shape_of.drop_nulls().unique().to_list():
        where = (shape_of == shape).fill_null(False).arg_true()
        parsed = text.gather(where).str.to_datetime(
            _ISO_FORMATS[shape], time_unit="us", time_zone="UTC", strict=False, cache=False
        )
        result = result.scatter(where, parsed)
    return result


def _sample_shape(sample: str) -> int:
    """_iso_shape for one Python string (any string: a wrong guess only costs time)."""
    if len(sample) <= 10:
        return 0
    has_offset = sample.endswith("Z") or sample[-6] in "+-"
    if sample[10] == " ":
        return 4 if has_offset else 3
    return 2 if has_offset else 1


def _iso_shape(t: pl.Expr) -> pl.Expr:
    """Index into _ISO_FORMATS of text already known to match the grammar."""
    has_offset = t.str.ends_with("Z") | t.str.slice(-6, 1).is_in(["+", "-"])
    with_t = pl.when(has_offset).then(2).otherwise(1)
    with_space = pl.when(has_offset).then(4).otherwise(3)
    return (
        pl.when(t.str.len_bytes() == 10)
        .then(0)
        .when(t.str.slice(10, 1) == " ")
        .then(with_space)
        .otherwise(with_t)
    )


def _from_epoch(seconds: pl.Series) -> pl.Series:
    """Whole seconds since 1970-01-01 UTC as ``Datetime("us", "UTC")``; null outside years 1-9999."""
    s = pl.col("s")
    return (
        seconds.rename("s")
        .to_frame()
        .select(
            pl.when(s.is_between(_EPOCH_MIN, _EPOCH_MAX))
            .then(s * 1_000_000)
            .cast(pl.Datetime("us"))
            .dt.replace_time_zone("UTC")
        )
        .to_series()
        .rename(seconds.name)
    )


# --------------------------------------------------------------------------------------------------
# Wording the reasons
# --------------------------------------------------------------------------------------------------


def _reason(spec: FieldSpec, code: int, state: str, raw: object, from_text: bool) -> str:
    if code == _ABSENT:
        return f"required field is {state}"
    if code == _NOT_FINITE:
        return f"must be a finite number (got {_show_number(raw, from_text)})"
    if code == _OUT_OF_RANGE:
        return _range_reason(spec, _show_number(raw, from_text))
    if code == _NOT_ALLOWED:
        return _category_reason(spec, raw)
    return _invalid_reason(spec, raw, from_text)


def _invalid_reason(spec: FieldSpec, raw: object, from_text: bool) -> str:
    got = _show(raw)
    if spec.type == "timestamp":
        return f"{_TIMESTAMP_HINT} (got {got})"
    if spec.type == "category":
        return _category_reason(spec, raw)
    if spec.type == "string":
        return f"must be text (got {got})"
    number = _number_from_text(raw) if from_text else _number_from_json(raw)
    if spec.type == "float":
        if number is None:
            return f"must be a number (got {got})"
        return _range_reason(spec, _show_number(raw, from_text))  # too large to store
    if number is None or (isinstance(number, float) and not number.is_integer()):
        return f"must be a whole number (got {got})"
    return _range_reason(spec, _show_number(raw, from_text))


def _number_from_json(raw: object) -> int | float | None:
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        return None
    return raw


def _number_from_text(raw: object) -> int | float | None:
    if not isinstance(raw, str):
        return None
    if _INT_TEXT.fullmatch(raw):
        return int(raw)
    if _FLOAT_TEXT.fullmatch(raw):
        return float(raw)
    return None


def _range_reason(spec: FieldSpec, shown: str) -> str:
    low, high = spec.min, spec.max
    if low is not None and high is not None:
        return f"must be between {low} and {high} (got {shown})"
    if low is not None:
        return f"must be at least {low} (got {shown})"
    if high is not None:
        return f"must be at most {high} (got {shown})"
    return f"is too large to store (got {shown})"


def _category_reason(spec: FieldSpec, raw: object) -> str:
    allowed = ", ".join(json.dumps(c, ensure_ascii=False) for c in spec.categories)
    return f"must be one of {allowed} (got {_show(raw)})"


def _show_number(raw: object, from_text: bool) -> str:
    """A number as the client wrote it: CSV text as is, a JSON value as JSON."""
    if from_text and isinstance(raw, str):
        return _shorten(raw)
    return _show(raw)


def _show(raw: object) -> str:
    """A value as JSON (strings quoted), shortened to about 60 characters."""
    try:
        text = json.dumps(raw, ensure_ascii=False, allow_nan=True)
    except (TypeError, ValueError):
        text = repr(raw)
    return _shorten(text)


def _shorten(text: str) -> str:
    return text if len(text) <= _SHOW_LIMIT else text[: _SHOW_LIMIT - 1] + "…"
