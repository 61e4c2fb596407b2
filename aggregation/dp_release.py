"""The differential-privacy release engine: statistics per public group from bounded records.

Input: a polars frame of already selected, decrypted and bounded records (``citizen``, one
String column per dimension of ``plan.group_by``, one Float64 column per numeric field) and a
:class:`ReleasePlan`. A frame in memory has its citizen ids replaced by numbers before OpenDP sees
it (:func:`numbered_citizens`); a lazy one (a scan) is handed over as it is. Output: a
:class:`ReleaseResult` with every group of the public domains, in domain order, each statistic
with its 95% interval. Pure functions; OpenDP 0.16 does the noise.

Privacy property
----------------
A release satisfies pure ``plan.epsilon``-differential privacy (epsilon-DP, no delta) where
neighbouring inputs differ by **one citizen's whole contribution**: adding or removing every
record of one citizen (the privacy unit is the ``citizen`` identifier, ``dp.unit_of(
contributions=1, identifier="citizen")``). OpenDP enforces the bound on that contribution itself,
whatever the frame holds: at most ``max_records_per_citizen`` (k) rows per citizen and group, at
most k·g rows in all when ``max_groups_per_citizen`` (g) is below the number of groups, and at most
g groups for quantiles (see :mod:`aggregation.dp_measurements`). Rows beyond the bounds are dropped
before any statistic is computed, so a citizen with 10,000 rows moves a count by at most k·g.

The total epsilon of everything released (all statistics, all groups, all histogram bins) is at
most ``plan.epsilon``, checked with OpenDP's privacy map before any data is touched and enforced
again by an OpenDP compositor of ``plan.epsilon`` at release time. The group keys and bin edges
are public (the full domains are always released, empty groups included), so which groups exist
costs nothing and reveals nothing.

What it does **not** protect: anything outside this one release (each release spends its own
epsilon; the ledger of the aggregation service adds them up per citizen and department); facts
that are not one citizen's contribution (a household whose members all contribute is several
citizens); the plan itself, which is public (domains, bounds, k, g, epsilon). Clipping to the
bounds happens before (by the caller, and again inside the sums), so values beyond the bounds bias
statistics rather than leak. One assumption is not enforced: fewer than 2³² rows in any group
(OpenDP's public ``max_length``; a city of ten million citizens at k = 400 stays below it).

Budget and intervals
--------------------
Epsilon is split evenly over the measurements OpenDP releases: ``count``, each ``sum(field)``,
each ``quantile(field, q)``, each ``histogram(field)`` (all bins of a histogram are one measurement:
one record falls in one bin). A ``mean(field)`` is ``sum(field) / count``; it is not a measurement
of its own and shares the sum and count with any plain sum or count of the same plan.
``epsilon_per_statistic`` gives each measurement's own loss as OpenDP accounts it; they add up to
``epsilon`` (a hair under ``plan.epsilon``: float headroom of one part in a billion).

Intervals are 95% and cover the statistic of the bounded data:

* count, histogram bin, sum: the noisy value ± the 95% accuracy OpenDP computes for the noise
  (``summarize(alpha=0.05)``). A noisy count is reported as drawn, even when negative: clamping
  would bias it, and the interval is valid as it stands.
* mean: the noisy sum over the noisy count, clamped to the field's bounds (the true mean of
  clipped values lies there). Interval: the sum's and the count's 97.5% intervals hold together
  with probability at least 95% (union bound), so the true mean lies between the extreme ratios of
  their ends; that range is intersected with the bounds. When the count's interval reaches zero
  the interval is the bounds; when the noisy count is zero or below there is no mean (``None``,
  with a note).
* quantile: OpenDP's exponential mechanism picks one of ``QUANTILE_CANDIDATES`` evenly spaced
  candidates between the bounds. It gives no interval, and none is given here: its guarantee is on
  the rank of the chosen candidate among the records, and turning a rank error into a value range
  needs the distribution of the records, which is what is private.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

import polars as pl

from aggregation.dp_measurements import (
    ALPHA,
    BIN,
    QUANTILE_CANDIDATES,
    BudgetCheckFailed,
    MeasurementCache,
    ResolvedMeasurement,
    ResolvedRelease,
    calibrate_scale,
    enable_opendp,
    frame_schema,
    opendp,
    run,
)
from aggregation.dp_plan import (
    CITIZEN,
    MeasurementSpec,
    ReleasePlan,
    ReleasePlanInvalid,
    Stat,
    StatisticSpec,
    bin_labels,
    measurements_of,
)

__all__ = [
    "BudgetCheckFailed",
    "GroupRow",
    "HistogramBin",
    "MeasurementCache",
    "NoisyCount",
    "ReleaseFrameInvalid",
    "ReleasePlan",
    "ReleasePlanInvalid",
    "ReleaseResult",
    "Stat",
    "StatisticAccuracy",
    "StatisticSpec",
    "StatisticValue",
    "enable_opendp",
    "expected_accuracy",
    "mean_interval",
    "noisy_count",
    "numbered_citizens",
    "release",
]

CONFIDENCE = 1 - ALPHA
#: Where the worst case of a mean's interval is looked for, in the preview.
MEAN_PREVIEW_POINTS = 201

METHODS: dict[Stat, str] = {
    "count": "noisy count (OpenDP integer Laplace) ± its 95% accuracy; not clamped at 0",
    "sum": "noisy fixed-point sum of the clipped values (OpenDP integer Laplace) ± its 95% accuracy",
    "mean": (
        "noisy sum / noisy count, clamped to the bounds; interval: extreme ratios of the 97.5% "
        "sum and count intervals (jointly >= 95%), within the bounds; none if the count is <= 0"
    ),
    "quantile": (
        f"OpenDP exponential mechanism over {QUANTILE_CANDIDATES} evenly spaced candidates; "
        "no interval (its error is in rank, not in the field's units)"
    ),
    "histogram": "per bin, a noisy count (OpenDP integer Laplace) ± its 95% accuracy",
}
QUANTILE_NOTE = (
    "no interval: the exponential mechanism bounds the rank of the answer among the records, not "
    "its distance in the field's units, which would need the private distribution"
)


class ReleaseFrameInvalid(ValueError):
    """The frame lacks a column the plan needs (``columns`` names them)."""

    def __init__(self, columns: list[str]) -> None:
        super().__init__(f"the frame has no column(s) {columns}")
        self.columns = columns


# --------------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StatisticValue:
    """A released number and its 95% interval; ``note`` says why a part is missing."""

    value: float | None
    lower: float | None
    upper: float | None
    note: str | None = None


@dataclass(frozen=True)
class HistogramBin:
    label: str  # "[0, 10)"; the last bin is closed: "[40, 50]"
    lower_edge: float
    upper_edge: float
    count: StatisticValue


@dataclass(frozen=True)
class GroupRow:
    """One group: ``values`` by statistic label (count, sum, mean, quantile), ``histograms`` by
    label with the bins in order."""

    key: dict[str, str]
    values: dict[str, StatisticValue]
    histograms: dict[str, list[HistogramBin]]


@dataclass(frozen=True)
class ReleaseResult:
    mechanism: str  # the noise distributions OpenDP used, e.g. "Integer Laplace, ExponentialMin"
    epsilon: float  # spent, as OpenDP accounts it (<= epsilon_budget)
    epsilon_budget: float  # the plan's epsilon
    epsilon_per_statistic: dict[str, float]  # per measurement label; they add up to ``epsilon``
    derived: dict[str, list[str]]  # statistics computed from measurements: mean(f) -> sum, count
    # Per measurement, in the statistic's units (a quantile's is in the exponential mechanism's
    # score units, which OpenDP scales by the denominator of q: not comparable across q).
    noise_scale_per_statistic: dict[str, float]
    methods: dict[str, str]  # per statistic label: how the value and its interval are made
    rows: list[GroupRow]  # every group of the domains, in domain order
    confidence: float
    privacy_unit: str
    cache_hit: bool


@dataclass(frozen=True)
class StatisticAccuracy:
    """The preview of one statistic: half-width of its 95% interval, before any data is read."""

    statistic: str
    stat: Stat
    epsilon: float  # of the measurements it uses (a mean's count may be shared)
    mechanism: str
    half_width: float | None  # for a histogram, of each bin's count
    note: str | None = None


@dataclass(frozen=True)
class NoisyCount:
    """A citizen-level count released with epsilon-DP (sensitivity 1) and its 95% interval."""

    value: int
    lower: float
    upper: float
    epsilon: float
    noise_scale: float
    mechanism: str
    confidence: float


# --------------------------------------------------------------------------------------------------
# Releasing
# --------------------------------------------------------------------------------------------------


def release(
    frame: pl.LazyFrame | pl.DataFrame, plan: ReleasePlan, cache: MeasurementCache | None = None
) -> ReleaseResult:
    """Release ``plan``'s statistics on ``frame`` (spends ``plan.epsilon``; see the module doc).

    A lazy frame (a scan) stays lazy: it is only projected to the plan's columns and types, and
    OpenDP runs the query on it. A frame in memory has its citizen ids numbered first
    (:func:`numbered_citizens`): OpenDP is handed a serialised copy of it, and numbers are a
    quarter of the bytes of 32-character ids. ``cache`` keeps the resolved measurements for the
    next plan of this shape.
    """
    if not isinstance(plan, ReleasePlan):
        raise TypeError("plan must be a ReleasePlan")
    if isinstance(frame, pl.DataFrame):
        frame = numbered_citizens(frame).lazy()
    if not isinstance(frame, pl.LazyFrame):
        raise TypeError("frame must be a polars DataFrame or LazyFrame")
    identifier = _identifier_type(frame)
    columns = _normalised(frame, plan, identifier)
    resolved, hit = (cache if cache is not None else MeasurementCache(0)).resolved(plan, identifier)
    outputs = run(resolved, plan, columns)
    return ReleaseResult(
        mechanism=resolved.mechanism,
        epsilon=resolved.epsilon,
        epsilon_budget=plan.epsilon,
        epsilon_per_statistic={p.spec.label: p.epsilon for q in resolved.queries for p in q.parts},
        derived={
            s.label: [m.label for m in measurements_of(s)]
            for s in plan.statistics
            if s.stat == "mean"
        },
        noise_scale_per_statistic={
            p.spec.label: p.noise_scale for q in resolved.queries for p in q.parts
        },
        methods={s.label: METHODS[s.stat] for s in plan.statistics},
        rows=_rows(plan, resolved, outputs),
        confidence=CONFIDENCE,
        privacy_unit=privacy_unit(plan),
        cache_hit=hit,
    )


def privacy_unit(plan: ReleasePlan) -> str:
    k, g = plan.max_records_per_citizen, plan.max_groups_per_citizen
    groups = f", in at most {g} group(s)" if plan.group_by else ""
    return (
        f"one citizen (all records with one {CITIZEN!r} id), counted as at most {k} record(s) "
        f"per group{groups}: at most {k * g} record(s) in all"
    )


def numbered_citizens(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with each citizen id replaced by a number (an ``Int64``), or as it is when its
    ids are numbers already or it has no ``citizen`` column.

    Property: the numbering is one-to-one on the frame's ids (their dense rank: rows of one
    citizen share one number, rows of two citizens never do), so the privacy unit OpenDP bounds
    is the same citizen as before and every statistic is computed on the same rows. The numbers
    stay in this process and are never released.
    """
    if CITIZEN not in frame.columns or frame.schema[CITIZEN].is_integer():
        return frame
    # Dense rank sorts the ids: 0.04-0.17 s for 1,000,000 rows, against about 0.9 s saved in
    # serialising the copy OpenDP is handed.
    return frame.with_columns(pl.col(CITIZEN).rank("dense").cast(pl.Int64))


