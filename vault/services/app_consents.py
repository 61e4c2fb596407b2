"""Consents given to third-party apps through OAuth (Rich Authorization Requests).

When a citizen approves ``civic-vault:consent`` details on the consent page, each entry becomes
signed consent terms with ``processing: raw`` for that one app (append, read, or both), for exactly
the stream types it names, until its ``validity.not_after`` (at most a year). Reading through the
app then goes through the same gate as every grantee (:meth:`ConsentRegistry.usable_consents`),
with grants sealed to the vault's app-access key; disconnecting the app withdraws these consents.

Properties: an app never gets more than the details the citizen approved (the OAuth layer checks
what this returns against what was asked); an append-only consent seals no key to anyone; a
withdrawn or expired app consent opens nothing.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session

from consent.decision import AccessRequest
from consent.purposes import city_purposes
from consent.request_templates import (
    BASE_URL,
    DEPARTMENT_NAMES,
    DIMENSION_NAMES,
    FIELD_NAMES,
    STREAM_NAMES,
    energy_request,
)
from consent.summary import Vocabulary, plain_summary
from consent.terms import ConsentTerms
from vault.catalogue import Catalogue, default_catalogue_json
from vault.clock import utcnow
from vault.crypto.root_keys import RootKeys
from vault.errors import Conflict, Forbidden
from vault.principal import Principal
from vault.repositories import consents as consent_repo
from vault.services.chunk_store import KeyOpener
from vault.services.consent_registry import ConsentRegistry

#: The city purpose an app's own purpose maps to when it is not one of the city's.
APP_PURPOSE = "personal-service"
MAX_APP_CONSENT = timedelta(days=365)


def purpose_for(app_purpose: str) -> str:
    """The vocabulary purpose that stands for what an app asked (its own id if the city knows it)."""
    return app_purpose if city_purposes().get(app_purpose) is not None else APP_PURPOSE


def _not_after(detail: dict[str, Any], now: datetime) -> datetime:
    latest = now + MAX_APP_CONSENT
    validity = detail.get("validity") or {}
    raw = validity.get("not_after") if isinstance(validity, dict) else None
    if not raw:
        return latest
    asked = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    return min(asked, latest)


class AppConsents:
    """The consent side of OAuth: the two hooks of ``vault.oauth.hooks``."""

    def __init__(self, registry: ConsentRegistry, catalogue: Catalogue) -> None:
        self._registry = registry
        self._catalogue = catalogue

    def terms_for(
        self,
        citizen_id: str,
        client_id: str,
        client_name: str,
        detail: dict[str, Any],
        now: datetime,
    ) -> ConsentTerms:
        start = now.replace(microsecond=0)
        city = energy_request(start)  # the city's controller and withdrawal method
        purpose = city_purposes().get(purpose_for(str(detail["purpose"])))
        assert purpose is not None
        actions = set(detail["actions"])
        notice = (
            f"{client_name} ({client_id}) asks, for you only: {', '.join(sorted(actions))} your "
            f"{', '.join(detail['stream_types'])}, for {detail['purpose']}."
        )
        return ConsentTerms.model_validate(
            {
                "id": uuid.uuid4().hex,
                "version": 1,
                "subject": citizen_id,
                "controller": city.controller.model_dump(),
                "jurisdiction": city.jurisdiction,
                "applicable_law": city.applicable_law,
                "purposes": [
                    {
                        "id": purpose.id,
                        "dpv_parent": purpose.dpv_parent,
                        "legal_basis": purpose.default_legal_basis,
                    }
                ],
                "data_categories": [
                    {"stream_type": t, "fields": list(self._catalogue.get(t).field_names)}
                    for t in detail["stream_types"]
                ],
                "recipients": [{"kind": "client", "id": client_id}],
                "processing": {"mode": "raw", "app": client_id, "append": "append" in actions},
                "validity": {"not_before": start, "not_after": _not_after(detail, start)},
                "notice": {
                    "url": f"{BASE_URL}/apps/{client_id}",
                    "version": "1",
                    "sha256": hashlib.sha256(notice.encode("utf-8")).hexdigest(),
                    "language": "en",
                },
                "withdrawal": city.withdrawal.model_dump(),
            }
        )

    def summary(
        self, detail: dict[str, Any], client_id: str, client_name: str, language: str = "en"
    ) -> str:
        """What the consent page says about one detail: the consent package's plain summary of
        the very terms that approving it would sign (the citizen is not known yet: a stand-in)."""
        terms = self.terms_for("0" * 32, client_id, client_name, detail, utcnow())
        vocabulary = Vocabulary.from_catalogue_json(
            default_catalogue_json(),
            DEPARTMENT_NAMES,
            clients={client_id: {"en": client_name, "es": client_name}},
            stream_names=STREAM_NAMES,
            field_names=FIELD_NAMES,
            dimension_names=DIMENSION_NAMES,
        )
        return plain_summary(terms, vocabulary, language)

    # -- ConsentApprovalHook -----------------------------------------------------------------

    def approve(
        self,
        session: Session,
        citizen_id: str,
        root_keys: RootKeys,
        client: Any,
        details: list[dict[str, Any]],
    ) -> list[dict[str, Any]]:
        now = utcnow()
        approved = []
        for detail in details:
            terms = self.terms_for(citizen_id, client.client_id, client.client_name, detail, now)
            record = self._registry.give_terms(
                session,
                citizen_id,
                root_keys,
                terms,
                now,
                client_id=client.client_id,
                grant="read" in detail["actions"],
            )
            approved.append({**detail, "consent_id": record.id})
        return approved

    # -- AppDisconnectedHook -------------------------------------------------------------------

    def on_app_disconnected(
        self, session: Session, citizen_id: str, client_id: str, root_keys: RootKeys | None
    ) -> None:
        """Withdraw every consent given through the app (signed by the citizen when their keys
        are open; otherwise its grants are destroyed and the keys rotated all the same)."""
        now = utcnow()
        for record in consent_repo.active_consents_of_client(session, citizen_id, client_id):
            if root_keys is not None:
                try:
                    self._registry.withdraw(session, citizen_id, root_keys, record.id, now)
                except Conflict:
                    continue
            else:
                self._registry.end_unsigned(session, record, "withdrawn")

    # -- reading through an app ----------------------------------------------------------------

    def read_opener(self, session: Session, principal: Principal, stream_type: str) -> KeyOpener:
        """Open the stream through the app-access grants of the consents the token names, once
        they verify and allow this read (the same gate as every grantee); 403 otherwise."""
        consent_ids = {
            d.get("consent_id")
            for d in principal.authorization_details
            if isinstance(d, dict) and stream_type in d.get("stream_types", ())
        }
        records = [
            r
            for r in consent_repo.active_consents_of_client(
                session, principal.citizen_id or "", principal.client_id or ""
            )
            if r.id in consent_ids
        ]
        request = AccessRequest(
            recipient_kind="client",
            recipient_id=principal.client_id or "",
            purpose=next(
                (
                    purpose_for(str(d.get("purpose")))
                    for d in principal.authorization_details
                    if isinstance(d, dict) and d.get("consent_id") in consent_ids
                ),
                APP_PURPOSE,
            ),
            stream_type=stream_type,
            fields=self._catalogue.get(stream_type).field_names,
            operation="raw_read",
            at=utcnow(),
        )
        allowed = self._registry.usable_consents(session, records, request)
        if not allowed:
            raise Forbidden(
                "the consent this app read under is no longer in force (withdrawn, expired or "
                "not allowing this read)"
            )
        return self._registry.grant_opener(session, "app-access", allowed)
