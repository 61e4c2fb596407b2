"""What the authorization server refuses (RFC 9700), one test per refusal."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Annotated

import pytest
from fastapi import APIRouter, Depends
from sqlmodel import select
from test_oauth_helpers import (
    ISSUER,
    REDIRECT,
    AppClient,
    Harness,
    bearer,
    harness,
    pkce_pair,
    redirect_params,
)

from vault.api.deps import require
from vault.clock import utcnow
from vault.crypto import token_secrets
from vault.oauth.models import OAuthAuthorization, OAuthAuthorizationCode
from vault.principal import AGGREGATION_AUDIENCE, Principal
from vault.settings import Settings


@pytest.fixture
def oauth(settings: Settings) -> Iterator[Harness]:
    with harness(settings) as h:
        h.citizen("alice")
        yield h


@pytest.fixture
def app(oauth: Harness) -> AppClient:
    return oauth.register_app()


def _refused_without_redirect(oauth: Harness, app: AppClient, redirect_uri: str | None) -> None:
    authz = oauth.start(app, redirect_uri=redirect_uri)
    if redirect_uri is None:
        authz.params.pop("redirect_uri")
    r = oauth.consent_page(authz)
    assert r.status_code == 400, r.text
    assert "location" not in r.headers
    assert "does not work" in r.text


# --- redirect URIs: exact match only ------------------------------------------------------------


def test_redirect_uri_with_a_suffix_is_refused(oauth: Harness, app: AppClient) -> None:
    _refused_without_redirect(oauth, app, REDIRECT + "/../evil")


def test_redirect_uri_with_a_longer_path_is_refused(oauth: Harness, app: AppClient) -> None:
    _refused_without_redirect(oauth, app, REDIRECT + "x")


def test_redirect_uri_on_another_port_is_refused(oauth: Harness, app: AppClient) -> None:
    _refused_without_redirect(oauth, app, "https://trips.example:8443/callback")


def test_redirect_uri_with_another_scheme_is_refused(oauth: Harness, app: AppClient) -> None:
    _refused_without_redirect(oauth, app, "http://trips.example/callback")


def test_redirect_uri_with_userinfo_is_refused(oauth: Harness, app: AppClient) -> None:
    _refused_without_redirect(oauth, app, "https://trips.example@evil.example/callback")


def test_redirect_uri_with_a_fragment_is_refused(oauth: Harness, app: AppClient) -> None:
    _refused_without_redirect(oauth, app, REDIRECT + "#frag")


def test_missing_redirect_uri_is_refused(oauth: Harness, app: AppClient) -> None:
    _refused_without_redirect(oauth, app, None)


def test_loopback_redirect_on_another_port_is_refused(oauth: Harness) -> None:
    native = oauth.register_app(redirect_uris=["http://127.0.0.1:8765/callback"], public=True)
    _refused_without_redirect(oauth, native, "http://127.0.0.1:9999/callback")


def test_unknown_client_is_refused_without_redirect(oauth: Harness, app: AppClient) -> None:
    authz = oauth.start(AppClient("no-such-client", None))
    r = oauth.consent_page(authz)
    assert r.status_code == 400 and "location" not in r.headers


def test_redirect_uri_at_the_token_endpoint_must_match(oauth: Harness, app: AppClient) -> None:
    authz = oauth.start(app)
    code = oauth.code(authz, "alice")
    r = oauth.exchange(app, code, authz, redirect_uri=REDIRECT + "/other")
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"


# --- codes ----------------------------------------------------------------------------------------


def test_code_replay_is_refused_and_revokes_what_the_code_gave(
    oauth: Harness, app: AppClient
) -> None:
    authz = oauth.start(app)
    code = oauth.code(authz, "alice")
    first = oauth.exchange(app, code, authz)
    assert first.status_code == 200
    tok = first.json()
    assert oauth.http.get("/v1/me/streams", headers=bearer(tok["access_token"])).status_code != 401
    again = oauth.exchange(app, code, authz)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    assert oauth.http.get("/v1/me/streams", headers=bearer(tok["access_token"])).status_code == 401
    assert oauth.refresh(app, tok["refresh_token"]).json()["error"] == "invalid_grant"


def test_code_used_by_another_client_is_refused(oauth: Harness, app: AppClient) -> None:
    other = oauth.register_app(name="Other app")
    authz = oauth.start(app)
    code = oauth.code(authz, "alice")
    r = oauth.exchange(other, code, authz)
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    # The rightful client can still use it.
    assert oauth.exchange(app, code, authz).status_code == 200


def test_expired_code_is_refused(oauth: Harness, app: AppClient) -> None:
    authz = oauth.start(app)
    code = oauth.code(authz, "alice")
    with oauth.rt.vault.unit_of_work() as session:
        row = session.get(OAuthAuthorizationCode, token_secrets.token_digest(code))
        assert row is not None
        assert row.expires_at - row.created_at <= timedelta(seconds=600)
        row.expires_at = utcnow() - timedelta(seconds=1)
        session.add(row)
    r = oauth.exchange(app, code, authz)
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"


def test_code_lifetime_is_at_most_ten_minutes() -> None:
    from vault.oauth.runtime import OAuthConfig, OAuthConfigError

    with pytest.raises(OAuthConfigError):
        OAuthConfig(issuer=ISSUER, code_ttl=601)


# --- PKCE -----------------------------------------------------------------------------------------


def _authorize_error(oauth: Harness, authz_params: dict[str, str]) -> dict[str, str]:
    r = oauth.http.get("/oauth/authorize", params=authz_params, follow_redirects=False)
    assert r.status_code == 302, r.text
    params = redirect_params(r)
    assert params["iss"] == ISSUER
    return params


def test_pkce_missing_is_refused(oauth: Harness, app: AppClient) -> None:
    authz = oauth.start(app, pkce=False)
    params = _authorize_error(oauth, authz.params)
    assert params["error"] == "invalid_request" and "PKCE" in params["error_description"]
    assert params["state"] == authz.state


def test_pkce_plain_is_refused(oauth: Harness, app: AppClient) -> None:
    verifier, _ = pkce_pair()
    authz = oauth.start(app, pkce=False, code_challenge=verifier, code_challenge_method="plain")
    assert _authorize_error(oauth, authz.params)["error"] == "invalid_request"


def test_pkce_without_a_method_is_refused(oauth: Harness, app: AppClient) -> None:
    _, challenge = pkce_pair()
    authz = oauth.start(app, pkce=False, code_challenge=challenge)
    assert _authorize_error(oauth, authz.params)["error"] == "invalid_request"


def test_pkce_wrong_verifier_is_refused(oauth: Harness, app: AppClient) -> None:
    authz = oauth.start(app)
    code = oauth.code(authz, "alice")
    wrong, _ = pkce_pair()
    r = oauth.exchange(app, code, authz, code_verifier=wrong)
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"


def test_pkce_missing_verifier_is_refused_even_for_a_confidential_client(
    oauth: Harness, app: AppClient
) -> None:
    assert app.client_secret is not None
    authz = oauth.start(app)
    code = oauth.code(authz, "alice")
    r = oauth.token(
        app, {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT}
    )
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"


def test_pkce_downgrade_to_plain_at_the_token_endpoint_is_refused(
    oauth: Harness, app: AppClient
) -> None:
    authz = oauth.start(app)
    code = oauth.code(authz, "alice")
    # An attacker who saw the challenge sends it as if it were a plain verifier.
    r = oauth.exchange(app, code, authz, code_verifier=authz.params["code_challenge"])
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"


def test_verifier_for_a_code_without_challenge_is_refused(oauth: Harness, app: AppClient) -> None:
    """RFC 9700 §4.8.2: such codes are never issued here; one planted in the database is refused."""
    authz = oauth.start(app)
    code = oauth.code(authz, "alice")
    with oauth.rt.vault.unit_of_work() as session:
        row = session.get(OAuthAuthorizationCode, token_secrets.token_digest(code))
        assert row is not None
        row.code_challenge, row.code_challenge_method = None, None
        session.add(row)
    r = oauth.exchange(app, code, authz)
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"


# --- grant types ----------------------------------------------------------------------------------


def test_implicit_grant_is_refused(oauth: Harness, app: AppClient) -> None:
    authz = oauth.start(app, response_type="token")
    assert _authorize_error(oauth, authz.params)["error"] == "unsupported_response_type"


def test_password_grant_is_refused(oauth: Harness, app: AppClient) -> None:
    r = oauth.token(app, {"grant_type": "password", "username": "alice", "password": "x" * 12})
    assert r.status_code == 400 and r.json()["error"] == "unsupported_grant_type"


def test_client_credentials_refused_for_a_third_party_app(oauth: Harness, app: AppClient) -> None:
    r = oauth.token(app, {"grant_type": "client_credentials"})
    assert r.status_code == 400 and r.json()["error"] == "unauthorized_client"


def test_department_client_cannot_use_the_authorization_endpoint(oauth: Harness) -> None:
    dept = oauth.department_client()
    authz = oauth.start(dept, details=None, scope="aggregate:query")
    r = oauth.consent_page(authz)
    assert r.status_code in (302, 400)
    if r.status_code == 302:
        assert redirect_params(r)["error"] == "unauthorized_client"


# --- refresh tokens -------------------------------------------------------------------------------


def test_refresh_token_reuse_revokes_the_family(oauth: Harness, app: AppClient) -> None:
    tok = oauth.tokens(app, "alice")
    rotated = oauth.refresh(app, tok["refresh_token"]).json()
    reuse = oauth.refresh(app, tok["refresh_token"])
    assert reuse.status_code == 400 and reuse.json()["error"] == "invalid_grant"
    # Everything in the family is dead now, the legitimate newest tokens included.
    assert oauth.refresh(app, rotated["refresh_token"]).json()["error"] == "invalid_grant"
    assert (
        oauth.http.get("/v1/me/streams", headers=bearer(rotated["access_token"])).status_code == 401
    )
    assert oauth.introspect(app, rotated["access_token"]).json() == {"active": False}


def test_refresh_token_of_another_client_is_refused(oauth: Harness, app: AppClient) -> None:
    other = oauth.register_app(name="Other app")
    tok = oauth.tokens(app, "alice")
    r = oauth.refresh(other, tok["refresh_token"])
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"


def test_refresh_after_the_absolute_lifetime_is_refused(oauth: Harness, app: AppClient) -> None:
    tok = oauth.tokens(app, "alice")
    with oauth.rt.vault.unit_of_work() as session:
        for family in session.exec(select(OAuthAuthorization)).all():
            family.expires_at = utcnow() - timedelta(seconds=1)
            session.add(family)
    r = oauth.refresh(app, tok["refresh_token"])
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"


def test_refresh_cannot_widen_the_scope(oauth: Harness, app: AppClient) -> None:
    tok = oauth.tokens(app, "alice", scope="vault:append")
    r = oauth.refresh(app, tok["refresh_token"], scope="vault:append vault:read")
    assert r.status_code == 400 and r.json()["error"] == "invalid_scope"


def test_access_token_lifetime_is_short_and_explicit(oauth: Harness, app: AppClient) -> None:
    tok = oauth.tokens(app, "alice")
    assert 0 < tok["expires_in"] <= 600


# --- audiences (RFC 8707) -------------------------------------------------------------------------


def test_aggregation_token_is_refused_by_the_vault(oauth: Harness) -> None:
    oauth.staff("ana.lyst")
    tok = oauth.tokens(oauth.console_app(), "ana.lyst", scope="aggregate:query", details=None)
    for path in ("/v1/me", "/v1/me/streams", "/v1/me/audit"):
        r = oauth.http.get(path, headers=bearer(tok["access_token"]))
        assert r.status_code == 401, (path, r.text)
        assert "another service" in r.json()["message"]


def _aggregation_probe() -> APIRouter:
    """A route guarded like the aggregation service's will be (that service is not built yet)."""
    probe = APIRouter()

    @probe.get("/test/aggregation-probe")
    def _probe(
        p: Annotated[Principal, Depends(require(audience=AGGREGATION_AUDIENCE))],
    ) -> dict[str, str]:
        return {"kind": p.kind}

    return probe


