"""ISO 8601 durations (the subset consent terms use), parsed, normalised and added to times.

Accepted: ``P[nY][nM][nW][nD][T[nH][nM][nS]]`` with whole numbers of at most six digits, at least
one non-zero component, and at least one component after a ``T``. Examples: ``P1M`` (a calendar
month), ``P1Y``, ``P2W``, ``P30D``, ``PT12H``, ``P1Y6M``.

Normalised form (:meth:`Duration.iso`): weeks are written as days (``P2W`` becomes ``P14D``, which
is also a valid ``xsd:duration``, unlike ``P2W``), zero components are dropped, components appear
in the order Y M D T H M S. Terms store the normalised form, so equal durations are equal strings
and sign to equal bytes.

Adding a duration to a time (:meth:`Duration.add_to`) is calendar-aware: years and months move the
calendar date and clamp the day to the end of a shorter month (31 January + P1M = 28 or 29
February); days, hours, minutes and seconds are exact elapsed time (UTC has no daylight saving).

Pure: no I/O, no clock.
"""

from __future__ import annotations

import calendar
import functools
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

_PATTERN = re.compile(
    r"P(?:(?P<years>\d{1,6})Y)?(?:(?P<months>\d{1,6})M)?(?:(?P<weeks>\d{1,6})W)?"
    r"(?:(?P<days>\d{1,6})D)?"
    r"(?:T(?:(?P<hours>\d{1,6})H)?(?:(?P<minutes>\d{1,6})M)?(?:(?P<seconds>\d{1,6})S)?)?"
)
_MAX_COMPONENT = 999_999  # so that the normalised form (weeks as days) parses again


@dataclass(frozen=True, slots=True)
class Duration:
    """A parsed ISO 8601 duration; build one with :func:`parse_duration`."""

    years: int = 0
    months: int = 0
    days: int = 0
    hours: int = 0
    minutes: int = 0
    seconds: int = 0

    def iso(self) -> str:
        """The normalised ISO 8601 text (see the module docstring)."""
        date = "".join(
            f"{n}{unit}"
            for n, unit in ((self.years, "Y"), (self.months, "M"), (self.days, "D"))
            if n
        )
        time = "".join(
            f"{n}{unit}"
            for n, unit in ((self.hours, "H"), (self.minutes, "M"), (self.seconds, "S"))
            if n
        )
        return "P" + date + (f"T{time}" if time else "")

    def add_to(self, moment: datetime) -> datetime:
        """``moment`` plus this duration (calendar-aware for years and months).

        Raises ``ValueError`` when the result would fall outside the years datetime supports.
        """
        month_index = moment.month - 1 + self.months + 12 * self.years
        year = moment.year + month_index // 12
        month = month_index % 12 + 1
        if not 1 <= year <= 9999:
            raise ValueError("the duration reaches beyond the year 9999")
        day = min(moment.day, calendar.monthrange(year, month)[1])
        try:
            return moment.replace(year=year, month=month, day=day) + timedelta(
                days=self.days, hours=self.hours, minutes=self.minutes, seconds=self.seconds
            )
        except OverflowError as exc:
            raise ValueError("the duration reaches beyond the year 9999") from exc

    def single_unit(self) -> tuple[int, str] | None:
        """``(n, unit)`` when exactly one component is set (unit one of ``year``, ``month``,
        ``week``, ``day``, ``hour``, ``minute``, ``second``; whole weeks of days count as weeks),
        else ``None``. Used to say "a month" or "every 3 weeks" in plain words."""
        parts = [
            (n, unit)
            for n, unit in (
                (self.years, "year"),
                (self.months, "month"),
                (self.days, "day"),
                (self.hours, "hour"),
                (self.minutes, "minute"),
                (self.seconds, "second"),
            )
            if n
        ]
        if len(parts) != 1:
            return None
        n, unit = parts[0]
        if unit == "day" and n % 7 == 0:
            return n // 7, "week"
        return n, unit


def parse_duration(text: str) -> Duration:
    """Parse an ISO 8601 duration (see the module docstring); ``ValueError`` says what is wrong.

    Remembered by text (a :class:`Duration` is immutable): the budget ledger asks for the period
    of every contributing consent of a release, and they share a handful of period texts."""
    if not isinstance(text, str):
        raise ValueError("a duration must be text such as P1M")
    return _parse_text(text)


@functools.lru_cache(maxsize=256)
def _parse_text(text: str) -> Duration:
    match = _PATTERN.fullmatch(text)
    if match is None or text.endswith("T"):
        raise ValueError(
            f"{text!r} is not an ISO 8601 duration such as P1M, P1Y, P2W, P30D or PT12H "
            "(whole numbers of at most six digits)"
        )
    values = {name: int(value) for name, value in match.groupdict().items() if value is not None}
    values["days"] = values.get("days", 0) + 7 * values.pop("weeks", 0)
    duration = Duration(**values)
    if duration == Duration():
        raise ValueError(f"{text!r} is a duration of zero")
    if duration.days > _MAX_COMPONENT:
        raise ValueError(f"{text!r} is too long a duration")
    return duration


def normalise_duration(text: str) -> str:
    """The normalised form of an ISO 8601 duration (``ValueError`` when it is not one)."""
    return parse_duration(text).iso()
