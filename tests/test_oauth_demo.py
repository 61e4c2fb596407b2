"""The demo city's OAuth clients and staff: seeded, usable, idempotent."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from conftest import register
from test_oauth_helpers import AppClient, Harness, harness

from vault.oauth.demo import CITIZEN_APP_ID, CONSOLE_ID, seed_oauth_demo
from vault.settings import Settings


@pytest.fixture
def oauth(settings: Settings) -> Iterator[Harness]:
    with harness(settings) as h:
        yield h


def _seed(oauth: Harness, credentials: dict[str, Any]) -> dict[str, Any]:
    return seed_oauth_demo(oauth.rt.vault, oauth.rt, credentials)


def test_seed_registers_departments_analysts_and_the_citizen_app(oauth: Harness) -> None:
    creds = _seed(oauth, {})
    assert [d["id"] for d in creds["departments"]] == ["energy", "mobility", "environment"]
    assert [d["name"] for d in creds["departments"]] == [
        "Energy Department",
        "Mobility Department",
        "Environment Department",
    ]
    for dept in creds["departments"]:
        service = dept["service_client"]
        client = AppClient(service["client_id"], service["client_secret"])
        r = oauth.token(client, {"grant_type": "client_credentials", "scope": "aggregate:query"})
        assert r.status_code == 200, r.text
        assert (
            oauth.introspect(client, r.json()["access_token"]).json()["civic_department_id"]
            == dept["id"]
        )
    energy = creds["departments"][0]["analyst"]
    console = AppClient(CONSOLE_ID, None, "http://127.0.0.1:8771/callback")
    tok = oauth.tokens(
        console,
        energy["handle"],
        passphrase=energy["passphrase"],
        scope="aggregate:query",
        details=None,
    )
    assert tok["scope"] == "aggregate:query"
    assert {c["client_id"] for c in creds["clients"]} >= {
        CITIZEN_APP_ID,
        CONSOLE_ID,
        "mobility-example",
    }


def test_the_seeded_citizen_app_is_first_party(oauth: Harness) -> None:
    _seed(oauth, {})
    register(oauth.http, "ana.garcia")
    app = AppClient(CITIZEN_APP_ID, None, "http://127.0.0.1:8770/callback")
    tok = oauth.tokens(app, "ana.garcia", scope="vault:read consent:read", details=None)
    assert (
        oauth.http.get(
            "/v1/me", headers={"Authorization": f"Bearer {tok['access_token']}"}
        ).status_code
        == 200
    )


def test_seeding_again_keeps_what_works(oauth: Harness) -> None:
    first = _seed(oauth, {})
    again = _seed(oauth, first)
    assert again["departments"] == first["departments"]


def test_seeding_without_the_old_file_issues_new_working_secrets(oauth: Harness) -> None:
    first = _seed(oauth, {})
    fresh = _seed(oauth, {})
    old, new = first["departments"][1]["service_client"], fresh["departments"][1]["service_client"]
    assert old["client_secret"] != new["client_secret"]
    assert (
        oauth.token(
            AppClient(new["client_id"], new["client_secret"]), {"grant_type": "client_credentials"}
        ).status_code
        == 200
    )
    assert (
        oauth.token(
            AppClient(old["client_id"], old["client_secret"]), {"grant_type": "client_credentials"}
        ).status_code
        == 401
    )