def _identifier_type(frame: pl.LazyFrame) -> type[pl.DataType]:
    """The type OpenDP sees the ``citizen`` column as: numbers stay numbers, the rest is text."""
    dtype = frame.collect_schema().get(CITIZEN)
    return pl.Int64 if dtype is not None and dtype.is_integer() else pl.String


def _normalised(
    frame: pl.LazyFrame, plan: ReleasePlan, identifier: type[pl.DataType]
) -> pl.LazyFrame:
    """The plan's columns in the order and types the measurements were built for (still lazy)."""
    schema = frame_schema(plan, identifier)
    present = frame.collect_schema()
    missing = [c for c in schema if c not in present]
    if missing:
        raise ReleaseFrameInvalid(missing)
    return frame.select(pl.col(name).cast(dtype) for name, dtype in schema.items())


Key = tuple[str, ...]


def _rows(
    plan: ReleasePlan, resolved: ResolvedRelease, outputs: list[pl.DataFrame]
) -> list[GroupRow]:
    # OpenDP returns groups in any order: index its output by key, then walk the domains.
    raw: dict[Key, dict[MeasurementSpec, object]] = defaultdict(dict)
    for query, frame in zip(resolved.queries, outputs, strict=True):
        for row in frame.iter_rows(named=True):
            key = tuple(row[d] for d in plan.group_by)
            for part in query.parts:
                if BIN in query.group_columns:
                    bins = raw[key].setdefault(part.spec, {})
                    bins[row[BIN]] = row[part.column]  # type: ignore[index]
                else:
                    raw[key][part.spec] = row[part.column]
    rows = []
    for key in plan.group_keys():
        found = raw.get(key, {})
        values: dict[str, StatisticValue] = {}
        histograms: dict[str, list[HistogramBin]] = {}
        for spec in plan.statistics:
            if spec.stat == "histogram":
                histograms[spec.label] = _histogram(spec, resolved, found)
            else:
                values[spec.label] = _value(plan, spec, resolved, found)
        rows.append(GroupRow(dict(zip(plan.group_by, key, strict=True)), values, histograms))
    return rows


