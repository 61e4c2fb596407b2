"""The authorization-code flow end to end in-process: consent page, code, token, use, refresh,
introspection, revocation; plus metadata and client credentials."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from test_oauth_helpers import (
    ISSUER,
    REDIRECT,
    TRIP_DETAILS,
    Harness,
    bearer,
    harness,
    redirect_params,
)

from vault.settings import Settings


@pytest.fixture
def oauth(settings: Settings) -> Iterator[Harness]:
    with harness(settings) as h:
        yield h


def test_metadata_announces_s256_only_iss_and_rar(oauth: Harness) -> None:
    meta = oauth.http.get("/.well-known/oauth-authorization-server").json()
    assert meta["issuer"] == ISSUER
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert meta["authorization_response_iss_parameter_supported"] is True
    assert meta["authorization_details_types_supported"] == ["civic-vault:consent"]
    assert meta["response_types_supported"] == ["code"]
    assert "implicit" not in meta["grant_types_supported"]
    assert "password" not in meta["grant_types_supported"]
    assert "jwks_uri" not in meta
    for name in ("authorization", "token", "introspection", "revocation", "registration"):
        assert meta[f"{name}_endpoint"].startswith(ISSUER + "/oauth/")


def test_third_party_app_appends_trips_through_the_full_flow(oauth: Harness) -> None:
    alice = oauth.citizen("alice")
    app = oauth.register_app()
    authz = oauth.start(app, scope="vault:append")
    page = oauth.consent_page(authz)
    assert page.status_code == 200
    assert "Trip Diary" in page.text and "not</strong> made by the city" in page.text
    assert "mobility.trip" in page.text and "trip-diary" in page.text
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]

    code = oauth.code(authz, "alice", page=page)
    r = oauth.exchange(app, code, authz)
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    tok = r.json()
    assert tok["token_type"] == "Bearer"
    assert tok["expires_in"] <= 600
    assert tok["scope"] == "vault:append"
    (approved,) = tok["authorization_details"]
    assert {k: v for k, v in approved.items() if k != "consent_id"} == TRIP_DETAILS[0]
    # Approving signed consent terms for this app, which the citizen sees among their consents.
    consents = oauth.http.get("/v1/me/consents", headers=alice.auth).json()["consents"]
    assert [c["id"] for c in consents] == [approved["consent_id"]]
    assert consents[0]["client_id"] == app.client_id and consents[0]["verified"]
    assert consents[0]["terms"]["processing"] == {
        "mode": "raw",
        "app": app.client_id,
        "append": True,
    }
    assert tok["access_token"].startswith("cv_") and tok["refresh_token"].startswith("cv_")

    stream = oauth.http.post(
        "/v1/me/streams", json={"stream_type": "mobility.trip"}, headers=bearer(tok["access_token"])
    )
    assert stream.status_code == 201, stream.text
    rows = [{"ts": "2026-03-01T08:00:00Z", "mode": "bike", "km": 3.2, "minutes": 14}]
    appended = oauth.http.post(
        f"/v1/me/streams/{stream.json()['id']}/records",
        json=rows,
        headers=bearer(tok["access_token"]),
    )
    assert appended.status_code == 201, appended.text
    # The citizen sees it, and who wrote it, in their audit log.
    audit = oauth.http.get("/v1/me/audit", headers=alice.auth).json()["entries"]
    actions = [(e["action"], e["actor"]) for e in audit]
    assert ("app.authorized", "citizen") in actions
    assert ("records.appended", f"app:{app.client_id}") in actions


def test_refresh_rotates_and_introspection_and_revocation(oauth: Harness) -> None:
    oauth.citizen("alice")
    app = oauth.register_app()
    tok = oauth.tokens(app, "alice")
    r = oauth.refresh(app, tok["refresh_token"])
    assert r.status_code == 200, r.text
    new = r.json()
    assert new["refresh_token"] != tok["refresh_token"]
    assert new["access_token"] != tok["access_token"]

    info = oauth.introspect(app, new["access_token"]).json()
    assert info["active"] is True
    assert info["client_id"] == app.client_id
    assert info["aud"] == "urn:civic-vault:vault"
    assert info["iss"] == ISSUER
    assert info["authorization_details"][0]["stream_types"] == ["mobility.trip"]

    revoked = oauth.http.post("/oauth/revoke", data={"token": new["refresh_token"]}, auth=app.basic)
    assert revoked.status_code == 200
    assert oauth.introspect(app, new["access_token"]).json() == {"active": False}
    assert oauth.http.get("/v1/me/streams", headers=bearer(new["access_token"])).status_code == 401


def test_first_party_app_gets_the_citizens_own_powers(oauth: Harness) -> None:
    alice = oauth.citizen("alice")
    alice.append("energy.consumption", [{"ts": "2026-03-01", "kwh": 7.5}])
    app = oauth.first_party_app()
    tok = oauth.tokens(
        app, "alice", scope="vault:read vault:append consent:read consent:manage", details=None
    )
    stream_id = alice.streams["energy.consumption"]
    r = oauth.http.get(f"/v1/me/streams/{stream_id}/records", headers=bearer(tok["access_token"]))
    assert r.status_code == 200, r.text
    assert r.json()["records"][0]["kwh"] == 7.5
    # ... and keeps them across a refresh (the root secret travels wrapped under each token).
    new = oauth.refresh(app, tok["refresh_token"]).json()
    r = oauth.http.get(f"/v1/me/streams/{stream_id}/records", headers=bearer(new["access_token"]))
    assert r.status_code == 200, r.text


def test_analyst_signs_in_on_the_console_and_gets_an_aggregation_token(oauth: Harness) -> None:
    oauth.staff("ana.lyst", "energy")
    console = oauth.console_app()
    tok = oauth.tokens(console, "ana.lyst", scope="aggregate:query", details=None)
    assert tok["scope"] == "aggregate:query"
    with oauth.rt.vault.unit_of_work() as session:
        from vault.services.session_tokens import resolve

        principal = resolve(session, tok["access_token"])
    assert principal.kind == "analyst"
    assert principal.department_id == "energy"
    assert principal.audience == "urn:civic-vault:aggregation"
    assert principal.citizen_id is None


def test_department_client_credentials(oauth: Harness) -> None:
    dept = oauth.department_client("mobility")
    r = oauth.token(dept, {"grant_type": "client_credentials", "scope": "aggregate:query"})
    assert r.status_code == 200, r.text
    tok = r.json()
    assert "refresh_token" not in tok
    assert tok["expires_in"] <= 600
    info = oauth.introspect(dept, tok["access_token"]).json()
    assert info["active"] and info["aud"] == "urn:civic-vault:aggregation"
    assert info["civic_department_id"] == "mobility"


def test_deny_redirects_with_access_denied_and_iss(oauth: Harness) -> None:
    oauth.citizen("alice")
    app = oauth.register_app()
    authz = oauth.start(app)
    r = oauth.decide(authz, decision="deny")
    assert r.status_code == 303  # after the POST that carried the passphrase (RFC 9700 §4.12)
    params = redirect_params(r)
    assert params["error"] == "access_denied"
    assert params["iss"] == ISSUER
    assert params["state"] == authz.state
    assert r.headers["location"].startswith(REDIRECT + "?")
