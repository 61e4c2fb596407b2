"""Scale-out: the decrypt-and-bound stage on a real Dask ``LocalCluster`` with two worker
processes hands OpenDP exactly the frame the in-process path makes (byte for byte), and a whole
query through Dask releases like one through threads."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from aggregation import consent_gate
from aggregation.query_spec import QueryRequest
from aggregation.scale_out import DaskShardRunner, ThreadShardRunner, shard
from aggregation.sealed_material import ContributingConsent, gather_sealed
from tests.aggregation_support import (
    QUERY,
    aggregation_settings,
    populate,
    publish_city,
    staff_token,
)
from vault.clock import utcnow
from vault.settings import Settings


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return aggregation_settings(tmp_path, database_url)


def test_dask_workers_hand_opendp_the_same_frame(client: TestClient) -> None:
    publish_city(client)
    populate(client, 12)
    agg = client.app.state.aggregation  # type: ignore[attr-defined]
    prepared = agg.queries.prepare(QueryRequest.model_validate(QUERY))
    now = utcnow()
    with agg.vault.reading() as session:
        admitted = consent_gate.admit(session, agg.vault.consents, prepared.query, now)
        evidence = consent_gate.gather_evidence(session, agg.vault.consents, "energy", now)
        sealed = gather_sealed(
            session,
            [ContributingConsent(a.consent_id, a.citizen_id, a.terms_sha256) for a in admitted],
            "energy.consumption",
            with_profile=True,
        )
    key = bytes(agg.vault.consents.grantee_private_key("aggregation"))
    shards = shard(sealed, 3)  # four shards over two workers
    from aggregation.contributions import combine

    local = combine(ThreadShardRunner(2).run(shards, key, prepared.spec), prepared.spec)
    dask = DaskShardRunner("local", 2)
    try:
        client_ = dask._connect()
        workers = client_.scheduler_info()["workers"]
        assert len(workers) == 2
        pids = client_.run(lambda: __import__("os").getpid())
        assert len(set(pids.values())) == 2  # two processes, not threads
        remote = combine(dask.run(shards, key, prepared.spec), prepared.spec)
        # The consent gate judged on the workers admits exactly what it admits here.
        request = consent_gate.access_request(prepared.query, now)
        judged = dask.judge(shard(evidence, 3), request)
        assert consent_gate.one_per_citizen(judged) == admitted
        # Again, with the workers' signature memos warm: the same answer, and a consent whose
        # signature was altered since is still refused (the memo keeps exact bytes only).
        forged = next(e for e in evidence if e.id in {a.consent_id for a in admitted})
        bad = bytes([forged.signature[0] ^ 1]) + forged.signature[1:]
        again = [dataclasses.replace(e, signature=bad) if e is forged else e for e in evidence]
        judged = dask.judge(shard(again, 3), request)
        assert consent_gate.one_per_citizen(judged) == [
            a for a in admitted if a.consent_id != forged.id
        ]
    finally:
        dask.close()
    assert local.height > 0
    assert remote.write_ipc(None).getvalue() == local.write_ipc(None).getvalue()


def test_a_whole_query_through_dask(tmp_path: Path, database_url: str) -> None:
    from server.app import create_app

    settings = aggregation_settings(tmp_path, database_url)
    settings = Settings(
        data_dir=settings.data_dir,
        database_url=settings.database_url,
        kdf_profile="min",
        extra={
            **settings.extra,
            "CIVIC_AGGREGATION_EXECUTOR": "dask",
            "CIVIC_AGGREGATION_WORKERS": "2",
        },
    )
    with TestClient(create_app(settings), base_url="https://testserver") as client:
        publish_city(client)
        populate(client, 6)
        r = client.post("/v1/queries", json=QUERY, headers=staff_token(client))
        assert r.status_code == 201, r.text
        assert client.app.state.aggregation.runner.name == "dask"  # type: ignore[attr-defined]
        assert len(r.json()["rows"]) == 8
