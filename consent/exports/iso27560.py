"""Consent terms and their history as an ISO/IEC TS 27560 consent record, using DPV.

The record follows the W3C DPV guide "Consent Records and Receipts as per ISO/IEC TS 27560:2023
using DPV" (https://w3id.org/dpv/guides/consent-27560) and declares its schema
``https://w3id.org/dpv/schema/dpv-27560#record``. Every field the guide marks mandatory is present
(``tests/test_consent_exports.py`` checks the list):

* metadata: schema version (``dct:conformsTo``), record id (``dct:identifier``), data subject
  (``dpv:hasDataSubject``, the pseudonymous id only);
* notice: ``dpv:hasNotice`` (a ``dpv:ConsentNotice`` with version and SHA-256) and its language
  (``dct:language``);
* one ``dpv:Process`` per purpose: purpose (ours, ``skos:broader`` its DPV parent), legal basis,
  personal data (stream type and field), processing (``dpv:Aggregate`` with
  ``dpv:DifferentialPrivacy``, or ``dpv:Access``/``dpv:Collect`` for an app), storage condition,
  data controller, recipients, consent control (``dpv:WithdrawConsent`` with where to do it),
  jurisdiction and applicable law, rights (GDPR Art. 7(3), 15, 17, 20, 21) and our DP limits;
* entities: the controller (name, identifier, role, contact point, postal address) and the data
  subject (identifier and role only: no contact details are recorded about citizens);
* events under ``dpv:hasConsentStatus``: each with its DPV status, time, duration, who indicated it
  and the consent type; plus the current status under ``cv:status``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from consent.exports._common import (
    CONSENT_TYPE,
    DPV_STATUS,
    GDPR_RIGHTS,
    INDICATION_METHOD,
    controller_iri,
    events_of,
    field_iri,
    purpose_iri,
    recipient_iri,
    split,
    status_for,
    subject_iri,
)
from consent.iris import ISO27560_SCHEMA, PREFIXES, terms_uid
from consent.signing import SignedEvent, SignedTerms
from consent.terms import ConsentEvent, ConsentTerms, iso_utc


def _entities(terms: ConsentTerms) -> list[dict[str, Any]]:
    c = terms.controller
    return [
        {
            "@id": controller_iri(terms),
            "@type": ["dpv:Organisation", "dpv:DataController"],
            "dpv:hasName": c.name,
            "dpv:hasIdentifier": controller_iri(terms),
            "dct:identifier": c.id,
            "schema:contactPoint": [
                {
                    "@type": "schema:ContactPoint",
                    "schema:name": c.contact,
                    "schema:email": c.email,
                    "schema:telephone": c.phone,
                },
                {
                    "@type": "schema:PostalAddress",
                    "schema:streetAddress": c.street_address,
                    "schema:addressLocality": c.locality,
                    "schema:postalCode": c.postal_code,
                    "schema:addressCountry": c.country,
                },
            ],
            "schema:url": c.url,
        },
        {
            "@id": subject_iri(terms),
            "@type": "dpv:DataSubject",
            "dpv:hasIdentifier": subject_iri(terms),
        },
    ]


def _processes(terms: ConsentTerms) -> list[dict[str, Any]]:
    dp = terms.processing.mode == "dp_aggregate"
    if dp:
        processing = ["dpv:Aggregate"]
    else:
        processing = ["dpv:Access"] + (["dpv:Collect"] if terms.processing.append else [])
    personal_data = [
        {
            "@id": field_iri(c.stream_type, f),
            "@type": "dpv:PersonalData",
            "dct:identifier": f"{c.stream_type}/{f}",
        }
        for c in terms.data_categories
        for f in c.fields
    ]
    recipients = [
        {
            "@id": recipient_iri(r),
            "@type": ["dpv:Recipient"] + (["dpv:ThirdParty"] if r.kind == "client" else []),
        }
        for r in terms.recipients
    ]
    out: list[dict[str, Any]] = []
    for p in terms.purposes:
        process: dict[str, Any] = {
            "@type": "dpv:Process",
            "dpv:hasPurpose": {
                "@id": purpose_iri(p.id),
                "@type": "dpv:Purpose",
                "skos:broader": p.dpv_parent,
                "dct:identifier": p.id,
            },
            "dpv:hasLegalBasis": p.legal_basis,
            "dpv:hasPersonalData": personal_data,
            "dpv:hasProcessing": processing,
            "dpv:hasDataController": controller_iri(terms),
            "dpv:hasRecipient": recipients,
            "dpv:hasStorageCondition": [
                {"@type": "dpv:StorageLocation", "dpv:hasLocation": f"loc:{terms.jurisdiction}"},
                {
                    "@type": "dpv:StorageDuration",
                    "dpv:hasDuration": {
                        "@type": "dpv:UntilEventDuration",
                        "rdf:value": "until the citizen deletes the data from their own vault",
                    },
                },
            ],
            "dpv:hasConsentControl": {
                "@type": "dpv:WithdrawConsent",
                "dpv:isExercisedAt": terms.withdrawal.url,
                "dct:description": terms.withdrawal.instructions,
            },
            "dpv:hasJurisdiction": f"loc:{terms.jurisdiction}",
            "dpv:hasApplicableLaw": terms.applicable_law,
            "dpv:hasRight": [
                {
                    "@type": ["dpv:DataSubjectRight", right],
                    "dct:title": title,
                    "dpv:isExercisedAt": terms.withdrawal.url,
                }
                for right, title in GDPR_RIGHTS
            ],
            "dpv:hasDuration": {
                "@type": "dpv:UntilTimeDuration",
                "rdf:value": iso_utc(terms.validity.not_after),
            },
        }
        if dp and terms.dp_limits is not None:
            limits = terms.dp_limits
            process["dpv:hasTechnicalMeasure"] = "dpv:DifferentialPrivacy"
            process["cv:limits"] = {
                "cv:epsilonPerPeriod": limits.epsilon_per_period,
                "cv:period": limits.period,
                "cv:minGroupSize": limits.min_group_size,
                "cv:maxReleasesPerPeriod": limits.max_releases_per_period,
                "cv:allowedStatistic": list(terms.statistics),
                "cv:groupBy": list(terms.group_by),
            }
        out.append(process)
    return out


def _event(terms: ConsentTerms, kind: str, at: datetime, derived: bool) -> dict[str, Any]:
    by = controller_iri(terms) if kind in ("expired", "requested") else subject_iri(terms)
    entry: dict[str, Any] = {
        "@type": DPV_STATUS[kind],
        "dpv:isIndicatedAtTime": iso_utc(at),
        "dpv:isIndicatedBy": by,
        "dpv:hasDuration": {
            "@type": "dpv:UntilTimeDuration",
            "rdf:value": iso_utc(terms.validity.not_after),
        },
        "dpv:hasLegalBasis": CONSENT_TYPE,
    }
    if kind in ("given", "renewed", "withdrawn"):
        entry["dpv:hasIndicationMethod"] = INDICATION_METHOD
    if derived:
        entry["cv:derived"] = True  # not an event in the history: inferred from the terms/clock
    return entry


def _history(
    terms: ConsentTerms,
    signed: SignedTerms | None,
    events: Sequence[ConsentEvent],
    now: datetime | None,
) -> list[dict[str, Any]]:
    mine = sorted(
        (e for e in events if e.terms_id == terms.id and e.terms_version == terms.version),
        key=lambda e: e.at,
    )
    out: list[dict[str, Any]] = []
    if signed is None:
        out.append(_event(terms, "requested", terms.validity.not_before, derived=True))
    elif not any(e.kind == "given" for e in mine):
        out.append(_event(terms, "given", terms.validity.not_before, derived=True))
    out += [_event(terms, e.kind, e.at, derived=False) for e in mine]
    expired_by_clock = now is not None and now >= terms.validity.not_after
    if signed is not None and expired_by_clock and not any(e.kind == "expired" for e in mine):
        out.append(_event(terms, "expired", terms.validity.not_after, derived=True))
    return out


def to_iso27560(
    source: SignedTerms | ConsentTerms,
    events: Sequence[SignedEvent | ConsentEvent] = (),
    *,
    now: datetime | None = None,
) -> dict[str, Any]:
    """An ISO/IEC TS 27560 consent record (JSON-LD with DPV) for the terms and their history.

    ``now`` (optional) lets the record state an expiry the clock has reached. Unsigned terms are
    recorded as ``dpv:ConsentRequested``. Events are rendered, not verified: verify them first.
    """
    terms, signed = split(source)
    plain = events_of(events)
    status = status_for(terms, signed, plain, now)
    record: dict[str, Any] = {
        "@context": dict(PREFIXES),
        "@id": f"{terms_uid(terms.id, terms.version)}:record",
        "@type": "dpv:ConsentRecord",
        "dct:conformsTo": ISO27560_SCHEMA,
        "dct:identifier": terms_uid(terms.id, terms.version),
        "dpv:hasDataSubject": {
            "@id": subject_iri(terms),
            "@type": "dpv:DataSubject",
            "dct:identifier": terms.subject,
        },
        "dpv:hasNotice": {
            "@id": terms.notice.url,
            "@type": "dpv:ConsentNotice",
            "dct:hasVersion": terms.notice.version,
            "cv:sha256": terms.notice.sha256,
            "dct:language": terms.notice.language,
        },
        "dct:language": terms.notice.language,
        "dpv:hasDataController": controller_iri(terms),
        "dpv:hasJurisdiction": f"loc:{terms.jurisdiction}",
        "dpv:hasApplicableLaw": terms.applicable_law,
        "dpv:hasProcess": _processes(terms),
        "dpv:hasEntity": _entities(terms),
        "dpv:hasConsentStatus": _history(terms, signed, plain, now),
        "cv:status": DPV_STATUS[status],
    }
    if terms.supersedes is not None:
        record["dct:replaces"] = terms_uid(terms.supersedes.id, terms.supersedes.version)
    if signed is not None:
        record["cv:signature"] = {
            "cv:algorithm": "Ed25519",
            "cv:signatureValue": signed.signature,
            "cv:publicKey": signed.public_key,
            "cv:keyId": signed.key_id,
        }
    return record
