"""Consent terms: model, validation (every problem names its field), durations, canonical form,
signatures and their security properties, status, narrowing, data requests, purity."""

from __future__ import annotations

import ast
import base64
import json
import math
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import nacl.signing
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from consent.canonical import canonical_json
from consent.data_catalogue import CatalogueDataError, DataCatalogue
from consent.durations import Duration, normalise_duration, parse_duration
from consent.errors import NarrowingRefused, SignatureInvalid, TermsInvalid
from consent.purposes import city_purposes
from consent.request_templates import energy_request, shipped_requests
from consent.signing import (
    SignatureMemo,
    SignedEvent,
    SignedTerms,
    give,
    key_id_for,
    renew,
    sign_event,
    sign_terms,
    verify_event,
    verify_signed_terms,
    withdraw,
)
from consent.terms import (
    ConsentEvent,
    ConsentTerms,
    Narrowing,
    apply_narrowing,
    consent_status,
    narrowed_successor,
    parse_terms,
    terms_digest,
    validate_request,
    validate_terms,
)
from tests.test_consent_support import (
    CATALOGUE,
    CATALOGUE_JSON,
    NOW,
    REPO,
    base_terms,
    base_terms_dict,
    raw_terms,
    terms_strategy,
)

KEY = nacl.signing.SigningKey(bytes(range(32)))
OTHER_KEY = nacl.signing.SigningKey(bytes(range(1, 33)))
PUBLIC = bytes(KEY.verify_key)


def fields_of(exc: TermsInvalid | NarrowingRefused) -> list[str]:
    return [p["field"] for p in exc.problems]


# --------------------------------------------------------------------------------------------------
# The model and its validation
# --------------------------------------------------------------------------------------------------


