"""The audit chain, pure: how an entry is hashed, how a head is signed, how a chain is verified.

Each entry's hash is SHA-256 over the canonical JSON of its fields and the previous entry's hash
(the first entry links to :data:`GENESIS`). The head (last sequence number and hash) is signed with
the vault's audit key.

Property: editing any field of any entry, removing or reordering entries, or dropping the tail is
reported by :func:`verify_chain`; rewriting the whole chain is caught by the head signature, which
needs the vault's audit key (kept outside the database).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import nacl.exceptions
import nacl.signing

from consent.canonical import canonical_json

GENESIS = "0" * 64


@dataclass(frozen=True)
class ChainEntry:
    citizen_id: str
    seq: int
    at: str
    actor: str
    action: str
    details: dict[str, Any]
    prev_hash: str
    entry_hash: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "citizen_id": self.citizen_id,
            "seq": self.seq,
            "at": self.at,
            "actor": self.actor,
            "action": self.action,
            "details": self.details,
            "prev_hash": self.prev_hash,
            "entry_hash": self.entry_hash,
        }


@dataclass(frozen=True)
class SignedHead:
    citizen_id: str
    seq: int
    entry_hash: str
    signature: bytes


def entry_hash(
    citizen_id: str, seq: int, at: str, actor: str, action: str, details: dict[str, Any], prev: str
) -> str:
    body = {
        "citizen_id": citizen_id,
        "seq": seq,
        "at": at,
        "actor": actor,
        "action": action,
        "details": details,
        "prev_hash": prev,
    }
    return hashlib.sha256(canonical_json(body)).hexdigest()


def head_message(citizen_id: str, seq: int, head_hash: str) -> bytes:
    return canonical_json({"audit_head": {"citizen_id": citizen_id, "seq": seq, "hash": head_hash}})


def sign_head(key: nacl.signing.SigningKey, citizen_id: str, seq: int, head_hash: str) -> bytes:
    return bytes(key.sign(head_message(citizen_id, seq, head_hash)).signature)


def verify_chain(
    entries: Sequence[ChainEntry], head: SignedHead | None, audit_verify_key: bytes
) -> list[str]:
    """Return every problem found (an empty list means the chain is intact)."""
    problems: list[str] = []
    prev = GENESIS
    for expected_seq, entry in enumerate(entries, start=1):
        if entry.seq != expected_seq:
            problems.append(
                f"entry {expected_seq}: found sequence {entry.seq} (removed or reordered)"
            )
        if entry.prev_hash != prev:
            problems.append(f"entry {entry.seq}: does not link to the entry before it")
        recomputed = entry_hash(
            entry.citizen_id,
            entry.seq,
            entry.at,
            entry.actor,
            entry.action,
            entry.details,
            entry.prev_hash,
        )
        if recomputed != entry.entry_hash:
            problems.append(f"entry {entry.seq}: content was changed after it was written")
        prev = entry.entry_hash
    if head is None:
        if entries:
            problems.append("the signed chain head is missing")
        return problems
    if head.seq != len(entries) or head.entry_hash != prev:
        problems.append(
            f"the signed head names entry {head.seq} but the chain ends at entry {len(entries)}"
            " (entries were removed or added)"
        )
    try:
        nacl.signing.VerifyKey(audit_verify_key).verify(
            head_message(head.citizen_id, head.seq, head.entry_hash), head.signature
        )
    except (nacl.exceptions.BadSignatureError, ValueError):
        problems.append("the chain head's signature is not the vault's")
    return problems
