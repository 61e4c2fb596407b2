"""Queries on citizens."""

from __future__ import annotations

from sqlmodel import Session, select

from vault.models import Citizen


def by_handle(session: Session, handle: str) -> Citizen | None:
    return session.exec(select(Citizen).where(Citizen.handle == handle)).first()


def by_id(session: Session, citizen_id: str, *, for_update: bool = False) -> Citizen | None:
    if not for_update:
        return session.get(Citizen, citizen_id)  # the session's identity map first
    stmt = select(Citizen).where(Citizen.id == citizen_id)
    if for_update:
        stmt = stmt.with_for_update()
    return session.exec(stmt).first()


def handle_taken(session: Session, handle: str) -> bool:
    return by_handle(session, handle) is not None
