"""Exports: ODRL 2.2 round trip (and refusal of unknown profiles), ISO/IEC TS 27560 records and
Kantara Consent Receipt v1.1, each checked against the list of mandatory fields of its format."""

from __future__ import annotations

import copy
import json
import uuid
from datetime import timedelta
from typing import Any

import nacl.signing
import pytest
from hypothesis import given, settings

from consent.errors import TermsInvalid
from consent.exports.iso27560 import to_iso27560
from consent.exports.kantara import to_kantara
from consent.exports.odrl import from_odrl, signed_from_odrl, to_odrl
from consent.iris import ISO27560_SCHEMA, ODRL_CONTEXT, PROFILE
from consent.request_templates import shipped_requests
from consent.signing import give, renew, sign_terms, verify_signed_terms, withdraw
from consent.terms import ConsentEvent, ConsentTerms
from tests.test_consent_support import NOW, base_terms, raw_terms, terms_strategy

KEY = nacl.signing.SigningKey(bytes(range(7, 39)))
PUBLIC = bytes(KEY.verify_key)


def _through_json(value: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(value))


def _problem_fields(exc: TermsInvalid) -> list[str]:
    return [p["field"] for p in exc.problems]


# --------------------------------------------------------------------------------------------------
# ODRL
# --------------------------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(terms_strategy())
def test_odrl_export_then_import_gives_equal_terms(terms: ConsentTerms) -> None:
    assert from_odrl(_through_json(to_odrl(terms))) == terms


def test_shipped_and_raw_terms_round_trip() -> None:
    cases = [r.terms_for("c0ffee00", NOW) for r in shipped_requests(NOW)]
    cases += [raw_terms(append=True), raw_terms(append=False), base_terms()]
    for terms in cases:
        assert from_odrl(_through_json(to_odrl(terms))) == terms


def test_a_signed_export_carries_a_signature_that_still_verifies() -> None:
    terms = shipped_requests(NOW)[1].terms_for("c0ffee00", NOW)
    signed = sign_terms(terms, KEY)
    doc = _through_json(to_odrl(signed))
    assert doc["cv:signature"]["cv:keyId"] == signed.key_id
    back = signed_from_odrl(doc)
    assert back == signed
    assert verify_signed_terms(back, PUBLIC, NOW + timedelta(days=1)).terms == terms
    with pytest.raises(TermsInvalid):
        signed_from_odrl(_through_json(to_odrl(terms)))  # no signature in an unsigned export


def test_odrl_agreement_shape() -> None:
    terms = shipped_requests(NOW)[1].terms_for("c0ffee00", NOW)  # mobility, grouped
    doc = to_odrl(terms)
    assert doc["@type"] == "Agreement" and doc["profile"] == PROFILE
    assert (
        doc["@context"][0] == ODRL_CONTEXT and doc["@context"][1]["dpv"] == "https://w3id.org/dpv#"
    )
    assert doc["uid"].startswith("urn:civic-vault:consent-terms:")
    assert doc["assigner"] == "urn:civic-vault:citizen:c0ffee00"
    (permission,) = doc["permission"]
    assert permission["assignee"] == "urn:civic-vault:department:mobility"
    assert permission["action"] == "use"
    assert permission["target"]["@type"] == "AssetCollection"
    left = {c["leftOperand"]: c for c in permission["constraint"]}
    assert {
        "dateTime",
        "purpose",
        "cv:epsilonPerPeriod",
        "cv:period",
        "cv:minGroupSize",
        "cv:maxReleasesPerPeriod",
        "cv:allowedStatistic",
        "cv:groupBy",
    } == set(left)
    assert left["purpose"]["rightOperand"] == [
        {"@id": "https://civic-vault.example/purposes/mobility-planning"}
    ]
    assert left["cv:groupBy"]["rightOperand"] == ["age_band", "district"]
    assert doc["cv:purposes"][0]["skos:broader"] == {"@id": "dpv:ImproveTransportMobility"}
    (prohibition,) = doc["prohibition"]
    assert prohibition["action"] == "distribute"
    raw = to_odrl(raw_terms(append=True))
    assert [p["action"] for p in raw["permission"]] == ["read", "modify"]
    assert "prohibition" not in raw


def test_every_recipient_and_stream_gets_a_permission() -> None:
    terms = base_terms(
        recipients=[{"kind": "department", "id": "energy"}, {"kind": "client", "id": "meter-app"}],
        data_categories=[
            {"stream_type": "energy.consumption", "fields": ["kwh"]},
            {"stream_type": "noise.exposure", "fields": ["db"]},
        ],
    )
    doc = to_odrl(terms)
    assert len(doc["permission"]) == 4 and len(doc["prohibition"]) == 4
    assert from_odrl(doc) == terms


@pytest.mark.parametrize(
    "profile",
    [None, "https://example.org/other-profile", [PROFILE, "https://example.org/other-profile"]],
)
def test_a_policy_under_an_unknown_or_missing_profile_is_refused(profile: Any) -> None:
    doc = to_odrl(base_terms())
    if profile is None:
        del doc["profile"]
    else:
        doc["profile"] = profile
    with pytest.raises(TermsInvalid) as caught:
        from_odrl(doc)
    assert _problem_fields(caught.value)[0].startswith("profile")
    assert "profile" in caught.value.problems[0]["reason"]


