"""The demo city: the generator is deterministic, stays within the catalogue and shows the district
effects it promises; seeding stores exactly the generated data, readable by the named citizen."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from sqlmodel import SQLModel, select

import vault.tables  # noqa: F401  (registers the tables on SQLModel.metadata)
from vault.catalogue import StreamType, default_catalogue
from vault.db import make_engine
from vault.demo_city import (
    DEMO_STREAM_TYPES,
    NAMED_CITIZENS,
    DemoCity,
    DemoCityError,
    database_is_empty,
    demo_handle,
    generate_city,
    generate_readings,
    seed_demo_city,
)
from vault.models import Citizen, Stream
from vault.settings import Settings

END = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def city() -> DemoCity:
    return generate_city(600, seed=11, days=60, end=END)


def assert_within_catalogue(frame: pl.DataFrame, spec: StreamType) -> None:
    """Exactly the catalogue's columns (after ``citizen``, if any), dtypes, bounds and categories."""
    columns = [c for c in frame.columns if c != "citizen"]
    assert columns == list(spec.field_names)
    assert frame.select(columns).schema == spec.polars_schema()
    assert frame.null_count().sum_horizontal().item() == 0
    for field in spec.fields:
        column = frame.get_column(field.name)
        if field.type == "category":
            assert set(column.unique().to_list()) <= set(field.categories), field.name
        if field.is_numeric:
            if field.min is not None:
                assert column.min() >= field.min, field.name  # type: ignore[operator]
            if field.max is not None:
                assert column.max() <= field.max, field.name  # type: ignore[operator]


# --------------------------------------------------------------------------------------------------
# The generator
# --------------------------------------------------------------------------------------------------


def test_same_seed_gives_equal_frames(city: DemoCity) -> None:
    again = generate_city(600, seed=11, days=60, end=END)
    assert set(city.frames) == set(DEMO_STREAM_TYPES)
    for name in DEMO_STREAM_TYPES:
        assert city.frames[name].equals(again.frames[name]), name
    assert city.profiles.equals(again.profiles)


def test_another_seed_gives_another_city(city: DemoCity) -> None:
    other = generate_city(600, seed=12, days=60, end=END)
    assert not city.frames["energy.consumption"].equals(other.frames["energy.consumption"])


def test_every_value_is_within_the_catalogue(city: DemoCity) -> None:
    catalogue = default_catalogue()
    for name in DEMO_STREAM_TYPES:
        assert_within_catalogue(city.frames[name], catalogue.get(name))


def test_frames_are_sorted_and_cover_the_window(city: DemoCity) -> None:
    for name, frame in city.frames.items():
        assert frame.equals(frame.sort("citizen", "ts", maintain_order=True)), name
        assert frame.get_column("citizen").unique().len() == city.citizens or name in (
            "mobility.trip",
            "survey.response",
        )
        if name != "profile":
            assert frame.get_column("ts").min() >= city.start  # type: ignore[operator]
            assert frame.get_column("ts").max() <= city.end  # type: ignore[operator]
    energy = city.frames["energy.consumption"]
    assert energy.height == city.citizens * 60
    assert city.frames["profile"].height == city.citizens


def test_per_citizen_split(city: DemoCity) -> None:
    catalogue = default_catalogue()
    for citizen in (0, 1, 317, city.citizens - 1):
        frames = city.citizen_frames(citizen)
        assert list(frames) == list(DEMO_STREAM_TYPES)
        for name, frame in frames.items():
            assert frame.schema == catalogue.get(name).polars_schema()
            expected = city.frames[name].filter(pl.col("citizen") == citizen).drop("citizen")
            assert frame.equals(expected), (citizen, name)
        profile = city.profile(citizen)
        row = frames["profile"].row(0, named=True)
        assert (row["district"], row["age_band"], row["household_size"]) == (
            profile.district,
            profile.age_band,
            profile.household_size,
        )
    with pytest.raises(DemoCityError):
        city.records(city.citizens, "energy.consumption")


def test_plausible_amounts(city: DemoCity) -> None:
    daily = city.frames["energy.consumption"].get_column("kwh")
    assert daily.quantile(0.05) >= 2 and daily.quantile(0.95) <= 25  # type: ignore[operator]
    noise = city.frames["noise.exposure"].get_column("db")
    assert noise.min() >= 40 and noise.max() <= 90  # type: ignore[operator]
    trips_per_week = city.frames["mobility.trip"].height / city.citizens / (60 / 7)
    assert 2 <= trips_per_week <= 7
    answers_each = city.frames["survey.response"].height / city.citizens
    assert 3 <= answers_each <= 10
    # Walking is short and slow, the car long; minutes follow the distance.
    by_mode = (
        city.frames["mobility.trip"]
        .group_by("mode")
        .agg(pl.col("km").median(), (pl.col("km") / pl.col("minutes") * 60).median().alias("kmh"))
    )
    km = dict(zip(by_mode["mode"], by_mode["km"], strict=True))
    kmh = dict(zip(by_mode["mode"], by_mode["kmh"], strict=True))
    assert km["walk"] < km["bike"] < km["car"]
    assert kmh["walk"] < 7 < kmh["bike"] < kmh["car"]