def test_terms_are_frozen_and_sets_are_stored_sorted() -> None:
    terms = base_terms(statistics=["mean", "count"], group_by=[])
    assert terms.statistics == ("count", "mean")
    assert terms.data_categories[0].fields == ("kwh", "ts")
    with pytest.raises(ValidationError):
        terms.version = 2  # type: ignore[misc]
    assert terms.schema_iri == "https://civic-vault.example/schemas/consent-terms/1"
    assert terms.signable_dict()["schema"] == terms.schema_iri


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        (
            {"validity": {"not_before": NOW, "not_after": NOW - timedelta(days=1)}},
            "validity.not_after",
        ),
        (
            {
                "dp_limits": {
                    "epsilon_per_period": 0,
                    "period": "P1M",
                    "min_group_size": 1,
                    "max_releases_per_period": 1,
                }
            },
            "dp_limits.epsilon_per_period",
        ),
        (
            {
                "dp_limits": {
                    "epsilon_per_period": -1.5,
                    "period": "P1M",
                    "min_group_size": 1,
                    "max_releases_per_period": 1,
                }
            },
            "dp_limits.epsilon_per_period",
        ),
        (
            {
                "dp_limits": {
                    "epsilon_per_period": math.nan,
                    "period": "P1M",
                    "min_group_size": 1,
                    "max_releases_per_period": 1,
                }
            },
            "dp_limits.epsilon_per_period",
        ),
        (
            {
                "dp_limits": {
                    "epsilon_per_period": 1,
                    "period": "monthly",
                    "min_group_size": 1,
                    "max_releases_per_period": 1,
                }
            },
            "dp_limits.period",
        ),
        (
            {
                "dp_limits": {
                    "epsilon_per_period": 1,
                    "period": "P1M",
                    "min_group_size": 0,
                    "max_releases_per_period": 1,
                }
            },
            "dp_limits.min_group_size",
        ),
        (
            {
                "dp_limits": {
                    "epsilon_per_period": 1,
                    "period": "P1M",
                    "min_group_size": 1,
                    "max_releases_per_period": 0,
                }
            },
            "dp_limits.max_releases_per_period",
        ),
        ({"dp_limits": None}, "dp_limits"),
        ({"statistics": []}, "statistics"),
        ({"subject": "maria@example.com"}, "subject"),
        ({"id": ""}, "id"),
        ({"purposes": []}, "purposes"),
        (
            {
                "purposes": [
                    {"id": "energy-planning", "dpv_parent": "dpv:X", "legal_basis": "vibes"}
                ]
            },
            "purposes.0.legal_basis",
        ),
        ({"data_categories": []}, "data_categories"),
        (
            {"data_categories": [{"stream_type": "energy.consumption", "fields": []}]},
            "data_categories.0.fields",
        ),
        ({"recipients": []}, "recipients"),
        ({"processing": {"mode": "dp_aggregate", "app": "meter-app"}}, "processing.app"),
        ({"processing": {"mode": "dp_aggregate", "append": True}}, "processing.append"),
        (
            {"processing": {"mode": "raw"}, "statistics": [], "dp_limits": None},
            "processing.app",
        ),
        ({"version": 2}, "supersedes"),
        (
            {"notice": {"url": "http://x.example/n", "version": "1", "sha256": "ab" * 32}},
            "notice.url",
        ),
        (
            {"notice": {"url": "https://x.example/n", "version": "1", "sha256": "xyz"}},
            "notice.sha256",
        ),
        ({"withdrawal": {"url": "mailto:dpo@x", "instructions": "write"}}, "withdrawal.url"),
        ({"jurisdiction": "Spain"}, "jurisdiction"),
        ({"statistics": ["count", "count"]}, "statistics.1"),
        ({"group_by": ["District!"]}, "group_by.0"),
    ],
)
def test_contradictions_name_the_field(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(TermsInvalid) as caught:
        base_terms(**overrides)
    assert caught.value.code == "terms_invalid"
    assert field in fields_of(caught.value), caught.value.problems
    assert all(p["reason"] for p in caught.value.problems)


def test_every_problem_is_listed_at_once() -> None:
    with pytest.raises(TermsInvalid) as caught:
        base_terms(
            validity={"not_before": NOW, "not_after": NOW},
            dp_limits={
                "epsilon_per_period": -1,
                "period": "P1M",
                "min_group_size": 1,
                "max_releases_per_period": 1,
            },
            subject="not an id",
        )
    assert {"validity.not_after", "dp_limits.epsilon_per_period", "subject"} <= set(
        fields_of(caught.value)
    )


def test_structural_problems_are_terms_invalid_with_paths() -> None:
    data = base_terms_dict()
    data["dp_limits"] = {**data["dp_limits"], "epsilon_per_period": "lots"}
    data["validity"] = {"not_before": "2026-01-01T00:00:00", "not_after": NOW}  # naive time
    data["statistics"] = ["count", "median"]
    with pytest.raises(TermsInvalid) as caught:
        parse_terms(data)
    got = fields_of(caught.value)
    assert "dp_limits.epsilon_per_period" in got
    assert "validity.not_before" in got
    assert "statistics.1" in got


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        (
            {"data_categories": [{"stream_type": "energy.gas", "fields": ["ts"]}]},
            "data_categories.0.stream_type",
        ),
        (
            {"data_categories": [{"stream_type": "energy.consumption", "fields": ["ts", "watts"]}]},
            "data_categories.0.fields.1",
        ),
        (
            {"purposes": [{"id": "marketing", "dpv_parent": "dpv:Marketing"}]},
            "purposes.0.id",
        ),
        (
            {"purposes": [{"id": "energy-planning", "dpv_parent": "dpv:Marketing"}]},
            "purposes.0.dpv_parent",
        ),
        (
            # "sum" on the timestamp alone: the stream cannot support it on these fields
            {
                "data_categories": [{"stream_type": "energy.consumption", "fields": ["ts"]}],
                "statistics": ["count", "sum"],
            },
            "statistics.1",
        ),
        ({"group_by": ["household_size"]}, "group_by.0"),
    ],
)
def test_catalogue_problems_name_the_field(overrides: dict[str, Any], field: str) -> None:
    terms = base_terms(**overrides)
    with pytest.raises(TermsInvalid) as caught:
        validate_terms(terms, CATALOGUE)
    assert field in fields_of(caught.value), caught.value.problems


