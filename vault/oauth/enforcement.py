"""What a third-party app's token may do on a citizen's streams, on top of the one token gate
(``vault.api.deps.require``, which checks token, audience and scopes and stays as it is).

Properties:

* :func:`require_authorization_details` admits an app token (``Principal.kind == "app"``) for an
  action on a stream type only if one of its ``authorization_details`` names that stream type and
  that action and has not passed its ``validity.not_after``; every other app request is refused
  with 403. Tokens of any other kind pass unchanged (the citizen's own session and first-party
  app, departments and analysts are limited by audience and scopes).
* Reading through an app then also needs the consent named by the detail to verify and allow the
  read, and a grant sealed to the vault's app-access key for it (``vault/services/app_consents.py``).
* :func:`visible_stream_types` tells a listing route which stream types an app may see.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from vault.clock import utcnow
from vault.errors import Forbidden
from vault.oauth import policy
from vault.oauth.rar import CONSENT_TYPE
from vault.principal import Principal


def _live(detail: dict[str, Any], now: datetime) -> bool:
    validity = detail.get("validity")
    if not isinstance(validity, dict) or "not_after" not in validity:
        return True
    try:
        end = datetime.fromisoformat(str(validity["not_after"]).replace("Z", "+00:00"))
    except ValueError:
        return False
    return end > now


def _covering(principal: Principal, now: datetime) -> Iterable[dict[str, Any]]:
    for detail in principal.authorization_details:
        if isinstance(detail, dict) and detail.get("type") == CONSENT_TYPE and _live(detail, now):
            yield detail


def require_authorization_details(
    principal: Principal, stream_type: str, action: str, *, now: datetime | None = None
) -> None:
    """Refuse (403) an app token whose ``authorization_details`` do not cover ``action``
    (``read`` or ``append``) on ``stream_type``; see the module docstring."""
    if principal.kind != policy.TOKEN_KIND_APP:
        return
    moment = now or utcnow()
    covered = any(
        stream_type in d.get("stream_types", ()) and action in d.get("actions", ())
        for d in _covering(principal, moment)
    )
    if not covered:
        raise Forbidden(
            f"this app was not authorized to {action} your {stream_type} data",
            details=[{"field": "authorization_details", "reason": f"no {action} on {stream_type}"}],
        )


def visible_stream_types(
    principal: Principal, *, now: datetime | None = None
) -> frozenset[str] | None:
    """The stream types an app token may see in a listing; ``None`` means no limit (not an app)."""
    if principal.kind != policy.TOKEN_KIND_APP:
        return None
    moment = now or utcnow()
    return frozenset(s for d in _covering(principal, moment) for s in d.get("stream_types", ()))


def deny_apps(principal: Principal) -> None:
    """For citizen routes no app may use (profile, audit, export, account): 403 for app tokens."""
    if principal.kind == policy.TOKEN_KIND_APP:
        raise Forbidden("apps may use only the stream routes their authorization covers")
