"""What the vault's account operations must call (wiring proposed in the hand-over): a passphrase
change or recovery ends the citizen's OAuth grants too; erasure deletes every OAuth row about the
citizen, wrapped root secrets first."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import func
from sqlmodel import col, select
from test_oauth_helpers import Harness, bearer, harness

from vault.clock import utcnow
from vault.oauth import repositories as repo
from vault.oauth.models import OAuthAuthorization, OAuthAuthorizationCode, OAuthRefreshToken
from vault.settings import Settings


@pytest.fixture
def oauth(settings: Settings) -> Iterator[Harness]:
    with harness(settings) as h:
        yield h


def test_revoking_a_citizens_families_ends_the_citizen_apps_refresh_tokens(oauth: Harness) -> None:
    alice = oauth.citizen("alice")
    app = oauth.first_party_app()
    tok = oauth.tokens(app, "alice", scope="vault:read", details=None)
    with oauth.rt.vault.unit_of_work() as session:
        repo.revoke_families_for_citizen(session, alice.citizen_id, utcnow())
    assert oauth.refresh(app, tok["refresh_token"]).json()["error"] == "invalid_grant"
    assert oauth.http.get("/v1/me", headers=bearer(tok["access_token"])).status_code == 401
    with oauth.rt.vault.unit_of_work() as session:
        keys = session.exec(select(OAuthRefreshToken.session_key)).all()
    assert keys and all(k is None for k in keys)


def test_deleting_a_citizens_oauth_rows(oauth: Harness) -> None:
    alice = oauth.citizen("alice")
    bob = oauth.citizen("bob.b")
    app = oauth.first_party_app()
    oauth.tokens(app, "alice", scope="vault:read", details=None)
    oauth.tokens(app, "bob.b", scope="vault:read", details=None)
    oauth.code(oauth.start(app, scope="vault:read", details=None), "alice")  # a code never used
    with oauth.rt.vault.unit_of_work() as session:
        repo.delete_for_citizen(session, alice.citizen_id)
    with oauth.rt.vault.unit_of_work() as session:
        families = session.exec(select(OAuthAuthorization.citizen_id)).all()
        codes = session.exec(
            select(func.count())
            .select_from(OAuthAuthorizationCode)
            .where(col(OAuthAuthorizationCode.citizen_id) == alice.citizen_id)
        ).one()
        refresh = session.exec(select(func.count()).select_from(OAuthRefreshToken)).one()
    assert families == [bob.citizen_id]
    assert codes == 0
    assert refresh == 1  # Bob's
