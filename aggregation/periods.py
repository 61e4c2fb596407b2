"""Budget periods: which stretch of time a spending counts against. Pure.

* A consent's period comes from its own terms (``dp_limits.period``, an ISO 8601 duration such as
  ``P1M``), counted from the consent's ``not_before``: a consent given on 14 March with ``P1M``
  has periods 14 March - 14 April, 14 April - 14 May, ... (calendar-aware, see
  ``consent.durations``).
* A department's budget is per calendar month (UTC), as the data protection officer sets it.
"""

from __future__ import annotations

from datetime import UTC, datetime

from consent.durations import Duration, parse_duration

_SECONDS_PER_DAY = 86_400


def _times(duration: Duration, n: int) -> Duration:
    return Duration(
        years=duration.years * n,
        months=duration.months * n,
        days=duration.days * n,
        hours=duration.hours * n,
        minutes=duration.minutes * n,
        seconds=duration.seconds * n,
    )


def _shortest_seconds(duration: Duration) -> float:
    """A lower bound of the duration's length (months of 28 days, years of 365)."""
    return (
        duration.years * 365 * _SECONDS_PER_DAY
        + duration.months * 28 * _SECONDS_PER_DAY
        + duration.days * _SECONDS_PER_DAY
        + duration.hours * 3600
        + duration.minutes * 60
        + duration.seconds
    )


def consent_period(not_before: datetime, period: str, at: datetime) -> tuple[datetime, datetime]:
    """The period ``[start, end)`` of a consent (valid from ``not_before``) that contains ``at``.

    Raises ``ValueError`` when ``at`` is before ``not_before`` (no period contains it)."""
    if at < not_before:
        raise ValueError("the consent has not started yet")
    duration = parse_duration(period)
    # Jump close with an estimate, then walk: months are uneven, so count from the anchor each
    # time (adding to the previous end would drift: 31 Jan + P1M + P1M is 28 Mar, not 31 Mar).
    # The estimate uses the longest possible length so it never overshoots.
    longest = _shortest_seconds(duration) * 31 / 28 + 86_400
    n = max(0, int((at - not_before).total_seconds() // longest) - 1)
    while _times(duration, n + 1).add_to(not_before) <= at:
        n += 1
    return _times(duration, n).add_to(not_before), _times(duration, n + 1).add_to(not_before)


class ConsentPeriods:
    """:func:`consent_period`, remembered: a city's consents are asked for their period at every
    release (about 17 µs each), and the answer changes only when ``at`` leaves it. A remembered
    period is returned only while it contains ``at``, and the period that contains ``at`` is
    unique, so the answer is always :func:`consent_period`'s. Holds at most ``max_entries``
    anchors (then starts afresh). Safe to share between threads."""

    def __init__(self, max_entries: int = 1_000_000) -> None:
        self._max_entries = max_entries
        self._known: dict[tuple[datetime, str], tuple[datetime, datetime]] = {}

    def period(self, not_before: datetime, period: str, at: datetime) -> tuple[datetime, datetime]:
        known = self._known.get((not_before, period))
        if known is not None and known[0] <= at < known[1]:
            return known
        found = consent_period(not_before, period, at)
        if len(self._known) >= self._max_entries:
            self._known = {}
        self._known[(not_before, period)] = found
        return found


def calendar_month(at: datetime) -> tuple[datetime, datetime]:
    """The calendar month (UTC) ``[start, end)`` that contains ``at``."""
    moment = at.astimezone(UTC)
    start = datetime(moment.year, moment.month, 1, tzinfo=UTC)
    end = (
        datetime(moment.year + 1, 1, 1, tzinfo=UTC)
        if moment.month == 12
        else datetime(moment.year, moment.month + 1, 1, tzinfo=UTC)
    )
    return start, end