def test_catalogue_lists_every_unknown_at_once() -> None:
    terms = base_terms(
        data_categories=[
            {"stream_type": "energy.gas", "fields": ["ts"]},
            {"stream_type": "noise.exposure", "fields": ["ts", "decibels"]},
        ],
        statistics=["count"],
        group_by=["household_size", "district"],
    )
    with pytest.raises(TermsInvalid) as caught:
        validate_terms(terms, CATALOGUE)
    assert set(fields_of(caught.value)) == {
        "data_categories.0.stream_type",
        "data_categories.1.fields.0",
        "group_by.1",
    }


def test_catalogue_reads_the_vault_catalogue_structure() -> None:
    energy = CATALOGUE.stream("energy.consumption")
    assert energy is not None and energy.field_names == ("ts", "kwh")
    kwh = energy.field("kwh")
    assert kwh is not None and "histogram" in kwh.statistics
    district = CATALOGUE.dimension("district")
    assert district is not None and district.stream_type == "profile"
    assert CATALOGUE.dimension("household_size") is None
    with pytest.raises(CatalogueDataError):
        DataCatalogue.from_catalogue_json({"stream_types": "nope"})
    doubled = json.loads(json.dumps(CATALOGUE_JSON))
    doubled["stream_types"][0]["dimensions"] = [{"name": "district", "title": "x", "domain": []}]
    with pytest.raises(CatalogueDataError, match="district"):
        DataCatalogue.from_catalogue_json(doubled)


def test_purpose_vocabulary_links_each_purpose_to_a_dpv_parent() -> None:
    vocabulary = city_purposes()
    assert {"energy-planning", "mobility-planning", "noise-mapping", "service-quality"} <= set(
        vocabulary.ids
    )
    for purpose in vocabulary.purposes:
        assert purpose.dpv_parent.startswith("dpv:")
        assert (
            purpose.text("en") and purpose.text("es") and purpose.text("en") != purpose.text("es")
        )


# --------------------------------------------------------------------------------------------------
# Durations
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "normal"),
    [
        ("P1M", "P1M"),
        ("P2W", "P14D"),
        ("P1Y6M", "P1Y6M"),
        ("PT12H", "PT12H"),
        ("P1DT30M", "P1DT30M"),
    ],
)
def test_durations_normalise(text: str, normal: str) -> None:
    assert normalise_duration(text) == normal


@pytest.mark.parametrize(
    "text", ["", "P", "PT", "1M", "P1.5M", "P0D", "PT0S", "P1M2Y", "p1m", "P1MT"]
)
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_adding_months_clamps_to_the_end_of_the_month() -> None:
    jan31 = datetime(2027, 1, 31, 12, tzinfo=UTC)
    assert parse_duration("P1M").add_to(jan31) == datetime(2027, 2, 28, 12, tzinfo=UTC)
    assert parse_duration("P1Y1M").add_to(jan31) == datetime(2028, 2, 29, 12, tzinfo=UTC)
    assert parse_duration("P1W").add_to(jan31) == datetime(2027, 2, 7, 12, tzinfo=UTC)
    with pytest.raises(ValueError):
        parse_duration("P9999Y").add_to(jan31)


@settings(max_examples=60, deadline=None)
@given(
    st.builds(
        Duration,
        years=st.integers(0, 30),
        months=st.integers(0, 30),
        days=st.integers(0, 400),
        hours=st.integers(0, 48),
        minutes=st.integers(0, 90),
        seconds=st.integers(0, 90),
    ).filter(lambda d: d != Duration())
)
def test_normalised_durations_parse_back_to_themselves(duration: Duration) -> None:
    assert parse_duration(duration.iso()) == duration


