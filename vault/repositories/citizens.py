"""Queries on citizens."""

from __future__ import annotations

from collections.abc import Iterable

from sqlmodel import Session, select

from vault.models import Citizen
from vault.repositories import driver_sql


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


def verify_keys(session: Session, citizen_ids: Iterable[str]) -> dict[str, bytes]:
    """Each citizen's Ed25519 verify key (the one their consents must verify under), by id (read
    on the driver: a city-wide statistic asks for every citizen's)."""
    ids = sorted(set(citizen_ids))
    out: dict[str, bytes] = {}
    for first in range(0, len(ids), 5000):
        part = ids[first : first + 5000]
        rows = driver_sql.fetch_all(
            session,
            "SELECT id, verify_key FROM citizens "  # noqa: S608
            f"WHERE id IN ({driver_sql.placeholders(len(part))})",
            part,
        )
        out.update({cid: bytes(key) for cid, key in rows})
    return out
