"""The small-batch fast path only ever accepts what the full validator accepts, with equal values."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from vault.batch_validation import validate_batch
from vault.catalogue import default_catalogue
from vault.chunk_codec import decode, encode_rows
from vault.errors import InvalidBatch
from vault.small_batch import SMALL_BATCH, accept_small_batch

TRIP = default_catalogue().get("mobility.trip")

timestamps = st.one_of(
    st.tuples(
        st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
        st.sampled_from(["seconds", "microseconds"]),
    ).map(lambda pair: pair[0].isoformat(timespec=pair[1])),
    st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2100, 1, 1)).map(
        lambda d: d.strftime("%Y-%m-%dT%H:%M:%SZ")
    ),
    st.dates().map(lambda d: d.isoformat()),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.sampled_from(
        [
            "2026-02-30",
            "2026-03-01 10:00:00",
            "2026-03-01T10:00:00.1234567Z",
            "2026-03-01T10:00:00+05:30",
            "2026-03-01T24:00:00Z",
            "",
            "now",
            None,
            True,
        ]
    ),
)
numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.sampled_from([0, 0.0, 100, 100.0, 240, -0.0, True, "5", None]),
)
record = st.fixed_dictionaries(
    {
        "ts": timestamps,
        "mode": st.sampled_from(["walk", "bike", "car", "Car", "", 3, None]),
        "km": numbers,
        "minutes": numbers,
    },
    optional={"extra": st.just(1)},
)


@settings(max_examples=600, deadline=None)
@given(rows=st.lists(record, min_size=1, max_size=SMALL_BATCH))
def test_fast_path_never_accepts_more_or_different(rows: list[dict[str, object]]) -> None:
    fast = accept_small_batch(rows, TRIP)
    try:
        full = validate_batch(rows, TRIP, 1000)
    except InvalidBatch:
        assert fast is None, f"fast path accepted a batch the validator refuses: {rows!r}"
        return
    if fast is None:
        return  # the fast path may decline; the full path then does the work
    plaintext = encode_rows(TRIP.field_names, fast)
    assert decode(plaintext.data, plaintext.format, TRIP.polars_schema()).equals(full)


def test_fast_path_takes_the_common_one_record_write() -> None:
    rows = [{"ts": "2026-03-01T08:00:00Z", "mode": "bike", "km": 3.5, "minutes": 14}]
    fast = accept_small_batch(rows, TRIP)
    assert fast is not None
    frame = decode(encode_rows(TRIP.field_names, fast).data, "json-rows", TRIP.polars_schema())
    assert frame["ts"][0] == datetime(2026, 3, 1, 8, tzinfo=UTC)
    assert frame.schema == TRIP.polars_schema()


def test_large_batches_take_the_vectorised_path() -> None:
    rows = [{"ts": "2026-03-01T08:00:00Z", "mode": "bike", "km": 3.5, "minutes": 14}] * (
        SMALL_BATCH + 1
    )
    assert accept_small_batch(rows, TRIP) is None
    assert isinstance(validate_batch(rows, TRIP, 1000), pl.DataFrame)