def test_vault_token_is_refused_by_the_aggregation_service(oauth: Harness, app: AppClient) -> None:
    oauth.app.include_router(_aggregation_probe())
    tok = oauth.tokens(app, "alice")
    alice = oauth.citizens["alice"]
    for token in (tok["access_token"], alice.token):
        r = oauth.http.get("/test/aggregation-probe", headers=bearer(token))
        assert r.status_code == 401, r.text
    dept = oauth.department_client()
    good = oauth.token(dept, {"grant_type": "client_credentials"}).json()["access_token"]
    assert oauth.http.get("/test/aggregation-probe", headers=bearer(good)).json() == {
        "kind": "department"
    }


def test_mixing_audiences_without_resource_is_refused(oauth: Harness) -> None:
    fp = oauth.first_party_app()
    authz = oauth.start(fp, scope="vault:read aggregate:query", details=None)
    assert _authorize_error(oauth, authz.params)["error"] in ("invalid_target", "invalid_scope")


def test_resource_that_does_not_fit_the_scopes_is_refused(oauth: Harness, app: AppClient) -> None:
    authz = oauth.start(app, resource="urn:civic-vault:aggregation")
    assert _authorize_error(oauth, authz.params)["error"] == "invalid_target"


def test_unknown_resource_is_refused(oauth: Harness, app: AppClient) -> None:
    authz = oauth.start(app, resource="https://evil.example/api")
    assert _authorize_error(oauth, authz.params)["error"] == "invalid_target"


