"""The consent gate of a release: which citizens' signed terms allow this query, now.

Property: a citizen is admitted only when one of their consents, verified against their own key
with its whole signed history, is allowed by the consent package's single decision function
(:func:`consent.decision.decide`, through ``ConsentRegistry.decide_many``) for exactly this
department, purpose, dataset, fields, statistics, grouping dimensions, epsilon and time. At most
one consent per citizen is admitted (the privacy unit is the citizen, not the consent); the budget
level (:mod:`aggregation.ledger`) then drops those whose own budget for the period is spent.

Judgments are remembered between queries by the citizens' consent revisions
(:mod:`aggregation.admission_memo`): only consents whose evidence changed since, or whose
judgment was never made, are read and judged again.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session

from aggregation import repository
from aggregation.admission_memo import AdmissionMemo, Judgment
from aggregation.query_spec import ValidatedQuery
from aggregation.repository import CandidateConsent, CandidateRevision
from consent.decision import AccessRequest, decide
from consent.signing import SignatureMemo, VerifiedTerms
from consent.terms import ConsentEvent, DPLimits
from vault.consent_models import StoredConsent
from vault.repositories import citizens as citizen_repo
from vault.services.consent_registry import (
    ConsentRegistry,
    ConsentTampered,
    signed_event_of,
    terms_sha256,
    verify_stored_consent,
)

#: Consents judged together by :func:`admit` (their keys and histories are read in one go).
ADMIT_SLICE = 10_000


@dataclass(frozen=True, slots=True)
class AdmittedConsent:
    consent_id: str
    citizen_id: str
    terms_sha256: str
    not_before: datetime
    not_after: datetime
    limits: DPLimits
    #: The citizen's consent revision read before the evidence this was judged on.
    revision: int


def access_request(query: ValidatedQuery, at: datetime) -> AccessRequest:
    """The query as the consent package's decision function sees it."""
    request = query.request
    return AccessRequest(
        recipient_kind="department",
        recipient_id=request.department,
        purpose=request.purpose,
        stream_type=query.dataset.name,
        fields=query.fields_read,
        operation="dp_aggregate",
        statistics=query.statistic_names,
        group_by=query.dimensions_used,
        epsilon=query.epsilon,
        at=at,
    )


@dataclass(frozen=True, slots=True)
class ConsentEvidence:
    """Everything needed to judge one stored consent away from the database (picklable): the
    row's signed terms, the citizen's key from the citizens table and the stored history."""

    id: str
    citizen_id: str
    terms_id: str
    terms_json: str
    signature: bytes
    signing_key: bytes
    verify_key: bytes | None
    events: tuple[tuple[str, bytes | None], ...]  # (event JSON, signature), oldest first
    revision: int


def _admitted(
    record: StoredConsent, verified: VerifiedTerms, revision: int
) -> AdmittedConsent | None:
    limits = verified.terms.dp_limits
    if limits is None:  # dp_aggregate terms always carry limits; fail closed if not
        return None
    return AdmittedConsent(
        consent_id=record.id,
        citizen_id=record.citizen_id,
        terms_sha256=terms_sha256(record),
        not_before=verified.terms.validity.not_before,
        not_after=verified.terms.validity.not_after,
        limits=limits,
        revision=revision,
    )


def one_per_citizen(admitted: list[AdmittedConsent]) -> list[AdmittedConsent]:
    """Several consents of one citizen may allow the query: the most generous counts, once."""
    chosen: dict[str, AdmittedConsent] = {}
    for candidate in admitted:
        current = chosen.get(candidate.citizen_id)
        if current is None or (candidate.limits.epsilon_per_period, candidate.consent_id) > (
            current.limits.epsilon_per_period,
            current.consent_id,
        ):
            chosen[candidate.citizen_id] = candidate
    return [chosen[c] for c in sorted(chosen)]


def _rows(
    session: Session,
    department: str,
    at: datetime,
    candidates: Sequence[CandidateRevision],
    every: bool,
) -> list[CandidateConsent]:
    """The stored rows of ``candidates``, by citizen: the department's whole candidate list in one
    read when ``every`` candidate is asked for (a cold gate), else looked up by id."""
    wanted = {c.consent_id for c in candidates}
    if every:
        return [r for r in repository.candidate_consents(session, department, at) if r.id in wanted]
    return repository.candidates_by_id(session, department, at, wanted)