# --------------------------------------------------------------------------------------------------
# Canonical JSON of terms
# --------------------------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(terms_strategy(), st.randoms(use_true_random=False))
def test_canonical_json_of_terms_is_deterministic(terms: Any, rnd: random.Random) -> None:
    body = canonical_json(terms.signable_dict())
    assert canonical_json(terms.signable_dict()) == body
    # Through JSON text and back: the same bytes.
    again = parse_terms(json.loads(json.dumps(terms.signable_dict())))
    assert again == terms and canonical_json(again.signable_dict()) == body
    # Set-like lists in another order, keys in another order: the same bytes.
    data = terms.signable_dict()
    for key in ("statistics", "group_by", "recipients", "purposes", "data_categories"):
        rnd.shuffle(data[key])
    for category in data["data_categories"]:
        rnd.shuffle(category["fields"])
    shuffled = dict(reversed(list(data.items())))
    assert canonical_json(parse_terms(shuffled).signable_dict()) == body


# --------------------------------------------------------------------------------------------------
# Signatures
# --------------------------------------------------------------------------------------------------


def _leaf_paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _leaf_paths(v, (*prefix, k))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _leaf_paths(v, (*prefix, i))] or [prefix]
    return [prefix]


def _changed(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value / 2
    if isinstance(value, str):
        return value + "x"
    if isinstance(value, list):
        return [*value, "extra"]
    return "something"  # None


FULL_TERMS = base_terms(
    version=2,
    supersedes={"id": "terms-1", "version": 1, "digest": "sha256:" + "cd" * 32},
    based_on={"id": "energy-monthly-totals", "version": 1},
    group_by=["district"],
    recipients=[{"kind": "department", "id": "energy"}, {"kind": "client", "id": "meter-app"}],
)
SIGNED = sign_terms(FULL_TERMS, KEY)
LEAVES = _leaf_paths(FULL_TERMS.signable_dict())


def test_signature_verifies_and_names_the_key() -> None:
    verified = verify_signed_terms(SIGNED, PUBLIC, NOW + timedelta(days=1))
    assert verified.terms == FULL_TERMS and verified.status == "given"
    assert SIGNED.key_id == key_id_for(PUBLIC) == verified.key_id and len(SIGNED.key_id) == 16
    assert base64.b64decode(SIGNED.public_key) == PUBLIC
    assert SIGNED.signed_message() == canonical_json(FULL_TERMS.signable_dict())


@settings(max_examples=80, deadline=None)
@given(st.sampled_from(LEAVES))
def test_changing_any_field_breaks_the_signature(path: tuple[Any, ...]) -> None:
    data = FULL_TERMS.signable_dict()
    parent = data
    for part in path[:-1]:
        parent = parent[part]
    parent[path[-1]] = _changed(parent[path[-1]])
    message = canonical_json(data)
    assert message != SIGNED.signed_message()
    signature = base64.b64decode(SIGNED.signature)
    with pytest.raises(nacl.exceptions.BadSignatureError):
        KEY.verify_key.verify(message, signature)
    try:
        tampered = parse_terms(data)
    except TermsInvalid:
        return  # such terms cannot even be built; the bytes check above still ran
    forged = SignedTerms.model_validate({**SIGNED.model_dump(), "terms": tampered})
    with pytest.raises(SignatureInvalid) as caught:
        verify_signed_terms(forged, PUBLIC, NOW + timedelta(days=1))
    assert caught.value.reason == "bad_signature"


@given(
    terms_strategy(),
    st.sampled_from(["given", "renewed", "withdrawn", "expired"]),
    st.randoms(use_true_random=False),
)
def test_terms_read_from_their_signed_bytes_are_the_same_terms(
    terms: Any, kind: Any, rnd: random.Random
) -> None:
    """``from_signed_json`` keeps the bytes it read as the signed bytes: for every text our
    signers produce, reading it gives the same values, whose own encoding is that text again."""
    body = terms.signable_bytes
    read = ConsentTerms.from_signed_json(body.decode("utf-8"))
    assert read == terms and read.signable_bytes == body == canonical_json(read.signable_dict())
    assert terms_digest(read) == terms_digest(terms)
    event = ConsentEvent.for_terms(terms, kind, NOW + timedelta(seconds=rnd.randrange(10**6)))
    read_event = ConsentEvent.from_signed_json(event.signable_bytes)
    assert read_event == event and read_event.signable_bytes == event.signable_bytes
    assert canonical_json(read_event.signable_dict()) == event.signable_bytes


def test_a_signature_is_checked_over_the_bytes_the_terms_were_read_from() -> None:
    """The same values in other bytes (white space) are other signed bytes: refused."""
    stored = SIGNED.signed_message()
    good = SIGNED.model_copy(update={"terms": ConsentTerms.from_signed_json(stored)})
    assert verify_signed_terms(good, PUBLIC, NOW + timedelta(days=1)).terms == FULL_TERMS
    respaced = json.dumps(json.loads(stored), indent=1)
    terms = ConsentTerms.from_signed_json(respaced)
    assert terms == FULL_TERMS and terms.signable_bytes == respaced.encode()
    forged = SIGNED.model_copy(update={"terms": terms})
    with pytest.raises(SignatureInvalid) as caught:
        verify_signed_terms(forged, PUBLIC, NOW + timedelta(days=1))
    assert caught.value.reason == "bad_signature"
    with pytest.raises(ValueError):
        ConsentTerms.from_signed_json(b'{"id": "x"}')


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["good", "flipped", "other_message", "other_key", "short_key"]),
            st.binary(max_size=64),
        ),
        max_size=12,
    )
)
def test_verifying_ahead_remembers_exactly_the_triples_that_verify(
    cases: list[tuple[str, bytes]],
) -> None:
    memo = SignatureMemo()
    triples = []
    for kind, message in cases:
        public, signature = PUBLIC, KEY.sign(message).signature
        if kind == "flipped":
            signature = signature[:-1] + bytes([signature[-1] ^ 1])
        elif kind == "other_message":
            message += b"!"
        elif kind == "other_key":
            public = bytes(OTHER_KEY.verify_key)
        elif kind == "short_key":
            public = public[:31]
        triples.append((kind, (public, bytes(signature), message)))
    memo.verify_ahead(t for _, t in triples)
    for kind, triple in triples:
        assert (memo.key(*triple) in memo) == (kind == "good"), kind


