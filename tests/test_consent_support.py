"""Shared builders and Hypothesis strategies for the consent tests (and checks of the builders).

The consent package must not import the vault, and neither do these tests: the catalogue is read
from ``vault/catalogue/stream_types.json`` as plain JSON, exactly as a caller of consent would.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from consent.data_catalogue import STATISTICS, DataCatalogue
from consent.purposes import LEGAL_BASES, city_purposes
from consent.terms import ConsentTerms, Narrowing, parse_terms, validate_terms

REPO = Path(__file__).resolve().parent.parent
CATALOGUE_JSON: dict[str, Any] = json.loads(
    (REPO / "vault" / "catalogue" / "stream_types.json").read_text(encoding="utf-8")
)
CATALOGUE = DataCatalogue.from_catalogue_json(CATALOGUE_JSON)
NOW = datetime(2026, 6, 15, 10, 30, tzinfo=UTC)

DEPARTMENTS = ("energy", "mobility", "environment")
CLIENTS = ("meter-app", "trip-diary")
DIMENSIONS = ("age_band", "district", "mode", "question")
PERIODS = ("P1M", "P1W", "P1D", "P1Y", "PT12H", "P3M")
SHA = "ab" * 32

CONTROLLER: dict[str, Any] = {
    "id": "city-of-puerto-claro",
    "name": "City Council of Puerto Claro",
    "contact": "Data Protection Officer",
    "street_address": "Plaza Mayor 1",
    "locality": "Puerto Claro",
    "postal_code": "99001",
    "country": "ES",
    "email": "dpo@civic-vault.example",
    "phone": "+34 900 000 000",
    "url": "https://civic-vault.example/",
}


def base_terms_dict(**overrides: Any) -> dict[str, Any]:
    """A valid statistics-only terms dict (energy, monthly), with ``overrides`` on top."""
    data: dict[str, Any] = {
        "id": "terms-1",
        "version": 1,
        "subject": "c0ffee00",
        "controller": dict(CONTROLLER),
        "jurisdiction": "ES",
        "applicable_law": "eu-gdpr:GDPR",
        "purposes": [{"id": "energy-planning", "dpv_parent": "dpv:CombatClimateChange"}],
        "data_categories": [{"stream_type": "energy.consumption", "fields": ["ts", "kwh"]}],
        "recipients": [{"kind": "department", "id": "energy"}],
        "processing": {"mode": "dp_aggregate"},
        "statistics": ["count", "sum", "mean"],
        "dp_limits": {
            "epsilon_per_period": 1.0,
            "period": "P1M",
            "min_group_size": 100,
            "max_releases_per_period": 4,
        },
        "group_by": [],
        "validity": {"not_before": NOW, "not_after": NOW + timedelta(days=365)},
        "notice": {
            "url": "https://civic-vault.example/notices/energy/1",
            "version": "1",
            "sha256": SHA,
        },
        "withdrawal": {
            "url": "https://civic-vault.example/me/consents",
            "instructions": "Open My consents and choose Stop.",
        },
    }
    data.update(overrides)
    return data


def base_terms(**overrides: Any) -> ConsentTerms:
    return parse_terms(base_terms_dict(**overrides))


def raw_terms(append: bool = False, **overrides: Any) -> ConsentTerms:
    """Raw access for the app ``meter-app``."""
    return base_terms(
        **{
            "processing": {"mode": "raw", "app": "meter-app", "append": append},
            "recipients": [{"kind": "client", "id": "meter-app"}],
            "statistics": [],
            "dp_limits": None,
            "group_by": [],
            **overrides,
        }
    )


ids = st.from_regex(r"[a-z0-9][a-z0-9-]{0,11}", fullmatch=True)


def subset(items: tuple[Any, ...] | list[Any], min_size: int = 0) -> st.SearchStrategy[list[Any]]:
    """Distinct elements of ``items`` (at least ``min_size``), in any order."""
    if not items:
        return st.just([])
    return st.lists(st.sampled_from(list(items)), min_size=min_size, unique=True)


@st.composite
def terms_strategy(draw: st.DrawFn, mode: str | None = None) -> ConsentTerms:
    """Random valid terms (any stream types, fields, purposes, recipients, limits, window)."""
    mode = mode or draw(st.sampled_from(["dp_aggregate", "dp_aggregate", "dp_aggregate", "raw"]))
    streams = draw(subset([s.name for s in CATALOGUE.streams], 1).map(lambda xs: xs[:3]))
    categories = []
    for name in streams:
        stream = CATALOGUE.stream(name)
        assert stream is not None
        categories.append({"stream_type": name, "fields": draw(subset(stream.field_names, 1))})
    purposes = [
        {
            "id": p.id,
            "dpv_parent": p.dpv_parent,
            "legal_basis": draw(st.sampled_from(sorted(LEGAL_BASES))),
        }
        for p in draw(subset(city_purposes().purposes, 1).map(lambda xs: xs[:3]))
    ]
    start = NOW + timedelta(minutes=draw(st.integers(-100_000, 100_000)))
    end = start + timedelta(seconds=draw(st.integers(1, 3 * 365 * 86400)))
    data = base_terms_dict(
        id=draw(ids),
        subject=draw(ids),
        purposes=purposes,
        data_categories=categories,
        validity={"not_before": start, "not_after": end},
    )
    if mode == "raw":
        app = draw(st.sampled_from(CLIENTS))
        data.update(
            processing={"mode": "raw", "app": app, "append": draw(st.booleans())},
            recipients=[{"kind": "client", "id": app}],
            statistics=[],
            dp_limits=None,
            group_by=[],
        )
    else:
        recipients = draw(
            subset([("department", d) for d in DEPARTMENTS] + [("client", c) for c in CLIENTS], 1)
        )
        data.update(
            recipients=[{"kind": k, "id": i} for k, i in recipients],
            statistics=draw(subset(STATISTICS, 1)),
            dp_limits={
                "epsilon_per_period": draw(
                    st.floats(0.01, 10, allow_nan=False, allow_infinity=False)
                ),
                "period": draw(st.sampled_from(PERIODS)),
                "min_group_size": draw(st.integers(1, 500)),
                "max_releases_per_period": draw(st.integers(1, 20)),
            },
            group_by=draw(subset(DIMENSIONS)),
        )
    if draw(st.booleans()):
        data["based_on"] = {"id": draw(ids), "version": draw(st.integers(1, 5))}
    if draw(st.integers(0, 4)) == 0:
        data["version"] = 2
        data["supersedes"] = {"id": data["id"], "version": 1, "digest": "sha256:" + SHA}
    return parse_terms(data)


@st.composite
def narrowing_strategy(draw: st.DrawFn, terms: ConsentTerms) -> Narrowing:
    """A narrowing that is at least as tight as ``terms`` everywhere it says something."""
    values: dict[str, Any] = {}
    limits = terms.dp_limits
    if limits is not None:
        if draw(st.booleans()):
            values["epsilon_per_period"] = draw(
                st.floats(1e-6, limits.epsilon_per_period, allow_nan=False)
            )
        if draw(st.booleans()):
            values["min_group_size"] = draw(st.integers(limits.min_group_size, 1000))
        if draw(st.booleans()):
            values["max_releases_per_period"] = draw(st.integers(1, limits.max_releases_per_period))
        if draw(st.booleans()):
            values["statistics"] = tuple(draw(subset(terms.statistics, 1)))
        if draw(st.booleans()):
            values["group_by"] = tuple(draw(subset(terms.group_by)))
    span = int((terms.validity.not_after - terms.validity.not_before).total_seconds())
    if draw(st.booleans()):
        values["not_before"] = terms.validity.not_before + timedelta(
            seconds=draw(st.integers(0, span - 1))
        )
    if draw(st.booleans()):
        values["not_after"] = terms.validity.not_after - timedelta(
            seconds=draw(st.integers(0, span - 1))
        )
    if draw(st.booleans()):
        cats = draw(subset(terms.data_categories, 1))
        values["data_categories"] = tuple(
            {"stream_type": c.stream_type, "fields": draw(subset(c.fields, 1))} for c in cats
        )
    if draw(st.booleans()):
        values["purposes"] = tuple(draw(subset(terms.purpose_ids, 1)))
    if draw(st.booleans()) and terms.processing.mode == "dp_aggregate":
        values["recipients"] = tuple(r.model_dump() for r in draw(subset(terms.recipients, 1)))
    return Narrowing.model_validate(values)


# --------------------------------------------------------------------------------------------------
# The builders themselves
# --------------------------------------------------------------------------------------------------


def test_base_terms_are_valid_against_the_catalogue() -> None:
    validate_terms(base_terms(), CATALOGUE)
    validate_terms(raw_terms(append=True), CATALOGUE)


@settings(max_examples=40, deadline=None)
@given(terms_strategy())
def test_generated_terms_are_self_consistent(terms: ConsentTerms) -> None:
    assert terms.recipients and terms.data_categories and terms.purposes
    assert terms.validity.not_before < terms.validity.not_after
