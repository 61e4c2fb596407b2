"""The whole OAuth flow against a real server: uvicorn on a 127.0.0.1 socket (not TestClient),
driven with httpx and Authlib's standard OAuth 2 client, like an outside developer would.

Register a client, authorize with PKCE, the consent screen, code exchange, use, refresh with
rotation, introspection, revocation; and the example mobility app, end to end."""

from __future__ import annotations

import json
import re
import secrets
import socket
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import pytest
import uvicorn
from conftest import DEFAULT_PASSPHRASE

from vault.oauth.runtime import OAuthConfig, OAuthRuntime
from vault.settings import Settings

pytestmark = pytest.mark.http

FORM_TOKEN = re.compile(r'name="form_token" value="([^"]+)"')
FORM_ACTION = re.compile(r'<form method="post" action="([^"]+)"')
DETAILS = [
    {
        "type": "civic-vault:consent",
        "stream_types": ["mobility.trip"],
        "actions": ["append"],
        "purpose": "trip-diary",
    }
]


@dataclass
class LiveServer:
    base: str
    settings: Settings


@pytest.fixture
def live(settings: Settings) -> Iterator[LiveServer]:
    from server.app import create_app

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    settings = replace(settings, port=port)
    app = create_app(settings)
    app.state.oauth = OAuthRuntime.build(app.state.vault, OAuthConfig(issuer=base))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield LiveServer(base, settings)
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def _oauth_client(**kwargs: object) -> object:
    warnings.filterwarnings("ignore", message="The httpx module is deprecated")
    from authlib.integrations.httpx_client import OAuth2Client

    return OAuth2Client(**kwargs)


def _consent(browser: httpx.Client, url: str, handle: str) -> str:
    """What the citizen does in the browser: read the consent page, sign in, approve. Returns the
    redirect the browser is sent to."""
    page = browser.get(url)
    assert page.status_code == 200, page.text
    assert "Trip Diary" in page.text and "mobility.trip" in page.text
    token, action = FORM_TOKEN.search(page.text), FORM_ACTION.search(page.text)
    assert token and action
    r = browser.post(
        urljoin(str(page.url), action.group(1).replace("&amp;", "&")),
        data={
            "form_token": token.group(1),
            "decision": "approve",
            "handle": handle,
            "passphrase": DEFAULT_PASSPHRASE,
        },
    )
    assert r.status_code == 303, r.text
    return r.headers["location"]


def test_whole_flow_against_uvicorn(live: LiveServer) -> None:
    base = live.base
    api = httpx.Client(base_url=base, timeout=30)
    meta = api.get("/.well-known/oauth-authorization-server").json()
    assert meta["issuer"] == base

    # A citizen, who is also the developer of the app.
    assert (
        api.post(
            "/v1/citizens", json={"handle": "maria.lopez", "passphrase": DEFAULT_PASSPHRASE}
        ).status_code
        == 201
    )
    session = api.post(
        "/v1/session", json={"handle": "maria.lopez", "passphrase": DEFAULT_PASSPHRASE}
    ).json()

    # 1. Register the client (RFC 7591), with the citizen's own session as the gate.
    redirect_uri = "https://trips.example/callback"
    reg = api.post(
        "/oauth/register",
        json={
            "client_name": "Trip Diary",
            "redirect_uris": [redirect_uri],
            "scope": "vault:append",
        },
        headers={"Authorization": f"Bearer {session['access_token']}"},
    )
    assert reg.status_code == 201, reg.text
    client_id, client_secret = reg.json()["client_id"], reg.json()["client_secret"]

    # 2. Authorize with PKCE (Authlib builds the request), 3. the consent screen.
    client = _oauth_client(
        client_id=client_id, client_secret=client_secret, scope="vault:append",
        redirect_uri=redirect_uri, code_challenge_method="S256",
    )  # fmt: skip
    verifier = secrets.token_urlsafe(48)
    url, state = client.create_authorization_url(  # type: ignore[attr-defined]
        meta["authorization_endpoint"],
        code_verifier=verifier,
        authorization_details=json.dumps(DETAILS),
    )
    assert "code_challenge_method=S256" in url
    with httpx.Client(timeout=30) as browser:
        callback = _consent(browser, url, "maria.lopez")
    params = {k: v[0] for k, v in parse_qs(urlsplit(callback).query).items()}
    assert callback.startswith(redirect_uri + "?")
    assert params["state"] == state and params["iss"] == base

    # 4. Code exchange.
    token = client.fetch_token(  # type: ignore[attr-defined]
        meta["token_endpoint"], authorization_response=callback, code_verifier=verifier
    )
    assert token["token_type"] == "Bearer" and token["expires_in"] <= 600
    assert token["authorization_details"][0]["stream_types"] == ["mobility.trip"]

    # 5. Use: create the trip stream and upload trips, as the app.
    stream = client.post(f"{base}/v1/me/streams", json={"stream_type": "mobility.trip"})  # type: ignore[attr-defined]
    assert stream.status_code == 201, stream.text
    trips = [{"ts": "2026-03-01T08:00:00Z", "mode": "bike", "km": 3.1, "minutes": 12}]
    up = client.post(f"{base}/v1/me/streams/{stream.json()['id']}/records", json=trips)  # type: ignore[attr-defined]
    assert up.status_code == 201, up.text

    # 6. Refresh with rotation; the old refresh token is then a reuse that ends the family.
    old_refresh = token["refresh_token"]
    new = client.refresh_token(meta["token_endpoint"], refresh_token=old_refresh)  # type: ignore[attr-defined]
    assert new["refresh_token"] != old_refresh and new["access_token"] != token["access_token"]

    # 7. Introspection (the client authenticates; RFC 7662).
    info = client.introspect_token(meta["introspection_endpoint"], token=new["access_token"]).json()  # type: ignore[attr-defined]
    assert info["active"] is True and info["client_id"] == client_id
    assert info["authorization_details"][0]["actions"] == ["append"]
    assert (
        api.post(meta["introspection_endpoint"], data={"token": new["access_token"]}).status_code
        == 401
    )

    # 8. Revocation (RFC 7009): revoking the refresh token ends the grant.
    revoked = client.revoke_token(meta["revocation_endpoint"], token=new["refresh_token"])  # type: ignore[attr-defined]
    assert revoked.status_code == 200
    info = client.introspect_token(meta["introspection_endpoint"], token=new["access_token"]).json()  # type: ignore[attr-defined]
    assert info == {"active": False}
    denied = api.get("/v1/me/streams", headers={"Authorization": f"Bearer {new['access_token']}"})
    assert denied.status_code == 401

    # The citizen sees what happened.
    audit = api.get(
        "/v1/me/audit", headers={"Authorization": f"Bearer {session['access_token']}"}
    ).json()
    assert any(e["action"] == "app.authorized" for e in audit["entries"])
    api.close()


