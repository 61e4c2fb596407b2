"""Queries on remembered idempotent batches."""

from __future__ import annotations

from sqlalchemy import delete
from sqlmodel import Session, col, select

from vault.models import IdempotentBatch


def find(session: Session, citizen_id: str, key_digest: str) -> IdempotentBatch | None:
    return session.exec(
        select(IdempotentBatch).where(
            IdempotentBatch.citizen_id == citizen_id, IdempotentBatch.key_digest == key_digest
        )
    ).first()


def delete_for_citizen(session: Session, citizen_id: str) -> None:
    session.execute(delete(IdempotentBatch).where(col(IdempotentBatch.citizen_id) == citizen_id))
