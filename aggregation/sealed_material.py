"""What a release reads, still sealed: for each contributing consent, the citizen's chunks of the
dataset (and of their profile, for district and age-band groups) and the grants that open their
stream keys for the aggregation service.

Plain, picklable values, so that the decrypt-and-bound stage can run in threads here or on Dask
workers elsewhere (:mod:`aggregation.contributions`). Built from rows by :func:`gather_sealed`,
which only ever takes grants of consents that passed the consent gate, made for exactly the terms
that were verified (the same rule as ``ConsentRegistry.grant_opener``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlmodel import Session

from aggregation import repository
from aggregation.datasets import PROFILE


@dataclass(frozen=True, slots=True)
class SealedChunk:
    chunk_id: str
    stream_id: str
    seq: int
    schema_version: int
    format: str
    stream_key_id: str
    ciphertext: bytes
    sealed_key: bytes


@dataclass(frozen=True, slots=True)
class SealedCitizen:
    """One contributing consent's material. ``grants``: (stream key id, the stream's private key
    sealed to the aggregation service, the stream's public key), only grants made for the
    verified terms of ``consent_id``."""

    citizen_id: str
    consent_id: str
    records: tuple[SealedChunk, ...]
    profile: tuple[SealedChunk, ...]
    grants: tuple[tuple[str, bytes, bytes], ...]


@dataclass(frozen=True, slots=True)
class ContributingConsent:
    """A consent that passed the gate: its id, citizen and the SHA-256 of its verified terms;
    ``revision``: the citizen's consent revision the gate judged it at (``None``: not checked
    again before its material is read)."""

    consent_id: str
    citizen_id: str
    terms_sha256: str
    revision: int | None = None


def stream_types(dataset: str, with_profile: bool) -> list[str]:
    """The stream types a release of ``dataset`` reads (and the profile, for citizen groups)."""
    return [dataset, PROFILE] if with_profile and dataset != PROFILE else [dataset]


def gather_sealed(
    session: Session,
    consents: Sequence[ContributingConsent],
    dataset: str,
    with_profile: bool,
    grantee: str = "aggregation",
) -> list[SealedCitizen]:
    """The sealed material of every consent in ``consents``, in their order (by citizen id)."""
    citizens = {c.citizen_id for c in consents}
    types = stream_types(dataset, with_profile)
    digests = {c.consent_id: c.terms_sha256 for c in consents}
    grants: dict[str, dict[str, tuple[bytes, bytes]]] = {}
    for consent_id, key_id, sealed, digest, public in repository.grants_with_public_keys(
        session, grantee, digests
    ):
        if digests.get(consent_id) == digest:
            grants.setdefault(consent_id, {})[key_id] = (sealed, public)
    per_citizen: dict[str, tuple[list[SealedChunk], list[SealedChunk]]] = {
        c: ([], []) for c in citizens
    }
    for (
        citizen,
        kind,
        chunk_id,
        stream_id,
        seq,
        version,
        fmt,
        key_id,
        ciphertext,
        sealed,
    ) in repository.chunks_of_citizens(session, citizens, types):
        records, profile = per_citizen[citizen]
        (records if kind == dataset else profile).append(
            SealedChunk(
                chunk_id, stream_id, seq, version, fmt, key_id, bytes(ciphertext), bytes(sealed)
            )
        )
    out = []
    for c in consents:
        records, profile = per_citizen[c.citizen_id]
        for chunks in (records, profile):
            if len(chunks) > 1:  # each stream's chunks in sequence order
                chunks.sort(key=lambda chunk: (chunk.stream_id, chunk.seq))
        out.append(
            SealedCitizen(
                citizen_id=c.citizen_id,
                consent_id=c.consent_id,
                records=tuple(records),
                profile=tuple(profile),
                grants=tuple(
                    (key_id, sealed, public)
                    for key_id, (sealed, public) in sorted(grants.get(c.consent_id, {}).items())
                ),
            )
        )
    return out
