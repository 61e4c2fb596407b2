"""The stream-type catalogue: the shipped data, the typed loader, and the checks on load."""

from __future__ import annotations

import copy
import json
from importlib import resources
from typing import Any

import polars as pl
import pytest

from vault.catalogue import (
    Catalogue,
    CatalogueError,
    StreamType,
    default_catalogue,
)
from vault.errors import NotFound

DISTRICTS = [
    "Old Town",
    "Riverside",
    "Harbour",
    "North Hill",
    "Westgate",
    "Eastfield",
    "University",
    "Greenbelt",
]
AGE_BANDS = ["18-29", "30-44", "45-64", "65+"]
MODES = ["walk", "bike", "bus", "metro", "car", "other"]
QUESTIONS = ["q-parks", "q-transit", "q-safety", "q-noise", "q-services"]
BOUNDED = ["count", "sum", "mean", "quantile", "histogram"]


def raw_catalogue() -> dict[str, Any]:
    text = resources.files("vault.catalogue").joinpath("stream_types.json").read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def stream(data: dict[str, Any], name: str) -> dict[str, Any]:
    return next(st for st in data["stream_types"] if st["name"] == name)


def field(data: dict[str, Any], stream_name: str, field_name: str) -> dict[str, Any]:
    return next(f for f in stream(data, stream_name)["fields"] if f["name"] == field_name)


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return Catalogue.load()


# --------------------------------------------------------------------------------------------------
# The shipped data
# --------------------------------------------------------------------------------------------------


def test_ships_the_five_stream_types(catalogue: Catalogue) -> None:
    assert catalogue.names == (
        "energy.consumption",
        "mobility.trip",
        "noise.exposure",
        "survey.response",
        "profile",
    )
    for st in catalogue.stream_types:
        assert st.schema_version >= 1
        assert st.title and st.description
        assert st.fields[0].name == "ts"
        assert all(spec.description for spec in st.fields)


def test_energy_consumption(catalogue: Catalogue) -> None:
    st = catalogue.get("energy.consumption")
    assert st.title == "Electricity use"
    assert st.field_names == ("ts", "kwh")
    kwh = st.field("kwh")
    assert (kwh.type, kwh.min, kwh.max, kwh.unit) == ("float", 0, 50, "kWh")
    assert st.public_dimensions == ()


def test_mobility_trip(catalogue: Catalogue) -> None:
    st = catalogue.get("mobility.trip")
    assert st.field_names == ("ts", "mode", "km", "minutes")
    assert st.field("mode").categories == tuple(MODES)
    assert (st.field("km").min, st.field("km").max) == (0, 100)
    assert (st.field("minutes").min, st.field("minutes").max) == (0, 240)
    assert [(d.name, list(d.domain)) for d in st.public_dimensions] == [("mode", MODES)]


def test_noise_exposure(catalogue: Catalogue) -> None:
    db = catalogue.get("noise.exposure").field("db")
    assert (db.type, db.min, db.max, db.unit) == ("float", 30, 130, "dB(A)")


def test_survey_response(catalogue: Catalogue) -> None:
    st = catalogue.get("survey.response")
    assert st.field("question").categories == tuple(QUESTIONS)
    assert dict(st.field("question").category_labels).keys() == set(QUESTIONS)
    answer = st.field("answer")
    assert (answer.type, answer.min, answer.max) == ("int", 1, 5)
    assert [(d.name, list(d.domain)) for d in st.public_dimensions] == [("question", QUESTIONS)]


def test_profile_dimensions(catalogue: Catalogue) -> None:
    st = catalogue.get("profile")
    assert st.field("district").categories == tuple(DISTRICTS)
    assert st.field("age_band").categories == tuple(AGE_BANDS)
    size = st.field("household_size")
    assert (size.type, size.min, size.max, size.public_dimension) == ("int", 1, 8, False)
    assert [(d.name, list(d.domain)) for d in st.public_dimensions] == [
        ("district", DISTRICTS),
        ("age_band", AGE_BANDS),
    ]


