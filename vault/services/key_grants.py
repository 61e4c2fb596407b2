"""Key grants: a stream's private key sealed to a grantee (the aggregation service, or the vault's
app-access key for third-party apps), each grant serving one signed consent.

Properties:
* a grant is made only while the owner's root key is open (accepting a consent), or while a fresh
  stream key is in hand (a new stream, a rotation), so no one can grant without the citizen;
* a grantee can open exactly the key generations it was granted, for the consents it names;
* deleting a consent's grants and rotating the stream key (``rotate_stream_key``) means chunks written
  afterwards are sealed to a key the old grantee never receives.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence

import nacl.public
from sqlalchemy import delete
from sqlmodel import Session, col, select

from vault.clock import utcnow
from vault.consent_models import KeyGrant
from vault.crypto.sealing import SealedOpenError, open_sealed, seal_to
from vault.errors import Forbidden, IntegrityFailure
from vault.models import Citizen, Stream, StreamKey
from vault.repositories import streams as stream_repo
from vault.services.chunk_store import KeyOpener
from vault.services.streams import new_key_generation

GRANTEES = ("aggregation", "app-access")


def grant_stream(
    session: Session,
    *,
    consent_id: str,
    terms_sha256: str,
    stream: Stream,
    open_owner_key: KeyOpener,
    grantee: str,
    grantee_public_key: bytes,
) -> int:
    """Seal every key generation of ``stream`` to the grantee; returns how many grants were made.

    The stream row is locked first (PostgreSQL), so a key rotation cannot slip in between reading
    the generations and writing the grants."""
    stream_repo.owned(session, stream.citizen_id, stream.id, for_update=True)
    made = 0
    for key in stream_repo.keys_of_stream(session, stream.id):
        private = open_owner_key(key)
        session.add(
            KeyGrant(
                id=uuid.uuid4().hex,
                consent_id=consent_id,
                stream_id=stream.id,
                stream_key_id=key.id,
                grantee=grantee,
                sealed_key=seal_to(grantee_public_key, bytes(private)),
                terms_sha256=terms_sha256,
                created_at=utcnow(),
            )
        )
        made += 1
    session.flush()
    return made


def grants_of_consent(session: Session, consent_id: str) -> Sequence[KeyGrant]:
    return session.exec(select(KeyGrant).where(KeyGrant.consent_id == consent_id)).all()


def grants_for_stream(session: Session, stream_id: str) -> Sequence[KeyGrant]:
    return session.exec(select(KeyGrant).where(KeyGrant.stream_id == stream_id)).all()


def delete_grants(session: Session, consent_ids: Iterable[str]) -> None:
    ids = list(consent_ids)
    if ids:
        session.execute(delete(KeyGrant).where(col(KeyGrant.consent_id).in_(ids)))
        session.flush()


def delete_grants_of_streams(session: Session, stream_ids: Iterable[str]) -> None:
    ids = list(stream_ids)
    if ids:
        session.execute(delete(KeyGrant).where(col(KeyGrant.stream_id).in_(ids)))
        session.flush()


def extend_grants_to_key(
    session: Session,
    stream: Stream,
    new_key: StreamKey,
    new_private: nacl.public.PrivateKey,
    grantee_public_keys: dict[str, bytes],
    keep_consents: set[str] | None = None,
) -> None:
    """Give the consents that still hold grants on ``stream`` the new key generation too."""
    seen: set[tuple[str, str]] = set()
    for grant in grants_for_stream(session, stream.id):
        pair = (grant.consent_id, grant.grantee)
        if pair in seen or (keep_consents is not None and grant.consent_id not in keep_consents):
            continue
        seen.add(pair)
        session.add(
            KeyGrant(
                id=uuid.uuid4().hex,
                consent_id=grant.consent_id,
                stream_id=stream.id,
                stream_key_id=new_key.id,
                grantee=grant.grantee,
                sealed_key=seal_to(grantee_public_keys[grant.grantee], bytes(new_private)),
                terms_sha256=grant.terms_sha256,
                created_at=utcnow(),
            )
        )
    session.flush()


def rotate_stream_key(
    session: Session,
    stream: Stream,
    owner: Citizen,
    grantee_public_keys: dict[str, bytes],
) -> StreamKey:
    """Start a new key generation: future chunks are sealed to it; the old one is retired.

    The consents that still hold grants on the stream receive the new generation; a consent whose
    grants were deleted before the rotation never does.
    """
    old = stream_repo.key(session, stream.current_key_id)
    generation = (old.generation if old else 0) + 1
    private = nacl.public.PrivateKey.generate()
    key = new_key_generation(stream, owner, generation, private)
    session.add(key)
    if old is not None:
        old.retired_at = utcnow()
        session.add(old)
    stream.current_key_id = key.id
    session.add(stream)
    session.flush()
    extend_grants_to_key(session, stream, key, private, grantee_public_keys)
    return key


def grant_key_opener(
    session: Session,
    grantee: str,
    private_key: nacl.public.PrivateKey,
    consent_digests: dict[str, str],
) -> KeyOpener:
    """Opens stream keys through grants held by ``grantee`` for the given consents only, and only
    grants made for the terms digest given for each (consent id -> SHA-256 of its signed terms)."""

    def _open(key: StreamKey) -> nacl.public.PrivateKey:
        grants = [
            g
            for g in session.exec(
                select(KeyGrant).where(
                    KeyGrant.stream_key_id == key.id,
                    KeyGrant.grantee == grantee,
                    col(KeyGrant.consent_id).in_(sorted(consent_digests)),
                )
            ).all()
            if consent_digests.get(g.consent_id) == g.terms_sha256
        ]
        if not grants:
            raise Forbidden(f"no grant opens stream key {key.id} for {grantee}")
        try:
            return nacl.public.PrivateKey(open_sealed(private_key, grants[0].sealed_key))
        except SealedOpenError as exc:
            raise IntegrityFailure(f"grant {grants[0].id} failed its integrity check") from exc

    return _open
