"""City departments: their data requests and their records of processing (GDPR Art. 30)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import Session

from consent.canonical import canonical_json
from consent.errors import TermsInvalid, problem
from consent.terms import DataRequest, validate_request
from vault.clock import utcnow
from vault.consent_models import DataRequestRow, Department
from vault.errors import Conflict, NotFound
from vault.repositories import consents as consent_repo
from vault.services.consent_registry import ConsentRegistry, RequestView


@dataclass(frozen=True)
class ProcessingRecord:
    """One line of a department's record of processing activities, from the terms in force."""

    request_id: str
    title: str
    purposes: list[dict[str, str]]
    legal_basis: list[str]
    data_categories: list[dict[str, Any]]
    recipients: list[str]
    processing: str
    statistics: list[str]
    dp_limits: dict[str, Any] | None
    retention: str
    active_consents: str
    safeguards: list[str]


SAFEGUARDS = [
    "Records are encrypted at rest with keys the citizen holds (XChaCha20-Poly1305, X25519).",
    "The department receives only differentially private statistics, never records.",
    "Each citizen's own privacy budget and minimum group size are enforced per release.",
    "Every use is written to the citizen's hash-chained audit log; releases are public.",
    "Consent can be withdrawn at any time; withdrawal takes effect at once.",
]


class Departments:
    def __init__(self, consents: ConsentRegistry) -> None:
        self._consents = consents

    @staticmethod
    def ensure(session: Session, department_id: str, name: str, name_es: str = "") -> Department:
        department = consent_repo.department(session, department_id)
        if department is None:
            department = Department(
                id=department_id, name=name, name_es=name_es, created_at=utcnow()
            )
            session.add(department)
            session.flush()
        return department

    def publish(
        self, session: Session, department_id: str, request: DataRequest, now: datetime
    ) -> RequestView:
        """Publish a data request after checking it against the catalogue and vocabulary."""
        if consent_repo.department(session, department_id) is None:
            raise NotFound(f"no department {department_id!r}")
        if request.department != department_id:
            raise TermsInvalid(
                [problem("department", f"must be {department_id!r}, the department publishing")]
            )
        validate_request(request, self._consents.catalogue)
        if consent_repo.request(session, request.id) is not None:
            raise Conflict(
                f"a request with id {request.id!r} exists; publish a new id or version",
                details=[{"field": "id", "reason": "already published"}],
            )
        closes = None
        session.add(
            DataRequestRow(
                id=request.id,
                department_id=department_id,
                title=request.title.en,
                request_json=canonical_json(
                    request.model_dump(mode="json", by_alias=True)
                ).decode(),
                status="open",
                created_at=now,
                closes_at=closes,
            )
        )
        session.flush()
        return self._consents.request_view(
            session, request.id, self._consents.vocabulary(session), "en"
        )

    @staticmethod
    def request_exists(session: Session, request_id: str) -> bool:
        return consent_repo.request(session, request_id) is not None

    def requests(self, session: Session, department_id: str, language: str) -> list[RequestView]:
        if consent_repo.department(session, department_id) is None:
            raise NotFound(f"no department {department_id!r}")
        vocabulary = self._consents.vocabulary(session)
        return [
            self._consents.request_view(session, row.id, vocabulary, language)
            for row in consent_repo.requests_of_department(session, department_id)
        ]

    def processing_records(self, session: Session, department_id: str) -> list[ProcessingRecord]:
        """GDPR Art. 30: what the department processes, why, on what basis, for how long.

        Built from the published requests and the number of consents in force (rounded down to a
        multiple of ten, so the report cannot be used to tell when one citizen joined or left).
        """
        if consent_repo.department(session, department_id) is None:
            raise NotFound(f"no department {department_id!r}")
        active = consent_repo.active_consents_of_department(session, department_id)
        out = []
        for row in consent_repo.requests_of_department(session, department_id):
            request = DataRequest.model_validate(json.loads(row.request_json))
            count = sum(1 for c in active if c.request_id == row.id)
            out.append(
                ProcessingRecord(
                    request_id=row.id,
                    title=request.title.en,
                    purposes=[{"id": request.purpose, "description": request.purpose_text.en}],
                    legal_basis=[request.legal_basis],
                    data_categories=[c.model_dump() for c in request.data_categories],
                    recipients=[r.label() for r in request.recipients()],
                    processing=request.processing.mode,
                    statistics=list(request.statistics),
                    dp_limits=request.dp_limits.model_dump() if request.dp_limits else None,
                    retention=f"consent lasts {request.duration} from acceptance; "
                    "released statistics are kept in the public release log",
                    active_consents=f"{count // 10 * 10}+" if count >= 10 else "fewer than 10",
                    safeguards=SAFEGUARDS,
                )
            )
        return out

    @staticmethod
    def new_request_id() -> str:
        return uuid.uuid4().hex