def _with_district(city: DemoCity, name: str) -> pl.DataFrame:
    return city.frames[name].join(city.profiles, on="citizen", how="left")


def test_district_effects_are_visible(city: DemoCity) -> None:
    trips = _with_district(city, "mobility.trip")
    share = (
        trips.group_by("district")
        .agg(
            (pl.col("mode") == "car").mean().alias("car"),
            (pl.col("mode") == "metro").mean().alias("metro"),
        )
        .rows_by_key("district", named=True, unique=True)
    )
    assert share["Greenbelt"]["car"] > share["Old Town"]["car"] + 0.2
    assert share["Eastfield"]["car"] > share["University"]["car"] + 0.2
    assert share["Old Town"]["metro"] > share["Greenbelt"]["metro"] + 0.1

    noise = (
        _with_district(city, "noise.exposure")
        .group_by("district")
        .agg(pl.col("db").mean())
        .rows_by_key("district", unique=True)
    )
    assert min(noise["Harbour"], noise["Old Town"]) > max(noise["Greenbelt"], noise["North Hill"])

    households = (
        city.profiles.group_by("district")
        .agg(pl.col("household_size").mean())
        .rows_by_key("district", unique=True)
    )
    assert households["Greenbelt"] > households["University"]
    # Bigger households use more electricity.
    per_size = (
        _with_district(city, "energy.consumption")
        .group_by("household_size")
        .agg(pl.col("kwh").mean())
        .sort("household_size")
    )
    assert per_size["kwh"][0] < per_size["kwh"][-1]


def test_generate_readings_shape_and_dtypes() -> None:
    catalogue = default_catalogue()
    for name in DEMO_STREAM_TYPES:
        frame = generate_readings(300, 10, name, seed=3, end=END)
        assert frame.height == 3000
        assert frame.columns[0] == "citizen"
        assert frame.schema["citizen"] == pl.Int64
        assert_within_catalogue(frame, catalogue.get(name))
        counts = frame.group_by("citizen").len()
        assert counts.height == 300 and set(counts["len"].to_list()) == {10}
        assert frame.equals(frame.sort("citizen", "ts", maintain_order=True))
        assert frame.equals(generate_readings(300, 10, name, seed=3, end=END))
    assert generate_readings(300, 10, end=END).columns == ["citizen", "ts", "kwh"]


def test_generate_readings_at_benchmark_size() -> None:
    # Speed is measured by `make bench`, never asserted in a unit test.
    frame = generate_readings(100_000, 10)
    assert frame.height == 1_000_000
    assert frame["citizen"].n_unique() == 100_000


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(DemoCityError):
        generate_city(-1)
    with pytest.raises(DemoCityError):
        generate_city(5, days=0)
    with pytest.raises(DemoCityError):
        generate_readings(5, 0)
    assert generate_city(0, end=END).frames["energy.consumption"].height == 0


def test_handles() -> None:
    assert [demo_handle(i) for i in range(4)] == [
        "ana.garcia",
        "ben.okafor",
        "demo-00001",
        "demo-00002",
    ]


# --------------------------------------------------------------------------------------------------
# Seeding a real database
# --------------------------------------------------------------------------------------------------


