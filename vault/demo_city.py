"""The demo city: made-up citizens with plausible data, and seeding them into a vault.

Two halves:

* **Generating** (:func:`generate_city`, :func:`generate_readings`) is pure and deterministic: the
  same arguments give equal frames, on any machine, because every random draw comes from one
  ``numpy.random.default_rng(seed)`` in a fixed order. Nothing happens at import time. The work is
  vectorised: one long frame per stream type, with a ``citizen`` column, split afterwards by
  slicing (zero-copy); 100,000 citizens x 10 readings take a fraction of a second.
* **Seeding** (:func:`seed_demo_city`) registers the citizens, gives each one stream per stream
  type and writes the generated data as one encrypted chunk per stream, in batches of citizens per
  transaction. It is what ``make run`` does on an empty database.

Guarantees of the generated data (checked against the catalogue when generating, not assumed):

* every frame has exactly the catalogue's columns, in catalogue order, with the catalogue's dtypes
  (``ts`` is ``Datetime("us", "UTC")``), plus ``citizen`` (``Int64``, first) in the long frames;
* every number lies within its field's ``min``/``max`` and every category is one of its field's
  categories;
* rows are sorted by citizen, then by ``ts``;
* districts differ the way a reader of a dashboard would expect: more metro and walking in Old
  Town and University, more car trips in Greenbelt and Eastfield, louder days in Harbour and Old
  Town, bigger households (and so more electricity) in Greenbelt and North Hill.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import polars as pl
from sqlmodel import Session, select

from consent.request_templates import DEPARTMENT_NAMES, shipped_requests
from consent.terms import Narrowing
from vault.catalogue import StreamType, default_catalogue
from vault.chunk_codec import encode_frame
from vault.clock import utcnow
from vault.crypto.passphrase_wrap import KdfCost
from vault.crypto.root_keys import RootKeys
from vault.models import Citizen

if TYPE_CHECKING:
    from vault.runtime import VaultRuntime

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

# --------------------------------------------------------------------------------------------------
# The city's make-up (names must be categories of the catalogue; checked when generating)
# --------------------------------------------------------------------------------------------------

ENERGY = "energy.consumption"
MOBILITY = "mobility.trip"
NOISE = "noise.exposure"
SURVEY = "survey.response"
PROFILE = "profile"
#: The stream types every demo citizen gets, one stream each, in this order.
DEMO_STREAM_TYPES = (ENERGY, MOBILITY, NOISE, SURVEY, PROFILE)

DISTRICTS = (
    "Old Town",
    "Riverside",
    "Harbour",
    "North Hill",
    "Westgate",
    "Eastfield",
    "University",
    "Greenbelt",
)
#: Share of the population living in each district (same order as DISTRICTS).
DISTRICT_SHARES = (0.10, 0.14, 0.12, 0.12, 0.14, 0.14, 0.10, 0.14)

AGE_BANDS = ("18-29", "30-44", "45-64", "65+")
#: Age mix per district (rows follow DISTRICTS, columns AGE_BANDS).
AGE_SHARES = (
    (0.28, 0.30, 0.27, 0.15),
    (0.20, 0.30, 0.32, 0.18),
    (0.24, 0.30, 0.30, 0.16),
    (0.14, 0.28, 0.36, 0.22),
    (0.22, 0.29, 0.31, 0.18),
    (0.18, 0.32, 0.32, 0.18),
    (0.55, 0.25, 0.13, 0.07),
    (0.12, 0.32, 0.36, 0.20),
)
#: Mean number of other people in the household, per age band and as a factor per district.
HOUSEHOLD_EXTRA_BY_AGE = (0.9, 1.9, 1.4, 0.6)
HOUSEHOLD_FACTOR_BY_DISTRICT = (0.8, 1.0, 0.9, 1.25, 1.0, 1.2, 0.6, 1.35)

#: Electricity per home: kWh/day = (base + per_person * household) * district * citizen * day.
ENERGY_BASE_KWH = 1.8
ENERGY_PER_PERSON_KWH = 2.1
#: Flats in the centre use less, detached houses on the edge more.
ENERGY_FACTOR_BY_DISTRICT = (0.85, 1.0, 0.95, 1.1, 1.0, 1.15, 0.8, 1.2)

MODES = ("walk", "bike", "bus", "metro", "car", "other")
#: Mode shares per district (rows follow DISTRICTS, columns MODES; each row sums to 1).
MODE_SHARES = (
    (0.30, 0.14, 0.14, 0.30, 0.07, 0.05),
    (0.20, 0.20, 0.20, 0.18, 0.17, 0.05),
    (0.18, 0.12, 0.28, 0.16, 0.20, 0.06),
    (0.15, 0.10, 0.25, 0.12, 0.33, 0.05),
    (0.17, 0.15, 0.25, 0.15, 0.23, 0.05),
    (0.10, 0.08, 0.20, 0.07, 0.50, 0.05),
    (0.28, 0.30, 0.12, 0.24, 0.03, 0.03),
    (0.08, 0.12, 0.12, 0.03, 0.60, 0.05),
)
#: Per mode (same order as MODES): median km, spread (log-normal sigma), longest plausible km,
#: door-to-door speed in km/h, and fixed minutes (waiting, parking).
TRIP_MEDIAN_KM = (1.0, 3.5, 5.0, 7.0, 11.0, 6.0)
TRIP_SIGMA = (0.5, 0.5, 0.55, 0.5, 0.7, 0.8)
TRIP_MAX_KM = (8.0, 30.0, 40.0, 40.0, 100.0, 100.0)
TRIP_SPEED_KMH = (5.0, 15.0, 18.0, 30.0, 28.0, 20.0)
TRIP_OVERHEAD_MIN = (0.0, 2.0, 7.0, 8.0, 4.0, 5.0)
#: Trips per week: a gamma-distributed rate per citizen with this mean.
TRIPS_PER_WEEK = 4.0

#: Typical daily noise exposure per district, in dB(A); each day is clipped to NOISE_RANGE_DB.
NOISE_BY_DISTRICT_DB = (66.0, 58.0, 68.0, 52.0, 57.0, 55.0, 60.0, 48.0)
NOISE_RANGE_DB = (40.0, 90.0)

QUESTIONS = ("q-parks", "q-transit", "q-safety", "q-noise", "q-services")
QUESTION_BASE = (3.4, 3.2, 3.6, 3.2, 3.3)
#: How each district shifts the answers (rows follow DISTRICTS, columns QUESTIONS).
QUESTION_SHIFT_BY_DISTRICT = (
    (-0.3, 0.8, 0.1, -0.8, 0.3),
    (0.5, 0.2, 0.2, 0.0, 0.0),
    (-0.5, 0.0, -0.6, -1.0, -0.2),
    (0.4, -0.4, 0.5, 0.5, 0.0),
    (0.0, 0.0, -0.1, 0.0, -0.2),
    (0.0, -0.7, 0.0, 0.4, -0.3),
    (0.1, 0.6, 0.1, -0.4, 0.4),
    (0.9, -0.9, 0.5, 0.9, -0.4),
)
#: The city sends its short survey every this many days; each question is answered with this
#: probability per wave (so a 60-day demo holds about six answers per citizen).
SURVEY_EVERY_DAYS = 30
SURVEY_ANSWER_PROBABILITY = 0.6

_DAY_US = 86_400_000_000

# --------------------------------------------------------------------------------------------------
# Seeding constants
# --------------------------------------------------------------------------------------------------

#: The demo citizens one can sign in as, with the passphrases written to the credentials file.
NAMED_CITIZENS = (
    ("ana.garcia", "harbour lantern maple 2026"),
    ("ben.okafor", "river bicycle orchard 2026"),
)
BULK_HANDLE_PREFIX = "demo-"
#: How the seeding appears in each demo citizen's audit chain.
DEMO_ACTOR = "system:demo-city"
#: The audit action recording the demo data written into a citizen's streams.
DEMO_AUDIT_ACTION = "demo.seeded"
DEFAULT_BATCH = 50
CREDENTIALS_NOTE = (
    "Made-up demo citizens of the Civic Vault demo city. Sign in with these handles and "
    "passphrases to look around. Everything in these accounts is invented. The other demo "
    "citizens (demo-00001 and on) were given random passphrases that were never saved, so nobody "
    "can sign in as them: they only fill the city with data. This file is for a demo only; "
    "never seed a real deployment."
)


class DemoCityError(ValueError):
    """The demo city cannot be generated as asked (bad argument, or a catalogue it does not fit)."""


# --------------------------------------------------------------------------------------------------
# Generating
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CitizenProfile:
    """One demo citizen's facts (the same ones their ``profile`` stream holds)."""

    district: str
    age_band: str
    household_size: int


