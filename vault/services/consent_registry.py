"""The vault's side of consent: giving, declining, withdrawing and expiring consents, the grants that
serve them, and the one gate through which anyone uses a grant.

Properties:
* terms are stored as the exact canonical JSON the citizen signed; before any use the signature is
  verified against the citizen's key from the citizens table, with the whole signed history of the
  consent, so terms edited in the database (a wider purpose, another department, a larger epsilon,
  a later end) are refused, never obeyed (:meth:`ConsentRegistry.verify`);
* whether a use is allowed is decided only by :func:`consent.decision.decide` on verified terms
  (:meth:`ConsentRegistry.decide`);
* withdrawal and expiry delete the consent's grants and rotate the keys of the streams they covered,
  at once, so the old grantee cannot open chunks written afterwards;
* every decision of the citizen (accept, decline, withdraw) and every expiry is in the audit log.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import nacl.public
from sqlalchemy import delete
from sqlmodel import Session, col

from consent.canonical import canonical_json
from consent.data_catalogue import DataCatalogue
from consent.decision import AccessRequest, Decision, decide
from consent.errors import SignatureInvalid, TermsInvalid
from consent.exports.iso27560 import to_iso27560
from consent.exports.kantara import to_kantara
from consent.exports.odrl import to_odrl
from consent.request_templates import DEPARTMENT_NAMES, DIMENSION_NAMES, FIELD_NAMES, STREAM_NAMES
from consent.signing import (
    SignatureMemo,
    SignedEvent,
    SignedHistory,
    SignedTerms,
    VerifiedTerms,
    give,
    judge_at,
    key_id_for,
    verify_signatures,
    withdraw,
)
from consent.summary import Vocabulary, plain_summary
from consent.terms import (
    ConsentEvent,
    ConsentTerms,
    DataRequest,
    Narrowing,
    consent_status,
    validate_terms,
)
from vault.bundle import b64, unb64
from vault.catalogue import default_catalogue_json
from vault.clock import utcnow
from vault.consent_models import (
    ConsentEventRow,
    ConsentRecord,
    RequestDecline,
    StoredConsent,
    StoredConsentEvent,
)
from vault.crypto.root_keys import RootKeys
from vault.errors import Conflict, DomainError, InvalidInput, NotFound
from vault.models import Citizen, Stream
from vault.repositories import citizens as citizen_repo
from vault.repositories import consents as consent_repo
from vault.repositories import streams as stream_repo
from vault.service_keys import ServiceKeys
from vault.services import key_grants
from vault.services.audit_log import AuditLog
from vault.services.chunk_store import KeyOpener, owner_key_opener

ACTIVE = ("given", "renewed")
FORMATS = ("json", "odrl", "iso27560", "kantara")


class ConsentTampered(DomainError):
    """Stored terms or their history do not verify: the consent is not used."""

    code = "consent_integrity_error"


@dataclass(frozen=True)
class RequestView:
    id: str
    department_id: str
    department_name: str
    title: str
    summary: str
    purpose: str
    stream_types: list[str]
    epsilon_per_period: float | None
    duration: str
    notice_url: str
    request: dict[str, Any]


@dataclass(frozen=True)
class ConsentView:
    id: str
    terms_id: str
    version: int
    status: str
    verified: bool
    problem: str | None
    department_id: str | None
    client_id: str | None
    request_id: str | None
    summary: str
    created_at: datetime
    not_after: datetime
    terms: dict[str, Any]


#: Parsed terms (and events) kept by their stored text. A parsed ``ConsentTerms`` holds about
#: 13.5 KB of Python objects, so this bounds each memo near 2.7 GB; a city with more consents than
#: this re-parses the rest on every query (the memo starts afresh when full) instead of holding
#: 13.5 GB at 1,000,000 (docs/performance.md).
_MEMO_ENTRIES = 200_000
C = TypeVar("C", bound=StoredConsent)


def terms_sha256(record: StoredConsent) -> str:
    return hashlib.sha256(record.terms_json.encode("utf-8")).hexdigest()


def signed_event_of(
    event: ConsentEvent, signature: bytes | None, signing_key: bytes
) -> SignedEvent:
    """A stored event with its signature, as the consent package verifies it (built without
    validation: ``event`` is a validated model and the strings are our own encodings of the stored
    bytes, all checked again by the verification)."""
    if signature is None:
        return SignedEvent.model_construct(event=event)
    return SignedEvent.model_construct(
        event=event,
        signature=b64(signature),
        public_key=b64(signing_key),
        key_id=key_id_for(signing_key),
    )


def verify_stored_signatures(
    record: StoredConsent,
    signed: SignedTerms,
    verify_key: bytes | None,
    history: list[SignedEvent],
    memo: SignatureMemo | None = None,
) -> SignedHistory:
    """The part of :func:`verify_stored_consent` that does not depend on the time: the citizen
    exists, the terms name them, and every signature verifies (``consent.signing.verify_signatures``).
    Pure. Raises :class:`ConsentTampered`."""
    if verify_key is None:
        raise ConsentTampered(f"consent {record.id} names no citizen of this vault")
    if signed.terms.subject != record.citizen_id:
        raise ConsentTampered(f"consent {record.id}: the terms name another subject")
    try:
        return verify_signatures(signed, verify_key, history, memo)
    except SignatureInvalid as exc:
        raise _tampered(record, exc) from None


def judge_stored(record: StoredConsent, signed: SignedHistory, now: datetime) -> VerifiedTerms:
    """The rest of :func:`verify_stored_consent`: the validity window and status at ``now``."""
    try:
        return judge_at(signed, now)
    except SignatureInvalid as exc:
        raise _tampered(record, exc) from None


def _tampered(record: StoredConsent, exc: SignatureInvalid) -> ConsentTampered:
    return ConsentTampered(
        f"consent {record.id} does not verify: {exc.reason}",
        details=[{"reason": exc.reason}],
    )


def verify_stored_consent(
    record: StoredConsent,
    signed: SignedTerms,
    verify_key: bytes | None,
    history: list[SignedEvent],
    now: datetime,
    memo: SignatureMemo | None = None,
) -> VerifiedTerms:
    """The one check of a stored consent before any use: the citizen exists (``verify_key`` is
    their key from the citizens table, not the copy on the row), the terms name this citizen, and
    the signature and the whole signed history verify (``consent.signing.verify_signed_terms``).
    Pure: runs in this process or on an aggregation worker. Raises :class:`ConsentTampered` with
    the consent's own reason (withdrawn, expired, bad signature)."""
    return judge_stored(
        record, verify_stored_signatures(record, signed, verify_key, history, memo), now
    )


