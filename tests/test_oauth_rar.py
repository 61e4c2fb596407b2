"""Rich Authorization Requests: parsing, the approval hook, and what an app token may do."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlmodel import Session
from test_oauth_helpers import TRIP_DETAILS, AppClient, Harness, bearer, harness, redirect_params

from vault.catalogue import default_catalogue
from vault.crypto.root_keys import RootKeys
from vault.errors import Forbidden
from vault.oauth import consent_screen, rar
from vault.oauth.clients import ClientView
from vault.oauth.enforcement import (
    deny_apps,
    require_authorization_details,
    visible_stream_types,
)
from vault.principal import VAULT_AUDIENCE, Principal
from vault.services.session_tokens import resolve
from vault.settings import Settings

NOW = datetime(2026, 3, 1, tzinfo=UTC)


def _detail(**overrides: Any) -> dict[str, Any]:
    return {**TRIP_DETAILS[0], **overrides}


# --- parsing ----------------------------------------------------------------------------------


def test_details_are_normalised() -> None:
    raw = json.dumps(
        [_detail(stream_types=["mobility.trip", "energy.consumption", "mobility.trip"],
                 actions=["append", "read", "append"],
                 validity={"not_after": "2026-06-01T12:00:00+02:00"})]
    )  # fmt: skip
    [detail] = rar.parse_authorization_details(raw, default_catalogue(), NOW)
    assert detail["stream_types"] == ["energy.consumption", "mobility.trip"]
    assert detail["actions"] == ["read", "append"]
    assert detail["validity"] == {"not_after": "2026-06-01T10:00:00Z"}


def test_absent_details_are_empty() -> None:
    assert rar.parse_authorization_details(None, default_catalogue(), NOW) == []


def test_validity_more_than_a_year_away_is_refused() -> None:
    far = (NOW + timedelta(days=400)).isoformat()
    raw = json.dumps([_detail(validity={"not_after": far})])
    with pytest.raises(rar.InvalidAuthorizationDetailsError):
        rar.parse_authorization_details(raw, default_catalogue(), NOW)


def test_details_must_be_an_array() -> None:
    with pytest.raises(rar.InvalidAuthorizationDetailsError):
        rar.parse_authorization_details(json.dumps(_detail()), default_catalogue(), NOW)


def test_implied_scopes() -> None:
    assert rar.implied_scopes([_detail(actions=["read", "append"])]) == {
        "vault:read",
        "vault:append",
    }


def test_check_within_accepts_narrowing_and_refuses_widening() -> None:
    asked = [
        _detail(stream_types=["mobility.trip", "energy.consumption"], actions=["read", "append"])
    ]
    narrowed = [{**_detail(), "consent_id": "c1"}]
    assert rar.check_within(narrowed, asked) == narrowed
    wider = [{**_detail(stream_types=["noise.exposure"]), "consent_id": "c1"}]
    with pytest.raises(ValueError):
        rar.check_within(wider, asked)
    with pytest.raises(ValueError):
        rar.check_within([_detail()], asked)  # no consent_id


def test_check_within_refuses_a_later_end() -> None:
    asked = [_detail(validity={"not_after": "2026-04-01T00:00:00Z"})]
    later = [{**_detail(validity={"not_after": "2026-05-01T00:00:00Z"}), "consent_id": None}]
    with pytest.raises(ValueError):
        rar.check_within(later, asked)


def test_consent_screen_words() -> None:
    words = consent_screen.describe_details(
        [_detail(validity={"not_after": "2027-03-01T00:00:00Z"})], default_catalogue()
    )
    assert len(words) == 1
    assert "Add new records to your" in words[0] and "mobility.trip" in words[0]
    assert "trip-diary" in words[0] and "1 March 2027" in words[0]
    assert consent_screen.describe_scopes(["vault:append"]) == [
        "add new records to your vault (only the streams listed below)"
    ]


# --- the enforcement helper -------------------------------------------------------------------


def _app_principal(details: list[dict[str, Any]], kind: str = "app") -> Principal:
    return Principal(
        kind=kind,
        token_digest="d" * 64,
        scopes=frozenset({"vault:append", "vault:read"}),
        audience=VAULT_AUDIENCE,
        citizen_id="c" * 32,
        client_id="app",
        authorization_details=tuple(details),
    )


def test_helper_admits_the_named_stream_and_action() -> None:
    require_authorization_details(_app_principal([_detail()]), "mobility.trip", "append")


def test_helper_refuses_another_stream() -> None:
    with pytest.raises(Forbidden):
        require_authorization_details(_app_principal([_detail()]), "energy.consumption", "append")


def test_helper_refuses_another_action() -> None:
    with pytest.raises(Forbidden):
        require_authorization_details(_app_principal([_detail()]), "mobility.trip", "read")


def test_helper_lets_a_covered_read_through_to_the_grant_gate() -> None:
    principal = _app_principal([_detail(actions=["read", "append"])])
    require_authorization_details(principal, "mobility.trip", "read")


def test_helper_refuses_after_validity_ends() -> None:
    principal = _app_principal([_detail(validity={"not_after": "2026-02-01T00:00:00Z"})])
    with pytest.raises(Forbidden):
        require_authorization_details(principal, "mobility.trip", "append", now=NOW)


def test_helper_lets_other_kinds_pass() -> None:
    for kind in ("citizen", "department", "analyst"):
        require_authorization_details(_app_principal([], kind), "energy.consumption", "read")


def test_visible_stream_types_and_deny_apps() -> None:
    assert visible_stream_types(_app_principal([_detail()])) == {"mobility.trip"}
    assert visible_stream_types(_app_principal([], "citizen")) is None
    with pytest.raises(Forbidden):
        deny_apps(_app_principal([_detail()]))
    deny_apps(_app_principal([], "citizen"))


# --- through HTTP, with real tokens --------------------------------------------------------------


@pytest.fixture
def oauth(settings: Settings) -> Iterator[Harness]:
    with harness(settings) as h:
        yield h


def test_token_for_one_stream_is_refused_on_another(oauth: Harness) -> None:
    alice = oauth.citizen("alice")
    trips = alice.stream("mobility.trip")
    energy = alice.stream("energy.consumption")
    app = oauth.register_app()
    tok = oauth.tokens(app, "alice", scope="vault:append")
    with oauth.rt.vault.unit_of_work() as session:
        principal = resolve(session, tok["access_token"])
    assert principal.kind == "app" and principal.root_keys is None
    with pytest.raises(Forbidden):
        require_authorization_details(principal, "energy.consumption", "append")
    require_authorization_details(principal, "mobility.trip", "append")

    trip = [{"ts": "2026-03-01T08:00:00Z", "mode": "bus", "km": 4.0, "minutes": 20}]
    ok = oauth.http.post(
        f"/v1/me/streams/{trips}/records", json=trip, headers=bearer(tok["access_token"])
    )
    assert ok.status_code == 201, ok.text
    reading = [{"ts": "2026-03-01", "kwh": 5.0}]
    refused = oauth.http.post(
        f"/v1/me/streams/{energy}/records", json=reading, headers=bearer(tok["access_token"])
    )
    assert refused.status_code == 403, refused.text


def test_app_token_reads_only_consented_records_and_never_exports(oauth: Harness) -> None:
    alice = oauth.citizen("alice")
    alice.append(
        "mobility.trip", [{"ts": "2026-03-01T08:00:00Z", "mode": "bus", "km": 4.0, "minutes": 20}]
    )
    app = oauth.register_app()
    details = [_detail(actions=["read", "append"])]
    tok = oauth.tokens(app, "alice", details=details)
    headers = bearer(tok["access_token"])
    stream = alice.streams["mobility.trip"]
    # Reading goes through the consent the approval created and its app-access grant.
    assert oauth.http.get(f"/v1/me/streams/{stream}/records", headers=headers).status_code == 200
    assert oauth.http.get("/v1/me/export", headers=headers).status_code == 403


class _NarrowingHook:
    """A stand-in for the consent integration: approves only append, names a consent."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[dict[str, Any]]]] = []

    def approve(
        self, session: Session, citizen_id: str, root_keys: RootKeys, client: ClientView,
        details: list[dict[str, Any]],
    ) -> list[dict[str, Any]]:  # fmt: skip
        assert root_keys.secret  # the hook can sign consent terms with the citizen's keys
        self.calls.append((citizen_id, details))
        return [{**d, "actions": ["append"], "consent_id": "consent-1"} for d in details]


