"""Citizen A can reach none of citizen B's streams, records, audit or export, on any route.

The route list is taken from the app itself, so a new route with an id in its path cannot be forgotten.
"""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from tests.conftest import Citizen

ROWS = [{"ts": "2026-03-01T00:00:00Z", "kwh": 41.125}]


def test_every_route_with_a_stream_id_refuses_another_citizen(
    client: TestClient, alice: Citizen, bob: Citizen
) -> None:
    bob.append("energy.consumption", ROWS)
    bob_stream = bob.stream("energy.consumption")
    checked = 0
    for route_path, operations in client.app.openapi()["paths"].items():  # type: ignore[attr-defined]
        if "{stream_id}" not in route_path:
            continue
        path = route_path.replace("{stream_id}", bob_stream)
        assert not re.search(r"{\w+}", path), (
            f"route {route_path} takes an id this test does not know"
        )
        for method in operations:
            r = client.request(
                method,
                path,
                headers={**alice.auth, "content-type": "application/json"},
                content=b'[{"ts": "2026-03-02T00:00:00Z", "kwh": 1.0}]',
            )
            assert r.status_code == 404, (method, route_path, r.status_code, r.text)
            assert bob_stream in r.json()["message"] or "stream" in r.json()["message"]
            checked += 1
    assert checked >= 3
    # Bob's data is untouched by Alice's attempts.
    recs = bob.client.get(f"/v1/me/streams/{bob_stream}/records", headers=bob.auth).json()
    assert [r["kwh"] for r in recs["records"]] == [41.125]


def test_me_routes_only_ever_show_the_callers_own_data(
    client: TestClient, alice: Citizen, bob: Citizen
) -> None:
    bob.append("energy.consumption", ROWS)
    bob_stream = bob.stream("energy.consumption")
    assert client.get("/v1/me/streams", headers=alice.auth).json()["streams"] == []
    audit = client.get("/v1/me/audit", headers=alice.auth).json()
    assert audit["citizen_id"] == alice.citizen_id
    assert bob_stream not in str(audit) and bob.citizen_id not in str(audit)
    export = client.get("/v1/me/export", headers=alice.auth)
    assert export.status_code == 200
    assert (
        bob_stream.encode() not in export.content and bob.citizen_id.encode() not in export.content
    )
    me = client.get("/v1/me", headers=alice.auth).json()
    assert me["citizen_id"] == alice.citizen_id


def test_no_route_takes_a_citizen_id(client: TestClient) -> None:
    """Routes address the caller's own vault through /v1/me, never another citizen by id."""
    for route_path in client.app.openapi()["paths"]:  # type: ignore[attr-defined]
        assert "{citizen_id}" not in route_path
