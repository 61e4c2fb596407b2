"""Issuing and checking bearer tokens (the citizen's own sessions now; OAuth tokens use the same table).

Property: a token is stored only as a digest; a session token carries the key to the citizen's root
secret, so the vault can open the citizen's data only while the citizen holds a live token.
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Callable
from datetime import timedelta

from sqlmodel import Session

from vault.clock import utcnow
from vault.crypto import token_secrets
from vault.crypto.root_keys import RootKeys
from vault.errors import Unauthenticated
from vault.models import AccessToken
from vault.principal import CITIZEN_SESSION_SCOPES, VAULT_AUDIENCE, Principal
from vault.repositories import tokens as token_repo
from vault.repositories import write_path


def issue_citizen_session(
    session: Session, citizen_id: str, root: RootKeys, ttl_seconds: int
) -> str:
    token = token_secrets.new_token()
    now = utcnow()
    session.add(
        AccessToken(
            digest=token_secrets.token_digest(token),
            kind="citizen_session",
            citizen_id=citizen_id,
            scope=" ".join(sorted(CITIZEN_SESSION_SCOPES)),
            audience=VAULT_AUDIENCE,
            session_key=token_secrets.wrap_for_token(token, root.secret),
            family_id=uuid.uuid4().hex,
            created_at=now,
            expires_at=now + timedelta(seconds=ttl_seconds),
        )
    )
    session.flush()
    return token


def resolve(session: Session, token: str) -> Principal:
    """The principal behind ``token``, or :class:`Unauthenticated` (expired, revoked, unknown)."""
    return resolve_with(functools.partial(write_path.token_by_digest, session), token)


def resolve_with(lookup: Callable[[str], write_path.TokenRow | None], token: str) -> Principal:
    """:func:`resolve` with the token row read by ``lookup`` (a digest in, the row or ``None``)."""
    try:
        digest = token_secrets.token_digest(token)
    except token_secrets.TokenFormatError as exc:
        raise Unauthenticated("the access token is not valid") from exc
    row = lookup(digest)
    if row is None or row.revoked or row.expires_at <= utcnow():
        raise Unauthenticated("the access token is not valid, has expired or was revoked")
    unlock = None if row.session_key is None else _RootUnlock(token, row.session_key)

    kind = "citizen" if row.kind == "citizen_session" else row.kind
    return Principal(
        kind=kind,
        token_digest=digest,
        scopes=frozenset(row.scope.split()),
        audience=row.audience,
        citizen_id=row.citizen_id,
        client_id=row.client_id,
        department_id=row.department_id,
        authorization_details=tuple(json.loads(row.authorization_details)),
        unlock=unlock,
    )


class _RootUnlock:
    """Opens the citizen's root keys from a session token, once (only routes that read the
    citizen's own data call it; building a cache per request cost more than the token check)."""

    def __init__(self, token: str, blob: bytes) -> None:
        self._token = token
        self._blob = blob
        self._keys: RootKeys | None = None

    def __call__(self) -> RootKeys:
        if self._keys is None:
            try:
                secret = token_secrets.unwrap_for_token(self._token, self._blob)
            except token_secrets.TokenFormatError as exc:
                raise Unauthenticated("the access token is not valid") from exc
            self._keys = RootKeys.from_secret(secret)
        return self._keys


def revoke(session: Session, digest: str) -> None:
    row = token_repo.by_digest(session, digest)
    if row is not None and row.revoked_at is None:
        row.revoked_at = utcnow()
        row.session_key = None
        session.add(row)
        session.flush()


def issue_service_token(
    session: Session,
    *,
    kind: str,
    client_id: str,
    department_id: str | None,
    scopes: frozenset[str],
    audience: str,
    ttl_seconds: int,
) -> str:
    """A token for a service (a department's account, an analyst): no citizen, no session key.
    OAuth's client-credentials grant issues these; the demo and the tests use it directly."""
    token = token_secrets.new_token()
    now = utcnow()
    session.add(
        AccessToken(
            digest=token_secrets.token_digest(token),
            kind=kind,
            client_id=client_id,
            department_id=department_id,
            scope=" ".join(sorted(scopes)),
            audience=audience,
            created_at=now,
            expires_at=now + timedelta(seconds=ttl_seconds),
        )
    )
    session.flush()
    return token