def test_wrong_key_is_refused_even_when_the_signature_is_good() -> None:
    by_other = sign_terms(FULL_TERMS, OTHER_KEY)
    with pytest.raises(SignatureInvalid) as caught:
        verify_signed_terms(by_other, PUBLIC, NOW + timedelta(days=1))
    assert caught.value.reason == "wrong_key"
    swapped = SignedTerms.model_validate(
        {**SIGNED.model_dump(), "public_key": by_other.public_key, "key_id": by_other.key_id}
    )
    with pytest.raises(SignatureInvalid) as caught:
        verify_signed_terms(swapped, bytes(OTHER_KEY.verify_key), NOW + timedelta(days=1))
    assert caught.value.reason == "bad_signature"
    bad_id = SignedTerms.model_validate({**SIGNED.model_dump(), "key_id": "0" * 16})
    with pytest.raises(SignatureInvalid) as caught:
        verify_signed_terms(bad_id, PUBLIC, NOW + timedelta(days=1))
    assert caught.value.reason == "bad_key_id"
    garbled = SignedTerms.model_validate({**SIGNED.model_dump(), "signature": "not base64!"})
    with pytest.raises(SignatureInvalid) as caught:
        verify_signed_terms(garbled, PUBLIC, NOW + timedelta(days=1))
    assert caught.value.reason == "malformed"


@pytest.mark.parametrize(
    ("when", "reason"),
    [
        (NOW - timedelta(seconds=1), "not_yet_valid"),
        (NOW + timedelta(days=365), "expired"),
        (NOW + timedelta(days=3650), "expired"),
    ],
)
def test_outside_the_validity_window_is_refused(when: datetime, reason: str) -> None:
    with pytest.raises(SignatureInvalid) as caught:
        verify_signed_terms(SIGNED, PUBLIC, when)
    assert caught.value.reason == reason
    verify_signed_terms(SIGNED, PUBLIC, NOW)  # the first instant is inside
    verify_signed_terms(SIGNED, PUBLIC, NOW + timedelta(days=365) - timedelta(microseconds=1))