def _interval(value: float | None, half_width: float | None) -> StatisticValue:
    if value is None:
        return StatisticValue(None, None, None, note="OpenDP returned no value for this group")
    if half_width is None:
        return StatisticValue(value, None, None)
    return StatisticValue(value, value - half_width, value + half_width)


def _number(part: ResolvedMeasurement, raw: object) -> float | None:
    return None if raw is None else float(raw) * part.unit  # type: ignore[arg-type]


def _value(
    plan: ReleasePlan,
    spec: StatisticSpec,
    resolved: ResolvedRelease,
    found: dict[MeasurementSpec, object],
) -> StatisticValue:
    if spec.stat == "mean":
        total_spec, count_spec = measurements_of(spec)
        total_part, count_part = resolved.measurement(total_spec), resolved.measurement(count_spec)
        total, count = _number(total_part, found.get(total_spec)), found.get(count_spec)
        if total is None or count is None:
            return _interval(None, None)
        return mean_interval(
            total,
            total_part.half_width_mean_part,
            int(count),  # type: ignore[call-overload]
            count_part.half_width_mean_part,
            plan.bounds[spec.field],  # type: ignore[index]
        )
    (measurement,) = measurements_of(spec)
    part = resolved.measurement(measurement)
    value = _interval(_number(part, found.get(measurement)), part.half_width)
    if spec.stat == "quantile" and value.value is not None:
        return StatisticValue(value.value, None, None, note=QUANTILE_NOTE)
    return value


