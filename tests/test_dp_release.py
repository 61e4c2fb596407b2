"""The DP release engine (aggregation.dp_release): groups, budget, intervals, bounds, cache.

OpenDP's noise cannot be seeded, so no assertion here depends on a lucky draw: either the noise is
made negligible with a large epsilon (integer noise is then exactly zero but with probability
below 10^-100), or a property holds for every draw (the value lies inside its own interval), or a
statistical claim is checked with a margin of many standard deviations.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import get_args

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aggregation.dp_plan import STATS, Stat, measurements_of
from aggregation.dp_release import (
    GroupRow,
    MeasurementCache,
    ReleaseFrameInvalid,
    ReleasePlan,
    ReleasePlanInvalid,
    StatisticSpec,
    expected_accuracy,
    mean_interval,
    noisy_count,
    numbered_citizens,
    release,
)

DISTRICTS = ("Old Town", "Harbour", "Greenbelt")  # not alphabetical: order must follow the domain
AGES = ("65+", "18-29")
BOUNDS = {"kwh": (0.0, 50.0)}
HUGE_EPSILON = 4000.0  # noise scales of a few thousandths: integer noise is zero for sure


@pytest.fixture(scope="module")
def cache() -> MeasurementCache:
    return MeasurementCache(64)


def plan_of(*statistics: StatisticSpec, **overrides: object) -> ReleasePlan:
    fields: dict[str, object] = {
        "statistics": statistics,
        "group_by": ("district",),
        "group_domains": {"district": DISTRICTS},
        "bounds": BOUNDS,
        "max_records_per_citizen": 2,
        "max_groups_per_citizen": 1,
        "epsilon": 1.0,
    }
    fields.update(overrides)
    return ReleasePlan(**fields)  # type: ignore[arg-type]


def frame_of(rows: list[tuple[str, str, float]]) -> pl.LazyFrame:
    citizens, districts, kwh = zip(*rows, strict=True) if rows else ((), (), ())
    return pl.LazyFrame(
        {"citizen": list(citizens), "district": list(districts), "kwh": list(kwh)},
        schema={"citizen": pl.String, "district": pl.String, "kwh": pl.Float64},
    )


def synthetic(citizens: int, k: int, seed: int = 1) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    return pl.DataFrame(
        {
            "citizen": np.repeat(np.arange(citizens), k).astype(str),
            "district": np.repeat(rng.choice(DISTRICTS, citizens), k),
            "kwh": np.clip(rng.gamma(4.0, 2.0, citizens * k), 0.0, 50.0),
        }
    )


def by_district(rows: list[GroupRow]) -> dict[str, GroupRow]:
    return {r.key["district"]: r for r in rows}


def value(row: GroupRow, label: str) -> float:
    found = row.values[label].value
    assert found is not None
    return found


# --------------------------------------------------------------------------------------------------
# Groups, order, budget
# --------------------------------------------------------------------------------------------------


def test_every_group_appears_in_domain_order_even_empty(cache: MeasurementCache) -> None:
    plan = plan_of(
        StatisticSpec("count"),
        group_by=("district", "age"),
        group_domains={"age": AGES, "district": DISTRICTS},
        max_groups_per_citizen=1,
        epsilon=HUGE_EPSILON,
    )
    frame = pl.LazyFrame(
        {
            "citizen": ["a", "a", "b", "c"],
            "district": ["Harbour", "Harbour", "Harbour", "Old Town"],
            "age": ["18-29", "18-29", "18-29", "65+"],
        }
    )
    result = release(frame, plan, cache)
    keys = [(r.key["district"], r.key["age"]) for r in result.rows]
    assert keys == [(d, a) for d in DISTRICTS for a in AGES]
    counts = {key: r.values["count"].value for key, r in zip(keys, result.rows, strict=True)}
    assert counts[("Harbour", "18-29")] == 3
    assert counts[("Old Town", "65+")] == 1
    assert counts[("Greenbelt", "65+")] == 0  # empty, yet present


@pytest.mark.parametrize(
    ("statistics", "measurements"),
    [
        ((StatisticSpec("count"),), ["count"]),
        ((StatisticSpec("mean", "kwh"),), ["sum(kwh)", "count"]),
        ((StatisticSpec("count"), StatisticSpec("mean", "kwh")), ["count", "sum(kwh)"]),
        (
            (
                StatisticSpec("sum", "kwh"),
                StatisticSpec("mean", "kwh"),
                StatisticSpec("count"),
                StatisticSpec("quantile", "kwh", q=0.9),
                StatisticSpec("histogram", "kwh", edges=(0.0, 10.0, 50.0)),
            ),
            ["sum(kwh)", "count", "quantile(kwh, 0.9)", "histogram(kwh)"],
        ),
    ],
)
def test_epsilon_is_split_evenly_over_measurements_and_never_exceeded(
    cache: MeasurementCache, statistics: tuple[StatisticSpec, ...], measurements: list[str]
) -> None:
    plan = plan_of(*statistics, epsilon=0.8)
    result = release(frame_of([("a", "Harbour", 3.0)]), plan, cache)
    assert sorted(result.epsilon_per_statistic) == sorted(measurements)
    spent = math.fsum(result.epsilon_per_statistic.values())
    assert spent <= plan.epsilon
    assert result.epsilon <= plan.epsilon
    assert spent == pytest.approx(plan.epsilon, rel=1e-6)
    assert result.epsilon == pytest.approx(spent, rel=1e-9)
    for share in result.epsilon_per_statistic.values():
        assert share == pytest.approx(plan.epsilon / len(measurements), rel=1e-6)
    if any(s.stat == "mean" for s in statistics):
        assert result.derived == {"mean(kwh)": ["sum(kwh)", "count"]}


def test_noise_scale_follows_the_contribution_bound(cache: MeasurementCache) -> None:
    """Count noise is k·g / epsilon: the bound OpenDP accounts, and no more."""
    plan = plan_of(StatisticSpec("count"), max_records_per_citizen=3, epsilon=0.5)
    result = release(frame_of([]), plan, cache)
    assert result.noise_scale_per_statistic["count"] == pytest.approx(3 / 0.5, rel=1e-6)
    assert result.mechanism == "Integer Laplace"
    wide = plan_of(
        StatisticSpec("count"),
        StatisticSpec("sum", "kwh"),
        max_records_per_citizen=3,
        max_groups_per_citizen=2,
        epsilon=0.5,
    )
    result = release(frame_of([]), wide, cache)
    assert result.noise_scale_per_statistic["count"] == pytest.approx(3 * 2 / 0.25, rel=1e-6)
    assert result.noise_scale_per_statistic["sum(kwh)"] == pytest.approx(
        3 * 2 * 50 / 0.25, rel=1e-6
    )


def test_without_dimensions_one_row(cache: MeasurementCache) -> None:
    plan = plan_of(
        StatisticSpec("count"),
        StatisticSpec("histogram", "kwh", edges=(0.0, 25.0, 50.0)),
        group_by=(),
        group_domains={},
        epsilon=HUGE_EPSILON,
    )
    result = release(frame_of([("a", "x", 1.0), ("b", "y", 30.0)]), plan, cache)
    assert [r.key for r in result.rows] == [{}]
    assert result.rows[0].values["count"].value == 2
    bins = result.rows[0].histograms["histogram(kwh)"]
    assert [b.count.value for b in bins] == [1, 1]


def test_histogram_bins_are_labelled_and_clip_outside_values(cache: MeasurementCache) -> None:
    edges = (0.0, 1.0, 2.5, 4.0)
    plan = plan_of(
        StatisticSpec("histogram", "kwh", edges=edges),
        bounds={"kwh": (-10.0, 50.0)},
        max_records_per_citizen=5,
        epsilon=HUGE_EPSILON,
    )
    frame = frame_of(
        [
            ("a", "Harbour", -3.0),  # below the first edge: first bin
            ("a", "Harbour", 0.0),
            ("a", "Harbour", 1.0),  # on an inner edge: the bin it opens
            ("b", "Harbour", 2.5),
            ("b", "Harbour", 4.0),  # the last edge: the last bin is closed
            ("b", "Harbour", 9.0),  # above: last bin
        ]
    )
    result = release(frame, plan, cache)
    harbour = by_district(result.rows)["Harbour"].histograms["histogram(kwh)"]
    assert [b.label for b in harbour] == ["[0, 1)", "[1, 2.5)", "[2.5, 4]"]
    assert [(b.lower_edge, b.upper_edge) for b in harbour] == [(0.0, 1.0), (1.0, 2.5), (2.5, 4.0)]
    assert [b.count.value for b in harbour] == [2, 1, 3]
    for b in harbour:
        assert b.count.lower is not None and b.count.upper is not None
        assert b.count.lower <= b.count.value <= b.count.upper  # type: ignore[operator]
    empty = by_district(result.rows)["Greenbelt"].histograms["histogram(kwh)"]
    assert [b.count.value for b in empty] == [0, 0, 0]


def test_values_lie_in_their_intervals_and_mean_is_near_the_truth(
    cache: MeasurementCache,
) -> None:
    data = synthetic(citizens=20_000, k=3)
    plan = plan_of(
        StatisticSpec("count"),
        StatisticSpec("sum", "kwh"),
        StatisticSpec("mean", "kwh"),
        StatisticSpec("quantile", "kwh", q=0.5),
        max_records_per_citizen=3,
    )
    truth = {
        r["district"]: r
        for r in data.group_by("district")
        .agg(n=pl.len(), total=pl.col("kwh").sum(), mean=pl.col("kwh").mean())
        .iter_rows(named=True)
    }
    result = release(data.lazy(), plan, cache)
    covered = 0
    for district, row in by_district(result.rows).items():
        for label in ("count", "sum(kwh)", "mean(kwh)"):
            v = row.values[label]
            assert v.lower is not None and v.upper is not None
            assert v.lower <= v.value <= v.upper  # type: ignore[operator]
        mean = row.values["mean(kwh)"]
        covered += mean.lower <= truth[district]["mean"] <= mean.upper  # type: ignore[operator]
        # Five times the 95% half-width: a Laplace draw beyond it has probability 20**-5.
        half = (mean.upper - mean.lower) / 2  # type: ignore[operator]
        assert abs(value(row, "mean(kwh)") - truth[district]["mean"]) < 5 * half
        quantile = row.values["quantile(kwh, 0.5)"]
        assert quantile.lower is None and quantile.upper is None and quantile.note
        assert 0.0 <= value(row, "quantile(kwh, 0.5)") <= 50.0
    # Each interval misses with probability under 5%: three misses of three would be 1 in 8,000.
    assert covered >= 1


def test_mean_of_a_group_whose_noisy_count_is_not_positive() -> None:
    gone = mean_interval(
        total=10.0, total_half_width=5.0, count=0, count_half_width=3.0, bounds=(0, 50)
    )
    assert gone.value is None and gone.lower is None and gone.note
    thin = mean_interval(
        total=40.0, total_half_width=5.0, count=2, count_half_width=3.0, bounds=(0, 50)
    )
    assert (thin.value, thin.lower, thin.upper) == (20.0, 0, 50) and thin.note
    fine = mean_interval(
        total=1000.0, total_half_width=100.0, count=100, count_half_width=10.0, bounds=(0, 50)
    )
    assert fine.value == 10.0
    assert fine.lower == pytest.approx(900 / 110) and fine.upper == pytest.approx(1100 / 90)
    clamped = mean_interval(
        total=-500.0, total_half_width=10.0, count=100, count_half_width=1.0, bounds=(0, 50)
    )
    assert (clamped.value, clamped.lower, clamped.upper) == (0, 0, 0)


# --------------------------------------------------------------------------------------------------
# OpenDP enforces the contribution bound itself
# --------------------------------------------------------------------------------------------------


def _base_rows(k: int) -> list[tuple[str, str, float]]:
    return [(f"c{i}", DISTRICTS[i % 3], 2.0) for i in range(60) for _ in range(k)]


@pytest.mark.parametrize("with_quantile", [False, True])
def test_a_citizen_with_10000_rows_moves_the_counts_by_at_most_k(
    cache: MeasurementCache, with_quantile: bool
) -> None:
    k = 2
    statistics = [StatisticSpec("count"), StatisticSpec("sum", "kwh")]
    if with_quantile:  # adds OpenDP's group cap to the truncation
        statistics.append(StatisticSpec("quantile", "kwh", q=0.5))
    plan = plan_of(*statistics, max_records_per_citizen=k, epsilon=HUGE_EPSILON)
    base = _base_rows(k)
    one_group = [("heavy", "Harbour", 7.0)] * 10_000
    every_group = [("heavy", d, 7.0) for d in DISTRICTS for _ in range(10_000)]
    truncated = [("heavy", "Harbour", 7.0)] * k

    def counts(rows: list[tuple[str, str, float]]) -> dict[str, float]:
        result = release(frame_of(rows), plan, cache)
        return {d: value(r, "count") for d, r in by_district(result.rows).items()}

    without = counts(base)
    assert without == dict.fromkeys(DISTRICTS, 20 * k)  # the noise really is negligible
    assert counts(base + one_group) == counts(base + truncated)
    assert counts(base + truncated)["Harbour"] == without["Harbour"] + k
    spread = counts(base + every_group)
    assert sum(spread.values()) - sum(without.values()) == k  # k·g with g = 1, over all groups
    if with_quantile:  # at most one group touched
        assert sum(spread[d] != without[d] for d in DISTRICTS) == 1
    result = release(frame_of(base + one_group), plan, cache)
    heavy_sum = value(by_district(result.rows)["Harbour"], "sum(kwh)")
    assert heavy_sum == pytest.approx(20 * k * 2.0 + 7.0 * k, abs=2.0)  # 25 noise scales


# --------------------------------------------------------------------------------------------------
# The cache and the preview
# --------------------------------------------------------------------------------------------------


def test_second_release_of_a_shape_is_a_cache_hit() -> None:
    own = MeasurementCache(1)
    plan = plan_of(StatisticSpec("count"), StatisticSpec("mean", "kwh"), epsilon=0.3)
    first = release(frame_of([("a", "Harbour", 1.0)]), plan, own)
    second = release(frame_of([("b", "Old Town", 2.0)]), plan, own)
    assert (first.cache_hit, second.cache_hit) == (False, True)
    assert (own.hits, own.misses, own.stats.entries) == (1, 1, 1)
    other = plan_of(StatisticSpec("count"), StatisticSpec("mean", "kwh"), epsilon=0.4)
    assert not release(frame_of([]), other, own).cache_hit  # epsilon is part of the key
    assert not release(frame_of([]), plan, own).cache_hit  # evicted: the cache holds one
    assert (own.hits, own.misses, own.stats.entries) == (1, 3, 1)
    off = MeasurementCache(0)
    release(frame_of([]), plan, off)
    assert not release(frame_of([]), plan, off).cache_hit
    assert off.stats.entries == 0


def test_expected_accuracy_matches_the_release_and_is_honest_about_the_rest(
    cache: MeasurementCache,
) -> None:
    plan = plan_of(
        StatisticSpec("count"),
        StatisticSpec("mean", "kwh"),
        StatisticSpec("quantile", "kwh", q=0.25),
        StatisticSpec("histogram", "kwh", edges=(0.0, 5.0, 50.0)),
        epsilon=0.6,
    )
    preview = {a.statistic: a for a in expected_accuracy(plan, cache=cache)}
    result = release(frame_of([("a", "Harbour", 3.0)]), plan, cache)
    count = result.rows[0].values["count"]
    assert preview["count"].half_width == pytest.approx((count.upper - count.lower) / 2)  # type: ignore[operator]
    assert preview["histogram(kwh)"].half_width == preview["count"].half_width
    assert preview["mean(kwh)"].half_width is None and preview["mean(kwh)"].note
    assert preview["mean(kwh)"].epsilon == pytest.approx(2 * preview["count"].epsilon)
    assert preview["quantile(kwh, 0.25)"].half_width is None
    assert preview["quantile(kwh, 0.25)"].mechanism == "ExponentialMin"
    many = expected_accuracy(plan, expected_records_per_group=10_000, cache=cache)
    few = expected_accuracy(plan, expected_records_per_group=100, cache=cache)
    assert 0 < many[1].half_width < few[1].half_width <= 25.0  # type: ignore[operator]
    with pytest.raises(ValueError):
        expected_accuracy(plan, expected_records_per_group=0, cache=cache)


def test_frame_errors() -> None:
    plan = plan_of(StatisticSpec("sum", "kwh"))
    with pytest.raises(ReleaseFrameInvalid) as caught:
        release(pl.LazyFrame({"citizen": ["a"], "district": ["Harbour"]}), plan)
    assert caught.value.columns == ["kwh"]
    with pytest.raises(TypeError):
        release(frame_of([]), "not a plan")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        release({"citizen": ["a"], "kwh": [1.0]}, plan)  # type: ignore[arg-type]
    with pytest.raises(ReleaseFrameInvalid) as caught:
        release(pl.DataFrame({"district": ["Harbour"], "kwh": [1.0]}), plan)
    assert caught.value.columns == ["citizen"]


def test_a_lazy_scan_is_released_without_being_read_first(
    cache: MeasurementCache, tmp_path: Path
) -> None:
    path = tmp_path / "records.parquet"
    synthetic(citizens=300, k=2).with_columns(pl.col("citizen").cast(pl.Int64)).write_parquet(path)
    plan = plan_of(StatisticSpec("count"), epsilon=HUGE_EPSILON)
    result = release(pl.scan_parquet(path), plan, cache)  # numbers stay numbers, lazily
    assert sum(value(r, "count") for r in result.rows) == 600


@settings(max_examples=200, deadline=None)
@given(ids=st.lists(st.text("abc\u00e9", max_size=3), max_size=40))
def test_numbering_is_one_to_one_on_the_frame(ids: list[str]) -> None:
    frame = pl.DataFrame(
        {"citizen": ids, "kwh": [float(i) for i in range(len(ids))]},
        schema={"citizen": pl.String, "kwh": pl.Float64},
    )
    numbered = numbered_citizens(frame)
    assert numbered.schema["citizen"] == pl.Int64
    numbers = numbered["citizen"].to_list()
    for i, a in enumerate(ids):
        for j, b in enumerate(ids):
            assert (a == b) == (numbers[i] == numbers[j])
    assert numbered["kwh"].to_list() == frame["kwh"].to_list()  # rows stay where they were
    already = frame.with_columns(pl.Series("citizen", range(len(ids)), dtype=pl.Int64))
    assert numbered_citizens(already) is already


def test_a_frame_in_memory_is_bounded_per_citizen_as_the_same_frame_lazy(
    cache: MeasurementCache,
) -> None:
    # Citizen "a" uploads 50 rows in one group, "b" 3 in another, "c" 1: k = 2 keeps 2, 2, 1.
    rows = [("a", "Harbour", 7.0)] * 50 + [("b", "Old Town", 3.0)] * 3 + [("c", "Harbour", 1.0)]
    plan = plan_of(StatisticSpec("count"), StatisticSpec("sum", "kwh"), epsilon=HUGE_EPSILON)
    lazy = release(frame_of(rows), plan, cache)
    in_memory = release(frame_of(rows).collect(), plan, cache)
    for result in (lazy, in_memory):
        counts = {r.key["district"]: value(r, "count") for r in result.rows}
        sums = {r.key["district"]: value(r, "sum(kwh)") for r in result.rows}
        assert counts == {"Old Town": 2, "Harbour": 3, "Greenbelt": 0}
        # A sum's noise is a few hundredths here; 48 rows too many would add 336.
        assert sums == pytest.approx({"Old Town": 6.0, "Harbour": 15.0, "Greenbelt": 0.0}, abs=1)
    keys = [MeasurementCache.key(plan, pl.String), MeasurementCache.key(plan, pl.Int64)]
    assert keys[0] != keys[1]  # one resolved measurement per type of the citizen column


# --------------------------------------------------------------------------------------------------
# Plan validation (Hypothesis)
# --------------------------------------------------------------------------------------------------

names = st.text("abcdefghij_", min_size=1, max_size=6)
domains = st.lists(st.text("xyz0123", min_size=1, max_size=3), min_size=1, max_size=4, unique=True)
finite = st.floats(-1e6, 1e6, allow_nan=False)


@st.composite
def valid_plans(draw: st.DrawFn) -> ReleasePlan:
    dims = draw(st.lists(names, max_size=2, unique=True))
    fields = draw(
        st.lists(names.filter(lambda n: n not in dims), min_size=1, max_size=2, unique=True)
    )
    group_domains = {d: tuple(draw(domains)) for d in dims}
    bounds = {}
    for f in fields:
        low = draw(finite)
        bounds[f] = (low, low + draw(st.floats(1e-3, 1e6)))
    specs = {StatisticSpec("count")}
    for f in fields:
        specs.add(StatisticSpec(draw(st.sampled_from(["sum", "mean"])), f))
        specs.add(StatisticSpec("quantile", f, q=draw(st.floats(0.01, 0.99))))
    groups = math.prod(len(v) for v in group_domains.values())
    return ReleasePlan(
        statistics=tuple(sorted(specs, key=lambda s: s.label)),
        group_by=tuple(dims),
        group_domains=group_domains,
        bounds=bounds,
        max_records_per_citizen=draw(st.integers(1, 1000)),
        max_groups_per_citizen=draw(st.integers(1, groups)),
        epsilon=draw(st.floats(1e-3, 100)),
    )


@given(valid_plans(), st.floats(1e-3, 100))
def test_valid_plans_have_a_stable_shape_key(plan: ReleasePlan, epsilon: float) -> None:
    again = ReleasePlan(
        statistics=plan.statistics,
        group_by=plan.group_by,
        group_domains=dict(plan.group_domains),
        bounds=dict(plan.bounds),
        max_records_per_citizen=plan.max_records_per_citizen,
        max_groups_per_citizen=plan.max_groups_per_citizen,
        epsilon=epsilon,
    )
    assert hash(plan.shape_key) == hash(again.shape_key) and plan.shape_key == again.shape_key
    assert MeasurementCache.key(plan) != MeasurementCache.key(again) or epsilon == plan.epsilon
    assert len(list(plan.group_keys())) == plan.group_count
    needed = {m.label for s in plan.statistics for m in measurements_of(s)}
    assert sorted(m.label for m in plan.measurements) == sorted(needed)  # each once


def test_stat_names_match_the_literal() -> None:
    assert get_args(Stat) == STATS


def _invalid(field: str, **overrides: object) -> None:
    with pytest.raises(ReleasePlanInvalid) as caught:
        plan_of(StatisticSpec("mean", "kwh"), **overrides)
    assert caught.value.field == field
    assert isinstance(caught.value, ValueError)


@given(st.one_of(st.floats(max_value=0.0), st.just(math.nan), st.just(math.inf), st.booleans()))
def test_epsilon_must_be_positive_and_finite(epsilon: float) -> None:
    _invalid("epsilon", epsilon=epsilon)


@given(st.one_of(st.integers(max_value=0), st.floats(0.5, 5), st.just(True)))
def test_records_per_citizen_must_be_a_positive_whole_number(k: object) -> None:
    _invalid("max_records_per_citizen", max_records_per_citizen=k)


@given(st.one_of(st.integers(max_value=0), st.integers(len(DISTRICTS) + 1, 10**6)))
def test_groups_per_citizen_must_be_between_1_and_the_number_of_groups(g: int) -> None:
    _invalid("max_groups_per_citizen", max_groups_per_citizen=g)


@given(
    st.tuples(finite, finite).filter(lambda b: b[0] >= b[1])
    | st.tuples(st.just(math.nan), finite)
    | st.tuples(finite, st.just(math.inf))
)
def test_bounds_must_be_finite_and_ordered(bounds: tuple[float, float]) -> None:
    _invalid("bounds", bounds={"kwh": bounds})


@given(st.one_of(st.floats(max_value=0.0), st.floats(min_value=1.0), st.just(math.nan)))
def test_quantile_q_must_be_inside_0_1(q: float) -> None:
    with pytest.raises(ReleasePlanInvalid) as caught:
        StatisticSpec("quantile", "kwh", q=q)
    assert caught.value.field == "statistics.q"


@settings(suppress_health_check=[HealthCheck.filter_too_much])
@given(
    st.lists(finite, max_size=1)
    | st.lists(finite, min_size=2, max_size=6).filter(
        lambda e: any(b <= a for a, b in zip(e, e[1:], strict=False))
    )
    | st.lists(st.just(math.inf), min_size=2, max_size=3)
)
def test_histogram_edges_must_increase(edges: list[float]) -> None:
    with pytest.raises(ReleasePlanInvalid) as caught:
        StatisticSpec("histogram", "kwh", edges=tuple(edges))
    assert caught.value.field == "statistics.edges"


@pytest.mark.parametrize(
    ("field", "overrides"),
    [
        ("group_domains", {"group_domains": {}}),
        ("group_domains", {"group_domains": {"district": ("a", "a")}}),
        ("group_by", {"group_by": ("citizen",)}),
        ("group_by", {"group_by": ("kwh",), "group_domains": {"kwh": ("a",)}}),
        ("group_by", {"group_by": ("district", "district")}),
        ("bounds", {"bounds": {}}),
        ("max_groups_per_citizen", {"group_by": (), "max_groups_per_citizen": 2}),
        ("statistics", {"statistics": ()}),
        ("statistics", {"statistics": (StatisticSpec("count"), StatisticSpec("count"))}),
    ],
)
def test_each_invalid_plan_names_its_field(field: str, overrides: dict[str, object]) -> None:
    _invalid(field, **overrides)


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"stat": "median", "field": "kwh"}, "statistics.stat"),
        ({"stat": "count", "field": "kwh"}, "statistics.field"),
        ({"stat": "sum"}, "statistics.field"),
        ({"stat": "sum", "field": "__dp_0"}, "statistics.field"),
        ({"stat": "sum", "field": "kwh", "q": 0.5}, "statistics.q"),
        ({"stat": "mean", "field": "kwh", "edges": (0.0, 1.0)}, "statistics.edges"),
    ],
)
def test_each_invalid_statistic_names_its_field(arguments: dict[str, object], field: str) -> None:
    with pytest.raises(ReleasePlanInvalid) as caught:
        StatisticSpec(**arguments)  # type: ignore[arg-type]
    assert caught.value.field == field


# --------------------------------------------------------------------------------------------------
# noisy_count
# --------------------------------------------------------------------------------------------------


def test_noisy_count_is_calibrated_and_its_interval_covers() -> None:
    draws = [noisy_count(500, 1.0) for _ in range(600)]
    first = draws[0]
    assert first.epsilon <= 1.0 and first.epsilon == pytest.approx(1.0)
    assert first.noise_scale == pytest.approx(1.0)
    assert first.upper - first.value == pytest.approx(first.value - first.lower)
    assert all(isinstance(d.value, int) for d in draws)
    covered = sum(d.lower <= 500 <= d.upper for d in draws) / len(draws)
    assert covered >= 0.92  # expected 0.973 at scale 1; 0.92 is eight standard deviations below
    errors = [d.value - 500 for d in draws]
    assert abs(sum(errors) / len(errors)) < 0.3  # unbiased: five standard errors
    assert noisy_count(7, 1000.0).value == 7  # scale 0.001: the noise is zero


@pytest.mark.parametrize(
    ("count", "epsilon"),
    [(-1, 1.0), (3, 0.0), (3, -1.0), (3, math.inf), (3, math.nan), (True, 1.0)],
)
def test_noisy_count_refuses_bad_arguments(count: int, epsilon: float) -> None:
    with pytest.raises(ValueError):
        noisy_count(count, epsilon)


def test_no_warnings_escape_a_normal_release(cache: MeasurementCache) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        release(frame_of([]), plan_of(StatisticSpec("count")), cache)


def test_the_cache_is_shared_safely_between_threads() -> None:
    from concurrent.futures import ThreadPoolExecutor

    shared = MeasurementCache(8)
    plan = plan_of(StatisticSpec("count"), StatisticSpec("sum", "kwh"), epsilon=HUGE_EPSILON)
    frame = frame_of(_base_rows(2))
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: release(frame, plan, shared), range(12)))
    assert all(value(r.rows[0], "count") == 40 for r in results)
    assert shared.hits + shared.misses == 12 and 1 <= shared.misses <= 4
    assert shared.stats.entries == 1
