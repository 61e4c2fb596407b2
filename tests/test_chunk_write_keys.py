"""Per-writer-session chunk keys (vault.chunk_write_keys): a stream's consecutive chunks share one
sealed chunk key, within limits, and nothing about reading, integrity or erasure changes."""

from __future__ import annotations

import nacl.public
import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from tests.conftest import Citizen, register
from vault.chunk_write_keys import WriterChunkKeys
from vault.crypto.chunk_cipher import (
    ChunkIntegrityError,
    decrypt_with_key,
    encrypt_chunk_under,
    open_chunk_key,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _public() -> tuple[nacl.public.PrivateKey, bytes]:
    private = nacl.public.PrivateKey.generate()
    return private, bytes(private.public_key)


# -- the memory of keys ------------------------------------------------------------------------


def test_one_key_per_stream_until_its_uses_run_out() -> None:
    _, public = _public()
    keys = WriterChunkKeys(max_age_seconds=60, max_uses=3)
    first = [keys.key_for("c", "s", public) for _ in range(3)]
    assert first[0] == first[1] == first[2]
    fourth = keys.key_for("c", "s", public)
    assert fourth.key != first[0].key and fourth.sealed_key != first[0].sealed_key


def test_a_key_expires_after_its_age() -> None:
    clock = FakeClock()
    _, public = _public()
    keys = WriterChunkKeys(max_age_seconds=10, clock=clock)
    a = keys.key_for("c", "s", public)
    clock.now = 10.0
    assert keys.key_for("c", "s", public) == a
    clock.now = 10.5
    assert keys.key_for("c", "s", public) != a


def test_expired_keys_leave_memory_without_being_asked_for_again() -> None:
    clock = FakeClock()
    keys = WriterChunkKeys(max_age_seconds=5, clock=clock)
    for i in range(20):
        keys.key_for("c", f"s{i}", _public()[1])
    assert len(keys) == 20
    clock.now = 100.0
    keys.key_for("c", "other", _public()[1])
    assert len(keys) == 1


def test_streams_and_stream_keys_never_share_a_key() -> None:
    _, public_a = _public()
    _, public_b = _public()
    keys = WriterChunkKeys(max_age_seconds=60)
    a = keys.key_for("c", "s1", public_a)
    assert keys.key_for("c", "s2", public_a) != a  # another stream
    rotated = keys.key_for("c", "s1", public_b)  # the stream's key changed (a withdrawal)
    assert rotated != a
    assert keys.key_for("c", "s1", public_b) == rotated
    assert keys.key_for("c", "s1", public_a) != a  # the old generation is not brought back


def test_zero_seconds_gives_every_chunk_its_own_key() -> None:
    _, public = _public()
    keys = WriterChunkKeys(max_age_seconds=0)
    assert keys.key_for("c", "s", public) != keys.key_for("c", "s", public)
    assert len(keys) == 0


def test_forget_citizen_drops_only_that_citizens_keys() -> None:
    _, public = _public()
    keys = WriterChunkKeys(max_age_seconds=60)
    mine = keys.key_for("erased", "s1", public)
    theirs = keys.key_for("kept", "s2", public)
    keys.forget_citizen("erased")
    assert len(keys) == 1
    assert keys.key_for("kept", "s2", public) == theirs
    assert keys.key_for("erased", "s1", public) != mine


@settings(max_examples=40, deadline=None)
@given(
    plaintexts=st.lists(st.binary(max_size=200), min_size=1, max_size=6),
    tamper=st.integers(min_value=0, max_value=10_000),
)
def test_chunks_under_a_shared_key_open_only_with_their_own_associated_data(
    plaintexts: list[bytes], tamper: int
) -> None:
    """Property: every chunk under a shared key opens with the stream's private key and its own
    associated data only; nonces never repeat; any flipped ciphertext byte fails."""
    private, public = _public()
    keys = WriterChunkKeys(max_age_seconds=60)
    sealed = [
        encrypt_chunk_under(p, f"seq={i}".encode(), keys.key_for("c", "s", public))
        for i, p in enumerate(plaintexts)
    ]
    assert len({s.sealed_key for s in sealed}) == 1
    assert len({s.ciphertext[:24] for s in sealed}) == len(sealed)  # the nonces
    key = open_chunk_key(private, sealed[0].sealed_key)
    for i, (p, s) in enumerate(zip(plaintexts, sealed, strict=True)):
        assert decrypt_with_key(key, s.ciphertext, f"seq={i}".encode()) == p
        if len(sealed) > 1:
            with pytest.raises(ChunkIntegrityError):
                decrypt_with_key(key, s.ciphertext, f"seq={(i + 1) % len(sealed)}".encode())
    victim = sealed[tamper % len(sealed)]
    flipped = bytearray(victim.ciphertext)
    flipped[tamper % len(flipped)] ^= 0x01
    with pytest.raises(ChunkIntegrityError):
        decrypt_with_key(key, bytes(flipped), f"seq={tamper % len(sealed)}".encode())


# -- through the service -----------------------------------------------------------------------


def _chunk_rows(client: TestClient) -> list[tuple[int, bytes]]:
    engine = client.app.state.vault.engine  # type: ignore[attr-defined]
    with engine.connect() as db:
        rows = db.execute(text("SELECT seq, sealed_key FROM chunks ORDER BY seq")).all()
    return [(int(seq), bytes(key)) for seq, key in rows]


def _append(alice: Citizen, stream_id: str, kwh: float) -> None:
    answer = alice.client.post(
        f"/v1/me/streams/{stream_id}/records",
        json=[{"ts": "2026-03-01T00:00:00Z", "kwh": kwh}],
        headers=alice.auth,
    )
    assert answer.status_code == 201, answer.text


def test_single_appends_share_a_sealed_key_and_read_back(client: TestClient) -> None:
    alice = register(client, "alice")
    stream_id = alice.stream("energy.consumption")
    for i in range(5):
        _append(alice, stream_id, float(i))
    rows = _chunk_rows(client)
    assert len(rows) == 5
    assert len({key for _, key in rows}) == 1
    records = client.get(f"/v1/me/streams/{stream_id}/records", headers=alice.auth).json()
    assert [r["kwh"] for r in records["records"]] == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_a_flipped_copy_of_a_shared_sealed_key_fails_only_its_own_chunk(
    client: TestClient,
) -> None:
    alice = register(client, "alice")
    stream_id = alice.stream("energy.consumption")
    for i in range(8):
        _append(alice, stream_id, float(i))
    # The last chunk: the reader opens chunks in order on two threads, so by then the shared key
    # has long been opened from an intact copy (a memo keyed too loosely would hand it over).
    key = dict(_chunk_rows(client))[7]
    flipped = bytearray(key)
    flipped[-1] ^= 0x01
    engine = client.app.state.vault.engine  # type: ignore[attr-defined]
    with engine.begin() as db:
        db.execute(text("UPDATE chunks SET sealed_key = :v WHERE seq = 7"), {"v": bytes(flipped)})
    answer = client.get(f"/v1/me/streams/{stream_id}/records", headers=alice.auth)
    assert answer.status_code == 500, answer.text
    body = answer.json()
    assert body["code"] == "integrity_error"
    # Only the chunk whose copy of the shared sealed key was changed fails: the reader opens each
    # distinct sealed key on its own, so a changed copy never borrows its neighbours' opening.
    assert [d["seq"] for d in body["details"]] == [7]
    assert body["details"][0]["chunk_id"] in body["message"]


def test_erasure_forgets_the_citizens_writer_keys(client: TestClient) -> None:
    alice = register(client, "alice")
    bob = register(client, "bob")
    _append(alice, alice.stream("energy.consumption"), 1.0)
    _append(bob, bob.stream("energy.consumption"), 2.0)
    writer_keys = client.app.state.vault.chunks.writer_keys  # type: ignore[attr-defined]
    assert len(writer_keys) == 2
    gone = client.request(
        "DELETE", "/v1/me", json={"passphrase": alice.passphrase}, headers=alice.auth
    )
    assert gone.status_code in (200, 204), gone.text
    assert len(writer_keys) == 1