def test_withdrawal_is_one_call_and_then_verification_refuses() -> None:
    terms = base_terms()
    signed, given_event = give(terms, KEY, NOW)
    later = NOW + timedelta(days=2)
    assert verify_signed_terms(signed, PUBLIC, later, [given_event]).status == "given"
    withdrawn = withdraw(terms, KEY, NOW + timedelta(days=1))
    with pytest.raises(SignatureInvalid) as caught:
        verify_signed_terms(signed, PUBLIC, later, [given_event, withdrawn])
    assert caught.value.reason == "withdrawn"


def test_events_must_verify_under_the_subject_key() -> None:
    terms = base_terms()
    signed = sign_terms(terms, KEY)
    forged = sign_event(ConsentEvent.for_terms(terms, "renewed", NOW), OTHER_KEY)
    with pytest.raises(SignatureInvalid) as caught:
        verify_signed_terms(signed, PUBLIC, NOW + timedelta(days=1), [forged])
    assert caught.value.reason == "bad_event"
    unsigned_renewal = forged.model_copy(update={"signature": None})
    with pytest.raises(SignatureInvalid):
        verify_event(unsigned_renewal, PUBLIC)
    # An unsigned "expired" is accepted: it can only restrict.
    expired = ConsentEvent.for_terms(terms, "expired", NOW)
    assert verify_event(SignedEvent(event=expired), PUBLIC) == expired
    with pytest.raises(SignatureInvalid) as caught:
        verify_signed_terms(signed, PUBLIC, NOW + timedelta(days=1), [SignedEvent(event=expired)])
    assert caught.value.reason == "expired"
    # Events about other consents are not about these terms.
    other = sign_event(ConsentEvent.for_terms(base_terms(id="other"), "withdrawn", NOW), OTHER_KEY)
    assert verify_signed_terms(signed, PUBLIC, NOW + timedelta(days=1), [other]).status == "given"


def test_a_later_version_supersedes_the_earlier_one() -> None:
    v1 = base_terms()
    v2 = narrowed_successor(v1, Narrowing(epsilon_per_period=0.5))
    assert v2.version == 2 and v2.supersedes == v1.ref
    assert v2.supersedes is not None and v2.supersedes.digest == terms_digest(v1)
    signed_v1, given_v1 = give(v1, KEY, NOW)
    signed_v2, given_v2 = give(v2, KEY, NOW + timedelta(hours=1))
    later = NOW + timedelta(days=1)
    with pytest.raises(SignatureInvalid) as caught:
        verify_signed_terms(signed_v1, PUBLIC, later, [given_v1, given_v2])
    assert caught.value.reason == "superseded"
    assert verify_signed_terms(signed_v2, PUBLIC, later, [given_v1, given_v2]).status == "given"


def test_status_rules() -> None:
    terms = base_terms()
    inside = NOW + timedelta(days=1)

    def event(kind: Any, **extra: Any) -> ConsentEvent:
        return ConsentEvent.for_terms(terms, kind, NOW).model_copy(update=extra)

    assert consent_status(terms, [], inside) == "given"
    assert consent_status(terms, [event("renewed")], inside) == "renewed"
    assert (
        consent_status(terms, [event("renewed", terms_digest="sha256:" + "0" * 64)], inside)
        == "given"
    )
    assert consent_status(terms, [event("given"), event("withdrawn")], inside) == "withdrawn"
    # a withdrawal counts whatever its digest or time: fail closed
    assert (
        consent_status(
            terms, [event("withdrawn", terms_digest="x", at=NOW + timedelta(days=9))], inside
        )
        == "withdrawn"
    )
    assert consent_status(terms, [], NOW + timedelta(days=365)) == "expired"
    assert consent_status(terms, [event("expired")], inside) == "expired"
    assert consent_status(terms, [event("given", terms_version=2)], inside) == "superseded"
    signed = sign_terms(terms, KEY)
    assert verify_signed_terms(signed, PUBLIC, inside, [renew(terms, KEY, NOW)]).status == "renewed"


# --------------------------------------------------------------------------------------------------
# Narrowing
# --------------------------------------------------------------------------------------------------


