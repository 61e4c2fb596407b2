"""Consents given to apps through OAuth: approving RAR details signs terms; reading goes through
the app-access grant and the consent gate; withdrawal and disconnection end it at once."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.test_oauth_helpers import Harness, bearer, harness
from vault.settings import Settings

READ_TRIPS = [
    {
        "type": "civic-vault:consent",
        "stream_types": ["mobility.trip"],
        "actions": ["read", "append"],
        "purpose": "trip-diary",
    }
]
TRIPS = [
    {"ts": "2026-03-01T08:00:00Z", "mode": "bike", "km": 3.5, "minutes": 14.0},
    {"ts": "2026-03-01T18:00:00Z", "mode": "bus", "km": 5.0, "minutes": 22.0},
]


@pytest.fixture
def oauth(settings: Settings) -> Iterator[Harness]:
    with harness(settings) as h:
        yield h


def _setup(oauth: Harness):  # type: ignore[no-untyped-def]
    alice = oauth.citizen("alice")
    assert alice.append("mobility.trip", TRIPS).status_code == 201
    alice.append("energy.consumption", [{"ts": "2026-03-01T00:00:00Z", "kwh": 3.0}])
    app = oauth.register_app()
    tok = oauth.tokens(app, "alice", scope="vault:read vault:append", details=READ_TRIPS)
    return alice, app, tok


def test_an_app_reads_exactly_the_consented_stream_through_its_grant(oauth: Harness) -> None:
    alice, app, tok = _setup(oauth)
    consent_id = tok["authorization_details"][0]["consent_id"]
    assert consent_id
    trips = alice.stream("mobility.trip")
    r = oauth.http.get(f"/v1/me/streams/{trips}/records", headers=bearer(tok["access_token"]))
    assert r.status_code == 200, r.text
    assert [x["mode"] for x in r.json()["records"]] == ["bike", "bus"]
    energy = alice.stream("energy.consumption")
    other = oauth.http.get(f"/v1/me/streams/{energy}/records", headers=bearer(tok["access_token"]))
    assert other.status_code in (403, 404)
    audit = oauth.http.get("/v1/me/audit", headers=alice.auth).json()["entries"]
    assert ("records.read", f"app:{app.client_id}") in [(e["action"], e["actor"]) for e in audit]


def test_withdrawing_the_consent_stops_the_app_reading_at_once(oauth: Harness) -> None:
    alice, _app, tok = _setup(oauth)
    consent_id = tok["authorization_details"][0]["consent_id"]
    w = oauth.http.post(f"/v1/me/consents/{consent_id}/withdraw", headers=alice.auth)
    assert w.status_code == 200, w.text
    trips = alice.stream("mobility.trip")
    r = oauth.http.get(f"/v1/me/streams/{trips}/records", headers=bearer(tok["access_token"]))
    assert r.status_code == 403
    assert "no longer in force" in r.json()["message"]


def test_disconnecting_the_app_withdraws_its_consents_signed(oauth: Harness) -> None:
    alice, app, tok = _setup(oauth)
    consent_id = tok["authorization_details"][0]["consent_id"]
    d = oauth.http.delete(f"/v1/me/apps/{app.client_id}", headers=alice.auth)
    assert d.status_code == 200, d.text
    consent = oauth.http.get(f"/v1/me/consents/{consent_id}", headers=alice.auth).json()
    assert consent["status"] == "withdrawn" and consent["verified"] is True


def test_an_append_only_consent_seals_no_key(oauth: Harness) -> None:
    from sqlmodel import select

    from vault.consent_models import KeyGrant

    alice = oauth.citizen("alice")
    alice.stream("mobility.trip")
    app = oauth.register_app()
    tok = oauth.tokens(app, "alice", scope="vault:append")
    assert tok["authorization_details"][0]["consent_id"]
    with oauth.rt.vault.reading() as s:
        assert s.exec(select(KeyGrant)).all() == []


def test_a_stream_an_app_creates_joins_the_citizens_department_consents(oauth: Harness) -> None:
    """The new stream's key is sealed to the aggregation service for a consent given before."""
    from sqlmodel import select

    from consent.request_templates import DEPARTMENT_NAMES, shipped_requests
    from vault.clock import utcnow
    from vault.consent_models import KeyGrant

    rt = oauth.rt.vault
    with rt.unit_of_work() as s:
        rt.departments.ensure(s, "mobility", DEPARTMENT_NAMES["mobility"]["en"])
        mobility = next(r for r in shipped_requests(utcnow()) if r.department == "mobility")
        rt.departments.publish(s, "mobility", mobility, utcnow())
    alice = oauth.citizen("alice")
    consent = oauth.http.post("/v1/me/requests/mobility-trips/accept", headers=alice.auth).json()
    app = oauth.register_app()
    tok = oauth.tokens(app, "alice", scope="vault:append")
    created = oauth.http.post(
        "/v1/me/streams", json={"stream_type": "mobility.trip"}, headers=bearer(tok["access_token"])
    )
    assert created.status_code == 201, created.text
    with rt.reading() as s:
        grants = s.exec(select(KeyGrant).where(KeyGrant.consent_id == consent["id"])).all()
    assert [g.stream_id for g in grants] == [created.json()["id"]]
    assert grants[0].grantee == "aggregation"
