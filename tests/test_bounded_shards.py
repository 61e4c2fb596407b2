"""The bounded-shards memo (aggregation.bounded_shards): a hit is exactly the frame the stage would
compute; any changed input byte misses; shards follow citizens, not positions; the memo expires,
is bounded and forgets on erasure; and a service query gives the same frame warm and cold."""

from __future__ import annotations

import dataclasses

import nacl.public
import polars as pl
import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregation.bounded_shards import (
    BoundedShards,
    bound_shards,
    shard_by_citizen,
    shard_digest,
)
from aggregation.contributions import BoundSpec, decrypt_and_bound
from aggregation.sealed_material import SealedCitizen
from tests.conftest import DEFAULT_PASSPHRASE, Citizen
from tests.test_aggregation_bounding import _sealed_citizen, profiles, records, spec
from vault.crypto.sealing import public_key_of

CITIZEN = "citizen"
DISTRICTS = ("Old Town", "Harbour", "Riverside")


def _city(counts: dict[str, int], service: nacl.public.PrivateKey) -> list[SealedCitizen]:
    energy = records(counts).drop(CITIZEN)
    return [
        _sealed_citizen(c, energy.head(n), profiles({c: DISTRICTS[i % 3]}).drop(CITIZEN), service)
        for i, (c, n) in enumerate(sorted(counts.items()))
    ]


def _bytes(frame: pl.DataFrame) -> bytes:
    return frame.write_ipc(None).getvalue()


def _flip(value: bytes, at: int) -> bytes:
    at %= len(value)
    return value[:at] + bytes([value[at] ^ 0x01]) + value[at + 1 :]


def _variants(citizen: SealedCitizen, at: int) -> list[SealedCitizen]:
    """``citizen`` with one input changed, in each place the stage reads."""
    chunk = citizen.records[0]
    key_id, sealed, public = citizen.grants[0]
    changed_chunks = [
        dataclasses.replace(chunk, ciphertext=_flip(chunk.ciphertext, at)),
        dataclasses.replace(chunk, sealed_key=_flip(chunk.sealed_key, at)),
        dataclasses.replace(chunk, seq=chunk.seq + 1),
        dataclasses.replace(chunk, schema_version=chunk.schema_version + 1),
        dataclasses.replace(chunk, chunk_id=chunk.chunk_id + "x"),
        dataclasses.replace(chunk, stream_id=chunk.stream_id + "x"),
        dataclasses.replace(chunk, stream_key_id=chunk.stream_key_id + "x"),
        dataclasses.replace(chunk, format="json-rows"),
    ]
    out = [dataclasses.replace(citizen, records=(c, *citizen.records[1:])) for c in changed_chunks]
    out.append(dataclasses.replace(citizen, consent_id=citizen.consent_id + "x"))
    out.append(dataclasses.replace(citizen, citizen_id=citizen.citizen_id + "x"))
    out.append(dataclasses.replace(citizen, profile=()))
    out.append(
        dataclasses.replace(
            citizen, grants=((key_id, _flip(sealed, at), public), *citizen.grants[1:])
        )
    )
    out.append(dataclasses.replace(citizen, grants=citizen.grants[1:]))
    return out


@settings(max_examples=25, deadline=None)
@given(
    counts=st.dictionaries(
        st.sampled_from(["a", "b", "c", "d"]), st.integers(1, 12), min_size=1, max_size=4
    ),
    k=st.integers(1, 6),
    at=st.integers(0, 10_000),
)
def test_a_hit_is_the_frame_the_stage_computes_and_any_change_misses(
    counts: dict[str, int], k: int, at: int
) -> None:
    """Property: the digest covers every input; equal digests only for equal inputs, whose frames
    are byte-identical; each single change of a citizen's material, the key or the spec misses."""
    service = nacl.public.PrivateKey.generate()
    public = public_key_of(bytes(service))
    shard = _city(counts, service)
    memo = BoundedShards(max_age_seconds=900)
    digest = shard_digest(shard, public, spec(k))
    frame = decrypt_and_bound(shard, bytes(service), spec(k))
    memo.put(digest, frame)
    again = _city(counts, service)  # fresh objects, same values: (chunks are sealed anew)
    assert shard_digest(list(shard), public, spec(k)) == digest
    hit = memo.get(digest)
    assert hit is not None and _bytes(hit) == _bytes(
        decrypt_and_bound(shard, bytes(service), spec(k))
    )
    assert shard_digest(again, public, spec(k)) != digest  # new ciphertexts, new random nonces

    seen = {digest}
    for variant in _variants(shard[0], at):
        changed = shard_digest([variant, *shard[1:]], public, spec(k))
        assert changed not in seen
        assert memo.get(changed) is None
        seen.add(changed)
    other = public_key_of(bytes(nacl.public.PrivateKey.generate()))
    for key, bound in (
        (other, spec(k)),
        (public, spec(k + 1)),
        (public, spec(k, numeric_bounds=(("kwh", 0.0, 10.0),))),
        (public, spec(k, group_by=())),
    ):
        changed = shard_digest(shard, key, bound)
        assert changed not in seen
        seen.add(changed)
    if len(shard) > 1:
        assert shard_digest(shard[::-1], public, spec(k)) != digest


