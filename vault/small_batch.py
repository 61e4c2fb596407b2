"""A fast path for small JSON batches (a sensor or an app sending one reading at a time).

Building polars frames costs about a millisecond whatever the size, which is most of the work of a
one-record write. :func:`accept_small_batch` checks a small batch in plain Python and answers only
when every record is *plainly* valid; anything unusual (a wrong type, a missing field, an unknown
field, an out-of-range value, an unusual timestamp) returns ``None`` and the batch goes through
:func:`vault.batch_validation.validate_batch`, which also words the errors.

Property (tested with Hypothesis): when this accepts a batch, ``validate_batch`` accepts it too and
gives the same values. It never rejects on its own, so it cannot change what is refused or how.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any

from vault.catalogue import FieldSpec, StreamType

#: Batches up to this many records take the fast path.
SMALL_BATCH = 32

# A strict subset of the timestamps validate_batch accepts: up to microseconds, 'Z' or +HH:MM.
_TS = re.compile(
    r"\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])"
    r"(T([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d{1,6})?(Z|[+-]([01]\d|2[0-3]):[0-5]\d)?)?"
)
_EPOCH_MIN = -62_135_596_800
_EPOCH_MAX = 253_402_300_799


def _timestamp(value: Any) -> int | None:
    """Microseconds since 1970 (UTC), or ``None`` when not plainly a timestamp."""
    if type(value) is int:
        if _EPOCH_MIN <= value <= _EPOCH_MAX:
            return value * 1_000_000
        return None
    if type(value) is not str or not _TS.fullmatch(value):
        return None
    text = value[:-1] + "+00:00" if value.endswith("Z") else value
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:  # e.g. 31 February
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _cell(spec: FieldSpec, value: Any) -> tuple[bool, Any]:
    """(plainly valid, the value as stored)."""
    if spec.type == "timestamp":
        micros = _timestamp(value)
        return micros is not None, micros
    if spec.type == "float":
        if type(value) not in (float, int) or not math.isfinite(value):
            return False, None
        number = float(value)
    elif spec.type == "int":
        if type(value) is not int:
            return False, None
        number = value
    elif spec.type == "category":
        return type(value) is str and value in spec.categories, value
    else:
        return type(value) is str and value != "", value
    low_ok = spec.min is None or number >= spec.min
    high_ok = spec.max is None or number <= spec.max
    return low_ok and high_ok, number


def accept_small_batch(rows: object, stream_type: StreamType) -> list[list[Any]] | None:
    """The records as rows of stored values (timestamps as microseconds since 1970, UTC), in
    catalogue field order; or ``None`` when the batch is not small and plainly valid."""
    if not isinstance(rows, list) or not 0 < len(rows) <= SMALL_BATCH:
        return None
    fields = stream_type.fields
    names = set(stream_type.field_names)
    out: list[list[Any]] = []
    for record in rows:
        if type(record) is not dict or not names.issuperset(record):
            return None
        values: list[Any] = []
        for spec in fields:
            value = record.get(spec.name)
            if value is None:
                if spec.required:
                    return None
                values.append(None)
                continue
            ok, stored = _cell(spec, value)
            if not ok:
                return None
            values.append(stored)
        out.append(values)
    return out
