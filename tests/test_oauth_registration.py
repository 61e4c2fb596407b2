"""Dynamic client registration (RFC 7591) and the rules on clients."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from test_oauth_helpers import REDIRECT, Harness, bearer, harness

from vault.oauth import clients
from vault.settings import Settings


@pytest.fixture
def oauth(settings: Settings) -> Iterator[Harness]:
    with harness(settings) as h:
        yield h


def _register(oauth: Harness, body: dict[str, Any], token: str | None = None) -> Any:
    token = token or oauth.rt.initial_access_token
    return oauth.http.post("/oauth/register", json=body, headers=bearer(token))


def test_registration_with_the_initial_access_token(oauth: Harness) -> None:
    r = _register(oauth, {"client_name": "Trip Diary", "redirect_uris": [REDIRECT]})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["client_secret"].startswith("cvs_")
    assert body["client_secret_expires_at"] == 0
    assert body["grant_types"] == ["authorization_code", "refresh_token"]
    assert body["token_endpoint_auth_method"] == "client_secret_basic"
    assert r.headers["cache-control"] == "no-store"


def test_registration_by_a_signed_in_citizen_records_the_owner(oauth: Harness) -> None:
    alice = oauth.citizen("alice")
    r = _register(oauth, {"client_name": "Mine", "redirect_uris": [REDIRECT]}, alice.token)
    assert r.status_code == 201
    with oauth.rt.vault.unit_of_work() as session:
        owned = clients.owned_clients(session, alice.citizen_id)
    assert [c.client_id for c in owned] == [r.json()["client_id"]]


def test_public_client_gets_no_secret(oauth: Harness) -> None:
    r = _register(
        oauth,
        {
            "client_name": "Native",
            "redirect_uris": ["http://127.0.0.1:8765/cb"],
            "token_endpoint_auth_method": "none",
        },
    )
    assert r.status_code == 201 and "client_secret" not in r.json()


def test_registration_without_a_token_is_refused(oauth: Harness) -> None:
    r = oauth.http.post("/oauth/register", json={"client_name": "x", "redirect_uris": [REDIRECT]})
    assert r.status_code == 401 and r.json()["error"] == "invalid_token"


def test_registration_with_an_app_token_is_refused(oauth: Harness) -> None:
    oauth.citizen("alice")
    app = oauth.register_app()
    tok = oauth.tokens(app, "alice")
    r = _register(oauth, {"client_name": "x", "redirect_uris": [REDIRECT]}, tok["access_token"])
    assert r.status_code == 401


@pytest.mark.parametrize(
    "uri",
    [
        "http://trips.example/callback",
        "https://user@trips.example/callback",
        "https://trips.example/callback#frag",
        "trips.example/callback",
        "javascript:alert(1)",
        "https://trips.example/call back",
        "custom.scheme:/callback",
        "https://trips.example;script-src:*/callback",
        "https://trips.example%20x/callback",
    ],
)
def test_bad_redirect_uris_are_refused_at_registration(oauth: Harness, uri: str) -> None:
    r = _register(oauth, {"client_name": "x", "redirect_uris": [uri]})
    assert r.status_code == 400 and r.json()["error"] == "invalid_redirect_uri"


@pytest.mark.parametrize(
    "uri",
    [
        "http://127.0.0.1:8765/cb",
        "http://[::1]:9000/cb",
        "http://localhost:7000/cb",
        "https://a.example/cb?x=1",
    ],
)
def test_good_redirect_uris_are_accepted(oauth: Harness, uri: str) -> None:
    assert _register(oauth, {"client_name": "x", "redirect_uris": [uri]}).status_code == 201


@pytest.mark.parametrize(
    "extra",
    [
        {"grant_types": ["implicit"]},
        {"grant_types": ["password"]},
        {"grant_types": ["client_credentials"]},
        {"response_types": ["token"]},
        {"scope": "consent:manage"},
        {"scope": "consent:read"},
        {"scope": "aggregate:query"},
        {"token_endpoint_auth_method": "private_key_jwt"},
    ],
    ids=[
        "implicit",
        "password",
        "client-credentials",
        "token-response",
        "consent-manage",
        "consent-read",
        "aggregate",
        "jwt-auth",
    ],
)
def test_third_parties_cannot_register_more_than_they_may_hold(
    oauth: Harness, extra: dict[str, Any]
) -> None:
    r = _register(oauth, {"client_name": "x", "redirect_uris": [REDIRECT], **extra})
    assert r.status_code == 400 and r.json()["error"] == "invalid_client_metadata", r.text


def test_malformed_metadata_is_refused(oauth: Harness) -> None:
    r = oauth.http.post(
        "/oauth/register",
        content=b"not json",
        headers={**bearer(oauth.rt.initial_access_token), "content-type": "application/json"},
    )
    assert r.status_code == 400 and r.json()["error"] == "invalid_client_metadata"
    r = _register(oauth, {"redirect_uris": [REDIRECT]})
    assert r.status_code == 400 and r.json()["error"] == "invalid_client_metadata"


def test_secret_rotation_replaces_the_secret(oauth: Harness) -> None:
    alice = oauth.citizen("alice")
    app = oauth.register_app(owner=alice)
    with oauth.rt.vault.unit_of_work() as session:
        new = clients.rotate_secret(session, app.client_id, alice.citizen_id)
    assert new != app.client_secret
    with oauth.rt.vault.unit_of_work() as session:
        view = clients.active_client(session, app.client_id)
    assert view is not None
    assert view.check_client_secret(new) and not view.check_client_secret(app.client_secret or "")


def test_initial_access_token_file_is_private(oauth: Harness, settings: Settings) -> None:
    path = settings.keys_dir / clients.INITIAL_ACCESS_TOKEN_FILE
    assert path.stat().st_mode & 0o777 == 0o600
    assert (
        clients.load_or_create_initial_access_token(settings.keys_dir)
        == oauth.rt.initial_access_token
    )
    os.chmod(path, 0o644)
    with pytest.raises(PermissionError):
        clients.load_or_create_initial_access_token(settings.keys_dir)
    os.chmod(path, 0o600)


def test_secret_digest_is_not_a_token_digest() -> None:
    secret = clients.new_client_secret()
    assert clients.secret_matches(clients.secret_digest(secret), secret)
    assert not clients.secret_matches(None, secret)
    assert not clients.secret_matches(clients.secret_digest(secret), secret + "x")
