"""Appending to and reading a citizen's audit chain (the single place that writes audit entries)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import nacl.signing
from sqlmodel import Session

from consent.canonical import canonical_json
from vault.audit_chain import GENESIS, ChainEntry, SignedHead, entry_hash, sign_head, verify_chain
from vault.clock import iso, utcnow
from vault.models import AuditEntry
from vault.repositories import audit as audit_repo
from vault.repositories import write_path


@dataclass(frozen=True)
class AuditView:
    entries: list[ChainEntry]
    head: SignedHead | None
    problems: list[str]

    @property
    def intact(self) -> bool:
        return not self.problems


def to_chain_entry(row: AuditEntry) -> ChainEntry:
    return ChainEntry(
        citizen_id=row.citizen_id,
        seq=row.seq,
        at=row.at,
        actor=row.actor,
        action=row.action,
        details=json.loads(row.details),
        prev_hash=row.prev_hash,
        entry_hash=row.entry_hash,
    )


class AuditLog:
    """Append-only, hash-chained, per citizen; the head is signed with the vault's audit key."""

    def __init__(self, signing_key: nacl.signing.SigningKey) -> None:
        self._key = signing_key

    @property
    def verify_key(self) -> bytes:
        return bytes(self._key.verify_key)

    def append(
        self, session: Session, citizen_id: str, actor: str, action: str, details: dict[str, Any]
    ) -> ChainEntry:
        """Add one entry at the end of the citizen's chain and re-sign the head.

        Runs on every read and write of citizen data, so it uses the plain statements of
        ``vault.repositories.write_path``. On PostgreSQL the head row is locked, so concurrent
        appends for one citizen queue up instead of forking the chain.
        """
        head = write_path.audit_head_for_update(session, citizen_id)
        seq = 1 if head is None else head[0] + 1
        prev = GENESIS if head is None else head[1]
        at = iso(utcnow())
        digest = entry_hash(citizen_id, seq, at, actor, action, details, prev)
        write_path.append_audit_entry(
            session,
            citizen_id=citizen_id,
            seq=seq,
            at=at,
            actor=actor,
            action=action,
            details=canonical_json(details).decode("utf-8"),
            prev_hash=prev,
            entry_hash=digest,
            signature=sign_head(self._key, citizen_id, seq, digest),
            first=head is None,
        )
        return ChainEntry(citizen_id, seq, at, actor, action, details, prev, digest)

    def read(self, session: Session, citizen_id: str) -> AuditView:
        rows = audit_repo.entries(session, citizen_id)
        head_row = audit_repo.head(session, citizen_id)
        chain = [to_chain_entry(r) for r in rows]
        head = (
            None
            if head_row is None
            else SignedHead(citizen_id, head_row.seq, head_row.entry_hash, head_row.signature)
        )
        return AuditView(chain, head, verify_chain(chain, head, self.verify_key))
