"""The two places where OAuth meets consent, as small interfaces the consent integration fills.

* :class:`ConsentApprovalHook` runs when a citizen approves an authorization request that carries
  ``authorization_details``: it turns them into signed consent terms and grants, and returns the
  approved details, each with the ``consent_id`` it created (it may narrow them, never widen them:
  the caller checks, see ``vault.oauth.rar.check_within``).
* :class:`AppDisconnectedHook` runs when a citizen disconnects an app: it withdraws the consents
  given through that app.

Both run inside the request's unit of work: if they raise, nothing of the approval or the
disconnection is kept.
"""

from __future__ import annotations

from typing import Any, Protocol

from sqlmodel import Session

from vault.crypto.root_keys import RootKeys
from vault.oauth.clients import ClientView


class ConsentApprovalHook(Protocol):
    def approve(
        self,
        session: Session,
        citizen_id: str,
        root_keys: RootKeys,
        client: ClientView,
        details: list[dict[str, Any]],
    ) -> list[dict[str, Any]]: ...


class AppDisconnectedHook(Protocol):
    def on_app_disconnected(
        self, session: Session, citizen_id: str, client_id: str, root_keys: RootKeys | None
    ) -> None: ...


class PassThroughApproval:
    """Default until the consent integration lands: approves the details as requested, with
    ``consent_id=None`` (so app tokens can append to the named streams but cannot read)."""

    def approve(
        self,
        session: Session,
        citizen_id: str,
        root_keys: RootKeys,
        client: ClientView,
        details: list[dict[str, Any]],
    ) -> list[dict[str, Any]]:
        return [{**d, "consent_id": None} for d in details]


class NoConsentsToWithdraw:
    """Default until the consent integration lands: nothing to withdraw."""

    def on_app_disconnected(
        self, session: Session, citizen_id: str, client_id: str, root_keys: RootKeys | None
    ) -> None:
        return None