def _signed(record: StoredConsent, terms: ConsentTerms) -> SignedTerms:
    """The stored consent's signed terms, around ``terms`` parsed from its stored text.

    Built without validation: ``terms`` was validated when it was parsed (and is immutable), the
    strings are our own encodings of the stored bytes, and verification checks every part anyway.
    Validating again re-ran the terms' consistency checks on every consent (about 6% of a cold
    consent gate at 100,000 citizens; before the terms were remembered, a third of a warm one)."""
    return SignedTerms.model_construct(
        terms=terms,
        signature=b64(record.signature),
        public_key=b64(record.signing_key),
        key_id=key_id_for(record.signing_key),
    )


#: Consents whose signatures one task of :meth:`ConsentRegistry.decide_many` verifies ahead.
_AHEAD_PART = 500


def _stored_signatures(
    records: Sequence[StoredConsent], histories: dict[str, list[StoredConsentEvent]]
) -> Iterator[tuple[bytes, bytes, bytes]]:
    """(public key, signature, signed bytes) of each record's terms and signed events, as
    stored: the bytes :func:`verify_stored_signatures` checks for them (the terms and events are
    read with their stored text as their signed bytes)."""
    for record in records:
        key = bytes(record.signing_key)
        yield key, bytes(record.signature), record.terms_json.encode("utf-8")
        for event in histories[record.id]:
            if event.signature is not None:
                yield key, bytes(event.signature), event.event_json.encode("utf-8")


