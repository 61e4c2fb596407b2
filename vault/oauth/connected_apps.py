"""The citizen's connected apps: which clients hold live grants for them, with what, since when;
and disconnecting one.

Properties:

* a citizen sees only their own grant families (the query is by their id), and an app they never
  connected is "not found", whoever asks;
* disconnecting an app revokes, in the same transaction, every grant family, refresh token and
  access token that app holds for the citizen (their session keys destroyed), calls the consent
  integration's hook to withdraw the consents given through it, and writes an audit entry.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlmodel import Session, col

from vault.catalogue import Catalogue
from vault.clock import utcnow
from vault.crypto.root_keys import RootKeys
from vault.errors import NotFound
from vault.models import AccessToken
from vault.oauth import clients, consent_screen
from vault.oauth import repositories as repo
from vault.oauth.hooks import AppDisconnectedHook
from vault.services.audit_log import AuditLog


@dataclass(frozen=True)
class ConnectedApp:
    client_id: str
    client_name: str
    first_party: bool
    scopes: list[str]
    scope_words: list[str]
    authorization_details: list[dict[str, Any]]
    detail_words: list[str]
    connected_at: datetime
    last_token_at: datetime
    expires_at: datetime


def list_apps(session: Session, citizen_id: str, catalogue: Catalogue) -> list[ConnectedApp]:
    by_client: dict[str, list[Any]] = {}
    for family in repo.live_families_for_citizen(session, citizen_id, utcnow()):
        by_client.setdefault(family.client_id, []).append(family)
    apps: list[ConnectedApp] = []
    for client_id, families in by_client.items():
        client = clients.get_client(session, client_id)
        scopes = sorted({s for f in families for s in f.scope.split()})
        details: list[dict[str, Any]] = []
        for family in families:
            for detail in json.loads(family.authorization_details):
                if detail not in details:
                    details.append(detail)
        apps.append(
            ConnectedApp(
                client_id=client_id,
                client_name=client.client_name if client else "(an app that was removed)",
                first_party=bool(client and client.first_party),
                scopes=scopes,
                scope_words=consent_screen.describe_scopes(scopes),
                authorization_details=details,
                detail_words=consent_screen.describe_details(details, catalogue),
                connected_at=min(f.created_at for f in families),
                last_token_at=max(f.last_issued_at for f in families),
                expires_at=max(f.expires_at for f in families),
            )
        )
    return apps


def disconnect(
    session: Session,
    citizen_id: str,
    client_id: str,
    hook: AppDisconnectedHook,
    audit: AuditLog,
    root_keys: RootKeys | None = None,
) -> int:
    """Revoke everything ``client_id`` holds for the citizen; the number of grants ended.
    :class:`NotFound` if the app holds no live grant for this citizen."""
    if not clients.is_plausible_id(client_id):
        raise NotFound("no app with that id is connected to your vault")
    now = utcnow()
    live = [
        f
        for f in repo.families_of(session, citizen_id, client_id)
        if f.revoked_at is None and f.expires_at > now
    ]
    if not live:
        raise NotFound("no app with that id is connected to your vault")
    for family in live:
        repo.revoke_family(session, family.family_id, now)
    session.execute(
        update(AccessToken)
        .where(
            col(AccessToken.citizen_id) == citizen_id,
            col(AccessToken.client_id) == client_id,
            col(AccessToken.revoked_at).is_(None),
        )
        .values(revoked_at=now, session_key=None)
    )
    hook.on_app_disconnected(session, citizen_id, client_id, root_keys)
    audit.append(session, citizen_id, "citizen", "app.disconnected", {"client": client_id})
    return len(live)