def test_unknown_constraints_and_inexpressible_policies_are_refused() -> None:
    doc = to_odrl(base_terms())
    strange = copy.deepcopy(doc)
    strange["permission"][0]["constraint"].append(
        {"leftOperand": "spatial", "operator": "eq", "rightOperand": "EU"}
    )
    with pytest.raises(TermsInvalid) as caught:
        from_odrl(strange)
    assert _problem_fields(caught.value) == ["permission.0.constraint.9.leftOperand"]

    wrong_operator = copy.deepcopy(doc)
    wrong_operator["permission"][0]["constraint"][3]["operator"] = "gteq"  # epsilon at least?!
    with pytest.raises(TermsInvalid) as caught:
        from_odrl(wrong_operator)
    assert _problem_fields(caught.value) == ["permission.0.constraint.3.operator"]

    offer = copy.deepcopy(doc)
    offer["@type"] = "Offer"
    with pytest.raises(TermsInvalid) as caught:
        from_odrl(offer)
    assert _problem_fields(caught.value) == ["@type"]

    two = to_odrl(
        base_terms(
            recipients=[
                {"kind": "department", "id": "energy"},
                {"kind": "department", "id": "mobility"},
            ]
        )
    )
    two["permission"][1]["constraint"][3]["rightOperand"]["@value"] = 9.0
    with pytest.raises(TermsInvalid) as caught:
        from_odrl(two)
    assert _problem_fields(caught.value) == ["permission.1.constraint"]

    widened = copy.deepcopy(doc)
    widened["permission"][0]["constraint"][3]["rightOperand"]["@value"] = -1
    with pytest.raises(TermsInvalid) as caught:
        from_odrl(widened)  # imported terms are validated like any others
    assert "dp_limits.epsilon_per_period" in _problem_fields(caught.value)

    missing = copy.deepcopy(doc)
    del missing["dpv:hasNotice"]
    del missing["dpv:hasConsentControl"]
    with pytest.raises(TermsInvalid) as caught:
        from_odrl(missing)
    assert set(_problem_fields(caught.value)) == {"dpv:hasNotice", "dpv:hasConsentControl"}


# --------------------------------------------------------------------------------------------------
# ISO/IEC TS 27560 (through the W3C DPV guide "consent-27560")
# --------------------------------------------------------------------------------------------------

ISO_RECORD_MANDATORY = [
    "dct:conformsTo",  # schema version
    "dct:identifier",  # record id
    "dpv:hasDataSubject",  # PII principal id
    "dpv:hasNotice",  # privacy notice
    "dct:language",  # notice language
    "dpv:hasProcess",
    "dpv:hasEntity",
    "dpv:hasConsentStatus",  # events
]
ISO_PROCESS_MANDATORY = [
    "dpv:hasPurpose",
    "dpv:hasPersonalData",
    "dpv:hasStorageCondition",
    "dpv:hasDataController",
    "dpv:hasRecipient",
    "dpv:hasConsentControl",  # consent change and withdrawal
    "dpv:hasJurisdiction",
    "dpv:hasRight",
]
ISO_ENTITY_MANDATORY = ["dpv:hasName", "dpv:hasIdentifier", "@type", "schema:contactPoint"]
ISO_EVENT_MANDATORY = [
    "@type",  # consent state
    "dpv:hasLegalBasis",  # consent type
    "dpv:isIndicatedAtTime",  # event time
    "dpv:hasDuration",  # event duration
    "dpv:isIndicatedBy",  # expression by entity
]


def _check_iso(record: dict[str, Any]) -> None:
    for key in ISO_RECORD_MANDATORY:
        assert record.get(key), key
    assert record["dct:conformsTo"] == ISO27560_SCHEMA
    assert record["@type"] == "dpv:ConsentRecord"
    for process in record["dpv:hasProcess"]:
        for key in ISO_PROCESS_MANDATORY:
            assert process.get(key), key
    controller = record["dpv:hasEntity"][0]
    for key in ISO_ENTITY_MANDATORY:
        assert controller.get(key), key
    kinds = {c["@type"] for c in controller["schema:contactPoint"]}
    assert kinds == {"schema:ContactPoint", "schema:PostalAddress"}  # contact and postal address
    subject = record["dpv:hasEntity"][1]
    assert subject["@type"] == "dpv:DataSubject" and "schema:contactPoint" not in subject
    for event in record["dpv:hasConsentStatus"]:
        for key in ISO_EVENT_MANDATORY:
            assert event.get(key), key


