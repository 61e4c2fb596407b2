"""Consent terms as a Kantara Initiative Consent Receipt (specification v1.1.0, 2018).

Every field the specification requires is present (``tests/test_consent_exports.py`` checks the
list): ``version`` (``KI-CR-v1.1.0``), ``jurisdiction``, ``consentTimestamp`` (seconds since the
epoch, UTC), ``collectionMethod``, ``consentReceiptID``, ``language``, ``piiPrincipalId`` (the
pseudonymous subject id, never personal data), ``piiControllers`` (each with ``piiController``,
``contact``, ``address``, ``email``, ``phone``), ``policyUrl`` (the notice), ``services`` (each with
``service`` and ``purposes``; each purpose with ``purpose``, ``purposeCategory``, ``consentType``,
``piiCategory``, ``primaryPurpose``, ``termination``, ``thirdPartyDisclosure`` and, when disclosed,
``thirdPartyName``), ``sensitive`` and ``spiCat``.

Mapping choices: one service per recipient (a department, or an app: an app is a third party,
so ``thirdPartyDisclosure`` is true and ``thirdPartyName`` names it); ``purposeCategory`` holds the
purpose's DPV parent (the specification's category list is only an example); ``piiCategory`` lists
``stream type: fields``; ``publicKey`` is left out, because in the specification it is the PII
controller's key while our signature is the citizen's (it travels in the ODRL export instead).
The receipt id is a UUID derived from the terms' digest, so the same terms give the same receipt.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from consent.exports._common import INDICATION_METHOD, events_of, recipient_iri, split
from consent.iris import KANTARA_VERSION, terms_uid
from consent.purposes import PurposeVocabulary, city_purposes
from consent.signing import SignedEvent, SignedTerms
from consent.terms import ConsentEvent, ConsentTerms, iso_utc, terms_digest


def to_kantara(
    source: SignedTerms | ConsentTerms,
    events: Sequence[SignedEvent | ConsentEvent] = (),
    *,
    vocabulary: PurposeVocabulary | None = None,
) -> dict[str, Any]:
    """A Kantara Consent Receipt v1.1 (JSON dict) for the terms.

    ``consentTimestamp`` is the time of the ``given`` event when the history has one, else the
    start of validity (terms are built at acceptance).
    """
    terms, _ = split(source)
    purposes = vocabulary or city_purposes()
    given = sorted(
        e.at
        for e in events_of(events)
        if e.kind == "given" and e.terms_id == terms.id and e.terms_version == terms.version
    )
    consented_at = given[0] if given else terms.validity.not_before
    c = terms.controller
    pii = [f"{cat.stream_type}: {', '.join(cat.fields)}" for cat in terms.data_categories]
    termination = (
        f"Ends at {iso_utc(terms.validity.not_after)}, or at once when the citizen withdraws "
        f"({terms.withdrawal.url})."
    )
    services: list[dict[str, Any]] = []
    for recipient in terms.recipients:
        third_party = recipient.kind == "client"
        items: list[dict[str, Any]] = []
        for i, p in enumerate(terms.purposes):
            definition = purposes.get(p.id)
            item: dict[str, Any] = {
                "purpose": definition.text("en") if definition else p.id,
                "purposeCategory": [p.dpv_parent],
                "consentType": "EXPLICIT",
                "piiCategory": pii,
                "primaryPurpose": i == 0,
                "termination": termination,
                "thirdPartyDisclosure": third_party,
            }
            if third_party:
                item["thirdPartyName"] = recipient.id
            items.append(item)
        services.append(
            {
                "service": f"{recipient.kind} {recipient.id} ({recipient_iri(recipient)})",
                "purposes": items,
            }
        )
    receipt_id = uuid.uuid5(
        uuid.NAMESPACE_URL, f"{terms_uid(terms.id, terms.version)}#{terms_digest(terms)}"
    )
    return {
        "version": KANTARA_VERSION,
        "jurisdiction": terms.jurisdiction,
        "consentTimestamp": int(consented_at.timestamp()),
        "collectionMethod": INDICATION_METHOD,
        "consentReceiptID": str(receipt_id),
        "language": terms.notice.language,
        "piiPrincipalId": terms.subject,
        "piiControllers": [
            {
                "piiController": c.name,
                "onBehalf": False,
                "contact": c.contact,
                "address": {
                    "streetAddress": c.street_address,
                    "addressLocality": c.locality,
                    "postalCode": c.postal_code,
                    "addressCountry": c.country,
                },
                "email": c.email,
                "phone": c.phone,
                "piiControllerUrl": c.url,
            }
        ],
        "policyUrl": terms.notice.url,
        "services": services,
        "sensitive": False,
        "spiCat": [],
    }