def _histogram(
    spec: StatisticSpec, resolved: ResolvedRelease, found: dict[MeasurementSpec, object]
) -> list[HistogramBin]:
    (measurement,) = measurements_of(spec)
    part = resolved.measurement(measurement)
    counts: dict[str, object] = found.get(measurement, {})  # type: ignore[assignment]
    edges = spec.edges or ()
    return [
        HistogramBin(label, low, high, _interval(_number(part, counts.get(label)), part.half_width))
        for label, low, high in zip(bin_labels(edges), edges, edges[1:], strict=False)
    ]


def mean_interval(
    total: float,
    total_half_width: float | None,
    count: float,
    count_half_width: float | None,
    bounds: tuple[float, float],
) -> StatisticValue:
    """A mean from a noisy sum and count, with the conservative interval of the module doc.

    ``*_half_width`` are the 97.5% half-widths, so both intervals hold at once with >= 95%.
    """
    low, high = bounds
    if count <= 0:
        return StatisticValue(
            None, None, None, note=f"the noisy count is {count}: no mean can be given"
        )
    value = min(max(total / count, low), high)
    if total_half_width is None or count_half_width is None:
        return StatisticValue(value, None, None, note="no accuracy for the sum or the count")
    fewest = count - count_half_width
    if fewest <= 0:
        return StatisticValue(
            value,
            low,
            high,
            note="the count's interval reaches 0, so only the field's bounds bound the mean",
        )
    ratios = [
        s / n
        for s in (total - total_half_width, total + total_half_width)
        for n in (fewest, count + count_half_width)
    ]
    # Clamped into the bounds (where the true mean is), also in the rare draw where the ratios
    # miss them entirely.
    return StatisticValue(value, min(max(min(ratios), low), high), max(min(max(ratios), high), low))


