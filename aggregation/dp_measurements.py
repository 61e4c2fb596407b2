"""OpenDP measurements for a release plan: built once per shape and epsilon, cached, reused.

A plan becomes one or more OpenDP polars queries over the bounded frame (``citizen`` + the group
dimensions + the numeric fields):

* the **main query** groups by the plan's dimensions (or selects, without dimensions) and holds the
  counts, fixed-point sums and quantiles;
* each **histogram** is a query of its own, grouped by the dimensions plus the bin.

Every query starts with a truncation that OpenDP recognises and accounts for itself (the privacy
unit is the citizen, ``dp.unit_of(contributions=1, identifier="citizen")``), so the frame's own
bounding is trusted for nothing:

* g = 1 (the dimensions are attributes of the citizen, or there are none): at most k rows per
  citizen in all (``truncate_per_group(k)``, a random sample), which is also k in their group;
* g > 1: at most k rows per citizen and group (``truncate_per_group(k, by=dims)``, a sample) and,
  when g is below the number of groups, at most k·g rows in all (``truncate_per_group(k*g)``);
* quantiles, when g is below the number of groups: at most g groups per citizen, with the filter
  ``rank("dense") <= g``. OpenDP 0.16 accounts a ``rank`` filter with threshold t as t groups while
  polars ranks start at 1, so its own ``truncate_num_groups(t)`` keeps t-1 groups (checked:
  ``truncate_num_groups(1)`` drops every row) and our ``<= g`` keeps g groups but is paid as g+1.
  Counts and sums do not pay for it: the k·g rows bound theirs.

Under pure DP the noise of counts, sums and histogram bins follows the total number of rows one
citizen can add (k·g); quantiles (one exponential mechanism per group) follow the number of groups
times k.

Epsilon is split evenly over the measurements (``plan.measurements``). Each measurement's noise
scale is set explicitly: its privacy loss at scale 1 is read from OpenDP (``map(1)``), the scale
is solved for its share (pure-DP loss is inversely proportional to the scale), and the result is
checked with ``map(1)`` again; a whisker of headroom (``BUDGET_HEADROOM``) keeps float rounding from
ever pushing the total above the plan's epsilon. This costs a few milliseconds per measurement
where ``query.resolve()``'s binary search costs seconds.

Sums are released in **fixed point**: each value is clipped to its bounds, multiplied by a power of
two and cast to a 64-bit integer (toward zero) before OpenDP's integer sum. A float sum needs a
public bound on the rows per group and pays extra noise for float rounding that grows with its
square (measured: with 10⁹ rows per group, 45 times the noise of the exact sum); the integer sum
has exact sensitivity and takes the largest bound OpenDP accepts at no cost. What it costs is the
truncation of each value to a multiple of max(|bound|)·2⁻³⁰, far below the noise.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, cast

import polars as pl

from aggregation.dp_plan import (
    CITIZEN,
    RESERVED_PREFIX,
    MeasurementSpec,
    ReleasePlan,
    bin_labels,
)

#: OpenDP objects (measurements, domains) are untyped.
OpenDPObject = Any

#: Values are scaled so that the largest bound is at most 2**FIXED_POINT_BITS before summing.
FIXED_POINT_BITS = 30
#: OpenDP's public bound on rows per group (``Margin.max_length``, a u32). With values below
#: 2**30 no sum of that many rows can overflow an i64. No group of a city comes near it.
MAX_GROUP_LENGTH = 2**32 - 1
#: Quantile candidates: this many evenly spaced points from the lower to the upper bound.
QUANTILE_CANDIDATES = 1001
#: Two-sided significance of the reported intervals (95%), and of each half of a mean (97.5%).
ALPHA = 0.05
MEAN_PART_ALPHA = ALPHA / 2
#: Each measurement is calibrated to this fraction of its share (float rounding headroom).
BUDGET_HEADROOM = 1e-9
#: Bin column of a histogram query.
BIN = f"{RESERVED_PREFIX}bin"
#: How many calibration steps before giving up (one or two are always enough in practice).
CALIBRATION_STEPS = 8


class BudgetCheckFailed(RuntimeError):
    """OpenDP says the measurements cost more than the plan's epsilon: nothing was released."""