def test_resource_at_the_token_endpoint_must_match_the_grant(
    oauth: Harness, app: AppClient
) -> None:
    authz = oauth.start(app)
    code = oauth.code(authz, "alice")
    r = oauth.exchange(app, code, authz, resource="urn:civic-vault:aggregation")
    assert r.status_code == 400 and r.json()["error"] == "invalid_target"


def test_department_token_cannot_reach_any_citizens_records(oauth: Harness) -> None:
    alice = oauth.citizens["alice"]
    alice.append("energy.consumption", [{"ts": "2026-03-01", "kwh": 7.5}])
    stream = alice.streams["energy.consumption"]
    dept = oauth.department_client()
    tok = oauth.token(dept, {"grant_type": "client_credentials"}).json()["access_token"]
    for method, path in (
        ("GET", "/v1/me/streams"),
        ("GET", f"/v1/me/streams/{stream}"),
        ("GET", f"/v1/me/streams/{stream}/records"),
        ("GET", "/v1/me/export"),
        ("GET", "/v1/me/audit"),
    ):
        r = oauth.http.request(method, path, headers=bearer(tok))
        assert r.status_code == 401, (path, r.text)
    # Nor can it ask for a vault token.
    r = oauth.token(dept, {"grant_type": "client_credentials", "scope": "vault:read"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_scope"
    r = oauth.token(dept, {"grant_type": "client_credentials", "resource": "urn:civic-vault:vault"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_target"


# --- scopes and authorization_details --------------------------------------------------------------


def test_scope_beyond_the_clients_registration_is_refused(oauth: Harness) -> None:
    narrow = oauth.register_app(scope="vault:append")
    authz = oauth.start(narrow, scope="vault:append vault:read")
    assert _authorize_error(oauth, authz.params)["error"] == "invalid_scope"


def test_third_party_cannot_ask_for_consent_manage(oauth: Harness, app: AppClient) -> None:
    authz = oauth.start(app, scope="consent:manage")
    assert _authorize_error(oauth, authz.params)["error"] == "invalid_scope"


def test_third_party_cannot_ask_for_consent_read(oauth: Harness, app: AppClient) -> None:
    authz = oauth.start(app, scope="vault:append consent:read")
    assert _authorize_error(oauth, authz.params)["error"] == "invalid_scope"


def test_vault_scope_without_authorization_details_is_refused_for_apps(
    oauth: Harness, app: AppClient
) -> None:
    authz = oauth.start(app, scope="vault:append", details=None)
    assert _authorize_error(oauth, authz.params)["error"] == "invalid_authorization_details"


@pytest.mark.parametrize(
    "details",
    [
        [{"type": "payment_initiation", "stream_types": ["mobility.trip"], "actions": ["append"], "purpose": "x-y"}],
        [{"type": "civic-vault:consent", "stream_types": ["nope.nope"], "actions": ["append"], "purpose": "trip-diary"}],
        [{"type": "civic-vault:consent", "stream_types": ["mobility.trip"], "actions": ["delete"], "purpose": "trip-diary"}],
        [{"type": "civic-vault:consent", "stream_types": ["mobility.trip"], "actions": ["append"]}],
        [{"type": "civic-vault:consent", "stream_types": ["mobility.trip"], "actions": ["append"], "purpose": "trip-diary", "extra": 1}],
        [{"type": "civic-vault:consent", "stream_types": ["mobility.trip"], "actions": ["append"], "purpose": "trip-diary", "validity": {"not_after": "2001-01-01T00:00:00Z"}}],
    ],
    ids=["unknown-type", "unknown-stream", "unknown-action", "no-purpose", "unknown-field", "past-validity"],
)  # fmt: skip
def test_invalid_authorization_details_are_refused(
    oauth: Harness, app: AppClient, details: list[dict[str, object]]
) -> None:
    authz = oauth.start(app, details=details)
    assert _authorize_error(oauth, authz.params)["error"] == "invalid_authorization_details"


def test_authorization_details_that_are_not_json_are_refused(
    oauth: Harness, app: AppClient
) -> None:
    authz = oauth.start(app)
    authz.params["authorization_details"] = "[{not json"
    assert _authorize_error(oauth, authz.params)["error"] == "invalid_authorization_details"


def test_repeated_parameters_are_refused(oauth: Harness, app: AppClient) -> None:
    authz = oauth.start(app)
    query = "&".join(f"{k}={v}" for k, v in [("client_id", app.client_id), *[("client_id", "x")]])
    r = oauth.http.get(f"/oauth/authorize?{query}", follow_redirects=False)
    assert r.status_code == 400 and "location" not in r.headers
    del authz


# --- the consent form --------------------------------------------------------------------------


def test_wrong_passphrase_gives_no_code(oauth: Harness, app: AppClient) -> None:
    authz = oauth.start(app)
    r = oauth.decide(authz, handle="alice", passphrase="not the passphrase")
    assert r.status_code == 401
    assert "location" not in r.headers
    assert "not right" in r.text


def test_consent_form_token_works_once(oauth: Harness, app: AppClient) -> None:
    authz = oauth.start(app)
    page = oauth.consent_page(authz)
    assert oauth.decide(authz, handle="alice", page=page).status_code == 303
    again = oauth.decide(authz, handle="alice", page=page)
    assert again.status_code == 400 and "location" not in again.headers


def test_consent_form_from_another_browser_is_refused(oauth: Harness, app: AppClient) -> None:
    authz = oauth.start(app)
    page = oauth.consent_page(authz)
    oauth.http.cookies.clear()
    r = oauth.decide(authz, handle="alice", page=page)
    assert r.status_code == 400 and "location" not in r.headers


def test_consent_form_token_for_another_request_is_refused(oauth: Harness, app: AppClient) -> None:
    first, second = oauth.start(app), oauth.start(app)
    page = oauth.consent_page(first)
    token = page.text.split('name="form_token" value="')[1].split('"')[0]
    r = oauth.http.post(
        "/oauth/authorize",
        params=second.params,
        data={
            "form_token": token,
            "decision": "approve",
            "handle": "alice",
            "passphrase": "x" * 12,
        },
        follow_redirects=False,
    )
    assert r.status_code == 400 and "location" not in r.headers


def test_consent_form_without_a_token_is_refused(oauth: Harness, app: AppClient) -> None:
    authz = oauth.start(app)
    oauth.consent_page(authz)
    r = oauth.http.post(
        "/oauth/authorize",
        params=authz.params,
        data={"decision": "approve"},
        follow_redirects=False,
    )
    assert r.status_code == 400 and "location" not in r.headers


def test_analyst_cannot_approve_what_their_role_does_not_allow(oauth: Harness) -> None:
    oauth.staff("ana.lyst", role="analyst")
    authz = oauth.start(oauth.console_app(), scope="department:admin", details=None)
    r = oauth.decide(authz, handle="ana.lyst")
    assert r.status_code == 403 and "location" not in r.headers


def test_citizen_cannot_sign_in_on_the_staff_console(oauth: Harness) -> None:
    authz = oauth.start(oauth.console_app(), scope="aggregate:query", details=None)
    r = oauth.decide(authz, handle="alice")
    assert r.status_code == 401 and "location" not in r.headers


# --- client authentication ------------------------------------------------------------------------


def test_wrong_client_secret_is_refused(oauth: Harness, app: AppClient) -> None:
    bad = AppClient(app.client_id, "cvs_" + "x" * 43)
    tok = oauth.tokens(app, "alice")
    r = oauth.refresh(bad, tok["refresh_token"])
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"


def test_confidential_client_cannot_authenticate_as_public(oauth: Harness, app: AppClient) -> None:
    tok = oauth.tokens(app, "alice")
    r = oauth.http.post(
        "/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": tok["refresh_token"],
            "client_id": app.client_id,
        },
    )
    assert r.status_code in (400, 401) and r.json()["error"] == "invalid_client"


def test_secret_in_the_query_string_is_not_read(oauth: Harness, app: AppClient) -> None:
    r = oauth.http.post(
        "/oauth/token",
        params={"client_id": app.client_id, "client_secret": app.client_secret},
        data={"grant_type": "client_credentials"},
    )
    assert r.status_code in (400, 401)
    assert r.json()["error"] in ("invalid_client", "invalid_request")


def test_token_endpoint_throttles_failed_client_authentication(settings: Settings) -> None:
    with harness(settings, token_failure_limit=3) as oauth:
        app = oauth.register_app()
        bad = AppClient(app.client_id, "cvs_" + "y" * 43)
        for _ in range(3):
            assert oauth.token(bad, {"grant_type": "client_credentials"}).status_code == 401
        r = oauth.token(app, {"grant_type": "client_credentials"})
        assert r.status_code == 429 and "Retry-After" in r.headers


def test_introspection_without_client_authentication_is_refused(
    oauth: Harness, app: AppClient
) -> None:
    tok = oauth.tokens(app, "alice")
    r = oauth.http.post("/oauth/introspect", data={"token": tok["access_token"]})
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"


def test_introspection_by_a_public_client_is_refused(oauth: Harness) -> None:
    native = oauth.register_app(public=True)
    tok = oauth.tokens(native, "alice")
    r = oauth.http.post(
        "/oauth/introspect", data={"token": tok["access_token"], "client_id": native.client_id}
    )
    assert r.status_code in (400, 401) and r.json()["error"] == "invalid_client"


def test_introspection_of_another_clients_token_says_inactive(
    oauth: Harness, app: AppClient
) -> None:
    other = oauth.register_app(name="Other app")
    tok = oauth.tokens(app, "alice")
    assert oauth.introspect(other, tok["access_token"]).json() == {"active": False}


def test_introspection_of_a_citizen_session_says_inactive(oauth: Harness, app: AppClient) -> None:
    assert oauth.introspect(app, oauth.citizens["alice"].token).json() == {"active": False}


def test_revoking_another_clients_token_is_refused(oauth: Harness, app: AppClient) -> None:
    other = oauth.register_app(name="Other app")
    tok = oauth.tokens(app, "alice")
    r = oauth.http.post("/oauth/revoke", data={"token": tok["access_token"]}, auth=other.basic)
    assert r.status_code == 400
    assert oauth.introspect(app, tok["access_token"]).json()["active"] is True


def test_oauth_errors_are_rfc6749_json_and_not_cached(oauth: Harness) -> None:
    r = oauth.http.post("/oauth/token", data={"grant_type": "authorization_code"})
    assert set(r.json()) <= {"error", "error_description", "error_uri"}
    assert r.headers["cache-control"] == "no-store"


def test_token_endpoint_wants_a_form_body(oauth: Harness, app: AppClient) -> None:
    r = oauth.http.post("/oauth/token", json={"grant_type": "client_credentials"}, auth=app.basic)
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"


def test_tokens_are_stored_only_as_digests(oauth: Harness, app: AppClient) -> None:
    tok = oauth.tokens(app, "alice")
    from sqlalchemy import text

    with oauth.rt.vault.engine.connect() as conn:
        dump = json.dumps(
            [
                [str(v) for v in row]
                for table in (
                    "access_tokens",
                    "oauth_refresh_tokens",
                    "oauth_clients",
                    "oauth_authorization_codes",
                )
                for row in conn.execute(text(f"SELECT * FROM {table}"))  # noqa: S608
            ]
        )
    for secret in (tok["access_token"], tok["refresh_token"], app.client_secret or "?"):
        assert secret not in dump


# --- bytes that must never reach SQL (PostgreSQL refuses NUL in text) -----------------------------


def test_nul_in_the_consent_form_handle_is_a_failed_sign_in(oauth: Harness, app: AppClient) -> None:
    authz = oauth.start(app)
    r = oauth.decide(authz, handle="al\x00ice")
    assert r.status_code == 401 and "location" not in r.headers


def test_nul_in_a_staff_handle_is_a_failed_sign_in(oauth: Harness) -> None:
    authz = oauth.start(oauth.console_app(), scope="aggregate:query", details=None)
    r = oauth.decide(authz, handle="\x00")
    assert r.status_code == 401


def test_nul_in_client_id_at_the_authorization_endpoint(oauth: Harness) -> None:
    r = oauth.consent_page(oauth.start(AppClient("x\x00y", None)))
    assert r.status_code == 400


def test_nul_in_client_id_at_the_token_endpoint(oauth: Harness) -> None:
    r = oauth.http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "client_id": "\x00", "client_secret": "s"},
    )
    assert r.status_code in (400, 401) and r.json()["error"] == "invalid_client"
    r = oauth.http.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, auth=("\x00", "s")
    )
    assert r.status_code == 401