class _GreedyHook:
    def approve(
        self, session: Session, citizen_id: str, root_keys: RootKeys, client: ClientView,
        details: list[dict[str, Any]],
    ) -> list[dict[str, Any]]:  # fmt: skip
        return [{**d, "stream_types": ["energy.consumption"], "consent_id": "c"} for d in details]


def test_token_carries_exactly_what_the_hook_approved(oauth: Harness) -> None:
    alice = oauth.citizen("alice")
    hook = _NarrowingHook()
    oauth.rt.consent_approval = hook
    app = oauth.register_app()
    tok = oauth.tokens(app, "alice", details=[_detail(actions=["read", "append"])])
    assert hook.calls and hook.calls[0][0] == alice.citizen_id
    assert tok["authorization_details"] == [{**_detail(), "consent_id": "consent-1"}]
    info = oauth.introspect(app, tok["access_token"]).json()
    assert info["authorization_details"] == tok["authorization_details"]
    audit = oauth.http.get("/v1/me/audit", headers=alice.auth).json()["entries"]
    authorized = [e for e in audit if e["action"] == "app.authorized"]
    assert authorized[0]["details"]["consents"] == ["consent-1"]


def test_hook_that_widens_the_request_approves_nothing(oauth: Harness) -> None:
    oauth.citizen("alice")
    oauth.rt.consent_approval = _GreedyHook()
    app: AppClient = oauth.register_app()
    authz = oauth.start(app)
    r = oauth.decide(authz, handle="alice")
    assert r.status_code == 303
    assert redirect_params(r)["error"] == "access_denied"