def enable_opendp() -> None:
    """Turn on OpenDP's ``contrib`` features (idempotent; called before any OpenDP use)."""
    import opendp.prelude as dp

    dp.enable_features("contrib")


def opendp() -> Any:
    """``opendp.prelude``, imported on first use (it takes about a second to load)."""
    enable_opendp()
    import opendp.prelude as dp

    return dp


# --------------------------------------------------------------------------------------------------
# The resolved measurements
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResolvedMeasurement:
    """One measurement inside a query, with what is known about it before any data is seen."""

    spec: MeasurementSpec
    column: str  # its column in the query's output
    unit: float  # output = OpenDP's value x unit (fixed-point sums), else 1
    epsilon: float  # its own privacy loss, OpenDP's map(1)
    mechanism: str  # the noise distribution OpenDP reports
    noise_scale: float  # in output units
    half_width: float | None  # of the 95% interval, output units (None for quantiles)
    half_width_mean_part: float | None  # of the 97.5% interval, for means


@dataclass(frozen=True)
class ResolvedQuery:
    measurement: OpenDPObject
    epsilon: float  # OpenDP's map(1) of the whole query
    group_columns: tuple[str, ...]  # the dimensions, plus BIN for a histogram
    parts: tuple[ResolvedMeasurement, ...]


@dataclass(frozen=True)
class ResolvedRelease:
    """Everything to release a plan at an epsilon on any frame: built once, cached."""

    queries: tuple[ResolvedQuery, ...]
    input_domain: OpenDPObject
    epsilon: float  # sum of the queries' privacy loss, <= plan.epsilon

    def measurement(self, spec: MeasurementSpec) -> ResolvedMeasurement:
        return next(p for q in self.queries for p in q.parts if p.spec == spec)

    @property
    def mechanism(self) -> str:
        names = dict.fromkeys(p.mechanism for q in self.queries for p in q.parts)
        return ", ".join(names)


# --------------------------------------------------------------------------------------------------
# Building the queries
# --------------------------------------------------------------------------------------------------


def fixed_point_unit(bounds: tuple[float, float]) -> float:
    """The power of two u such that max(|bound|) / u <= 2**FIXED_POINT_BITS; values count in u."""
    largest = max(abs(bounds[0]), abs(bounds[1]))
    return 2.0 ** (math.ceil(math.log2(largest)) - FIXED_POINT_BITS)


#: The types a frame's ``citizen`` column may have when OpenDP sees it: ids as they are stored,
#: or numbers standing for them (``dp_release.numbered_citizens``: a quarter of the bytes).
IDENTIFIER_TYPES: tuple[type[pl.DataType], ...] = (pl.String, pl.Int64)


def frame_schema(
    plan: ReleasePlan, identifier: type[pl.DataType] = pl.String
) -> dict[str, type[pl.DataType]]:
    """The columns (and their order) every frame is normalised to before OpenDP sees it."""
    if identifier not in IDENTIFIER_TYPES:
        raise ValueError(f"the {CITIZEN} column must be one of {IDENTIFIER_TYPES}")
    schema: dict[str, type[pl.DataType]] = {CITIZEN: identifier}
    schema.update(dict.fromkeys(plan.group_by, pl.String))
    schema.update(dict.fromkeys(plan.fields, pl.Float64))
    return schema


def _margins(plan: ReleasePlan) -> list[Any]:
    dp = opendp()
    margins = [dp.polars.Margin(by=[], max_length=MAX_GROUP_LENGTH)]
    if plan.group_by:
        margins.append(dp.polars.Margin(by=list(plan.group_by), max_length=MAX_GROUP_LENGTH))
    return margins


def _context(plan: ReleasePlan, identifier: type[pl.DataType]) -> Any:
    """A compositor over an empty frame of the right schema: a place to write queries."""
    dp = opendp()
    return dp.Context.compositor(
        data=pl.LazyFrame(schema=frame_schema(plan, identifier)),
        privacy_unit=dp.unit_of(contributions=1, identifier=CITIZEN),
        privacy_loss=dp.loss_of(epsilon=plan.epsilon),
        split_evenly_over=1,
        margins=_margins(plan),
    )