def _evidence_digest(
    record: StoredConsent, verify_key: bytes, events: Sequence[StoredConsentEvent]
) -> bytes:
    """SHA-256 of everything :func:`verify_stored_signatures` reads about a stored consent, each
    part length-prefixed: its id and citizen, the stored terms, signature and signing key, the
    citizen's key, and every stored event of its history with its signature, in order."""
    parts = [
        record.id.encode(),
        record.citizen_id.encode(),
        record.terms_json.encode(),
        bytes(record.signature),
        bytes(record.signing_key),
        verify_key,
    ]
    for event in events:
        parts.append(event.event_json.encode())
        parts.append(b"\x00" if event.signature is None else b"\x01" + bytes(event.signature))
    digest = hashlib.sha256()
    for part in parts:
        digest.update(len(part).to_bytes(8, "little"))
        digest.update(part)
    return digest.digest()


class ConsentRegistry:
    def __init__(self, audit: AuditLog, keys: ServiceKeys) -> None:
        self._audit = audit
        self._keys = keys
        self._catalogue: DataCatalogue | None = None
        # Memos of pure functions of stored bytes (parsing, signature checks), so that deciding
        # on the same thousands of consents again costs hashes. They change no answer: the
        # status, the validity window and the decision are worked out afresh every time.
        self._signatures = SignatureMemo()
        self._parsed_terms: dict[str, ConsentTerms] = {}
        self._parsed_events: dict[str, ConsentEvent] = {}
        # Stored consents whose signatures and history verified, by a digest of those bytes.
        self._verified: dict[bytes, SignedHistory] = {}

    def forget_citizen(self, citizen_id: str) -> None:
        """Drop what the memos hold about ``citizen_id``'s consents (their terms, events and
        verified histories; an erasure hook). The signature memo holds only hashes and stays."""
        gone = {t.id for t in self._parsed_terms.values() if t.subject == citizen_id}
        gone |= {v.terms.id for v in self._verified.values() if v.terms.subject == citizen_id}
        self._parsed_terms = {
            text: t for text, t in self._parsed_terms.items() if t.subject != citizen_id
        }
        self._parsed_events = {
            text: e for text, e in self._parsed_events.items() if e.terms_id not in gone
        }
        self._verified = {
            digest: v for digest, v in self._verified.items() if v.terms.subject != citizen_id
        }

    # -- reference data ------------------------------------------------------------------------

    @property
    def catalogue(self) -> DataCatalogue:
        if self._catalogue is None:
            self._catalogue = DataCatalogue.from_catalogue_json(default_catalogue_json())
        return self._catalogue

    def vocabulary(self, session: Session) -> Vocabulary:
        names: dict[str, dict[str, str]] = {k: dict(v) for k, v in DEPARTMENT_NAMES.items()}
        for dept in consent_repo.departments(session):
            names[dept.id] = {"en": dept.name, **({"es": dept.name_es} if dept.name_es else {})}
        return Vocabulary.from_catalogue_json(
            default_catalogue_json(),
            names,
            stream_names=STREAM_NAMES,
            field_names=FIELD_NAMES,
            dimension_names=DIMENSION_NAMES,
        )

    @staticmethod
    def department_exists(session: Session, department_id: str) -> bool:
        return consent_repo.department(session, department_id) is not None

    def grantee_public_keys(self) -> dict[str, bytes]:
        return {
            "aggregation": bytes(self._keys.aggregation.public_key),
            "app-access": bytes(self._keys.app_access.public_key),
        }

    def grantee_private_key(self, grantee: str) -> nacl.public.PrivateKey:
        return {"aggregation": self._keys.aggregation, "app-access": self._keys.app_access}[grantee]

    # -- reading stored consents ---------------------------------------------------------------

    @staticmethod
    def signed_of(record: StoredConsent) -> SignedTerms:
        try:
            terms = ConsentTerms.from_signed_json(record.terms_json)
        except (ValueError, TermsInvalid) as exc:
            raise ConsentTampered(f"consent {record.id}: stored terms cannot be read") from exc
        return _signed(record, terms)

    def _signed_memo(self, record: StoredConsent) -> SignedTerms:
        """:meth:`signed_of`, with the parsed terms remembered by their exact stored text."""
        terms = self._parsed_terms.get(record.terms_json)
        if terms is None:
            signed = self.signed_of(record)
            if len(self._parsed_terms) >= _MEMO_ENTRIES:
                self._parsed_terms.clear()
            self._parsed_terms[record.terms_json] = signed.terms
            return signed
        return _signed(record, terms)

    def _signed_event(self, row: StoredConsentEvent, signing_key: bytes) -> SignedEvent:
        event = self._parsed_events.get(row.event_json)
        if event is None:
            event = ConsentEvent.from_signed_json(row.event_json)
            if len(self._parsed_events) >= _MEMO_ENTRIES:
                self._parsed_events.clear()
            self._parsed_events[row.event_json] = event
        return signed_event_of(event, row.signature, signing_key)

    def history(self, session: Session, record: ConsentRecord) -> list[SignedEvent]:
        """Every event of every version of this consent (status needs them all)."""
        return self._histories(session, [record])[record.id]

    @staticmethod
    def stored_histories(
        session: Session, records: Sequence[StoredConsent]
    ) -> dict[str, list[StoredConsentEvent]]:
        """The stored events of every version of each record's terms (by record id), oldest
        first, fetched in two queries for all of them. Only the same citizen's versions count:
        another citizen's row that reused a terms id must not supersede or withdraw this one."""
        versions = consent_repo.versions_of_terms(session, {r.terms_id for r in records})
        events = consent_repo.events(session, [v[0] for v in versions])
        chain = {v[0]: (v[1], v[2]) for v in versions}
        by_chain: dict[tuple[str, str], list[StoredConsentEvent]] = {}
        for event in events:
            by_chain.setdefault(chain[event.consent_id], []).append(event)
        return {r.id: by_chain.get((r.citizen_id, r.terms_id), []) for r in records}

    def _histories(
        self, session: Session, records: Sequence[StoredConsent]
    ) -> dict[str, list[SignedEvent]]:
        stored = self.stored_histories(session, records)
        return {r.id: [self._signed_event(e, r.signing_key) for e in stored[r.id]] for r in records}

    def verify(self, session: Session, record: ConsentRecord, now: datetime) -> VerifiedTerms:
        """Verified terms, or :class:`ConsentTampered` / the consent's own reason (withdrawn,
        expired). The key is the citizen's, from the citizens table, not the copy on the row."""
        citizen = citizen_repo.by_id(session, record.citizen_id)
        return self._verify(
            record,
            None if citizen is None else citizen.verify_key,
            self.history(session, record),
            now,
        )

    def _verify(
        self,
        record: StoredConsent,
        verify_key: bytes | None,
        history: list[SignedEvent],
        now: datetime,
    ) -> VerifiedTerms:
        if verify_key is None:
            raise ConsentTampered(f"consent {record.id} names no citizen of this vault")
        return verify_stored_consent(
            record, self._signed_memo(record), verify_key, history, now, self._signatures
        )

    def _verify_remembered(
        self,
        record: StoredConsent,
        verify_key: bytes | None,
        events: Sequence[StoredConsentEvent],
        now: datetime,
    ) -> VerifiedTerms:
        """:meth:`_verify` with the signature half remembered by a digest of every stored byte it
        reads (``_evidence_digest``): the same bytes verify the same way, so only the validity
        window and the status are worked out again at ``now``. Failures are not remembered."""
        if verify_key is None:
            raise ConsentTampered(f"consent {record.id} names no citizen of this vault")
        digest = _evidence_digest(record, verify_key, events)
        signed = self._verified.get(digest)
        if signed is None:
            history = [self._signed_event(e, record.signing_key) for e in events]
            signed = verify_stored_signatures(
                record, self._signed_memo(record), verify_key, history, self._signatures
            )
            if len(self._verified) >= _MEMO_ENTRIES:
                self._verified.clear()
            self._verified[digest] = signed
        return judge_stored(record, signed, now)

    def decide(
        self, session: Session, record: ConsentRecord, request: AccessRequest
    ) -> tuple[Decision, VerifiedTerms | None]:
        """The gate: verify the stored consent, then let the consent package decide."""
        return self.decide_many(session, [record], request)[0]

    def decide_many(
        self,
        session: Session,
        records: Sequence[StoredConsent],
        request: AccessRequest,
        threads: int = 1,
    ) -> list[tuple[Decision, VerifiedTerms | None]]:
        """:meth:`decide` for many consents at once: the citizens' keys and the histories are
        fetched in a few queries for all of them (a city-wide statistic asks about thousands).

        ``threads`` > 1: that many threads verify the signatures of the stored bytes ahead, a
        part at a time (:meth:`SignatureMemo.verify_ahead`), while this thread reads and decides
        the parts already verified: the Ed25519 work, about half of a cold gate, moves to the
        other cores. The judgments are the same (the verification itself is still the one
        below, which then finds these exact bytes verified)."""
        keys = citizen_repo.verify_keys(session, {r.citizen_id for r in records})
        histories = self.stored_histories(session, records)
        out: list[tuple[Decision, VerifiedTerms | None]] = []

        def judge(part: Sequence[StoredConsent]) -> None:
            for record in part:
                try:
                    verified = self._verify_remembered(
                        record, keys.get(record.citizen_id), histories[record.id], request.at
                    )
                except ConsentTampered as exc:
                    out.append((Decision(False, (exc.message,)), None))
                    continue
                out.append((decide(verified, verified.status, request), verified))

        if threads <= 1 or len(records) <= _AHEAD_PART:
            judge(records)
            return out
        parts = [records[i : i + _AHEAD_PART] for i in range(0, len(records), _AHEAD_PART)]
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="verify-ahead") as pool:
            ahead = [
                pool.submit(self._signatures.verify_ahead, _stored_signatures(part, histories))
                for part in parts
            ]
            try:
                for part, verified_ahead in zip(parts, ahead, strict=True):
                    verified_ahead.result()
                    judge(part)
            finally:
                for future in ahead:
                    future.cancel()
        return out

    def usable_consents(
        self, session: Session, records: Sequence[C], request: AccessRequest
    ) -> list[tuple[C, VerifiedTerms]]:
        """The consents among ``records`` whose verified terms allow ``request`` (the gate every
        grantee goes through before it opens a single grant)."""
        return [
            (record, verified)
            for record, (decision, verified) in zip(
                records, self.decide_many(session, records, request), strict=True
            )
            if decision.allowed and verified is not None
        ]

    def grant_opener(
        self,
        session: Session,
        grantee: str,
        allowed: Sequence[tuple[StoredConsent, VerifiedTerms]],
    ) -> KeyOpener:
        """Opens stream keys through ``grantee``'s grants, only for consents that passed
        :meth:`usable_consents`, and only grants made for exactly the terms that were verified
        (a grant whose terms digest differs from the verified terms' is never used)."""
        digests = {record.id: terms_sha256(record) for record, _ in allowed}
        return key_grants.grant_key_opener(
            session, grantee, self.grantee_private_key(grantee), digests
        )

    # -- requests ------------------------------------------------------------------------------

    @staticmethod
    def request_model(row_json: str) -> DataRequest:
        return DataRequest.model_validate(json.loads(row_json))

    def request_view(
        self, session: Session, row_id: str, vocabulary: Vocabulary, language: str
    ) -> RequestView:
        row = consent_repo.request(session, row_id)
        if row is None:
            raise NotFound(f"no data request {row_id!r}")
        request = self.request_model(row.request_json)
        preview = request.terms_for("preview-subject", utcnow())
        return RequestView(
            id=row.id,
            department_id=row.department_id,
            department_name=vocabulary.recipient_name(preview.recipients[0], language),
            title=request.title.get(language),
            summary=plain_summary(preview, vocabulary, language),
            purpose=request.purpose_text.get(language),
            stream_types=[c.stream_type for c in request.data_categories],
            epsilon_per_period=request.dp_limits.epsilon_per_period if request.dp_limits else None,
            duration=request.duration,
            notice_url=request.notice.url,
            request=json.loads(row.request_json),
        )

    def open_requests(self, session: Session, citizen_id: str, language: str) -> list[RequestView]:
        """Open requests the citizen has neither declined nor already accepted."""
        declined = consent_repo.declined_request_ids(session, citizen_id)
        accepted = {
            c.request_id for c in consent_repo.active_consents_of_citizen(session, citizen_id)
        }
        vocabulary = self.vocabulary(session)
        now = utcnow()
        return [
            self.request_view(session, row.id, vocabulary, language)
            for row in consent_repo.open_requests(session)
            if row.id not in declined
            and row.id not in accepted
            and (row.closes_at is None or row.closes_at > now)
        ]

    def _open_request(self, session: Session, request_id: str, now: datetime) -> DataRequest:
        row = consent_repo.request(session, request_id)
        if row is None:
            raise NotFound(f"no data request {request_id!r}")
        if row.status != "open" or (row.closes_at is not None and row.closes_at <= now):
            raise Conflict(
                f"the request {request_id!r} is closed and can no longer be accepted",
                details=[{"field": "request", "reason": "closed"}],
            )
        return self.request_model(row.request_json)

    # -- the citizen's decisions ---------------------------------------------------------------

    def accept(
        self,
        session: Session,
        citizen_id: str,
        root: RootKeys,
        request_id: str,
        narrowing: Narrowing | None,
        now: datetime,
    ) -> ConsentView:
        request = self._open_request(session, request_id, now)
        for existing in consent_repo.active_consents_of_citizen(session, citizen_id):
            if existing.request_id == request_id:
                raise Conflict(
                    "you have already accepted this request; withdraw it first to change it",
                    details=[{"field": "request", "reason": "already accepted"}],
                )
        terms = request.terms_for(citizen_id, now, narrowing, terms_id=uuid.uuid4().hex)
        record = self.give_terms(session, citizen_id, root, terms, now, request_id=request_id)
        session.execute(
            delete(RequestDecline).where(
                col(RequestDecline.citizen_id) == citizen_id,
                col(RequestDecline.request_id) == request_id,
            )
        )
        return self.view(session, record, now, "en")

    def give_terms(
        self,
        session: Session,
        citizen_id: str,
        root: RootKeys,
        terms: ConsentTerms,
        now: datetime,
        *,
        request_id: str | None = None,
        client_id: str | None = None,
        actor: str = "citizen",
        grant: bool = True,
    ) -> ConsentRecord:
        """Sign ``terms`` with the citizen's key, store them, and grant the streams they cover."""
        validate_terms(terms, self.catalogue)
        owner = citizen_repo.by_id(session, citizen_id)
        if owner is None or terms.subject != citizen_id:
            raise InvalidInput(
                "the terms must name this citizen as their subject",
                details=[{"field": "subject", "reason": "not this citizen"}],
            )
        signed, given = give(terms, root.signing_key, now)
        department = next((r.id for r in terms.recipients if r.kind == "department"), None)
        client = client_id or next((r.id for r in terms.recipients if r.kind == "client"), None)
        record = ConsentRecord(
            id=uuid.uuid4().hex,
            terms_id=terms.id,
            version=terms.version,
            citizen_id=citizen_id,
            department_id=department,
            client_id=client,
            request_id=request_id,
            terms_json=signed.signed_message().decode("utf-8"),
            signature=unb64(signed.signature),
            signing_key=root.verify_key,
            status="given",
            not_after=terms.validity.not_after,
            created_at=now,
        )
        session.add(record)
        session.flush()
        self._store_event(session, record, given)
        grantee = "aggregation" if terms.processing.mode == "dp_aggregate" else "app-access"
        opener = owner_key_opener(root.box_key)
        granted = 0
        for stream in self._covered_streams(session, citizen_id, terms) if grant else []:
            granted += key_grants.grant_stream(
                session,
                consent_id=record.id,
                terms_sha256=terms_sha256(record),
                stream=stream,
                open_owner_key=opener,
                grantee=grantee,
                grantee_public_key=self.grantee_public_keys()[grantee],
            )
        self._audit.append(
            session,
            citizen_id,
            actor,
            "consent.given",
            {
                "consent": record.id,
                "terms": f"{terms.id}:{terms.version}",
                "department": department,
                "client": client,
                "request": request_id,
                "purposes": list(terms.purpose_ids),
                "epsilon_per_period": terms.dp_limits.epsilon_per_period
                if terms.dp_limits
                else None,
                "not_after": terms.validity.not_after.isoformat(),
            },
        )
        return record

    @staticmethod
    def _covered_streams(session: Session, citizen_id: str, terms: ConsentTerms) -> list[Stream]:
        """The citizen's streams of the consented types; with grouping, also the profile stream
        (only its public dimensions are ever read from it, as group keys)."""
        types = {c.stream_type for c in terms.data_categories}
        if terms.group_by and terms.processing.mode == "dp_aggregate":
            types.add("profile")
        return [s for s in stream_repo.for_citizen(session, citizen_id) if s.stream_type in types]

    def _store_event(self, session: Session, record: ConsentRecord, event: SignedEvent) -> None:
        session.add(
            ConsentEventRow(
                id=uuid.uuid4().hex,
                consent_id=record.id,
                kind=event.event.kind,
                at=event.event.at,
                event_json=canonical_json(event.event.signable_dict()).decode("utf-8"),
                signature=unb64(event.signature) if event.signature else None,
            )
        )
        session.flush()

    def decline(self, session: Session, citizen_id: str, request_id: str, now: datetime) -> None:
        self._open_request(session, request_id, now)
        if request_id not in consent_repo.declined_request_ids(session, citizen_id):
            session.add(
                RequestDecline(citizen_id=citizen_id, request_id=request_id, declined_at=now)
            )
        self._audit.append(
            session, citizen_id, "citizen", "request.declined", {"request": request_id}
        )

    def withdraw(
        self,
        session: Session,
        citizen_id: str,
        root: RootKeys,
        consent_id: str,
        now: datetime,
        actor: str = "citizen",
    ) -> ConsentView:
        record = consent_repo.consent(session, consent_id, citizen_id=citizen_id, for_update=True)
        if record is None:
            raise NotFound(f"no consent {consent_id!r} in your vault")
        if record.status not in ACTIVE:
            raise Conflict(
                f"this consent is already {record.status}",
                details=[{"field": "consent", "reason": f"already {record.status}"}],
            )
        terms = self.signed_of(record).terms
        self._store_event(session, record, withdraw(terms, root.signing_key, now))
        self._end(session, record, "withdrawn")
        self._audit.append(
            session,
            citizen_id,
            actor,
            "consent.withdrawn",
            {"consent": record.id, "department": record.department_id, "client": record.client_id},
        )
        return self.view(session, record, now, "en")

    def _end(self, session: Session, record: ConsentRecord, status: str) -> None:
        """Delete the consent's grants, then rotate the keys of every stream they covered."""
        covered = {g.stream_id for g in key_grants.grants_of_consent(session, record.id)}
        key_grants.delete_grants(session, [record.id])
        record.status = status
        session.add(record)
        owner = citizen_repo.by_id(session, record.citizen_id)
        if owner is None:
            return
        for stream_id in sorted(covered):
            stream = stream_repo.owned(session, record.citizen_id, stream_id, for_update=True)
            if stream is not None:
                key_grants.rotate_stream_key(session, stream, owner, self.grantee_public_keys())
        session.flush()

    def end_unsigned(self, session: Session, record: ConsentRecord, status: str) -> None:
        """End a consent when the citizen's key is not at hand (an app disconnected by a
        service): grants destroyed and keys rotated at once; the signed history is left as it is,
        so the consent still reads as given but can open nothing."""
        if record.status in ACTIVE:
            self._end(session, record, status)
            self._audit.append(
                session, record.citizen_id, "vault", f"consent.{status}",
                {"consent": record.id, "client": record.client_id, "signed": False},
            )  # fmt: skip

    def expire_due(self, session: Session, now: datetime) -> int:
        """End every consent whose validity has run out (no one needs to act)."""
        due = consent_repo.due_to_expire(session, now)
        for record in due:
            terms = self.signed_of(record).terms
            self._store_event(
                session, record, SignedEvent(event=ConsentEvent.for_terms(terms, "expired", now))
            )
            self._end(session, record, "expired")
            self._audit.append(
                session, record.citizen_id, "vault", "consent.expired", {"consent": record.id}
            )
        return len(due)

    def on_stream_created(
        self, session: Session, owner: Citizen, stream: Stream, private_key: nacl.public.PrivateKey
    ) -> None:
        """A stream created after a consent that covers its type joins that consent's grants.

        The new stream's private key is in hand at creation, so this works whoever creates the
        stream (the citizen, or an app that may only append). An app consent that holds no grant
        (append only) gets none here either."""
        now = utcnow()
        for record in consent_repo.active_consents_of_citizen(session, owner.id):
            try:
                verified = self.verify(session, record, now)
            except ConsentTampered:
                continue
            if stream not in self._covered_streams(session, owner.id, verified.terms):
                continue
            raw = verified.terms.processing.mode != "dp_aggregate"
            if raw and not key_grants.grants_of_consent(session, record.id):
                continue
            grantee = "app-access" if raw else "aggregation"
            key_grants.grant_stream(
                session,
                consent_id=record.id,
                terms_sha256=terms_sha256(record),
                stream=stream,
                open_owner_key=lambda _key: private_key,
                grantee=grantee,
                grantee_public_key=self.grantee_public_keys()[grantee],
            )

    # -- views ---------------------------------------------------------------------------------

    def view(
        self, session: Session, record: ConsentRecord, now: datetime, language: str
    ) -> ConsentView:
        """What the citizen sees of one consent; a consent that fails verification says so."""
        problem: str | None = None
        try:
            signed = self.signed_of(record)
            terms_dict = signed.terms.signable_dict()
            summary = plain_summary(signed.terms, self.vocabulary(session), language)
            status: str = consent_status(
                signed.terms, [e.event for e in self.history(session, record)], now
            )
            if status in ACTIVE:
                self.verify(session, record, now)
        except ConsentTampered as exc:
            problem = exc.message
            terms_dict, summary, status = _loose_json(record.terms_json), "", record.status
        return ConsentView(
            id=record.id,
            terms_id=record.terms_id,
            version=record.version,
            status=status,
            verified=problem is None,
            problem=problem,
            department_id=record.department_id,
            client_id=record.client_id,
            request_id=record.request_id,
            summary=summary,
            created_at=record.created_at,
            not_after=record.not_after,
            terms=terms_dict,
        )

    def list_for(self, session: Session, citizen_id: str, language: str) -> list[ConsentView]:
        now = utcnow()
        return [
            self.view(session, r, now, language)
            for r in consent_repo.consents_of_citizen(session, citizen_id)
        ]

    def get(self, session: Session, citizen_id: str, consent_id: str) -> ConsentRecord:
        record = consent_repo.consent(session, consent_id, citizen_id=citizen_id)
        if record is None:
            raise NotFound(f"no consent {consent_id!r} in your vault")
        return record

    def render(self, session: Session, record: ConsentRecord, fmt: str) -> dict[str, Any]:
        """The consent in a standard vocabulary: ODRL 2.2, ISO/IEC TS 27560 or Kantara CR 1.1."""
        signed = self.signed_of(record)
        events = self.history(session, record)
        if fmt == "odrl":
            return to_odrl(signed)
        if fmt == "iso27560":
            return to_iso27560(signed, events, now=utcnow())
        if fmt == "kantara":
            return to_kantara(signed, events)
        raise InvalidInput(
            f"format must be one of {', '.join(FORMATS)}",
            details=[{"field": "format", "reason": "unknown format"}],
        )

    def signed_documents(self, session: Session, citizen_id: str) -> list[dict[str, Any]]:
        """Every consent of the citizen with its signature and signed history (for the export)."""
        out = []
        for record in consent_repo.consents_of_citizen(session, citizen_id):
            signed = self.signed_of(record)
            out.append(
                {
                    "consent_id": record.id,
                    "signed_terms": signed.model_dump(mode="json", by_alias=True),
                    "events": [
                        e.model_dump(mode="json", by_alias=True)
                        for e in self.history(session, record)
                    ],
                    "status": record.status,
                }
            )
        return out


def _loose_json(text: str) -> dict[str, Any]:
    """Stored terms as they are, even when they no longer verify (to show what was found)."""
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
