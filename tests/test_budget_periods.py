"""Budget periods (aggregation.periods): the period of a consent contains the moment asked about,
periods follow each other without gaps, and the remembered periods answer exactly as computing
them does, whatever order the moments come in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregation.periods import ConsentPeriods, calendar_month, consent_period

PERIODS = ["P1D", "P7D", "P1M", "P3M", "P1Y", "PT12H", "P1M15D"]
moments = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2032, 12, 31), timezones=st.just(UTC)
)


@settings(max_examples=200, deadline=None)
@given(not_before=moments, period=st.sampled_from(PERIODS), later=st.integers(0, 3 * 365 * 86400))
def test_the_period_contains_the_moment_and_the_next_one_follows(
    not_before: datetime, period: str, later: int
) -> None:
    at = not_before + timedelta(seconds=later)
    start, end = consent_period(not_before, period, at)
    assert not_before <= start <= at < end
    assert consent_period(not_before, period, end)[0] == end  # no gap, no overlap
    if start > not_before:
        assert consent_period(not_before, period, start - timedelta(microseconds=1))[1] == start


def test_a_moment_before_the_consent_has_no_period() -> None:
    start = datetime(2026, 3, 14, tzinfo=UTC)
    with pytest.raises(ValueError):
        consent_period(start, "P1M", start - timedelta(seconds=1))
    with pytest.raises(ValueError):
        ConsentPeriods().period(start, "P1M", start - timedelta(seconds=1))


def test_months_are_counted_from_the_anchor() -> None:
    anchor = datetime(2026, 1, 31, tzinfo=UTC)
    assert consent_period(anchor, "P1M", datetime(2026, 3, 30, tzinfo=UTC)) == (
        datetime(2026, 2, 28, tzinfo=UTC),
        datetime(2026, 3, 31, tzinfo=UTC),
    )


@settings(max_examples=100, deadline=None)
@given(
    asks=st.lists(
        st.tuples(st.integers(0, 3), st.sampled_from(PERIODS), st.integers(0, 2 * 365 * 86400)),
        min_size=1,
        max_size=40,
    ),
    max_entries=st.integers(1, 5),
)
def test_remembered_periods_answer_exactly_as_computing_them(
    asks: list[tuple[int, str, int]], max_entries: int
) -> None:
    """Property: for any sequence of questions (moments going back and forth, several anchors, a
    tiny memory), :class:`ConsentPeriods` gives :func:`consent_period`'s answer."""
    anchors = [datetime(2025, 1, 31, tzinfo=UTC) + timedelta(days=37 * i) for i in range(4)]
    memo = ConsentPeriods(max_entries=max_entries)
    for anchor, period, later in asks:
        at = anchors[anchor] + timedelta(seconds=later)
        assert memo.period(anchors[anchor], period, at) == consent_period(
            anchors[anchor], period, at
        )


def test_calendar_month() -> None:
    assert calendar_month(datetime(2026, 12, 31, 23, 59, tzinfo=UTC)) == (
        datetime(2026, 12, 1, tzinfo=UTC),
        datetime(2027, 1, 1, tzinfo=UTC),
    )