def admit(
    session: Session,
    registry: ConsentRegistry,
    query: ValidatedQuery,
    at: datetime,
    memo: AdmissionMemo | None = None,
    threads: int = 1,
) -> list[AdmittedConsent]:
    """The consents whose verified terms allow ``query`` at ``at``, one per citizen, by citizen
    (judged here, with the registry's memos). ``memo``: judgments of earlier queries, kept up to
    date here; without one, every candidate is judged. ``threads``: threads that verify
    signatures ahead (``ConsentRegistry.decide_many``)."""
    department = query.request.department
    request = access_request(query, at)
    memo = memo if memo is not None else AdmissionMemo()
    # The revisions first: evidence read after them can only be as new or newer (module memo).
    candidates = repository.candidate_revisions(session, department, at)
    out, unknown, kept = memo.recall(request, candidates)
    revision = {c.consent_id: c.revision for c in unknown}
    rows = _rows(session, department, at, unknown, len(unknown) == len(candidates))
    judged: dict[str, Judgment] = {}
    # In slices, so that only a slice's parsed terms, keys and histories are alive at once (a
    # parsed consent is ~13.5 KB of objects; all of a million-citizen city would not fit).
    for first in range(0, len(rows), ADMIT_SLICE):
        part = rows[first : first + ADMIT_SLICE]
        for record, (decision, verified) in zip(
            part, registry.decide_many(session, part, request, threads), strict=True
        ):
            if verified is None:  # did not verify, or outside its window: judged every time
                continue
            admitted = (
                _admitted(record, verified, revision[record.id]) if decision.allowed else None
            )
            validity = verified.terms.validity
            judged[record.id] = Judgment(
                revision[record.id], admitted, validity.not_before, validity.not_after
            )
            if admitted is not None:
                out.append(admitted)
    memo.remember(request, {**kept, **judged})
    return one_per_citizen(out)


def still_allowed(
    session: Session,
    registry: ConsentRegistry,
    query: ValidatedQuery,
    admitted: Sequence[tuple[str, str]],
    now: datetime,
) -> set[str]:
    """Of ``admitted`` (consent id, terms digest), consents the gate admitted for ``query``
    earlier, the ids that still allow it ``now``, judged again as :func:`admit` judges.

    Property: a consent withdrawn, ended or changed to other terms since the gate admitted it,
    or whose citizen was erased or changed their key so that it no longer verifies, is not
    returned; nor is a consent whose verified terms are not the ones admitted (another digest).
    A release calls this for the consents whose citizens' revisions moved since the gate, in the
    same snapshot as the material it reads, so that data read after a withdrawal is never used.
    """
    if not admitted:
        return set()
    digest = dict(admitted)
    request = access_request(query, now)
    rows = repository.candidates_by_id(session, query.request.department, now, list(digest))
    out: set[str] = set()
    for first in range(0, len(rows), ADMIT_SLICE):  # as admit() does: bounded memory
        part = rows[first : first + ADMIT_SLICE]
        for record, (decision, verified) in zip(
            part, registry.decide_many(session, part, request), strict=True
        ):
            if verified is None or not decision.allowed:
                continue
            kept = _admitted(record, verified, 0)
            if kept is not None and kept.terms_sha256 == digest.get(record.id):
                out.add(record.id)
    return out


def gather_evidence(
    session: Session,
    registry: ConsentRegistry,
    department: str,
    at: datetime,
    only: Sequence[CandidateRevision] | None = None,
) -> list[ConsentEvidence]:
    """The department's candidate consents with their evidence, for :func:`judge` elsewhere
    (``only``: just these candidates, as :meth:`AdmissionMemo.recall` left them to judge)."""
    return [e for part in evidence_in_shards(session, registry, department, at, only) for e in part]


def evidence_in_shards(
    session: Session,
    registry: ConsentRegistry,
    department: str,
    at: datetime,
    only: Sequence[CandidateRevision] | None = None,
    size: int | None = None,
) -> Iterator[list[ConsentEvidence]]:
    """:func:`gather_evidence` in consecutive shards of ``size`` consents (all in one when
    ``None``), each read when it is asked for: the workers judge the first shards while this
    process reads the next (``session`` must stay open until the last one is read)."""
    every = only is None
    wanted = only if only is not None else repository.candidate_revisions(session, department, at)
    revision = {c.consent_id: c.revision for c in wanted}
    candidates = _rows(session, department, at, wanted, every)
    step = max(1, size or len(candidates))
    for first in range(0, len(candidates), step):
        part = candidates[first : first + step]
        keys = citizen_repo.verify_keys(session, {r.citizen_id for r in part})
        histories = registry.stored_histories(session, part)
        yield [
            ConsentEvidence(
                id=r.id,
                citizen_id=r.citizen_id,
                terms_id=r.terms_id,
                terms_json=r.terms_json,
                signature=bytes(r.signature),
                signing_key=bytes(r.signing_key),
                verify_key=keys.get(r.citizen_id),
                events=tuple(
                    (e.event_json, None if e.signature is None else bytes(e.signature))
                    for e in histories[r.id]
                ),
                revision=revision[r.id],
            )
            for r in part
        ]


def judge(
    evidence: Sequence[ConsentEvidence],
    request: AccessRequest,
    memo: SignatureMemo | None = None,
) -> list[AdmittedConsent]:
    """The same judgment as :func:`admit` (the one verification, then the consent package's one
    decision function), on evidence already read: pure, so it runs on aggregation workers.
    Anything that does not parse or verify is refused (fail closed). ``memo``: signatures that
    verified before (a worker keeps one across queries; a hit means these exact bytes verified)."""
    out = []
    for ev in evidence:
        try:
            history = [
                signed_event_of(ConsentEvent.from_signed_json(text), sig, ev.signing_key)
                for text, sig in ev.events
            ]
            signed = ConsentRegistry.signed_of(ev)
            verified = verify_stored_consent(ev, signed, ev.verify_key, history, request.at, memo)
        except (ConsentTampered, ValueError):
            continue
        if decide(verified, verified.status, request).allowed:
            admitted = _admitted(ev, verified, ev.revision)
            if admitted is not None:
                out.append(admitted)
    return out