def test_a_narrowing_narrows() -> None:
    terms = base_terms(group_by=["district", "age_band"])
    narrowed = apply_narrowing(
        terms,
        Narrowing(
            epsilon_per_period=0.25,
            min_group_size=200,
            max_releases_per_period=1,
            not_after=NOW + timedelta(days=30),
            data_categories=({"stream_type": "energy.consumption", "fields": ("kwh",)},),
            statistics=("sum",),
            group_by=("district",),
        ),
    )
    assert narrowed.dp_limits is not None
    assert narrowed.dp_limits.epsilon_per_period == 0.25
    assert narrowed.dp_limits.min_group_size == 200
    assert narrowed.dp_limits.max_releases_per_period == 1
    assert narrowed.validity.not_after == NOW + timedelta(days=30)
    assert narrowed.data_categories[0].fields == ("kwh",)
    assert narrowed.statistics == ("sum",) and narrowed.group_by == ("district",)
    assert (narrowed.id, narrowed.version) == (terms.id, terms.version)


@pytest.mark.parametrize(
    ("narrowing", "field"),
    [
        ({"epsilon_per_period": 2.0}, "dp_limits.epsilon_per_period"),
        ({"epsilon_per_period": math.nan}, "dp_limits.epsilon_per_period"),
        ({"min_group_size": 10}, "dp_limits.min_group_size"),
        ({"max_releases_per_period": 5}, "dp_limits.max_releases_per_period"),
        ({"not_after": NOW + timedelta(days=400)}, "validity.not_after"),
        ({"not_before": NOW - timedelta(days=1)}, "validity.not_before"),
        (
            {"data_categories": [{"stream_type": "mobility.trip", "fields": ["km"]}]},
            "data_categories.0.stream_type",
        ),
        (
            {"data_categories": [{"stream_type": "energy.consumption", "fields": ["kwh", "cost"]}]},
            "data_categories.0.fields.0",
        ),
        ({"statistics": ["count", "histogram"]}, "statistics.1"),
        ({"group_by": ["district"]}, "group_by.0"),
        ({"purposes": ["mobility-planning"]}, "purposes.0"),
        ({"recipients": [{"kind": "department", "id": "police"}]}, "recipients.0"),
    ],
)
def test_a_wider_narrowing_is_refused_naming_the_field(
    narrowing: dict[str, Any], field: str
) -> None:
    with pytest.raises(NarrowingRefused) as caught:
        apply_narrowing(base_terms(), Narrowing.model_validate(narrowing))
    assert caught.value.code == "narrowing_refused"
    assert field in fields_of(caught.value), caught.value.problems


def test_every_widened_field_is_named_at_once() -> None:
    with pytest.raises(NarrowingRefused) as caught:
        apply_narrowing(
            base_terms(),
            Narrowing(
                epsilon_per_period=5, not_after=NOW + timedelta(days=999), group_by=("mode",)
            ),
        )
    assert set(fields_of(caught.value)) == {
        "dp_limits.epsilon_per_period",
        "validity.not_after",
        "group_by.0",
    }


def test_narrowing_raw_terms_cannot_invent_limits_and_cannot_empty_them() -> None:
    with pytest.raises(NarrowingRefused) as caught:
        apply_narrowing(raw_terms(), Narrowing(epsilon_per_period=0.1))
    assert fields_of(caught.value) == ["dp_limits.epsilon_per_period"]
    with pytest.raises(TermsInvalid) as invalid:
        apply_narrowing(base_terms(), Narrowing(not_after=NOW))
    assert "validity.not_after" in fields_of(invalid.value)


# --------------------------------------------------------------------------------------------------
# Data requests
# --------------------------------------------------------------------------------------------------


def test_shipped_requests_are_valid_and_build_valid_terms() -> None:
    for request in shipped_requests(NOW):
        validate_request(request, CATALOGUE)
        terms = request.terms_for("c0ffee00", NOW + timedelta(microseconds=123))
        validate_terms(terms, CATALOGUE)
        assert terms.validity.not_before == NOW  # whole seconds
        assert terms.based_on is not None and terms.based_on.id == request.id
        assert terms.recipients[0].id == request.department
        # deterministic ids: the same acceptance gives the same terms
        assert request.terms_for("c0ffee00", NOW) == terms