def _truncated(plan: ReleasePlan, context: Any, cap_groups: bool) -> Any:
    """The query's truncation, which OpenDP recognises and accounts (see the module doc)."""
    k, g = plan.max_records_per_citizen, plan.max_groups_per_citizen
    dims = list(plan.group_by)
    query = context.query()
    capped = cap_groups and g < plan.group_count
    if capped:
        # First, so that the rows sampled next all lie in the groups kept. Not
        # truncate_num_groups(g): in OpenDP 0.16 it keeps g-1 groups (see the module doc).
        query = query.filter(pl.struct(*dims).rank("dense").over(CITIZEN) <= g)
    # With one group per citizen, k rows in all is k rows in their group: one window instead of
    # two (a third of the time on a million rows), and OpenDP accounts it the same.
    query = query.truncate_per_group(k, by=dims if g > 1 else [])
    if 1 < g < plan.group_count:
        # Rows that survive already obey it when the groups are capped; otherwise it is what lets
        # OpenDP bound counts and sums by k·g. "first" is cheaper than a sample and as private.
        query = query.truncate_per_group(k * g, keep="first")
    return query


def _expression(plan: ReleasePlan, spec: MeasurementSpec, column: str, scale: float) -> pl.Expr:
    dp = opendp()
    expression: Any  # the .dp namespace is OpenDP's, unknown to polars' types
    if spec.kind in ("count", "histogram"):
        expression = dp.len(scale=scale, signed=True)
        return cast(pl.Expr, expression.alias(column))
    assert spec.field is not None  # plan validation guarantees it
    low, high = plan.bounds[spec.field]
    if spec.kind == "sum":
        unit = fixed_point_unit((low, high))
        # Clipping first keeps the cast in range for any input; the integer bounds are the cast
        # bounds (toward zero, like the cast itself).
        expression = (pl.col(spec.field).clip(low, high) / unit).cast(pl.Int64)
        expression = expression.dp.sum((int(low / unit), int(high / unit)), scale=scale)
        return cast(pl.Expr, expression.alias(column))
    candidates = [
        low + (high - low) * i / (QUANTILE_CANDIDATES - 1) for i in range(QUANTILE_CANDIDATES)
    ]
    expression = pl.col(spec.field)
    expression = expression.dp.quantile(spec.q, candidates, scale=scale)
    return cast(pl.Expr, expression.alias(column))


def _keys(plan: ReleasePlan, histogram: MeasurementSpec | None) -> pl.LazyFrame:
    groups = pl.DataFrame(list(plan.group_keys()), schema=list(plan.group_by), orient="row")
    if histogram is None:
        return groups.lazy()
    assert histogram.edges is not None
    bins = pl.DataFrame({BIN: list(bin_labels(histogram.edges))})
    keys = groups.join(bins, how="cross") if plan.group_by else bins
    return keys.lazy()


@dataclass(frozen=True)
class _QueryShape:
    """A query before its scales are known: its measurements and how they are grouped."""

    specs: tuple[MeasurementSpec, ...]
    histogram: MeasurementSpec | None

    def columns(self, first: int) -> tuple[str, ...]:
        return tuple(f"{RESERVED_PREFIX}{first + i}" for i in range(len(self.specs)))


def _query_shapes(plan: ReleasePlan) -> list[_QueryShape]:
    main = tuple(m for m in plan.measurements if m.kind != "histogram")
    shapes = [_QueryShape(main, None)] if main else []
    shapes += [_QueryShape((m,), m) for m in plan.measurements if m.kind == "histogram"]
    return shapes


def _build_query(
    plan: ReleasePlan,
    context: Any,
    shape: _QueryShape,
    columns: Sequence[str],
    scales: Sequence[float],
    only: int | None = None,
) -> OpenDPObject:
    """The OpenDP measurement of a query (or of its measurement ``only``, for calibration)."""
    dp = opendp()
    pairs = list(zip(shape.specs, columns, scales, strict=True))
    if only is not None:
        pairs = [pairs[only]]
    # The truncation is the whole query's, also when one measurement is built alone, so that its
    # privacy loss is measured under the truncation it is released with.
    query = _truncated(plan, context, cap_groups=any(s.kind == "quantile" for s in shape.specs))
    exprs = [_expression(plan, spec, column, scale) for spec, column, scale in pairs]
    hist = shape.histogram
    if hist is not None:
        assert hist.edges is not None and hist.field is not None
        # Bins [e0, e1), ..., [e_{n-2}, e_{n-1}]; cut's open outer bins take values outside.
        query = query.with_columns(
            pl.col(hist.field)
            .cut(list(hist.edges[1:-1]), labels=list(bin_labels(hist.edges)), left_closed=True)
            .cast(pl.String)
            .alias(BIN)
        )
    group_columns = [*plan.group_by, BIN] if hist is not None else list(plan.group_by)
    if group_columns:
        query = query.group_by(*group_columns).agg(*exprs).with_keys(_keys(plan, hist))
    else:
        query = query.select(*exprs)
    return dp.m.make_private_lazyframe(
        context.accountant.input_domain,
        context.accountant.input_metric,
        dp.max_divergence(),
        query.polars_plan,
    )


