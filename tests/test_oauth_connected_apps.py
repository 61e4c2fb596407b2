"""The citizen's connected apps: listing and disconnecting."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlmodel import Session
from test_oauth_helpers import Harness, bearer, harness

from vault.settings import Settings


@pytest.fixture
def oauth(settings: Settings) -> Iterator[Harness]:
    with harness(settings) as h:
        yield h


class _Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def on_app_disconnected(
        self, session: Session, citizen_id: str, client_id: str, root_keys: object
    ) -> None:
        self.calls.append((citizen_id, client_id))


def test_connected_apps_are_listed_in_plain_words(oauth: Harness) -> None:
    alice = oauth.citizen("alice")
    app = oauth.register_app()
    oauth.tokens(app, "alice")
    r = oauth.http.get("/v1/me/apps", headers=alice.auth)
    assert r.status_code == 200, r.text
    [listed] = r.json()["apps"]
    assert listed["client_id"] == app.client_id
    assert listed["client_name"] == "Trip Diary"
    assert listed["first_party"] is False
    assert listed["scopes"] == ["vault:append"]
    assert "mobility.trip" in listed["detail_words"][0]


def test_a_citizen_sees_only_their_own_apps(oauth: Harness) -> None:
    oauth.citizen("alice")
    bob = oauth.citizen("bob.b")
    oauth.tokens(oauth.register_app(), "alice")
    assert oauth.http.get("/v1/me/apps", headers=bob.auth).json() == {"apps": []}


def test_disconnecting_kills_tokens_withdraws_consents_and_is_audited(oauth: Harness) -> None:
    alice = oauth.citizen("alice")
    recorder = _Recorder()
    oauth.rt.app_disconnected = recorder
    app = oauth.register_app()
    tok = oauth.tokens(app, "alice")
    second = oauth.tokens(app, "alice")
    r = oauth.http.delete(f"/v1/me/apps/{app.client_id}", headers=alice.auth)
    assert r.status_code == 200, r.text
    assert r.json()["grants_revoked"] == 2
    for t in (tok, second):
        assert (
            oauth.http.get("/v1/me/streams", headers=bearer(t["access_token"])).status_code == 401
        )
        assert oauth.refresh(app, t["refresh_token"]).json()["error"] == "invalid_grant"
    assert recorder.calls == [(alice.citizen_id, app.client_id)]
    audit = oauth.http.get("/v1/me/audit", headers=alice.auth).json()["entries"]
    assert audit[-1]["action"] == "app.disconnected"
    assert audit[-1]["details"] == {"client": app.client_id}
    assert oauth.http.get("/v1/me/apps", headers=alice.auth).json() == {"apps": []}


def test_disconnecting_an_app_someone_else_connected_is_not_found(oauth: Harness) -> None:
    oauth.citizen("alice")
    bob = oauth.citizen("bob.b")
    app = oauth.register_app()
    tok = oauth.tokens(app, "alice")
    r = oauth.http.delete(f"/v1/me/apps/{app.client_id}", headers=bob.auth)
    assert r.status_code == 404
    assert oauth.introspect(app, tok["access_token"]).json()["active"] is True


def test_an_app_cannot_list_or_disconnect_apps(oauth: Harness) -> None:
    oauth.citizen("alice")
    app = oauth.register_app()
    tok = oauth.tokens(app, "alice", scope="vault:append")
    assert oauth.http.get("/v1/me/apps", headers=bearer(tok["access_token"])).status_code == 403
    r = oauth.http.delete(f"/v1/me/apps/{app.client_id}", headers=bearer(tok["access_token"]))
    assert r.status_code == 403


def test_the_citizen_app_can_list_apps_for_the_citizen(oauth: Harness) -> None:
    oauth.citizen("alice")
    fp = oauth.first_party_app()
    tok = oauth.tokens(fp, "alice", scope="consent:read consent:manage", details=None)
    r = oauth.http.get("/v1/me/apps", headers=bearer(tok["access_token"]))
    assert r.status_code == 200
    assert [a["first_party"] for a in r.json()["apps"]] == [True]
