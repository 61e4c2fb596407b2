"""Queries on access tokens (stored as digests)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, update
from sqlmodel import Session, col, select

from vault.models import AccessToken


def by_digest(session: Session, digest: str) -> AccessToken | None:
    return session.exec(select(AccessToken).where(AccessToken.digest == digest)).first()


def revoke_for_citizen(session: Session, citizen_id: str, now: datetime) -> None:
    session.execute(
        update(AccessToken)
        .where(col(AccessToken.citizen_id) == citizen_id, col(AccessToken.revoked_at).is_(None))
        .values(revoked_at=now, session_key=None)
    )


def delete_for_citizen(session: Session, citizen_id: str) -> None:
    session.execute(delete(AccessToken).where(col(AccessToken.citizen_id) == citizen_id))


def delete_expired(session: Session, now: datetime) -> int:
    result = session.execute(delete(AccessToken).where(col(AccessToken.expires_at) < now))
    return int(getattr(result, "rowcount", 0) or 0)
