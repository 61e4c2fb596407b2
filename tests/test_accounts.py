"""Registration, sign-in, lockout, passphrase change and recovery."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.conftest import DEFAULT_PASSPHRASE, Citizen, register


def sign_in(client: TestClient, handle: str, passphrase: str):  # type: ignore[no-untyped-def]
    return client.post("/v1/session", json={"handle": handle, "passphrase": passphrase})


def test_registration_returns_the_recovery_code_once(client: TestClient) -> None:
    r = client.post("/v1/citizens", json={"handle": "carmen", "passphrase": DEFAULT_PASSPHRASE})
    assert r.status_code == 201
    assert len(r.json()["recovery_code"].replace("-", "")) == 32
    me_token = sign_in(client, "carmen", DEFAULT_PASSPHRASE).json()["access_token"]
    me = client.get("/v1/me", headers={"Authorization": f"Bearer {me_token}"}).json()
    assert "recovery_code" not in me


def test_session_answer_shape(client: TestClient, alice: Citizen) -> None:
    body = sign_in(client, "alice", DEFAULT_PASSPHRASE).json()
    assert set(body) == {"access_token", "token_type", "expires_in"}
    assert body["token_type"] == "bearer" and body["expires_in"] > 0


def test_duplicate_handle_and_bad_fields_are_named(client: TestClient, alice: Citizen) -> None:
    dup = client.post("/v1/citizens", json={"handle": "alice", "passphrase": DEFAULT_PASSPHRASE})
    assert dup.status_code == 409 and dup.json()["details"][0]["field"] == "handle"
    short = client.post("/v1/citizens", json={"handle": "dora", "passphrase": "short"})
    assert short.status_code == 422 and short.json()["details"][0]["field"] == "passphrase"
    bad = client.post("/v1/citizens", json={"handle": "Ж!", "passphrase": DEFAULT_PASSPHRASE})
    assert bad.status_code == 422 and bad.json()["details"][0]["field"] == "handle"
    missing = client.post("/v1/citizens", json={"handle": "dora"})
    assert missing.status_code == 422 and missing.json()["details"][0]["field"] == "passphrase"


def test_wrong_passphrase_and_unknown_handle_look_the_same(
    client: TestClient, alice: Citizen
) -> None:
    wrong = sign_in(client, "alice", "not the passphrase at all")
    unknown = sign_in(client, "nobody-here", "not the passphrase at all")
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    assert "handle or the passphrase" in wrong.json()["message"]


def test_repeated_failures_lock_the_account(client: TestClient, alice: Citizen) -> None:
    free = client.app.state.vault.settings.login_free_failures  # type: ignore[attr-defined]
    codes = [sign_in(client, "alice", f"wrong passphrase {i}").status_code for i in range(free + 1)]
    assert codes[:free] == [401] * free
    locked = sign_in(client, "alice", DEFAULT_PASSPHRASE)
    assert locked.status_code == 429
    assert int(locked.headers["retry-after"]) >= 1


def test_change_passphrase_rewraps_keys_and_keeps_data(client: TestClient, alice: Citizen) -> None:
    alice.append("energy.consumption", [{"ts": "2026-01-01T00:00:00Z", "kwh": 3.0}])
    r = client.post(
        "/v1/me/passphrase",
        headers=alice.auth,
        json={
            "current_passphrase": DEFAULT_PASSPHRASE,
            "new_passphrase": "an entirely new passphrase",
        },
    )
    assert r.status_code == 204
    # Old sessions end; the old passphrase no longer works; the new one opens the same data.
    assert client.get("/v1/me", headers=alice.auth).status_code == 401
    assert sign_in(client, "alice", DEFAULT_PASSPHRASE).status_code == 401
    token = sign_in(client, "alice", "an entirely new passphrase").json()["access_token"]
    sid = alice.streams["energy.consumption"]
    recs = client.get(
        f"/v1/me/streams/{sid}/records", headers={"Authorization": f"Bearer {token}"}
    ).json()
    assert recs["records"][0]["kwh"] == 3.0


def test_recovery_code_sets_a_new_passphrase_and_is_replaced(
    client: TestClient, alice: Citizen
) -> None:
    alice.append("energy.consumption", [{"ts": "2026-01-01T00:00:00Z", "kwh": 4.0}])
    typed = alice.recovery_code.lower().replace("-", " ")
    r = client.post(
        "/v1/citizens/recover",
        json={
            "handle": "alice",
            "recovery_code": typed,
            "new_passphrase": "recovered passphrase 1",
        },
    )
    assert r.status_code == 200
    new_code = r.json()["recovery_code"]
    assert new_code != alice.recovery_code
    again = client.post(
        "/v1/citizens/recover",
        json={
            "handle": "alice",
            "recovery_code": alice.recovery_code,
            "new_passphrase": "whatever passphrase",
        },
    )
    assert again.status_code == 401
    token = sign_in(client, "alice", "recovered passphrase 1").json()["access_token"]
    sid = alice.streams["energy.consumption"]
    recs = client.get(
        f"/v1/me/streams/{sid}/records", headers={"Authorization": f"Bearer {token}"}
    ).json()
    assert recs["records"][0]["kwh"] == 4.0


def test_sign_out_revokes_the_token(client: TestClient, alice: Citizen) -> None:
    assert client.delete("/v1/session", headers=alice.auth).status_code == 204
    assert client.get("/v1/me", headers=alice.auth).status_code == 401


def test_second_registration_is_independent(client: TestClient, alice: Citizen) -> None:
    other = register(client, "someone.else")
    assert other.citizen_id != alice.citizen_id
