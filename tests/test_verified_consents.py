"""The registry's memo of verified signatures (``ConsentRegistry._verify_remembered``): a registry
that has judged the same consents before decides exactly as a fresh one, at every moment, after
every kind of change to the stored rows (withdrawal, edited terms, flipped signatures, a changed
citizen key, an edited or deleted event), and the memo is really used."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlmodel import Session, select

from consent.decision import AccessRequest
from tests.conftest import register
from tests.test_consent_api import accept, city  # noqa: F401  (the fixture)
from vault.clock import utcnow
from vault.consent_models import ConsentRecord
from vault.services import consent_registry
from vault.services.consent_registry import ConsentRegistry


def _request(at: object) -> AccessRequest:
    return AccessRequest(
        recipient_kind="department",
        recipient_id="energy",
        purpose="energy-planning",
        stream_type="energy.consumption",
        fields=("ts", "kwh"),
        operation="dp_aggregate",
        statistics=("count", "sum"),
        group_by=("district",),
        epsilon=0.1,
        at=at,
    )


def _judgments(
    registry: ConsentRegistry, client: TestClient, at: object, threads: int = 1
) -> list[object]:
    rt = client.app.state.vault  # type: ignore[attr-defined]
    with rt.reading() as session:
        records = list(session.exec(select(ConsentRecord).order_by(ConsentRecord.id)).all())
        out = []
        for record, (decision, verified) in zip(
            records, registry.decide_many(session, records, _request(at), threads), strict=True
        ):
            out.append(
                (
                    record.id,
                    decision.allowed,
                    tuple(decision.reasons),
                    None if verified is None else (verified.status, verified.key_id),
                )
            )
    return out


def _same_as_fresh(client: TestClient) -> list[object]:
    """The warm registry's judgments at several moments, checked against a fresh registry, and
    against a fresh one whose signatures are verified ahead on two threads (one consent a part:
    the test patches ``_AHEAD_PART``)."""
    rt = client.app.state.vault  # type: ignore[attr-defined]
    now = utcnow()
    seen = []
    for at in (now, now - timedelta(days=1), now + timedelta(days=200), now + timedelta(days=800)):
        warm = _judgments(rt.consents, client, at)
        fresh = _judgments(ConsentRegistry(rt.audit, rt.keys), client, at)
        ahead = ConsentRegistry(rt.audit, rt.keys)
        assert warm == fresh == _judgments(ahead, client, at, threads=2), at
        assert len(ahead._signatures._seen) > 0  # the threads did verify ahead
        seen.append(warm)
    return seen


def _execute(client: TestClient, sql: str, **params: object) -> None:
    with Session(client.app.state.vault.engine) as s:  # type: ignore[attr-defined]
        s.execute(text(sql), params)
        s.commit()


def _flip(value: bytes) -> bytes:
    return value[:-1] + bytes([value[-1] ^ 0x01])


def test_a_warm_registry_judges_as_a_fresh_one_after_every_change(
    client: TestClient,
    city: dict[str, str],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(consent_registry, "_AHEAD_PART", 1)
    rt = client.app.state.vault  # type: ignore[attr-defined]
    people = [register(client, name) for name in ("ana", "ben", "cai", "dee", "eve")]
    consents = {}
    for person in people:
        answer = accept(person, "energy-monthly-totals")
        assert answer.status_code in (200, 201), answer.text
        consents[person.handle] = answer.json()["id"]
    first = _same_as_fresh(client)
    assert any(allowed for _, allowed, _, _ in first[0])
    assert len(rt.consents._verified) == len(people)  # the memo is in use

    # A withdrawal (a new signed event): the memo's entry no longer matches.
    r = client.post(f"/v1/me/consents/{consents['ben']}/withdraw", headers=people[1].auth)
    assert r.status_code == 200, r.text
    _same_as_fresh(client)

    # Terms edited in the database, then put back as they were.
    with Session(rt.engine) as s:
        original = s.get(ConsentRecord, consents["ana"]).terms_json  # type: ignore[union-attr]
    edited = json.loads(original)
    edited["purpose"] = "marketing"
    _execute(
        client,
        "UPDATE consents SET terms_json = :t WHERE id = :id",
        t=json.dumps(edited),
        id=consents["ana"],
    )
    tampered = _same_as_fresh(client)
    assert not [a for cid, a, _, _ in tampered[0] if cid == consents["ana"]][0]
    # The same terms written with other white space: the same values, other bytes. The signature
    # is checked over the stored bytes, so this is tampering too.
    _execute(
        client,
        "UPDATE consents SET terms_json = :t WHERE id = :id",
        t=json.dumps(json.loads(original), indent=1),
        id=consents["ana"],
    )
    respaced = _same_as_fresh(client)
    assert not [a for cid, a, _, _ in respaced[0] if cid == consents["ana"]][0]
    _execute(
        client, "UPDATE consents SET terms_json = :t WHERE id = :id", t=original, id=consents["ana"]
    )
    assert [a for cid, a, _, _ in _same_as_fresh(client)[0] if cid == consents["ana"]][0]

    # A flipped signature byte on the terms, and on the citizen's key.
    with Session(rt.engine) as s:
        row = s.get(ConsentRecord, consents["cai"])
        signature = bytes(row.signature)  # type: ignore[union-attr]
        key = s.exec(
            text("SELECT verify_key FROM citizens WHERE id = :c"),  # type: ignore[call-overload]
            params={"c": people[3].citizen_id},
        ).one()[0]
    _execute(
        client,
        "UPDATE consents SET signature = :s WHERE id = :id",
        s=_flip(signature),
        id=consents["cai"],
    )
    _execute(
        client,
        "UPDATE citizens SET verify_key = :k WHERE id = :c",
        k=_flip(bytes(key)),
        c=people[3].citizen_id,
    )
    changed = _same_as_fresh(client)
    refused = {cid for cid, allowed, _, _ in changed[0] if not allowed}
    assert {consents["cai"], consents["dee"], consents["ben"]} <= refused

    # Ben's withdrawal event: its signature flipped, then the event deleted outright.
    with Session(rt.engine) as s:
        event_id, event_signature = s.exec(
            text(  # type: ignore[call-overload]
                "SELECT id, signature FROM consent_events WHERE consent_id = :c AND kind = 'withdrawn'"
            ),
            params={"c": consents["ben"]},
        ).one()
    _execute(
        client,
        "UPDATE consent_events SET signature = :s WHERE id = :id",
        s=_flip(bytes(event_signature)),
        id=event_id,
    )
    _same_as_fresh(client)
    _execute(client, "DELETE FROM consent_events WHERE id = :id", id=event_id)
    _same_as_fresh(client)


def test_erasure_drops_the_citizens_consents_from_the_memos(
    client: TestClient,
    city: dict[str, str],  # noqa: F811
) -> None:
    """After ``DELETE /v1/me`` nothing the registry remembers names the erased citizen; the
    other citizens' entries stay."""
    rt = client.app.state.vault  # type: ignore[attr-defined]
    gone, kept = register(client, "gone"), register(client, "kept")
    for person in (gone, kept):
        r = accept(person, "energy-monthly-totals")
        assert r.status_code in (200, 201), r.text
    r = client.post(
        f"/v1/me/consents/{accept(gone, 'noise-exposure').json()['id']}/withdraw",
        headers=gone.auth,
    )
    assert r.status_code == 200, r.text
    _same_as_fresh(client)
    registry = rt.consents

    def subjects() -> set[str]:
        return {t.subject for t in registry._parsed_terms.values()} | {
            v.terms.subject for v in registry._verified.values()
        }

    assert subjects() == {gone.citizen_id, kept.citizen_id}
    assert registry._parsed_events
    r = client.request("DELETE", "/v1/me", json={"passphrase": gone.passphrase}, headers=gone.auth)
    assert r.status_code == 200, r.text
    assert subjects() == {kept.citizen_id}
    kept_terms = {t.id for t in registry._parsed_terms.values()}
    assert all(e.terms_id in kept_terms for e in registry._parsed_events.values())
    _same_as_fresh(client)