def test_refresh_reuse_against_uvicorn_revokes_the_family(live: LiveServer) -> None:
    api = httpx.Client(base_url=live.base, timeout=30)
    meta = api.get("/.well-known/oauth-authorization-server").json()
    api.post("/v1/citizens", json={"handle": "ben.okafor", "passphrase": DEFAULT_PASSPHRASE})
    reg = api.post(
        "/oauth/register",
        json={"client_name": "Trip Diary", "redirect_uris": ["http://127.0.0.1:9/cb"], "token_endpoint_auth_method": "none"},
        headers={"Authorization": f"Bearer {api.post('/v1/session', json={'handle': 'ben.okafor', 'passphrase': DEFAULT_PASSPHRASE}).json()['access_token']}"},
    )  # fmt: skip
    client = _oauth_client(
        client_id=reg.json()["client_id"], token_endpoint_auth_method="none", scope="vault:append",
        redirect_uri="http://127.0.0.1:9/cb", code_challenge_method="S256",
    )  # fmt: skip
    verifier = secrets.token_urlsafe(48)
    url, _ = client.create_authorization_url(  # type: ignore[attr-defined]
        meta["authorization_endpoint"],
        code_verifier=verifier,
        authorization_details=json.dumps(DETAILS),
    )
    with httpx.Client(timeout=30) as browser:
        callback = _consent(browser, url, "ben.okafor")
    token = client.fetch_token(
        meta["token_endpoint"], authorization_response=callback, code_verifier=verifier
    )  # type: ignore[attr-defined]
    rotated = client.refresh_token(meta["token_endpoint"], refresh_token=token["refresh_token"])  # type: ignore[attr-defined]
    reuse = api.post(
        meta["token_endpoint"],
        data={
            "grant_type": "refresh_token",
            "refresh_token": token["refresh_token"],
            "client_id": reg.json()["client_id"],
        },
    )
    assert reuse.status_code == 400 and reuse.json()["error"] == "invalid_grant"
    later = api.get(
        "/v1/me/streams", headers={"Authorization": f"Bearer {rotated['access_token']}"}
    )
    assert later.status_code == 401
    api.close()


def test_mobility_example_app_end_to_end(live: LiveServer, tmp_path: Path) -> None:
    from clients.examples.mobility_app.app import Config, run

    api = httpx.Client(base_url=live.base, timeout=30)
    api.post("/v1/citizens", json={"handle": "ana.garcia", "passphrase": DEFAULT_PASSPHRASE})
    session = api.post(
        "/v1/session", json={"handle": "ana.garcia", "passphrase": DEFAULT_PASSPHRASE}
    ).json()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    reg = api.post(
        "/oauth/register",
        json={"client_name": "Trip Diary", "redirect_uris": [f"http://127.0.0.1:{port}/callback"],
              "token_endpoint_auth_method": "none", "scope": "vault:append"},
        headers={"Authorization": f"Bearer {session['access_token']}"},
    )  # fmt: skip
    assert reg.status_code == 201, reg.text
    config = Config(
        server=live.base, client_id=reg.json()["client_id"], port=port,
        state_file=tmp_path / "state.json", trips=4, timeout=30,
    )  # fmt: skip

    def citizen_in_browser(url: str) -> None:
        """The citizen approves in a browser, which then follows the redirect to the app."""

        def act() -> None:
            with httpx.Client(timeout=30) as browser:
                location = _consent(browser, url, "ana.garcia")
                assert browser.get(location).status_code == 200

        threading.Thread(target=act, daemon=True).start()

    first = run(config, citizen_in_browser)
    assert (first.how, first.uploaded) == ("browser", 4)
    assert (tmp_path / "state.json").stat().st_mode & 0o777 == 0o600

    def no_browser(url: str) -> None:
        raise AssertionError("the saved refresh token should have been enough")

    second = run(config, no_browser)
    assert (second.how, second.stream_id) == ("refresh", first.stream_id)

    records = api.get(
        f"/v1/me/streams/{first.stream_id}",
        headers={"Authorization": f"Bearer {session['access_token']}"},
    )
    assert records.json()["record_count"] == 8
    api.close()