def test_nul_in_a_disconnected_app_id(oauth: Harness) -> None:
    alice = oauth.citizens["alice"]
    assert oauth.http.delete("/v1/me/apps/%00", headers=alice.auth).status_code == 404


def test_control_characters_in_a_client_name_are_refused(oauth: Harness) -> None:
    r = oauth.http.post(
        "/oauth/register",
        json={"client_name": "Trip\x00Diary", "redirect_uris": [REDIRECT]},
        headers=bearer(oauth.rt.initial_access_token),
    )
    assert r.status_code == 400 and r.json()["error"] == "invalid_client_metadata"


def test_department_admin_token_for_the_vault_reaches_no_citizen_data(oauth: Harness) -> None:
    """Departments administer their requests in the vault (``resource`` = the vault), and that
    token is still refused on every citizen route."""
    alice = oauth.citizens["alice"]
    alice.append("energy.consumption", [{"ts": "2026-03-01", "kwh": 7.5}])
    stream = alice.streams["energy.consumption"]
    dept = oauth.department_client()
    r = oauth.token(
        dept,
        {
            "grant_type": "client_credentials",
            "scope": "department:admin",
            "resource": "urn:civic-vault:vault",
        },
    )
    assert r.status_code == 200, r.text
    tok = r.json()["access_token"]
    assert oauth.introspect(dept, tok).json()["aud"] == "urn:civic-vault:vault"
    for path in ("/v1/me", "/v1/me/streams", f"/v1/me/streams/{stream}/records", "/v1/me/export"):
        assert oauth.http.get(path, headers=bearer(tok)).status_code in (401, 403), path