def test_terms_for_applies_a_narrowing_and_refuses_a_wider_one() -> None:
    request = energy_request(NOW)
    narrowed = request.terms_for(
        "c0ffee00", NOW, Narrowing(epsilon_per_period=0.5, not_after=NOW + timedelta(days=90))
    )
    assert narrowed.dp_limits is not None and narrowed.dp_limits.epsilon_per_period == 0.5
    assert narrowed.validity.not_after == NOW + timedelta(days=90)
    with pytest.raises(NarrowingRefused) as caught:
        request.terms_for("c0ffee00", NOW, Narrowing(epsilon_per_period=3))
    assert fields_of(caught.value) == ["dp_limits.epsilon_per_period"]
    renewal = request.terms_for("c0ffee00", NOW + timedelta(days=300), supersedes=narrowed)
    assert renewal.version == 2 and renewal.id == narrowed.id and renewal.supersedes == narrowed.ref


def test_bad_requests_name_the_field() -> None:
    data = energy_request(NOW).model_dump()
    data["duration"] = "a year"
    data["dp_limits"]["epsilon_per_period"] = 0
    with pytest.raises(TermsInvalid) as caught:
        type(energy_request(NOW)).model_validate(data)
    assert {"duration", "dp_limits.epsilon_per_period"} <= set(fields_of(caught.value))
    data = energy_request(NOW).model_dump()
    data["data_categories"] = [{"stream_type": "energy.consumption", "fields": ["kwh", "cost"]}]
    data["purpose"] = "marketing"
    request = type(energy_request(NOW)).model_validate(data)
    with pytest.raises(TermsInvalid) as caught:
        validate_request(request, CATALOGUE)
    assert set(fields_of(caught.value)) == {"data_categories.0.fields.0", "purpose"}


# --------------------------------------------------------------------------------------------------
# Purity: no I/O in the consent package
# --------------------------------------------------------------------------------------------------

_FORBIDDEN_MODULES = {"os", "io", "socket", "subprocess", "pathlib", "shutil", "urllib", "http", "httpx", "requests", "sqlite3", "tempfile", "random", "secrets", "time"}  # fmt: skip
_FORBIDDEN_CALLS = {"open", "input", "print", "exec", "eval", "__import__"}


def test_the_consent_package_does_no_io() -> None:
    found: list[str] = []
    for path in sorted((REPO / "consent").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                if name.split(".")[0] in _FORBIDDEN_MODULES:
                    found.append(f"{path.name}: imports {name}")
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in _FORBIDDEN_CALLS
            ):
                found.append(f"{path.name}:{node.lineno}: calls {node.func.id}()")
            if isinstance(node, ast.Attribute) and node.attr in {
                "environ",
                "getenv",
                "now",
                "today",
                "utcnow",
                "uuid4",
                "urandom",
            }:
                found.append(f"{path.name}:{node.lineno}: uses .{node.attr}")
    assert not found, found
    assert Path(REPO / "consent" / "canonical.py").exists()


def test_the_remembered_signed_bytes_follow_every_copy() -> None:
    """``signable_bytes`` is computed once per terms object; a copy with other values must never
    carry the original's bytes (a digest or signature over stale bytes would bind other terms)."""
    from consent.request_templates import shipped_requests
    from consent.terms import terms_digest

    now = datetime(2026, 6, 1, tzinfo=UTC)
    terms = shipped_requests(now)[0].terms_for("c0ffee00", now)
    before = terms.signable_bytes
    assert before == canonical_json(terms.signable_dict())
    for update in ({"id": "f" * 32}, {"subject": "0" * 32}, {"group_by": ()}):
        copy = terms.model_copy(update=update)
        assert copy.signable_bytes == canonical_json(copy.signable_dict()) != before
        assert terms_digest(copy) != terms_digest(terms)
    assert terms.signable_bytes == before