def test_statistics_follow_the_bounds(catalogue: Catalogue) -> None:
    for st in catalogue.stream_types:
        for spec in st.fields:
            assert "count" in spec.statistics
            if spec.is_bounded:
                assert list(spec.statistics) == BOUNDED, (st.name, spec.name)
            else:
                assert spec.statistics == ("count",), (st.name, spec.name)


def test_public_dimensions_are_exactly_the_marked_category_fields(catalogue: Catalogue) -> None:
    for st in catalogue.stream_types:
        marked = [(s.name, s.categories) for s in st.fields if s.public_dimension]
        assert [(d.name, d.domain) for d in st.public_dimensions] == marked


def test_polars_schema(catalogue: Catalogue) -> None:
    assert catalogue.get("mobility.trip").polars_schema() == pl.Schema(
        [
            ("ts", pl.Datetime("us", "UTC")),
            ("mode", pl.String()),
            ("km", pl.Float64()),
            ("minutes", pl.Float64()),
        ]
    )
    assert catalogue.get("survey.response").polars_schema()["answer"] == pl.Int64


# --------------------------------------------------------------------------------------------------
# Lookups, caching, the public form
# --------------------------------------------------------------------------------------------------


def test_unknown_stream_type_names_it_and_lists_the_known(catalogue: Catalogue) -> None:
    with pytest.raises(NotFound) as caught:
        catalogue.get("weather.rain")
    assert "'weather.rain'" in caught.value.message
    for name in catalogue.names:
        assert name in caught.value.message


def test_unknown_field_names_it_and_lists_the_known(catalogue: Catalogue) -> None:
    with pytest.raises(NotFound) as caught:
        catalogue.get("energy.consumption").field("watts")
    assert "'watts'" in caught.value.message and "ts, kwh" in caught.value.message


def test_default_catalogue_is_loaded_once() -> None:
    assert default_catalogue() is default_catalogue()
    assert default_catalogue() == Catalogue.load()


def test_public_dict_is_json_and_complete(catalogue: Catalogue) -> None:
    public = json.loads(json.dumps(catalogue.to_public_dict()))
    assert [st["name"] for st in public["stream_types"]] == list(catalogue.names)
    trip = next(st for st in public["stream_types"] if st["name"] == "mobility.trip")
    km = next(f for f in trip["fields"] if f["name"] == "km")
    assert km == {
        "name": "km",
        "type": "float",
        "unit": "km",
        "required": True,
        "description": km["description"],
        "min": 0,
        "max": 100,
        "categories": None,
        "category_labels": None,
        "public_dimension": False,
        "statistics": BOUNDED,
    }
    mode = next(f for f in trip["fields"] if f["name"] == "mode")
    assert mode["categories"] == MODES and mode["public_dimension"] is True
    assert trip["dimensions"] == [{"name": "mode", "title": "Way of travelling", "domain": MODES}]
    # Every field of every stream type has the same keys.
    keys = {frozenset(f) for st in public["stream_types"] for f in st["fields"]}
    assert len(keys) == 1


def test_from_dict_of_the_shipped_data_equals_load() -> None:
    assert Catalogue.from_dict(raw_catalogue()) == Catalogue.load()


# --------------------------------------------------------------------------------------------------
# Checks on load
# --------------------------------------------------------------------------------------------------


def _set(path: list[Any], value: Any) -> Any:
    def change(data: dict[str, Any]) -> None:
        target: Any = data
        for key in path[:-1]:
            target = target[key]
        if value is _DELETE:
            del target[path[-1]]
        else:
            target[path[-1]] = value

    return change