def _build_one(
    plan: ReleasePlan,
    context: Any,
    shape: _QueryShape,
    columns: Sequence[str],
    index: int,
    scale: float,
) -> OpenDPObject:
    scales = [scale] * len(shape.specs)
    return _build_query(plan, context, shape, columns, scales, only=index)


def calibrate_scale(build: Callable[[float], OpenDPObject], target: float) -> float:
    """The noise scale at which OpenDP says ``build(scale)`` costs at most ``target`` epsilon.

    Pure-DP loss is inversely proportional to the scale (Laplace, exponential mechanism), so one
    probe at scale 1 gives the answer; float rounding is corrected by re-checking with OpenDP.
    """
    scale = float(build(1.0).map(1)) / target
    for _ in range(CALIBRATION_STEPS):
        spent = float(build(scale).map(1))
        if spent <= target:
            return scale
        scale *= (spent / target) * (1 + 1e-12)
    raise BudgetCheckFailed(f"could not fit a measurement into epsilon {target}")


def _summaries(measurement: OpenDPObject, alpha: float) -> dict[str, dict[str, Any]]:
    from opendp.accuracy import summarize_polars_measurement

    table = summarize_polars_measurement(measurement, alpha)
    return {row["column"]: row for row in table.iter_rows(named=True)}


def _half_width(summary: dict[str, Any]) -> float | None:
    """OpenDP's accuracy of one summarised measurement, in its own units (None: no interval)."""
    accuracy = summary["accuracy"]
    if accuracy is None:
        return None  # quantiles
    if math.isfinite(accuracy) and accuracy >= 0:
        return float(accuracy)
    # OpenDP 0.16 answers -inf for integer noise so narrow that its tail underflows (scale 0.001):
    # the noise is then 0 with probability far above 95%, so the half-width is 0.
    if summary["distribution"] == "Integer Laplace" and summary["scale"] < 0.01:
        return 0.0
    return None


def resolve(plan: ReleasePlan, identifier: type[pl.DataType] = pl.String) -> ResolvedRelease:
    """Build, calibrate and check every measurement of ``plan`` (data-independent), for frames
    whose ``citizen`` column has the type ``identifier``."""
    context = _context(plan, identifier)
    share = plan.epsilon / len(plan.measurements) * (1 - BUDGET_HEADROOM)
    queries: list[ResolvedQuery] = []
    first = 0
    for shape in _query_shapes(plan):
        columns = shape.columns(first)
        first += len(columns)
        # Each measurement is calibrated alone (``only``): the others' scales do not matter.
        scales = [
            calibrate_scale(partial(_build_one, plan, context, shape, columns, i), share)
            for i in range(len(shape.specs))
        ]
        measurement = _build_query(plan, context, shape, columns, scales)
        parts = _describe(plan, context, shape, columns, scales, measurement)
        queries.append(
            ResolvedQuery(
                measurement=measurement,
                epsilon=float(measurement.map(1)),
                group_columns=(*plan.group_by, BIN) if shape.histogram else plan.group_by,
                parts=parts,
            )
        )
    total = math.fsum(q.epsilon for q in queries)
    if total > plan.epsilon:
        raise BudgetCheckFailed(f"OpenDP puts the release at epsilon {total} > {plan.epsilon}")
    return ResolvedRelease(tuple(queries), context.accountant.input_domain, total)