def test_seeding_stores_exactly_the_generated_data(tmp_path: Path) -> None:
    from vault.runtime import VaultRuntime

    engine = make_engine(f"sqlite:///{(tmp_path / 'civic.db').as_posix()}")
    SQLModel.metadata.create_all(engine)
    rt = VaultRuntime.build(Settings(data_dir=tmp_path, kdf_profile="min"), engine)
    try:
        assert database_is_empty(rt)
        credentials = tmp_path / "demo-credentials.json"
        calls: list[tuple[int, int]] = []
        report = seed_demo_city(
            rt,
            20,
            seed=5,
            credentials_path=credentials,
            progress=lambda done, total: calls.append((done, total)),
            batch_size=8,
            end=END,
        )
        city = generate_city(20, seed=5, end=END)
        assert not database_is_empty(rt)
        assert report.citizens == 20 and report.skipped == 0
        assert report.streams == report.chunks == 20 * len(DEMO_STREAM_TYPES)
        assert report.records == sum(frame.height for frame in city.frames.values())
        assert calls == [(8, 20), (16, 20), (20, 20)]

        with rt.unit_of_work() as session:
            handles = set(session.exec(select(Citizen.handle)))
            assert handles == {demo_handle(i) for i in range(20)}
            assert len(session.exec(select(Stream)).all()) == 100

        # The credentials file: private, valid JSON, with sections for later steps.
        assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
        data = json.loads(credentials.read_text(encoding="utf-8"))
        assert {"note", "citizens", "departments", "clients"} <= data.keys()
        listed = {entry["handle"]: entry for entry in data["citizens"]}
        assert set(listed) == {handle for handle, _ in NAMED_CITIZENS}
        assert all(len(entry["passphrase"]) >= 10 for entry in listed.values())
        assert listed["ana.garcia"]["district"] == city.profile(0).district

        with rt.unit_of_work() as session:
            signed = rt.accounts.sign_in(
                session, "ana.garcia", listed["ana.garcia"]["passphrase"], "127.0.0.1"
            )
            streams = rt.streams.list(session, signed.citizen_id)
            assert sorted(s.stream_type for s in streams) == sorted(DEMO_STREAM_TYPES)
            for summary in streams:
                assert summary.chunk_count == 1
                stream = rt.streams.get_owned(session, signed.citizen_id, summary.id)
                back = rt.records.load_all(session, stream, signed.root)
                assert back.equals(city.records(0, summary.stream_type)), summary.stream_type
            energy = next(s for s in streams if s.stream_type == "energy.consumption")
            stream = rt.streams.get_owned(session, signed.citizen_id, energy.id)
            assert rt.records.load_all(session, stream, signed.root).equals(
                city.records(0, "energy.consumption")
            )
            # Her audit chain says where the data came from, and it verifies.
            view = rt.audit.read(session, signed.citizen_id)
            assert view.intact
            actions = [e.action for e in view.entries]
            assert actions.count("stream.created") == 5
            seeded = next(e for e in view.entries if e.action == "demo.seeded")
            assert seeded.actor == "system:demo-city"
            # She answered the city's three requests (accepted, or declined, or left waiting).
            answered = [
                e.action for e in view.entries if e.action in ("consent.given", "request.declined")
            ]
            assert answered, actions
            assert sorted(c["type"] for c in seeded.details["chunks"]) == sorted(DEMO_STREAM_TYPES)

        # Seeding again skips everyone who is already there and keeps the recovery codes.
        first_codes = {h: e["recovery_code"] for h, e in listed.items()}
        again = seed_demo_city(rt, 22, seed=5, credentials_path=credentials, end=END)
        assert (again.citizens, again.skipped) == (2, 20)
        data = json.loads(credentials.read_text(encoding="utf-8"))
        assert {e["handle"]: e["recovery_code"] for e in data["citizens"]} == first_codes
        assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
    finally:
        engine.dispose()


def test_credentials_file_keeps_other_sections(tmp_path: Path) -> None:
    from vault.demo_city import _write_credentials

    path = tmp_path / "creds.json"
    path.write_text(json.dumps({"departments": [{"name": "mobility"}], "clients": []}))
    _write_credentials(path, [{"handle": "ana.garcia", "passphrase": "p" * 12}])
    data = json.loads(path.read_text())
    assert data["departments"] == [{"name": "mobility"}]
    assert data["citizens"] == [{"handle": "ana.garcia", "passphrase": "p" * 12}]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["creds.json"]  # no temporary file left


def test_demo_city_gives_every_screen_material(tmp_path: Path) -> None:
    """Departments with open requests; most citizens accepted, some narrower, some declined."""
    from sqlmodel import select

    from vault.consent_models import ConsentRecord, DataRequestRow, RequestDecline
    from vault.runtime import VaultRuntime

    engine = make_engine(f"sqlite:///{(tmp_path / 'civic.db').as_posix()}")
    SQLModel.metadata.create_all(engine)
    rt = VaultRuntime.build(Settings(data_dir=tmp_path, kdf_profile="min"), engine)
    try:
        seed_demo_city(rt, 40, seed=3, end=END)
        with rt.reading() as session:
            requests = session.exec(select(DataRequestRow)).all()
            consents = session.exec(select(ConsentRecord)).all()
            declines = session.exec(select(RequestDecline)).all()
        assert {r.department_id for r in requests} == {"energy", "mobility", "environment"}
        assert len(consents) > 40  # most of 40 citizens x 3 requests
        assert declines
        epsilons = {json.loads(c.terms_json)["dp_limits"]["epsilon_per_period"] for c in consents}
        assert {1.0, 0.5, 0.25} <= epsilons  # shipped 1.0 and 0.5; some accepted with half
    finally:
        rt.engine.dispose()
