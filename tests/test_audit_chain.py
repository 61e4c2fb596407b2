"""The audit chain detects every edit, removal, reordering and dropped tail (Hypothesis)."""

from __future__ import annotations

import dataclasses

import nacl.signing
from hypothesis import given, settings
from hypothesis import strategies as st

from vault.audit_chain import GENESIS, ChainEntry, SignedHead, entry_hash, sign_head, verify_chain

KEY = nacl.signing.SigningKey(b"\x01" * 32)
VERIFY = bytes(KEY.verify_key)


def build(n: int) -> tuple[list[ChainEntry], SignedHead]:
    entries, prev = [], GENESIS
    for seq in range(1, n + 1):
        details = {"stream": f"s{seq % 3}", "count": seq}
        digest = entry_hash(
            "c1",
            seq,
            f"2026-01-01T00:00:{seq:02d}.000000Z",
            "citizen",
            "records.read",
            details,
            prev,
        )
        entries.append(
            ChainEntry(
                "c1",
                seq,
                f"2026-01-01T00:00:{seq:02d}.000000Z",
                "citizen",
                "records.read",
                details,
                prev,
                digest,
            )
        )
        prev = digest
    return entries, SignedHead("c1", n, prev, sign_head(KEY, "c1", n, prev))


def test_an_intact_chain_verifies() -> None:
    entries, head = build(5)
    assert verify_chain(entries, head, VERIFY) == []


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(min_value=1, max_value=12),
    data=st.data(),
    field=st.sampled_from(["at", "actor", "action", "details", "citizen_id"]),
)
def test_editing_any_field_of_any_entry_is_detected(
    n: int, data: st.DataObject, field: str
) -> None:
    entries, head = build(n)
    i = data.draw(st.integers(min_value=0, max_value=n - 1))
    new_value = {
        "at": "2030-01-01T00:00:00.000000Z",
        "actor": "department:x",
        "action": "records.appended",
        "details": {"stream": "other"},
        "citizen_id": "c2",
    }[field]
    entries[i] = dataclasses.replace(entries[i], **{field: new_value})
    assert verify_chain(entries, head, VERIFY)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(min_value=2, max_value=12), data=st.data())
def test_removing_any_entry_is_detected(n: int, data: st.DataObject) -> None:
    entries, head = build(n)
    del entries[data.draw(st.integers(min_value=0, max_value=n - 1))]
    assert verify_chain(entries, head, VERIFY)


def test_dropping_the_tail_is_detected_by_the_signed_head() -> None:
    entries, head = build(6)
    assert any("signed head" in p for p in verify_chain(entries[:-1], head, VERIFY))


def test_rewriting_the_whole_chain_needs_the_vault_key() -> None:
    entries, _ = build(4)
    forged_entries = entries[:2]
    forger = nacl.signing.SigningKey.generate()
    forged_head = SignedHead(
        "c1",
        2,
        forged_entries[-1].entry_hash,
        sign_head(forger, "c1", 2, forged_entries[-1].entry_hash),
    )
    assert any("signature" in p for p in verify_chain(forged_entries, forged_head, VERIFY))


def test_reordering_is_detected() -> None:
    entries, head = build(4)
    entries[1], entries[2] = entries[2], entries[1]
    assert verify_chain(entries, head, VERIFY)
