"""Queries on audit entries and chain heads."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete
from sqlmodel import Session, col, select

from vault.models import AuditEntry, AuditHead


def head(session: Session, citizen_id: str, *, for_update: bool = False) -> AuditHead | None:
    stmt = select(AuditHead).where(AuditHead.citizen_id == citizen_id)
    if for_update:
        stmt = stmt.with_for_update()
    return session.exec(stmt).first()


def entries(
    session: Session, citizen_id: str, *, after_seq: int = 0, limit: int | None = None
) -> Sequence[AuditEntry]:
    stmt = (
        select(AuditEntry)
        .where(AuditEntry.citizen_id == citizen_id, col(AuditEntry.seq) > after_seq)
        .order_by(col(AuditEntry.seq))
    )
    if limit is not None:
        stmt = stmt.limit(limit)
    return session.exec(stmt).all()


def delete_for_citizen(session: Session, citizen_id: str) -> None:
    session.execute(delete(AuditEntry).where(col(AuditEntry.citizen_id) == citizen_id))
    session.execute(delete(AuditHead).where(col(AuditHead.citizen_id) == citizen_id))