@dataclass(frozen=True, eq=False)
class DemoCity:
    """A generated city: ``citizens`` people numbered ``0 .. citizens - 1``. Compare cities by
    their frames (``DataFrame.equals``); the dataclass itself has identity equality.

    ``frames`` maps each stream type of :data:`DEMO_STREAM_TYPES` to one long frame: ``citizen``
    (``Int64``) and then the catalogue's columns, sorted by citizen and ``ts``. ``profiles`` has one
    row per citizen (``citizen``, ``district``, ``age_band``, ``household_size``).
    :meth:`records` gives one citizen's rows of one stream type, ready to write as a chunk.
    """

    citizens: int
    seed: int
    start: datetime
    end: datetime
    profiles: pl.DataFrame
    frames: Mapping[str, pl.DataFrame]
    _offsets: Mapping[str, IntArray] = field(repr=False, compare=False)
    _bodies: Mapping[str, pl.DataFrame] = field(repr=False, compare=False)

    def records(self, citizen: int, stream_type: str) -> pl.DataFrame:
        """Citizen ``citizen``'s rows of ``stream_type``: exactly the catalogue's columns, in
        catalogue order and dtypes, sorted by ``ts`` (a zero-copy slice of the long frame)."""
        if not 0 <= citizen < self.citizens:
            raise DemoCityError(f"citizen {citizen} is not in this city (0..{self.citizens - 1})")
        if stream_type not in self.frames:
            raise DemoCityError(f"the demo city has no {stream_type!r} data")
        offsets = self._offsets[stream_type]
        lo, hi = int(offsets[citizen]), int(offsets[citizen + 1])
        return self._bodies[stream_type].slice(lo, hi - lo)

    def citizen_frames(self, citizen: int) -> dict[str, pl.DataFrame]:
        """All of one citizen's frames, by stream type (see :meth:`records`)."""
        return {name: self.records(citizen, name) for name in self.frames}

    def profile(self, citizen: int) -> CitizenProfile:
        """One citizen's district, age band and household size."""
        if not 0 <= citizen < self.citizens:
            raise DemoCityError(f"citizen {citizen} is not in this city (0..{self.citizens - 1})")
        row = self.profiles.row(citizen, named=True)
        return CitizenProfile(row["district"], row["age_band"], int(row["household_size"]))