def _describe(
    plan: ReleasePlan,
    context: Any,
    shape: _QueryShape,
    columns: Sequence[str],
    scales: Sequence[float],
    measurement: OpenDPObject,
) -> tuple[ResolvedMeasurement, ...]:
    at_95 = _summaries(measurement, ALPHA)
    at_975 = _summaries(measurement, MEAN_PART_ALPHA)
    parts = []
    for i, (spec, column) in enumerate(zip(shape.specs, columns, strict=True)):
        unit = fixed_point_unit(plan.bounds[spec.field]) if spec.kind == "sum" else 1.0  # type: ignore[index]
        own = _build_query(plan, context, shape, columns, scales, only=i)  # its own epsilon
        accuracy, accuracy_mean = _half_width(at_95[column]), _half_width(at_975[column])
        parts.append(
            ResolvedMeasurement(
                spec=spec,
                column=column,
                unit=unit,
                epsilon=float(own.map(1)),
                mechanism=str(at_95[column]["distribution"]),
                noise_scale=float(at_95[column]["scale"]) * unit,
                half_width=None if accuracy is None else accuracy * unit,
                half_width_mean_part=None if accuracy_mean is None else accuracy_mean * unit,
            )
        )
    return tuple(parts)


def run(resolved: ResolvedRelease, plan: ReleasePlan, frame: pl.LazyFrame) -> list[pl.DataFrame]:
    """Release every query on ``frame`` through one OpenDP compositor of ``plan.epsilon``.

    The compositor is OpenDP's own check that the queries fit the budget; each query's cost is
    compared with what the compositor has left before it is submitted, because a compositor that
    refuses a query is of no further use.
    """
    dp = opendp()
    context = dp.Context.compositor(
        data=frame,
        privacy_unit=dp.unit_of(contributions=1, identifier=CITIZEN),
        privacy_loss=dp.loss_of(epsilon=plan.epsilon),
        split_by_weights=[q.epsilon for q in resolved.queries],
        domain=resolved.input_domain,
    )
    outputs = []
    for query in resolved.queries:
        allowed = context.remaining_privacy_loss()[0]
        if float(query.measurement.map(1)) > allowed:
            raise BudgetCheckFailed(f"a query costs more than the {allowed} epsilon left for it")
        outputs.append(context(query.measurement).collect())
    return outputs


# --------------------------------------------------------------------------------------------------
# The cache
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CacheStats:
    hits: int
    misses: int
    entries: int


class MeasurementCache:
    """A thread-safe LRU of resolved measurements, keyed by plan shape, epsilon and constants.

    ``max_entries=0`` turns caching off. Two threads missing the same key at once both resolve
    (a few tenths of a second each) and the second result is dropped: simpler than a lock per key,
    and harmless because both are equal.
    """

    def __init__(self, max_entries: int = 64) -> None:
        if max_entries < 0:
            raise ValueError("max_entries must be >= 0")
        self._max_entries = max_entries
        self._entries: OrderedDict[Hashable, ResolvedRelease] = OrderedDict()
        self._lock = threading.Lock()
        self._hits = 0
        self._misses = 0

    @staticmethod
    def key(plan: ReleasePlan, identifier: type[pl.DataType] = pl.String) -> Hashable:
        """Everything the measurements depend on; all of it is public (no data)."""
        return (
            plan.shape_key,
            str(identifier),
            plan.epsilon,
            FIXED_POINT_BITS,
            MAX_GROUP_LENGTH,
            QUANTILE_CANDIDATES,
            BUDGET_HEADROOM,
        )

    def resolved(
        self, plan: ReleasePlan, identifier: type[pl.DataType] = pl.String
    ) -> tuple[ResolvedRelease, bool]:
        """The plan's measurements (for frames whose ``citizen`` column has the type
        ``identifier``) and whether they came from the cache."""
        key = self.key(plan, identifier)
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
                self._hits += 1
                return found, True
            self._misses += 1
        built = resolve(plan, identifier)
        with self._lock:
            if self._max_entries:
                self._entries[key] = self._entries.get(key, built)
                self._entries.move_to_end(key)
                while len(self._entries) > self._max_entries:
                    self._entries.popitem(last=False)
        return built, False

    @property
    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(self._hits, self._misses, len(self._entries))

    @property
    def hits(self) -> int:
        return self.stats.hits

    @property
    def misses(self) -> int:
        return self.stats.misses

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
