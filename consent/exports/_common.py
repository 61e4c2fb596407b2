"""Names shared by the exports: IRIs for the things terms mention, DPV statuses, rights."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from consent.iris import PURPOSES, STREAMS, entity_iri
from consent.signing import SignedEvent, SignedTerms
from consent.terms import ConsentEvent, ConsentStatus, ConsentTerms, Recipient, consent_status

DPV_STATUS: dict[str, str] = {
    "requested": "dpv:ConsentRequested",
    "given": "dpv:ConsentGiven",
    "renewed": "dpv:RenewedConsentGiven",
    "withdrawn": "dpv:ConsentWithdrawn",
    "expired": "dpv:ConsentExpired",
    # DPV has no "superseded": the parent class is the honest statement.
    "superseded": "dpv:ConsentStatusInvalidForProcessing",
}
# Our statuses (and event kinds) as DPV consent statuses.

GDPR_RIGHTS: tuple[tuple[str, str], ...] = (
    ("eu-gdpr:A7-3", "Right to withdraw consent"),
    ("eu-gdpr:A15", "Right of access"),
    ("eu-gdpr:A17", "Right to erasure"),
    ("eu-gdpr:A20", "Right to data portability"),
    ("eu-gdpr:A21", "Right to object"),
)

CONSENT_TYPE = "dpv:ExplicitlyExpressedConsent"
# How consent is expressed here: a signature on terms that are about nothing but this consent.

INDICATION_METHOD = "Signed with the citizen's own Ed25519 key in the Civic Vault app"


def subject_iri(terms: ConsentTerms) -> str:
    return entity_iri("citizen", terms.subject)


def controller_iri(terms: ConsentTerms) -> str:
    return entity_iri("controller", terms.controller.id)


def recipient_iri(recipient: Recipient) -> str:
    return entity_iri(recipient.kind, recipient.id)


def purpose_iri(purpose_id: str) -> str:
    return PURPOSES + purpose_id


def stream_iri(stream_type: str) -> str:
    return STREAMS + stream_type


def field_iri(stream_type: str, field: str) -> str:
    return f"{STREAMS}{stream_type}#{field}"


def split(source: SignedTerms | ConsentTerms) -> tuple[ConsentTerms, SignedTerms | None]:
    """The terms, and the signed envelope when there is one."""
    if isinstance(source, SignedTerms):
        return source.terms, source
    return source, None


def events_of(items: Iterable[SignedEvent | ConsentEvent]) -> list[ConsentEvent]:
    """The plain events (exports render the history; verification is the caller's job)."""
    return [i.event if isinstance(i, SignedEvent) else i for i in items]


def status_for(
    terms: ConsentTerms,
    signed: SignedTerms | None,
    events: Sequence[ConsentEvent],
    now: datetime | None,
) -> ConsentStatus:
    """``requested`` for unsigned terms; otherwise the status the history gives (at ``now``, or
    at the start of validity when no time is given, so that only events count)."""
    if signed is None:
        return "requested"
    return consent_status(terms, events, now if now is not None else terms.validity.not_before)
