"""The append route checks its token itself (``deps.admit_request``, for speed) rather than through
a ``require()`` dependency: whatever the Authorization header, it must admit and refuse exactly as
a route with ``require("vault:append")`` does (``POST /v1/me/streams``), with the same status,
error code and WWW-Authenticate challenge."""

from __future__ import annotations

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Citizen, register

ROW = [{"ts": "2026-01-01T00:00:00Z", "kwh": 1.5}]


def _outcome(response: object) -> tuple[int, str | None, str | None]:
    status = response.status_code  # type: ignore[attr-defined]
    body = response.json() if status >= 400 else {}  # type: ignore[attr-defined]
    challenge = response.headers.get("www-authenticate")  # type: ignore[attr-defined]
    return status, body.get("code"), challenge


def _compare(client: TestClient, stream_id: str, headers: dict[str, str]) -> None:
    created = client.post("/v1/me/streams", json={"stream_type": "noise.exposure"}, headers=headers)
    appended = client.post(f"/v1/me/streams/{stream_id}/records", json=ROW, headers=headers)
    assert _outcome(appended) == _outcome(created), headers


def test_append_admits_and_refuses_like_require(client: TestClient, alice: Citizen) -> None:
    stream_id = alice.stream("energy.consumption")
    token = alice.token
    revoked = register(client, "revoked.r")
    assert client.delete("/v1/session", headers=revoked.auth).status_code in (200, 204)

    @settings(
        max_examples=60,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(
        scheme=st.sampled_from(["Bearer", "bearer", "BEARER", "Basic", "Token", "", "Bearer:"]),
        gap=st.sampled_from([" ", "  ", "\t", ""]),
        secret=st.sampled_from([token, revoked.token, token + "x", token[:-1], "", "cv_x"])
        | st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=60),
        tail=st.sampled_from(["", " ", " extra"]),
    )
    def check(scheme: str, gap: str, secret: str, tail: str) -> None:
        _compare(client, stream_id, {"Authorization": f"{scheme}{gap}{secret}{tail}"})

    check()
    _compare(client, stream_id, {})  # no header at all
