"""Issuing tokens: the one place that writes access tokens, refresh tokens and grant families.

Properties:

* every token is an opaque ``cv_`` string stored only as its digest; an access token is a row of
  the vault's ``access_tokens`` table (so ``vault.api.deps.require`` checks it like any other);
* an access token lives ``access_ttl`` seconds at most (10 minutes by default), and never past its
  family's absolute end or the earliest ``validity.not_after`` of its ``authorization_details``;
* a refresh token lives ``refresh_idle_ttl`` at most and never past its family's absolute end
  (RFC 9700 §4.14.2); client-credentials grants get no refresh token;
* only the first-party citizen app's tokens carry the citizen's root secret, wrapped under the token
  itself (``session_key``), exactly as a citizen's own session does; third-party apps never do;
* the token carries exactly the approved ``authorization_details``, and the token response repeats
  them (RFC 9396 §7).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from authlib.oauth2.rfc6749 import InvalidGrantError
from sqlmodel import Session

from vault.clock import utcnow
from vault.crypto import token_secrets
from vault.models import AccessToken
from vault.oauth import policy, rar
from vault.oauth.clients import ClientView
from vault.oauth.models import OAuthAuthorization, OAuthRefreshToken


@dataclass(frozen=True)
class Lifetimes:
    access: int = policy.ACCESS_TTL
    refresh_idle: int = policy.REFRESH_IDLE_TTL
    refresh_absolute: int = policy.REFRESH_ABSOLUTE_TTL


@dataclass(frozen=True)
class Subject:
    """Who a token acts for, and what was approved (the ``user`` Authlib's grants pass around)."""

    token_kind: str
    audience: str
    citizen_id: str | None = None
    staff_id: str | None = None
    department_id: str | None = None
    authorization_details: tuple[dict[str, Any], ...] = ()
    family_id: str | None = None
    root_secret: bytes | None = field(default=None, repr=False)


def _details_json(details: tuple[dict[str, Any], ...]) -> str:
    return json.dumps(list(details), sort_keys=True, separators=(",", ":"))


class TokenIssuer:
    def __init__(self, session: Session, lifetimes: Lifetimes) -> None:
        self._session = session
        self._ttl = lifetimes

    def _new_family(
        self, client: ClientView, subject: Subject, scopes: frozenset[str], now: datetime
    ) -> OAuthAuthorization:
        end = now + timedelta(seconds=self._ttl.refresh_absolute)
        consent_end = rar.not_after(subject.authorization_details)
        if consent_end is not None:
            end = min(end, consent_end)
        if subject.family_id is None:
            raise ValueError("a user-delegated grant needs a family id")
        family = OAuthAuthorization(
            family_id=subject.family_id,
            client_id=client.client_id,
            citizen_id=subject.citizen_id,
            staff_id=subject.staff_id,
            department_id=subject.department_id,
            token_kind=subject.token_kind,
            scope=policy.format_scope(scopes),
            audience=subject.audience,
            authorization_details=_details_json(subject.authorization_details),
            created_at=now,
            last_issued_at=now,
            expires_at=end,
        )
        self._session.add(family)
        return family

    def issue(
        self,
        client: ClientView,
        subject: Subject,
        scopes: frozenset[str],
        *,
        family: OAuthAuthorization | None = None,
        new_family: bool = False,
        with_refresh: bool = False,
    ) -> dict[str, Any]:
        """Persist and return a token response (RFC 6749 §5.1) for ``subject`` with ``scopes``."""
        now = utcnow()
        if new_family:
            family = self._new_family(client, subject, scopes, now)
        end = now + timedelta(seconds=self._ttl.access)
        consent_end = rar.not_after(subject.authorization_details)
        if consent_end is not None:
            end = min(end, consent_end)
        if family is not None:
            end = min(end, family.expires_at)
        if end <= now:
            raise InvalidGrantError("The authorization has ended.")
        secret = subject.root_secret if subject.token_kind == policy.TOKEN_KIND_CITIZEN else None
        access = token_secrets.new_token()
        self._session.add(
            AccessToken(
                digest=token_secrets.token_digest(access),
                kind=subject.token_kind,
                citizen_id=subject.citizen_id,
                client_id=client.client_id,
                department_id=subject.department_id,
                scope=policy.format_scope(scopes),
                audience=subject.audience,
                authorization_details=_details_json(subject.authorization_details),
                session_key=None
                if secret is None
                else token_secrets.wrap_for_token(access, secret),
                family_id=family.family_id if family is not None else None,
                created_at=now,
                expires_at=end,
            )
        )
        token: dict[str, Any] = {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": max(1, int((end - now).total_seconds())),
            "scope": policy.format_scope(scopes),
        }
        if subject.authorization_details:
            token["authorization_details"] = list(subject.authorization_details)
        if with_refresh and family is not None:
            refresh = token_secrets.new_token()
            self._session.add(
                OAuthRefreshToken(
                    digest=token_secrets.token_digest(refresh),
                    family_id=family.family_id,
                    client_id=client.client_id,
                    session_key=None
                    if secret is None
                    else token_secrets.wrap_for_token(refresh, secret),
                    created_at=now,
                    expires_at=min(
                        now + timedelta(seconds=self._ttl.refresh_idle), family.expires_at
                    ),
                )
            )
            token["refresh_token"] = refresh
        if family is not None:
            family.last_issued_at = now
            self._session.add(family)
        self._session.flush()
        return token
