"""Queries on streams, their key generations and their chunks."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, func, update
from sqlmodel import Session, col, select

from vault.consent_models import KeyGrant
from vault.models import Chunk, Stream, StreamKey


def for_citizen(session: Session, citizen_id: str) -> Sequence[Stream]:
    return session.exec(
        select(Stream).where(Stream.citizen_id == citizen_id).order_by(col(Stream.created_at))
    ).all()


def summaries_for_citizen(session: Session, citizen_id: str) -> list[tuple[Stream, int, int, int]]:
    """Each of the citizen's streams with its key generation, chunk count and record count, in
    one query (a page listing streams must not cost a query per stream)."""
    own = select(Stream.id).where(Stream.citizen_id == citizen_id)
    stats = (
        select(
            col(Chunk.stream_id).label("stream_id"),
            func.count(col(Chunk.id)).label("chunks"),
            func.coalesce(func.sum(col(Chunk.record_count)), 0).label("records"),
        )
        .where(col(Chunk.stream_id).in_(own))
        .group_by(col(Chunk.stream_id))
        .subquery()
    )
    rows = session.exec(
        select(Stream, StreamKey.generation, stats.c.chunks, stats.c.records)
        .outerjoin(StreamKey, col(StreamKey.id) == col(Stream.current_key_id))
        .outerjoin(stats, stats.c.stream_id == col(Stream.id))
        .where(Stream.citizen_id == citizen_id)
        .order_by(col(Stream.created_at))
    ).all()
    return [
        (stream, int(generation or 0), int(chunks or 0), int(records or 0))
        for stream, generation, chunks, records in rows
    ]


def owned(
    session: Session, citizen_id: str, stream_id: str, *, for_update: bool = False
) -> Stream | None:
    """The stream, only if ``citizen_id`` owns it (never reveals another citizen's stream)."""
    stmt = select(Stream).where(Stream.id == stream_id, Stream.citizen_id == citizen_id)
    if for_update:
        stmt = stmt.with_for_update()
    return session.exec(stmt).first()


def key(session: Session, key_id: str) -> StreamKey | None:
    return session.get(StreamKey, key_id)


def keys_of_stream(session: Session, stream_id: str) -> Sequence[StreamKey]:
    return session.exec(
        select(StreamKey)
        .where(StreamKey.stream_id == stream_id)
        .order_by(col(StreamKey.generation))
    ).all()


def chunks_of_stream(session: Session, stream_id: str) -> Sequence[Chunk]:
    return session.exec(
        select(Chunk).where(Chunk.stream_id == stream_id).order_by(col(Chunk.seq))
    ).all()


def chunk_stats(session: Session, stream_id: str) -> tuple[int, int]:
    """(number of chunks, number of records) of a stream."""
    row = session.execute(
        select(
            func.count(col(Chunk.id)), func.coalesce(func.sum(col(Chunk.record_count)), 0)
        ).where(Chunk.stream_id == stream_id)
    ).one()
    return int(row[0]), int(row[1])


def count_small_chunks(session: Session, stream_id: str, below_records: int) -> int:
    """How many of the stream's chunks hold fewer than ``below_records`` records (a count: the
    chunks themselves, ciphertext and all, are loaded only when they will be compacted)."""
    statement = (
        select(func.count())
        .select_from(Chunk)
        .where(col(Chunk.stream_id) == stream_id, col(Chunk.record_count) < below_records)
    )
    return int(session.exec(statement).one())


def delete_chunks(session: Session, chunk_ids: Sequence[str]) -> None:
    if chunk_ids:
        session.execute(delete(Chunk).where(col(Chunk.id).in_(list(chunk_ids))))


def shred_owner_keys(session: Session, stream_ids: Sequence[str]) -> None:
    """Destroy every sealed copy of the streams' private keys: the owner's and every grant's."""
    if stream_ids:
        session.execute(delete(KeyGrant).where(col(KeyGrant.stream_id).in_(list(stream_ids))))
        session.execute(
            update(StreamKey)
            .where(col(StreamKey.stream_id).in_(list(stream_ids)))
            .values(sealed_to_owner=None)
        )


def delete_streams_with_everything(session: Session, stream_ids: Sequence[str]) -> None:
    if not stream_ids:
        return
    ids = list(stream_ids)
    session.execute(delete(KeyGrant).where(col(KeyGrant.stream_id).in_(ids)))
    session.execute(delete(Chunk).where(col(Chunk.stream_id).in_(ids)))
    session.execute(update(Stream).where(col(Stream.id).in_(ids)).values(current_key_id=""))
    session.execute(delete(StreamKey).where(col(StreamKey.stream_id).in_(ids)))
    session.execute(delete(Stream).where(col(Stream.id).in_(ids)))
