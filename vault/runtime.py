"""Assembling the vault's services from settings (called by the composition root, never at import)."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy.engine import Engine
from sqlmodel import Session

from vault.catalogue import Catalogue, default_catalogue
from vault.chunk_write_keys import WriterChunkKeys
from vault.crypto.passphrase_wrap import KdfCost
from vault.db import (
    LocalReader,
    WalCheckpointer,
    is_sqlite,
    local_reader,
    make_engine,
    read_only,
    read_only_engine,
    unit_of_work,
    wal_checkpointer,
)
from vault.group_commit import GroupCommitter
from vault.login_throttle import LoginThrottle
from vault.service_keys import ServiceKeys
from vault.services.accounts import CitizenAccounts
from vault.services.app_consents import AppConsents
from vault.services.audit_log import AuditLog
from vault.services.chunk_store import ChunkStore
from vault.services.consent_registry import ConsentRegistry
from vault.services.departments import Departments
from vault.services.erasure import Erasure
from vault.services.ingest import BatchIngest
from vault.services.portability import Portability
from vault.services.reading import OwnRecords
from vault.services.streams import StreamRegistry
from vault.settings import Settings


def _started(checkpointer: WalCheckpointer | None) -> WalCheckpointer | None:
    if checkpointer is not None:
        checkpointer.start()
    return checkpointer


def _erasure(
    accounts: CitizenAccounts, writer_keys: WriterChunkKeys, consents: ConsentRegistry
) -> Erasure:
    """Erasure that also drops what this process remembers about the erased citizen: the chunk
    keys of their streams' writer, their parsed and verified consents."""
    erasure = Erasure(accounts)
    erasure.add_hook(lambda _session, citizen_id: writer_keys.forget_citizen(citizen_id))
    erasure.add_hook(lambda _session, citizen_id: consents.forget_citizen(citizen_id))
    return erasure


def _group_committer(engine: Engine) -> GroupCommitter:
    # Groups may run on the event loop only where a busy write lock can be detected without
    # waiting (SQLite's in-process lock); on PostgreSQL they always run on the writer thread.
    return GroupCommitter(
        functools.partial(unit_of_work, engine),
        functools.partial(unit_of_work, engine, no_wait=True) if is_sqlite(engine) else None,
    )


@dataclass
class VaultRuntime:
    settings: Settings
    engine: Engine
    catalogue: Catalogue
    keys: ServiceKeys
    audit: AuditLog
    accounts: CitizenAccounts
    streams: StreamRegistry
    chunks: ChunkStore
    ingest: BatchIngest
    records: OwnRecords
    portability: Portability
    erasure: Erasure
    consents: ConsentRegistry
    departments: Departments
    app_consents: AppConsents
    writes: GroupCommitter
    #: One-row reads on the calling thread (SQLite files only; ``vault.db.LocalReader``).
    local_reads: LocalReader | None
    #: Background checkpoints of SQLite's log (SQLite files only; started by :meth:`build`).
    checkpoints: WalCheckpointer | None

    @classmethod
    def build(cls, settings: Settings, engine: Engine | None = None) -> VaultRuntime:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = engine or make_engine(settings.resolved_database_url)
        catalogue = default_catalogue()
        keys = ServiceKeys.load_or_create(settings.keys_dir)
        audit = AuditLog(keys.audit_signing)
        accounts = CitizenAccounts(
            audit,
            KdfCost.profile(settings.kdf_profile),
            settings.access_token_ttl_seconds,
            settings.login_free_failures,
            settings.login_max_lockout_seconds,
            LoginThrottle(),
        )
        consents = ConsentRegistry(audit, keys)
        streams = StreamRegistry(catalogue, audit, on_created=consents.on_stream_created)
        chunks = ChunkStore(WriterChunkKeys(settings.chunk_key_reuse_seconds))
        records = OwnRecords(
            catalogue,
            streams,
            chunks,
            audit,
            settings.compact_min_chunks,
            settings.compact_small_chunk_records,
        )
        return cls(
            settings=settings,
            engine=engine,
            catalogue=catalogue,
            keys=keys,
            audit=audit,
            accounts=accounts,
            streams=streams,
            chunks=chunks,
            ingest=BatchIngest(catalogue, streams, chunks, audit, settings.max_records_per_batch),
            records=records,
            portability=Portability(
                catalogue, streams, records, chunks, audit, consents, settings.max_records_per_batch
            ),
            erasure=_erasure(accounts, chunks.writer_keys, consents),
            consents=consents,
            departments=Departments(consents),
            app_consents=AppConsents(consents, catalogue),
            writes=_group_committer(engine),
            local_reads=local_reader(engine),
            checkpoints=_started(wal_checkpointer(engine)),
        )

    def close(self) -> None:
        """Finish queued writes, then close the database connections."""
        self.writes.close()
        if self.local_reads is not None:
            self.local_reads.close()
        if self.checkpoints is not None:
            self.checkpoints.close()
        self.engine.dispose()

    @contextmanager
    def unit_of_work(self) -> Iterator[Session]:
        with unit_of_work(self.engine) as session:
            yield session

    @functools.cached_property
    def read_engine(self) -> Engine:
        return read_only_engine(self.engine)

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A read-only transaction (no write lock on SQLite)."""
        with read_only(self.read_engine) as session:
            yield session