def test_iso27560_record_has_every_mandatory_field() -> None:
    for request in shipped_requests(NOW):
        terms = request.terms_for("c0ffee00", NOW)
        signed, given_event = give(terms, KEY, NOW)
        record = _through_json(to_iso27560(signed, [given_event]))
        _check_iso(record)
        assert record["cv:status"] == "dpv:ConsentGiven"
        assert record["dpv:hasDataSubject"]["dct:identifier"] == "c0ffee00"
        process = record["dpv:hasProcess"][0]
        assert process["dpv:hasPurpose"]["skos:broader"].startswith("dpv:")
        assert process["dpv:hasTechnicalMeasure"] == "dpv:DifferentialPrivacy"
        assert {"eu-gdpr:A7-3"} <= {r["@type"][1] for r in process["dpv:hasRight"]}


def test_iso27560_statuses_follow_the_history() -> None:
    terms = base_terms()
    signed, given_event = give(terms, KEY, NOW)
    renewed = renew(terms, KEY, NOW + timedelta(days=100))
    withdrawn = withdraw(terms, KEY, NOW + timedelta(days=200))
    record = to_iso27560(signed, [given_event, renewed, withdrawn])
    _check_iso(record)
    assert [e["@type"] for e in record["dpv:hasConsentStatus"]] == [
        "dpv:ConsentGiven",
        "dpv:RenewedConsentGiven",
        "dpv:ConsentWithdrawn",
    ]
    assert record["cv:status"] == "dpv:ConsentWithdrawn"
    expired = to_iso27560(signed, [given_event], now=NOW + timedelta(days=400))
    assert expired["cv:status"] == "dpv:ConsentExpired"
    assert expired["dpv:hasConsentStatus"][-1]["@type"] == "dpv:ConsentExpired"
    requested = to_iso27560(terms)
    _check_iso(requested)
    assert requested["cv:status"] == "dpv:ConsentRequested"
    raw = to_iso27560(sign_terms(raw_terms(append=True), KEY))
    assert raw["dpv:hasProcess"][0]["dpv:hasProcessing"] == ["dpv:Access", "dpv:Collect"]
    assert "dpv:ThirdParty" in raw["dpv:hasProcess"][0]["dpv:hasRecipient"][0]["@type"]


# --------------------------------------------------------------------------------------------------
# Kantara Consent Receipt v1.1
# --------------------------------------------------------------------------------------------------

KANTARA_MANDATORY = [
    "version",
    "jurisdiction",
    "consentTimestamp",
    "collectionMethod",
    "consentReceiptID",
    "language",
    "piiPrincipalId",
    "piiControllers",
    "policyUrl",
    "services",
    "sensitive",
    "spiCat",
]
KANTARA_CONTROLLER_MANDATORY = ["piiController", "contact", "address", "email", "phone"]
KANTARA_SERVICE_MANDATORY = ["service", "purposes"]
KANTARA_PURPOSE_MANDATORY = [
    "purpose",
    "purposeCategory",
    "consentType",
    "piiCategory",
    "primaryPurpose",
    "termination",
    "thirdPartyDisclosure",
]


def _check_kantara(receipt: dict[str, Any]) -> None:
    for key in KANTARA_MANDATORY:
        assert key in receipt, key
    assert receipt["version"] == "KI-CR-v1.1.0"
    assert isinstance(receipt["consentTimestamp"], int)
    uuid.UUID(receipt["consentReceiptID"])
    assert isinstance(receipt["sensitive"], bool) and isinstance(receipt["spiCat"], list)
    for controller in receipt["piiControllers"]:
        for key in KANTARA_CONTROLLER_MANDATORY:
            assert controller.get(key), key
    assert receipt["services"]
    for service in receipt["services"]:
        for key in KANTARA_SERVICE_MANDATORY:
            assert service.get(key), key
        for purpose in service["purposes"]:
            for key in KANTARA_PURPOSE_MANDATORY:
                assert key in purpose and purpose[key] not in (None, "", []), key
            if purpose["thirdPartyDisclosure"]:
                assert purpose["thirdPartyName"]


def test_kantara_receipt_has_every_mandatory_field() -> None:
    for request in shipped_requests(NOW):
        terms = request.terms_for("c0ffee00", NOW)
        signed, given_event = give(terms, KEY, NOW + timedelta(minutes=5))
        receipt = _through_json(to_kantara(signed, [given_event]))
        _check_kantara(receipt)
        assert receipt["piiPrincipalId"] == "c0ffee00"
        assert receipt["consentTimestamp"] == int((NOW + timedelta(minutes=5)).timestamp())
        assert receipt["policyUrl"] == terms.notice.url
        assert receipt == to_kantara(signed, [given_event])  # deterministic receipt id


def test_kantara_names_third_parties() -> None:
    terms = base_terms(
        recipients=[{"kind": "department", "id": "energy"}, {"kind": "client", "id": "meter-app"}]
    )
    receipt = to_kantara(terms)
    _check_kantara(receipt)
    by_service = {s["service"].split(" (")[0]: s for s in receipt["services"]}
    app = by_service["client meter-app"]["purposes"][0]
    assert app["thirdPartyDisclosure"] is True and app["thirdPartyName"] == "meter-app"
    assert by_service["department energy"]["purposes"][0]["thirdPartyDisclosure"] is False
    assert receipt["consentTimestamp"] == int(terms.validity.not_before.timestamp())
    assert ConsentEvent.for_terms(terms, "given", NOW).terms_id == terms.id