@dataclass(frozen=True)
class _Population:
    """Per-citizen traits, as arrays indexed by citizen number."""

    district: IntArray
    age_band: IntArray
    household: IntArray
    energy_factor: FloatArray
    noise_offset: FloatArray
    trip_rate: FloatArray
    mood: FloatArray


def _default_end() -> datetime:
    today = datetime.now(UTC)
    return datetime(today.year, today.month, today.day, tzinfo=UTC)


def _as_utc(moment: datetime | None) -> datetime:
    if moment is None:
        return _default_end()
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _epoch_us(moment: datetime) -> int:
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _categorical(rng: np.random.Generator, shares: FloatArray) -> IntArray:
    """One draw per row of ``shares`` (rows are probability vectors): the chosen column."""
    cumulative = np.cumsum(shares, axis=1)
    cumulative[:, -1] = 1.0
    u: FloatArray = rng.random(int(shares.shape[0]))
    chosen: IntArray = (u[:, None] >= cumulative).sum(axis=1).astype(np.int64)
    return chosen


def _population(rng: np.random.Generator, n: int) -> _Population:
    shares = np.asarray(DISTRICT_SHARES)
    district = rng.choice(len(DISTRICTS), size=n, p=shares / shares.sum()).astype(np.int64)
    age = _categorical(rng, np.asarray(AGE_SHARES)[district])
    extra = (
        np.asarray(HOUSEHOLD_EXTRA_BY_AGE)[age] * np.asarray(HOUSEHOLD_FACTOR_BY_DISTRICT)[district]
    )
    household = np.clip(1 + rng.poisson(extra), 1, 8).astype(np.int64)
    return _Population(
        district=district,
        age_band=age,
        household=household,
        energy_factor=rng.lognormal(0.0, 0.2, n),
        noise_offset=rng.normal(0.0, 3.0, n),
        trip_rate=rng.gamma(4.0, TRIPS_PER_WEEK / 4.0, n),
        mood=rng.normal(0.0, 0.5, n),
    )


def _daytime_us(rng: np.random.Generator, size: int) -> IntArray:
    """Whole seconds between 7:00 and 22:00, in microseconds after midnight."""
    seconds: IntArray = rng.integers(7 * 3600, 22 * 3600, size, dtype=np.int64)
    return seconds * 1_000_000