_DELETE = object()
# Positions in the shipped data: stream type 1 is mobility.trip (fields ts, mode, km, minutes).
BROKEN: list[tuple[str, Any, str]] = [
    ("unknown field type", _set(["stream_types", 0, "fields", 1, "type"], "decimal"), "decimal"),
    ("min above max", _set(["stream_types", 0, "fields", 1, "min"], 60), "greater than max"),
    ("bool bound", _set(["stream_types", 0, "fields", 1, "max"], True), "must be a number"),
    ("infinite bound", _set(["stream_types", 0, "fields", 1, "max"], float("inf")), "finite"),
    ("fractional int bound", _set(["stream_types", 3, "fields", 2, "max"], 5.5), "whole number"),
    ("bounds on a category", _set(["stream_types", 1, "fields", 1, "min"], 0), "only allowed"),
    ("category without list", _set(["stream_types", 1, "fields", 1, "categories"], _DELETE), ""),
    ("empty category list", _set(["stream_types", 1, "fields", 1, "categories"], []), "non-empty"),
    (
        "repeated category",
        _set(["stream_types", 1, "fields", 1, "categories"], ["a", "a"]),
        "twice",
    ),
    ("categories on a float", _set(["stream_types", 1, "fields", 2, "categories"], ["a"]), "only"),
    ("public float", _set(["stream_types", 1, "fields", 2, "public_dimension"], True), "category"),
    (
        "dimension domain differs",
        _set(["stream_types", 1, "dimensions", 0, "domain"], ["walk"]),
        "",
    ),
    ("undeclared dimension", _set(["stream_types", 1, "dimensions"], []), "missing from"),
    ("dimension of a plain field", _set(["stream_types", 1, "dimensions", 0, "name"], "km"), ""),
    (
        "unknown statistic",
        _set(["stream_types", 1, "fields", 2, "statistics"], ["count", "max"]),
        "",
    ),
    ("no count", _set(["stream_types", 1, "fields", 2, "statistics"], ["sum"]), "include count"),
    (
        "sum of a category",
        _set(["stream_types", 1, "fields", 1, "statistics"], ["count", "sum"]),
        "",
    ),
    (
        "sum of an unbounded field",
        _set(["stream_types", 1, "fields", 2, "max"], None),
        "min and max",
    ),
    ("unknown field key", _set(["stream_types", 1, "fields", 2, "sensitive"], True), "sensitive"),
    ("unknown stream key", _set(["stream_types", 1, "owner"], "x"), "owner"),
    ("no ts", _set(["stream_types", 1, "fields", 0, "name"], "when"), "'ts'"),
    ("ts not a timestamp", _set(["stream_types", 1, "fields", 0, "type"], "string"), "'ts'"),
    ("repeated field", _set(["stream_types", 1, "fields", 3, "name"], "km"), "twice"),
    ("repeated stream type", _set(["stream_types", 1, "name"], "energy.consumption"), "twice"),
    ("bad stream name", _set(["stream_types", 1, "name"], "Mobility Trip"), "dotted"),
    ("bad field name", _set(["stream_types", 1, "fields", 2, "name"], "Km"), "lower-case"),
    ("bool schema version", _set(["stream_types", 1, "schema_version"], True), "schema_version"),
    ("blank title", _set(["stream_types", 1, "title"], " "), "title"),
    ("required not a bool", _set(["stream_types", 1, "fields", 2, "required"], "yes"), "true or"),
    ("wrong format version", _set(["format_version"], 2), "format_version"),
    ("no stream types", _set(["stream_types"], []), "non-empty"),
]


@pytest.mark.parametrize(("label", "change", "words"), BROKEN, ids=[b[0] for b in BROKEN])
def test_a_broken_catalogue_is_refused_with_a_clear_message(
    label: str, change: Any, words: str
) -> None:
    data = copy.deepcopy(raw_catalogue())
    change(data)
    with pytest.raises(CatalogueError) as caught:
        Catalogue.from_dict(data)
    assert words in str(caught.value)


def test_broken_json_is_refused() -> None:
    with pytest.raises(CatalogueError, match="not valid JSON"):
        Catalogue.from_json("{")


def test_stream_type_is_immutable_and_hashable(catalogue: Catalogue) -> None:
    st = catalogue.get("profile")
    assert isinstance(st, StreamType)
    assert hash(st) == hash(Catalogue.load().get("profile"))
    with pytest.raises(AttributeError):
        st.name = "other"  # type: ignore[misc]