class _EmptyHook:
    def approve(
        self, session: Session, citizen_id: str, root_keys: RootKeys, client: ClientView,
        details: list[dict[str, Any]],
    ) -> list[dict[str, Any]]:  # fmt: skip
        return []


class _WritingGreedyHook:
    """Writes something (as the consent integration will: terms, grants), then over-approves."""

    def approve(
        self, session: Session, citizen_id: str, root_keys: RootKeys, client: ClientView,
        details: list[dict[str, Any]],
    ) -> list[dict[str, Any]]:  # fmt: skip
        from vault.oauth.models import OAuthFormNonce

        session.add(
            OAuthFormNonce(
                nonce="written-by-the-hook", expires_at=datetime.now(UTC) + timedelta(hours=1)
            )
        )
        session.flush()
        return [{**d, "actions": ["read", "append"], "consent_id": "c"} for d in details]


def test_hook_that_approves_nothing_denies(oauth: Harness) -> None:
    oauth.citizen("alice")
    oauth.rt.consent_approval = _EmptyHook()
    r = oauth.decide(oauth.start(oauth.register_app()), handle="alice")
    assert r.status_code == 303 and redirect_params(r)["error"] == "access_denied"


def test_what_an_overreaching_hook_wrote_is_undone(oauth: Harness) -> None:
    from vault.oauth.models import OAuthFormNonce

    oauth.citizen("alice")
    oauth.rt.consent_approval = _WritingGreedyHook()
    r = oauth.decide(oauth.start(oauth.register_app()), handle="alice")
    assert redirect_params(r)["error"] == "access_denied"
    with oauth.rt.vault.unit_of_work() as session:
        assert session.get(OAuthFormNonce, "written-by-the-hook") is None
