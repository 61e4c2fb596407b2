"""The opened-keys memo (aggregation.opened_keys): a hit returns exactly what opening returns now;
altered sealed bytes or another opener are never answered from it; failures are not remembered;
entries expire; and a release's frame is the same with and without it, cold and warm."""

from __future__ import annotations

import dataclasses

import nacl.public
import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregation.contributions import decrypt_and_bound
from aggregation.opened_keys import OpenedKeys
from aggregation.scale_out import ThreadShardRunner
from tests.conftest import DEFAULT_PASSPHRASE, Citizen
from tests.test_aggregation_bounding import _sealed_citizen, profiles, records, spec
from vault.crypto.sealing import SealedOpenError, open_sealed_with, seal_to

CITIZEN = "citizen"


class Counting:
    """Counts the opens that reach libsodium, through the memo's one call."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0

        def counted(public: bytes, private: bytes, sealed: bytes) -> bytes:
            self.calls += 1
            return open_sealed_with(public, private, sealed)

        monkeypatch.setattr("aggregation.opened_keys.open_sealed_with", counted)


def pair() -> tuple[bytes, bytes]:
    key = nacl.public.PrivateKey.generate()
    return bytes(key.public_key), bytes(key)


@settings(max_examples=60, deadline=None)
@given(
    secrets=st.lists(st.binary(min_size=1, max_size=64), min_size=1, max_size=6),
    flips=st.lists(st.tuples(st.integers(0, 5), st.integers(0, 200)), max_size=8),
    order=st.randoms(use_true_random=False),
)
def test_the_memo_answers_exactly_as_opening_does(
    secrets: list[bytes], flips: list[tuple[int, int]], order: object
) -> None:
    """For any sequence of sealed boxes, some altered, opened by the right key or another one,
    the memo returns what ``open_sealed_with`` returns (or raises as it raises)."""
    mine, other = pair(), pair()
    memo = OpenedKeys(max_age_seconds=900)
    boxes = [seal_to(mine[0], s) for s in secrets]
    for index, position in flips:
        box = boxes[index % len(boxes)]
        at = position % len(box)
        boxes.append(box[:at] + bytes([box[at] ^ 0x01]) + box[at + 1 :])
    attempts = [(opener, box) for box in boxes for opener in (mine, other)] * 2
    order.shuffle(attempts)  # type: ignore[attr-defined]
    for (public, private), box in attempts:
        try:
            expected: bytes | None = open_sealed_with(public, private, box)
        except SealedOpenError:
            expected = None
        if expected is None:
            with pytest.raises(SealedOpenError):
                memo.open(public, private, box)
        else:
            assert memo.open(public, private, box) == expected


def test_a_second_open_is_remembered_and_a_failure_is_not(monkeypatch: pytest.MonkeyPatch) -> None:
    counting = Counting(monkeypatch)
    public, private = pair()
    memo = OpenedKeys(max_age_seconds=900)
    box = seal_to(public, b"stream key")
    assert memo.open(public, private, box) == b"stream key"
    assert memo.open(public, private, box) == b"stream key"
    assert counting.calls == 1
    wrong = box[:-1] + bytes([box[-1] ^ 1])
    for _ in range(2):
        with pytest.raises(SealedOpenError):
            memo.open(public, private, wrong)
    assert counting.calls == 3  # each failed attempt opened again
    assert len(memo) == 1


def test_entries_expire_and_the_memo_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    counting = Counting(monkeypatch)
    now = [0.0]
    public, private = pair()
    memo = OpenedKeys(max_age_seconds=60, max_entries=3, clock=lambda: now[0])
    boxes = [seal_to(public, bytes([i])) for i in range(4)]
    memo.open(public, private, boxes[0])
    now[0] = 59.0
    memo.open(public, private, boxes[0])
    assert counting.calls == 1
    now[0] = 61.0  # older than a minute: every key is forgotten
    memo.open(public, private, boxes[0])
    assert counting.calls == 2
    for box in boxes:
        memo.open(public, private, box)
    assert len(memo) <= 3


def test_zero_seconds_turns_the_memo_off(monkeypatch: pytest.MonkeyPatch) -> None:
    counting = Counting(monkeypatch)
    public, private = pair()
    memo = OpenedKeys(max_age_seconds=0)
    box = seal_to(public, b"k")
    memo.open(public, private, box)
    memo.open(public, private, box)
    assert counting.calls == 2 and len(memo) == 0


def test_a_release_frame_is_the_same_cold_warm_and_without_the_memo() -> None:
    """Warm (every key remembered) gives the byte-identical frame of cold and of no memo; a chunk
    tampered after a warm query still leaves that citizen out; a key from another service opens
    nothing even with a warm memo."""
    service = nacl.public.PrivateKey.generate()
    energy = records({"a": 6, "b": 9}).drop(CITIZEN)
    shard = [
        _sealed_citizen(c, energy.head(n), profiles({c: d}).drop(CITIZEN), service)
        for c, n, d in (("a", 6, "Old Town"), ("b", 9, "Harbour"))
    ]
    memo = OpenedKeys(max_age_seconds=900)
    plain = decrypt_and_bound(shard, bytes(service), spec(4))
    cold = decrypt_and_bound(shard, bytes(service), spec(4), memo)
    assert len(memo) == 8  # 2 citizens x (2 grants + 2 chunk keys)
    warm = decrypt_and_bound(shard, bytes(service), spec(4), memo)
    assert plain.write_ipc(None).getvalue() == cold.write_ipc(None).getvalue()
    assert warm.write_ipc(None).getvalue() == cold.write_ipc(None).getvalue()

    bad = shard[1].records[0]
    flipped = bad.ciphertext[:-1] + bytes([bad.ciphertext[-1] ^ 1])
    tampered = dataclasses.replace(
        shard[1], records=(dataclasses.replace(bad, ciphertext=flipped),)
    )
    assert set(decrypt_and_bound([shard[0], tampered], bytes(service), spec(4), memo)[CITIZEN]) == {
        "a"
    }
    resealed = dataclasses.replace(
        shard[1], records=(dataclasses.replace(bad, sealed_key=bad.sealed_key[::-1]),)
    )
    assert set(decrypt_and_bound([shard[0], resealed], bytes(service), spec(4), memo)[CITIZEN]) == {
        "a"
    }
    other = nacl.public.PrivateKey.generate()
    assert decrypt_and_bound(shard, bytes(other), spec(4), memo).height == 0


def test_erasing_a_citizen_empties_the_memo(client: TestClient, alice: Citizen) -> None:
    """Keys opened for queries leave this process's memory when a citizen is erased (with the
    citizen's rows), not only when they expire."""
    runner = client.app.state.aggregation.runner  # type: ignore[attr-defined]
    assert isinstance(runner, ThreadShardRunner)
    public, private = pair()
    runner.opened.open(public, private, seal_to(public, b"a stream key"))
    assert len(runner.opened) == 1
    r = client.request(
        "DELETE", "/v1/me", json={"passphrase": DEFAULT_PASSPHRASE}, headers=alice.auth
    )
    assert r.status_code == 200, r.text
    assert len(runner.opened) == 0