# --------------------------------------------------------------------------------------------------
# The preview
# --------------------------------------------------------------------------------------------------


def expected_accuracy(
    plan: ReleasePlan,
    expected_records_per_group: float | None = None,
    cache: MeasurementCache | None = None,
) -> list[StatisticAccuracy]:
    """Half-width of each statistic's 95% interval for this plan; reads no data, spends nothing.

    Counts, sums and histogram bins do not depend on the data. A mean's interval depends on the
    group's size: given ``expected_records_per_group`` the half-width is the worst case over the
    possible true means, with the noisy sum and count at their expected values (so a typical
    width, not a bound); without it, none is given. Quantiles get none (see the module doc).
    """
    if expected_records_per_group is not None and not (
        math.isfinite(expected_records_per_group) and expected_records_per_group > 0
    ):
        raise ValueError("expected_records_per_group must be a finite number above 0")
    resolved, _ = (cache if cache is not None else MeasurementCache(0)).resolved(plan)
    previews = []
    for spec in plan.statistics:
        parts = [resolved.measurement(m) for m in measurements_of(spec)]
        epsilon = math.fsum(p.epsilon for p in parts)
        mechanism = ", ".join(dict.fromkeys(p.mechanism for p in parts))
        half_width: float | None = parts[0].half_width
        note: str | None = None
        if spec.stat == "quantile":
            note = QUANTILE_NOTE
        elif spec.stat == "mean":
            half_width, note = _mean_preview(
                plan.bounds[spec.field],  # type: ignore[index]
                parts[0],
                parts[1],
                expected_records_per_group,
            )
        previews.append(
            StatisticAccuracy(spec.label, spec.stat, epsilon, mechanism, half_width, note)
        )
    return previews


def _mean_preview(
    bounds: tuple[float, float],
    total: ResolvedMeasurement,
    count: ResolvedMeasurement,
    records: float | None,
) -> tuple[float | None, str | None]:
    if records is None:
        return None, "depends on the number of records per group: give the expected number"
    low, high = bounds
    widest = 0.0
    for i in range(MEAN_PREVIEW_POINTS):
        mean = low + (high - low) * i / (MEAN_PREVIEW_POINTS - 1)
        interval = mean_interval(
            mean * records,
            total.half_width_mean_part,
            records,
            count.half_width_mean_part,
            bounds,
        )
        if interval.lower is None or interval.upper is None:
            return None, interval.note
        widest = max(widest, interval.upper - interval.lower)
    if records - (count.half_width_mean_part or 0.0) <= 0:
        return widest / 2, "too few records for this epsilon: only the bounds bound the mean"
    return widest / 2, "typical, at the expected number of records; worst case over the true mean"


# --------------------------------------------------------------------------------------------------
# Citizen-level counts
# --------------------------------------------------------------------------------------------------


def noisy_count(true_count: int, epsilon: float) -> NoisyCount:
    """``true_count`` plus discrete Laplace (two-sided geometric) noise, epsilon-DP when one
    citizen changes the count by at most 1 (a count of citizens, not of records).

    Used for the DP number of contributors and the minimum-group-size check. The value is not
    clamped (it can be negative); the interval is value ± OpenDP's 95% accuracy.
    """
    if not isinstance(true_count, int) or isinstance(true_count, bool) or true_count < 0:
        raise ValueError("true_count must be a whole number >= 0")
    if not (isinstance(epsilon, int | float) and math.isfinite(epsilon) and epsilon > 0):
        raise ValueError("epsilon must be a finite number above 0")
    dp = opendp()

    def measurement(scale: float) -> object:
        return dp.m.make_laplace(dp.atom_domain(T="i64"), dp.absolute_distance(T="i64"), scale)

    scale = calibrate_scale(measurement, float(epsilon))
    noisy = measurement(scale)
    half_width = float(dp.discrete_laplacian_scale_to_accuracy(scale, ALPHA))
    value = int(noisy(true_count))  # type: ignore[operator]
    return NoisyCount(
        value=value,
        lower=value - half_width,
        upper=value + half_width,
        epsilon=float(noisy.map(1)),  # type: ignore[attr-defined]
        noise_scale=scale,
        mechanism="discrete Laplace (two-sided geometric)",
        confidence=CONFIDENCE,
    )
