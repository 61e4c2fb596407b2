"""Queries on the authorization server's tables, and on the OAuth rows of ``access_tokens``.

Property: revoking a family revokes every token issued under it in one place
(:func:`revoke_family`): the family row, its refresh tokens and its access tokens, and it destroys
the session keys they carry, so a revoked token can never again open a citizen's root secret.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from vault.models import AccessToken
from vault.oauth.models import (
    OAuthAuthorization,
    OAuthAuthorizationCode,
    OAuthFormNonce,
    OAuthRefreshToken,
)


def family(
    session: Session, family_id: str, *, for_update: bool = False
) -> OAuthAuthorization | None:
    stmt = select(OAuthAuthorization).where(OAuthAuthorization.family_id == family_id)
    if for_update:
        stmt = stmt.with_for_update()
    return session.exec(stmt).first()


def code_by_digest(
    session: Session, digest: str, *, for_update: bool = False
) -> OAuthAuthorizationCode | None:
    stmt = select(OAuthAuthorizationCode).where(OAuthAuthorizationCode.digest == digest)
    if for_update:
        stmt = stmt.with_for_update()
    return session.exec(stmt).first()


def refresh_by_digest(
    session: Session, digest: str, *, for_update: bool = False
) -> OAuthRefreshToken | None:
    stmt = select(OAuthRefreshToken).where(OAuthRefreshToken.digest == digest)
    if for_update:
        stmt = stmt.with_for_update()
    return session.exec(stmt).first()


def oauth_access_token(session: Session, digest: str) -> AccessToken | None:
    """An access token issued by the authorization server (never a citizen's own session)."""
    return session.exec(
        select(AccessToken).where(
            AccessToken.digest == digest, col(AccessToken.client_id).is_not(None)
        )
    ).first()


def revoke_access_token(session: Session, digest: str, now: datetime) -> None:
    session.execute(
        update(AccessToken)
        .where(col(AccessToken.digest) == digest, col(AccessToken.revoked_at).is_(None))
        .values(revoked_at=now, session_key=None)
    )


def revoke_family(session: Session, family_id: str, now: datetime) -> None:
    """Revoke the family and everything issued under it (also when the family row does not exist
    yet, as for a replayed code whose exchange never completed)."""
    session.execute(
        update(OAuthAuthorization)
        .where(
            col(OAuthAuthorization.family_id) == family_id,
            col(OAuthAuthorization.revoked_at).is_(None),
        )
        .values(revoked_at=now)
    )
    session.execute(
        update(OAuthRefreshToken)
        .where(col(OAuthRefreshToken.family_id) == family_id)
        .values(revoked_at=now, session_key=None)
    )
    session.execute(
        update(AccessToken)
        .where(col(AccessToken.family_id) == family_id, col(AccessToken.revoked_at).is_(None))
        .values(revoked_at=now, session_key=None)
    )
    session.flush()


def live_families_for_citizen(
    session: Session, citizen_id: str, now: datetime
) -> Sequence[OAuthAuthorization]:
    return session.exec(
        select(OAuthAuthorization)
        .where(
            OAuthAuthorization.citizen_id == citizen_id,
            col(OAuthAuthorization.revoked_at).is_(None),
            col(OAuthAuthorization.expires_at) > now,
        )
        .order_by(col(OAuthAuthorization.created_at))
    ).all()


def families_of(session: Session, citizen_id: str, client_id: str) -> Sequence[OAuthAuthorization]:
    return session.exec(
        select(OAuthAuthorization).where(
            OAuthAuthorization.citizen_id == citizen_id,
            OAuthAuthorization.client_id == client_id,
        )
    ).all()


def revoke_families_for_citizen(session: Session, citizen_id: str, now: datetime) -> None:
    """Every grant family of the citizen (for a passphrase change or a recovery: all sessions end,
    the citizen app's refresh tokens included)."""
    ids = session.exec(
        select(OAuthAuthorization.family_id).where(
            OAuthAuthorization.citizen_id == citizen_id,
            col(OAuthAuthorization.revoked_at).is_(None),
        )
    ).all()
    for family_id in ids:
        revoke_family(session, family_id, now)
    session.execute(
        update(OAuthAuthorizationCode)
        .where(col(OAuthAuthorizationCode.citizen_id) == citizen_id)
        .values(used_at=now, root_wrapped=None)
    )


def delete_for_citizen(session: Session, citizen_id: str) -> None:
    """Erasure: every OAuth row about the citizen, wrapped root secrets first."""
    ids = list(
        session.exec(
            select(OAuthAuthorization.family_id).where(OAuthAuthorization.citizen_id == citizen_id)
        ).all()
    )
    ids += list(
        session.exec(
            select(OAuthAuthorizationCode.family_id).where(
                OAuthAuthorizationCode.citizen_id == citizen_id
            )
        ).all()
    )
    if ids:
        session.execute(delete(OAuthRefreshToken).where(col(OAuthRefreshToken.family_id).in_(ids)))
    session.execute(
        delete(OAuthAuthorizationCode).where(col(OAuthAuthorizationCode.citizen_id) == citizen_id)
    )
    session.execute(
        delete(OAuthAuthorization).where(col(OAuthAuthorization.citizen_id) == citizen_id)
    )
    session.flush()


def use_form_nonce(session: Session, nonce: str, expires_at: datetime, now: datetime) -> bool:
    """Record ``nonce`` as used; ``False`` if it was used before (a replayed form)."""
    session.execute(delete(OAuthFormNonce).where(col(OAuthFormNonce.expires_at) < now))
    if session.get(OAuthFormNonce, nonce) is not None:
        return False
    try:
        with session.begin_nested():  # a concurrent twin fails here, not at commit
            session.add(OAuthFormNonce(nonce=nonce, expires_at=expires_at))
    except IntegrityError:
        return False
    return True


def purge_expired(session: Session, now: datetime) -> None:
    """Housekeeping: codes and refresh tokens past their end, nonces past theirs."""
    session.execute(
        delete(OAuthAuthorizationCode).where(col(OAuthAuthorizationCode.expires_at) < now)
    )
    session.execute(delete(OAuthRefreshToken).where(col(OAuthRefreshToken.expires_at) < now))
    session.execute(delete(OAuthFormNonce).where(col(OAuthFormNonce.expires_at) < now))