@settings(max_examples=40, deadline=None)
@given(
    ids=st.sets(st.text("0123456789abcdef", min_size=6, max_size=12), min_size=0, max_size=300),
    newcomer=st.text("0123456789abcdef", min_size=13, max_size=13),
    size=st.integers(1, 64),
)
def test_shards_follow_citizens_not_positions(ids: set[str], newcomer: str, size: int) -> None:
    """Every citizen is in exactly one shard, in the input's order; a citizen's shard does not
    depend on who else is there, so one more citizen changes one shard (while the number of
    shards stays the same)."""

    def citizen(cid: str) -> SealedCitizen:
        return SealedCitizen(cid, "consent-" + cid, (), (), ())

    population = [citizen(c) for c in sorted(ids)]
    shards = shard_by_citizen(population, size)
    flat = [c.citizen_id for s in shards for c in s]
    assert sorted(flat) == sorted(ids) and len(flat) == len(ids)
    for s in shards:
        assert [c.citizen_id for c in s] == sorted(c.citizen_id for c in s)
    grown = sorted([*population, citizen(newcomer)], key=lambda c: c.citizen_id)
    after = shard_by_citizen(grown, size)
    if len(after) == len(shards) and len(shards) > 1:
        before_sets = {tuple(c.citizen_id for c in s) for s in shards}
        after_sets = {tuple(c.citizen_id for c in s) for s in after}
        assert len(after_sets - before_sets) == 1


def test_entries_expire_are_bounded_and_forgotten() -> None:
    now = [0.0]
    memo = BoundedShards(max_age_seconds=60, max_rows=10, clock=lambda: now[0])
    rows = pl.DataFrame({CITIZEN: ["a"] * 4, "kwh": [1.0] * 4})
    memo.put(b"one", rows)
    now[0] = 30.0
    memo.put(b"two", rows)
    assert memo.get(b"one") is not None and memo.get(b"two") is not None
    now[0] = 45.0
    memo.put(b"three", rows)  # 12 rows > 10: the oldest goes
    assert memo.get(b"one") is None and memo.get(b"three") is not None
    now[0] = 91.0  # "two" is 61 s old, "three" 46 s
    assert memo.get(b"two") is None and memo.get(b"three") is not None
    memo.forget()
    assert memo.get(b"three") is None and len(memo) == 0
    memo.put(b"huge", pl.DataFrame({CITIZEN: ["a"] * 11}))
    assert memo.get(b"huge") is None  # larger than the whole memo: not kept


def test_zero_seconds_turns_the_memo_off() -> None:
    memo = BoundedShards(max_age_seconds=0)
    memo.put(b"d", pl.DataFrame({CITIZEN: ["a"]}))
    assert not memo.enabled and memo.get(b"d") is None and len(memo) == 0


@pytest.mark.parametrize("memo_seconds", [900.0, 0.0])
def test_the_service_frame_is_the_same_warm_cold_and_without_the_memo(
    memo_seconds: float,
) -> None:
    """Through ``bound_shards`` (what ``QueryService.bounded_frame`` calls): the second query
    reuses every shard and gives the byte-identical frame; a changed chunk is recomputed."""
    from aggregation.contributions import combine
    from aggregation.scale_out import ThreadShardRunner

    service = nacl.public.PrivateKey.generate()
    city = _city({c: 3 + i % 7 for i, c in enumerate("abcdefghijklmnop")}, service)
    runner = ThreadShardRunner(2)
    memo = BoundedShards(max_age_seconds=memo_seconds)
    computed: list[int] = []

    def run(shards: list[list[SealedCitizen]], key: bytes, bound: BoundSpec) -> list[pl.DataFrame]:
        computed.append(len(shards))
        return runner.run(shards, key, bound)

    def frame(citizens: list[SealedCitizen]) -> bytes:
        shards = shard_by_citizen(citizens, 4)
        return _bytes(combine(bound_shards(shards, bytes(service), spec(3), run, memo), spec(3)))

    direct = _bytes(combine([decrypt_and_bound(city, bytes(service), spec(3))], spec(3)))
    cold = frame(city)
    warm = frame(city)
    assert cold == warm == direct
    if memo_seconds:
        assert computed == [4, 0]
    changed = list(city)
    bad = changed[5].records[0]
    changed[5] = dataclasses.replace(
        changed[5], records=(dataclasses.replace(bad, ciphertext=_flip(bad.ciphertext, 3)),)
    )
    after = frame(changed)
    assert after == _bytes(combine([decrypt_and_bound(changed, bytes(service), spec(3))], spec(3)))
    assert after != warm  # the tampered citizen is left out
    if memo_seconds:
        assert computed[-1] == 1


def test_erasing_a_citizen_empties_the_memo(client: TestClient, alice: Citizen) -> None:
    """Bounded frames leave this process's memory when a citizen is erased, not only when they
    expire."""
    frames = client.app.state.aggregation.queries.frames  # type: ignore[attr-defined]
    assert frames.enabled
    frames.put(b"a shard", pl.DataFrame({CITIZEN: [alice.citizen_id], "kwh": [1.0]}))
    assert len(frames) == 1
    r = client.request(
        "DELETE", "/v1/me", json={"passphrase": DEFAULT_PASSPHRASE}, headers=alice.auth
    )
    assert r.status_code == 200, r.text
    assert len(frames) == 0