def _weekend(ts_us: IntArray) -> npt.NDArray[np.bool_]:
    # 1970-01-01 was a Thursday (weekday 3, Monday being 0).
    return ((ts_us // _DAY_US + 3) % 7) >= 5


def _energy_columns(
    rng: np.random.Generator, pop: _Population, cit: IntArray, ts_us: IntArray
) -> dict[str, Any]:
    base = ENERGY_BASE_KWH + ENERGY_PER_PERSON_KWH * pop.household[cit]
    day_of_year = (ts_us // _DAY_US) % 365.2425
    season = 1.0 + 0.15 * np.cos(2.0 * np.pi * (day_of_year - 15.0) / 365.2425)
    weekly = np.where(_weekend(ts_us), 1.1, 1.0)
    kwh = (
        base
        * np.asarray(ENERGY_FACTOR_BY_DISTRICT)[pop.district[cit]]
        * pop.energy_factor[cit]
        * season
        * weekly
        * rng.lognormal(0.0, 0.15, cit.size)
    )
    return {"kwh": np.round(kwh, 3)}


def _trip_columns(rng: np.random.Generator, pop: _Population, cit: IntArray) -> dict[str, Any]:
    mode = _categorical(rng, np.asarray(MODE_SHARES)[pop.district[cit]])
    median = np.asarray(TRIP_MEDIAN_KM)[mode]
    km = median * np.exp(np.asarray(TRIP_SIGMA)[mode] * rng.standard_normal(cit.size))
    km = np.clip(km, 0.1, np.asarray(TRIP_MAX_KM)[mode])
    minutes = np.asarray(TRIP_OVERHEAD_MIN)[mode] + km / np.asarray(TRIP_SPEED_KMH)[
        mode
    ] * 60.0 * rng.lognormal(0.0, 0.15, cit.size)
    return {
        "mode": mode,
        "km": np.round(km, 2),
        "minutes": np.round(np.clip(minutes, 1.0, 240.0), 1),
    }


def _noise_columns(
    rng: np.random.Generator, pop: _Population, cit: IntArray, ts_us: IntArray
) -> dict[str, Any]:
    db = (
        np.asarray(NOISE_BY_DISTRICT_DB)[pop.district[cit]]
        + pop.noise_offset[cit]
        - 2.0 * _weekend(ts_us)
        + rng.normal(0.0, 4.0, cit.size)
    )
    return {"db": np.round(np.clip(db, *NOISE_RANGE_DB), 1)}


def _survey_columns(
    rng: np.random.Generator, pop: _Population, cit: IntArray, question: IntArray
) -> dict[str, Any]:
    shift = np.asarray(QUESTION_SHIFT_BY_DISTRICT)[pop.district[cit], question]
    latent = (
        np.asarray(QUESTION_BASE)[question]
        + shift
        + pop.mood[cit]
        # A citizen with a noisier day-to-day than their district is less happy about the noise.
        - np.where(question == QUESTIONS.index("q-noise"), 0.08 * pop.noise_offset[cit], 0.0)
        + rng.normal(0.0, 0.7, cit.size)
    )
    return {"question": question, "answer": np.clip(np.rint(latent), 1, 5).astype(np.int64)}


def _profile_columns(pop: _Population, cit: IntArray) -> dict[str, Any]:
    return {
        "district": pop.district[cit],
        "age_band": pop.age_band[cit],
        "household_size": pop.household[cit],
    }


#: The generator's own category lists, per stream type and field, in the order of its codes.
_DOMAINS: dict[str, dict[str, tuple[str, ...]]] = {
    MOBILITY: {"mode": MODES},
    SURVEY: {"question": QUESTIONS},
    PROFILE: {"district": DISTRICTS, "age_band": AGE_BANDS},
}


def _frame(
    spec: StreamType, cit: IntArray, ts_us: IntArray, columns: dict[str, Any]
) -> pl.DataFrame:
    """The long frame ``citizen`` + the catalogue's columns, checked against the catalogue.

    Category columns arrive as codes into :data:`_DOMAINS`; numbers are clipped to the field's
    bounds (a no-op for the distributions above, kept so the guarantee never rests on them).
    """
    step, tick = np.diff(cit), np.diff(ts_us)
    if not bool(np.all((step > 0) | ((step == 0) & (tick >= 0)))):
        order = np.lexsort((ts_us, cit))
        cit, ts_us = cit[order], ts_us[order]
        columns = {name: values[order] for name, values in columns.items()}
    series = [
        pl.Series("citizen", cit, dtype=pl.Int64),
        pl.Series("ts", ts_us, dtype=pl.Int64).cast(pl.Datetime("us", "UTC")),
    ]
    expected = set(spec.field_names) - {"ts"}
    if set(columns) != expected:
        raise DemoCityError(
            f"the catalogue's {spec.name!r} fields ({', '.join(sorted(expected))}) are not the "
            f"ones the demo city generates ({', '.join(sorted(columns))})"
        )
    for fspec in spec.fields:
        if fspec.name == "ts":
            continue
        values = columns[fspec.name]
        if fspec.type == "category":
            domain = _DOMAINS[spec.name][fspec.name]
            unknown = sorted(set(domain) - set(fspec.categories))
            if unknown:
                raise DemoCityError(
                    f"{spec.name}.{fspec.name}: the catalogue no longer has {', '.join(unknown)}"
                )
            codes = pl.Series(values, dtype=pl.UInt32)
            series.append(pl.Series(fspec.name, domain, dtype=pl.String).gather(codes))
            continue
        column = pl.Series(fspec.name, values).cast(fspec.polars_dtype())
        if fspec.is_numeric and (fspec.min is not None or fspec.max is not None):
            column = column.clip(fspec.min, fspec.max)
        series.append(column)
    return pl.DataFrame(series)


def _offsets(frame: pl.DataFrame, citizens: int) -> IntArray:
    cit = frame.get_column("citizen").to_numpy()
    return np.searchsorted(cit, np.arange(citizens + 1), side="left").astype(np.int64)


def _check_counts(citizens: int, **others: int) -> None:
    if citizens < 0:
        raise DemoCityError(f"citizens must be 0 or more, got {citizens}")
    for name, value in others.items():
        if value < 1:
            raise DemoCityError(f"{name} must be at least 1, got {value}")


def generate_city(
    citizens: int, seed: int = 7, days: int = 60, end: datetime | None = None
) -> DemoCity:
    """A city of ``citizens`` people with ``days`` days of data ending at ``end``.

    ``end`` defaults to midnight UTC today (a naive ``end`` is taken as UTC). With a fixed ``end``
    the result depends only on the arguments: equal arguments give equal frames.

    Per citizen: one ``profile`` row (from a date up to three years before the window); one
    electricity reading per day at midnight (the day just ended, about 2 to 25 kWh, more for
    bigger households, in winter and at weekends); a few trips a week at commuting-heavy hours,
    whose distance and duration fit the mode; one noise level per day measured between 7:00 and
    22:00; and the answers to a short survey sent every 30 days (a few questions per wave).
    """
    _check_counts(citizens, days=days)
    end_utc = _as_utc(end)
    start = end_utc - timedelta(days=days)
    start_us = _epoch_us(start)
    rng = np.random.default_rng(seed)
    pop = _population(rng, citizens)
    catalogue = default_catalogue()
    n = citizens
    frames: dict[str, pl.DataFrame] = {}

    # Daily streams: day k = 1..days; energy at midnight ending day k-1, noise during day k-1.
    cit_daily = np.repeat(np.arange(n, dtype=np.int64), days)
    day = np.tile(np.arange(1, days + 1, dtype=np.int64), n)
    energy_ts = start_us + day * _DAY_US
    frames[ENERGY] = _frame(
        catalogue.get(ENERGY),
        cit_daily,
        energy_ts,
        _energy_columns(rng, pop, cit_daily, energy_ts),
    )

    trips = rng.poisson(pop.trip_rate * days / 7.0).astype(np.int64)
    cit_trip = np.repeat(np.arange(n, dtype=np.int64), trips)
    trip_day = rng.integers(0, days, cit_trip.size)
    peak = rng.random(cit_trip.size)
    hour = np.where(
        peak < 0.4,
        rng.normal(8.0, 1.0, cit_trip.size),
        np.where(
            peak < 0.8, rng.normal(17.5, 1.2, cit_trip.size), rng.uniform(9, 21, cit_trip.size)
        ),
    )
    hour = np.clip(hour, 5.0, 23.9)
    trip_ts = start_us + trip_day * _DAY_US + (hour * 3600).astype(np.int64) * 1_000_000
    frames[MOBILITY] = _frame(
        catalogue.get(MOBILITY), cit_trip, trip_ts, _trip_columns(rng, pop, cit_trip)
    )

    noise_ts = start_us + (day - 1) * _DAY_US + _daytime_us(rng, cit_daily.size)
    frames[NOISE] = _frame(
        catalogue.get(NOISE), cit_daily, noise_ts, _noise_columns(rng, pop, cit_daily, noise_ts)
    )

    waves = max(1, days // SURVEY_EVERY_DAYS)
    answered = rng.random((n, waves, len(QUESTIONS))) < SURVEY_ANSWER_PROBABILITY
    cit_s, wave_s, question_s = (axis.astype(np.int64) for axis in np.nonzero(answered))
    wave_start = start_us + wave_s * SURVEY_EVERY_DAYS * _DAY_US
    # One sitting per citizen and wave, in the first week of the wave, between 8:00 and 21:00;
    # twenty seconds between the answers of one sitting.
    sitting_day = rng.integers(0, min(7, days), (n, waves), dtype=np.int64)[cit_s, wave_s]
    sitting_s = rng.integers(8 * 3600, 21 * 3600, (n, waves), dtype=np.int64)[cit_s, wave_s]
    survey_ts = wave_start + sitting_day * _DAY_US + (sitting_s + 20 * question_s) * 1_000_000
    frames[SURVEY] = _frame(
        catalogue.get(SURVEY),
        cit_s,
        survey_ts,
        _survey_columns(rng, pop, cit_s, question_s),
    )

    cit_p = np.arange(n, dtype=np.int64)
    profile_ts = start_us - rng.integers(0, 3 * 365, n, dtype=np.int64) * _DAY_US
    frames[PROFILE] = _frame(
        catalogue.get(PROFILE), cit_p, profile_ts, _profile_columns(pop, cit_p)
    )

    profiles = frames[PROFILE].select("citizen", "district", "age_band", "household_size")
    return DemoCity(
        citizens=n,
        seed=seed,
        start=start,
        end=end_utc,
        profiles=profiles,
        frames=frames,
        _offsets={name: _offsets(frame, n) for name, frame in frames.items()},
        _bodies={name: frame.drop("citizen") for name, frame in frames.items()},
    )


def generate_readings(
    citizens: int,
    records_per_citizen: int,
    stream_type: str = ENERGY,
    seed: int = 7,
    end: datetime | None = None,
) -> pl.DataFrame:
    """One long frame of ``citizens * records_per_citizen`` rows for benchmarks.

    Columns: ``citizen`` (``Int64``, ``0 .. citizens - 1``) then the catalogue's columns of
    ``stream_type`` in catalogue order and dtypes, every value within the catalogue's bounds and
    categories, sorted by citizen and ``ts``. Each citizen gets exactly ``records_per_citizen``
    rows, one per day ending at ``end`` (midnight UTC today by default), drawn from the same
    distributions as :func:`generate_city` (survey questions are drawn at random, so they may
    repeat). Deterministic for a fixed ``end``; about a second for 100,000 x 10.
    """
    _check_counts(citizens, records_per_citizen=records_per_citizen)
    spec = default_catalogue().get(stream_type)
    if spec.name not in DEMO_STREAM_TYPES:
        raise DemoCityError(
            f"the demo city makes data for {', '.join(DEMO_STREAM_TYPES)}; not {stream_type!r}"
        )
    end_us = _epoch_us(_as_utc(end))
    rng = np.random.default_rng(seed)
    pop = _population(rng, citizens)
    r = records_per_citizen
    cit = np.repeat(np.arange(citizens, dtype=np.int64), r)
    back = np.tile(np.arange(r, 0, -1, dtype=np.int64), citizens)
    ts = end_us - (back - 1) * _DAY_US
    if spec.name != ENERGY:  # energy is read at midnight; everything else happens during the day
        ts = ts - _DAY_US + _daytime_us(rng, cit.size)
    columns: dict[str, Any]
    if spec.name == ENERGY:
        columns = _energy_columns(rng, pop, cit, ts)
    elif spec.name == MOBILITY:
        columns = _trip_columns(rng, pop, cit)
    elif spec.name == NOISE:
        columns = _noise_columns(rng, pop, cit, ts)
    elif spec.name == SURVEY:
        question = rng.integers(0, len(QUESTIONS), cit.size, dtype=np.int64)
        columns = _survey_columns(rng, pop, cit, question)
    else:
        columns = _profile_columns(pop, cit)
    return _frame(spec, cit, ts, columns)


# --------------------------------------------------------------------------------------------------
# Seeding
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoSeedReport:
    """What :func:`seed_demo_city` did.

    ``citizens`` were registered now; ``skipped`` already existed (same handle) and were left
    alone; ``streams``, ``chunks`` and ``records`` count what was written now.
    """

    citizens: int
    skipped: int
    streams: int
    chunks: int
    records: int
    seconds: float
    named_handles: tuple[str, ...]
    credentials_path: Path | None


def demo_handle(citizen: int) -> str:
    """The handle of demo citizen number ``citizen``: the named ones first, then ``demo-00001``..."""
    if citizen < len(NAMED_CITIZENS):
        return NAMED_CITIZENS[citizen][0]
    return f"{BULK_HANDLE_PREFIX}{citizen - len(NAMED_CITIZENS) + 1:05d}"


def database_is_empty(rt: VaultRuntime) -> bool:
    """True when the vault has no citizens at all (erased citizens leave none behind)."""
    with rt.unit_of_work() as session:
        return session.exec(select(Citizen.id).limit(1)).first() is None


def _existing_handles(rt: VaultRuntime, handles: set[str]) -> set[str]:
    with rt.unit_of_work() as session:
        if session.exec(select(Citizen.id).limit(1)).first() is None:
            return set()
        return {h for h in session.exec(select(Citizen.handle)) if h in handles}


def write_private_json(path: Path, data: Mapping[str, Any]) -> None:
    """Write ``data`` as pretty JSON to ``path`` with mode 0600, atomically: a reader sees the old
    file or the new one, never half of one, and the secrets are never readable by others (the
    temporary file is created 0600 in the same folder, then renamed over ``path``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, ensure_ascii=False)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_credentials(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_credentials(path: Path, entries: list[dict[str, Any]]) -> None:
    """Merge the named citizens into the credentials file, keeping its other sections (later
    seeding steps add ``departments`` and ``clients``) and citizens it lists that we did not
    register now (for those, what the earlier run wrote stays, e.g. the recovery code)."""
    data = _read_credentials(path)
    listed = data.get("citizens")
    earlier: dict[Any, dict[str, Any]] = {
        e.get("handle"): e
        for e in (listed if isinstance(listed, list) else [])
        if isinstance(e, dict)
    }
    merged: list[dict[str, Any]] = []
    for entry in entries:
        old = earlier.pop(entry["handle"], {})
        merged.append({**old, **{k: v for k, v in entry.items() if v is not None}})
    merged.extend(earlier.values())
    data["note"] = CREDENTIALS_NOTE
    data["citizens"] = merged
    data.setdefault("departments", [])
    data.setdefault("clients", [])
    write_private_json(path, data)


def _seed_citizen(
    rt: VaultRuntime,
    session: Session,
    city: DemoCity,
    citizen: int,
    handle: str,
    passphrase: str,
    cost: KdfCost | None,
) -> tuple[str, list[tuple[str, str, str, int]]]:
    """Register one citizen and fill their streams (inside the caller's transaction).

    Returns the recovery code and, per stream, (stream type, stream id, chunk id, record count).
    """
    reg = rt.accounts.register(session, handle, passphrase, cost=cost)
    _, root = rt.accounts.unlock(session, handle, passphrase, DEMO_ACTOR)
    written: list[tuple[str, str, str, int]] = []
    for stream_type in DEMO_STREAM_TYPES:
        label = rt.catalogue.get(stream_type).title
        summary = rt.streams.create(session, reg.citizen_id, stream_type, label, DEMO_ACTOR)
        frame = city.records(citizen, stream_type)
        chunk = rt.chunks.write_plaintext(session, reg.citizen_id, summary.id, encode_frame(frame))
        written.append((stream_type, summary.id, chunk.chunk_id, frame.height))
    # One entry for all five appends (what ingest would log as five ``records.appended``): the
    # citizen's chain says where the data came from, at a fraction of the cost of five entries.
    rt.audit.append(
        session,
        reg.citizen_id,
        DEMO_ACTOR,
        DEMO_AUDIT_ACTION,
        {
            "chunks": [
                {"type": kind, "stream": sid, "chunk": cid, "count": count}
                for kind, sid, cid, count in written
            ]
        },
    )
    _answer_requests(rt, session, citizen, reg.citizen_id, root)
    return reg.recovery_code, written


def _answer_requests(
    rt: VaultRuntime, session: Session, citizen: int, citizen_id: str, root: RootKeys
) -> None:
    """Most demo citizens accept the city's requests, some with tighter limits, some decline,
    so that every screen and every query has real material. Deterministic per citizen."""
    now = utcnow()
    for k, request in enumerate(shipped_requests(now)):
        roll = (citizen * 7919 + k * 104729) % 100
        if roll < 15:
            rt.consents.decline(session, citizen_id, request.id, now)
            continue
        if roll < 25:
            continue  # not answered yet: the request waits in the inbox
        narrowing = None
        if roll < 40 and request.dp_limits is not None:
            narrowing = Narrowing(epsilon_per_period=request.dp_limits.epsilon_per_period / 2)
        terms = request.terms_for(citizen_id, now, narrowing, terms_id=uuid.uuid4().hex)
        rt.consents.give_terms(session, citizen_id, root, terms, now, request_id=request.id)


def seed_departments(rt: VaultRuntime) -> None:
    """The city's departments and their shipped data requests (once)."""
    now = utcnow()
    with rt.unit_of_work() as session:
        for department, names in DEPARTMENT_NAMES.items():
            rt.departments.ensure(session, department, names["en"], names.get("es", ""))
        for request in shipped_requests(now):
            if not rt.departments.request_exists(session, request.id):
                rt.departments.publish(session, request.department, request, now)


def seed_demo_city(
    rt: VaultRuntime,
    citizens: int,
    seed: int = 7,
    credentials_path: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    *,
    batch_size: int = DEFAULT_BATCH,
    days: int = 60,
    end: datetime | None = None,
) -> DemoSeedReport:
    """Register ``citizens`` demo citizens and store :func:`generate_city`'s data in their vaults.

    Citizen 0 and 1 are ``ana.garcia`` and ``ben.okafor`` (see :data:`NAMED_CITIZENS`), registered
    with the configured key-derivation cost so that signing in as them is just like for anyone.
    The others (``demo-00001``, ...) are registered with ``KdfCost.profile("min")`` and a random
    passphrase that is thrown away: bulk demo accounts need cheap key derivation so that seeding
    thousands takes seconds, and a cheap wrap under a saved passphrase would be a weak account,
    so they are made impossible to sign in to instead (they only fill the city with data).

    Every new citizen gets one stream per stream type (:data:`DEMO_STREAM_TYPES`), each holding
    exactly :meth:`DemoCity.records` as one chunk; their audit chain records the account, each
    stream's creation and one :data:`DEMO_AUDIT_ACTION` entry listing the chunks written (actor
    :data:`DEMO_ACTOR`). Citizens commit in batches of ``batch_size``: a failure
    loses at most the batch in progress, and running again (a handle that exists is skipped)
    completes the city. ``progress(done, citizens)`` is called after each batch.

    ``credentials_path``, if given, receives the named citizens' handles, passphrases and (for
    those registered now) recovery codes as pretty JSON, mode 0600, written atomically; other
    sections of an existing file are kept.
    """
    if batch_size < 1:
        raise DemoCityError(f"batch_size must be at least 1, got {batch_size}")
    started = time.perf_counter()
    city = generate_city(citizens, seed=seed, days=days, end=end)
    handles = [demo_handle(i) for i in range(citizens)]
    seed_departments(rt)
    existing = _existing_handles(rt, set(handles))
    bulk_cost = KdfCost.profile("min")
    named = dict(NAMED_CITIZENS)
    recovery: dict[str, str] = {}
    created = skipped = streams = chunks = records = 0

    for first in range(0, citizens, batch_size):
        with rt.unit_of_work() as session:
            for i in range(first, min(first + batch_size, citizens)):
                handle = handles[i]
                if handle in existing:
                    skipped += 1
                    continue
                passphrase = named.get(handle) or secrets.token_urlsafe(24)
                cost = None if handle in named else bulk_cost
                code, written = _seed_citizen(rt, session, city, i, handle, passphrase, cost)
                if handle in named:
                    recovery[handle] = code
                streams += len(written)
                chunks += len(written)
                records += sum(count for _, _, _, count in written)
                created += 1
        if progress is not None:
            progress(min(first + batch_size, citizens), citizens)

    named_here = tuple(h for h in handles if h in named)
    if credentials_path is not None:
        entries: list[dict[str, Any]] = []
        for i, handle in enumerate(handles):
            if handle not in named:
                continue
            facts = city.profile(i)
            entries.append(
                {
                    "handle": handle,
                    "passphrase": named[handle],
                    "recovery_code": recovery.get(handle),
                    "district": facts.district,
                    "age_band": facts.age_band,
                    "household_size": facts.household_size,
                }
            )
        _write_credentials(credentials_path, entries)
    return DemoSeedReport(
        citizens=created,
        skipped=skipped,
        streams=streams,
        chunks=chunks,
        records=records,
        seconds=time.perf_counter() - started,
        named_handles=named_here,
        credentials_path=credentials_path,
    )
